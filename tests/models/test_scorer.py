"""Batched scorer: checkpoints (weights-only), errors, determinism, exports, stream path."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from gwstream.models.networks import MODEL_NAMES, build_model
from gwstream.models.scorer import Scorer, load_checkpoint, load_exported, save_checkpoint
from torch import nn

# Different thread counts split float32 reductions differently; logits ~0.1-1.
THREADS_ATOL = 1e-5
# Exported graphs run the same kernels; traced or exported code may fuse or
# reorder a few float32 operations.
EXPORT_ATOL = 1e-6
N = 2048


def _model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = build_model(name, **kwargs)
        if kwargs.get("template_pairs"):  # random filters
            m.set_templates(torch.randn(2 * m.template_pairs, m.template_taps) / 32)
            with torch.no_grad():  # a gain (per template: each its own) so that the branch counts
                m.template_gain.copy_(torch.linspace(0.5, 2.0, m.template_gain.numel()).reshape(m.template_gain.shape))
        return m


#: the factorized network with a template branch
BRANCH = {"template_pairs": 3, "template_taps": 1024}
PER_TEMPLATE = {**BRANCH, "per_template_gain": True}


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.random.default_rng(21).standard_normal((13, 2, N)).astype(np.float32)


@pytest.fixture
def ckpt(tmp_path):
    model = _model("factorized", seed=4)
    path = save_checkpoint(model, tmp_path / "factorized.pt", meta={"trained_on": "unit test", "epochs": 0})
    return model, path


@pytest.mark.parametrize("name", [*MODEL_NAMES, "factorized+templates"])
def test_checkpoint_round_trip(tmp_path, windows, name):
    model = _model(name.split("+")[0], seed=1, **(BRANCH if "+" in name else {}))
    name = model.name
    path = save_checkpoint(model, tmp_path / f"{name}.pt", meta={"k": (1, 2), "auc": np.float64(0.5)})
    raw = torch.load(path, weights_only=True)  # plain weights-only payload
    assert raw["name"] == name and raw["hparams"] == model.hparams
    scorer = Scorer.from_checkpoint(path, device="cpu")
    assert scorer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert scorer.meta == {"k": [1, 2], "auc": 0.5} and scorer.name == name and scorer.path == path
    np.testing.assert_array_equal(scorer.score(windows), Scorer(model.eval(), device="cpu").score(windows))
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.pt"]  # no temp file left behind


def test_in_memory_scorer_has_no_sha(windows):
    s = Scorer(_model("baseline"), device="cpu")
    assert s.sha256 is None and s.path is None and s.device == torch.device("cpu")


def test_non_json_meta_rejected(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(_model("baseline"), tmp_path / "m.pt", meta={"x": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_corrupt_file_names_the_file(tmp_path, ckpt):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="garbage.pt"):
        Scorer.from_checkpoint(bad)
    _, good = ckpt
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_checkpoint(cut)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


class _NotAWeight:
    pass


def test_arbitrary_pickle_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"name": "baseline", "hparams": {}, "state_dict": {}, "meta": _NotAWeight()}, path)
    with pytest.raises(ValueError, match="pickled.pt.*weights-only"):
        load_checkpoint(path)


def _tamper(path, change) -> None:
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("state_dict"), r"lacks key\(s\) \['state_dict'\]"),
        (lambda c: c.update(name="vit"), "unknown model name 'vit'"),
        (lambda c: c["hparams"].update(channels=48), "shape"),
        (lambda c: c["state_dict"].pop("mlp.2.weight"), r"missing tensors \['mlp.2.weight'\]"),
        (lambda c: c["state_dict"].update(extra=torch.zeros(1)), r"unexpected tensors \['extra'\]"),
        (lambda c: c["hparams"].update(depth=3), "cannot be built"),
    ],
)
def test_mismatched_checkpoint_errors(ckpt, change, message):
    _, path = ckpt
    _tamper(path, change)
    with pytest.raises(ValueError, match=message) as info:
        Scorer.from_checkpoint(path)
    assert path.name in str(info.value)


def test_score_validates_input():
    s = Scorer(_model("factorized"), device="cpu")
    with pytest.raises(ValueError, match=r"\[B, 2, 2048\]"):
        s.score(np.zeros((3, 2, 1024), np.float32))
    with pytest.raises(ValueError, match=r"\[B, 2, 2048\]"):
        s.score(torch.zeros(3, 2, N))
    assert s.score(np.zeros((0, 2, N), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        Scorer(_model("factorized"), batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        Scorer(_model("factorized"), threads=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_device_auto_falls_back_to_cpu():
    assert Scorer(_model("baseline")).device == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Scorer(_model("baseline"), device="cuda")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cpu_determinism_and_threads(windows, name):
    model = _model(name, seed=2)
    one = Scorer(model, device="cpu", threads=1, batch_size=8)
    two = Scorer(model, device="cpu", threads=2, batch_size=8)
    before = torch.get_num_threads()
    a, b = one.score(windows), one.score(windows)
    assert torch.get_num_threads() == before  # the thread count is restored
    assert a.dtype == np.float32 and a.shape == (len(windows),)
    np.testing.assert_array_equal(a, b)  # bit-identical run to run
    np.testing.assert_allclose(two.score(windows), a, rtol=0, atol=THREADS_ATOL)
    np.testing.assert_allclose(Scorer(model, device="cpu", threads=1, batch_size=1024).score(windows), a,
                               rtol=0, atol=THREADS_ATOL)


@pytest.mark.parametrize("hp", [{}, BRANCH, PER_TEMPLATE], ids=["plain", "template-branch", "per-template-gain"])
@pytest.mark.parametrize(("kind", "suffix"), [("torchscript", ".ts"), ("export", ".pt2")])
def test_export_round_trip(tmp_path, windows, kind, suffix, hp):
    scorer = Scorer(_model("factorized", seed=5, **hp), device="cpu")
    path = scorer.export(tmp_path / f"model{suffix}", kind=kind)
    deployed = load_exported(path)
    want = scorer.score(windows)
    with torch.inference_mode():
        for batch in (windows, windows[:1]):  # the batch dimension stays dynamic
            got = deployed(torch.from_numpy(batch)).numpy()
            np.testing.assert_allclose(got, want[: len(batch)], rtol=0, atol=EXPORT_ATOL)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model{suffix}"]
    with pytest.raises(ValueError, match="onnx"):
        scorer.export(tmp_path / "m.onnx", kind="onnx")


@pytest.mark.parametrize("hp", [{}, BRANCH], ids=["plain", "template-branch"])
def test_scorer_stream_path_matches_score(hp):
    scorer = Scorer(_model("factorized", seed=6, **hp), device="cpu", threads=1)
    m = scorer.model
    stream = np.random.default_rng(8).standard_normal((2, 4 * N)).astype(np.float32)
    feats = scorer.encode_stream(stream)
    starts = np.arange(0, feats.shape[-1] - m.window_steps + 1, 16)
    cut = np.stack([stream[:, s * m.stride_samples : s * m.stride_samples + N] for s in starts])
    np.testing.assert_allclose(scorer.head_windows(feats, starts), scorer.score(cut), rtol=0, atol=THREADS_ATOL)
    with pytest.raises(ValueError, match="joint"):
        Scorer(_model("resnet"), device="cpu").encode_stream(stream)


def test_atomic_write_gives_the_usual_file_mode(tmp_path, monkeypatch):
    """Files written through a temporary file get the mode open() would give them (mkstemp's 0600
    would hide trigger archives and backgrounds from the accounts that read them)."""
    import os

    import gwstream.models.checkpoint as sc

    mask = os.umask(0o022)
    try:
        assert sc._new_file_mode() == 0o644
    finally:
        os.umask(mask)
    monkeypatch.setattr(sc, "_FILE_MODE", 0o644)  # whatever umask the test runs under
    with sc.atomic_path(tmp_path / "x.h5") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"data")
    assert (tmp_path / "x.h5").stat().st_mode & 0o777 == 0o644
