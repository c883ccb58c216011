"""Whitening against gwpy TimeSeries.whiten and PyCBC's inverse_spectrum_truncation path; properties."""

from __future__ import annotations

import numpy as np
import pytest
from gwstream.kernels import psd as kpsd
from gwstream.kernels import whiten as kwh
from hypothesis import given, settings
from hypothesis import strategies as st

FS = 2048
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


@pytest.fixture(scope="module")
def noise_256s(coloured_noise):
    """256 s of aLIGO-coloured noise and its Welch PSD (median, 4 s)."""
    x, _, _ = coloured_noise(np.random.default_rng(11), FS * 256, FS)
    freqs, psd = kpsd.welch(x, FS, 4.0)
    return x, freqs, psd


def _interior(n_taps=FS):
    return slice(2 * n_taps, -2 * n_taps)


def test_exact_gwpy_filter_matches_gwpy_whiten(noise_256s, tol):
    from gwpy.frequencyseries import FrequencySeries
    from gwpy.timeseries import TimeSeries

    x, freqs, psd = noise_256s
    ref = TimeSeries(x, sample_rate=FS).whiten(
        asd=FrequencySeries(np.sqrt(psd), frequencies=freqs), fduration=1.0, highpass=20.0
    ).value
    y = kwh.whiten(x, FS, freqs, psd, 1.0, 20.0, design_length_s=x.size / FS, extrapolate=False)
    s = _interior()
    np.testing.assert_allclose(y[s], ref[s], rtol=0, atol=tol.WHITEN_VS_GWPY_EXACT_ATOL)
    # default design: the long-data limit of the same filter
    y_def = kwh.whiten(x, FS, freqs, psd, 1.0, 20.0)
    assert np.std(y_def[s] - ref[s]) < tol.WHITEN_DEFAULT_VS_GWPY_RMS


def test_matches_pycbc_inverse_spectrum_truncation_path(noise_256s, tol):
    from pycbc.psd import interpolate, inverse_spectrum_truncation
    from pycbc.types import FrequencySeries, TimeSeries

    x, freqs, psd = noise_256s
    ts = TimeSeries(x, delta_t=1.0 / FS)
    p = interpolate(FrequencySeries(psd, delta_f=freqs[1]), ts.delta_f)
    p = inverse_spectrum_truncation(p, FS, low_frequency_cutoff=20.0, trunc_method="hann")
    ref = (ts.to_frequencyseries() / p**0.5).to_timeseries().numpy() * np.sqrt(2.0 / FS)
    y = kwh.whiten(x, FS, freqs, psd, 1.0, 20.0)
    s = _interior()
    assert np.std(y[s] - ref[s]) < tol.WHITEN_VS_PYCBC_RMS
    assert np.std(ref[s]) == pytest.approx(np.std(y[s]), rel=tol.WHITEN_VS_PYCBC_RMS)


@pytest.mark.parametrize("phase", ["linear", "minimum"])
def test_whitened_coloured_noise_has_zero_mean_unit_variance(noise_256s, phase, tol):
    x, freqs, psd = noise_256s
    y, valid = kwh.whiten(x, FS, freqs, psd, 1.0, 20.0, phase=phase, return_valid=True)
    assert y.shape == x.shape and valid.sum() == x.size - (FS - 1)
    assert abs(np.mean(y[valid])) < tol.UNIT_STD_ATOL
    assert np.std(y[valid]) == pytest.approx(1.0, abs=tol.UNIT_STD_ATOL)


@SETTINGS
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-23, 1e-18))
def test_unit_variance_for_any_colour_and_scale(seed, scale, tol):
    # random smooth PSD shape over 3 decades, estimated from the data itself
    rng = np.random.default_rng(seed)
    n = FS * 64
    f = np.fft.rfftfreq(n, 1 / FS)
    knots = np.exp(rng.uniform(-3.5, 3.5, 8))
    shape = np.interp(np.log1p(f), np.linspace(0, np.log1p(FS / 2), 8), knots)
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * np.sqrt(shape)
    x = np.fft.irfft(spec, n) * scale
    freqs, psd = kpsd.welch(x, FS, 4.0)
    y, valid = kwh.whiten(x, FS, freqs, psd, 1.0, 20.0, return_valid=True)
    assert np.std(y[valid]) == pytest.approx(1.0, abs=tol.UNIT_STD_ATOL)


@SETTINGS
@given(
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=12),
    phase=st.sampled_from(["linear", "minimum"]),
)
def test_streaming_whitening_is_chunk_size_invariant(noise_256s, chunks, phase, tol):
    x, freqs, psd = noise_256s
    x = np.stack([x[: FS * 8], x[FS * 8: FS * 16]])
    taps = kwh.design_fir(FS, freqs, np.stack([psd, psd]), phase=phase)
    whole, _ = kwh.convolve_stream(x, taps, kwh.new_history(FS, 2))
    hist = kwh.new_history(FS, 2)
    out, i = [], 0
    for n in chunks + [x.shape[1]]:
        y, hist = kwh.convolve_stream(x[:, i:i + n], taps, hist)
        out.append(y)
        i += n
        if i >= x.shape[1]:
            break
    np.testing.assert_allclose(np.concatenate(out, axis=1), whole, rtol=0, atol=tol.CHUNK_ATOL * np.std(whole))


def test_long_input_overlap_save_matches_direct_convolution(tol):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(3 * 2**16 + 123)
    taps = rng.standard_normal(FS)
    y, _ = kwh.convolve_stream(x, taps, kwh.new_history(FS))
    ref = np.convolve(x, taps)[: x.size]
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol.CHUNK_ATOL * np.std(ref))


@SETTINGS
@given(shift=st.integers(1, 4 * FS))
def test_time_shift_of_input_shifts_output(noise_256s, shift, tol):
    x, freqs, psd = noise_256s
    x = x[: FS * 16]
    y = kwh.whiten(x, FS, freqs, psd)
    xs = np.concatenate([np.zeros(shift), x])[: x.size]
    ys = kwh.whiten(xs, FS, freqs, psd)
    s = slice(FS, x.size - shift - FS)
    np.testing.assert_allclose(ys[shift:][s], y[s], rtol=0, atol=tol.CHUNK_ATOL * np.std(y))


def _chirp(n, t_merge_s, m_chirp_msun):
    """Newtonian chirp h(t) ~ f(t)^(2/3) cos(phi), from 25 Hz, ending at ~ISCO-like 300 Hz."""
    t = np.arange(n) / FS
    tau = np.clip(t_merge_s - t, 1e-4, None)
    mc = m_chirp_msun * 4.925491e-6  # s
    f = (5.0 / 256.0 / tau) ** (3.0 / 8.0) / (np.pi * mc ** (5.0 / 8.0))
    phi = -2.0 * (tau / (5.0 * mc)) ** (5.0 / 8.0)
    on = (f > 25) & (f < 300) & (t < t_merge_s)
    h = np.where(on, (f / 100.0) ** (2.0 / 3.0) * np.cos(phi), 0.0)
    # short taper at the end keeps the peak at the last (loudest) cycles
    return h * 1e-21, t[on][-1]


@SETTINGS
@given(t_merge=st.floats(6.0, 10.0), mc=st.floats(8.0, 30.0))
def test_injected_chirp_peak_time_survives_whitening(noise_256s, t_merge, mc, tol):
    from scipy.signal import hilbert

    _, freqs, psd = noise_256s
    n = FS * 16
    h, t_end = _chirp(n, t_merge, mc)
    wh = kwh.whiten(h, FS, freqs, psd)
    env = np.abs(hilbert(wh))
    t_peak = np.argmax(env) / FS
    env_raw_peak = np.argmax(np.abs(hilbert(h))) / FS
    assert abs(t_peak - env_raw_peak) < tol.CHIRP_PEAK_S + 1.0 / 300
    assert abs(t_peak - t_end) < 0.02


def test_minimum_phase_has_no_lookahead_and_same_magnitude(noise_256s):
    _, freqs, psd = noise_256s
    lin = kwh.design_fir(FS, freqs, psd)
    mp = kwh.design_fir(FS, freqs, psd, phase="minimum")
    assert kwh.lookahead_samples(FS, "minimum") == 0 and kwh.lookahead_samples(FS) == FS // 2 - 1
    # energy concentrated at the start (causal, minimum phase) vs at the centre
    e = np.cumsum(mp**2) / np.sum(mp**2)
    assert e[FS // 8] > 0.5
    h_lin = np.abs(np.fft.rfft(lin, 8 * FS))
    h_mp = np.abs(np.fft.rfft(mp, 8 * FS))
    band = (np.fft.rfftfreq(8 * FS, 1 / FS) > 30) & (np.fft.rfftfreq(8 * FS, 1 / FS) < 900)
    assert np.median(np.abs(h_mp[band] / h_lin[band] - 1)) < 0.02


def test_errors_name_the_value(noise_256s):
    _, freqs, psd = noise_256s
    with pytest.raises(ValueError, match="fduration_s = 0.0007"):
        kwh.design_fir(FS, freqs, psd, fduration_s=0.0007)
    with pytest.raises(ValueError, match="phase = 'zero'"):
        kwh.design_fir(FS, freqs, psd, phase="zero")
    with pytest.raises(ValueError, match="highpass_hz = 2000"):
        kwh.design_fir(FS, freqs, psd, highpass_hz=2000.0)
    with pytest.raises(ValueError, match="psd_freqs span"):
        kwh.design_fir(FS, freqs[:100], psd[:100])
    with pytest.raises(ValueError, match="history has shape"):
        kwh.convolve_stream(np.zeros(10), np.ones(8), np.zeros(3))


def test_single_precision_whitening_matches_double(noise_256s, tol):
    x, freqs, psd = noise_256s
    x2 = np.stack([x, x[::-1].copy()])
    y64 = kwh.whiten(x2, FS, freqs, psd, 1.0, 20.0)
    y32 = kwh.whiten(x2, FS, freqs, psd, 1.0, 20.0, precision="single")
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    np.testing.assert_allclose(y32, y64, rtol=0, atol=tol.WHITEN_SINGLE_VS_DOUBLE_ATOL)
    # float32 input is not upcast on the single-precision path and gives the same output to float32 rounding
    y32_in = kwh.whiten(x2.astype(np.float32), FS, freqs, psd, 1.0, 20.0, precision="single")
    np.testing.assert_allclose(y32_in, y64, rtol=0, atol=tol.WHITEN_SINGLE_VS_DOUBLE_ATOL)


@SETTINGS
@given(chunks=st.lists(st.integers(1, 40000), min_size=1, max_size=6), workers=st.sampled_from([1, 2, 3]))
def test_single_precision_streaming_is_chunk_size_invariant(noise_256s, chunks, workers, tol):
    x, freqs, psd = noise_256s
    x = np.stack([x[: FS * 40], x[FS * 40: FS * 80]])
    taps = kwh.design_fir(FS, freqs, np.stack([psd, psd]))
    whole, _ = kwh.convolve_stream(x, taps, kwh.new_history(FS, 2))
    hist = kwh.new_history(FS, 2)
    out, i = [], 0
    for n in chunks + [x.shape[1]]:
        y, hist = kwh.convolve_stream(x[:, i:i + n], taps, hist, precision="single", workers=workers)
        assert y.dtype == np.float32
        out.append(y)
        i += n
        if i >= x.shape[1]:
            break
    np.testing.assert_allclose(np.concatenate(out, axis=1), whole, rtol=0, atol=tol.WHITEN_SINGLE_VS_DOUBLE_ATOL)


def test_threads_give_identical_output(noise_256s):
    # each thread filters whole blocks with the same arithmetic: bit-identical
    x, freqs, psd = noise_256s
    for precision in ("double", "single"):
        one = kwh.whiten(x, FS, freqs, psd, precision=precision, workers=1)
        np.testing.assert_array_equal(kwh.whiten(x, FS, freqs, psd, precision=precision, workers=2), one)


def test_single_block_equals_many_blocks(tol):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 5 * 2**13 + 7))
    taps = rng.standard_normal((2, 256))
    hist = rng.standard_normal((2, 255))
    ref = np.stack([np.convolve(np.concatenate([hist[c], x[c]]), taps[c])[255:255 + x.shape[1]] for c in range(2)])
    for block_nfft in (2**10, 2**13, 2**17):
        y, new_hist = kwh.convolve_stream(x, taps, hist, block_nfft=block_nfft)
        np.testing.assert_allclose(y, ref, rtol=0, atol=tol.CHUNK_ATOL * np.std(ref))
        np.testing.assert_array_equal(new_hist, x[:, -255:])
    with pytest.raises(ValueError, match="block_nfft = 255"):
        kwh.convolve_stream(x, taps, hist, block_nfft=255)
