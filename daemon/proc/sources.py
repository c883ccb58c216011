"""Frame sources: synthetic noise + injections, archived or live GWF, HDF5.

Each source is an iterator of :class:`~gwstream.daemon.io.wire.Frame`; :func:`publish`
paces any of them (``real``, ``max`` or a factor) onto a ZeroMQ socket connected
to the daemon's frames endpoint. Publishing uses an XPUB socket with
``XPUB_NODROP``: it waits for the daemon's subscription before the first frame
and blocks (never drops) when the daemon's queue is full, so ``--speed max``
loses no frame.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import zmq
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.wire import Frame, encode_eos, encode_frame
from gwstream.daemon.units import NS, samples_to_ns

__all__ = [
    "synthetic_frames",
    "hdf5_frames",
    "gwf_archive_frames",
    "gwf_follow_frames",
    "publish",
]

log = logging.getLogger(__name__)
SEND_TIMEOUT_MS = 100  # longest blocking send before the stop flag is checked again


# ------------------------------------------------------------------ synthetic
def synthetic_frames(sim, *, start_s: int = 0, frame_s: int = 1,
                     strain_channel: str = "GDS-CALIB_STRAIN") -> Iterator[Frame]:
    """Frames of a :class:`~gwstream.daemon.sim.simulate.Simulator` (endless if its duration is None).

    Parameters
    ----------
    sim : Simulator
        Noise (+ injections) generator.
    start_s : int
        Offset (s) from the simulation start.
    frame_s : int
        Frame duration (s).
    """
    cfg = sim.cfg
    rate = cfg.sample_rate_hz
    words_per_frame = 16 * frame_s
    state = (int(cfg.state_word),) * words_per_frame
    seq = Counter()
    chunk_s = max(frame_s, (cfg.chunk_s // frame_s) * frame_s)
    for gps, chunk in sim.iter_chunks(start_s=start_s, chunk_s=chunk_s):
        n_frames = next(iter(chunk.values())).shape[0] // (rate * frame_s)
        for k in range(n_frames):
            for ifo in cfg.ifos:
                data = chunk[ifo][k * rate * frame_s:(k + 1) * rate * frame_s]
                yield Frame(ifo, f"{ifo}:{strain_channel}", (gps + k * frame_s) * NS, rate, data,
                            state, seq[ifo])
                seq[ifo] += 1


# ----------------------------------------------------------------------- hdf5
def hdf5_frames(path: str | os.PathLike, ifos: Sequence[str], *, frame_s: float = 1.0,
                strain_channel: str = "GDS-CALIB_STRAIN", state_word: int = 3,
                start_ns: int | None = None, end_ns: int | None = None) -> Iterator[Frame]:
    """Frames cut from an HDF5 file (mock-data layout or gwpy/PyCBC time series), time-ordered.

    Data read from HDF5 carries no state vector; every sample is marked with
    ``state_word`` (analysis-ready by default). With ``start_ns``/``end_ns``
    only the frames starting in ``[start_ns, end_ns)`` are read (the same
    frames, cut on the same grid, as a read of the whole file).
    """
    from gwstream.daemon.io.framefiles import iter_hdf5_segments

    def one_ifo(ifo: str) -> Iterator[tuple[int, int, Frame]]:
        seq = 0
        for seg in iter_hdf5_segments(path, [ifo]):
            rate = seg.sample_rate
            n_frame = int(round(frame_s * rate))
            total = seg.dataset.shape[0]
            frame_ns = samples_to_ns(n_frame, rate)
            n_all = -(-total // n_frame)
            k0 = 0 if start_ns is None else min(n_all, max(0, -(-(start_ns - seg.gps_start_ns) // frame_ns)))
            k1 = n_all if end_ns is None else min(n_all, max(k0, -(-(end_ns - seg.gps_start_ns) // frame_ns)))
            seq += k0
            for i0 in range(k0 * n_frame, k1 * n_frame, n_frame):
                data = np.asarray(seg.dataset[i0:i0 + n_frame], dtype=np.float64)
                if data.size * NS % rate:
                    log.warning("hdf5 tail dropped ifo=%s samples=%d: not a whole number of ns", ifo, data.size)
                    break
                gps_ns = seg.gps_start_ns + samples_to_ns(i0, rate)
                yield gps_ns, ifos.index(ifo), Frame(ifo, f"{ifo}:{strain_channel}", gps_ns, rate, data,
                                                     (state_word,), seq)
                seq += 1
            seq += n_all - k1

    for _, _, frame in heapq.merge(*(one_ifo(ifo) for ifo in ifos), key=lambda t: (t[0], t[1])):
        yield frame


# ------------------------------------------------------------------------ gwf
def _frame_from_gwf(path: Path, ifo: str, strain_channel: str, state_channel: str, seq: int) -> Frame:
    from gwstream.daemon.io.framefiles import read_gwf_frame

    g = read_gwf_frame(path, ifo, f"{ifo}:{strain_channel}", f"{ifo}:{state_channel}")
    words = tuple(int(w) for w in g.state) or (0,)
    if g.strain.size % len(words):
        raise FrameFileError(f"{path}: {len(words)} state words do not divide {g.strain.size} samples")
    return Frame(ifo, f"{ifo}:{strain_channel}", g.gps_ns, g.sample_rate, g.strain, words, seq)


def _scan(directory: Path, ifos: Sequence[str]) -> dict[str, dict[int, Path]]:
    """``{ifo: {gps: path}}`` for every conforming GWF file in ``directory``."""
    from gwstream.daemon.io.framefiles import parse_gwf_name

    found: dict[str, dict[int, Path]] = {ifo: {} for ifo in ifos}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        raise FrameFileError(f"frame directory {directory} does not exist") from None
    for entry in entries:
        if not entry.name.endswith(".gwf") or entry.name.startswith("."):
            continue
        try:
            _obs, frame_type, gps, _dur = parse_gwf_name(entry.name)
        except FrameFileError:
            continue
        ifo = frame_type.split("_", 1)[0]
        if ifo in found:
            found[ifo][gps] = Path(entry.path)
    return found


def _read_with_retries(path: Path, ifo: str, channels: tuple[str, str], seq: int, retries: int,
                       retry_wait_s: float, sleep: Callable[[float], None], stats: Counter,
                       unreadable: list | None = None) -> Frame | None:
    for attempt in range(retries + 1):
        try:
            return _frame_from_gwf(path, ifo, channels[0], channels[1], seq)
        except FrameFileError as exc:
            if attempt < retries:
                stats["read_retries"] += 1
                log.info("retrying frame file path=%s attempt=%d: %s", path, attempt + 1, exc)
                sleep(retry_wait_s)
            else:
                stats["unreadable_files"] += 1
                log.error("giving up on frame file path=%s after %d attempts: %s", path, retries + 1, exc)
                if unreadable is not None:
                    unreadable.append((str(path), str(exc)))
    return None


def gwf_archive_frames(directory: str | os.PathLike, ifos: Sequence[str], *,
                       strain_channel: str = "GDS-CALIB_STRAIN",
                       state_channel: str = "GDS-CALIB_STATE_VECTOR",
                       start_gps: int | None = None, end_gps: int | None = None,
                       read_retries: int = 2, retry_wait_s: float = 0.1,
                       sleep: Callable[[float], None] = time.sleep,
                       stats: Counter | None = None, unreadable: list | None = None) -> Iterator[Frame]:
    """Replay the GWF files of ``directory`` in GPS order (detectors interleaved).

    A file that stays unreadable after ``read_retries`` is skipped (its data
    become a gap) and, with ``unreadable``, listed there as ``(path, reason)``.
    """
    stats = stats if stats is not None else Counter()
    found = _scan(Path(directory), ifos)
    times = sorted({g for per in found.values() for g in per})
    if start_gps is not None:
        times = [t for t in times if t >= start_gps]
    if end_gps is not None:
        times = [t for t in times if t < end_gps]
    if not times:
        raise FrameFileError(f"no GWF files for {list(ifos)} in {directory} (expected names like "
                             f"H-H1_SIM-1000000000-1.gwf)")
    seq = Counter()
    for gps in times:
        for ifo in ifos:
            path = found[ifo].get(gps)
            if path is None:
                stats["missing_files"] += 1
                log.warning("missing frame file ifo=%s gps=%d", ifo, gps)
                continue
            frame = _read_with_retries(path, ifo, (strain_channel, state_channel), seq[ifo],
                                       read_retries, retry_wait_s, sleep, stats, unreadable)
            if frame is not None:
                seq[ifo] += 1
                yield frame


def gwf_follow_frames(directory: str | os.PathLike, ifos: Sequence[str], *,
                      strain_channel: str = "GDS-CALIB_STRAIN",
                      state_channel: str = "GDS-CALIB_STATE_VECTOR",
                      start_gps: int | None = None, poll_s: float = 0.1,
                      read_retries: int = 5, retry_wait_s: float = 0.2, file_timeout_s: float = 30.0,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep,
                      stop: Callable[[], bool] = lambda: False,
                      stats: Counter | None = None) -> Iterator[Frame]:
    """Follow a live directory where new 1-s GWF files appear (as LIGO's low-latency frames do).

    Starts at ``start_gps`` or the newest file present, yields each detector's
    next frame as soon as its file can be read, retries a half-written file
    ``read_retries`` times, and after ``file_timeout_s`` without the expected
    file moves on (to the next file present, or the next expected time).
    Runs until ``stop()`` returns True.
    """
    stats = stats if stats is not None else Counter()
    directory = Path(directory)
    nxt: dict[str, int | None] = {ifo: start_gps for ifo in ifos}
    waiting_since: dict[str, float | None] = {ifo: None for ifo in ifos}
    duration: dict[str, int] = {ifo: 1 for ifo in ifos}
    seq = Counter()
    while not stop():
        found = _scan(directory, ifos)
        progressed = False
        for ifo in ifos:
            have = found[ifo]
            if nxt[ifo] is None:
                if not have:
                    continue
                nxt[ifo] = max(have)
                log.info("following ifo=%s directory=%s from gps=%d", ifo, directory, nxt[ifo])
            gps = nxt[ifo]
            path = have.get(gps)
            if path is not None:
                frame = _read_with_retries(path, ifo, (strain_channel, state_channel), seq[ifo],
                                           read_retries, retry_wait_s, sleep, stats)
                waiting_since[ifo] = None
                if frame is not None:
                    duration[ifo] = max(1, frame.duration_ns // NS)
                    seq[ifo] += 1
                    progressed = True
                    yield frame
                nxt[ifo] = gps + duration[ifo]
                continue
            now = clock()
            if waiting_since[ifo] is None:
                waiting_since[ifo] = now
            elif now - waiting_since[ifo] >= file_timeout_s:
                newer = [g for g in have if g > gps]
                nxt[ifo] = min(newer) if newer else gps + duration[ifo]
                stats["missing_files"] += 1
                log.warning("frame file never came ifo=%s gps=%d waited_s=%.1f; moving on to gps=%d",
                            ifo, gps, now - waiting_since[ifo], nxt[ifo])
                waiting_since[ifo] = None
        if not progressed:
            sleep(poll_s)


# -------------------------------------------------------------------- publish
def publish(
    frames: Iterable[Frame],
    endpoint: str,
    *,
    speed: float = float("inf"),
    ifos: Sequence[str] = ("H1", "L1"),
    high_water_mark: int = 64,
    wait_subscriber_s: float = 60.0,
    send_eos: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
    context: zmq.Context | None = None,
    secure: Callable[[zmq.Socket], None] | None = None,
    delivery_timeout_s: float = 600.0,
) -> Counter:
    """Publish frames on ``endpoint`` (connect), paced by their GPS time.

    Parameters
    ----------
    frames : iterable of Frame
        Time-ordered frames (detectors interleaved).
    endpoint : str
        The daemon's frames endpoint (it binds; sources connect).
    speed : float
        1.0 = real time (a frame is sent when its last sample would exist),
        ``inf`` = as fast as the daemon takes them (flow-controlled, no drops),
        any other factor scales real time.
    ifos : sequence of str
        Detectors that get an end-of-stream marker when ``frames`` is exhausted.
    wait_subscriber_s : float
        How long to wait for the daemon's subscription before the first frame.
    secure : callable, optional
        Applied to the socket before it connects (CURVE client keys,
        :func:`gwstream.daemon.proc.security.secure_client`).
    delivery_timeout_s : float
        After the last frame, how long to wait for the daemon to take what is
        still queued (frames and end-of-stream) before giving up on it.

    Returns
    -------
    collections.Counter
        ``frames_sent``, ``bytes_sent``.
    """
    own_ctx = context is None
    ctx = zmq.Context() if own_ctx else context
    sock = publisher_socket(ctx, high_water_mark)
    if secure is not None:
        secure(sock)
    sock.connect(endpoint)
    stats: Counter = Counter()
    finished = False
    try:
        if sock.poll(int(wait_subscriber_s * 1000), zmq.POLLIN):
            sock.recv()  # the daemon's subscription: from here on nothing is dropped
        else:
            log.warning("no subscriber on %s after %.0f s; publishing anyway", endpoint, wait_subscriber_s)
        t0_wall = None
        t0_gps = None
        for frame in frames:
            if stop():
                break
            if speed != float("inf"):
                if t0_wall is None:
                    t0_wall, t0_gps = clock(), frame.gps_ns
                target = t0_wall + (frame.end_ns - t0_gps) / NS / speed
                delay = target - clock()
                if delay > 0:
                    sleep(delay)
            parts = encode_frame(frame)
            _send(sock, parts, stop)
            stats["frames_sent"] += 1
            stats["bytes_sent"] += sum(len(p) for p in parts)
        finished = not stop()
        if send_eos and finished:
            for ifo in ifos:
                _send(sock, encode_eos(ifo, stats["frames_sent"]), stop)
        _drain_subscriptions(sock)
    finally:
        # A finished stream waits (up to delivery_timeout_s) until the daemon has taken
        # every queued frame and the end-of-stream marker: a daemon busy warming up
        # must not lose the tail of a replay. A stopped one leaves at once.
        linger_ms = int(delivery_timeout_s * 1000) if finished else 0
        t0 = time.monotonic()
        sock.close(linger=linger_ms)
        if own_ctx:
            ctx.term()
            if time.monotonic() - t0 > 1.0:
                log.info("delivered the queued frames in %.1f s after the last send", time.monotonic() - t0)
    return stats


def publisher_socket(ctx: zmq.Context, high_water_mark: int) -> zmq.Socket:
    """The frames publisher: XPUB that never drops (a full queue blocks the sender)."""
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.setsockopt(zmq.SNDHWM, high_water_mark)
    sock.setsockopt(zmq.LINGER, 10_000)
    # A full queue makes send block (up to SNDTIMEO, then `stop` is checked) instead of
    # failing at once: XPUB reports POLLOUT even at its high-water mark, so waiting on
    # POLLOUT spun a whole core at --speed max, taken from the search on a 2-core machine.
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    return sock


def _send(sock: zmq.Socket, parts: list[bytes], stop: Callable[[], bool]) -> None:
    """Send, waiting (never dropping) while the subscriber's queue is full.

    The socket's ``SNDTIMEO`` bounds each blocking attempt, so ``stop`` is
    checked at least that often.
    """
    while True:
        try:
            sock.send_multipart(parts, copy=False)
            return
        except zmq.Again:
            if stop():
                return
            _drain_subscriptions(sock)


def _drain_subscriptions(sock: zmq.Socket) -> None:
    while True:
        try:
            sock.recv(flags=zmq.NOBLOCK)
        except zmq.Again:
            return
