"""Sliding windows cut from a (multi-detector) stream into a contiguous float32 batch.

No I/O, no logging, no globals.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["slide", "n_windows", "invalid_windows"]


def _check_geometry(window: int, stride: int) -> None:
    for name, v in (("window", window), ("stride", stride)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} = {v!r} samples, expected an integer >= 1")


def n_windows(n: int, window: int, stride: int) -> int:
    """Number of whole windows of ``window`` samples every ``stride`` samples in ``n`` samples."""
    _check_geometry(window, stride)
    return 0 if n < window else (n - window) // stride + 1


@numba.njit(cache=True)
def _slide(x, window, stride, nw, out):  # pragma: no cover - compiled
    for w in range(nw):
        s = w * stride
        for c in range(x.shape[0]):
            for j in range(window):
                out[w, c, j] = x[c, s + j]


def slide(x: np.ndarray, window: int, stride: int, out: np.ndarray | None = None) -> np.ndarray:
    """Cut windows ``x[:, k*stride : k*stride + window]`` into a batch.

    Parameters
    ----------
    x : numpy.ndarray
        Samples, shape ``(n,)`` or ``(channels, n)``, float32/float64.
    window : int
        Window length (samples).
    stride : int
        Samples between window starts.
    out : numpy.ndarray, optional
        Preallocated C-contiguous float32 buffer of shape
        ``(>= n_windows, channels, window)``; its first ``n_windows`` rows are
        filled and returned (a view, no allocation).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_windows, channels, window)``, C-contiguous;
        ``n_windows = (n - window) // stride + 1`` (0 if ``n < window``).

    Notes
    -----
    The batch layout ``[B, C, N]`` of ml4gw's ``unfold_windows`` / Aframe;
    a copy (not a strided view) so the batch can go straight to a model.
    """
    _check_geometry(window, stride)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n,) or (channels, n)")
    x2 = np.ascontiguousarray(np.atleast_2d(x))
    c, n = x2.shape
    nw = n_windows(n, int(window), int(stride))
    if out is None:
        out = np.empty((nw, c, window), dtype=np.float32)
    else:
        if out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out is {out.dtype} (contiguous: {out.flags.c_contiguous}), expected C-contiguous float32")
        if out.ndim != 3 or out.shape[0] < nw or out.shape[1:] != (c, window):
            raise ValueError(f"out has shape {out.shape}, expected ({nw} or more, {c}, {window})")
    if nw:
        _slide(x2, int(window), int(stride), nw, out)
    return out[:nw]


def invalid_windows(valid: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Flag windows that touch any invalid sample.

    Parameters
    ----------
    valid : numpy.ndarray
        bool, shape ``(n,)`` or ``(channels, n)`` (a sample invalid in any
        channel makes the window invalid).
    window, stride : int
        As in :func:`slide`.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(n_windows,)``; True where the window has an invalid sample.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim == 2:
        valid = valid.all(axis=0)
    nw = n_windows(valid.shape[0], window, stride)
    bad = np.concatenate([[0], np.cumsum(~valid, dtype=np.int64)])
    starts = np.arange(nw, dtype=np.int64) * stride
    return (bad[starts + window] - bad[starts]) > 0
