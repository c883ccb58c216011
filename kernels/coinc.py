"""Time-slid coincidences of per-template projections: the best template at every step of every slide.

No I/O, no logging, no globals.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["TOP", "best_coincident", "best_coincident_blocks", "top_templates"]


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


def _checked(a, b, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a (P, span)``, ``b (P, n_b)`` of one dtype and ``offsets`` in ``[0, n_b)``, or an error; ``b`` contiguous,
    ``a`` too unless its rows are (a window of a ring buffer's columns is used as it is)."""
    a = np.asarray(a)
    if not (a.ndim == 2 and a.strides[1] == a.itemsize and a.strides[0] >= a.shape[1] * a.itemsize):
        a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"a {a.shape} {a.dtype} and b {b.shape} {b.dtype}: expected (P, span) and (P, n_b) of one "
                         "dtype")
    if offsets.ndim != 1 or (offsets.size and (offsets.min() < 0 or offsets.max() >= b.shape[1])):
        raise ValueError(f"offsets must be a 1-d array in [0, {b.shape[1]})")
    if a.shape[1] > b.shape[1]:
        raise ValueError(f"span {a.shape[1]} longer than the {b.shape[1]} L1 steps")
    return a, b, offsets


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
    a, b, offsets = _checked(a, b, offsets)
    if out is None:
        out = np.empty((offsets.size, a.shape[1]), dtype=a.dtype)
    _best(a, b, offsets, out)
    return out


#: templates of each step kept, largest first, for best_coincident_blocks
TOP = 32


@numba.njit(cache=True, parallel=True, nogil=True)
def _top(xt, t, idx, val):  # pragma: no cover - compiled
    """``idx[j], val[j]``: the ``t`` largest of ``xt[j]`` and their columns, largest first (ties: lower column
    first); ``val[j]`` all NaN when ``xt[j]`` has a NaN."""
    n, p = xt.shape
    for j in numba.prange(n):
        m = 0
        nan = False
        for k in range(p):
            v = xt[j, k]
            if v != v:
                nan = True
                break
            if m == t and not v > val[j, t - 1]:
                continue
            i = m if m < t else t - 1  # insert v, dropping the smallest when full
            while i > 0 and v > val[j, i - 1]:
                val[j, i] = val[j, i - 1]
                idx[j, i] = idx[j, i - 1]
                i -= 1
            val[j, i] = v
            idx[j, i] = k
            if m < t:
                m += 1
        if nan:
            for i in range(t):
                val[j, i] = np.nan
                idx[j, i] = 0


def top_templates(x: np.ndarray, t: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """The ``t`` largest templates of every step of ``x`` ``(P, n)``: rows ``(n, t)`` int32 and values ``(n, t)``.

    Largest first; a step with a NaN gets NaN values. ``t`` is capped at ``P``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or not x.shape[0]:
        raise ValueError(f"x of shape {x.shape}: expected (P, n) with P >= 1")
    t = min(int(t), x.shape[0])
    idx = np.empty((x.shape[1], t), dtype=np.int32)
    val = np.empty((x.shape[1], t), dtype=x.dtype)
    _top(np.ascontiguousarray(x.T), t, idx, val)  # a step's templates contiguous
    return idx, val


@numba.njit(cache=True, parallel=True, nogil=True)
def _best_blocks(a, b, ia, va, ib, vb, offsets, g, out):  # pragma: no cover - compiled
    p, span = a.shape
    n_b = b.shape[1]
    t = va.shape[1]
    for s in numba.prange(offsets.size):
        o = offsets[s]
        for q in range(span // g):
            best = -np.inf
            nan = False
            for j in range(q * g, q * g + g):
                c = o + j
                if c >= n_b:
                    c -= n_b
                if va[j, 0] != va[j, 0] or vb[c, 0] != vb[c, 0]:
                    nan = True
                    break
                # Fagin's threshold algorithm: templates by decreasing a and by decreasing b in turn; one not
                # visited before round i has a <= va[j, i] and b <= vb[c, i], so a sum at most theirs
                done = False
                for i in range(t):
                    if not va[j, i] + vb[c, i] > best:
                        done = True
                        break
                    k = ia[j, i]
                    v = a[k, j] + b[k, c]
                    if v > best:
                        best = v
                    k = ib[c, i]
                    v = a[k, j] + b[k, c]
                    if v > best:
                        best = v
                if not done and va[j, t - 1] + vb[c, t - 1] > best:  # past the kept lists: every template
                    for k in range(p):
                        v = a[k, j] + b[k, c]
                        if v > best:
                            best = v
            out[s, q] = np.nan if nan else best


def best_coincident_blocks(a: np.ndarray, b: np.ndarray, offsets: np.ndarray, block: int,
                           b_top: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The best template of each ``block`` steps and slide: ``best_coincident(...)`` maximised over blocks, pruned.

    ``out[s, q] = max over j in [q block, (q + 1) block), k of (a[k, j] + b[k, (offsets[s] + j) mod n_b])``,
    the same bits as the block maxima of :func:`best_coincident` (NaN where any
    sum in the block is NaN), without forming most sums: every step keeps its
    :data:`TOP` largest templates of ``a`` (and of ``b``, per L1 step, which a
    ring buffer keeps as its steps arrive: ``b_top``), and a step visits them
    in both orders in turn (Fagin's threshold algorithm), stopping as soon as
    the ``i``-th largest ``a`` plus the ``i``-th largest ``b`` cannot beat the
    block's best so far; past the kept lists it visits every template. A
    float sum is monotonic in each argument, so every sum skipped is at most
    the maximum: the result is exact. On a network's noise projections a step
    stops after a few rounds, so time slides of hundreds of templates cost
    little more than of a few.

    Parameters
    ----------
    a, b, offsets
        As :func:`best_coincident`; ``a``'s span a multiple of ``block``.
    block : int
        Steps per block (the head's reduction block).
    b_top : (numpy.ndarray, numpy.ndarray), optional
        :func:`top_templates` of ``b``, if kept (default: computed here).

    Returns
    -------
    numpy.ndarray
        ``(K, span // block)``, the dtype of ``a``.
    """
    a, b, offsets = _checked(a, b, offsets)
    if not a.shape[0]:
        raise ValueError("a and b hold no template (P = 0)")
    if block < 1 or a.shape[1] % block:
        raise ValueError(f"block = {block}: expected a positive divisor of the span, {a.shape[1]}")
    ia, va = top_templates(a)
    ib, vb = top_templates(b, ia.shape[1]) if b_top is None else b_top
    if ib.shape != (b.shape[1], ia.shape[1]) or vb.shape != ib.shape or vb.dtype != b.dtype:
        raise ValueError(f"b_top of shapes {ib.shape}, {vb.shape}: expected ({b.shape[1]}, {ia.shape[1]}) each, "
                         f"values {b.dtype}")
    out = np.empty((offsets.size, a.shape[1] // block), dtype=a.dtype)
    _best_blocks(a, b, ia, va, np.ascontiguousarray(ib, dtype=np.int32), vb, offsets, int(block), out)
    return out
