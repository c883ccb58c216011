"""Faults end to end: kill -9 of the search process, hostile messages on the ingest socket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import zmq
from gwstream.daemon.errors import WireError
from gwstream.daemon.io.archive import read_archive, read_triggers
from gwstream.daemon.io.wire import Frame, decode_source_message, encode_frame
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop
from gwstream.daemon.stream.background import Background

from .test_daemon import daemon_config

GW = [sys.executable, "-m", "gwstream.daemon.cli"]


def _wait_for(path, pattern, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = re.findall(pattern, path.read_text(errors="replace")) if path.exists() else []
        if m:
            return m
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path} after {timeout_s} s:\n" + path.read_text()[-3000:])


def test_kill9_search_is_restarted_and_resumes_from_its_state(tmp_path):
    out = tmp_path / "out"
    cfg_path = tmp_path / "run.toml"
    daemon_config(cfg_path, out, ranking={"n_slides": 20, "save_interval_s": 1.0},
                  simulate={"injections": {"spacing_s": 30.0}})
    log = tmp_path / "run.log"
    daemon = spawn(["run", "--config", str(cfg_path)], log_path=log)
    source = spawn(["source", "synthetic", "--config", str(cfg_path), "--duration", "240", "--seed", "5",
                    "--speed", "6"], log_path=tmp_path / "source.log")
    try:
        pid = int(_wait_for(log, r"started search pid=(\d+)", 60)[0])
        # let it analyse and persist some background, then kill it hard
        deadline = time.monotonic() + 120
        state = out / "ranking-state.h5"
        while time.monotonic() < deadline:
            if state.exists() and Background.load(state).livetime_s > 0:
                break
            time.sleep(0.5)
        live_before = Background.load(state).livetime_s
        assert live_before > 0
        os.kill(pid, signal.SIGKILL)
        _wait_for(log, r"search exited with code -9; restarting", 30)
        _wait_for(log, r"restored ranking state", 60)
        assert source.wait(180) == 0
        _wait_for(log, r"end of stream at gps", 120)
        time.sleep(1.5)
    finally:
        stop(source)
        code = stop(daemon, timeout_s=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert len(re.findall(r"started search pid=", text)) == 2
    bg = Background.load(out / "ranking-state.h5")
    assert bg.livetime_s > live_before  # continued, not restarted from zero
    cols = read_archive(out / "triggers")
    assert cols["gps_ns"].size and np.unique(cols["gps_ns"]).size == cols["gps_ns"].size  # nothing twice
    # triggers exist after the restart's warm-up: analysis resumed
    assert cols["time"].max() > cols["time"].min() + 100, cols["time"]
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()] \
        if (out / "alerts.jsonl").exists() else []
    # each event once as its first alert, and at most once as its follow-up (UPDATE)
    for kind in ("PRELIMINARY", "UPDATE"):
        ids = [a["event_id"] for a in alerts if a["alert_type"] == kind]
        assert len(ids) == len(set(ids)), kind


def _hostile_messages(rng, n):
    """Malformed, truncated, oversized and type-confused messages; never a well-formed frame."""
    good = encode_frame(Frame("H1", "H1:GDS-CALIB_STRAIN", 1_100_000_000 * 10**9, 2048, np.zeros(2048), (3,), 0))
    header = json.loads(good[1])
    out = []
    big = dict(header, n=(9 * 2**20) // 8, dtype="<f8")
    for i in range(n):
        kind = i % 8
        if kind == 5 and i % 80 != 5:  # oversized ones are 9 MiB each: send a few
            kind = 4
        if kind == 0:
            out.append([b"frame.H1", rng.bytes(int(rng.integers(0, 64))), rng.bytes(int(rng.integers(0, 64)))])
        elif kind == 1:
            out.append([good[0], good[1], good[2][: int(rng.integers(0, len(good[2]) - 1))]])  # truncated payload
        elif kind == 2:
            out.append([good[0], good[1]])  # missing part
        elif kind == 3:
            h = dict(header)
            key = list(h)[int(rng.integers(len(h)))]
            h[key] = [None, "x", -1, 1.5, {"a": 1}, 2**70][int(rng.integers(6))]  # type confusion
            out.append([good[0], json.dumps(h).encode(), good[2]])
        elif kind == 4:
            out.append([good[0], b"{not json", good[2]])
        elif kind == 5:
            out.append([good[0], json.dumps(big).encode(), bytes(9 * 2**20)])  # over the 8 MiB cap
        elif kind == 6:
            h = dict(header, ifo="V1", channel="V1:GDS-CALIB_STRAIN")
            out.append([b"frame.V1", json.dumps(h).encode(), good[2]])  # unknown detector
        else:
            h = dict(header, v=99)
            out.append([good[0], json.dumps(h).encode(), good[2]])  # unknown version
    return out


def test_hostile_messages_during_replay_change_nothing(tmp_path):
    cfg_path = tmp_path / "replay.toml"
    daemon_config(cfg_path, tmp_path / "unused", ranking={"n_slides": 5},
                  simulate={"injections": {"spacing_s": 40.0, "snr": [25.0, 30.0]}})
    data = tmp_path / "data.hdf"
    subprocess.run([*GW, "simulate", "--config", str(cfg_path), "--duration", "100", "--seed", "9", "--out",
                    str(data), "--injections", str(tmp_path / "inj.hdf"), "--no-progress"], check=True,
                   capture_output=True, timeout=120)
    subprocess.run([*GW, "search", str(data), str(tmp_path / "clean.h5"), "--config", str(cfg_path),
                    "--no-progress"], check=True, capture_output=True, timeout=300)
    msgs = _hostile_messages(np.random.default_rng(0), 4000)
    for m in msgs:  # the premise: not one of them is a well-formed H1/L1 frame
        try:
            frame = decode_source_message(m)
        except WireError:
            continue
        assert frame.ifo not in ("H1", "L1"), m[1]  # V1: well formed, but not a detector of this search
    frames_ep = free_tcp_endpoint()
    stop_fuzz = threading.Event()
    sent = [0]

    def fuzz():
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 100_000)
        pub.connect(frames_ep)
        i = 0
        while not stop_fuzz.is_set():
            pub.send_multipart(msgs[i % len(msgs)])
            sent[0] += 1
            i += 1
            if i % 200 == 0:
                time.sleep(0.01)
        pub.close(0)
        ctx.term()

    t = threading.Thread(target=fuzz, daemon=True)
    t.start()
    try:
        r = subprocess.run([*GW, "replay", str(data), "--config", str(cfg_path), "--out", str(tmp_path / "replay"),
                            "--frames-endpoint", frames_ep, "--speed", "5", "--log-level", "warning"],
                           capture_output=True, text=True, timeout=300)
    finally:
        stop_fuzz.set()
        t.join(10)
    assert r.returncode == 0, r.stderr[-3000:]
    clean, _ = read_triggers(tmp_path / "clean.h5")
    fuzzed, _ = read_triggers(tmp_path / "replay" / "triggers.h5")
    assert np.array_equal(clean["gps_ns"], fuzzed["gps_ns"])
    np.testing.assert_array_equal(clean["stat"], fuzzed["stat"])
    stats = json.loads((tmp_path / "replay" / "logs" / "ingest-stats.json").read_text())
    rejected = {k: v for k, v in stats.items() if k.startswith("rejected.")}
    assert sum(rejected.values()) >= 1000, (sent[0], stats)
    for reason in ("bad_parts", "bad_json", "bad_version", "oversize", "unknown_ifo"):
        assert rejected.get(f"rejected.{reason}", 0) > 0, (reason, rejected)
