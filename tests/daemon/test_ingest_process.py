"""The ingest process between real sockets: scripted messy stream, and nothing lost at max speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq
from gwstream.daemon.io.wire import decode_block_message
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop

from tests.daemon.streams import NS, T0, ingest_config_dict, write_toml


@pytest.fixture
def endpoints():
    return {"frames": free_tcp_endpoint(), "blocks": free_tcp_endpoint()}


def start_ingest(tmp_path, endpoints, extra=None):
    cfg = ingest_config_dict(**endpoints)
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    write_toml(tmp_path / "ingest.toml", cfg)
    return spawn(["ingest", "--config", str(tmp_path / "ingest.toml"), "--exit-on-eos",
                  "--stats", str(tmp_path / "stats.json")], log_path=tmp_path / "ingest.log")


def collect_blocks(pull: zmq.Socket, timeout_s: float = 60.0):
    blocks, eos = [], None
    deadline = time.monotonic() + timeout_s
    while eos is None:
        assert pull.poll(int(max(0, deadline - time.monotonic()) * 1000)), "no end of stream from ingest"
        kind, msg = decode_block_message(pull.recv_multipart())
        if kind == "block":
            blocks.append(msg)
        elif kind == "eos":
            eos = msg
    return blocks, eos


def test_messy_stream_over_sockets(tmp_path, endpoints, messy_script):
    proc = start_ingest(tmp_path, endpoints)
    ctx = zmq.Context()
    try:
        pull = ctx.socket(zmq.PULL)
        pull.connect(endpoints["blocks"])
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        pub.connect(endpoints["frames"])
        assert pub.poll(20_000), "ingest never subscribed"
        pub.recv()
        for msg in messy_script.messages:
            if isinstance(msg, tuple):
                time.sleep(msg[1])
            else:
                pub.send_multipart(msg)
        blocks, eos = collect_blocks(pull)
        assert proc.wait(20) == 0
    finally:
        stop(proc)
        ctx.destroy(linger=0)
    assert [b.gps_ns for b in blocks] == [(T0 + t) * NS for t in range(messy_script.n_blocks)]
    for b in blocks:
        t = b.gps_ns // NS - T0
        for ifo, data, valid in zip(b.ifos, b.data, b.valid):
            np.testing.assert_array_equal(valid, messy_script.expected_valid[ifo, t])
            np.testing.assert_array_equal(data, messy_script.expected_data[ifo, t])
    counters = {k: v for k, v in eos["counters"].items() if k in messy_script.expected_counters}
    assert counters == messy_script.expected_counters
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["blocks_sent"] == messy_script.n_blocks
    log = (tmp_path / "ingest.log").read_text()
    for reason in ("bad_json", "bad_length", "unknown_ifo", "duplicate", "late", "gps_backwards"):
        assert f"reason={reason}" in log


def test_source_killed_and_restarted_is_one_gap(tmp_path, endpoints):
    """A source process killed with SIGKILL mid-stream and a new one 20 s of data later: the ingest
    process keeps running, reports the silence as a gap, never repeats a block, and delivers the new
    source's data whole."""
    proc = start_ingest(tmp_path, endpoints)
    src_cfg = tmp_path / "source.toml"
    write_toml(src_cfg, {"endpoints": endpoints, "data": {"input_rate_hz": 0}})
    src = lambda start, duration, log: spawn(  # noqa: E731
        ["source", "synthetic", "--config", str(src_cfg), "--sample-rate", "1024", "--start", str(start),
         "--duration", str(duration), "--speed", "4", "--no-injections", "--seed", "3"], log_path=tmp_path / log)
    ctx = zmq.Context()
    first = second = None
    seen: list = []
    try:
        pull = ctx.socket(zmq.PULL)
        pull.connect(endpoints["blocks"])

        def take(until, timeout_s=60.0):
            deadline = time.monotonic() + timeout_s
            while not until():
                assert pull.poll(int(max(0, deadline - time.monotonic()) * 1000)), f"stalled after {seen[-3:]}"
                kind, msg = decode_block_message(pull.recv_multipart())
                seen.append((kind, msg))

        first = src(T0, 0, "source-1.log")  # endless
        take(lambda: sum(k == "block" for k, _ in seen) >= 3)
        first.kill()
        first.wait(10)
        time.sleep(1.5)  # past ingest.late_timeout_s: whatever was half-sent is flushed
        assert proc.poll() is None, "ingest died with its source"
        second = src(T0 + 20, 3, "source-2.log")
        take(lambda: seen[-1][0] == "eos")
        assert second.wait(30) == 0
        assert proc.wait(20) == 0
    finally:
        for p in (first, second, proc):
            if p is not None:
                stop(p)
        ctx.destroy(linger=0)
    blocks = [m for k, m in seen if k == "block"]
    starts = [b.gps_ns // NS - T0 for b in blocks]
    assert starts == sorted(set(starts)), f"a block repeated or out of order: {starts}"
    before = [t for t in starts if t < 20]
    assert before == list(range(len(before))) and len(before) >= 3
    assert starts[len(before):] == [20, 21, 22]
    for b in blocks[len(before):]:
        assert all(v.all() for v in b.valid), "the restarted source's data arrived incomplete"
    gaps = [(g["gps_ns"] // NS - T0, g["end_ns"] // NS - T0) for k, g in seen if k == "gap"]
    assert len(gaps) == 1 and gaps[0][1] == 20 and gaps[0][0] >= before[-1] + 1, gaps
