"""Zero-lag and time-slid statistics of conditioned blocks.

A slide scorer turns each :class:`~gwstream.daemon.stream.conditioning.Conditioned`
block into the statistics the ranking stage needs: for every new window ``i``
on the GPS stride grid, the zero-lag statistic and, for ``k = 1..K``, the
statistic of H1's window ``i`` paired with L1's window ``i - k * slide``
(L1 from the past, so a slide never waits for data), each with its validity
(both detectors' windows analysed).

:class:`SlideScorer` is the interface the pipeline calls, and calling it builds
the scorer for the model, chosen once:

* :class:`FactorizedSlideScorer` (factorized models): the encoder runs once
  over the contiguous whitened stream of each detector, block by block without
  recomputing any context (:class:`~gwstream.models.encoder.StreamEncoder`);
  the head's per-step projections go into ring buffers holding ``K * slide``
  of history, and every slide costs one pass of the coincidence head
  (:meth:`~gwstream.models.factorized.FactorizedNet.head_projected`). It uses
  only the model's public streaming interface (see
  :class:`~gwstream.models.factorized.FactorizedNet`).
* :class:`JointSlideScorer` (joint models): every slid pair is a new window
  scored by the network, so slides cost a full inference each; keep ``K``
  small.

Both produce the zero-lag row from the same arithmetic as the slid rows, so
the background is ranked exactly like the foreground.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from gwstream.daemon.units import NS
from gwstream.models.encoder import StreamEncoder

from .conditioning import Conditioned
from .consistency import Consistency, span_energies, window_residual
from .identity import check_consistency

__all__ = ["SlideScorer", "FactorizedSlideScorer", "JointSlideScorer"]

log = logging.getLogger(__name__)

#: the statistics of one block: (grid index of its first window, stats (K+1, n), valid (K+1, n)), or None
Scored = tuple[int, np.ndarray, np.ndarray] | None


class _WindowFlags:
    """Per-detector window validity by grid index, for the last ``capacity`` windows."""

    def __init__(self, capacity: int, n_ifo: int):
        self.capacity = int(capacity)
        self.tag = np.full(self.capacity, -1, dtype=np.int64)
        self.ok = np.zeros((self.capacity, n_ifo), dtype=bool)

    def grow(self, capacity: int) -> None:
        """Enlarge to ``capacity`` windows, keeping every entry."""
        if capacity <= self.capacity:
            return
        keep = self.tag >= 0
        tag, ok = self.tag[keep], self.ok[keep]
        self.capacity = int(capacity)
        self.tag = np.full(self.capacity, -1, dtype=np.int64)
        self.ok = np.zeros((self.capacity, ok.shape[1]), dtype=bool)
        self.put(tag, ok)

    def put(self, index: np.ndarray, ok: np.ndarray) -> None:
        slot = index % self.capacity
        self.tag[slot] = index
        self.ok[slot] = ok

    def get(self, index: np.ndarray, ifo: int) -> np.ndarray:
        """Validity of detector ``ifo`` at grid ``index`` (False when unknown or already overwritten)."""
        slot = index % self.capacity
        return (self.tag[slot] == index) & self.ok[slot, ifo] & (index >= 0)


class SlideScorer:
    """Statistics of zero lag and ``n_slides`` time slides per conditioned block.

    ``SlideScorer(scorer, ...)`` returns a :class:`FactorizedSlideScorer` for a
    factorized model and a :class:`JointSlideScorer` for a joint one (as
    ``pathlib.Path`` picks its flavour); both have the methods below, which are
    all the pipeline calls.

    Parameters
    ----------
    scorer : gwstream.models.scorer.Scorer
    sample_rate_hz : int
        Analysis rate of the whitened stream.
    stride_samples : int
        Window stride (samples); window ``i`` starts at analysis sample ``i * stride_samples``.
    slide_step_samples : int
        L1 shift per slide (samples), a multiple of the stride.
    n_slides : int
        ``K``; 0 scores the zero lag only.
    consistency : Consistency, optional
        The per-detector consistency test (:mod:`~gwstream.daemon.stream.consistency`), applied to every
        row alike; needs a factorized model with a template branch. None or weight 0: off.
    """

    def __new__(cls, scorer, **settings):
        if cls is SlideScorer:
            cls = JointSlideScorer if scorer.model.joint else FactorizedSlideScorer
        return super().__new__(cls)

    def __init__(self, scorer, *, sample_rate_hz: int, stride_samples: int, slide_step_samples: int,
                 n_slides: int, consistency: Consistency | None = None):
        model = scorer.model
        self.consistency = consistency if consistency is not None and consistency.on else None
        if self.consistency is not None:
            check_consistency(consistency.weight, 0 if model.joint else int(getattr(model, "template_pairs", 0)),
                              f"the {model.name!r} network")
        self.scorer = scorer
        self.rate = int(sample_rate_hz)
        self.window = int(model.window_samples)
        self.stride = int(stride_samples)
        self.n_slides = int(n_slides)
        if model.sample_rate_hz != self.rate:
            raise ValueError(f"model expects {model.sample_rate_hz} Hz, the stream is at {self.rate} Hz")
        if self.n_slides < 0:
            raise ValueError(f"n_slides = {n_slides!r}, expected >= 0")
        if slide_step_samples <= 0 or slide_step_samples % self.stride:
            raise ValueError(f"slide step of {slide_step_samples} samples: expected a positive multiple of the "
                             f"window stride ({self.stride} samples)")
        self.slide_windows = int(slide_step_samples) // self.stride
        self.slide_step_samples = int(slide_step_samples)
        # windows of history the slides reach back, plus one block's worth of margin
        self._reach = self.n_slides * self.slide_windows
        self._flags = _WindowFlags(self._reach + 4 * (self.rate // self.stride + 1) + 64, 2)

    def _ensure_capacity(self, block_samples: int) -> None:
        """History must hold the slides' reach plus one block (whose windows arrive at once)."""
        block_windows = block_samples // self.stride + 2
        need = self._reach + block_windows + self.window // self.stride + 64
        if need > self._flags.capacity:
            self._flags.grow(2 * need)

    def reset(self) -> None:
        """Forget the stream (the history stays valid only through window flags)."""

    # -------------------------------------------------------------- features
    @staticmethod
    def continues(prev: Conditioned, cond: Conditioned) -> bool:
        """Whether ``cond``'s whitened stream starts where ``prev``'s ends (both have one)."""
        return (prev.stream_start is not None and cond.stream_start is not None and prev.stream is not None
                and int(cond.stream_start) == int(prev.stream_start) + prev.stream.shape[1])

    def feed(self, conds: list[Conditioned]) -> None:
        """Take in the whitened streams of consecutive blocks ``conds`` before they are scored.

        :meth:`score` (or :meth:`score_many`) must then be called for each
        block, in order. Each stream must continue the previous one
        (:meth:`continues`).
        """

    def mark(self, conds: list[Conditioned]) -> None:
        """Record the windows of blocks :meth:`feed` has taken as seen (their validity per detector) without
        scoring them: the history later slides read. A factorized scorer keeps all it needs of a block in
        :meth:`feed` and these flags, so a feed and a mark leave the state a feed and a :meth:`score` leave
        (a distributed search's lead-in, which needs L1's past but not its statistics). Joint scorers keep
        windows only when scoring; they raise."""
        raise NotImplementedError(f"{type(self).__name__} keeps its history only when it scores")

    def locate(self, first: int, last: int, min_snr: float) -> tuple[int, float] | None:
        """Where the model puts a merger seen by zero-lag windows ``first .. last`` (grid indices).

        Returns ``(absolute analysis sample of the merger, its SNR)``, or None
        when the model cannot say (here: never).
        """
        return None

    def best_template(self, first: int, last: int) -> tuple[int, float, int] | None:
        """The template a model's branch finds over zero-lag windows ``first .. last``:
        ``(merger sample, SNR, template index)``, or None (here: no branch)."""
        return None

    # ----------------------------------------------------------------- score
    def process(self, cond: Conditioned) -> Scored:
        """Statistics of the block's windows: ``(first_index, stats (K+1, n), valid (K+1, n))``, or None.

        Windows are returned only when the block has some; their grid indices
        are consecutive (the conditioner cuts every grid window once).
        ``process(c)`` is ``feed([c])`` then ``score(c)``.
        """
        self.feed([cond])
        return self.score(cond)

    def score(self, cond: Conditioned) -> Scored:
        """:meth:`process` for a block whose stream :meth:`feed` has already taken."""
        self._ensure_capacity(cond.n_windows * self.stride)
        if cond.n_windows == 0:
            return None
        index, starts = self._grid(cond)
        self._flags.put(index, ~cond.invalid_ifo)
        valid = self._valid(cond, index)
        stats = self._stats(cond, index, starts, valid)
        valid &= np.isfinite(stats)
        return int(index[0]), stats, valid

    def score_many(self, conds: list[Conditioned]) -> list[Scored]:
        """:meth:`score` of consecutive blocks (those of one :meth:`feed`), in order."""
        return [self.score(c) for c in conds]

    def _stats(self, cond: Conditioned, index: np.ndarray, starts: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Statistics ``(K+1, n)`` of the block's windows (grid ``index``, absolute ``starts``; flags put)."""
        raise NotImplementedError

    def _grid(self, cond: Conditioned) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices and absolute start samples of the block's windows (consecutive, on the stride grid)."""
        g = cond.gps_ns.astype(np.int64)
        starts = (g // NS) * self.rate + ((g % NS) * self.rate + NS // 2) // NS  # absolute sample (no overflow)
        index = starts // self.stride
        if (starts % self.stride).any() or (np.diff(index) != 1).any():
            raise ValueError("conditioned windows are off the stride grid or not consecutive")
        return index, starts

    def _valid(self, cond: Conditioned, index: np.ndarray) -> np.ndarray:
        """(K+1, n): H1's window analysed and L1's slid window analysed (flags already put)."""
        k_rows = self.n_slides + 1
        l1_index = index[None, :] - (np.arange(k_rows) * self.slide_windows)[:, None]
        return (~cond.invalid_ifo[None, :, 0]) & self._flags.get(l1_index, 1)


class JointSlideScorer(SlideScorer):
    """:class:`SlideScorer` of a joint model: every slid pair of windows is scored by the network.

    L1's windows are kept for the slides' reach; a slide costs a full
    inference. Nothing is fed: the blocks' windows are scored as they come.
    """

    def __init__(self, scorer, **settings):
        super().__init__(scorer, **settings)
        self._l1 = np.zeros((self._flags.capacity, self.window), dtype=np.float32)

    def _ensure_capacity(self, block_samples: int) -> None:
        capacity = self._flags.capacity
        super()._ensure_capacity(block_samples)
        if self._flags.capacity != capacity:
            old = self._l1
            self._l1 = np.zeros((self._flags.capacity, self.window), dtype=np.float32)
            tags = self._flags.tag[self._flags.tag >= 0]
            self._l1[tags % self._flags.capacity] = old[tags % old.shape[0]]

    def _stats(self, cond: Conditioned, index: np.ndarray, starts: np.ndarray, valid: np.ndarray) -> np.ndarray:
        n = index.size
        self._l1[index % self._flags.capacity] = cond.windows[:, 1]
        stats = np.full((self.n_slides + 1, n), np.nan)
        stats[0] = self.scorer.score(cond.windows)
        if self.n_slides:
            rows, cols = np.nonzero(valid[1:])
            if rows.size:
                pair = np.empty((rows.size, 2, self.window), dtype=np.float32)
                pair[:, 0] = cond.windows[cols, 0]
                src = index[cols] - (rows + 1) * self.slide_windows
                pair[:, 1] = self._l1[src % self._flags.capacity]
                stats[1:][rows, cols] = self.scorer.score(pair)
        return stats


class FactorizedSlideScorer(SlideScorer):
    """:class:`SlideScorer` of a factorized model: one encoder pass per stream, one head pass per slide.

    The encoder (:class:`~gwstream.models.encoder.StreamEncoder`) runs once
    over each detector's whitened stream; the model's per-step projections
    (:meth:`~gwstream.models.factorized.FactorizedNet.project`) go into ring
    buffers, L1's lag-pooled, holding the slides' reach of history, and every
    slide is one pass of
    :meth:`~gwstream.models.factorized.FactorizedNet.head_projected` over
    them. With a template branch, the best template's zero-lag track is kept
    too, to date mergers (:meth:`locate`).
    """

    def __init__(self, scorer, **settings):
        super().__init__(scorer, **settings)
        model = scorer.model
        fs = model.stride_samples
        if self.stride % fs:
            raise ValueError(f"window stride {self.stride} samples is not a multiple of the encoder stride {fs}")
        self._fs = fs
        self._k = model.lag_steps
        self._tp = model.centre_steps
        self._window_steps = model.window_steps
        self._rf_steps = model.receptive_field_samples // fs
        self._wsteps = self.stride // fs
        self._cap = self._reach * self._wsteps + model.window_steps + 8 * (self.rate // fs) + 64
        h = model.projection_channels
        dev = scorer.device
        # H1's projections are read only at the windows being scored (L1's over the slides' reach too):
        # its ring holds what a scorer without slides would
        self._a = torch.full((h, self._cap - self._reach * self._wsteps), float("nan"), device=dev)
        self._b = torch.full((h, self._cap), float("nan"), device=dev)
        self._newest_step: int | None = None  # one past the newest step put into the rings
        self._encoder = StreamEncoder(model)
        self._n_tp = int(model.template_pairs)
        # the largest templates of every lag-pooled L1 step, kept with the ring for the head's kernel
        # (FactorizedNet.head_projected's b_top): the slides then never sort the ring again
        self._top = None
        if self.n_slides and model.uses_top_templates(dev):
            from gwstream.kernels.coinc import TOP

            t = min(TOP, self._n_tp)
            self._top = (np.zeros((self._cap, t), dtype=np.int32), np.full((self._cap, t), np.nan, np.float32))
        # zero lag's best-template SNR^2 per centre step (template_track), tagged with its step
        self._track = np.full(self._cap, np.nan)
        self._track_step = np.full(self._cap, -1, dtype=np.int64)
        self._track_arg = np.zeros(self._cap, dtype=np.int32)  # which template gives _track
        # the consistency test's per-step best-template SNR^2 and data energy per detector, tagged with the step
        self._c_rho2 = np.full((2, self._cap), np.nan)
        self._c_e = np.full((2, self._cap), np.nan)
        self._c_step = np.full(self._cap, -1, dtype=np.int64)
        # (reset() makes the cache of each detector's window residuals: _new_window_cache)
        self.reset()

    @property
    def ring_steps(self) -> int:
        """Feature steps the L1 ring holds (the slides' reach plus blocks' worth of margin; grows with backlogs)."""
        return self._cap

    @property
    def keeps_top_templates(self) -> bool:
        """Whether the L1 ring's top-template lists are kept for the head
        (:meth:`~gwstream.models.factorized.FactorizedNet.uses_top_templates`)."""
        return self._top is not None

    def _ensure_capacity(self, block_samples: int) -> None:
        """Rings must hold the slides' reach plus one block (whose windows and features arrive at once)."""
        super()._ensure_capacity(block_samples)
        block_windows = block_samples // self.stride + 2
        need_steps = (self._reach + block_windows) * self._wsteps + self._window_steps + 64 + self._rf_steps
        newest = self._newest_step
        need_a = need_steps - self._reach * self._wsteps
        if need_a > self._a.shape[1]:
            self._a = self._grown_ring(self._a, 2 * need_a, newest)
        if need_steps > self._cap:
            new_cap = 2 * need_steps
            self._b = self._grown_ring(self._b, new_cap, newest)
            if self._top is not None:
                old_top = self._top
                self._top = (np.zeros((new_cap, old_top[0].shape[1]), dtype=np.int32),
                             np.full((new_cap, old_top[0].shape[1]), np.nan, np.float32))
                if newest is not None:
                    steps = np.arange(max(0, newest - self._cap), newest)
                    for new_ring, old_ring in zip(self._top, old_top):
                        new_ring[steps % new_cap] = old_ring[steps % self._cap]
            self._track_step, (self._track, self._track_arg) = self._regrown_tagged(
                self._track_step, ((self._track, np.nan), (self._track_arg, 0)), new_cap)
            self._c_step, (self._c_rho2, self._c_e) = self._regrown_tagged(
                self._c_step, ((self._c_rho2, np.nan), (self._c_e, np.nan)), new_cap)
            self._cap = new_cap
            self._new_window_cache()

    @staticmethod
    def _regrown_tagged(tags: np.ndarray, arrays, cap: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """A ring whose slots are tagged with their step (``tags``, -1 = empty) and the ``(array, empty value)``
        pairs it tags (the ring on each array's last axis), as rings of ``cap`` slots, every tagged step kept."""
        keep = tags >= 0
        slot = tags[keep] % cap
        new_tags = np.full(cap, -1, dtype=np.int64)
        new_tags[slot] = tags[keep]
        grown = []
        for a, empty in arrays:
            b = np.full(a.shape[:-1] + (cap,), empty, dtype=a.dtype)
            b[..., slot] = a[..., keep]
            grown.append(b)
        return new_tags, grown

    @staticmethod
    def _grown_ring(ring: torch.Tensor, cap: int, newest: int | None) -> torch.Tensor:
        """``ring`` ``(rows, old cap)`` as a ring of ``cap`` steps, its steps before ``newest`` kept."""
        new = torch.full((ring.shape[0], cap), float("nan"), device=ring.device)
        if newest is not None:
            steps = torch.arange(max(0, newest - ring.shape[1]), newest, device=ring.device)
            new[:, torch.remainder(steps, cap)] = ring[:, torch.remainder(steps, ring.shape[1])]
        return new

    def reset(self) -> None:
        """Forget the stream (the ring buffers' history stays valid only through window flags)."""
        self._next_sample = None  # absolute sample index the encoder expects next (None: no stream yet)
        self._feat_next = None  # absolute feature step of the encoder's next output
        self._encoder.reset()
        self._p_tail = None  # last 2k L1 projections (H, <= 2k) and their first step
        self._p_tail_step = None
        self._x_tail = None  # (consistency test) whitened samples the next steps' spans still read, float64
        self._x_tail_start = None  # and the absolute sample of their first
        self._new_window_cache()

    def _new_window_cache(self) -> None:
        """Each detector's window residuals, by window (tagged with its first step): the slides read an L1
        window's a thousand times over."""
        n = self._cap // self._wsteps + 2
        self._cw, self._cw_tag = np.full((2, n), np.nan), np.full((2, n), -1, dtype=np.int64)

    # -------------------------------------------------------------- features
    def feed(self, conds: list[Conditioned]) -> None:
        """Run the encoder once over the whitened streams of consecutive blocks ``conds``.

        A backlog of blocks (a replay at full speed, catching up after an
        outage) then costs one encoder pass instead of one per block; the
        features are those of block-by-block feeding (the encoder carries its
        context, see :class:`~gwstream.models.encoder.StreamEncoder`).
        Each stream must continue the previous one (:meth:`continues`).
        :meth:`score` must then be called for each block, in order.
        """
        conds = [c for c in conds if c.stream_start is not None and c.stream is not None and c.stream.shape[1]]
        if not conds:
            return
        for prev, cond in zip(conds, conds[1:]):
            if not self.continues(prev, cond):
                raise ValueError(f"whitened stream of the block at sample {cond.stream_start} does not continue "
                                 f"the previous one (ends at {int(prev.stream_start) + prev.stream.shape[1]}): "
                                 "feed consecutive blocks together")
        x = conds[0].stream if len(conds) == 1 else np.concatenate([c.stream for c in conds], axis=1)
        self._ensure_capacity(x.shape[1])
        self._feed_stream(int(conds[0].stream_start), x)

    def _feed_stream(self, start: int, x: np.ndarray) -> None:
        """Encoder features of the whitened samples ``x`` (2, n) from absolute sample ``start`` into the rings."""
        model = self.scorer.model
        fs = self._fs
        n_new = x.shape[1]
        if self._next_sample != start:
            # (re)start on the encoder grid: the first feature step at or after `start`
            first = -(-start // fs) * fs
            x = x[:, first - start:]
            # the template branch's FFT blocks end where this block's stream ends (and so, 1-s blocks after
            # 1-s blocks, where every later block's does): a block's features all come with it
            self._encoder.reset(first - (start + n_new))
            self._feat_next = first // fs
            self._p_tail, self._p_tail_step = None, None
            self._x_tail, self._x_tail_start = None, first
        self._next_sample = start + n_new
        if x.shape[1] == 0:
            return
        if self.consistency is not None:  # the samples the steps' template spans read
            xs = x.astype(np.float64)
            if self._x_tail is not None:
                xs = np.concatenate([self._x_tail, xs], axis=1)
            xs_start = self._x_tail_start
        with self.scorer.session():
            f = self._encoder(torch.from_numpy(np.ascontiguousarray(x)).to(self.scorer.device))  # (2, C, nf)
            nf = f.shape[-1]
            if self.consistency is not None:  # keep what the next steps' spans read (from the next step's start)
                cut = max(0, (self._feat_next + nf) * fs - xs_start)
                self._x_tail, self._x_tail_start = xs[:, cut:], xs_start + cut
            if nf == 0:
                return
            j0 = self._feat_next
            self._feat_next += nf
            if self.consistency is not None:
                self._put_consistency(j0, f, xs, xs_start)
            a, p = model.project(f[0], f[1])
            self._put(self._a, j0, a)
            h = p.shape[0]
            # centred lag pool: b[j] = max p[j-k .. j+k], needs k steps on each side; the template energies
            # ride along with the L1 projections for the lag pool's tail (rows h.., then H1's and L1's)
            parts = [p, f[0, -self._n_tp:], f[1, -self._n_tp:]] if self._n_tp else [p]
            tail = self._p_tail is not None and self._p_tail_step + self._p_tail.shape[1] == j0
            t0 = self._p_tail.shape[1] if tail else 0
            k = self._k
            # the steps whose pool reaches into the tail from a small copy (the tail and 2k new steps), the rest
            # from the new rows as they are: no copy of every row (max and sum are exact: the same values)
            pieces = [(j0, parts)]
            if t0:
                sizes = [q.shape[0] for q in parts]
                seam = [torch.cat([old, q[:, :2 * k]], dim=-1) for old, q in zip(self._p_tail.split(sizes), parts)]
                pieces.insert(0, (self._p_tail_step, seam))
            for s0, rows in pieces:
                if rows[0].shape[1] <= 2 * k:
                    continue
                b = model.lag_pool(rows[0])
                self._put(self._b, s0 + k, b)
                if self._top is not None:
                    self._put_top(s0 + k, b[h - self._n_tp:])
                if self._n_tp:
                    track, arg = model.best_template_track(rows[1], rows[2])
                    track = track.double().cpu().numpy()
                    slot = np.arange(s0 + k, s0 + k + track.size) % self._cap
                    self._track[slot], self._track_step[slot] = track, np.arange(s0 + k, s0 + k + track.size)
                    self._track_arg[slot] = arg.cpu().numpy()
            keep = min(2 * k, t0 + nf)
            if nf >= keep:
                self._p_tail = torch.cat([q[:, nf - keep:] for q in parts], dim=0)
            else:
                self._p_tail = torch.cat([self._p_tail, torch.cat(parts, dim=0)], dim=-1)[:, -keep:].clone()
            self._p_tail_step = j0 + nf - keep

    def _put_consistency(self, j0: int, f: torch.Tensor, xs: np.ndarray, xs_start: int) -> None:
        """The consistency test's per-step values of the new steps ``j0 ..`` (features ``f`` (2, C, nf)) from the
        whitened samples ``xs`` (2, n) that start at absolute sample ``xs_start``."""
        model = self.scorer.model
        nf, taps = f.shape[-1], model.template_taps
        rho2 = f[:, -self._n_tp:].max(dim=1).values.double().cpu().numpy()  # (2, nf)
        end = (j0 + np.arange(nf)) * self._fs + model.receptive_field_samples - xs_start  # span [end - taps, end)
        if end[0] - taps < 0 or end[-1] > xs.shape[1]:
            raise RuntimeError(f"consistency test: template spans [{end[0] - taps}, {end[-1]}) outside the "
                               f"{xs.shape[1]} samples kept")
        e = span_energies(xs, end, taps)
        if nf > self._cap:
            j0, rho2, e, nf = j0 + nf - self._cap, rho2[:, -self._cap:], e[:, -self._cap:], self._cap
        slot = np.arange(j0, j0 + nf) % self._cap
        self._c_rho2[:, slot], self._c_e[:, slot], self._c_step[slot] = rho2, e, np.arange(j0, j0 + nf)

    def window_residuals(self, ifo: int, first_steps: np.ndarray) -> np.ndarray:
        """The consistency residual of detector ``ifo``'s windows whose first feature steps are ``first_steps``,
        over the centre steps the head reads (NaN where the ring holds none of them)."""
        first_steps = np.asarray(first_steps, dtype=np.int64)
        cap = self._cw.shape[1]
        slot = (first_steps // self._wsteps) % cap
        hit = self._cw_tag[ifo, slot] == first_steps
        z = np.where(hit, self._cw[ifo, slot], np.nan)
        miss = np.flatnonzero(~hit)
        if miss.size:
            steps = first_steps[miss, None] + self._k + np.arange(self._tp)
            ring = steps % self._cap
            known = self._c_step[ring] == steps
            z[miss] = window_residual(self._c_e[ifo][ring], self._c_rho2[ifo][ring], known,
                                      self.scorer.model.template_taps, self.consistency.slope)
            # kept: a window is scored after its steps are fed, and a past step never comes back, so a window's
            # residual (NaN for one before the stream's start) never changes
            self._cw[ifo, slot[miss]], self._cw_tag[ifo, slot[miss]] = z[miss], first_steps[miss]
        return z

    def _consistency_penalty(self, s_first: int, rel: np.ndarray) -> np.ndarray:
        """``(K+1, n)``: what the test takes off each row's statistic (H1's window, L1's slid one)."""
        cons = self.consistency
        h1 = s_first + rel
        shifts = np.arange(self.n_slides + 1) * (self.slide_windows * self._wsteps)
        l1 = h1[None, :] - shifts[:, None]
        pen_l1 = cons.penalty(self.window_residuals(1, l1.ravel())).reshape(l1.shape)
        return cons.penalty(self.window_residuals(0, h1))[None, :] + pen_l1

    def _put(self, ring: torch.Tensor, step0: int, values: torch.Tensor) -> None:
        n, cap = values.shape[1], ring.shape[1]
        if n > cap:
            values, step0, n = values[:, n - cap:], step0 + n - cap, cap
        i0 = step0 % cap
        first = min(n, cap - i0)  # up to the ring's end, then the rest from its start
        ring[:, i0:i0 + first] = values[:, :first]
        ring[:, :n - first] = values[:, first:]
        self._newest_step = max(self._newest_step or 0, step0 + n)

    def _put_top(self, step0: int, b: torch.Tensor) -> None:
        """The largest templates of lag-pooled L1 steps ``step0 ..`` (template rows ``b``) into the ring's ``_top``."""
        from gwstream.kernels.coinc import top_templates

        n = b.shape[1]
        if n > self._cap:
            b, step0, n = b[:, n - self._cap:], step0 + n - self._cap, self._cap
        idx, val = top_templates(b.cpu().numpy(), self._top[0].shape[1])
        rows = np.arange(step0, step0 + n) % self._cap
        self._top[0][rows], self._top[1][rows] = idx, val

    def locate(self, first: int, last: int, min_snr: float) -> tuple[int, float] | None:
        """Where the template branch puts a merger seen by zero-lag windows ``first .. last`` (grid indices).

        The best template's two-detector SNR (:meth:`FactorizedNet.template_track`,
        not capped) over the centre steps of those windows that the encoder
        has seen and the ring still holds; its peak step dates the merger in
        H1 to the 8-sample feature stride. Returns ``(absolute analysis sample
        of the merger, that SNR)``, or None when the model has no template
        branch, no step is known or the SNR is below ``min_snr``.
        """
        best = self.best_template(first, last)
        if best is None or best[1] < min_snr:
            return None
        return best[0], best[1]

    def best_template(self, first: int, last: int) -> tuple[int, float, int] | None:
        """The template branch's best template over zero-lag windows ``first .. last`` (grid indices).

        Returns ``(absolute analysis sample of the merger it finds, its two-detector SNR, template index)``
        at the step where its SNR peaks, or None (no branch, or no step of those windows known).
        """
        if not self._n_tp:
            return None
        k, ws = self._k, self._wsteps
        steps = np.arange(int(first) * ws + k, int(last) * ws + k + self._tp)
        vals = self.template_track(steps)
        if not np.isfinite(vals).any():
            return None
        i = int(np.nanargmax(vals))
        step = int(steps[i])
        return (self.scorer.model.template_merger_sample(step), float(np.sqrt(max(vals[i], 0.0))),
                int(self._track_arg[step % self._cap]))

    def template_track(self, steps: np.ndarray) -> np.ndarray:
        """The zero-lag best-template SNR squared kept at absolute centre steps ``steps`` (NaN where the ring does
        not hold it: not yet seen, overwritten, or no template branch)."""
        steps = np.asarray(steps, dtype=np.int64)
        slot = steps % self._cap
        return np.where(self._track_step[slot] == steps, self._track[slot], np.nan)

    def mark(self, conds: list[Conditioned]) -> None:
        for c in conds:
            if c.n_windows:
                self._ensure_capacity(c.n_windows * self.stride)
                self._flags.put(self._grid(c)[0], ~c.invalid_ifo)

    # ----------------------------------------------------------------- score
    def score_many(self, conds: list[Conditioned]) -> list[Scored]:
        """:meth:`score` of consecutive blocks, in order, with one pass of the head over all their windows.

        The blocks are those of one :meth:`feed`. The head's statistics of a
        window do not depend on which other windows it is computed with, so
        this returns exactly what :meth:`score` block by block would; it only
        saves the per-call overhead, which dominates when there are few slides.
        Windows that are not consecutive on the grid are scored block by block.
        """
        if len(conds) < 2:
            return [self.score(c) for c in conds]
        grids = [self._grid(c) if c.n_windows else None for c in conds]
        live = [g for g in grids if g is not None]
        if not live:
            return [None] * len(conds)
        index = np.concatenate([g[0] for g in live])
        if (np.diff(index) != 1).any():
            return [self.score(c) for c in conds]
        self._ensure_capacity(index.size * self.stride)
        for c, g in zip(conds, grids):
            if g is not None:
                self._flags.put(g[0], ~c.invalid_ifo)
        stats = self._head(index, np.concatenate([g[1] for g in live]))
        out: list[Scored] = []
        col = 0
        for c, g in zip(conds, grids):
            if g is None:
                out.append(None)
                continue
            n = g[0].size
            s = stats[:, col:col + n]
            col += n
            valid = self._valid(c, g[0]) & np.isfinite(s)
            out.append((int(g[0][0]), s, valid))
        return out

    def _stats(self, cond: Conditioned, index: np.ndarray, starts: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return self._head(index, starts)

    def _head(self, index: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Statistics ``(K+1, n)`` of the windows at grid ``index`` (absolute ``starts``): one head pass."""
        model = self.scorer.model
        k, tp, ws = self._k, self._tp, self._wsteps
        s_first = int(starts[0]) // self._fs  # feature step of the first window's start
        rel = (index - index[0]) * ws
        span = int(rel[-1]) + tp
        dev = self.scorer.device
        with self.scorer.session():
            ca = self._a.shape[1]
            i0 = (s_first + k) % ca
            if i0 + span <= ca:  # the ring's columns as they are (the head only reads them)
                a_span = self._a[:, i0:i0 + span]
            else:  # past the ring's end: its two pieces, copied (cheaper than a gather)
                a_span = torch.cat([self._a[:, i0:], self._a[:, :i0 + span - ca]], dim=1)
            offsets = torch.as_tensor([s_first + k - r * self.slide_windows * ws for r in range(self.n_slides + 1)],
                                      dtype=torch.long, device=dev)
            out = model.head_projected(a_span, self._b, torch.as_tensor(rel, device=dev), offsets, wrap=True,
                                       grid=ws, b_top=self._top)
        out = out.double().cpu().numpy()
        if self.consistency is not None:
            out -= self._consistency_penalty(s_first, rel)
        return out
