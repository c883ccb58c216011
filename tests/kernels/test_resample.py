"""Decimation against scipy.signal.resample_poly; filter specification; streaming properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from gwstream.kernels import resample as kres
from hypothesis import given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("n", [16384 * 2, 16384 * 2 + 5])
def test_decimate_matches_resample_poly_with_the_same_filter(factor, n, tol):
    rng = np.random.default_rng(20 + factor)
    x = rng.standard_normal((2, n))
    taps = kres.antialias_taps(factor)
    ref = scipy.signal.resample_poly(x, 1, factor, axis=-1, window=taps)
    y = kres.decimate(x, factor)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol.RESAMPLE_VS_SCIPY_ATOL)
    np.testing.assert_allclose(kres.decimate(x[0].astype(np.float32), factor), scipy.signal.resample_poly(
        x[0].astype(np.float32).astype(np.float64), 1, factor, window=taps), rtol=0, atol=tol.RESAMPLE_VS_SCIPY_ATOL)


def test_in_band_content_matches_scipy_default_resample_poly():
    # scipy's own default filter differs only near Nyquist: compare below 0.5 x output Nyquist
    rng = np.random.default_rng(21)
    x = rng.standard_normal(16384 * 8)
    y = kres.decimate(x, 8)
    ref = scipy.signal.resample_poly(x, 1, 8)
    sos = scipy.signal.butter(8, 400, fs=2048, output="sos")
    a = scipy.signal.sosfiltfilt(sos, y)[512:-512]
    b = scipy.signal.sosfiltfilt(sos, ref)[512:-512]
    assert np.std(a - b) < 2e-3 * np.std(b)


@pytest.mark.parametrize("factor", [2, 8, 16])
def test_filter_meets_documented_passband_and_stopband(factor):
    taps = kres.antialias_taps(factor)
    assert taps.size % 2 == 1 and ((taps.size - 1) // 2) % factor == 0
    assert np.allclose(taps, taps[::-1]) and taps.sum() == pytest.approx(1.0, abs=1e-9)
    w, h = scipy.signal.freqz(taps, worN=2**16, fs=2.0 * factor)  # output Nyquist = 1
    ripple = 10 ** (-kres.STOPBAND_ATTENUATION_DB / 20)
    assert np.max(np.abs(np.abs(h[w <= kres.PASSBAND_FRACTION]) - 1)) <= ripple
    assert 20 * np.log10(np.max(np.abs(h[w >= 1.0]))) <= -kres.STOPBAND_ATTENUATION_DB


def test_passband_sinusoid_is_preserved():
    t = np.arange(16384 * 4) / 16384
    x = np.sin(2 * np.pi * 300.0 * t + 0.3)
    y = kres.decimate(x, 8)
    ref = np.sin(2 * np.pi * 300.0 * t[::8] + 0.3)
    np.testing.assert_allclose(y[200:-200], ref[200:-200], atol=2e-4)


@SETTINGS
@given(chunks=st.lists(st.integers(0, 3000), min_size=1, max_size=15), factor=st.sampled_from([1, 3, 8]))
def test_streaming_decimation_is_chunk_size_invariant(chunks, factor):
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 20000))
    whole, _ = kres.decimate_stream(x, factor, kres.new_state(factor, 2))
    state = kres.new_state(factor, 2)
    out, i = [], 0
    for n in chunks + [x.shape[1]]:
        y, state = kres.decimate_stream(x[:, i:i + n], factor, state)
        out.append(y)
        i += n
        if i >= x.shape[1]:
            break
    np.testing.assert_array_equal(np.concatenate(out, axis=1), whole)


@SETTINGS
@given(shift_out=st.integers(1, 300))
def test_time_shift_of_input_shifts_output(shift_out):
    rng = np.random.default_rng(23)
    x = rng.standard_normal(8 * 4096)
    y = kres.decimate(x, 8)
    ys = kres.decimate(np.concatenate([np.zeros(8 * shift_out), x]), 8)
    np.testing.assert_allclose(ys[shift_out:shift_out + y.size], y, rtol=0, atol=1e-12)


def test_stream_output_is_delayed_resample_poly(tol):
    rng = np.random.default_rng(24)
    x = rng.standard_normal(16384 * 2)
    y, _ = kres.decimate_stream(x, 8, kres.new_state(8))
    d = kres.delay_samples(8)
    ref = scipy.signal.resample_poly(x, 1, 8, window=kres.antialias_taps(8))
    np.testing.assert_allclose(y[d:], ref[: y.size - d], rtol=0, atol=tol.RESAMPLE_VS_SCIPY_ATOL)


def test_factor_one_is_identity_and_errors():
    x = np.arange(10.0)
    np.testing.assert_array_equal(kres.decimate(x, 1), x)
    with pytest.raises(ValueError, match="factor = 2.5"):
        kres.decimate(x, 2.5)
    with pytest.raises(ValueError, match="factor = 0"):
        kres.antialias_taps(0)
    with pytest.raises(ValueError, match="state history has shape"):
        kres.decimate_stream(np.zeros((2, 10)), 8, kres.new_state(8, 1))
