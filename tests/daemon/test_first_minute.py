"""Alerts from the first minute: `gwstream run` starts from the background shipped with the default model.

A fresh daemon's own time slides gather live time only as fast as past L1 data allows them (no FAR
reaches 1/day for minutes); seeded with the shipped background (about a month of time slides of
simulated noise, made with the default conditioning), it can alert on the first loud event it analyses.
Unit tests of the seeding and refusal logic first (no processes), then the daemon end to end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from gwstream.daemon.config import RankingConfig, config_from_dict, load_config, status_path
from gwstream.daemon.io.alerts import ALERT_TOPIC, decode_alert
from gwstream.daemon.io.archive import read_archive
from gwstream.daemon.io.status import read_status
from gwstream.daemon.proc.preflight import preflight, resolve_background_init
from gwstream.daemon.proc.spawn import free_tcp_endpoint, spawn, stop
from gwstream.daemon.sim.simulate import Simulator
from gwstream.daemon.stream.background import (
    Background,
    BackgroundError,
    BackgroundMismatch,
    first_difference,
    initial_background_path,
)
from gwstream.daemon.stream.identity import conditioning_meta
from gwstream.models import default_background_path, default_model_path
from gwstream.models.checkpoint import read_checkpoint_info

from .streams import write_toml

REPO = Path(__file__).parents[2]
DAY = 86400.0


@pytest.fixture(scope="module")
def shipped():
    """(the shipped background, the default model's sha256)."""
    return Background.load(default_background_path()), read_checkpoint_info(default_model_path()).sha256


def _cfg(tmp_path, **sections):
    return config_from_dict({"output": {"dir": str(tmp_path / "out")}, **sections})


# ---------------------------------------------------------------- the shipped background
@pytest.mark.parametrize("config", ["online.toml", "demo.toml", "background.toml"])
def test_shipped_background_is_made_with_the_default_conditioning(shipped, config):
    """`make background` conditions like configs/online.toml (the defaults) and the demo: both start from it."""
    bg, sha = shipped
    cfg = load_config(REPO / "configs" / config)
    assert bg.meta["model_sha256"] == sha
    assert first_difference(conditioning_meta(cfg), bg.meta) is None
    assert bg.meta["psd"]["psd_length_s"] == 64.0 == cfg.psd.psd_length_s
    assert bg.n_slides_max == 1000 and bg.livetime_s > 30 * DAY  # an hour of noise x 1000 slides, minus warm-ups


# ---------------------------------------------------------------- seeding and refusal (no processes)
def test_initial_background_path_values():
    assert initial_background_path("") is None and initial_background_path("none") is None
    assert initial_background_path(" None ") is None
    assert initial_background_path("default") == default_background_path()
    assert initial_background_path("bg.h5") == Path("bg.h5")
    assert RankingConfig().background_init == ""  # the default: `run` decides (resolve_background_init)


def test_first_difference_names_the_nested_setting():
    a = {"model": "factorized", "psd": {"fftlength_s": 4.0, "psd_length_s": 64.0}}
    b = {"model": "factorized", "psd": {"fftlength_s": 4.0, "psd_length_s": 32.0}, "extra": 1}
    assert first_difference(a, b) == ("psd.psd_length_s", 64.0, 32.0)
    assert first_difference(a, a) is None


def test_run_starts_from_the_shipped_background_and_says_so(tmp_path, shipped, caplog):
    bg, sha = shipped
    cfg = _cfg(tmp_path)
    with caplog.at_level(logging.INFO, logger="gwstream.daemon.proc.preflight"):
        got = resolve_background_init(cfg, sha)
    assert got.ranking.background_init == str(default_background_path())
    assert dataclasses.replace(got, ranking=cfg.ranking) == cfg  # nothing else changes
    text = caplog.text
    assert "starting from the shipped background" in text and str(default_background_path()) in text
    assert f"live time {bg.livetime_s:.0f} s" in text and f"from {bg.n_slides_max} time slides" in text
    # preflight (what `gwstream run` calls) does the same, and checks what it chose
    assert preflight(cfg, load_weights=False, shipped_background=True).ranking.background_init == \
        str(default_background_path())
    # search and replay keep an empty background_init: they start empty
    assert preflight(cfg, load_weights=False).ranking.background_init == ""


@pytest.mark.parametrize("sections, setting", [
    ({"psd": {"psd_length_s": 32.0}}, "psd.psd_length_s = 32.0, the shipped background was made with 64.0"),
    ({"whiten": {"highpass_hz": 15.0}}, "whiten.highpass_hz = 15.0, the shipped background was made with 20.0"),
    ({"whiten": {"gate_threshold": 10.0}}, "whiten.gate_threshold = 10.0, the shipped background was made with 0.0"),
    ({"ranking": {"slide_step_s": 2.0}}, "ranking.slide_step_s = 2.0, the shipped background was made with 1.0"),
    ({"windows": {"stride_s": 0.125}}, "windows.stride_s = 0.125 (the window stride), the shipped background was "
                                        "made with 0.0625"),
])
def test_run_refuses_a_shipped_background_of_other_conditioning_and_starts_empty(tmp_path, shipped, caplog,
                                                                                  sections, setting):
    _, sha = shipped
    cfg = _cfg(tmp_path, **sections)
    with caplog.at_level(logging.INFO, logger="gwstream.daemon.proc.preflight"):
        got = resolve_background_init(cfg, sha)
    assert got.ranking.background_init == "none"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and setting in warnings[0].getMessage(), caplog.text
    assert "starts empty" in warnings[0].getMessage()


def test_run_refuses_the_shipped_background_for_another_model(tmp_path, shipped, caplog):
    _, sha = shipped
    with caplog.at_level(logging.WARNING, logger="gwstream.daemon.proc.preflight"):
        got = resolve_background_init(_cfg(tmp_path), "0" * 64)
    assert got.ranking.background_init == "none"
    assert f"model.path (sha256) = '{'0' * 64}', the shipped background was made with '{sha}'" in caplog.text


def test_restored_state_comes_first(tmp_path, shipped, caplog):
    """A state file of an earlier run already holds its background (seeded or not): nothing is added to it."""
    bg, sha = shipped
    cfg = _cfg(tmp_path)
    state = tmp_path / "out" / "ranking-state.h5"
    bg.save(state)
    with caplog.at_level(logging.INFO, logger="gwstream.daemon.proc.preflight"):
        got = resolve_background_init(cfg, sha)
    assert got.ranking.background_init == "none"
    assert str(state) in caplog.text and "not added" in caplog.text


@pytest.mark.parametrize("value", ["default", str(default_background_path())])
def test_a_given_background_that_does_not_fit_stays_an_error(tmp_path, shipped, value):
    cfg = _cfg(tmp_path, psd={"psd_length_s": 32.0}, ranking={"background_init": value})
    for seed in (False, True):
        with pytest.raises(BackgroundMismatch, match="psd.psd_length_s = 32.0") as err:
            preflight(cfg, load_weights=False, shipped_background=seed)
        assert (err.value.setting, err.value.expected, err.value.found) == ("psd.psd_length_s", 32.0, 64.0)
    # one that fits is kept as given; 'none' starts empty
    ok = _cfg(tmp_path, ranking={"background_init": value})
    assert preflight(ok, load_weights=False, shipped_background=True).ranking.background_init == value
    none = _cfg(tmp_path, psd={"psd_length_s": 32.0}, ranking={"background_init": "none"})
    assert preflight(none, load_weights=False, shipped_background=True).ranking.background_init == "none"


def test_a_missing_shipped_background_starts_empty(tmp_path, shipped, caplog, monkeypatch):
    import gwstream.daemon.proc.preflight as pf

    monkeypatch.setattr(pf, "default_background_path", lambda: tmp_path / "absent.h5")
    with caplog.at_level(logging.WARNING, logger="gwstream.daemon.proc.preflight"):
        assert resolve_background_init(_cfg(tmp_path), shipped[1]).ranking.background_init == "none"
    assert "no such background file" in caplog.text
    with pytest.raises(BackgroundError):
        Background.load(tmp_path / "absent.h5")


# ---------------------------------------------------------------- the daemon end to end
def _listen(endpoint: str, alerts: list, stop_event: threading.Event) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, ALERT_TOPIC)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    try:
        while not stop_event.is_set():
            if sub.poll(100):
                alert = decode_alert(sub.recv_multipart())
                alert["received_monotonic"] = time.monotonic()
                alerts.append(alert)
    finally:
        sub.close()
        ctx.term()


def test_fresh_run_alerts_within_its_first_analysed_minute(tmp_path, shipped):
    """`gwstream run` with the default configuration (64-s PSD, 1000 slides, 16384-Hz frames, 1/day alert
    threshold) and an empty output directory alerts on a loud injection ~35 s after its first analysed data:
    its own slides could not have given that FAR yet, the shipped background does."""
    bg, _ = shipped
    out = tmp_path / "out"
    cfg_path = tmp_path / "run.toml"
    start = 1_300_000_000
    write_toml(cfg_path, {
        "endpoints": {"frames": free_tcp_endpoint(), "alerts": free_tcp_endpoint(), "blocks": free_tcp_endpoint(),
                      "metrics": free_tcp_endpoint()[len("tcp://"):]},
        "simulate": {"sample_rate_hz": 16384, "start_gps": start,
                     "injections": {"approximant": "IMRPhenomD", "mass1_msun": [30.0, 32.0],
                                    "mass2_msun": [25.0, 28.0], "snr": [40.0, 41.0], "spacing_s": 200.0,
                                    "jitter_s": 1.0}},
        "output": {"dir": str(out), "status_interval_s": 2.0},
    })
    cfg = load_config(cfg_path)
    defaults = config_from_dict({})
    for section in ("data", "psd", "whiten", "windows", "ranking", "model"):  # the default search
        assert getattr(cfg, section) == getattr(defaults, section), section
    duration, seed = 130, 3
    table = Simulator(cfg.simulate, seed=seed, duration_s=duration, injections=True).injection_table(0, duration)
    assert len(table["tc"]) == 1 and 95 < table["tc"][0] - start < 105  # ~35 s after the 64-s PSD warm-up
    tc = float(table["tc"][0])

    t0 = time.monotonic()
    alerts: list = []
    stop_event = threading.Event()
    listener = threading.Thread(target=_listen, args=(cfg.endpoints.alerts, alerts, stop_event), daemon=True)
    listener.start()
    daemon = spawn(["run", "--config", str(cfg_path), "--log-level", "info"], log_path=tmp_path / "run.log")
    source = None
    try:
        source = spawn(["source", "synthetic", "--config", str(cfg_path), "--duration", str(duration), "--seed",
                        str(seed), "--speed", "max"], log_path=tmp_path / "source.log")
        assert source.wait(150) == 0, (tmp_path / "source.log").read_text()[-2000:]
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and (status is None or status["state"] != "end_of_stream"):
            assert daemon.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
            status = read_status(status_path(cfg))
        assert status is not None and status["state"] == "end_of_stream", status
        while time.monotonic() < deadline and len(alerts) < status["alerts"]:
            time.sleep(0.1)
    finally:
        if source is not None:
            stop(source)
        code = stop(daemon, timeout_s=60)
        stop_event.set()
        listener.join(5)
    wall = time.monotonic() - t0
    log_text = (tmp_path / "run.log").read_text()
    assert code == 0, log_text[-3000:]
    path = default_background_path()
    assert f"starting from the shipped background {path}: live time {bg.livetime_s:.0f} s" in log_text
    assert f"initial background {path}" in log_text  # the search process loaded it

    assert len(alerts) == 1, (alerts, log_text[-3000:])
    alert = alerts[0]
    assert json.loads((out / "alerts.jsonl").read_text().splitlines()[0])["event_id"] == alert["event_id"]
    assert abs(alert["gpstime"] - tc) <= alert["var_s"]
    assert alert["far"] <= cfg.output.far_threshold_hz and alert["background"]["n_slides"] == 1000
    own = alert["background"]["livetime_s"] - bg.livetime_s
    assert 0 < own < 1.0 / cfg.output.far_threshold_hz  # alone, the daemon's own slides could not have alerted
    assert alert["far_floor_hz"] == pytest.approx(1.0 / alert["background"]["livetime_s"])
    # what an astronomer acts on, in the first alert already: p_astro and the branch's template
    assert alert["alert_type"] == "PRELIMINARY" and alert["event"]["classification"]["BBH"] > 0.99
    mc = (table["mass1"][0] * table["mass2"][0]) ** 0.6 / (table["mass1"][0] + table["mass2"][0]) ** 0.2
    assert alert["template"]["source"] == "template_branch" and abs(alert["template"]["chirp_mass"] / mc - 1) < 0.35
    # the first analysed data: the earliest zero-lag trigger (one every cluster window of analysed data)
    first = float(np.min(read_archive(out / "triggers")["window_gps_ns"])) / 1e9
    since_first = alert["gpstime"] - first
    assert 60 < first - start < 72, first - start  # the 64-s PSD warm-up (69.1 s at most)
    assert 0 < since_first < 60, since_first
    print(f"\nfirst analysed data at +{first - start:.2f} s; alert {alert['event_id']} on the injection at "
          f"+{tc - start:.2f} s, {since_first:.2f} s of data after the first analysed; FAR {alert['far']:.3g} Hz "
          f"(floor {alert['far_floor_hz']:.3g} Hz, saturated {alert['saturated']}); background live time "
          f"{alert['background']['livetime_s']:.0f} s of which the daemon's own {own:.0f} s; frame end -> alert "
          f"{alert['latency']['frame_end_to_alert_s']:.3f} s; wall {wall:.1f} s")
