"""Clustering of window scores into triggers: the loudest window of its neighbourhood.

A window ``i`` of a score series on a regular time grid is a *trigger* when it
is valid and louder than every valid window within ``half_width`` grid steps
before it and at least as loud as every valid window within ``half_width``
steps after it (ties go to the earliest window). The rule is local, so it
gives the same triggers whether the series is processed at once or in pieces
(:func:`local_maxima_stream` carries the ``2 * half_width`` windows a decision
needs), and every series of a time-slid background is clustered by exactly the
same rule as the zero-lag one.

No I/O, no logging, no globals.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["local_maxima", "local_maxima_stream", "new_stream_state"]


@numba.njit(cache=True)
def _local_maxima(stats, valid, half, lo, hi, out):  # pragma: no cover - compiled
    k_rows, n = stats.shape
    for r in range(k_rows):
        for i in range(lo, hi):
            if not valid[r, i]:
                continue
            s = stats[r, i]
            ok = True
            j0 = max(0, i - half)
            for j in range(j0, i):
                if valid[r, j] and stats[r, j] >= s:
                    ok = False
                    break
            if ok:
                j1 = min(n, i + half + 1)
                for j in range(i + 1, j1):
                    if valid[r, j] and stats[r, j] > s:
                        ok = False
                        break
            out[r, i - lo] = ok


def _check(stats: np.ndarray, valid: np.ndarray, half_width: int) -> tuple[np.ndarray, np.ndarray]:
    stats = np.asarray(stats, dtype=np.float64)
    valid = np.asarray(valid, dtype=np.bool_)
    if stats.ndim not in (1, 2):
        raise ValueError(f"stats have shape {stats.shape}, expected (n,) or (n_series, n)")
    if valid.shape != stats.shape:
        raise ValueError(f"valid has shape {valid.shape}, expected the shape of stats {stats.shape}")
    if isinstance(half_width, bool) or int(half_width) != half_width or half_width < 0:
        raise ValueError(f"half_width = {half_width!r} grid steps, expected an integer >= 0")
    if np.isnan(stats[valid]).any():
        raise ValueError("stats contain NaN in valid windows; mark them invalid instead")
    return stats, valid


def local_maxima(stats: np.ndarray, valid: np.ndarray, half_width: int) -> np.ndarray:
    """Trigger mask of whole score series.

    Parameters
    ----------
    stats : numpy.ndarray
        float ``(n,)`` or ``(n_series, n)``: scores on a regular grid (one row
        per time slide, for instance).
    valid : numpy.ndarray
        bool, same shape: windows that exist and were analysed; invalid ones
        are never triggers and never suppress a neighbour.
    half_width : int
        Neighbourhood half-width in grid steps (a cluster window of ``W``
        seconds at stride ``dt`` is ``round(W / (2 dt))``).

    Returns
    -------
    numpy.ndarray
        bool, same shape: ``True`` where a trigger is. Windows near the ends
        are judged on the neighbours that exist (use
        :func:`local_maxima_stream` to continue a series).
    """
    stats, valid = _check(stats, valid, half_width)
    s2, v2 = np.atleast_2d(stats), np.atleast_2d(valid)
    out = np.zeros(s2.shape, dtype=np.bool_)
    if s2.shape[1]:
        _local_maxima(np.ascontiguousarray(s2), np.ascontiguousarray(v2), int(half_width), 0, s2.shape[1], out)
    return out.reshape(stats.shape)


def new_stream_state(n_series: int, half_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty carry for :func:`local_maxima_stream`: ``2 * half_width`` invalid windows per series."""
    w = 2 * int(half_width)
    return np.full((int(n_series), w), -np.inf), np.zeros((int(n_series), w), dtype=np.bool_)


def local_maxima_stream(stats: np.ndarray, valid: np.ndarray, half_width: int,
                        state: tuple[np.ndarray, np.ndarray], *, final: bool = False):
    """Continue the trigger decision over the next windows of ``n_series`` series.

    Parameters
    ----------
    stats, valid : numpy.ndarray
        ``(n_series, n)``: the next ``n`` grid steps of every series (contiguous
        with the previous call; pad a gap with invalid windows).
    half_width : int
    state : tuple
        Carry from :func:`new_stream_state` or the previous call.
    final : bool
        The series ends here: decide the last windows on the neighbours that
        exist (like :func:`local_maxima`).

    Returns
    -------
    decided : numpy.ndarray
        bool ``(n_series, m)``: trigger mask of the ``m`` windows decided by
        this call, which are the ``m`` grid steps starting ``half_width`` steps
        before the first of ``stats`` (``m = n`` except on the first and final
        calls' edges; see ``offset``).
    offset : int
        Grid position of ``decided[:, 0]`` relative to ``stats[:, 0]`` (negative:
        windows of earlier calls, held until their right neighbours arrived).
    state : tuple
        Carry for the next call.
    """
    stats, valid = _check(stats, valid, half_width)
    if stats.ndim != 2:
        raise ValueError(f"stats have shape {stats.shape}, expected (n_series, n)")
    h = int(half_width)
    cs, cv = state
    if cs.shape != (stats.shape[0], 2 * h) or cv.shape != cs.shape:
        raise ValueError(f"state has shape {cs.shape}, expected {(stats.shape[0], 2 * h)}")
    s = np.concatenate([cs, stats], axis=1)
    v = np.concatenate([cv, valid], axis=1)
    n = s.shape[1]
    lo, hi = h, n if final else n - h  # decide positions [lo, hi) of the concatenation
    out = np.zeros((s.shape[0], max(0, hi - lo)), dtype=np.bool_)
    if hi > lo:
        _local_maxima(np.ascontiguousarray(s), np.ascontiguousarray(v), h, lo, hi, out)
    new_state = (s[:, n - 2 * h:].copy(), v[:, n - 2 * h:].copy()) if not final else new_stream_state(s.shape[0], h)
    return out, lo - 2 * h, new_state
