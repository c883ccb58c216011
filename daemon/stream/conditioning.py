"""Streaming conditioning stage: resample -> PSD -> whiten -> sliding windows.

:class:`Conditioner` consumes aligned :class:`~gwstream.daemon.io.wire.Block`
objects in GPS order and returns, per block, a :class:`Conditioned` with an
explicit :class:`Status`, the float32 window batch ``[n, n_ifo, window]``,
each window's GPS start (int ns) and a flag for windows touching invalid
data. All numerics are in :mod:`gwstream.kernels`; this module only keeps
their state, the sample bookkeeping and the log.

Time bookkeeping is in integer *absolute* sample indices (``gps_ns * rate /
1e9``), so window starts fall on a GPS-aligned stride grid whatever the
stream start, and replay and live cut the same windows.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np
from gwstream.daemon.config import DataConfig, PsdConfig, WhitenConfig, WindowsConfig
from gwstream.daemon.io.wire import Block
from gwstream.daemon.units import NS, ns_to_samples, samples_to_ns
from gwstream.kernels import psd_stream as kps
from gwstream.kernels import resample as kres
from gwstream.kernels import whiten as kwh
from gwstream.kernels import windows as kwin

__all__ = ["Status", "Conditioned", "Conditioner"]

log = logging.getLogger(__name__)
_SNAPSHOT_VERSION = 1
# Conditioner's defaults are the config's, so Conditioner(...) and Conditioner.from_config(Config()) agree
_DATA, _PSD, _WHITEN, _WINDOWS = DataConfig(), PsdConfig(), WhitenConfig(), WindowsConfig()


class Status(enum.Enum):
    """What a block's result means; callers must handle every value.

    WARMING_UP
        No accepted PSD yet, or the filters are refilling after a restart:
        windows, if any, are all flagged invalid.
    OK
        Whitened windows (individual ones may still be flagged invalid,
        e.g. around gated samples).
    GAP
        Data before this block is missing (its start jumped forward): the
        filters were restarted, and a warm-up follows.
    """

    WARMING_UP = "warming_up"
    OK = "ok"
    GAP = "gap"


@dataclass(frozen=True)
class Conditioned:
    """Result of :meth:`Conditioner.process` for one block.

    Attributes
    ----------
    status : Status
    block_gps_ns : int
        Start of the block processed (ns).
    seq : int
        The block's sequence number.
    windows : numpy.ndarray
        float32, shape ``(n, n_ifo, window)``, C-contiguous. A view of the
        stage's preallocated buffer: valid until the next ``process`` call.
    gps_ns : numpy.ndarray
        int64, shape ``(n,)``: GPS start of each window (ns).
    invalid : numpy.ndarray
        bool, shape ``(n,)``: the window touches invalid data in any detector
        (gated, missing, or filter warm-up).
    invalid_ifo : numpy.ndarray
        bool, shape ``(n, n_ifo)``: the same per detector.
    psd_update : gwstream.kernels.psd_stream.PsdUpdate
        What the PSD estimator did on this block (``rejected`` = a new
        estimate was refused and the previous PSD kept).
    stream : numpy.ndarray
        float32, shape ``(n_ifo, m)``: the whitened samples this block
        completed, contiguous with the previous block's unless ``stream_start``
        jumped (the windows are cut from exactly these samples). ``m`` may be 0.
    stream_start : int or None
        Absolute analysis-rate sample index (``gps_ns * rate / 1e9``) of
        ``stream[:, 0]``; None while no PSD exists.
    stream_bad : numpy.ndarray
        bool, shape ``(n_ifo, m)``: the FIR span of the sample touches invalid input, or a gate.
    gates : tuple
        Autogating: ``(ifo index, GPS ns of the gate's centre, peak |whitened| in standard deviations)`` of
        each gate opened in this block (see :class:`Conditioner`).
    """

    status: Status
    block_gps_ns: int
    seq: int
    windows: np.ndarray
    gps_ns: np.ndarray
    invalid: np.ndarray
    invalid_ifo: np.ndarray
    psd_update: kps.PsdUpdate
    stream: np.ndarray | None = None
    stream_start: int | None = None
    stream_bad: np.ndarray | None = None
    gates: tuple = ()

    @property
    def n_windows(self) -> int:
        return int(self.windows.shape[0])


def _samples(seconds: float, rate: int, name: str) -> int:
    n = seconds * rate
    if abs(n - round(n)) > 1e-6 * max(1.0, abs(n)) or round(n) < 1:
        raise ValueError(f"{name} = {seconds!r} s is {n:g} samples at {rate} Hz, expected a whole number >= 1")
    return int(round(n))


def _last_bad(valid: np.ndarray, start: int, prev: int) -> np.ndarray:
    """Absolute index of the latest invalid sample at or before each sample."""
    prev = np.asarray(prev, dtype=np.int64)[..., None]
    idx = np.where(valid, prev, np.arange(start, start + valid.shape[-1], dtype=np.int64))
    return np.maximum.accumulate(idx, axis=-1)


class Conditioner:
    """Resample, estimate the PSD, whiten and cut windows, block by block.

    Parameters
    ----------
    ifos : sequence of str
        Detectors, in the order of the blocks' data.
    input_rate_hz : int
        Sample rate of the blocks (Hz); an integer multiple of ``analysis_rate_hz``.
    analysis_rate_hz : int
        Rate the windows are cut at (Hz).
    fftlength_s, overlap, average, psd_length_s, psd_refresh_s, psd_max_change, psd_min_valid_s, psd_min_change
        PSD estimate: Welch segments (s, fraction, "median"/"mean") over the
        trailing ``psd_length_s`` of valid data, refreshed every
        ``psd_refresh_s``, rejected if the broadband sensitivity moves by more
        than ``psd_max_change``, not applied (the filter is not redesigned) if
        it moves by less than ``psd_min_change``; the first estimate after a (re)start needs
        ``psd_min_valid_s`` of valid data (default ``psd_length_s``).
    fduration_s, highpass_hz, phase
        Whitening FIR length (s), high-pass corner (Hz), "linear" or "minimum".
    window_s, stride_s
        Window length and stride (s), whole numbers of analysis samples.
    design_length_s : float
        Filter design grid, see :func:`gwstream.kernels.whiten.design_fir`.
    gate_threshold, gate_half_width_s, gate_taper_s
        Autogating (PyCBC's, on the whitened stream): a whitened sample
        above ``gate_threshold`` standard deviations (0: off) opens a gate
        centred on the loudest sample of its cluster: the stream is zeroed
        within ``± gate_half_width_s`` with a Tukey taper of ``gate_taper_s``
        on each side, and every sample from the taper's start (less the
        filter's look-ahead) to the filter's length after its end (the
        whitening filter's ringing of the glitch) is marked invalid, so no
        window touching it is analysed and live time excludes it. A gate
        reaches back ``gate_half_width_s + gate_taper_s`` (plus the look-ahead),
        so the stream is held back that long before windows are cut.
    copy_windows : bool
        Cut each window into a C-contiguous float32 batch (what a joint model
        scores). ``False`` gives read-only views of the whitened stream instead
        (same values, no copy): a factorized model scores ``stream`` and uses
        the windows only for their number, times and validity.

    Every default that has a config setting is that setting's default
    (sections data, psd, whiten, windows of :class:`gwstream.daemon.config.Config`),
    so a stage built here and one built by :meth:`from_config` from a default
    config are the same.

    Attributes
    ----------
    factor : int
        Decimation factor.
    lookahead_s : float
        Data after a window's end needed before it can be cut (s): half the
        anti-alias filter plus the whitening filter's delay.
    warmup_s : float
        Upper bound on the stream time (s) from a cold start until the first
        window not flagged invalid (PSD warm-up, filter fill, one window,
        the grid and the look-ahead).
    refill_s : float
        The same after a short gap that keeps the PSD (filter fill only).
    """

    def __init__(
        self,
        ifos,
        input_rate_hz: int,
        analysis_rate_hz: int = _DATA.analysis_rate_hz,
        *,
        fftlength_s: float = _PSD.fftlength_s,
        overlap: float = _PSD.overlap,
        average: str = _PSD.average,
        psd_length_s: float = _PSD.psd_length_s,
        psd_refresh_s: float = _PSD.refresh_s,
        psd_max_change: float = _PSD.max_change,
        psd_min_valid_s: float | None = None,
        psd_min_change: float = _PSD.min_change,
        fduration_s: float = _WHITEN.fduration_s,
        highpass_hz: float = _WHITEN.highpass_hz,
        phase: str = _WHITEN.phase,
        window_s: float = _WINDOWS.window_s,
        stride_s: float = _WINDOWS.stride_s,
        design_length_s: float = 64.0,
        gate_threshold: float = _WHITEN.gate_threshold,
        gate_half_width_s: float = _WHITEN.gate_half_width_s,
        gate_taper_s: float = _WHITEN.gate_taper_s,
        copy_windows: bool = True,
    ):
        self.ifos = tuple(ifos)
        self.copy_windows = bool(copy_windows)
        if not self.ifos:
            raise ValueError("ifos is empty, expected at least one detector")
        if int(input_rate_hz) != input_rate_hz or input_rate_hz <= 0:
            raise ValueError(f"input_rate_hz = {input_rate_hz!r}, expected a positive integer (Hz)")
        if int(analysis_rate_hz) != analysis_rate_hz or analysis_rate_hz <= 0:
            raise ValueError(f"analysis_rate_hz = {analysis_rate_hz!r}, expected a positive integer (Hz)")
        if input_rate_hz % analysis_rate_hz:
            raise ValueError(
                f"input_rate_hz = {input_rate_hz} Hz, expected an integer multiple of "
                f"analysis_rate_hz = {analysis_rate_hz} Hz"
            )
        self.input_rate_hz = int(input_rate_hz)
        self.rate = int(analysis_rate_hz)
        self.factor = self.input_rate_hz // self.rate
        self.phase = phase
        self.fduration_s = float(fduration_s)
        self.highpass_hz = float(highpass_hz)
        self.design_length_s = float(design_length_s)
        self.psd_length_s = float(psd_length_s)
        # ---- resampling
        self._rs_taps = kres.antialias_taps(self.factor)
        self._rs_ntaps = self._rs_taps.shape[0]
        self._rs_delay = kres.delay_samples(self.factor, self._rs_taps)  # output samples
        # ---- PSD
        self._psd = kps.StreamingWelch(
            len(self.ifos), self.rate, fftlength_s, overlap, average, psd_length_s, psd_refresh_s,
            psd_min_valid_s, psd_max_change, f_low_hz=max(self.highpass_hz, 1.0), min_change=psd_min_change,
        )
        # ---- whitening
        self.n_taps = _samples(fduration_s, self.rate, "fduration_s")
        self._wh_delay = kwh.lookahead_samples(self.n_taps, phase)
        if not 0 <= highpass_hz < self.rate / 2:
            raise ValueError(f"highpass_hz = {highpass_hz!r} Hz, expected in [0, {self.rate / 2}) Hz")
        # ---- windows
        self.window = _samples(window_s, self.rate, "window_s")
        self.stride = _samples(stride_s, self.rate, "stride_s")
        if self.stride > self.window:
            raise ValueError(f"stride_s = {stride_s} s, expected <= window_s = {window_s} s")
        self.window_s = self.window / self.rate
        self.stride_s = self.stride / self.rate
        # ---- costs worked out once
        self.lookahead_s = (self._rs_delay + self._wh_delay) / self.rate
        fill_s = (self._rs_ntaps - 1) / self.input_rate_hz + self.factor / self.input_rate_hz + self.n_taps / self.rate
        self.refill_s = fill_s + self.window_s + self.stride_s + self.lookahead_s
        psd_min = self._psd.min_segments
        psd_warm_s = ((psd_min - 1) * self._psd.step + 2 * self._psd.nperseg) / self.rate
        self.warmup_s = max(psd_warm_s + self._rs_delay / self.rate, fill_s) + self.window_s + self.stride_s + \
            self.lookahead_s
        # ---- autogating
        if not gate_threshold >= 0 or not gate_half_width_s > 0 or not gate_taper_s >= 0:
            raise ValueError(f"gate_threshold = {gate_threshold!r}, gate_half_width_s = {gate_half_width_s!r} s, "
                             f"gate_taper_s = {gate_taper_s!r} s: expected >= 0, > 0 and >= 0")
        self.gate_threshold = float(gate_threshold)
        self._g_half = int(round(gate_half_width_s * self.rate))
        self._g_taper = int(round(gate_taper_s * self.rate))
        self._g_pre = self._wh_delay  # a linear-phase filter rings before the glitch too
        self._g_post = self.n_taps  # and every filter after it, for its length
        self._g_hold = self._g_half + self._g_taper + self._g_pre if self.gate_threshold > 0 else 0
        for name in ("lookahead_s", "refill_s", "warmup_s"):
            setattr(self, name, getattr(self, name) + self._g_hold / self.rate)
        self._out = np.empty((0, len(self.ifos), self.window), dtype=np.float32)
        self.reset()

    @classmethod
    def from_config(cls, cfg, input_rate_hz: int | None = None, *, copy_windows: bool = True) -> "Conditioner":
        """Build from a :class:`gwstream.daemon.config.Config` (sections data, psd, whiten, windows).

        ``input_rate_hz`` overrides ``cfg.data.input_rate_hz`` (needed when the
        config says 0, "learn from the first frame").
        """
        rate_in = input_rate_hz or cfg.data.input_rate_hz
        if not rate_in:
            raise ValueError(
                "data.input_rate_hz = 0 (learn from data): pass input_rate_hz, the rate of the first frame (Hz)"
            )
        p, w, win = cfg.psd, cfg.whiten, cfg.windows
        return cls(
            cfg.data.ifos, rate_in, cfg.data.analysis_rate_hz,
            fftlength_s=p.fftlength_s, overlap=p.overlap, average=p.average, psd_length_s=p.psd_length_s,
            psd_refresh_s=p.refresh_s, psd_max_change=p.max_change, psd_min_change=p.min_change,
            fduration_s=w.fduration_s, highpass_hz=w.highpass_hz, phase=w.phase,
            window_s=win.window_s, stride_s=win.stride_s, gate_threshold=w.gate_threshold,
            gate_half_width_s=w.gate_half_width_s, gate_taper_s=w.gate_taper_s, copy_windows=copy_windows,
        )

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything, including the PSD (a cold start)."""
        self._psd.reset()
        self._taps = None
        self._next_gps_ns = None
        self._restart(None)

    def _restart(self, in_index: int | None) -> None:
        """Restart the filters at absolute input index ``in_index`` (PSD kept)."""
        c = len(self.ifos)
        self._in_next = in_index  # absolute input index of the next expected sample
        self._in_last_bad = np.full(c, -1 if in_index is None else in_index - 1, dtype=np.int64)
        offset = 0 if in_index is None else (-in_index) % self.factor
        self._rs_state = kres.new_state(self.factor, c, self._rs_taps)._replace(offset=offset)
        # absolute analysis index (true time) of the next resampled sample
        self._rs_next = None if in_index is None else (in_index + offset) // self.factor - self._rs_delay
        self._an_last_bad = np.full(c, -1 if in_index is None else self._rs_next - 1, dtype=np.int64)
        self._wh_hist = kwh.new_history(self.n_taps, c)
        self._win_buf = np.zeros((c, 0))
        self._win_bad = np.zeros((c, 0), dtype=bool)
        self._win_start = None  # absolute index of _win_buf[:, 0]
        self._warm = False  # a window not flagged invalid was emitted since the restart
        # no window may start before the data does (analysis index of the restart)
        self._an_origin = None if in_index is None else -(-in_index // self.factor)
        # autogating: the whitened samples held back (a gate reaches back), their start, the gates open
        self._g_buf = np.zeros((c, 0))
        self._g_bad = np.zeros((c, 0), dtype=bool)
        self._g_start = None
        self._gates = np.zeros((0, 3), dtype=np.int64)  # ifo, centre sample, peak (1/1000 sigma)

    def snapshot(self) -> dict:
        """The whole state as a dict of arrays and ints (restorable into an equal configuration)."""
        return {
            "version": _SNAPSHOT_VERSION,
            "geometry": self._geometry(),
            "psd": self._psd.snapshot(),
            "taps": None if self._taps is None else self._taps.copy(),
            "next_gps_ns": self._next_gps_ns,
            "in_next": self._in_next, "in_last_bad": self._in_last_bad.copy(),
            "rs_hist": self._rs_state.history.copy(), "rs_offset": self._rs_state.offset,
            "rs_next": self._rs_next, "an_last_bad": self._an_last_bad.copy(),
            "wh_hist": self._wh_hist.copy(),
            "win_buf": self._win_buf.copy(), "win_bad": self._win_bad.copy(), "win_start": self._win_start,
            "warm": self._warm, "an_origin": self._an_origin,
            "g_buf": self._g_buf.copy(), "g_bad": self._g_bad.copy(), "g_start": self._g_start,
            "gates": self._gates.copy(),
        }

    def restore(self, state: dict) -> None:
        """Restore a :meth:`snapshot`.

        Raises
        ------
        ValueError
            If the snapshot was taken with a different configuration.
        """
        if state.get("version") != _SNAPSHOT_VERSION or state.get("geometry") != self._geometry():
            raise ValueError(
                f"snapshot geometry {state.get('geometry')} (version {state.get('version')}), "
                f"expected {self._geometry()} (version {_SNAPSHOT_VERSION})"
            )
        self._psd.restore(state["psd"])
        self._taps = None if state["taps"] is None else state["taps"].copy()
        self._next_gps_ns = state["next_gps_ns"]
        self._in_next, self._in_last_bad = state["in_next"], state["in_last_bad"].copy()
        self._rs_state = kres.DecimateState(state["rs_hist"].copy(), int(state["rs_offset"]))
        self._rs_next, self._an_last_bad = state["rs_next"], state["an_last_bad"].copy()
        self._wh_hist = state["wh_hist"].copy()
        self._win_buf, self._win_bad = state["win_buf"].copy(), state["win_bad"].copy()
        self._win_start, self._warm = state["win_start"], bool(state["warm"])
        self._an_origin = state["an_origin"]
        self._g_buf, self._g_bad = state["g_buf"].copy(), state["g_bad"].copy()
        self._g_start, self._gates = state["g_start"], state["gates"].copy()

    def state_digest(self) -> str:
        """SHA-256 of the state that decides every later output, in a form independent of where the stream began.

        Two conditioners with equal digests turn the same blocks into the same
        whitened stream from here on. Left out is what no later output can
        depend on: the PSD ring's slot order (its median is order-free),
        segments too old for any later estimate, invalid-sample marks older
        than the filters reach, and where the stream started. A distributed
        search compares the digest a span reaches after its lead-in with the
        one the span before it had at the same block.
        """
        import hashlib

        h = hashlib.sha256()

        def put(*values):
            for v in values:
                if isinstance(v, np.ndarray):
                    h.update(str((v.dtype.str, v.shape)).encode())
                    h.update(np.ascontiguousarray(v).tobytes())
                else:
                    h.update(repr(v).encode())
                h.update(b"|")

        p = self._psd.snapshot()
        ends = p["pg_end"]
        live = (ends >= 0) & (ends > p["next_index"] - self._psd.psd_length)
        order = np.argsort(ends[live], kind="stable")
        put(self._geometry(), p["buf"], p["buf_valid"], p["next_index"], ends[live][order], p["pg"][live][order],
            p["last_refresh"], p["psd"], p["psd_index"], p["n_rejected"], self._taps, self._next_gps_ns,
            self._in_next, self._rs_state.history, self._rs_state.offset, self._rs_next, self._wh_hist,
            self._win_buf, self._win_bad, self._win_start, self._warm, self._g_buf, self._g_bad, self._g_start,
            self._gates)
        if self._in_next is not None:
            put(np.maximum(self._in_last_bad, self._in_next - self._rs_ntaps - 1))
        if self._rs_next is not None:
            put(np.maximum(self._an_last_bad, self._rs_next - self.n_taps - 1))
        return h.hexdigest()

    def _geometry(self) -> tuple:
        return (self.ifos, self.input_rate_hz, self.rate, self.n_taps, self.phase, self.window, self.stride,
                self._psd.nperseg, self._psd.step, self._psd.max_segments, self.gate_threshold, self._g_half,
                self._g_taper)

    @property
    def taps(self) -> np.ndarray | None:
        """The whitening FIR in use (designed with :attr:`phase`), or None before the first PSD."""
        return self._taps

    @property
    def psd(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(freqs Hz, PSD strain^2/Hz of shape (n_ifo, n_freq)) currently whitening, or None."""
        return None if self._psd.psd is None else (self._psd.freqs, self._psd.psd)

    # --------------------------------------------------------------- process
    def process(self, block: Block) -> Conditioned:
        """Condition one block.

        Raises
        ------
        ValueError
            If the block's detectors or rates differ from the configuration,
            its start is off the sample grid, or it starts before the end of
            the previous block (out of order or overlapping).
        """
        self._check_block(block)
        in_start = ns_to_samples(block.gps_ns, self.input_rate_hz)
        status = None
        if self._next_gps_ns is None:
            self._restart(in_start)
        elif block.gps_ns != self._next_gps_ns:
            if block.gps_ns < self._next_gps_ns:
                raise ValueError(
                    f"block seq={block.seq} starts at gps_ns={block.gps_ns}, before the end of the previous "
                    f"block {self._next_gps_ns} (out of order or overlapping)"
                )
            gap_s = (block.gps_ns - self._next_gps_ns) / NS
            drop = gap_s > self.psd_length_s
            log.warning(
                "data gap ifos=%s gps=%.3f gap_s=%.3f psd=%s", ",".join(self.ifos), block.gps_ns / NS, gap_s,
                "dropped" if drop else "kept",
            )
            if drop:
                self._psd.drop_psd()
                self._taps = None
            self._restart(in_start)
            status = Status.GAP
        self._next_gps_ns = block.end_ns
        x = np.stack([np.asarray(d, dtype=np.float64) for d in block.data])
        valid = np.stack([np.asarray(v, dtype=bool) for v in block.valid])
        an_x, an_valid, an_start = self._resample(x, valid, in_start)
        upd = kps.PsdUpdate()
        if an_x.shape[1]:
            upd = self._psd.update(an_x, an_valid, an_start)
            self._log_psd(upd, block)
            if upd.accepted:
                self._taps = kwh.design_fir(
                    self.rate, self._psd.freqs, self._psd.psd, self.fduration_s, self.highpass_hz, self.phase,
                    self.design_length_s,
                )
        wh, wh_bad, wh_start = self._whiten(an_x, an_valid, an_start)
        gates = ()
        if self._g_hold:
            wh, wh_bad, wh_start, gates = self._gate(wh, wh_bad, wh_start)
        windows, gps, inv_ifo = self._cut(wh, wh_bad, wh_start)
        invalid = inv_ifo.any(axis=1)
        if invalid.size and not invalid.all():
            self._warm = True
        if status is None:
            status = Status.OK if self._taps is not None and self._warm else Status.WARMING_UP
        stream = wh.astype(np.float32) if wh_start is not None else wh[:, :0].astype(np.float32)
        return Conditioned(status, block.gps_ns, block.seq, windows, gps, invalid, inv_ifo, upd, stream, wh_start,
                           wh_bad, gates)

    def _check_block(self, block: Block) -> None:
        if tuple(block.ifos) != self.ifos:
            raise ValueError(f"block seq={block.seq} has ifos {block.ifos}, expected {self.ifos}")
        for ifo, r in zip(block.ifos, block.sample_rates):
            if r != self.input_rate_hz:
                raise ValueError(f"block seq={block.seq} {ifo} at {r} Hz, expected {self.input_rate_hz} Hz")
        if (block.gps_ns * self.input_rate_hz) % NS:
            raise ValueError(
                f"block seq={block.seq} gps_ns={block.gps_ns} is not on the {self.input_rate_hz} Hz sample grid"
            )
        n = {np.shape(d)[-1] for d in block.data} | {np.shape(v)[-1] for v in block.valid}
        if len(n) != 1:
            raise ValueError(f"block seq={block.seq} has data/valid lengths {sorted(n)}, expected one length")

    def _log_psd(self, upd: kps.PsdUpdate, block: Block) -> None:
        if upd.rejected:
            log.warning(
                "psd rejected ifos=%s gps=%.3f change=%.3f max_change=%.3f segments=%d kept_psd_gps=%.3f",
                ",".join(self.ifos), block.gps_ns / NS, upd.change, self._psd.max_change, upd.n_segments,
                self._psd.psd_index / self.rate,
            )
        elif upd.accepted:
            log.info(
                "psd updated ifos=%s gps=%.3f change=%.3f segments=%d", ",".join(self.ifos), block.gps_ns / NS,
                upd.change, upd.n_segments,
            )

    def _resample(self, x: np.ndarray, valid: np.ndarray, in_start: int):
        """Decimate; returns (samples, valid, absolute analysis index of the first)."""
        n = x.shape[1]
        bad_in = _last_bad(valid, in_start, self._in_last_bad)  # (C, n)
        if n:
            self._in_last_bad = bad_in[:, -1].copy()
        self._in_next = in_start + n
        if self.factor == 1:
            ok = np.arange(in_start, in_start + n) - bad_in >= 1
            start = self._rs_next
            self._rs_next += n
            return x, ok, start
        offset = self._rs_state.offset
        y, self._rs_state = kres.decimate_stream(x, self.factor, self._rs_state, self._rs_taps)
        kept = offset + self.factor * np.arange(y.shape[1])  # positions in this block
        ok = (in_start + kept) - bad_in[:, kept] >= self._rs_ntaps  # the whole filter span is valid
        start = self._rs_next
        self._rs_next += y.shape[1]
        return y, ok, start

    def _whiten(self, x: np.ndarray, valid: np.ndarray, start: int):
        """Whiten (once a PSD exists); returns (samples, bad mask (C, n), absolute index of the first)."""
        n = x.shape[1]
        bad = _last_bad(valid, start, self._an_last_bad)
        if n:
            self._an_last_bad = bad[:, -1].copy()
        ok = np.arange(start, start + n) - bad >= self.n_taps  # whole FIR span valid, per detector
        if self._taps is None:
            # keep the input history so whitening starts filled once a PSD arrives
            self._wh_hist = np.concatenate([self._wh_hist, x], axis=1)[:, -(self.n_taps - 1):]
            return np.zeros((x.shape[0], 0)), np.zeros((x.shape[0], 0), dtype=bool), None
        y, self._wh_hist = kwh.convolve_stream(x, self._taps, self._wh_hist)
        w_start = start - self._wh_delay
        return y, ~ok, w_start

    def _gate(self, wh: np.ndarray, bad: np.ndarray, start: int | None):
        """Autogating: find gates in the new whitened samples, emit all but the held-back tail with every gate
        applied; returns (samples, bad, absolute index of the first, gates opened here)."""
        c = len(self.ifos)
        if start is None:
            self._g_buf, self._g_bad, self._g_start = np.zeros((c, 0)), np.zeros((c, 0), dtype=bool), None
            return wh, bad, start, ()
        if self._g_start is None or self._g_start + self._g_buf.shape[1] != start:
            self._g_buf, self._g_bad, self._g_start = wh[:, :0], bad[:, :0], start
        x = np.concatenate([self._g_buf, wh], axis=1)
        b = np.concatenate([self._g_bad, bad], axis=1)
        s0, m = self._g_start, self._g_buf.shape[1]
        half, taper = self._g_half, self._g_taper
        opened = []
        for i in range(c):
            hits = np.nonzero(np.abs(x[i, m:]) > self.gate_threshold)[0] + m
            if not hits.size:
                continue
            # one gate per cluster of loud samples (less than a gate's width apart), at its loudest
            for group in np.split(hits, np.nonzero(np.diff(hits) > 2 * half)[0] + 1):
                j = int(group[np.argmax(np.abs(x[i, group]))])
                opened.append((i, s0 + j, int(round(1000 * abs(x[i, j])))))
        if opened:
            self._gates = np.concatenate([self._gates, np.asarray(opened, dtype=np.int64)])
        n_out = max(0, x.shape[1] - self._g_hold)
        y, yb = x[:, :n_out].copy(), b[:, :n_out].copy()
        end = s0 + n_out
        for i, centre, _ in self._gates:
            lo, hi = max(s0, centre - half - taper), min(end, centre + half + taper + 1)
            if lo < hi:
                dist = np.maximum(np.abs(np.arange(lo, hi) - centre) - half, 0)
                y[i, lo - s0:hi - s0] *= np.where(dist == 0, 0.0, 0.5 * (1 - np.cos(np.pi * dist / (taper + 1))))
            lo, hi = max(s0, centre - half - taper - self._g_pre), min(end, centre + half + taper + self._g_post + 1)
            if lo < hi:
                yb[i, lo - s0:hi - s0] = True
        # a gate is forgotten once the last sample it marks has gone out
        self._gates = self._gates[self._gates[:, 1] + half + taper + self._g_post >= end]
        self._g_buf, self._g_bad, self._g_start = x[:, n_out:], b[:, n_out:], end
        gates = tuple((int(i), samples_to_ns(int(t), self.rate), p / 1000) for i, t, p in opened)
        for i, t, p in gates:
            log.info("gate ifo=%s gps=%.4f peak_sigma=%.1f", self.ifos[i], t / NS, p)
        return y, yb, s0, gates

    def _cut(self, wh: np.ndarray, bad: np.ndarray, start: int | None):
        c = len(self.ifos)
        empty = (self._out[:0], np.zeros(0, dtype=np.int64), np.zeros((0, c), dtype=bool))
        if start is None:
            self._win_buf = np.zeros((c, 0))
            self._win_bad = np.zeros((c, 0), dtype=bool)
            self._win_start = None
            return empty
        if self._win_start is None or self._win_start + self._win_buf.shape[1] != start:
            self._win_buf = np.zeros((c, 0))
            self._win_bad = np.zeros((c, 0), dtype=bool)
            self._win_start = start
            if self._an_origin is not None and start < self._an_origin:
                skip = min(self._an_origin - start, wh.shape[1])
                wh, bad, self._win_start = wh[:, skip:], bad[:, skip:], start + skip
        buf = np.concatenate([self._win_buf, wh], axis=1)
        bbad = np.concatenate([self._win_bad, bad], axis=1)
        b0 = self._win_start
        first = -(-b0 // self.stride) * self.stride  # first grid start >= b0
        n = buf.shape[1]
        off = first - b0
        nw = kwin.n_windows(n - off, self.window, self.stride) if n > off else 0
        if nw:
            if self.copy_windows:
                if nw > self._out.shape[0]:
                    self._out = np.empty((nw, c, self.window), dtype=np.float32)
                windows = kwin.slide(buf[:, off:], self.window, self.stride, out=self._out)
            else:  # (nw, c, window) views of buf, which no later block writes to
                windows = np.lib.stride_tricks.sliding_window_view(buf[:, off:], self.window, axis=1,
                                                                   writeable=False)[:, ::self.stride][:, :nw]
                windows = windows.swapaxes(0, 1)
            inv = np.stack([kwin.invalid_windows(~bbad[i, off:], self.window, self.stride) for i in range(c)], axis=1)
            gps = np.array(
                [samples_to_ns(first + k * self.stride, self.rate) for k in range(nw)], dtype=np.int64
            )
            keep_from = off + nw * self.stride
        else:
            windows, gps, inv = empty
            keep_from = max(off, 0) if n > off else 0
        # keep what the next windows need
        keep_from = min(keep_from, n)
        self._win_buf = buf[:, keep_from:].copy()
        self._win_bad = bbad[:, keep_from:].copy()
        self._win_start = b0 + keep_from
        return windows, gps, inv
