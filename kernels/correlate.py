"""Decimated correlation of a real stream with complex filters, in the frequency domain.

The template branch of a factorized network correlates the strain with ``P``
filter pairs (a template and its quadrature, ``g = h_c + i h_q``) at a stride
of ``S`` samples. As products of unfolded rows that is ``taps`` multiply-adds
per output and filter; here one block's spectrum ``X`` (length ``N = S M``) is
multiplied by each filter's and folded onto ``M`` frequencies, so that a
length-``M`` inverse FFT gives the correlation at every ``S``-th sample
directly:

    corr(S m) = sum_n g[n] x[S m + n] = ifft_M(Y)[m],
    Y[k] = sum_{r < S} X[k + r M] G[k + r M],   G = (N / S) ifft_N(g).

No I/O, no logging, no globals.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["energies", "filter_spectra", "fold_product"]


def filter_spectra(filters: np.ndarray, stride: int, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """Folded spectra of complex filters for :func:`fold_product`.

    Parameters
    ----------
    filters : numpy.ndarray
        Complex ``(P, taps)``: filter ``p`` correlates as ``sum_n filters[p, n] x[t + n]``.
    stride : int
        Output decimation ``S``; must divide ``nfft``.
    nfft : int
        Block length ``N``, at least the samples a block reads (a block of
        outputs ``0, S, ..., S (M' - 1)`` reads ``S (M' - 1) + taps``).

    Returns
    -------
    (gr, gi) : numpy.ndarray, float64 ``(P, S, N // S)`` each
        Real and imaginary parts of ``(N / S) ifft_N(filters)``, row ``r`` of filter
        ``p`` holding frequencies ``r M .. r M + M - 1``.
    """
    g = np.asarray(filters)
    if g.ndim != 2 or g.shape[0] < 1 or g.shape[1] < 1:
        raise ValueError(f"filters of shape {g.shape}: expected (P, taps) with P, taps >= 1")
    if stride < 1 or nfft < g.shape[1] or nfft % stride:
        raise ValueError(f"stride {stride}, nfft {nfft}, {g.shape[1]} taps: expected nfft >= taps and a multiple "
                         "of stride >= 1")
    spec = np.fft.ifft(g.astype(np.complex128), n=nfft, axis=1) * (nfft / stride)
    spec = spec.reshape(g.shape[0], stride, nfft // stride)
    return np.ascontiguousarray(spec.real), np.ascontiguousarray(spec.imag)


@numba.njit(cache=True, parallel=True, nogil=True)
def fold_product(xr, xi, gr, gi, y):  # pragma: no cover - compiled
    """``y[b, p, k] = sum_r x[b, r, k] g[p, r, k]``, complex.

    ``x``: ``(n_blocks, S, M)`` spectra of the blocks, reshaped, as real and
    imaginary parts; ``g``: ``(P, S, M)`` from :func:`filter_spectra`; ``y``:
    complex ``(n_blocks, P, M)``, overwritten. Each output is summed over ``r``
    in the same order whatever the number of blocks or threads, with no fused
    multiply-adds, so a block's result does not depend on the blocks computed
    with it.
    """
    nb, s, m = xr.shape
    for p in numba.prange(gr.shape[0]):
        yr = np.empty(m, dtype=xr.dtype)
        yi = np.empty(m, dtype=xr.dtype)
        for b in range(nb):
            for k in range(m):
                yr[k] = 0.0
                yi[k] = 0.0
            for r in range(s):
                for k in range(m):
                    yr[k] += xr[b, r, k] * gr[p, r, k] - xi[b, r, k] * gi[p, r, k]
                    yi[k] += xr[b, r, k] * gi[p, r, k] + xi[b, r, k] * gr[p, r, k]
            for k in range(m):
                y[b, p, k] = yr[k] + 1j * yi[k]


@numba.njit(cache=True, parallel=True, nogil=True)
def energies(z, out):  # pragma: no cover - compiled
    """``out[p, t] = z[p, t].real ** 2 + z[p, t].imag ** 2`` for ``t < out.shape[1]`` (each product rounded, then
    the sum: no fused multiply-add), ``z`` complex ``(P, >= T)``, ``out`` real ``(P, T)``, any strides."""
    p, t = out.shape
    for i in numba.prange(p):
        for j in range(t):
            re = z[i, j].real
            im = z[i, j].imag
            out[i, j] = re * re + im * im
