"""The daemon end to end: run + source + listen over real sockets; replay == search; supervision."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from gwstream.daemon.config import load_config, status_path
from gwstream.daemon.io.archive import read_archive, read_triggers
from gwstream.daemon.io.status import read_status
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop
from gwstream.daemon.proc.supervisor import Child, Supervisor
from gwstream.daemon.sim.simulate import Simulator
from gwstream.daemon.stream.background import Background
from gwstream.models import default_model_path

from .streams import write_toml

GW = [sys.executable, "-m", "gwstream.daemon.cli"]


def daemon_config(path, out, **extra):
    cfg = {
        "endpoints": {"frames": free_tcp_endpoint(), "alerts": free_tcp_endpoint(), "blocks": free_tcp_endpoint(),
                      "metrics": free_tcp_endpoint()[len("tcp://"):]},
        "data": {"input_rate_hz": 2048},
        "simulate": {"sample_rate_hz": 2048, "start_gps": 1_100_000_000,
                     "injections": {"approximant": "IMRPhenomD", "mass1_msun": [30.0, 32.0],
                                    "mass2_msun": [25.0, 28.0], "snr": [40.0, 41.0], "spacing_s": 240.0,
                                    "jitter_s": 1.0}},
        "psd": {"psd_length_s": 32.0},
        "ranking": {"n_slides": 50},
        "model": {"threads": 1},
        "output": {"dir": str(out), "far_threshold_hz": 1e-3, "status_interval_s": 2.0},
    }
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    write_toml(path, cfg)
    return load_config(path)


def test_run_source_listen_one_alert_then_sigterm_leaves_state(tmp_path):
    out = tmp_path / "out"
    cfg_path = tmp_path / "run.toml"
    cfg = daemon_config(cfg_path, out)
    duration, seed = 160, 11
    table = Simulator(cfg.simulate, seed=seed, duration_s=duration, injections=True).injection_table(0, duration)
    tc = table["tc"]
    # one loud event seen by both detectors (a signal in one detector alone is, rightly, not an alert)
    assert len(tc) == 1 and min(table["optimal_snr_H1"][0], table["optimal_snr_L1"][0]) > 20
    daemon = spawn(["run", "--config", str(cfg_path)], log_path=tmp_path / "run.log")
    with open(tmp_path / "listen.log", "w") as listen_log:
        listener = subprocess.Popen([*GW, "listen", "--config", str(cfg_path), "--log-level", "info"],
                                    stdout=subprocess.PIPE, stderr=listen_log, text=True)
    deadline = time.monotonic() + 60  # a subscriber hears only what is published after it has connected
    while "connected to" not in (tmp_path / "listen.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # its subscription reaches the daemon
    source = spawn(["source", "synthetic", "--config", str(cfg_path), "--duration", str(duration), "--seed",
                    str(seed), "--speed", "max"], log_path=tmp_path / "source.log")
    try:
        assert source.wait(120) == 0
        alerts_file = out / "alerts.jsonl"
        # the search process says when every block before the end of the stream is analysed (its status file)
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and (status is None or status["state"] != "end_of_stream"):
            time.sleep(0.2)
            status = read_status(status_path(cfg))
        assert status is not None and status["state"] == "end_of_stream", status
        assert status["blocks"] == duration
        with urllib.request.urlopen(f"http://{cfg.endpoints.metrics}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        stop(source)
        listener.terminate()
        printed, _ = listener.communicate(timeout=30)
        code = stop(daemon, timeout_s=60)
    log_text = (tmp_path / "run.log").read_text()
    assert code == 0, log_text[-3000:]
    lines = [json.loads(x) for x in printed.splitlines() if x.strip()]
    final = read_status(status_path(cfg))  # written when the search stopped
    assert final["state"] == "stopped" and final["blocks"] == duration and final["end_of_stream_messages"] == 1
    first_alerts = [x for x in (out / "alerts.jsonl").read_text().splitlines() if '"PRELIMINARY"' in x]
    assert final["alerts"] == len(first_alerts)  # (its follow-up may have come too, as an UPDATE line)
    assert len(lines) == 1, (lines, log_text[-3000:])
    alert = lines[0]
    assert json.loads(alerts_file.read_text().splitlines()[0]) == alert
    assert abs(alert["gpstime"] - tc[0]) <= alert["var_s"]
    assert alert["pipeline"] == "gwstream" and alert["event_id"] == f"gwstream-{alert['gps_ns'] // 1_000_000}"
    assert alert["far"] <= 1e-3 and alert["saturated"] and alert["ifos"] == ["H1", "L1"]
    assert alert["model"]["name"] == "factorized" and len(alert["model"]["sha256"]) == 64
    assert alert["background"]["n_slides"] == 50 and alert["background"]["livetime_s"] > 0
    assert alert["latency"]["frame_end_to_alert_s"] >= 0 and alert["latency"]["merger_to_alert_s"] > 0
    assert "alert event_id=" in log_text and "status blocks=" in log_text
    for line in ('gwstream_alerts_total 1.0', 'gwstream_frames_received{ifo="H1"} 160.0', "gwstream_blocks_total 160.0",
                 "gwstream_alert_latency_seconds_count 1.0", "gwstream_processing_lag_seconds"):
        assert line in metrics, line
    # SIGTERM left the background and the archive on disk, readable
    bg = Background.load(out / "ranking-state.h5")
    assert bg.livetime_s > 0
    cols = read_archive(out / "triggers")
    assert cols["time"].size > 10 and np.min(np.abs(cols["time"] - tc[0])) <= alert["var_s"]


def test_replay_equals_search(tmp_path):
    cfg_path = tmp_path / "replay.toml"
    daemon_config(cfg_path, tmp_path / "unused", ranking={"n_slides": 10},
                  simulate={"injections": {"spacing_s": 40.0, "snr": [25.0, 30.0]}})
    subprocess.run([*GW, "simulate", "--config", str(cfg_path), "--duration", "130", "--seed", "4", "--out",
                    str(tmp_path / "data.hdf"), "--injections", str(tmp_path / "inj.hdf"), "--no-progress"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*GW, "search", str(tmp_path / "data.hdf"), str(tmp_path / "search.h5"), "--config",
                    str(cfg_path), "--no-progress"], check=True, capture_output=True, timeout=300)
    r = subprocess.run([*GW, "replay", str(tmp_path / "data.hdf"), "--config", str(cfg_path), "--out",
                        str(tmp_path / "replay"), "--speed", "max", "--log-level", "warning"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    a, _ = read_triggers(tmp_path / "search.h5")
    b, _ = read_triggers(tmp_path / "replay" / "triggers.h5")
    assert summary["n_triggers"] == a["time"].size > 0
    assert np.array_equal(a["gps_ns"], b["gps_ns"])
    np.testing.assert_array_equal(a["stat"], b["stat"])
    np.testing.assert_array_equal(a["far"], b["far"])
    lines = [json.loads(x) for x in (tmp_path / "replay" / "alerts.jsonl").read_text().splitlines()]
    alerts = [x for x in lines if x["alert_type"] == "PRELIMINARY"]
    assert [x["gps_ns"] for x in alerts] == [int(g) for g, f in zip(a["gps_ns"], a["far"]) if f <= 1e-3]
    assert summary["n_alerts"] == len(alerts)
    # the follow-ups (sky maps) of those alerts, each at most once, after its alert
    updates = [x["event_id"] for x in lines if x["alert_type"] == "UPDATE"]
    assert len(updates) == len(set(updates)) and set(updates) <= {x["event_id"] for x in alerts}


def test_supervisor_restarts_then_gives_up_naming_the_child(tmp_path):
    bad = ["worker", "search", "--config", str(tmp_path / "missing.toml")]
    sup = Supervisor([Child("search", bad, tmp_path / "search.log")], max_restarts=3, window_s=60,
                     backoff_s=0.05)
    t0 = time.monotonic()
    assert sup.run() == 1
    assert time.monotonic() - t0 < 60
    assert "search exited 3 times" in sup.failure and "search.log" in sup.failure
    assert sup.children[0].starts == 3


def test_supervisor_failure_quotes_the_childs_error(tmp_path):
    """A search that cannot load its model (weights that do not fit the network: the check `gwstream replay`
    leaves to the search process) stops with the search's own error in the supervisor's failure message."""
    import torch

    ckpt = torch.load(default_model_path(), weights_only=True)
    ckpt["state_dict"]["encoder.0.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "misfit.pt")
    cfg_path = tmp_path / "run.toml"
    daemon_config(cfg_path, tmp_path / "out", model={"path": str(tmp_path / "misfit.pt")})
    child = Child("search", ["worker", "search", "--config", str(cfg_path)], tmp_path / "search.log")
    sup = Supervisor([child], exit_on_eos=True, max_restarts=1)
    assert sup.run() == 1
    assert "search exited 1 times" in sup.failure and "last exit code 2" in sup.failure
    assert "model.path" in sup.failure and "encoder.0.weight has shape (3,)" in sup.failure


def test_default_model_ships_with_the_package():
    assert default_model_path().is_file()


@pytest.mark.parametrize("bad", ["no_such_dir", "file.txt"])
def test_replay_names_bad_input(tmp_path, bad, capsys):
    from gwstream.daemon.cli import main

    target = tmp_path / bad
    if bad.endswith(".txt"):
        target.write_text("x")
    assert main(["replay", str(target), "--out", str(tmp_path / "o")]) == 2
    assert "INPUT" in capsys.readouterr().err


def test_listen_reconnects_when_the_daemon_restarts():
    import threading

    import zmq
    from gwstream.daemon.io.alerts import encode_alert

    ep = free_tcp_endpoint()
    listener = subprocess.Popen([*GW, "listen", "--alerts-endpoint", ep], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(listener.stdout.readline, "")), daemon=True)
    reader.start()
    ctx = zmq.Context()
    try:
        for k in range(2):  # two daemon lifetimes on the same endpoint
            pub = ctx.socket(zmq.PUB)
            try:
                # The free port is in the kernel's ephemeral range, and the listener keeps reconnecting while
                # no daemon is up: one of its attempts can briefly hold the port as its own source port (TCP
                # self-connect), so the restarted daemon retries its bind (live, the port is a fixed one).
                deadline = time.monotonic() + 10
                while True:
                    try:
                        pub.bind(ep)
                        break
                    except zmq.ZMQError as exc:
                        if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not any(f'"gwstream-{k}"' in x for x in lines):
                    pub.send_multipart(encode_alert({"event_id": f"gwstream-{k}"}))
                    time.sleep(0.2)
            finally:
                pub.close(0)  # an unclosed socket would hang ctx.term()
    finally:
        listener.terminate()
        listener.wait(30)
        reader.join(5)
        ctx.term()
    ids = [json.loads(x)["event_id"] for x in lines if x.strip()]
    assert "gwstream-0" in ids and "gwstream-1" in ids


@pytest.mark.parametrize("case", ["phase", "background"])
def test_run_and_replay_refuse_what_the_search_would_before_starting_it(tmp_path, case, capsys):
    """A configuration the search process would refuse stops `run` / `replay` at once with the search's
    message (exit 2), not after the supervisor has restarted a failing search five times."""
    from gwstream.daemon.cli import main
    from gwstream.models.scorer import load_checkpoint

    trained = load_checkpoint(default_model_path())[1]["whiten"]["phase"]
    if case == "phase":
        extra, key = {"whiten": {"phase": {"linear": "minimum", "minimum": "linear"}[trained]}}, "whiten.phase"
    else:  # the shipped background was conditioned with a 64-s PSD, this configuration a 32-s one
        bg = default_model_path().with_name("default-background.h5")
        extra, key = {"ranking": {"background_init": str(bg)}}, "psd.psd_length_s = 32.0"
    cfg_path = tmp_path / "bad.toml"
    daemon_config(cfg_path, tmp_path / "out", **extra)
    t0 = time.monotonic()
    assert main(["run", "--config", str(cfg_path)]) == 2
    assert key in capsys.readouterr().err
    data = tmp_path / "data.hdf"
    data.write_bytes(b"")  # never read: the check comes first
    assert main(["replay", str(data), "--config", str(cfg_path), "--out", str(tmp_path / "replay")]) == 2
    assert key in capsys.readouterr().err
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out" / "alerts.jsonl").exists()
