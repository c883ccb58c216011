"""Merging spans: trigger lists concatenated in time, backgrounds added, every FAR made one process's.

:func:`merge_spans` takes the :class:`~gwstream.daemon.cluster.spans.SpanResult`
objects in any order (it sorts them by span), checks that they are the plan's
spans once each, and walks them in time: each span's triggers get their FAR
against the initial background plus every earlier span's plus the span's own
as it stood when the trigger was ranked
(:meth:`~gwstream.daemon.stream.background.Background.far_joined`), which is
the FAR one process computes. Backgrounds merge with
:meth:`~gwstream.daemon.stream.background.Background.merge`, which is
associative and order-free (sums, a top list, a max), so the merged background
is one process's whatever order the spans finished in.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field, replace

from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.stream.background import Background, far_to_ifar_years

from .spans import SpanResult

__all__ = ["MergedSearch", "merge_spans", "merge_backgrounds", "join_segments"]


@dataclass
class MergedSearch:
    """The distributed search's result, as one process would have produced it."""

    triggers: list[Trigger]
    background: Background
    live_windows: int
    segments: list[list[int]]
    counters: Counter
    gates: list = field(default_factory=list)  # (ifo, GPS s, peak sigma), in time order


def merge_backgrounds(backgrounds: list[Background], into: Background | None = None) -> Background:
    """The sum of ``backgrounds`` (added to a copy of ``into`` when given): one process's background over all of
    their data, in whatever order they come."""
    if not backgrounds and into is None:
        raise ValueError("no background to merge")
    out = copy.deepcopy(into if into is not None else backgrounds[0])
    for bg in backgrounds if into is not None else backgrounds[1:]:
        out.merge(bg)
    return out


def join_segments(runs: list[list[int]]) -> list[list[int]]:
    """Grid-index runs ``[first, last]`` sorted and joined where one ends right before the next begins."""
    out: list[list[int]] = []
    for a, b in sorted(runs):
        if out and out[-1][1] + 1 >= a:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def merge_spans(results: list[SpanResult], *, initial: Background | None = None,
                n_spans: int | None = None) -> MergedSearch:
    """One search's triggers, background, live time and segments from its spans' results.

    Parameters
    ----------
    results : list of SpanResult
        In any order; each span once (a span retried after a worker died
        arrives once, as Dask returns one result per task).
    initial : Background, optional
        The background the search starts from (``ranking.background_init``).
    n_spans : int, optional
        Spans planned: raise unless exactly spans ``0 .. n_spans - 1`` are given.
    """
    ordered = sorted(results, key=lambda r: r.span.index)
    idx = [r.span.index for r in ordered]
    if len(set(idx)) != len(idx):
        raise ValueError(f"span results given twice: {sorted(k for k in set(idx) if idx.count(k) > 1)}")
    if n_spans is not None and idx != list(range(n_spans)):
        missing = sorted(set(range(n_spans)) - set(idx))
        raise ValueError(f"expected the results of spans 0..{n_spans - 1}, missing {missing}")
    if not ordered:
        raise ValueError("no span results to merge")
    first = ordered[0].background
    if initial is not None:
        prefix = copy.deepcopy(initial)
        prefix.meta = {**prefix.meta, **first.meta}
    else:
        prefix = Background(first.stride_ns, first.meta, n_exact=first.n_exact, hist_range=first.hist_range,
                            bin_width=first.bin_width)
    triggers: list[Trigger] = []
    live = 0
    runs: list[list[int]] = []
    counters: Counter = Counter()
    for r in ordered:
        for t, (windows, n, binned) in zip(r.triggers, r.far_inputs.tolist()):
            far, sat = prefix.far_joined(t.stat, windows, n, binned)
            triggers.append(replace(t, far=far, ifar_years=float(far_to_ifar_years(far)), saturated=bool(sat)))
        prefix.merge(r.background)
        live += r.live_windows
        runs += r.segments
        counters.update(r.counters)
    gates = sorted((g for r in ordered for g in r.gates), key=lambda g: (g[1], g[0]))
    return MergedSearch(triggers, prefix, live, join_segments(runs), counters, gates)

