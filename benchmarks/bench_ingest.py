"""Ingest throughput at --speed max: frames in, aligned blocks out, real processes and sockets.

Peer in the same run: a bare ZeroMQ forwarder process (SUB -> PUSH, ``zmq.proxy``) moving
the very same messages with no decoding, validation or alignment, i.e. the transport's
ceiling on this machine. Reported: seconds of two-detector data per wall second
(x real time) for both, and their ratio.

    .venv/bin/python benchmarks/bench_ingest.py --seconds 600 --rate 16384
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from gwstream.daemon.io.wire import Frame
from gwstream.daemon.proc.sources import publish
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop
from gwstream.daemon.units import NS

FORWARDER = """
import sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB); sub.setsockopt(zmq.SUBSCRIBE, b""); sub.bind(sys.argv[1])
push = ctx.socket(zmq.PUSH); push.bind(sys.argv[2])
zmq.proxy(sub, push)
"""


def frames(seconds: int, rate: int, t0: int = 1_000_000_000):
    rng = np.random.default_rng(0)
    data = {ifo: rng.normal(scale=1e-21, size=rate) for ifo in ("H1", "L1")}
    for t in range(seconds):
        for ifo in ("H1", "L1"):
            yield Frame(ifo, f"{ifo}:GDS-CALIB_STRAIN", (t0 + t) * NS, rate, data[ifo], (3,), t)


def drive(frames_ep: str, out_ep: str, seconds: int, rate: int, expect_eos: bool) -> float:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(out_ep)
    t0 = time.monotonic()
    th = threading.Thread(target=publish, args=(frames(seconds, rate), frames_ep),
                          kwargs={"speed": float("inf"), "context": ctx})
    th.start()
    n = 0
    while True:
        if not pull.poll(60_000):
            raise RuntimeError("stalled")
        parts = pull.recv_multipart(copy=False)
        kind = bytes(parts[0].buffer[:5])
        if expect_eos and kind == b"eos":
            break
        if not expect_eos and kind.startswith(b"eos"):
            n += 1
            if n == 2:
                break
    wall = time.monotonic() - t0
    th.join()
    ctx.destroy(linger=0)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--rate", type=int, default=16384)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ingest.json"))
    args = ap.parse_args()

    fr, bl = free_tcp_endpoint(), free_tcp_endpoint()
    proc = subprocess.Popen([sys.executable, "-c", FORWARDER, fr, bl])
    try:
        time.sleep(0.5)
        wall_peer = drive(fr, bl, args.seconds, args.rate, expect_eos=False)
    finally:
        stop(proc)

    fr, bl = free_tcp_endpoint(), free_tcp_endpoint()
    proc = spawn(["ingest", "--frames-endpoint", fr, "--blocks-endpoint", bl, "--exit-on-eos"])
    try:
        wall_ingest = drive(fr, bl, args.seconds, args.rate, expect_eos=True)
    finally:
        stop(proc)

    res = {
        "seconds_of_data": args.seconds, "sample_rate_hz": args.rate, "detectors": 2,
        "ingest_wall_s": round(wall_ingest, 3), "ingest_x_real_time": round(args.seconds / wall_ingest, 1),
        "forwarder_wall_s": round(wall_peer, 3), "forwarder_x_real_time": round(args.seconds / wall_peer, 1),
        "ingest_over_forwarder": round(wall_peer / wall_ingest, 3),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"{'path':<22}{'wall s':>10}{'x real time':>14}")
    print(f"{'zmq forwarder (peer)':<22}{wall_peer:>10.2f}{args.seconds / wall_peer:>14.1f}")
    print(f"{'gwstream ingest':<22}{wall_ingest:>10.2f}{args.seconds / wall_ingest:>14.1f}")
    print(f"ingest / forwarder throughput ratio: {wall_peer / wall_ingest:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
