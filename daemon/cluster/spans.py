"""Spans: the pieces a distributed search cuts an archive into, and the search of one of them.

A span owns the blocks that start in ``[start_ns, end_ns)``: everything the
pipeline decides while it processes them (zero-lag triggers, background
clusters, live windows, analysed segments, counters) belongs to that span and
to no other, so the spans' results add up to one process's. To decide exactly
as one process does, a span first rebuilds the state one process would have
at ``start_ns``, from the data before it (the *lead-in*):

* ``lead_ns .. score_ns``: the conditioner alone (resampling, the PSD chain,
  whitening), long enough (``cluster.psd_lead_s``) for the PSD estimator,
  whose accept/keep decisions chain back to the start of the data, to fall
  into step with one process's;
* ``score_ns .. start_ns``: the scorer takes in the features the slides will
  read (``n_slides * slide_step_s`` back, plus the windows and the encoder's
  reach: the *margin*) without running the slides' heads over them
  (:meth:`~gwstream.daemon.stream.pipeline.SearchStage.prime`), and the last
  :data:`RANK_LEAD_S` are scored and ranked in full, their output thrown away,
  for the clustering and the trigger timing.

Nothing is taken on trust: at ``score_ns`` the span records its
conditioner's :meth:`~gwstream.daemon.stream.conditioning.Conditioner.state_digest`,
and the span before it records its own conditioner there (it owns that
block). Equal digests mean the same whitened stream from ``score_ns`` on,
hence the same statistics over the owned blocks; a mismatch makes the
driver run the span again from the previous span's conditioner
(:func:`run_span` with ``seed``). The first span, and any whose lead-in
reaches back to the start of the data, start cold exactly as one process does.

Blocks are scored in groups fixed by the GPS grid
(:func:`~gwstream.daemon.proc.offline.grouped`), and every span boundary lies
on that grid, so a span hands the encoder the very tensors one process does.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from gwstream.daemon.config import Config
from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.proc.offline import file_blocks, group_ns, grouped
from gwstream.daemon.proc.preflight import load_scorer
from gwstream.daemon.stream.background import Background
from gwstream.daemon.stream.pipeline import SearchStage
from gwstream.daemon.units import NS, seconds_to_ns

__all__ = ["RANK_LEAD_S", "Span", "SpanResult", "plan_spans", "margin_ns", "run_span"]

log = logging.getLogger(__name__)

#: seconds before a span's start that are scored and ranked in full (the rest of the scoring lead-in is primed)
RANK_LEAD_S = 64.0


@dataclass(frozen=True)
class Span:
    """One task of a distributed search (GPS ns; every boundary on the scoring-group grid).

    Attributes
    ----------
    index : int
        Position in time order (0 first).
    start_ns, end_ns : int
        The span owns the blocks starting in ``[start_ns, end_ns)``.
    lead_ns : int
        Where it starts reading: conditioning only until ``score_ns``.
    score_ns : int
        Where the scorer starts (priming); where the span's conditioner is checked.
    rank_ns : int
        Where scoring and ranking in full start (:data:`RANK_LEAD_S` before the last data before the span).
    next_score_ns : int or None
        The next span's ``score_ns``: where this span records its conditioner for it.
    cold : bool
        ``lead_ns`` is the start of the data: nothing to check.
    last : bool
        The last span: it also decides the windows left open at the end of the data.
    data_s : float
        Seconds of data (first detector) the span owns.
    """

    index: int
    start_ns: int
    end_ns: int
    lead_ns: int
    score_ns: int
    rank_ns: int
    next_score_ns: int | None
    cold: bool
    last: bool
    data_s: float = 0.0

    def describe(self) -> str:
        return f"span {self.index} (GPS {self.start_ns / NS:.0f}-{self.end_ns / NS:.0f})"


def margin_ns(cfg: Config, n_slides: int) -> int:
    """Scoring lead-in (ns) a span needs before its start: what the slides reach back, three windows (the
    encoder's reach, the whitening filter, the window itself), the clustering and two scoring groups; rounded
    up to the group grid."""
    cell = group_ns(cfg)
    reach = n_slides * cfg.ranking.slide_step_s + 3 * cfg.windows.window_s + cfg.ranking.cluster_window_s
    need = seconds_to_ns(reach) + 2 * cell
    return -(-need // cell) * cell


def plan_spans(segments: list[tuple[int, int]], cfg: Config, n_slides: int, *, span_s: float | None = None,
               psd_lead_s: float | None = None) -> list[Span]:
    """Cut the data (``segments``, GPS ns ``[start, end)``) into spans of about ``span_s`` (``cluster.span_s``).

    Span boundaries are multiples of the span length on the GPS grid (never
    shorter than the scoring margin, so a span's check point lies in the span
    before it); a span that would hold no data is joined to the one before it.
    """
    if not segments:
        return []
    cell = group_ns(cfg)
    margin = margin_ns(cfg, n_slides)
    span_ns = seconds_to_ns(cfg.cluster.span_s if span_s is None else span_s)
    span_ns = max(-(-span_ns // cell) * cell, margin)
    lead = seconds_to_ns(cfg.cluster.psd_lead_s if psd_lead_s is None else psd_lead_s)
    lead = -(-lead // cell) * cell
    t0, t1 = segments[0][0], segments[-1][1]
    cuts = list(range((t0 // span_ns + 1) * span_ns, t1, span_ns))
    bounds = [t0] + cuts + [t1]

    def owned(a: int, b: int) -> int:
        return sum(max(0, min(b, e) - max(a, s)) for s, e in segments)

    # a span without data joins the span before it (the first, from t0, always has data)
    starts = [t0] + [a for a, b in zip(cuts, bounds[2:]) if owned(a, b) > 0]
    ends = starts[1:] + [t1]
    rank_lead = seconds_to_ns(RANK_LEAD_S)
    if cfg.ranking.removal_ifar_days > 0 and n_slides > 0:
        # hierarchical removal: the zones of every loud zero-lag trigger the slides still reach come from
        # triggers this span must decide itself, so the whole reach is scored and ranked in full
        rank_lead = max(rank_lead, margin)
    spans = []
    for k, (a, b) in enumerate(zip(starts, ends)):
        if k == 0:
            score = rank = lead_at = a
        else:
            # measured from the last data before the span: windows left undecided where the data stopped are
            # decided by the first block after the gap, which this span owns
            last = max(min(e, a) for s_, e in segments if s_ < a) // cell * cell
            rank = max(t0, last - rank_lead)
            score = max(t0, min(last - margin, rank))
            lead_at = max(t0, (score - lead) // cell * cell)
        spans.append(Span(k, a, b, lead_at, score, rank, None, lead_at == t0, k == len(starts) - 1,
                          owned(a, b) / NS))
    # a span records its conditioner where the next one checks its own (a cold one checks nothing)
    return [dataclasses.replace(s, next_score_ns=spans[k + 1].score_ns
                                if k + 1 < len(spans) and not spans[k + 1].cold else None)
            for k, s in enumerate(spans)]


@dataclass
class SpanResult:
    """What a span decided, with what the merge needs to finish its FARs and check its lead-in.

    ``far_inputs[i]`` are trigger ``i``'s ``(live windows, exact count,
    binned count)`` against the span's own background when it was ranked
    (:meth:`~gwstream.daemon.stream.background.Background.count_parts`);
    its ``far`` is final only after :func:`~gwstream.daemon.cluster.merge.merge_spans`.
    """

    span: Span
    triggers: list[Trigger]
    far_inputs: np.ndarray
    background: Background
    live_windows: int
    segments: list[list[int]]
    counters: dict
    entry_digest: str | None
    exit_digest: str | None
    exit_state: dict | None
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seeded: bool = False
    wall_s: float = 0.0
    lead_s: float = 0.0
    meta: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)  # wall s of set-up and each phase; s of data of each lead-in phase
    gates: list = field(default_factory=list)  # autogating: (ifo, GPS s, peak sigma) opened in owned blocks


@functools.lru_cache(maxsize=2)
def _scorer(cfg: Config, model: str | None):
    """One scorer per worker process and model (a worker runs many spans); the first also sets numba's threads
    to torch's and tunes the process's malloc as ``gwstream`` tunes its own (:func:`~gwstream.daemon.proc.spawn.keep_freed_memory`): a Dask worker
    is started with the opposite setting (freed memory trimmed at 64 KiB), which makes the search page-fault
    its way through every block."""
    import numba
    from gwstream.daemon.proc.spawn import keep_freed_memory

    keep_freed_memory()
    scorer = load_scorer(cfg, model)
    if cfg.model.threads:  # numba's parallel kernels (the slides) as many threads as torch: one per worker core
        numba.set_num_threads(min(cfg.model.threads, numba.config.NUMBA_NUM_THREADS))
    return scorer


def run_span(inputs, cfg: Config, span: Span, *, model: str | None = None, n_slides: int | None = None,
             seed: dict | None = None) -> SpanResult:
    """Search one span: lead-in, then the owned blocks (see the module docstring).

    ``seed``: the conditioner of the span before, snapshotted at this span's
    ``score_ns`` (its ``exit_state``); the span then reads from ``score_ns``
    with that state instead of running its own lead-in.

    ``cfg`` must not name an initial background (``ranking.background_init``):
    the merge adds it; each span counts only its own.
    """
    t_wall = time.monotonic()
    scorer = _scorer(cfg, model)
    stage = SearchStage(cfg, scorer, n_slides=n_slides)
    timing = Counter()
    clock = time.monotonic()
    # the last RANK_LEAD_S of data before the span are scored and ranked (the clustering's and the trigger
    # timing's history); before that the scorer only takes features in (what the slides reach back to)
    rank_ns = span.rank_ns
    cell = group_ns(cfg)
    unreadable: list[tuple[str, str]] = []
    read_from = span.score_ns if seed is not None else span.lead_ns
    blocks = file_blocks(inputs, cfg, start_ns=read_from, end_ns=span.end_ns, unreadable=unreadable)
    triggers: list[Trigger] = []
    entry = exit_digest = None
    exit_state = None
    owning = False

    def digest():
        return None if stage.conditioner is None else stage.conditioner.state_digest()

    for batch in grouped(blocks, cell):
        t = batch[0].gps_ns
        if seed is not None and stage.conditioner is None:
            stage.restore_conditioner(seed, batch[0].sample_rates[0])
        if entry is None and t >= span.score_ns:
            entry = digest() or ""
        if span.next_score_ns is not None and exit_state is None and t >= span.next_score_ns:
            exit_state, exit_digest = _snapshot(stage), digest()
        if not owning and t >= span.start_ns:
            stage.start_owning()
            owning = True
        if t < span.score_ns:
            stage.condition_only(batch)
            phase = "conditioning_lead_s"
        elif t < rank_ns:
            stage.prime(batch)
            phase = "primed_lead_s"
        else:
            for found in stage.process_many(batch):
                if owning:
                    triggers += found
            phase = "owned_s" if owning else "scored_lead_s"
        now = time.monotonic()
        timing[phase] += now - clock  # reading the blocks counts where they are used
        if phase != "owned_s":
            timing[phase.replace("_s", "_data_s")] += sum(b.duration_ns for b in batch) / NS
        clock = now
    if entry is None:
        entry = digest() or ""
    if span.next_score_ns is not None and exit_state is None:
        exit_state, exit_digest = _snapshot(stage), digest()
    if not owning:
        stage.start_owning()
    if span.last:
        triggers += stage.finish()
    timing["setup_s"] = time.monotonic() - t_wall - sum(v for k, v in timing.items() if not k.endswith("data_s"))
    lead_s = sum(v for k, v in timing.items() if k.endswith("lead_data_s"))
    r = stage.ranking
    far_inputs = np.asarray(r.far_inputs, dtype=np.int64).reshape(-1, 3)
    if far_inputs.shape[0] != len(triggers):
        raise RuntimeError(f"{span.describe()}: {len(triggers)} triggers but {far_inputs.shape[0]} FAR records")
    # a file the lead-in met belongs to the span before (read there as the same gap): reported once, by its owner
    unreadable = [(path, why) for path, why in unreadable if _owns_file(span, path)]
    for path, why in unreadable:
        log.error("%s: unreadable frame file %s (%s): analysed as a gap", span.describe(), path, why)
    return SpanResult(span, triggers, far_inputs, r.background, r.foreground_live_windows,
                      [list(s) for s in stage.segments], dict(stage.counters), None if span.cold else entry,
                      exit_digest, exit_state, unreadable, seed is not None, time.monotonic() - t_wall, lead_s,
                      meta={"n_slides": stage.n_slides, "model": scorer.name, "model_sha256": scorer.sha256,
                            "merger_offset_s": stage.merger_offset_s, "stride_ns": r.stride_ns,
                            "removal_stat": r.removal_stat},
                      timing={k: round(v, 3) for k, v in timing.items()}, gates=list(stage.gates))


def _owns_file(span: Span, path: str) -> bool:
    """Whether a frame file's GPS start (from its name) lies in the span (True when the name tells none)."""
    from pathlib import Path

    from gwstream.daemon.errors import FrameFileError
    from gwstream.daemon.io.framefiles import parse_gwf_name

    try:
        gps = parse_gwf_name(Path(path).name)[2]
    except FrameFileError:
        return True
    return span.start_ns <= gps * NS < span.end_ns


def _snapshot(stage: SearchStage) -> dict | None:
    return None if stage.conditioner is None else stage.conditioner.snapshot()

