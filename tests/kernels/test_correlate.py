"""The frequency-domain template correlation and the slid best-template kernel against plain numpy."""

import numpy as np
import pytest
from gwstream.kernels.coinc import TOP, best_coincident, best_coincident_blocks, top_templates
from gwstream.kernels.correlate import energies, filter_spectra, fold_product


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
    y = np.empty((2, p, m), complex)
    fold_product(spec.real.copy(), spec.imag.copy(), gr, gi, y)
    got = np.fft.ifft(y, axis=-1)[..., :n_out]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_fold_product_in_float32_and_energies_give_the_same_bits_as_plain_arithmetic():
    """The fold in float32 is its sums over r in order, each product rounded (no fused multiply-add), and the
    energy kernel is torch's square-and-add, bit for bit, energies written through a strided view."""
    import torch

    rng = np.random.default_rng(4)
    p, s, m, nb = 7, 8, 48, 3
    xr, xi = (rng.standard_normal((nb, s, m)).astype(np.float32) for _ in range(2))
    gr, gi = (rng.standard_normal((p, s, m)).astype(np.float32) for _ in range(2))
    yr, yi = np.zeros((nb, p, m), np.float32), np.zeros((nb, p, m), np.float32)
    for r in range(s):  # the kernel's order of operations, in numpy float32
        yr += xr[:, None, r] * gr[None, :, r] - xi[:, None, r] * gi[None, :, r]
        yi += xr[:, None, r] * gi[None, :, r] + xi[:, None, r] * gr[None, :, r]
    y = np.empty((nb, p, m), np.complex64)
    fold_product(xr, xi, gr, gi, y)
    assert np.array_equal(y.real, yr) and np.array_equal(y.imag, yi)
    z = torch.fft.ifft(torch.from_numpy(y[1]), dim=-1)
    out = torch.zeros((p, 3 * 32))
    energies(z.numpy(), out[:, 32:64].numpy())
    zr = torch.view_as_real(z[:, :32])
    assert torch.equal(out[:, 32:64], zr[..., 0].square() + zr[..., 1].square())
    assert not out[:, :32].any() and not out[:, 64:].any()


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


def _block_max(a, b, offsets, g):
    return best_coincident(a, b, offsets).reshape(offsets.size, -1, g).max(axis=-1)


@pytest.mark.parametrize("p", [1, 5, TOP, 3 * TOP])
def test_best_coincident_blocks_equals_the_block_maxima_bit_for_bit(p):
    """The pruned kernel (kept top lists, Fagin's threshold) gives the block maxima of the plain one exactly:
    templates fewer and more than the lists keep, correlated neighbours, wrapping slides, NaN blocks."""
    rng = np.random.default_rng(p)
    raw = rng.chisquare(2, (p + 4, 400))
    a = np.stack([raw[k:k + 5, :320].mean(axis=0) for k in range(p)]).astype(np.float32) * 3  # neighbours alike
    b = np.stack([raw[k:k + 5].mean(axis=0) for k in range(p)]).astype(np.float32)[:, ::-1].copy() * 3
    a[p // 2, 37] = np.nan
    b[0, 211] = np.nan
    offsets = np.array([0, 13, 80, 150, 399, 255])  # the last three wrap around the 400-step ring
    want = _block_max(a, b, offsets, 16)
    got = best_coincident_blocks(a, b, offsets, 16)
    assert np.isnan(want).any() and (~np.isnan(want)).any()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.nan_to_num(got), np.nan_to_num(want))
    assert np.array_equal(best_coincident_blocks(a, b, offsets, 16, b_top=top_templates(b)), got, equal_nan=True)


def test_best_coincident_blocks_visits_every_template_past_its_lists():
    """When no template stands out (a rising where b falls, the sums flat) the threshold never stops within the
    kept lists: the kernel then visits every template, and the maximum is still exact."""
    p = 3 * TOP
    k = np.arange(p, dtype=np.float32)
    a = np.repeat(k[:, None], 32, axis=1) + np.float32(0.25) * (np.arange(p) == 70)[:, None]
    b = np.repeat((p - k)[:, None], 64, axis=1)
    offsets = np.array([0, 5, 40])
    got = best_coincident_blocks(a, b, offsets, 8)
    assert np.array_equal(got, _block_max(a, b, offsets, 8))
    assert (got == np.float32(p + 0.25)).all()  # template 70, in neither list


def test_top_templates_are_the_largest_in_order():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((50, 20)).astype(np.float32)
    x[:, 3] = 1.0  # ties: lower row first
    x[7, 9] = np.nan
    idx, val = top_templates(x, 6)
    for j in range(20):
        if j == 9:
            assert np.isnan(val[j]).all()
            continue
        want = np.argsort(-x[:, j], kind="stable")[:6]
        assert np.array_equal(idx[j], want) and np.array_equal(val[j], x[want, j])
    assert top_templates(x[:4], 6)[0].shape == (20, 4)  # capped at the templates there are
    with pytest.raises(ValueError, match="divisor of the span"):
        best_coincident_blocks(x, x, np.array([0]), 7)
    with pytest.raises(ValueError, match="b_top"):
        best_coincident_blocks(x, x, np.array([0]), 4, b_top=top_templates(x[:, :10]))


def test_the_best_template_kernels_read_a_window_of_a_ring_in_place():
    """``a`` given as a window of a wider array's columns (the daemon's H1 ring) gives the bits of its copy."""
    rng = np.random.default_rng(11)
    ring = rng.standard_normal((3 * TOP, 500)).astype(np.float32)
    b = rng.standard_normal((3 * TOP, 400)).astype(np.float32)
    a = ring[:, 130:450]  # rows 500 apart
    assert not a.flags.c_contiguous
    offsets = np.array([0, 17, 390])
    assert np.array_equal(best_coincident(a, b, offsets), best_coincident(a.copy(), b, offsets))
    assert np.array_equal(best_coincident_blocks(a, b, offsets, 16), best_coincident_blocks(a.copy(), b, offsets, 16))
