"""The ingest process: frames in (ZeroMQ SUB, bound), aligned blocks out (PUSH, bound).

Sources connect to ``endpoints.frames`` and publish ``frame.<IFO>`` messages;
every message is decoded and validated (:mod:`gwstream.daemon.io.wire`), fed to an
:class:`~gwstream.daemon.stream.aligner.Aligner`, and the aligned blocks it releases are
pushed to the search stage on ``endpoints.blocks``. The PUSH socket blocks when
search falls behind, which stops this loop reading, which fills the SUB queue,
which blocks the sources (they publish with ``XPUB_NODROP``): flow control end
to end, never drops.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import zmq
from gwstream.daemon.errors import WireError
from gwstream.daemon.io.wire import Block, decode_source_message, encode_block, encode_control
from gwstream.daemon.stream.aligner import Aligner, EndOfStream, Gap
from gwstream.daemon.units import NS

from .security import ServerAuth, secure_server

__all__ = ["IngestStage", "run_ingest"]

log = logging.getLogger(__name__)


class IngestStage:
    """Decode + align: the socket-free heart of the ingest process.

    Parameters
    ----------
    aligner : Aligner
        The alignment state machine.
    max_message_bytes : int
        Hard cap on one message (bytes).
    """

    def __init__(self, aligner: Aligner, max_message_bytes: int):
        self.aligner = aligner
        self.max_message_bytes = max_message_bytes
        self.counters: Counter[str] = aligner.counters

    def handle(self, parts, now_ns: int) -> list:
        """One multipart message in, zero or more outputs (Block, Gap, EndOfStream) out."""
        self.counters["messages"] += 1
        try:
            msg = decode_source_message(parts, self.max_message_bytes)
        except WireError as exc:
            self.counters[f"rejected.{exc.reason}"] += 1
            topic = bytes(parts[0][:32]) if parts else b""
            log.warning("message rejected reason=%s topic=%r: %s", exc.reason, topic, exc.detail[:200])
            return []
        if isinstance(msg, tuple):
            _, ifo, _seq = msg
            return self.aligner.end_of_stream(ifo, now_ns)
        return self.aligner.add(msg, now_ns)

    def poll(self, now_ns: int) -> list:
        return self.aligner.poll(now_ns)

    def status(self) -> dict:
        return dict(sorted(self.counters.items()))


def _encode_output(out, counters: dict) -> list[bytes]:
    if isinstance(out, Block):
        return encode_block(out, complete_unix_ns=time.time_ns(), counters=counters)
    if isinstance(out, Gap):
        return encode_control("gap", {"gps_ns": out.gps_ns, "end_ns": out.end_ns})
    if isinstance(out, EndOfStream):
        return encode_control("eos", {"end_ns": out.end_ns, "counters": counters})
    raise TypeError(f"unexpected aligner output {out!r}")


def _send(sock: zmq.Socket, parts: list[bytes], stop: threading.Event) -> bool:
    """Send, waiting while search's queue is full (back-pressure); False if told to stop first."""
    while not stop.is_set():
        if sock.poll(200, zmq.POLLOUT):
            sock.send_multipart(parts, copy=False)
            return True
    return False


def run_ingest(
    cfg,
    *,
    exit_on_eos: bool = False,
    stats_path: str | Path | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    stop: threading.Event | None = None,
) -> dict:
    """Run the ingest loop until SIGTERM/SIGINT, ``stop`` is set, or (optionally) end of stream.

    Parameters
    ----------
    cfg : gwstream.daemon.config.Config
        Uses ``endpoints``, ``data`` and ``ingest``.
    exit_on_eos : bool
        Return once every detector's stream has ended (replay); otherwise
        keep listening for the next stream (live).
    stats_path : path, optional
        Where to write the final counters as JSON.
    clock : callable
        Monotonic nanoseconds; drives the late-frame timeout.
    stop : threading.Event, optional
        Set it to stop the loop from another thread.

    Returns
    -------
    dict
        Final counters.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    stage = IngestStage(Aligner.from_config(cfg), cfg.ingest.max_message_bytes)
    ctx = zmq.Context()
    auth = ServerAuth(ctx, cfg.endpoints)
    sub = ctx.socket(zmq.SUB)
    secure_server(sub, cfg.endpoints)
    sub.setsockopt(zmq.RCVHWM, cfg.ingest.high_water_mark)
    # zmq's own cap is a memory safety net well above ours: our decoder counts and
    # logs the oversize message, zmq would just drop the connection
    sub.setsockopt(zmq.MAXMSGSIZE, 4 * cfg.ingest.max_message_bytes)
    sub.setsockopt(zmq.LINGER, 0)
    for prefix in (b"frame.", b"eos."):
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.bind(cfg.endpoints.frames)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, cfg.ingest.high_water_mark)
    push.setsockopt(zmq.LINGER, 5000)
    push.bind(cfg.endpoints.blocks)
    log.info("ingest listening frames=%s blocks=%s ifos=%s", cfg.endpoints.frames,
             cfg.endpoints.blocks, ",".join(cfg.data.ifos))
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    status_every_ns = int(cfg.ingest.status_interval_s * NS)
    next_status = clock() + status_every_ns
    poll_ms = max(10, min(200, int(cfg.ingest.late_timeout_s * 1000 / 4) or 10))
    try:
        while not stop.is_set():
            events = dict(poller.poll(poll_ms))
            outputs = []
            if sub in events:
                # drain what is queued, without starving the timeout check
                for _ in range(256):
                    try:
                        parts = sub.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    outputs.extend(stage.handle([p.buffer for p in parts], clock()))
            outputs.extend(stage.poll(clock()))
            ended = False
            for out in outputs:
                if not _send(push, _encode_output(out, stage.status()), stop):
                    log.warning("stopping with unsent output gps=%s", getattr(out, "gps_ns", None))
                    break
                if isinstance(out, Block):
                    stage.counters["blocks_sent"] += 1
                elif isinstance(out, EndOfStream):
                    ended = True
                    log.info("end of stream forwarded end_gps=%s", out.end_ns and out.end_ns / NS)
            now = clock()
            if now >= next_status:
                log.info("status %s", " ".join(f"{k}={v}" for k, v in stage.status().items()))
                next_status = now + status_every_ns
            if ended and exit_on_eos:
                break
    finally:
        counters = stage.status()
        if stats_path is not None:
            Path(stats_path).write_text(json.dumps(counters, indent=1))
        sub.close()
        push.close()
        auth.stop()
        ctx.term()
        log.info("ingest stopped %s", " ".join(f"{k}={v}" for k, v in counters.items()))
    return counters
