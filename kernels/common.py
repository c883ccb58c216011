"""Helpers the kernel families share: numeric precision, worker threads, splitting work across them.

Pure functions of their arguments: no I/O, no logging, no globals (the core
count is read once, at import).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["PRECISIONS", "check_precision", "thread_count", "run_split"]

#: working precision names and their float dtypes
PRECISIONS = {"double": np.float64, "single": np.float32}

_CPUS = os.cpu_count() or 1  # read once: a streaming call per block need not ask the OS again


def check_precision(precision: str) -> type:
    """The float dtype of ``precision`` (a key of :data:`PRECISIONS`); ValueError for any other name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}, expected one of {tuple(PRECISIONS)}")
    return PRECISIONS[precision]


def thread_count(workers: int) -> int:
    """Threads for ``workers`` in the ``scipy.fft`` convention (n >= 1: n; -1: all cores; -2: all but one)."""
    if workers == 0 or workers < -_CPUS:
        raise ValueError(f"workers = {workers!r}, expected >= 1 or a negative count from the core count (-1: all)")
    return workers if workers > 0 else max(1, _CPUS + 1 + workers)


def run_split(fn, n_items: int, n_threads: int) -> None:
    """Call ``fn(lo, hi)`` on ``n_threads`` contiguous ranges covering ``range(n_items)``.

    The ranges are the same for a given ``(n_items, n_threads)`` and each item
    is handled by exactly one call, so a ``fn`` that writes only its own range
    gives the same result on any thread count.
    """
    n_threads = max(1, min(n_threads, n_items))
    edges = [n_items * k // n_threads for k in range(n_threads + 1)]
    if n_threads == 1:
        fn(0, n_items)
        return
    with ThreadPoolExecutor(n_threads) as ex:
        for f in [ex.submit(fn, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]:
            f.result()
