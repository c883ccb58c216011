"""Time-slid coincidences of per-template projections: the best template at every step of every slide.

No I/O, no logging, no globals.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["best_coincident"]


@numba.njit(cache=True, parallel=True, nogil=True)
def _best(a, b, offsets, out):  # pragma: no cover - compiled
    p, span = a.shape
    n_b = b.shape[1]
    for s in numba.prange(offsets.size):
        o = offsets[s]
        row = out[s]
        for j in range(span):
            row[j] = -np.inf
        for k in range(p):
            for j in range(span):
                c = o + j
                if c >= n_b:
                    c -= n_b
                v = a[k, j] + b[k, c]
                if v > row[j] or v != v:  # a NaN stays (no comparison replaces it), as in torch.amax
                    row[j] = v


def best_coincident(a: np.ndarray, b: np.ndarray, offsets: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``out[s, j] = max_k (a[k, j] + b[k, (offsets[s] + j) mod n_b])``: the best template of each step and slide.

    Parameters
    ----------
    a : numpy.ndarray
        float32 ``(P, span)``: H1's projection of each template at each step.
    b : numpy.ndarray
        float32 ``(P, n_b)``: L1's (lag-pooled) projections, a ring buffer when
        ``offsets + span`` passes its end.
    offsets : numpy.ndarray
        int64 ``(K,)``: L1 step of each slide's first H1 step, in ``[0, n_b)``.
    out : numpy.ndarray, optional
        float32 ``(K, span)``, overwritten.

    Returns
    -------
    numpy.ndarray
        ``(K, span)``. NaN where any template's sum is NaN (missing data), as
        ``numpy.max`` and ``torch.amax`` give; each value is one float32 sum, so
        the result is the same bits as the sums' maximum taken any other way.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"a {a.shape} {a.dtype} and b {b.shape} {b.dtype}: expected (P, span) and (P, n_b) of one "
                         "dtype")
    if offsets.ndim != 1 or (offsets.size and (offsets.min() < 0 or offsets.max() >= b.shape[1])):
        raise ValueError(f"offsets must be a 1-d array in [0, {b.shape[1]})")
    if a.shape[1] > b.shape[1]:
        raise ValueError(f"span {a.shape[1]} longer than the {b.shape[1]} L1 steps")
    if out is None:
        out = np.empty((offsets.size, a.shape[1]), dtype=a.dtype)
    _best(a, b, offsets, out)
    return out
