"""The per-detector consistency test (ranking.consistency_*): its residual, its place in the scorer's rows, and
its place in a background's identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gwstream.daemon.config import Config, ModelConfig, RankingConfig, WhitenConfig
from gwstream.daemon.stream.background import Background, BackgroundMismatch
from gwstream.daemon.stream.consistency import Consistency, residual_z, window_residual
from gwstream.daemon.stream.identity import consistency, search_meta
from gwstream.daemon.stream.scoring import SlideScorer

from .test_search import RATE, STRIDE, FakeConditioner, small_model

TAPS = 512


def test_the_residual_is_about_a_standard_normal_in_gaussian_noise():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, TAPS))
    z = residual_z((x * x).sum(axis=1), np.zeros(4000), TAPS, 0.05)
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    # a template that explains the power costs nothing; power it leaves is counted in units that grow with it
    assert residual_z([TAPS + 400.0], [400.0], TAPS, 0.05)[0] == 0.0
    assert residual_z([TAPS + 400.0], [0.0], TAPS, 0.05)[0] == pytest.approx(400 / np.sqrt(2 * TAPS))


def test_a_window_counts_its_most_powerful_span_against_its_best_template():
    """The residual reads the largest energy and the largest template SNR^2 of the known steps: a glitch at the
    window's edge counts even where the best template is elsewhere."""
    n = TAPS
    energy = np.array([[n + 10.0, n + 20.0, n + 500.0], [np.nan, n + 30.0, n + 5.0], [n, n, n]])
    rho2 = np.array([[1.0, 20.0, 4.0], [900.0, 25.0, 1.0], [5.0, 5.0, 5.0]])
    known = np.array([[True, True, True], [False, True, True], [False, False, False]])
    got = window_residual(energy, rho2, known, n, 0.1)
    assert got[0] == pytest.approx(480 / (np.sqrt(2 * n) + 2.0))
    assert got[1] == pytest.approx(5 / (np.sqrt(2 * n) + 2.5))  # the unknown step's 900 is not read
    assert np.isnan(got[2])
    c = Consistency(weight=2.0, threshold=3.0)
    assert np.array_equal(c.penalty([1.0, 4.0]), [0.0, 2.0]) and np.isnan(c.penalty([np.nan]))[0]
    with pytest.raises(ValueError, match="weight"):
        Consistency(weight=-1.0)


def _template_scorer(seed: int = 5):
    sc = small_model("factorized", seed=seed, channels=16, stem_channels=8, hidden=8, template_pairs=3,
                     template_taps=TAPS, template_after=40)
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((6, TAPS))
    sc.model.set_templates(f / np.linalg.norm(f, axis=1, keepdims=True))
    return sc


def _blip(n: int, at: int, snr: float, f0: float = 150.0, tau: float = 0.01) -> np.ndarray:
    t = (np.arange(n) - at) / RATE
    g = np.exp(-(t / tau) ** 2) * np.sin(2 * np.pi * f0 * t)
    return snr * g / np.linalg.norm(g)


def _rows(ss, fc, x, block):
    out = {}
    for a in range(0, x.shape[1], block):
        r = ss.process(fc.process(x[:, a:a + block]))
        if r is not None:
            for i in range(r[1].shape[1]):
                out[r[0] + i] = r[1][:, i]
    return out


def test_the_scorer_takes_each_detectors_own_penalty_off_every_row():
    """Rows with the test on are the rows without it minus the penalty of H1's window and of the L1 window the
    row pairs it with, each computed here from that window alone; the same whatever the blocks' sizes (the
    spans that straddle blocks); a loud blip in L1 is penalised at zero lag and wherever a slide takes it."""
    start = 1_000_000_000 * RATE + 40
    total, slide, k_slides = 20 * RATE, RATE, 3
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, total))
    blip_at = 9 * RATE + 300
    x[1] += _blip(total, blip_at, 40.0)
    x = x.astype(np.float32)
    cons = Consistency(weight=1.0, threshold=3.0, slope=0.05)
    rows = {}
    for name, c, block in (("off", None, 1500), ("on", cons, 1500), ("on, other blocks", cons, 3 * RATE + 7)):
        ss = SlideScorer(_template_scorer(), sample_rate_hz=RATE, stride_samples=STRIDE, slide_step_samples=slide,
                         n_slides=k_slides, consistency=c)
        rows[name] = _rows(ss, FakeConditioner(start), x, block)
    model = ss.scorer.model
    k, fs, rf, p = model.lag_steps, model.stride_samples, model.receptive_field_samples, model.template_pairs

    def z_of(ifo: int, g: int) -> float:
        """The window at grid index g's residual in one detector, from that window's samples alone (written out:
        the largest span energy less the largest template SNR^2, over the centre steps)."""
        s = g * STRIDE - start
        w = x[ifo, s:s + model.window_samples].astype(np.float64)
        with torch.inference_mode():
            f = model.encode(torch.from_numpy(x[ifo:ifo + 1, s:s + model.window_samples]))[0]
        rho2 = f[-p:].max(dim=0).values.double().numpy()
        c = np.concatenate([[0.0], np.cumsum(w * w)])
        end = np.arange(rho2.size) * fs + rf
        centre = slice(k, rho2.size - k)
        e, r = (c[end] - c[end - TAPS])[centre].max(), rho2[centre].max()
        return float((e - r - TAPS) / (np.sqrt(2 * TAPS) + cons.slope * r))

    sw = slide // STRIDE
    checked, blip_rows = 0, 0
    for g, off in rows["off"].items():
        on = rows["on"][g]
        assert np.array_equal(np.isnan(on), np.isnan(off))
        np.testing.assert_allclose(rows["on, other blocks"][g], on, rtol=1e-6, atol=1e-6, equal_nan=True)
        if g % 5 and not (blip_at - 2 * RATE < g * STRIDE - start < blip_at + RATE):
            continue  # every fifth window, and all around the blip
        for r in np.flatnonzero(np.isfinite(off)):
            want = cons.penalty(z_of(0, g)) + cons.penalty(z_of(1, g - r * sw))
            assert off[r] - on[r] == pytest.approx(want, rel=1e-4, abs=1e-4)
            checked += 1
            blip_rows += want > 5
    assert checked > 300
    # the blip's windows, at zero lag and in each slide that pairs them with H1
    assert blip_rows >= 4 * (k_slides + 1)
    # Gaussian noise windows seldom pay anything
    quiet = [rows["off"][g][0] - rows["on"][g][0] for g in rows["off"]
             if abs(g * STRIDE - start - blip_at) > 2 * RATE and np.isfinite(rows["off"][g][0])]
    assert len(quiet) > 100 and np.mean(np.array(quiet) > 0) < 0.05


def test_the_test_needs_a_template_branch():
    with pytest.raises(ValueError, match="ranking.consistency_weight.*template branch"):
        SlideScorer(small_model("factorized", channels=16, stem_channels=8, hidden=8), sample_rate_hz=RATE,
                    stride_samples=STRIDE, slide_step_samples=RATE, n_slides=1, consistency=Consistency(1.0))
    # off: any model
    SlideScorer(small_model("factorized", channels=16, stem_channels=8, hidden=8), sample_rate_hz=RATE,
                stride_samples=STRIDE, slide_step_samples=RATE, n_slides=1, consistency=Consistency(0.0))


def test_a_search_refuses_the_test_for_a_model_without_templates():
    from gwstream.daemon.errors import ConfigError
    from gwstream.daemon.proc.preflight import preflight
    from gwstream.models import WEIGHTS_DIR
    from gwstream.models.checkpoint import read_checkpoint_info

    path = str(WEIGHTS_DIR / "baseline.pt")
    assert read_checkpoint_info(path).hparams.get("template_pairs", 0) == 0
    linear = WhitenConfig(phase="linear")  # as it was trained
    cfg = Config(model=ModelConfig(path=path), whiten=linear, ranking=RankingConfig(consistency_weight=1.0))
    with pytest.raises(ConfigError, match="ranking.consistency_weight.*no template branch"):
        preflight(cfg, load_weights=False)
    preflight(Config(model=ModelConfig(path=path), whiten=linear), load_weights=False)


def test_the_test_is_part_of_a_backgrounds_identity(tmp_path):
    """A background made without the test is refused by a search with it (naming the setting), and one written
    before the test existed reads as made without it."""
    off = Config()
    on = Config(ranking=RankingConfig(consistency_weight=1.0))
    assert consistency(off).meta() == {"weight": 0.0} and consistency(on).on
    made_off = Background(128 * 10**9 // RATE, search_meta(off, "abc"))
    with pytest.raises(BackgroundMismatch, match="ranking.consistency_weight = 1.0"):
        Background(made_off.stride_ns, search_meta(on, "abc")).check_compatible(made_off)
    Background(made_off.stride_ns, search_meta(off, "abc")).check_compatible(made_off)
    # an older file: no consistency key in its meta
    old = {k: v for k, v in search_meta(off, "abc").items() if k != "consistency"}
    path = tmp_path / "old.h5"
    Background(made_off.stride_ns, old).save(path)
    loaded = Background.load(path)
    assert loaded.meta["consistency"] == {"weight": 0.0}
    with pytest.raises(BackgroundMismatch, match="consistency_weight"):
        Background(made_off.stride_ns, search_meta(on, "abc")).check_compatible(loaded)
