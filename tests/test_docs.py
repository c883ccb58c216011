"""The docs match the code: generated config reference, README length, links and named paths."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 250

#: markdown inline links [text](target); images too
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: a repository path in a code span, e.g. `models/weights/default.pt` or `tests/daemon/test_faults.py::test_x`
CODE_PATH = re.compile(
    r"`((?:daemon|kernels|models|configs|benchmarks|tests|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_])(?:::(\w+))?`")


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_config_doc", DOCS / "make_config_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_doc_is_generated_from_the_code():
    expected = _load_generator().render()
    current = (DOCS / "config.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/config.md is stale: run `.venv/bin/python docs/make_config_doc.py > docs/config.md`")


def test_readme_is_a_short_guide():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines, expected at most {MAX_README_LINES} (details go in docs/)"


@pytest.mark.parametrize("md", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(md: Path):
    text = md.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (md.parent / path).exists():
            broken.append(target)
    assert not broken, f"{md.relative_to(ROOT)} links to files that do not exist: {broken}"


@pytest.mark.parametrize("md", [m for m in _markdown_files() if m.name != "model-history.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(md: Path):
    """A path the docs name in a code span exists (model-history.md names files at old commits)."""
    missing = []
    for path, test_name in CODE_PATH.findall(md.read_text(encoding="utf-8")):
        if "*" in path or "<" in path:
            continue
        target = ROOT / path
        if not target.exists():
            missing.append(path)
        elif test_name and not re.search(rf"def {test_name}\b", target.read_text(encoding="utf-8")):
            missing.append(f"{path}::{test_name}")
    assert not missing, f"{md.relative_to(ROOT)} names paths that do not exist: {missing}"
