"""Alignment of per-detector frames into multi-detector blocks (no sockets, no clock of its own).

:class:`Aligner` is the pure state machine inside the ingest process: frames go
in with the time they arrived (``now_ns``, from whatever clock the caller
passes: wall time live, a simulated clock in tests), aligned blocks, gaps and
the end of stream come out. Every frame it refuses is counted by reason.

Block grid
----------
Blocks tile GPS time on a fixed grid, ``[k * block_ns, (k + 1) * block_ns)``,
so the same archive always produces the same blocks (replay == offline
search). A block is emitted as soon as every detector that has not ended its
stream covers it; otherwise, once data reaching into it has been waiting
``late_timeout_ns``, it is emitted with the missing samples marked invalid
(a gap); a stretch where no detector has any data becomes one ``Gap``.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from gwstream.daemon.config import DataConfig
from gwstream.daemon.io.wire import Block, Frame
from gwstream.daemon.units import NS, ns_to_samples, seconds_to_ns

__all__ = ["Aligner", "Gap", "EndOfStream", "REJECT_REASONS"]

log = logging.getLogger(__name__)
_DATA = DataConfig()  # defaults of the settings the aligner shares with the config (section data)

#: Reasons a well-formed frame is refused by the aligner (wire-level reasons
#: come from :func:`gwstream.daemon.io.wire.decode_source_message`).
REJECT_REASONS = (
    "unknown_ifo", "bad_channel", "bad_sample_rate", "misaligned",
    "duplicate", "overlap", "late", "gps_backwards",
)


@dataclass(frozen=True)
class Gap:
    """No detector has any data in ``[gps_ns, end_ns)``."""

    gps_ns: int
    end_ns: int


@dataclass(frozen=True)
class EndOfStream:
    """Every detector ended its stream and everything buffered was emitted."""

    end_ns: int | None


@dataclass
class _Buffered:
    start_ns: int
    end_ns: int
    data: np.ndarray  # float64, zeros where not ok
    ok: np.ndarray  # bool: finite and analysis-ready
    arrived_ns: int


class _Detector:
    """Buffered frames of one detector, keyed by GPS start (ns)."""

    def __init__(self, ifo: str, channel: str, rate: int | None, history: int):
        self.ifo = ifo
        self.channel = channel
        self.rate = rate
        self.frames: dict[int, _Buffered] = {}
        self.emitted: deque[tuple[int, int]] = deque(maxlen=history)  # (start, end) already consumed
        self.ended = False
        self.latest_end_ns: int | None = None

    def overlaps(self, start: int, end: int) -> _Buffered | None:
        for f in self.frames.values():
            if f.start_ns < end and start < f.end_ns:
                return f
        return None

    def coverage_ns(self, start: int, end: int) -> int:
        return sum(
            min(end, f.end_ns) - max(start, f.start_ns)
            for f in self.frames.values()
            if f.start_ns < end and start < f.end_ns
        )


class Aligner:
    """Turn per-detector frames into aligned, validated multi-detector blocks.

    Parameters
    ----------
    ifos : sequence of str
        Detectors, in the order blocks carry them.
    channels : mapping of str to str
        Expected strain channel per detector (``"H1:GDS-CALIB_STRAIN"``).
    block_ns : int
        Block duration (ns).
    buffer_ns : int
        How far (ns) data may run ahead of the oldest unemitted block before
        that block is forced out with whatever it has.
    late_timeout_ns : int
        How long (ns, on the caller's clock) a block waits for a late detector.
    state_mask : int
        Bits of the state vector required for analysis-ready data.
    input_rate_hz : int
        Required sample rate, or 0 to learn each detector's rate from its
        first frame (constant afterwards).
    rate_multiple_of : int
        Every accepted rate must be an integer multiple of this (the analysis
        rate).

    The defaults of ``state_mask``, ``input_rate_hz`` and ``rate_multiple_of``
    are those of the config's data section, as :meth:`from_config` maps them.

    Notes
    -----
    All times are integer GPS nanoseconds. A frame must start on its sample
    grid counted from GPS 0 (``gps_ns * rate % 1e9 == 0``), which holds for
    every real frame (they start on whole seconds).
    """

    def __init__(
        self,
        ifos: Iterable[str],
        channels: dict[str, str],
        *,
        block_ns: int,
        buffer_ns: int,
        late_timeout_ns: int,
        state_mask: int = _DATA.state_mask,
        input_rate_hz: int = _DATA.input_rate_hz,
        rate_multiple_of: int = _DATA.analysis_rate_hz,
    ):
        self.ifos = tuple(ifos)
        self.block_ns = int(block_ns)
        self.buffer_ns = int(buffer_ns)
        self.late_timeout_ns = int(late_timeout_ns)
        self.state_mask = int(state_mask)
        self.rate_multiple_of = int(rate_multiple_of)
        history = max(16, 4 * self.buffer_ns // self.block_ns)
        self._det = {
            ifo: _Detector(ifo, channels[ifo], input_rate_hz or None, history) for ifo in self.ifos
        }
        self.cursor_ns: int | None = None
        self.counters: Counter[str] = Counter()
        self._seq = 0

    @classmethod
    def from_config(cls, cfg) -> "Aligner":
        """Build from a :class:`gwstream.daemon.config.Config`."""
        return cls(
            cfg.data.ifos,
            {ifo: cfg.data.channel(ifo) for ifo in cfg.data.ifos},
            block_ns=cfg.ingest.block_ns,
            buffer_ns=seconds_to_ns(cfg.ingest.buffer_s),
            late_timeout_ns=seconds_to_ns(cfg.ingest.late_timeout_s),
            state_mask=cfg.data.state_mask,
            input_rate_hz=cfg.data.input_rate_hz,
            rate_multiple_of=cfg.data.analysis_rate_hz,
        )

    # ------------------------------------------------------------- intake
    def _reject(self, reason: str, frame: Frame, detail: str) -> None:
        self.counters[f"rejected.{reason}"] += 1
        log.warning("frame rejected reason=%s ifo=%s gps_ns=%d seq=%d: %s",
                    reason, frame.ifo, frame.gps_ns, frame.seq, detail)

    def add(self, frame: Frame, now_ns: int) -> list:
        """Take one decoded frame; return the blocks/gaps this makes ready."""
        det = self._det.get(frame.ifo)
        if det is None:
            self._reject("unknown_ifo", frame, f"detector {frame.ifo!r} not among {list(self.ifos)}")
            return []
        if frame.channel != det.channel:
            self._reject("bad_channel", frame, f"channel {frame.channel!r}, expected {det.channel!r}")
            return []
        rate = frame.sample_rate
        if det.rate is None:
            if rate % self.rate_multiple_of or (self.block_ns * rate) % NS:
                self._reject("bad_sample_rate", frame,
                             f"{rate} Hz is not an integer multiple of the analysis rate "
                             f"{self.rate_multiple_of} Hz, or a block is not whole samples")
                return []
            det.rate = rate
            log.info("detector rate learnt ifo=%s sample_rate=%d", det.ifo, rate)
        elif rate != det.rate:
            self._reject("bad_sample_rate", frame, f"{rate} Hz, expected {det.rate} Hz (constant per detector)")
            return []
        if (frame.gps_ns * rate) % NS:
            self._reject("misaligned", frame, f"gps_ns {frame.gps_ns} is not on the {rate} Hz sample grid")
            return []
        start, end = frame.gps_ns, frame.end_ns
        if self.cursor_ns is not None and start < self.cursor_ns:
            if any(s == start and e == end for s, e in det.emitted) or start in det.frames:
                self._reject("duplicate", frame, "this detector's frame at this GPS time was already received")
            elif start < self.cursor_ns - self.buffer_ns:
                self._reject("gps_backwards", frame,
                             f"starts {(self.cursor_ns - start) / NS:.3f} s before the oldest open block, "
                             f"beyond the {self.buffer_ns / NS:g} s buffer")
            else:
                self._reject("late", frame,
                             f"its block at {self.cursor_ns / NS:.3f} was already emitted (late timeout or gap)")
            return []
        if start in det.frames:
            prev = det.frames[start]
            if prev.end_ns == end:
                self._reject("duplicate", frame, "this detector's frame at this GPS time is already buffered")
                return []
        clash = det.overlaps(start, end)
        if clash is not None:
            self._reject("overlap", frame,
                         f"[{start}, {end}) overlaps a buffered frame [{clash.start_ns}, {clash.end_ns})")
            return []
        if det.latest_end_ns is not None and start < det.latest_end_ns:
            self.counters[f"out_of_order.{det.ifo}"] += 1
        det.latest_end_ns = end if det.latest_end_ns is None else max(det.latest_end_ns, end)
        if all(d.ended for d in self._det.values()):
            # a new stream after a complete end of stream: wait for every detector again
            for d in self._det.values():
                d.ended = False
        det.ended = False
        self.counters[f"frames.{det.ifo}"] += 1
        det.frames[start] = self._condition(frame, now_ns)
        out: list = []
        # bounded memory: data may not run further ahead than buffer_ns
        if self.cursor_ns is None and end - self._earliest_start() > self.buffer_ns:
            self.cursor_ns = self._grid_floor(self._earliest_start())
        while self.cursor_ns is not None and end - self.cursor_ns > self.buffer_ns:
            self.counters["forced_by_buffer"] += 1
            out.extend(self._emit_next(force=True))
        out.extend(self.poll(now_ns))
        return out

    def _condition(self, frame: Frame, now_ns: int) -> _Buffered:
        data = np.array(frame.data, dtype=np.float64)
        finite = np.isfinite(data)
        state = frame.state_per_sample()
        ready = (state & self.state_mask) == self.state_mask
        n_bad = int(data.size - finite.sum())
        if n_bad:
            self.counters[f"nonfinite_frames.{frame.ifo}"] += 1
            self.counters[f"nonfinite_samples.{frame.ifo}"] += n_bad
            log.warning("non-finite samples gated ifo=%s gps_ns=%d n=%d", frame.ifo, frame.gps_ns, n_bad)
        n_not_ready = int(data.size - ready.sum())
        if n_not_ready:
            self.counters[f"not_analysis_ready_samples.{frame.ifo}"] += n_not_ready
            log.info("not analysis-ready ifo=%s gps_ns=%d samples=%d mask=%d",
                     frame.ifo, frame.gps_ns, n_not_ready, self.state_mask)
        ok = finite & ready
        data[~ok] = 0.0
        return _Buffered(frame.gps_ns, frame.end_ns, data, ok, now_ns)

    def end_of_stream(self, ifo: str, now_ns: int) -> list:
        """A source ended ``ifo``'s stream; once all have, flush everything."""
        det = self._det.get(ifo)
        if det is None:
            self.counters["rejected.unknown_ifo"] += 1
            log.warning("eos rejected reason=unknown_ifo ifo=%s", ifo)
            return []
        det.ended = True
        log.info("end of stream ifo=%s", ifo)
        if all(d.ended for d in self._det.values()):
            return self.flush()
        return self.poll(now_ns)

    # ------------------------------------------------------------- output
    def _earliest_start(self) -> int | None:
        starts = [s for d in self._det.values() for s in d.frames]
        return min(starts) if starts else None

    def _grid_floor(self, t_ns: int) -> int:
        return (t_ns // self.block_ns) * self.block_ns

    def _due_since(self, block_start: int) -> int | None:
        """Arrival time of the first buffered frame reaching past ``block_start``."""
        times = [
            f.arrived_ns for d in self._det.values() for f in d.frames.values() if f.end_ns > block_start
        ]
        return min(times) if times else None

    def _ready(self, start: int, end: int) -> bool:
        return all(d.ended or d.coverage_ns(start, end) == end - start for d in self._det.values())

    def poll(self, now_ns: int) -> list:
        """Emit every block that is complete or has waited out the late timeout."""
        out: list = []
        while True:
            if self.cursor_ns is None:
                # the grid starts at the earliest data once every detector has
                # spoken (or the late timeout ran out), so a detector whose first
                # frame arrives second is not cut off
                first = self._earliest_start()
                if first is None:
                    return out
                waiting = not all(d.frames or d.ended for d in self._det.values())
                if waiting and now_ns - self._due_since(first) < self.late_timeout_ns:
                    return out
                self.cursor_ns = self._grid_floor(first)
            start, end = self.cursor_ns, self.cursor_ns + self.block_ns
            if self._ready(start, end) and any(d.coverage_ns(start, end) for d in self._det.values()):
                out.extend(self._emit_next(force=False))
                continue
            since = self._due_since(start)
            if since is None or now_ns - since < self.late_timeout_ns:
                return out
            out.extend(self._emit_next(force=True))

    def flush(self) -> list:
        """Emit everything buffered (partial blocks included), then :class:`EndOfStream`."""
        out: list = []
        while self._earliest_start() is not None:
            out.extend(self._emit_next(force=True))
        out.append(EndOfStream(self.cursor_ns))
        return out

    def _emit_next(self, force: bool) -> list:
        start, end = self.cursor_ns, self.cursor_ns + self.block_ns
        if not any(d.coverage_ns(start, end) for d in self._det.values()):
            first = self._earliest_start()
            if first is None:  # nothing buffered anywhere: just move on by one block
                self.cursor_ns = end
                return [Gap(start, end)]
            new_cursor = max(end, self._grid_floor(first))
            self.cursor_ns = new_cursor
            self.counters["gaps"] += 1
            log.warning("gap: no detector has data gps=[%.3f, %.3f) duration_s=%.3f",
                        start / NS, new_cursor / NS, (new_cursor - start) / NS)
            return [Gap(start, new_cursor)]
        datas, valids, rates = [], [], []
        for det in self._det.values():
            rate = det.rate or self.rate_multiple_of
            n = ns_to_samples(self.block_ns, rate)
            data = np.zeros(n, dtype=np.float64)
            valid = np.zeros(n, dtype=bool)
            present = np.zeros(n, dtype=bool)
            for f in list(det.frames.values()):
                if f.start_ns >= end or f.end_ns <= start:
                    continue
                lo, hi = max(start, f.start_ns), min(end, f.end_ns)
                i0, i1 = ns_to_samples(lo - start, rate), ns_to_samples(hi - start, rate)
                j0 = ns_to_samples(lo - f.start_ns, rate)
                data[i0:i1] = f.data[j0:j0 + i1 - i0]
                valid[i0:i1] = f.ok[j0:j0 + i1 - i0]
                present[i0:i1] = True
                if f.end_ns <= end:
                    del det.frames[f.start_ns]
                    det.emitted.append((f.start_ns, f.end_ns))
            if force and present.sum() < n:
                self.counters[f"gap_samples.{det.ifo}"] += n - int(present.sum())
            datas.append(data)
            valids.append(valid)
            rates.append(rate)
        if force:
            log.info("block emitted after timeout gps=%.3f valid=%s", start / NS,
                     {d.ifo: float(v.mean()) for d, v in zip(self._det.values(), valids)})
        block = Block(start, self.block_ns, self.ifos, tuple(rates), tuple(datas), tuple(valids), self._seq)
        self._seq += 1
        self.counters["blocks"] += 1
        self.cursor_ns = end
        return [block]
