"""PSD kernels against scipy.signal.welch and gwpy TimeSeries.psd; the streaming estimator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from gwstream.kernels import psd as kpsd
from gwstream.kernels import psd_stream as kps

FS = 2048


@pytest.mark.parametrize("average", ["median", "mean"])
@pytest.mark.parametrize("overlap", [0.5, 0.0, 0.75])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_welch_matches_scipy(average, overlap, dtype, tol):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, FS * 33 + 17)).astype(dtype) * 3.0 + 0.5
    freqs, psd = kpsd.welch(x, FS, 2.0, overlap=overlap, average=average)
    nper = 2 * FS
    f_ref, p_ref = scipy.signal.welch(
        x.astype(np.float64), fs=FS, window="hann", nperseg=nper, noverlap=int(round(overlap * nper)),
        detrend="constant", scaling="density", average=average, axis=-1,
    )
    np.testing.assert_allclose(freqs, f_ref, rtol=0, atol=0)
    np.testing.assert_allclose(psd, p_ref, rtol=tol.PSD_VS_SCIPY_RTOL)


def test_welch_matches_gwpy(coloured_noise, tol):
    from gwpy.timeseries import TimeSeries

    rng = np.random.default_rng(2)
    x, _, _ = coloured_noise(rng, FS * 64, FS)
    freqs, psd = kpsd.welch(x, FS, 4.0, overlap=0.5, average="median")
    ref = TimeSeries(x, sample_rate=FS).psd(4, 2, method="median")
    np.testing.assert_allclose(freqs, ref.frequencies.value)
    np.testing.assert_allclose(psd, ref.value, rtol=tol.PSD_VS_GWPY_RTOL)
    ref_mean = TimeSeries(x, sample_rate=FS).psd(4, 2, method="welch")
    np.testing.assert_allclose(kpsd.welch(x, FS, 4.0, average="mean")[1], ref_mean.value, rtol=tol.PSD_VS_GWPY_RTOL)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 10, 31, 32])
def test_median_bias_matches_scipy(n):
    from scipy.signal._spectral_py import _median_bias

    assert kpsd.median_bias(n) == pytest.approx(_median_bias(n), rel=1e-14)


def test_welch_errors_name_the_value():
    x = np.zeros(100)
    with pytest.raises(ValueError, match="100 samples"):
        kpsd.welch(x, FS, 1.0)
    with pytest.raises(ValueError, match="average = 'max'"):
        kpsd.welch(np.zeros(FS * 4), FS, 1.0, average="max")
    with pytest.raises(ValueError, match="fftlength_s = 0.0001"):
        kpsd.welch(np.zeros(FS * 4), FS, 0.0001)
    with pytest.raises(ValueError, match="overlap = 1"):
        kpsd.welch(np.zeros(FS * 4), FS, 1.0, overlap=1)


def _stream(est, x, valid, start, chunks):
    i = 0
    results = []
    for n in chunks:
        results.append(est.update(x[:, i:i + n], valid[i:i + n], start + i))
        i += n
    if i < x.shape[1]:
        results.append(est.update(x[:, i:], valid[i:], start + i))
    return results


def test_streaming_estimate_equals_welch_on_the_same_segments():
    rng = np.random.default_rng(3)
    n = FS * 20
    x = rng.standard_normal((2, n))
    est = kps.StreamingWelch(2, FS, 2.0, psd_length_s=20.0, refresh_s=1.0, min_valid_s=20.0)
    start = 10 * FS * 1000  # on the 1-s segment grid
    _stream(est, x, np.ones(n, bool), start, [1000, 3, 5000, 777, FS * 3])
    assert est.psd is not None
    np.testing.assert_allclose(est.psd, kpsd.welch(x, FS, 2.0)[1], rtol=1e-12)


def test_streaming_skips_invalid_segments():
    rng = np.random.default_rng(4)
    n = FS * 24
    x = rng.standard_normal((1, n))
    valid = np.ones(n, bool)
    valid[FS * 10 + 5] = False
    x[0, FS * 10 + 5] = 1e6  # a glitch that must not reach the estimate
    est = kps.StreamingWelch(1, FS, 2.0, psd_length_s=24.0, refresh_s=1.0, min_valid_s=10.0)
    _stream(est, x, valid, 0, [FS] * 24)
    assert est.psd is not None and est.psd.max() < 1.0
    # segments [9,11), [10,12) (1-s step) touch the bad sample: 23 - 2 = 21 used
    assert est.n_segments_available() == 21


def test_streaming_needs_warmup_after_long_gap():
    rng = np.random.default_rng(5)
    est = kps.StreamingWelch(1, FS, 1.0, psd_length_s=8.0, refresh_s=1.0)
    x = rng.standard_normal((1, FS * 8))
    up = _stream(est, x, np.ones(FS * 8, bool), 0, [FS] * 8)
    assert up[-1].accepted and sum(u.accepted for u in up) == 1
    est.drop_psd()
    # after a gap of 100 s, old segments are out of the trailing span: no estimate for 7 s
    up = _stream(est, x[:, : FS * 7], np.ones(FS * 7, bool), FS * 108, [FS] * 7)
    assert not any(u.estimated for u in up) and est.psd is None
    up = est.update(x[:, :FS], np.ones(FS, bool), FS * 115)
    assert up.accepted and est.psd is not None


def test_streaming_rejects_implausible_jump_and_keeps_last_psd():
    rng = np.random.default_rng(6)
    est = kps.StreamingWelch(
        1, FS, 1.0, psd_length_s=4.0, refresh_s=1.0, max_change=0.2, accept_after_rejections=3
    )
    _stream(est, rng.standard_normal((1, FS * 4)), np.ones(FS * 4, bool), 0, [FS] * 4)
    loud = 3.0 * rng.standard_normal((1, FS * 8))  # sensitivity drops to 1/3: change 0.67
    outcomes = []
    for k in range(8):
        before = est.psd.copy()
        u = est.update(loud[:, k * FS:(k + 1) * FS], np.ones(FS, bool), FS * (4 + k))
        outcomes.append(u)
        if u.rejected:
            assert u.change > 0.2
            np.testing.assert_array_equal(est.psd, before)  # the last good PSD is kept
    n_rej = sum(u.rejected for u in outcomes)
    assert n_rej == 3  # three in a row, then the detector has really changed: accepted
    last_rej = max(i for i, u in enumerate(outcomes) if u.rejected)
    assert outcomes[last_rej + 1].accepted
    assert kps.sensitivity_proxy(est.freqs, est.psd)[0] == pytest.approx(
        kps.sensitivity_proxy(est.freqs, kpsd.welch(loud[:, 4 * FS:], FS, 1.0)[1])[0], rel=0.05
    )


def test_streaming_keeps_the_psd_while_estimates_stay_within_min_change():
    """PyCBC Live's psd_recalculate_difference: a similar estimate does not replace the PSD; a real change does."""
    rng = np.random.default_rng(8)
    est = kps.StreamingWelch(1, FS, 1.0, psd_length_s=8.0, refresh_s=1.0, max_change=0.5, min_change=0.1)
    _stream(est, rng.standard_normal((1, FS * 8)), np.ones(FS * 8, bool), 0, [FS] * 8)
    first = est.psd.copy()
    quiet = _stream(est, rng.standard_normal((1, FS * 8)), np.ones(FS * 8, bool), FS * 8, [FS] * 8)
    assert all(u.estimated and not u.accepted and not u.rejected and u.change < 0.1 for u in quiet)
    np.testing.assert_array_equal(est.psd, first)
    louder = _stream(est, 1.3 * rng.standard_normal((1, FS * 8)), np.ones(FS * 8, bool), FS * 16, [FS] * 8)
    assert any(u.accepted for u in louder) and not any(u.rejected for u in louder)
    assert kps.sensitivity_proxy(est.freqs, est.psd)[0] < 0.9 * kps.sensitivity_proxy(est.freqs, first)[0]
    with pytest.raises(ValueError, match="min_change"):
        kps.StreamingWelch(1, FS, 1.0, psd_length_s=8.0, max_change=0.2, min_change=0.2)


def test_streaming_snapshot_restore_roundtrip():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, FS * 12))
    a = kps.StreamingWelch(2, FS, 1.0, psd_length_s=4.0, refresh_s=1.0)
    _stream(a, x[:, : FS * 6], np.ones(FS * 6, bool), 0, [FS] * 6)
    snap = a.snapshot()
    b = kps.StreamingWelch(2, FS, 1.0, psd_length_s=4.0, refresh_s=1.0)
    b.restore(snap)
    _stream(a, x[:, FS * 6:], np.ones(FS * 6, bool), FS * 6, [FS] * 6)
    _stream(b, x[:, FS * 6:], np.ones(FS * 6, bool), FS * 6, [FS] * 6)
    np.testing.assert_array_equal(a.psd, b.psd)


def test_sensitivity_proxy_scales_as_inverse_asd():
    f = np.linspace(0, 1024, 4097)
    p = np.ones(f.size) * 1e-46
    s1 = kps.sensitivity_proxy(f, p)
    assert kps.sensitivity_proxy(f, 4 * p) == pytest.approx(s1 / 2)


def test_welch_single_precision_matches_scipy(coloured_noise, tol):
    rng = np.random.default_rng(8)
    x, _, _ = coloured_noise(rng, FS * 64, FS, channels=2)  # strain ~1e-21: float32 powers need the prescale
    for average in ("median", "mean"):
        freqs, psd = kpsd.welch(x, FS, 4.0, average=average, precision="single")
        f_ref, p_ref = scipy.signal.welch(x, fs=FS, nperseg=4 * FS, average=average, axis=-1)
        np.testing.assert_array_equal(freqs, f_ref)
        assert psd.dtype == np.float64
        np.testing.assert_allclose(psd[:, 1:], p_ref[:, 1:], rtol=tol.PSD_SINGLE_VS_SCIPY_RTOL)


@pytest.mark.parametrize("precision", ["double", "single"])
def test_welch_is_independent_of_thread_count(precision):
    # each thread handles whole segments and whole frequency rows: bit-identical
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, FS * 40 + 3))
    one = kpsd.welch(x, FS, 1.0, precision=precision, workers=1)[1]
    for workers in (2, 3, -1):
        np.testing.assert_array_equal(kpsd.welch(x, FS, 1.0, precision=precision, workers=workers)[1], one)


@pytest.mark.parametrize("overlap", [0.5, 0.3])
def test_welch_one_dimensional_and_uneven_step(overlap, tol):
    # a step that does not divide the segment takes the general segment-mean path
    rng = np.random.default_rng(10)
    x = rng.standard_normal(FS * 20 + 11) + 2.0
    freqs, psd = kpsd.welch(x, FS, 1.0, overlap=overlap)
    nper = FS
    ref = scipy.signal.welch(x, fs=FS, nperseg=nper, noverlap=int(round(overlap * nper)), average="median")[1]
    assert psd.shape == freqs.shape
    np.testing.assert_allclose(psd, ref, rtol=tol.PSD_VS_SCIPY_RTOL)


def test_welch_rejects_bad_precision_and_workers():
    with pytest.raises(ValueError, match="precision = 'half'"):
        kpsd.welch(np.zeros(FS * 4), FS, 1.0, precision="half")
    with pytest.raises(ValueError, match="workers = 0"):
        kpsd.welch(np.zeros(FS * 4), FS, 1.0, workers=0)


@pytest.mark.parametrize("shape", [(31, 2, 4097), (2, 30, 4097), (1, 5), (2, 3, 1, 7), (4, 6)])
def test_median_of_segments_is_numpys_bit_for_bit(shape):
    from gwstream.kernels.psd import _median_segments

    pg = np.random.default_rng(sum(shape)).exponential(size=shape)
    assert np.array_equal(_median_segments(pg), np.median(pg, axis=-2))


@pytest.mark.parametrize("m", [0, 1, 2, 3, 10, 255, 256, 4096, 131072])
def test_hann_is_scipys_bit_for_bit(m):
    """The search does not import scipy.signal; its Hann windows are still scipy's, exactly."""
    hann = kpsd.hann
    np.testing.assert_array_equal(hann(m), scipy.signal.get_window("hann", m) if m else np.ones(0))
    np.testing.assert_array_equal(hann(m, sym=True), scipy.signal.windows.hann(m, sym=True))
    if m == 10:  # the whitening filter's corner taper
        np.testing.assert_array_equal(hann(m, sym=True), scipy.signal.windows.tukey(10, alpha=1.0))
