"""Ranking stage: window scores -> clustered triggers -> false-alarm rates from time slides.

:class:`RankingStage` receives, for consecutive windows on the GPS stride
grid, the zero-lag statistic and the statistic of ``K`` time slides (L1
shifted against H1 by ``k * slide_step`` for ``k = 1..K``), each with a
validity mask. Every series is clustered by the same local-maximum rule
(:func:`gwstream.kernels.cluster.local_maxima_stream`); slid clusters and
their live windows go into the :class:`~gwstream.daemon.stream.background.Background`;
each zero-lag cluster becomes a :class:`Trigger` with its FAR against the
background accumulated so far, as soon as it can no longer grow (half a
cluster window after its peak).

The stage is pure (no sockets, no clocks) and deterministic; its whole state
(background, clustering carry, grid position, last trigger) is written
atomically to one HDF5 file by :meth:`save` and read back by :meth:`load`,
so a restarted search continues its background and live time where they were
and never reports a trigger twice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
from gwstream.daemon.config import RankingConfig
from gwstream.daemon.io.trigger import TRIGGER_FIELDS, Trigger
from gwstream.daemon.units import NS
from gwstream.kernels import cluster as kcl

from .background import Background, BackgroundError, far_hz, far_to_ifar_years

__all__ = ["Trigger", "RankingStage", "TRIGGER_FIELDS"]

log = logging.getLogger(__name__)
_STATE_VERSION = 1
#: slides of a loud zero-lag peak's L1 window (with H1's next windows) checked before it is removed
CHECK_SLIDES = 8
_RANKING = RankingConfig()  # defaults of the settings the stage shares with the config


class RankingStage:
    """Cluster zero-lag and time-slid window scores; rank zero-lag triggers against the slid background.

    Parameters
    ----------
    stride_ns : int
        Window grid stride (ns); window ``i`` starts at GPS ``i * stride_ns``.
    cluster_window_s : float
        A trigger is the loudest window within ``± cluster_window_s / 2``.
    merger_offset_ns : int
        Trigger time minus window start (the model's merger offset).
    var_s : float
        Timing tolerance reported with each trigger.
    time_plateau : float
        Trigger time: the middle of the run of windows around the peak, within
        the cluster, whose statistic is at least the peak's minus this, plus
        the merger offset (0: the peak window alone). A loud signal keeps the
        statistic high for every window that holds enough of it, so the
        loudest of those is a noisy estimate of where its merger lies; the
        middle of the run is a much steadier one.
    locate : callable, optional
        ``locate(first, last) -> merger GPS ns or None``: a better trigger
        time from the windows ``first .. last`` (grid indices) of that run,
        used instead of the middle when it gives one. The search passes the
        template branch's best step (:meth:`SlideScorer.locate`), which dates
        a loud merger to a few ms where the run's middle can be off by a
        quarter second once the template term saturates. A local maximum dated
        within one window stride of the trigger before it is the same event and
        is not reported again (counted in :attr:`merged_triggers`).
    n_slides : int
        Slides ``K``: rows ``1..K`` of every :meth:`add` are the slid series.
    background : Background, optional
        Starting background (e.g. precomputed offline); a fresh one otherwise.
    meta : dict
        What the background is valid for (model sha256, slide step, ...).
    slide_windows : int
        Slide step in windows: slide ``k`` pairs H1's window ``i`` with L1's ``i - k * slide_windows``.
    removal_stat : float or None
        Hierarchical removal (None: off). A zero-lag local maximum whose
        statistic is at least this is treated as a real signal, not noise: every
        slid pair with either detector's window within ``removal_windows`` of
        its peak is kept out of the background, clusters and live time alike
        (see :meth:`removal_zones`), as the offline matched-filter searches
        remove their loudest foreground events. Without it, one loud signal's
        H1 window paired with L1's past and its L1 window paired with H1's
        future fill the background with loud slid triggers, and the next
        signals' FARs rise.
    removal_windows : int
        Half-width of the zone around such a peak, in windows.
    """

    def __init__(self, *, stride_ns: int, cluster_window_s: float, merger_offset_ns: int, var_s: float,
                 n_slides: int, background: Background | None = None, meta: dict | None = None,
                 n_exact: int = _RANKING.background_exact, time_plateau: float = _RANKING.time_plateau,
                 locate: Callable[[int, int], int | None] | None = None, slide_windows: int = 16,
                 removal_stat: float | None = None, removal_windows: int = 32):
        if int(stride_ns) <= 0:
            raise ValueError(f"stride_ns = {stride_ns!r}, expected > 0")
        if not cluster_window_s > 0:
            raise ValueError(f"cluster_window_s = {cluster_window_s!r} s, expected > 0")
        if int(n_slides) < 0:
            raise ValueError(f"n_slides = {n_slides!r}, expected >= 0")
        if not time_plateau >= 0:
            raise ValueError(f"time_plateau = {time_plateau!r}, expected >= 0")
        self.stride_ns = int(stride_ns)
        self.half_width = int(round(cluster_window_s * NS / (2 * self.stride_ns)))
        self.cluster_window_s = float(cluster_window_s)
        self.merger_offset_ns = int(merger_offset_ns)
        self.var_s = float(var_s)
        self.time_plateau = float(time_plateau)
        self.locate = locate
        self.n_slides = int(n_slides)
        self.meta = dict(meta or {})
        self.meta.update(stride_ns=self.stride_ns, cluster_window_s=self.cluster_window_s)
        if background is None:
            background = Background(self.stride_ns, self.meta, n_exact=n_exact)
        else:
            Background(self.stride_ns, self.meta).check_compatible(background, "initial background")
            background.meta = {**background.meta, **self.meta}
        self.background = background
        self._carry = kcl.new_stream_state(self.n_slides + 1, self.half_width)
        self.next_index: int | None = None  # grid index of the next window expected
        self.last_trigger_index = -(2**62)  # grid index of the last zero-lag trigger reported
        self.last_trigger_ns = -(2**62)  # its trigger (located) time
        self.merged_triggers = 0  # local maxima dated within a window step of the trigger before them
        self.foreground_live_windows = 0
        self.n_triggers = 0
        self.skipped_windows = 0  # windows received again after a restart (already analysed)
        # when a list: per trigger, (background live windows, Background.count_parts) at the moment it was
        # ranked, so its FAR can be recomputed against backgrounds this stage never saw (a distributed search)
        self.far_inputs: list[tuple[int, int, int]] | None = None
        # hierarchical removal: zones [first, last] (grid indices) around loud zero-lag peaks; slid clusters and
        # live windows wait `_delay` windows (until every zone that can touch them is known) before they count
        self.slide_windows = int(slide_windows)
        self.removal_stat = None if removal_stat is None else float(removal_stat)
        self.removal_windows = int(removal_windows)
        if self.removal_stat is not None and (self.slide_windows < 1 or self.removal_windows < 0):
            raise ValueError(f"slide_windows = {slide_windows!r}, removal_windows = {removal_windows!r}: "
                             "expected >= 1 and >= 0")
        # a candidate is checked once the first `_check_slides` slides of its L1 window (with later H1 windows)
        # are in: a loud window in one detector alone is a glitch, which the background must keep
        self._check_slides = min(self.n_slides, CHECK_SLIDES)
        self._wait = max(self._check_slides * self.slide_windows, 2 * self.half_width + 1) + self.half_width + 1
        self._delay = self.removal_windows + self.half_width + self._wait + 2
        self._candidates: list[tuple[int, float]] = []  # (peak index, statistic) waiting for their check
        self._recent: list[tuple[int, np.ndarray]] = []  # (first index, stats (K+1, m)) of the last windows
        self.kept_candidates = 0  # loud zero-lag peaks not removed: one detector alone was as loud in a slide
        self.zones: list[tuple[int, int]] = []
        self.removed_zones = 0  # zones opened so far
        self.removed_windows = 0  # slid live windows kept out of the background
        self.removed_clusters = 0  # slid clusters kept out
        self._pending_live: list[tuple[int, np.ndarray]] = []  # (first grid index, valid (K, m)) of slid rows
        self._pending_bg = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))  # slide, index, stat
        # kept up to date as zones open (a FAR counts them at every zero-lag trigger): which waiting clusters touch
        # a zone, and each waiting chunk's live windows that do not
        self._touch = np.zeros(0, dtype=bool)
        self._free: list[int] = []

    # --------------------------------------------------------------- properties
    @property
    def foreground_livetime_s(self) -> float:
        """Zero-lag live time analysed (s)."""
        return self.foreground_live_windows * self.stride_ns / NS

    # -------------------------------------------------------------------- input
    def add(self, first_index: int, stats: np.ndarray, valid: np.ndarray) -> list[Trigger]:
        """Take the scores of the next windows; return the zero-lag triggers this completes.

        Parameters
        ----------
        first_index : int
            Grid index of column 0.
        stats : numpy.ndarray
            float ``(K + 1, n)``: row 0 zero lag, row ``k`` slide ``k``.
        valid : numpy.ndarray
            bool ``(K + 1, n)``: the window (pair) was analysed; non-finite
            statistics are treated as invalid.

        Raises
        ------
        ValueError
            Wrong shapes.
        """
        stats = np.asarray(stats, dtype=np.float64)
        valid = np.asarray(valid, dtype=bool)
        rows = self.n_slides + 1
        if stats.ndim != 2 or stats.shape[0] != rows or valid.shape != stats.shape:
            raise ValueError(f"stats {stats.shape} / valid {valid.shape}: expected both ({rows}, n_windows)")
        valid = valid & np.isfinite(stats)
        stats = np.where(valid, stats, -np.inf)
        first_index = int(first_index)
        out: list[Trigger] = []
        if self.next_index is not None and first_index < self.next_index:
            skip = min(self.next_index - first_index, stats.shape[1])
            self.skipped_windows += skip
            stats, valid, first_index = stats[:, skip:], valid[:, skip:], first_index + skip
        if stats.shape[1] == 0:
            return out
        if self.next_index is not None and first_index > self.next_index:
            gap = first_index - self.next_index
            if gap > 2 * self.half_width:
                out += self._decide(*self._pad(0), final=True, first_index=self.next_index)
            else:
                pad_s, pad_v = self._pad(gap)
                out += self._decide(pad_s, pad_v, final=False, first_index=self.next_index)
        # a loud peak's removal check falls on a fixed window (its index + _wait): the scores are cut there, so
        # which slid pairs are clustered with its zone known does not depend on how the windows come in blocks
        while stats.shape[1]:
            cut = min([i + self._wait - first_index for i, _ in self._candidates
                       if 0 < i + self._wait - first_index < stats.shape[1]], default=stats.shape[1])
            if self.removal_stat is not None:  # a peak found in a piece is checked after it
                cut = min(cut, self._wait - 3 * self.half_width - 1)
            out += self._decide(stats[:, :cut], valid[:, :cut], final=False, first_index=first_index)
            stats, valid, first_index = stats[:, cut:], valid[:, cut:], first_index + cut
        return out

    def flush(self) -> list[Trigger]:
        """The data ended: decide the last windows on the neighbours that exist."""
        if self.next_index is None:
            return []
        return self._decide(*self._pad(0), final=True, first_index=self.next_index)

    def _pad(self, n: int):
        rows = self.n_slides + 1
        return np.full((rows, n), -np.inf), np.zeros((rows, n), dtype=bool)

    def _decide(self, stats, valid, *, final: bool, first_index: int) -> list[Trigger]:
        self.foreground_live_windows += int(valid[0].sum())
        removal = self.removal_stat is not None and self.n_slides > 0
        if removal and self.zones and stats.shape[1]:
            gone = self._zone_mask(first_index, stats.shape[1])
            self.removed_windows += int((valid[1:] & gone).sum())
            valid = valid.copy()
            stats = stats.copy()
            valid[1:][gone] = False
            stats[1:][gone] = -np.inf
        bg_live = int(valid[1:].sum())
        prev = self._carry[0]
        mask, offset, self._carry = kcl.local_maxima_stream(stats, valid, self.half_width, self._carry,
                                                            final=final)
        self.next_index = None if final else first_index + stats.shape[1]
        # mask[:, 0] is column 2h + offset of [previous carry | stats]
        base = 2 * self.half_width + offset
        full = np.concatenate([prev, stats], axis=1)  # column j is grid index first_index + j - 2h
        vals = full[:, base:base + mask.shape[1]]
        bg_rows, bg_cols = np.nonzero(mask[1:])
        if removal:
            # the zones known now are masked out of these windows already; a cluster can still peak in the carry,
            # windows that came before the zone
            self._pending_live.append((first_index, valid[1:].copy()))
            self._free.append(bg_live)
            k, i, v = self._pending_bg
            new_k, new_i = bg_rows + 1, first_index + offset + bg_cols
            self._pending_bg = (np.concatenate([k, new_k]), np.concatenate([i, new_i]),
                                np.concatenate([v, vals[1:][bg_rows, bg_cols]]))
            self._touch = np.concatenate([self._touch, self.removal_zones(new_k, new_i) if self.zones
                                          else np.zeros(new_i.size, dtype=bool)])
        else:
            self.background.add(vals[1:][bg_rows, bg_cols], bg_live, self.n_slides)
        triggers = []
        for c in np.nonzero(mask[0])[0]:
            index = first_index + offset + int(c)
            if index <= self.last_trigger_index:
                continue
            stat = float(vals[0, c])
            if removal and stat >= self.removal_stat:
                self._candidates.append((index, stat))
            extra_live, extra_n = self._pending_counts(stat) if removal else (0, 0)
            if extra_live or extra_n:
                n = int(self.background.count_at_least(stat)) + extra_n
                live_s = (self.background.live_windows + extra_live) * self.stride_ns / NS
                far, sat = (far_hz(n, live_s) if live_s > 0 else np.inf), n == 0
            else:
                far, sat = self.background.far(stat)
            far = float(far)
            window_ns = index * self.stride_ns
            a, b = self._plateau(full[0], base + int(c), stat)
            located = self.locate(index + a, index + b) if self.locate is not None else None
            if located is None:  # a, b: run edges relative to the peak
                located = (2 * index + a + b) * self.stride_ns // 2 + self.merger_offset_ns
            if abs(int(located) - self.last_trigger_ns) < self.stride_ns:
                # a second local maximum of the same event (a loud signal's statistic can peak twice, more than
                # half a cluster window apart, both dated to the one merger): the trigger already reported stands
                # (live it has gone out already); without this, which of two near-equal peaks counts as a local
                # maximum can turn on float rounding, which differs with how many blocks are scored at once
                self.last_trigger_index = index
                self.merged_triggers += 1
                continue
            triggers.append(Trigger(int(located), window_ns, stat, self.var_s, far,
                                    float(far_to_ifar_years(far)), bool(sat)))
            if self.far_inputs is not None:
                n, binned = self.background.count_parts(stat)
                self.far_inputs.append((self.background.live_windows + extra_live, n + extra_n if n >= 0 else -1,
                                        binned + extra_n))
            self.last_trigger_index, self.last_trigger_ns = index, int(located)
        self.n_triggers += len(triggers)
        if removal:
            newest = first_index + stats.shape[1]
            if stats.shape[1]:
                self._recent.append((first_index, stats[1:].copy()))
                keep_from = min([i for i, _ in self._candidates] + [newest - self._wait]) - self.half_width - 1
                self._recent = [(f, v) for f, v in self._recent if f + v.shape[1] > keep_from]
            waiting = []
            for index, stat in self._candidates:
                if final or index + self._wait <= newest:
                    self._check_candidate(index, stat)
                else:
                    waiting.append((index, stat))
            self._candidates = waiting
            self._release(None if final else newest - self._delay)
        return triggers

    # ------------------------------------------------------ hierarchical removal
    def _slid(self, slides: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Slid statistics (slide ``k >= 1``, H1 window ``index``) from the recent windows; -inf where unknown,
        invalid, or touching a zone."""
        out = np.full(index.shape, -np.inf)
        for first, v in self._recent:
            inside = (index >= first) & (index < first + v.shape[1])
            if inside.any():
                out[inside] = v[slides[inside] - 1, index[inside] - first]
        if self.zones:
            out[self.removal_zones(slides, index)] = -np.inf
        return out

    def _check_candidate(self, index: int, stat: float) -> None:
        """Open a zone around a loud zero-lag peak unless it looks like a glitch: one detector's window alone, in
        a *typical* slide, already as loud as halfway from the removal threshold to the peak.

        A glitch in one detector is in every slide of its window, so the slides' median (over the peak's
        neighbourhood, per slide) is about the zero-lag statistic; a signal in both detectors loses its
        coincidence in the slides and the median falls to what one detector alone gives. The median, not the
        maximum, so a slide that pairs the window with another signal does not count. H1's window is checked
        over every slide (paired with L1's past), L1's over the first :data:`CHECK_SLIDES` (H1's next windows).
        """
        h, sw = self.half_width, self.slide_windows
        near = np.arange(-h, h + 1)

        def typical(slides: np.ndarray, cols: np.ndarray) -> float:
            v = self._slid(np.repeat(slides, near.size), cols).reshape(slides.size, near.size).max(axis=1)
            v = v[np.isfinite(v)]  # unknown, invalid or in a zone: no evidence
            return float(np.median(v)) if v.size else -np.inf

        k1 = np.arange(1, self.n_slides + 1)
        h1 = typical(k1, index + np.tile(near, k1.size))
        k2 = np.arange(1, self._check_slides + 1)
        l1 = typical(k2, index + np.repeat(k2, near.size) * sw + np.tile(near, k2.size))
        level = (self.removal_stat + stat) / 2
        if max(h1, l1) >= level:
            self.kept_candidates += 1
            log.info("hierarchical removal: zero-lag peak at gps=%.3f (statistic %.3f) kept in the background: "
                     "%s's window alone reaches %.3f in a typical time slide (>= %.3f: a glitch, not a signal)",
                     index * self.stride_ns / NS, stat, "H1" if h1 >= l1 else "L1", max(h1, l1), level)
            return
        self._open_zone(index)

    def _open_zone(self, index: int) -> None:
        zone = (index - self.removal_windows, index + self.removal_windows)
        if self.zones and zone[0] <= self.zones[-1][1] + 1:  # overlaps or touches the last: one zone
            self.zones[-1] = (min(self.zones[-1][0], zone[0]), max(self.zones[-1][1], zone[1]))
        else:
            self.zones.append(zone)
        self.removed_zones += 1
        self._recount()
        log.info("hierarchical removal: zero-lag peak at gps=%.3f above removal_stat=%.3f: slid pairs with a "
                 "window in [%.3f, %.3f] kept out of the background", index * self.stride_ns / NS,
                 self.removal_stat, zone[0] * self.stride_ns / NS, (zone[1] + 1) * self.stride_ns / NS)

    def removal_zones(self, slides: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Whether slid pair ``(slide k, H1 window index)`` touches a zone: H1's window ``index`` or L1's
        ``index - k * slide_windows`` lies in one (arrays broadcast)."""
        out = np.zeros(np.broadcast(slides, index).shape, dtype=bool)
        l1 = index - slides * self.slide_windows
        for a, b in self.zones:
            out |= ((index >= a) & (index <= b)) | ((l1 >= a) & (l1 <= b))
        return out

    def _zone_mask(self, first: int, n: int) -> np.ndarray:
        """(K, n): slid pairs of windows ``first .. first + n - 1`` that touch a zone."""
        return self.removal_zones(np.arange(1, self.n_slides + 1)[:, None], first + np.arange(n)[None, :])

    def _pending_counts(self, stat: float) -> tuple[int, int]:
        """Live windows and clusters ``>= stat`` that wait for zones, less those touching one: a zero-lag
        trigger's FAR counts them as if released now (a glitch's own slides, H1's with L1's past, are among
        them: without them its FAR would be its background's floor)."""
        return sum(self._free), int(((self._pending_bg[2] >= stat) & ~self._touch).sum())

    def _recount(self) -> None:
        """Which waiting clusters touch a zone, and each waiting chunk's live windows that do not (after a zone
        opened, or a restore)."""
        k, i, _ = self._pending_bg
        self._touch = self.removal_zones(k, i) if self.zones else np.zeros(i.size, dtype=bool)
        self._free = [int((v & ~self._zone_mask(first, v.shape[1])).sum()) if self.zones else int(v.sum())
                      for first, v in self._pending_live]

    def _release(self, before: int | None) -> None:
        """Count the pending slid clusters and live windows of grid indices ``< before`` (all: None), less those
        that touch a zone, into the background; forget zones no later pair can touch."""
        live = 0
        keep: list[tuple[int, np.ndarray]] = []
        free: list[int] = []
        for (first, v), f in zip(self._pending_live, self._free):
            n = v.shape[1] if before is None else min(v.shape[1], max(0, before - first))
            if n == v.shape[1]:
                live += f
                self.removed_windows += int(v.sum()) - f
                continue
            if n:  # a chunk cut at `before`: its released part counted afresh
                part = v[:, :n]
                part_free = int((part & ~self._zone_mask(first, n)).sum()) if self.zones else int(part.sum())
                live += part_free
                self.removed_windows += int(part.sum()) - part_free
                f -= part_free
            keep.append((first + n, v[:, n:]))
            free.append(f)
        self._pending_live, self._free = keep, free
        k, i, vals = self._pending_bg
        out = np.ones(i.size, dtype=bool) if before is None else i < before
        if out.any() or live:
            gone = out & self._touch
            self.removed_clusters += int(gone.sum())
            self.background.add(vals[out & ~self._touch], live, self.n_slides)
            self._pending_bg = (k[~out], i[~out], vals[~out])
            self._touch = self._touch[~out]
        if before is not None:  # a zone matters while some later H1 window's slid L1 partner can fall in it
            horizon = before - self.n_slides * self.slide_windows
            self.zones = [z for z in self.zones if z[1] >= horizon]

    def _plateau(self, row: np.ndarray, j: int, stat: float) -> tuple[int, int]:
        """Edges ``(a <= 0, b >= 0)``, relative to column ``j``, of the run around it within ``time_plateau``."""
        if self.time_plateau <= 0:
            return 0, 0
        floor = stat - self.time_plateau
        lo, hi = max(0, j - self.half_width), min(row.size - 1, j + self.half_width)
        a = b = j
        while a > lo and row[a - 1] >= floor:
            a -= 1
        while b < hi and row[b + 1] >= floor:
            b += 1
        return a - j, b - j

    # ------------------------------------------------------------------- state
    def save(self, path: str | Path) -> Path:
        """Write background and ranking state to one HDF5 file, atomically."""
        import h5py
        from gwstream.daemon.io.atomic import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            self.background.write_group(f.create_group("background"))
            g = f.create_group("ranking")
            g.attrs["version"] = _STATE_VERSION
            g.attrs["config_json"] = json.dumps(self._config(), sort_keys=True)
            g.attrs["next_index"] = -1 if self.next_index is None else int(self.next_index)
            g.attrs["has_next"] = self.next_index is not None
            g.attrs["last_trigger_index"] = int(self.last_trigger_index)
            g.attrs["last_trigger_ns"] = int(self.last_trigger_ns)
            g.attrs["foreground_live_windows"] = int(self.foreground_live_windows)
            g.attrs["n_triggers"] = int(self.n_triggers)
            g.create_dataset("carry_stats", data=self._carry[0])
            g.create_dataset("carry_valid", data=self._carry[1])
            # hierarchical removal's zones and the slid clusters and live windows still waiting for them
            g.create_dataset("removal_zones", data=np.asarray(self.zones, dtype=np.int64).reshape(-1, 2))
            g.create_dataset("pending_live_first", data=np.asarray([f for f, _ in self._pending_live], np.int64))
            g.create_dataset("pending_live_width", data=np.asarray([v.shape[1] for _, v in self._pending_live],
                                                                   np.int64))
            g.create_dataset("pending_live", data=np.concatenate(
                [v for _, v in self._pending_live], axis=1) if self._pending_live else
                np.zeros((self.n_slides, 0), dtype=bool))
            for name, arr in zip(("pending_slide", "pending_index", "pending_stat"), self._pending_bg):
                g.create_dataset(name, data=arr)
            g.create_dataset("candidates", data=np.asarray(self._candidates, dtype=np.float64).reshape(-1, 2))
            g.create_dataset("recent_first", data=np.asarray([f for f, _ in self._recent], np.int64))
            g.create_dataset("recent_width", data=np.asarray([v.shape[1] for _, v in self._recent], np.int64))
            g.create_dataset("recent", data=np.concatenate([v for _, v in self._recent], axis=1) if self._recent
                             else np.zeros((self.n_slides, 0)))
            g.attrs["kept_candidates"] = self.kept_candidates
            g.attrs["removed"] = [self.removed_zones, self.removed_windows, self.removed_clusters]
        return path

    def _config(self) -> dict:
        return {"stride_ns": self.stride_ns, "half_width": self.half_width, "n_slides": self.n_slides,
                "merger_offset_ns": self.merger_offset_ns, "meta": self.meta}

    def load(self, path: str | Path) -> None:
        """Restore what :meth:`save` wrote; the file must come from an identically configured stage.

        Raises
        ------
        BackgroundError
            Missing, unreadable or malformed file, or one written by a stage
            with another configuration (model, stride, slides, cluster window).
        """
        import h5py

        path = Path(path)
        if not path.is_file():
            raise BackgroundError(f"{path}: no such ranking state file")
        try:
            with h5py.File(path, "r") as f:
                if "ranking" not in f or "background" not in f:
                    raise BackgroundError(f"{path}: expected groups 'background' and 'ranking'")
                g = f["ranking"]
                if int(g.attrs.get("version", -1)) != _STATE_VERSION:
                    raise BackgroundError(f"{path}: ranking state version {g.attrs.get('version')!r}, "
                                          f"expected {_STATE_VERSION}")
                saved = json.loads(g.attrs["config_json"])
                mine = json.loads(json.dumps(self._config(), sort_keys=True))
                for key in sorted(set(saved) | set(mine)):
                    if saved.get(key) != mine.get(key):
                        raise BackgroundError(f"{path}: written with {key} = {saved.get(key)!r}, this search "
                                              f"has {mine.get(key)!r}")
                bg = Background.read_group(f["background"], str(path))
                carry = (np.asarray(g["carry_stats"][()], dtype=np.float64),
                         np.asarray(g["carry_valid"][()], dtype=bool))
                shape = (self.n_slides + 1, 2 * self.half_width)
                if carry[0].shape != shape or carry[1].shape != shape:
                    raise BackgroundError(f"{path}: clustering carry of shape {carry[0].shape}, expected {shape}")
                attrs = {k: g.attrs[k] for k in ("next_index", "has_next", "last_trigger_index",
                                                 "foreground_live_windows", "n_triggers")}
                attrs["last_trigger_ns"] = g.attrs.get("last_trigger_ns", -(2**62))  # older state files lack it
                zones, pending_live, pending_bg, removed = [], [], self._pending_bg, (0, 0, 0)
                candidates, recent, kept = [], [], 0
                if "removal_zones" in g:  # older state files have no removal state
                    zones = [(int(a), int(b)) for a, b in np.asarray(g["removal_zones"][()]).reshape(-1, 2)]
                    lv = np.asarray(g["pending_live"][()], dtype=bool)
                    edges = np.cumsum(np.concatenate([[0], g["pending_live_width"][()]])).astype(int)
                    if lv.shape != (self.n_slides, edges[-1]):
                        raise BackgroundError(f"{path}: pending live windows of shape {lv.shape}, expected "
                                              f"({self.n_slides}, {edges[-1]})")
                    pending_live = [(int(f), lv[:, a:b]) for f, a, b in
                                    zip(g["pending_live_first"][()], edges[:-1], edges[1:])]
                    pending_bg = (np.asarray(g["pending_slide"][()], np.int64),
                                  np.asarray(g["pending_index"][()], np.int64),
                                  np.asarray(g["pending_stat"][()], np.float64))
                    removed = tuple(int(x) for x in g.attrs["removed"])
                    candidates = [(int(i), float(v)) for i, v in np.asarray(g["candidates"][()]).reshape(-1, 2)]
                    rv = np.asarray(g["recent"][()], dtype=np.float64)
                    edges = np.cumsum(np.concatenate([[0], g["recent_width"][()]])).astype(int)
                    recent = [(int(f), rv[:, a:b]) for f, a, b in zip(g["recent_first"][()], edges[:-1], edges[1:])]
                    kept = int(g.attrs["kept_candidates"])
        except OSError as exc:
            raise BackgroundError(f"{path}: unreadable as HDF5 ({exc})") from None
        except (KeyError, ValueError) as exc:
            if isinstance(exc, BackgroundError):
                raise
            raise BackgroundError(f"{path}: malformed ranking state ({exc})") from None
        self.background = bg
        self._carry = carry
        self.next_index = int(attrs["next_index"]) if bool(attrs["has_next"]) else None
        self.last_trigger_index = int(attrs["last_trigger_index"])
        self.last_trigger_ns = int(attrs["last_trigger_ns"])
        self.foreground_live_windows = int(attrs["foreground_live_windows"])
        self.n_triggers = int(attrs["n_triggers"])
        self.zones, self._pending_live, self._pending_bg = zones, pending_live, pending_bg
        self.removed_zones, self.removed_windows, self.removed_clusters = removed
        self._candidates, self._recent, self.kept_candidates = candidates, recent, kept
        self._recount()
        if self.removal_stat is None:  # saved with removal on, restored without: what waited counts now
            self._release(None)
        log.info("restored ranking state from %s: background livetime_s=%.1f triggers=%d next_gps=%s",
                 path, bg.livetime_s, bg.n_triggers,
                 None if self.next_index is None else self.next_index * self.stride_ns / NS)
