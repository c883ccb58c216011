"""The frequency-domain template correlation and the slid best-template kernel against plain numpy."""

import numpy as np
import pytest

from gwstream.kernels.coinc import best_coincident
from gwstream.kernels.correlate import filter_spectra, fold_product


@pytest.mark.parametrize("stride,taps,n_out", [(8, 64, 40), (4, 33, 17), (1, 16, 10)])
def test_fold_product_gives_the_decimated_correlation(stride, taps, n_out):
    rng = np.random.default_rng(stride + taps)
    p = 3
    g = rng.standard_normal((p, taps)) + 1j * rng.standard_normal((p, taps))
    reads = stride * (n_out - 1) + taps
    m = -(-reads // stride)
    nfft = stride * m
    x = rng.standard_normal((2, reads))
    want = np.stack([[[np.sum(g[k] * xb[stride * t:stride * t + taps]) for t in range(n_out)] for k in range(p)]
                     for xb in x])
    gr, gi = filter_spectra(g, stride, nfft)
    spec = np.fft.fft(x, n=nfft).reshape(2, stride, m)
    yr, yi = np.empty((2, p, m)), np.empty((2, p, m))
    fold_product(spec.real.copy(), spec.imag.copy(), gr, gi, yr, yi)
    got = np.fft.ifft(yr + 1j * yi, axis=-1)[..., :n_out]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_filter_spectra_rejects_bad_geometry():
    with pytest.raises(ValueError, match="multiple of stride"):
        filter_spectra(np.ones((2, 8), complex), 3, 16)
    with pytest.raises(ValueError, match="nfft >= taps"):
        filter_spectra(np.ones((2, 8), complex), 2, 4)
    with pytest.raises(ValueError, match=r"\(P, taps\)"):
        filter_spectra(np.ones(8, complex), 2, 8)


def test_best_coincident_is_the_max_of_the_sums_nan_included():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 30)).astype(np.float32)
    b = rng.standard_normal((5, 50)).astype(np.float32)
    a[2, 7] = np.nan
    offsets = np.array([0, 20, 35, 49])  # the last two wrap around the ring
    got = best_coincident(a, b, offsets)
    cols = (offsets[:, None] + np.arange(30)) % 50
    want = np.max(a[None] + b[:, cols].transpose(1, 0, 2), axis=1)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got[:, 7]).all()
    assert np.array_equal(np.nan_to_num(got), np.nan_to_num(want))
    with pytest.raises(ValueError, match="offsets"):
        best_coincident(a, b, np.array([50]))
    with pytest.raises(ValueError, match="one dtype"):
        best_coincident(a, b.astype(np.float64), offsets)
