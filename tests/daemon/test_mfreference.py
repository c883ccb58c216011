"""Matched-filter reference: recovers a bank member's SNR, sensible on noise, shift-invariant, checks its inputs."""

from __future__ import annotations

import numpy as np
import pytest
from gwstream.daemon.bank import TemplateBank, one_waveform, place_bank
from gwstream.daemon.eval.matched_filter import MatchedFilter
from gwstream.daemon.train.trainset import NoisePool, WaveformBank, WindowMaker

#: intrinsic parameters (m1, m2, s1z, s2z) of the small test bank
PARAMS = [(40.0, 30.0, 0.5, 0.2), (25.0, 20.0, 0.0, 0.0), (14.0, 10.0, -0.3, 0.4), (48.0, 12.0, 0.7, 0.0)]
#: relative tolerance of noise-free SNR recovery
REL = 0.03


@pytest.fixture(scope="module")
def setup():
    m1, m2, s1, s2 = map(np.array, zip(*PARAMS))
    tb = TemplateBank.from_params(m1, m2, s1, s2)
    pool = NoisePool(seed=0, n_variants=2)
    white, taps = pool.stretch((3,), 32, np.random.default_rng(3))
    return tb, MatchedFilter(tb), pool, white, taps


def _member_maker(tb: TemplateBank, pool: NoisePool, k: int) -> WindowMaker:
    """A one-waveform signal bank holding exactly template ``k`` (both face-on polarisations)."""
    m1, m2, s1, s2 = PARAMS[k]
    p = {"mass1": m1, "mass2": m2, "spin1x": 0.0, "spin1y": 0.0, "spin1z": s1, "spin2x": 0.0, "spin2y": 0.0,
         "spin2z": s2, "inclination": 0.0, "coa_phase": 0.0}
    hp, hc = one_waveform((p, "IMRPhenomD", 20.0, 2048, 2.5, 0.5))
    np.testing.assert_allclose(hp, tb.h[k], rtol=0, atol=1e-6 * np.abs(hp).max())
    bank = WaveformBank(hp[None].astype(np.float32), hc[None].astype(np.float32), {}, tb.merger_index, 2048)
    return WindowMaker(bank, pool, stretch_s=32)


@pytest.mark.parametrize("k", [0, 2])
def test_recovers_bank_member_snr_noise_free(setup, k):
    tb, mf, pool, white, taps = setup
    maker = _member_maker(tb, pool, k)
    rng = np.random.default_rng(10 + k)
    x, _, _ = maker.from_stretch(np.zeros_like(white), taps, rng, 6, 6, snrs=np.full(6, 10.0))
    optimal = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2)))  # in-window network SNR
    rho, template, _ = mf.statistic(x, taps, return_argmax=True)
    assert np.all(rho <= optimal * (1 + 1e-3))  # Cauchy-Schwarz: never above the optimal SNR
    np.testing.assert_allclose(rho, optimal, rtol=REL)
    assert np.all(template == k)
    if k == 0:  # a heavy binary puts nearly all its SNR inside the window: the injected value comes back
        np.testing.assert_allclose(rho, 10.0, rtol=REL)


def test_time_shifts_inside_span_keep_the_snr(setup):
    tb, mf, pool, _, taps = setup
    maker = _member_maker(tb, pool, 1)
    sig = maker.whitened_signals(np.array([0]), taps, np.random.default_rng(5))[0]
    m = tb.merger_index
    positions = np.linspace(maker.span[0], maker.span[1], 7).astype(int)
    x = np.stack([sig[:, m - p:m - p + maker.window] for p in positions]).astype(np.float32)
    x *= 8.0 / np.sqrt((x[0].astype(np.float64) ** 2).sum())
    optimal = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2)))
    rho, _, merger = mf.statistic(x, taps, return_argmax=True)
    # a later merger shows more inspiral (more SNR in the window); the recovered fraction does not move
    assert optimal.max() / optimal.min() < 1.1
    fraction = rho / optimal
    assert fraction.max() - fraction.min() < 0.01 and fraction.min() > 1 - REL
    # the recovered merger moves with the signal (up to the detector's delay from the geocentre)
    np.testing.assert_allclose(np.diff(merger), np.diff(positions), atol=3)


def test_noise_distribution_is_sensible(setup):
    _, mf, _, white, taps = setup
    n = white.shape[1] // mf.window
    x = np.stack([white[:, i * mf.window:(i + 1) * mf.window] for i in range(min(n, 28))])
    rho = mf.statistic(x, taps)
    # one template at one time in two detectors: rho^2 ~ chi^2(4), mean rho ~ 1.9; maximising over
    # ~900 merger times, 43 L1 offsets and 4 templates lifts it, but a small bank stays below ~7
    assert rho.min() > 2.5
    assert 3.5 < np.median(rho) < 6.0
    assert rho.max() < 7.5


def test_batching_and_chunking_do_not_change_the_statistic(setup):
    tb, mf, _, white, taps = setup
    x = np.stack([white[:, i * 2048:(i + 1) * 2048] for i in range(5)])
    ref = mf.statistic(x, taps, batch=32)
    other = MatchedFilter(tb, template_chunk=1)
    filters = other.prepare(taps)
    np.testing.assert_allclose(other.statistic(x, filters=filters, batch=2), ref, rtol=1e-5)


def test_input_validation(setup):
    tb, mf, _, _, taps = setup
    x = np.zeros((2, 2, 2048), np.float32)
    with pytest.raises(ValueError, match=r"windows of shape \(2, 2, 1024\): expected \(n, 2, 2048\)"):
        mf.statistic(np.zeros((2, 2, 1024)), taps)
    with pytest.raises(ValueError, match="exactly one of taps"):
        mf.statistic(x)
    with pytest.raises(ValueError, match="exactly one of taps"):
        mf.statistic(x, taps, filters=mf.prepare(taps))
    with pytest.raises(ValueError, match=r"taps of shape \(2048,\): expected \(2, n_taps\)"):
        mf.prepare(taps[0])
    with pytest.raises(ValueError, match=r"merger_span_s = \(0.5, 1.5\) s"):
        MatchedFilter(tb, merger_span_s=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"filters for 1 templates"):
        mf.statistic(x, filters=MatchedFilter(tb.subset([0])).prepare(taps))
    with pytest.raises(ValueError, match="expected equal non-empty 1-d shapes"):
        TemplateBank.from_params([30.0, 20.0], [10.0])
    with pytest.raises(ValueError, match=r"aligned spins up to 1.0: expected \|spin\| < 1"):
        TemplateBank.from_params([30.0], [10.0], [1.0], [0.0])
    with pytest.raises(ValueError, match=r"minimal_match = 1.2: expected in \(0, 1\)"):
        place_bank(taps=taps[0], minimal_match=1.2)
