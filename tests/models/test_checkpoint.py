"""Checkpoint facts read without torch agree with torch's own load, and refuse what it refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from gwstream.models.checkpoint import NETWORK_NAMES, read_checkpoint_info
from gwstream.models.networks import MODEL_NAMES, build_model
from gwstream.models.scorer import load_checkpoint, save_checkpoint


def test_network_names_match_the_registry():
    assert set(NETWORK_NAMES) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_info_matches_torch_load(tmp_path, name):
    torch.manual_seed(0)
    path = save_checkpoint(build_model(name), tmp_path / f"{name}.pt", meta={"whiten": {"phase": "minimum"},
                                                                            "span": [0.5, 0.9]})
    info = read_checkpoint_info(path)
    model, meta, sha = load_checkpoint(path)
    assert info.name == name and info.hparams == model.hparams
    assert info.meta == meta and info.sha256 == sha
    assert info.shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_refuses_other_globals_and_other_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"name": "baseline", "hparams": {}, "state_dict": {}, "meta": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"print is not allowed"):
        read_checkpoint_info(tmp_path / "evil.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weights-only checkpoint"):
        read_checkpoint_info(tmp_path / "text.pt")
    torch.save({"name": "mystery", "hparams": {}, "state_dict": {}}, tmp_path / "mystery.pt")
    with pytest.raises(ValueError, match="unknown network 'mystery'"):
        read_checkpoint_info(tmp_path / "mystery.pt")
    torch.save({"name": "baseline", "state_dict": {}}, tmp_path / "nohp.pt")
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['hparams'\]"):
        read_checkpoint_info(tmp_path / "nohp.pt")
    with pytest.raises(FileNotFoundError):
        read_checkpoint_info(tmp_path / "absent.pt")


def test_replay_preflight_imports_no_torch():
    """``gwstream replay``'s parent checks the shipped model without paying torch's import."""
    code = ("import sys; from gwstream.daemon.config import load_config; "
            "from gwstream.daemon.proc.preflight import preflight; import gwstream.daemon.proc.runner; "
            "preflight(load_config(None), load_weights=False); "
            "print(sorted(m for m in ('torch', 'scipy.signal', 'numba') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
