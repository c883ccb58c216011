"""The layering rules the folders stand for, checked on every import statement in the source.

* ``kernels/`` are pure numerics: no torch, no daemon, no models, no file or
  socket I/O, no logging.
* ``models/`` (torch code) imports nothing of the daemon.
* the file formats (``daemon/io/``) import no other daemon package, no sockets.
* the stream stages (``daemon/stream/``) open no sockets and import neither
  the simulator, training, evaluation nor the processes; the pipeline imports no
  file readers, sources or preflight.
* no module imports another module's underscored names.

Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"daemon": "gwstream.daemon", "kernels": "gwstream.kernels", "models": "gwstream.models"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[parts[0]].rsplit(".", 1)[0], *parts])


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import statement in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _offences(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _sources(folder):
        for mod, names, line in _imports(path):
            targets = [mod] + [f"{mod}.{n}" for n in names]
            for t in targets:
                if any(t == f or t.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(REPO)}:{line} imports {t}")
                    break
    return bad


def test_the_layout_has_the_folders_it_documents():
    for folder in ("daemon/stream", "daemon/io", "daemon/proc", "daemon/sim", "daemon/train", "daemon/eval",
                   "daemon/bank", "daemon/cli", "daemon/followup", "daemon/cluster", "kernels", "models",
                   "models/weights"):
        assert (REPO / folder).is_dir(), folder
    # the shipped weights live in one folder, not beside the code
    assert not list((REPO / "models").glob("*.pt"))


def test_kernels_are_pure_numerics():
    forbidden = ("torch", "gwstream.daemon", "gwstream.models", "h5py", "zmq", "gwpy", "lal", "lalframe",
                 "pycbc", "logging", "io", "socket", "pickle")
    assert _offences("kernels", forbidden) == []


def test_models_import_nothing_of_the_daemon():
    assert _offences("models", ("gwstream.daemon", "zmq")) == []


def test_stream_stages_open_no_sockets_and_import_no_simulator_training_or_processes():
    forbidden = ("zmq", "socket", "gwstream.daemon.sim", "gwstream.daemon.train", "gwstream.daemon.eval",
                 "gwstream.daemon.proc", "gwstream.daemon.cli", "gwstream.daemon.bank")
    assert _offences("daemon/stream", forbidden) == []


def test_file_formats_are_a_leaf_of_the_daemon():
    """``daemon/io`` (wire, trigger record, archives, alerts) is used by the stages and processes, never the reverse."""
    forbidden = ("zmq", "gwstream.daemon.stream", "gwstream.daemon.proc", "gwstream.daemon.sim", "gwstream.daemon.train",
                 "gwstream.daemon.eval", "gwstream.daemon.cli", "gwstream.daemon.bank", "gwstream.models", "torch")
    assert _offences("daemon/io", forbidden) == []


def test_the_pipeline_reads_no_files_and_runs_no_preflight():
    forbidden = ("gwstream.daemon.io.framefiles", "gwstream.daemon.io.archive", "gwstream.daemon.proc",
                 "gwpy", "h5py")
    bad = [b for b in _offences("daemon/stream", forbidden) if b.startswith("daemon/stream/pipeline.py")]
    assert bad == []


@pytest.mark.parametrize("folder, forbidden", [
    ("daemon/sim", ("zmq", "gwstream.daemon.stream", "gwstream.daemon.proc", "gwstream.daemon.train")),
    ("daemon/bank", ("zmq", "gwstream.daemon.stream", "gwstream.daemon.proc", "gwstream.daemon.train")),
    ("daemon/train", ("zmq", "gwstream.daemon.stream", "gwstream.daemon.proc", "gwstream.daemon.eval")),
    ("daemon/eval", ("zmq", "gwstream.daemon.proc", "gwstream.daemon.train")),
    ("daemon/followup", ("zmq", "gwstream.daemon.proc", "gwstream.daemon.train", "gwstream.daemon.cli",
                         "torch")),
    ("daemon/proc", ("gwstream.daemon.train", "gwstream.daemon.cli", "gwstream.daemon.cluster")),
    ("daemon/cluster", ("zmq", "gwstream.daemon.train", "gwstream.daemon.cli", "gwstream.daemon.followup",
                        "gwstream.daemon.sim")),
])
def test_the_other_packages_keep_the_documented_direction(folder, forbidden):
    """The table of docs/architecture.md ("Code structure"), row by row."""
    assert _offences(folder, forbidden) == []


@pytest.mark.parametrize("folder", ["daemon", "kernels", "models"])
def test_no_module_imports_another_modules_underscored_names(folder):
    bad = []
    for path in _sources(folder):
        for mod, names, line in _imports(path):
            if not mod.startswith("gwstream."):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(p.startswith("_") and not p.startswith("__") for p in mod.split(".")):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {mod} {private}")
    assert bad == []


def test_the_import_scanner_sees_lazy_and_relative_imports():
    src = REPO / "daemon" / "stream" / "pipeline.py"
    found = {m for m, _, _ in _imports(src)}
    assert "gwstream.daemon.stream.conditioning" in found  # a relative import, resolved
    lazy = {m for m, _, _ in _imports(REPO / "daemon" / "cli" / "offline.py")}
    assert "gwstream.daemon.proc.offline" in lazy  # imported inside cmd_search only
