"""Streaming PSD: Welch over the trailing stretch of valid data, with a jump guard.

:class:`StreamingWelch` is a small state holder whose whole state is a handful
of arrays (``snapshot()`` / ``restore()``); :func:`sensitivity_proxy` is the
broadband figure its jump guard compares. No I/O, no logging, no globals.
"""

from __future__ import annotations

import numpy as np

from .psd import check_average, combine_periodograms, median_bias, median_of_last_axis, periodograms, segment_geometry

__all__ = ["sensitivity_proxy", "StreamingWelch", "PsdUpdate"]


def sensitivity_proxy(
    freqs: np.ndarray, psd: np.ndarray, f_low_hz: float = 20.0, f_high_hz: float | None = None
) -> np.ndarray:
    """Broadband inspiral sensitivity of a PSD (arbitrary units, larger = more sensitive).

    Parameters
    ----------
    freqs : numpy.ndarray
        Frequencies (Hz), shape ``(n_freq,)``.
    psd : numpy.ndarray
        One-sided PSD (strain^2/Hz), shape ``(n_freq,)`` or ``(channels, n_freq)``.
    f_low_hz, f_high_hz : float
        Integration band (Hz); ``f_high_hz`` defaults to 90 % of the top frequency.

    Returns
    -------
    numpy.ndarray
        ``sqrt(sum f^(-7/3) / S(f) df)`` per channel, shape ``()`` or ``(channels,)``.

    Notes
    -----
    Proportional to the inspiral horizon distance (Allen et al. 2012,
    arXiv:gr-qc/0509116, eq. 3.1 with the Newtonian f^-7/3 spectrum); a
    relative change of this number is the fractional change of the range.
    """
    f_high_hz = 0.9 * freqs[-1] if f_high_hz is None else f_high_hz
    band = (freqs >= max(f_low_hz, freqs[1] if freqs.size > 1 else 0.0)) & (freqs <= f_high_hz)
    if not band.any():
        raise ValueError(f"no frequency in [{f_low_hz}, {f_high_hz}] Hz; freqs span [{freqs[0]}, {freqs[-1]}] Hz")
    f = freqs[band]
    s = np.asarray(psd)[..., band]
    with np.errstate(divide="ignore"):
        integrand = np.where(s > 0, f ** (-7.0 / 3.0) / np.where(s > 0, s, 1.0), 0.0)
    return np.sqrt(integrand.sum(axis=-1) * (freqs[1] - freqs[0]))


class PsdUpdate:
    """Outcome of :meth:`StreamingWelch.update` (plain attributes).

    Attributes
    ----------
    estimated : bool
        A new estimate was computed on this call (refresh due and enough data).
    accepted : bool
        That estimate replaced the current PSD (an estimate neither accepted
        nor rejected was within ``min_change`` of it: the current PSD stays).
    rejected : bool
        It was rejected: its sensitivity moved by more than ``max_change``.
    change : float
        Largest relative sensitivity change of the estimate across channels (nan if none).
    n_segments : int
        FFT segments the estimate averaged.
    """

    __slots__ = ("estimated", "accepted", "rejected", "change", "n_segments")

    def __init__(self, estimated=False, accepted=False, rejected=False, change=float("nan"), n_segments=0):
        self.estimated = estimated
        self.accepted = accepted
        self.rejected = rejected
        self.change = change
        self.n_segments = n_segments

    def __repr__(self) -> str:
        return (
            f"PsdUpdate(estimated={self.estimated}, accepted={self.accepted}, rejected={self.rejected}, "
            f"change={self.change:.3g}, n_segments={self.n_segments})"
        )


class StreamingWelch:
    """Welch PSD over the trailing ``psd_length_s`` of *valid* data of a stream.

    Samples arrive in order with their absolute sample index (any chunking).
    FFT segments sit on a fixed grid of absolute indices (start multiple of
    the step), so the estimate does not depend on how the stream is chunked.
    A segment touching any invalid sample is skipped. Every ``refresh_s`` of
    stream time (at the first chunk end past each multiple of ``refresh_s``
    on the same absolute grid, so two streams of the same data refresh at
    the same moments wherever each of them began) a new estimate is formed
    from the segments ending within the
    trailing ``psd_length_s``, if they cover at least ``min_valid_s``; it is
    accepted unless its :func:`sensitivity_proxy` differs from the current
    PSD's by more than ``max_change`` (relative) in any channel, in which case
    the current PSD is kept and the rejection reported. An estimate within
    ``min_change`` of the current PSD in every channel is not applied either
    (the current PSD stays, and with it whatever was built from it, such as a
    whitening filter): PyCBC Live's ``psd_recalculate_difference``. After
    ``accept_after_rejections`` consecutive rejections the next estimate is
    accepted (the detector really changed).

    Parameters
    ----------
    n_channels : int
        Channels (detectors) estimated together.
    sample_rate : float
        Hz.
    fftlength_s, overlap, average
        As in :func:`welch`.
    psd_length_s : float
        Trailing span of data (s) the estimate uses.
    refresh_s : float
        Cadence of re-estimation (s of stream time).
    min_valid_s : float, optional
        Valid data (s, counted in whole segments) needed for an estimate;
        default ``psd_length_s`` (a full warm-up).
    max_change : float
        Largest accepted relative change of the broadband sensitivity.
    f_low_hz : float
        Low edge (Hz) of the sensitivity integral.
    accept_after_rejections : int
        Consecutive rejections after which an estimate is accepted anyway.
    min_change : float
        Smallest relative sensitivity change (any channel) for which an
        estimate replaces the current PSD; 0 (the default) replaces it at
        every refresh. The daemon passes its ``psd.min_change`` setting.

    Notes
    -----
    Each estimate equals :func:`welch` over the same complete segments
    (``scipy.signal.welch``); PyCBC Live's ``StrainBuffer.recalculate_psd``
    uses the same trailing-median scheme with a variation check.
    """

    def __init__(
        self,
        n_channels: int,
        sample_rate: float,
        fftlength_s: float,
        overlap: float = 0.5,
        average: str = "median",
        psd_length_s: float = 64.0,
        refresh_s: float = 8.0,
        min_valid_s: float | None = None,
        max_change: float = 0.2,
        f_low_hz: float = 20.0,
        accept_after_rejections: int = 3,
        min_change: float = 0.0,
    ):
        check_average(average)
        self.nperseg, self.step = segment_geometry(sample_rate, fftlength_s, overlap)
        if psd_length_s < fftlength_s:
            raise ValueError(f"psd_length_s = {psd_length_s} s, expected >= fftlength_s = {fftlength_s} s")
        if not refresh_s > 0:
            raise ValueError(f"refresh_s = {refresh_s!r} s, expected > 0")
        if not max_change > 0:
            raise ValueError(f"max_change = {max_change!r}, expected > 0")
        if not 0 <= min_change < max_change:
            raise ValueError(f"min_change = {min_change!r}, expected in [0, max_change = {max_change!r})")
        self.n_channels = int(n_channels)
        self.sample_rate = float(sample_rate)
        self.average = average
        self.psd_length = int(round(psd_length_s * sample_rate))
        self.refresh = max(1, int(round(refresh_s * sample_rate)))
        min_valid_s = psd_length_s if min_valid_s is None else min_valid_s
        # whole segments covering min_valid_s of data with the configured overlap
        self.min_segments = max(1, int(np.ceil((min_valid_s * sample_rate - self.nperseg) / self.step)) + 1)
        self.max_segments = (self.psd_length - self.nperseg) // self.step + 1
        self.max_change = float(max_change)
        self.min_change = float(min_change)
        self.f_low_hz = float(f_low_hz)
        self.accept_after_rejections = int(accept_after_rejections)
        self.freqs = np.fft.rfftfreq(self.nperseg, 1.0 / self.sample_rate)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (data, segments and the current PSD)."""
        nf = self.freqs.size
        c = self.n_channels
        self._buf = np.zeros((c, self.nperseg))  # last nperseg samples
        self._buf_valid = np.zeros(self.nperseg, dtype=bool)
        self._next_index = -1  # absolute index of the next expected sample (-1: none yet)
        # ring of periodograms, segment axis last and contiguous: a median is one partition of one copy
        self._pg = np.zeros((c, nf, self.max_segments))
        self._pg_end = np.full(self.max_segments, -1, dtype=np.int64)  # end index (excl.) per slot, -1 empty
        self._pg_slot = 0
        self._last_refresh = -1  # absolute index at last refresh attempt
        self.psd = None  # accepted PSD, shape (C, n_freq), or None
        self._proxy_of = self._proxy = None  # a PSD and its sensitivity_proxy (the last one compared)
        self.psd_index = -1  # absolute index of the end of data behind self.psd
        self.n_rejected = 0  # consecutive rejections

    def snapshot(self) -> dict:
        """Copy of the whole state as a dict of arrays and ints."""
        return {
            "buf": self._buf.copy(), "buf_valid": self._buf_valid.copy(), "next_index": self._next_index,
            "pg": np.moveaxis(self._pg, -1, 0).copy(), "pg_end": self._pg_end.copy(), "pg_slot": self._pg_slot,
            "last_refresh": self._last_refresh,
            "psd": None if self.psd is None else self.psd.copy(), "psd_index": self.psd_index,
            "n_rejected": self.n_rejected,
        }

    def restore(self, state: dict) -> None:
        """Restore a :meth:`snapshot` (shapes must match this configuration)."""
        shape = (self.max_segments, *self._pg.shape[:2])
        if state["pg"].shape != shape:
            raise ValueError(f"snapshot periodograms of shape {state['pg'].shape}, expected {shape}")
        self._buf = state["buf"].copy()
        self._buf_valid = state["buf_valid"].copy()
        self._next_index = int(state["next_index"])
        self._pg = np.ascontiguousarray(np.moveaxis(state["pg"], 0, -1))
        self._pg_end = state["pg_end"].copy()
        self._pg_slot = int(state["pg_slot"])
        self._last_refresh = int(state["last_refresh"])
        self.psd = None if state["psd"] is None else state["psd"].copy()
        self.psd_index = int(state["psd_index"])
        self.n_rejected = int(state["n_rejected"])

    # ----------------------------------------------------------------- update
    def n_segments_available(self, end_index: int | None = None) -> int:
        """Stored segments within the trailing ``psd_length`` before ``end_index``.

        The span is rounded up to the segment grid (at most ``step - 1`` more
        samples), so a full ``psd_length`` of valid data always yields
        ``(psd_length - nperseg) // step + 1`` segments whatever its alignment.
        """
        end = self._next_index if end_index is None else end_index
        ends = self._pg_end
        return int(np.count_nonzero((ends >= 0) & (ends > end - self.psd_length + self.nperseg - self.step) & (ends <= end)))

    def update(self, x: np.ndarray, valid: np.ndarray, start_index: int) -> PsdUpdate:
        """Add samples; re-estimate when a refresh is due.

        Parameters
        ----------
        x : numpy.ndarray
            Samples, shape ``(channels, n)`` (strain).
        valid : numpy.ndarray
            bool, shape ``(n,)`` (shared by channels) or ``(channels, n)``
            (a sample invalid in any channel is invalid).
        start_index : int
            Absolute sample index of ``x[:, 0]``. A jump forward is a gap
            (the partial segment is dropped); backwards is an error.

        Returns
        -------
        PsdUpdate
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[0] != self.n_channels:
            raise ValueError(f"x has {x.shape[0]} channels, expected {self.n_channels}")
        valid = np.asarray(valid, dtype=bool)
        if valid.ndim == 2:
            valid = valid.all(axis=0)
        n = x.shape[1]
        if valid.shape != (n,):
            raise ValueError(f"valid has shape {valid.shape}, expected ({n},)")
        start_index = int(start_index)
        if self._next_index >= 0 and start_index < self._next_index:
            raise ValueError(
                f"start_index = {start_index} is before the next expected sample {self._next_index} (out of order)"
            )
        if self._next_index < 0 or start_index > self._next_index:
            self._buf_valid[:] = False  # gap: nothing before start_index is usable
            if self._last_refresh < 0:
                self._last_refresh = start_index
        # work array: previous nperseg samples + new ones
        L = self.nperseg
        work = np.concatenate([self._buf, x], axis=1)
        wvalid = np.concatenate([self._buf_valid, valid])
        base = start_index - L  # absolute index of work[:, 0]
        end = start_index + n
        # segment starts on the absolute grid s = k*step with base <= s and s + L <= end
        # whose end is > start_index (not already processed)
        first = max(base, start_index - L + 1)
        k0 = -(-first // self.step)
        k1 = (end - L) // self.step
        if k1 >= k0:
            starts = np.arange(k0, k1 + 1) * self.step
            bad = np.concatenate([[0], np.cumsum(~wvalid)])
            rel = starts - base
            ok = (bad[rel + L] - bad[rel]) == 0
            starts = starts[ok]
            if starts.size:
                # keep only what the ring can hold
                starts = starts[-self.max_segments:]
                rel = starts - base
                segs = np.stack([work[:, r:r + L] for r in rel], axis=1)  # (C, S, L)
                pg = periodograms(segs.reshape(-1, L), self.sample_rate, L, L)[:, 0, :]
                pg = pg.reshape(self.n_channels, starts.size, -1)
                for j, s in enumerate(starts):
                    self._pg[:, :, self._pg_slot] = pg[:, j, :]
                    self._pg_end[self._pg_slot] = s + L
                    self._pg_slot = (self._pg_slot + 1) % self.max_segments
        self._buf = work[:, -L:].copy()
        self._buf_valid = wvalid[-L:].copy()
        self._next_index = end
        if self._last_refresh < 0:
            self._last_refresh = start_index
        if self.psd is None:
            due = self.n_segments_available() >= self.min_segments
        else:
            # an absolute grid: the refreshes fall at the same sample whenever the stream started
            due = end // self.refresh > self._last_refresh // self.refresh
        if not due:
            return PsdUpdate()
        self._last_refresh = end
        return self._estimate(end)

    def _estimate(self, end: int) -> PsdUpdate:
        ends = self._pg_end
        sel = (ends >= 0) & (ends > end - self.psd_length + self.nperseg - self.step) & (ends <= end)
        n_seg = int(np.count_nonzero(sel))
        if n_seg < self.min_segments:
            return PsdUpdate(n_segments=n_seg)  # not enough valid data: keep the current PSD
        if self.average == "median":
            # a median does not depend on the segments' order: partition the ring's copy in place
            a = self._pg.copy() if n_seg == self.max_segments else self._pg[:, :, sel]
            new = median_of_last_axis(a) / median_bias(n_seg)  # (C, F)
        else:
            slots = np.flatnonzero(sel)[np.argsort(ends[sel])]  # in time order
            pg = np.ascontiguousarray(np.moveaxis(self._pg[:, :, slots], -1, 0))  # (S, C, F)
            new = combine_periodograms(np.moveaxis(pg, 0, 1), self.average)  # (C, F)
        if self.psd is None:
            self._accept(new, end)
            return PsdUpdate(estimated=True, accepted=True, n_segments=n_seg)
        s_new = sensitivity_proxy(self.freqs, new, self.f_low_hz)
        if self._proxy_of is not self.psd:  # the current PSD's, computed once
            self._proxy_of, self._proxy = self.psd, sensitivity_proxy(self.freqs, self.psd, self.f_low_hz)
        s_old = self._proxy
        change = float(np.max(np.abs(s_new / s_old - 1.0)))
        if change > self.max_change and self.n_rejected < self.accept_after_rejections:
            self.n_rejected += 1
            return PsdUpdate(estimated=True, rejected=True, change=change, n_segments=n_seg)
        if change < self.min_change:
            self.n_rejected = 0  # consistent with the current PSD: no jump in progress
            return PsdUpdate(estimated=True, change=change, n_segments=n_seg)
        self._accept(new, end)
        self._proxy_of, self._proxy = new, s_new
        return PsdUpdate(estimated=True, accepted=True, change=change, n_segments=n_seg)

    def _accept(self, psd: np.ndarray, end: int) -> None:
        self.psd = psd
        self.psd_index = end
        self.n_rejected = 0

    def drop_psd(self) -> None:
        """Forget the current PSD (e.g. after a gap longer than ``psd_length_s``)."""
        self.psd = None
        self.psd_index = -1
        self.n_rejected = 0
