"""The search pipeline: aligned blocks -> conditioning -> scoring with time slides -> ranked triggers.

:class:`SearchStage` is the one pipeline the daemon runs on live blocks and
``gwstream search`` runs offline (:mod:`gwstream.daemon.proc.offline`):
:class:`~gwstream.daemon.stream.conditioning.Conditioner`,
:class:`~gwstream.daemon.stream.scoring.SlideScorer` and
:class:`~gwstream.daemon.stream.ranking.RankingStage`, fed
:class:`~gwstream.daemon.io.wire.Block` objects. It opens no socket and reads
no data file: whoever runs it brings the blocks.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
from gwstream.daemon.config import Config
from gwstream.daemon.io.wire import Block
from gwstream.daemon.units import NS, sample_time_ns, samples_to_ns, seconds_to_ns

from .background import Background, BackgroundMismatch, initial_background_path
from .conditioning import Conditioned, Conditioner, Status
from .identity import check_whitening, conditioning_meta, consistency
from .ranking import RankingStage, Trigger
from .scoring import SlideScorer
from .snapshot import SnapshotQueue, TriggerSnapshot, WhitenedHistory

__all__ = ["SearchStage", "analysed_segments"]

log = logging.getLogger(__name__)


def analysed_segments(segments: list[list[int]], stride_ns: int, merger_offset_ns: int) -> np.ndarray:
    """GPS seconds ``(n, 2)``, ``[start, end)``, of the merger times covered by runs ``[first, last]`` of analysed
    windows (grid indices)."""
    seg = np.array(segments, dtype=np.int64).reshape(-1, 2)
    if not seg.size:
        return np.zeros((0, 2))
    return np.stack([(seg[:, 0] * stride_ns + merger_offset_ns) / NS,
                     ((seg[:, 1] + 1) * stride_ns + merger_offset_ns) / NS], axis=1)


def removal_stat(cfg: Config, stride_ns: int, meta: dict, n_slides: int) -> float | None:
    """The statistic above which a zero-lag trigger is removed from the slid background (hierarchical removal),
    or None when removal is off: ``ranking.removal_ifar_days`` turned into a statistic by
    ``ranking.removal_background``, a fixed background, so that the threshold never moves with the background
    it protects (and every span of a distributed search removes the same triggers).

    The reference may be made with another autogating threshold or consistency test than the search's (a noise
    background made without gates serves a gated search): it only sets how loud a trigger must be to be taken
    for a signal, and its FARs are never reported. One made without the consistency test is the louder, so it
    removes fewer triggers, not more."""
    r = cfg.ranking
    if not r.removal_ifar_days > 0 or n_slides <= 0:
        return None
    path = initial_background_path(r.removal_background)
    if path is None:
        return None
    try:
        ref = Background.load(path)
        ungated = {**meta, "whiten": {k: v for k, v in (meta.get("whiten") or {}).items() if k != "gate_threshold"}}
        ungated.pop("consistency", None)
        Background(stride_ns, ungated).check_compatible(ref, f"ranking.removal_background ({path})")
    except BackgroundMismatch as exc:
        if r.removal_background.strip().lower() != "default":
            raise
        log.warning("hierarchical removal off: the shipped background does not fit this search (%s = %r here, %r "
                    "there); set ranking.removal_background to a background of this search", exc.setting,
                    exc.expected, exc.found)
        return None
    stat = ref.stat_at_far(1.0 / (r.removal_ifar_days * 86400.0))
    log.info("hierarchical removal: zero-lag triggers with statistic >= %.4f (FAR <= 1/%g days against %s, "
             "live time %.1f days) are kept out of the time-slid background", stat, r.removal_ifar_days, path,
             ref.livetime_s / 86400)
    return stat


class SearchStage:
    """Blocks in, zero-lag triggers with FARs out.

    Parameters
    ----------
    cfg : Config
        Sections data, psd, whiten, windows, ranking.
    scorer : gwstream.models.scorer.Scorer
    n_slides : int, optional
        Overrides the configured number of time slides.
    background : Background, optional
        Precomputed background to start from (``ranking.background_init`` otherwise).

    Attributes
    ----------
    ranking : RankingStage
    counters : collections.Counter
        blocks, windows, gaps, warmup_blocks, triggers.
    """

    def __init__(self, cfg: Config, scorer, *, n_slides: int | None = None, background: Background | None = None,
                 snapshots: bool = False):
        self.cfg = cfg
        self.scorer = scorer
        model = scorer.model
        r = cfg.ranking
        if n_slides is None:
            n_slides = r.n_slides_joint if model.joint else r.n_slides
        self.n_slides = int(n_slides)
        check_whitening(cfg, scorer.meta)
        rate = cfg.data.analysis_rate_hz
        self.stride_samples = int(round(cfg.windows.stride_s * rate))
        stride_ns = samples_to_ns(self.stride_samples, rate)
        span = tuple(scorer.meta.get("merger_offset_span_s") or
                     scorer.meta.get("config", {}).get("merger_span_s") or (0.5, 0.9))
        self.merger_offset_s = float(scorer.meta.get("merger_offset_s", float(np.mean(span))))
        var_s = r.var_s or (span[1] - span[0]) / 2 + cfg.windows.stride_s
        init = initial_background_path(r.background_init) if background is None else None
        if init is not None:
            background = Background.load(init)
            log.info("initial background %s: live time %.0f s (%.1f days), %d time slides", init,
                     background.livetime_s, background.livetime_s / 86400, background.n_slides_max)
        meta = {"model_sha256": scorer.sha256 or "in-memory", "model": model.name,
                "slide_step_s": float(r.slide_step_s), "window_s": float(cfg.windows.window_s),
                "analysis_rate_hz": int(rate), "consistency": consistency(cfg).meta(), **conditioning_meta(cfg)}
        self.slides = SlideScorer(scorer, sample_rate_hz=rate, stride_samples=self.stride_samples,
                                  slide_step_samples=int(round(r.slide_step_s * rate)), n_slides=self.n_slides,
                                  consistency=consistency(cfg))
        templates = getattr(model, "template_pairs", 0) and r.template_time_snr > 0
        self.ranking = RankingStage(stride_ns=stride_ns, cluster_window_s=r.cluster_window_s,
                                    merger_offset_ns=seconds_to_ns(self.merger_offset_s), var_s=var_s,
                                    time_plateau=r.time_plateau, locate=self._locate if templates else None,
                                    n_slides=self.n_slides, background=background, meta=meta,
                                    n_exact=r.background_exact, slide_windows=self.slides.slide_windows,
                                    removal_stat=removal_stat(cfg, stride_ns, meta, self.n_slides),
                                    removal_windows=int(round(r.removal_window_s / cfg.windows.stride_s)))
        self.conditioner: Conditioner | None = None
        self.segments: list[list[int]] = []  # analysed zero-lag window starts, merged: [first, last] grid index
        self.counters: Counter[str] = Counter()
        self.gates: list[tuple[str, float, float]] = []  # autogating: (ifo, GPS s of the centre, peak sigma)
        self.last_block_end_ns: int | None = None
        # the whitened stream's recent past, for the follow-up of triggers (SNR series, sky maps)
        self.snapshot_queue: SnapshotQueue | None = None
        if snapshots:
            f = cfg.followup
            history = WhitenedHistory(len(cfg.data.ifos), rate, capacity_s=max(64.0, f.before_s + f.after_s + 16.0))
            self.snapshot_queue = SnapshotQueue(history, before_s=f.before_s, after_s=f.after_s)

    def _locate(self, first: int, last: int) -> int | None:
        """GPS ns of the merger the template branch finds in zero-lag windows ``first .. last``, or None."""
        hit = self.slides.locate(first, last, self.cfg.ranking.template_time_snr)
        if hit is None:
            return None
        rate = self.cfg.data.analysis_rate_hz
        return sample_time_ns(hit[0], rate)

    def template_of(self, trigger: Trigger) -> tuple[int, float] | None:
        """The template branch's best template around ``trigger`` (its loudest window and two on each
        side): ``(template index, two-detector SNR)``, or None (no branch, or the steps are gone)."""
        stride_ns = self.ranking.stride_ns
        j = trigger.window_gps_ns // stride_ns
        best = self.slides.best_template(j - 2, j + 2)
        return None if best is None else (best[2], best[1])

    def request_snapshot(self, trigger: Trigger, event_id: str, template: tuple[int, float] | None = None) -> bool:
        """Ask for ``trigger``'s :class:`~gwstream.daemon.stream.snapshot.TriggerSnapshot` (see
        :meth:`snapshots`); False when this stage keeps no history or has no whitening yet."""
        q, cond = self.snapshot_queue, self.conditioner
        if q is None or cond is None or cond.taps is None or cond.psd is None:
            return False
        freqs, psd = cond.psd
        template = template if template is not None else self.template_of(trigger)
        q.request(trigger.gps_ns, event_id=event_id, ifos=tuple(self.cfg.data.ifos), psd_freqs=freqs.copy(),
                  psd=np.array(psd, copy=True), taps=cond.taps.copy(), phase=cond.phase,
                  template_index=None if template is None else int(template[0]),
                  template_snr=None if template is None else float(template[1]), far=float(trigger.far),
                  stat=float(trigger.stat))
        return True

    def snapshots(self, *, final: bool = False) -> list[TriggerSnapshot]:
        """The requested snapshots whose data have come in (every pending one when ``final``)."""
        return [] if self.snapshot_queue is None else self.snapshot_queue.ready(final=final)

    def _new_conditioner(self, input_rate_hz: int) -> Conditioner:
        # a factorized model scores the whitened stream: its windows need not be copied out
        return Conditioner.from_config(self.cfg, input_rate_hz=input_rate_hz, copy_windows=self.scorer.model.joint)

    def condition_only(self, blocks: list[Block]) -> None:
        """Run blocks through the conditioner alone (no scoring, no ranking): how a distributed search's span
        brings its PSD to where one process's would be, before the stretch it scores."""
        if self.conditioner is None and blocks:
            self.conditioner = self._new_conditioner(blocks[0].sample_rates[0])
        for block in blocks:
            self.conditioner.process(block)

    def prime(self, blocks: list[Block]) -> None:
        """Condition consecutive blocks and take their features into the scorer's history, without scoring or
        ranking them (a factorized model; a joint one is scored, its output dropped). A distributed search's
        span primes the stretch its slides reach back into: only L1's features and the windows' validity of
        that past are read later, and the head's pass per slide over it, the bulk of the cost, is skipped."""
        self._run(blocks, score=self.scorer.model.joint)

    def restore_conditioner(self, state: dict, input_rate_hz: int) -> None:
        """Continue from a :meth:`Conditioner.snapshot <gwstream.daemon.stream.conditioning.Conditioner.snapshot>`
        (taken by another stage of the same configuration)."""
        self.conditioner = self._new_conditioner(input_rate_hz)
        self.conditioner.restore(state)

    def start_owning(self) -> None:
        """From the next block on, count only what this stage decides from now: a fresh (empty) background, live
        times, segments and counters from zero, and each trigger's :attr:`RankingStage.far_inputs`. The clustering
        carry, the last trigger and every filter keep their state. A span of a distributed search calls this at
        its own start, after its lead-in."""
        r = self.ranking
        old = r.background
        r.background = Background(old.stride_ns, old.meta, n_exact=old.n_exact, hist_range=old.hist_range,
                                  bin_width=old.bin_width)
        r.foreground_live_windows = 0
        r.n_triggers = 0
        r.far_inputs = []
        r.removed_zones = r.removed_windows = r.removed_clusters = r.kept_candidates = 0
        self.segments = []
        self.counters = Counter()
        self.gates = []

    @property
    def background(self) -> Background:
        return self.ranking.background

    def process(self, block: Block) -> list[Trigger]:
        """Analyse one aligned block; returns the triggers it completes."""
        return self.process_many([block])[0]

    def process_many(self, blocks: list[Block]) -> list[list[Trigger]]:
        """Analyse consecutive blocks; returns the triggers each completes, as :meth:`process` block by block.

        The encoder of a factorized model runs once over each contiguous
        stretch of the blocks' whitened stream instead of once per block
        (a joint model takes them one by one),
        which is what makes a backlog (a replay at full speed, a restart
        catching up) cheaper to clear. Statistics, triggers and FARs are those
        of block-by-block processing (tested bit for bit).
        """
        return self._run(blocks, score=True)

    def _run(self, blocks: list[Block], *, score: bool) -> list[list[Trigger]]:
        """:meth:`process_many`, or with ``score`` False :meth:`prime`'s feed-and-mark of each contiguous run."""
        if self.conditioner is None and blocks:
            self.conditioner = self._new_conditioner(blocks[0].sample_rates[0])
        out: list[list[Trigger]] = []
        run: list[Conditioned] = []

        def flush() -> None:
            self.slides.feed(run)
            if score:
                out.extend(self._rank(scored) for scored in self.slides.score_many(run))
            else:
                self.slides.mark(run)
            run.clear()

        for block in blocks:
            cond = self.conditioner.process(block)
            if self.snapshot_queue is not None and cond.stream_start is not None:
                self.snapshot_queue.history.add(int(cond.stream_start), cond.stream, cond.stream_bad)
            self.counters["blocks"] += 1
            self.last_block_end_ns = block.end_ns
            for i, t_ns, peak in cond.gates:
                self.gates.append((self.cfg.data.ifos[i], t_ns / NS, peak))
                self.counters["gates"] += 1
            if cond.status is Status.GAP:
                self.counters["gaps"] += 1
            elif cond.status is Status.WARMING_UP:
                self.counters["warmup_blocks"] += 1
            if run and not SlideScorer.continues(run[-1], cond):
                flush()
            run.append(cond)
            if self.scorer.model.joint:
                flush()  # a joint model scores the conditioner's windows, which the next block overwrites
        flush()
        return out

    def _rank(self, scored: tuple[int, np.ndarray, np.ndarray] | None) -> list[Trigger]:
        if scored is None:
            return []
        first, stats, valid = scored
        self._track_segments(first, valid[0])
        self.counters["windows"] += stats.shape[1]
        self.counters["valid_windows"] += int(valid[0].sum())
        r = self.ranking
        triggers = r.add(first, stats, valid)
        self.counters["triggers"] += len(triggers)
        if r.removal_stat is not None:
            self._count_removal()
        return triggers

    def _count_removal(self) -> None:
        r = self.ranking
        for key, value in (("removed_zones", r.removed_zones), ("removed_windows", r.removed_windows),
                           ("removed_clusters", r.removed_clusters), ("removal_kept", r.kept_candidates)):
            self.counters[key] = value

    def _track_segments(self, first: int, ok: np.ndarray) -> None:
        idx = first + np.nonzero(ok)[0]
        if not idx.size:
            return
        breaks = np.nonzero(np.diff(idx) != 1)[0]
        runs = zip(np.concatenate([[idx[0]], idx[breaks + 1]]), np.concatenate([idx[breaks], [idx[-1]]]))
        for a, b in runs:
            if self.segments and self.segments[-1][1] + 1 == a:
                self.segments[-1][1] = int(b)
            else:
                self.segments.append([int(a), int(b)])

    def analysed_segments(self) -> np.ndarray:
        """GPS seconds ``(n, 2)`` of trigger (merger) times the analysed windows cover, ``[start, end)``."""
        return analysed_segments(self.segments, self.ranking.stride_ns, self.ranking.merger_offset_ns)

    def finish(self) -> list[Trigger]:
        """End of data: the last open clusters become triggers."""
        r = self.ranking
        triggers = r.flush()
        self.counters["triggers"] += len(triggers)
        if r.removal_stat is not None:
            self._count_removal()
        return triggers
