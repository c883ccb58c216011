"""An alert's follow-up: template SNR series from the search's own whitened data, coinc.xml that ligo.skymap
reads, a BAYESTAR sky map that holds a loud injection, and a worker that never holds up the search."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from gwstream.daemon.config import load_config
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.followup.event import Followup
from gwstream.daemon.followup.snr import FollowupError
from gwstream.daemon.io.alerts import SKYMAP_TOPIC, decode_alert, event_id, make_alert
from gwstream.daemon.io.coincxml import coinc_document, write_coinc_xml
from gwstream.daemon.io.wire import Block, encode_block, encode_control
from gwstream.daemon.proc.preflight import load_scorer
from gwstream.daemon.proc.spawn import free_tcp_endpoint
from gwstream.daemon.sim.simulate import Simulator
from gwstream.daemon.stream.pipeline import SearchStage
from gwstream.daemon.units import NS

from .streams import write_toml

RATE = 2048
START = 1_100_000_000


def _config(path, out, **extra):
    cfg = {
        "endpoints": {"frames": free_tcp_endpoint(), "alerts": free_tcp_endpoint(), "blocks": free_tcp_endpoint(),
                      "metrics": free_tcp_endpoint()[len("tcp://"):]},
        "data": {"input_rate_hz": RATE},
        "simulate": {"sample_rate_hz": RATE, "start_gps": START,
                     "injections": {"approximant": "IMRPhenomD", "mass1_msun": [30.0, 32.0],
                                    "mass2_msun": [25.0, 28.0], "snr": [30.0, 31.0], "spacing_s": 30.0,
                                    "jitter_s": 1.0}},
        "psd": {"psd_length_s": 32.0},
        "ranking": {"n_slides": 5, "background_init": "none"},
        "model": {"threads": 1},
        "output": {"dir": str(out), "far_threshold_hz": 1e3, "status_interval_s": 1.0},
    }
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    write_toml(path, cfg)
    return load_config(path)


def _blocks(sim: Simulator, duration: int):
    for s in range(duration):
        x = sim.chunk(s, 1)
        yield Block(START * NS + s * NS, NS, tuple(sim.ifos), (RATE,) * len(sim.ifos),
                    tuple(x[i] for i in sim.ifos), tuple(np.ones(RATE, bool) for _ in sim.ifos), seq=s)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """80 s with two loud injections through the search, snapshots of its triggers near them."""
    tmp = tmp_path_factory.mktemp("followup")
    cfg = _config(tmp / "c.toml", tmp / "out")
    duration = 80
    sim = Simulator(cfg.simulate, seed=3, duration_s=duration, injections=True)
    table = sim.injection_table(0, duration)
    stage = SearchStage(cfg, load_scorer(cfg), snapshots=True)
    snaps = []
    triggers = []
    for block in _blocks(sim, duration):
        for t in stage.process(block):
            triggers.append(t)
            if np.min(np.abs(table["tc"] - t.gps_ns / NS)) < 0.5:
                stage.request_snapshot(t, event_id(t.gps_ns))
        snaps += stage.snapshots()
    for t in stage.finish():
        triggers.append(t)
    snaps += stage.snapshots(final=True)
    return cfg, table, snaps, triggers, tmp


def _nearest(table, snap):
    return int(np.argmin(np.abs(table["tc"] - snap.gps_ns / NS)))


def _alert(snap, ifos=("H1", "L1")):
    from gwstream.daemon.io.trigger import Trigger

    t = Trigger(snap.gps_ns, snap.gps_ns, snap.stat, 0.1, snap.far, 1.0, False)
    return make_alert(t, ifos=ifos, background_livetime_s=1e4, n_slides=5, model_name="factorized",
                      model_sha256="ab" * 32, latency={}, created_unix_ns=1_700_000_000 * NS)


def test_snapshots_hold_the_whitened_stream_and_the_branch_template(searched):
    cfg, table, snaps, _, _ = searched
    assert len(snaps) >= 1
    for snap in snaps:
        assert snap.data.shape == (2, int(round((cfg.followup.before_s + cfg.followup.after_s) * RATE)))
        assert not snap.bad.any() and np.isfinite(snap.data).all()
        assert 0.8 < np.std(snap.data) < 3.0  # whitened: unit variance plus the signal
        assert snap.template_index is not None and snap.template_snr > 10
        assert snap.psd.shape[0] == 2 and snap.psd_freqs.size == snap.psd.shape[1]


def test_template_snr_series_match_the_injection(searched):
    cfg, table, snaps, _, _ = searched
    f = Followup.from_config(cfg, load_scorer(cfg).model)
    for snap in snaps:
        i = _nearest(table, snap)
        res = f.place(snap)
        assert res.source == "template_branch" and res.n_templates == cfg.followup.neighbours
        for d in res.detectors:
            assert d.series.size % 2 == 1 and d.series.dtype == np.complex64
            # the series is centred on the detector's peak, and the peak is the injection's merger
            assert np.argmax(np.abs(d.series)) == d.series.size // 2
            assert abs(d.end_ns / NS - table["tc"][i]) < 0.03
            assert d.snr == pytest.approx(table[f"optimal_snr_{d.ifo}"][i], rel=0.2)
        mc_true = (table["mass1"][i] * table["mass2"][i]) ** 0.6 / (table["mass1"][i] + table["mass2"][i]) ** 0.2
        assert res.chirp_mass == pytest.approx(mc_true, rel=0.15)


def test_ligo_skymap_reads_our_coinc_xml_and_the_sky_map_holds_the_source(searched):
    from gwstream.daemon.followup.localize import register_phase_convention
    from gwstream.daemon.followup.localize import searched as searched_prob
    from ligo.skymap.io import events, fits

    cfg, table, snaps, _, tmp = searched
    f = Followup.from_config(cfg, load_scorer(cfg).model)
    snap = snaps[0]
    i = _nearest(table, snap)
    res = f.run(snap, _alert(snap), tmp / "fu")
    assert res.error is None and res.coinc_path.exists()
    # ligo.skymap's own reader: one event, two singles with SNR series, template masses and PSDs
    register_phase_convention()
    ev = list(events.ligolw.open(str(res.coinc_path), psd_file=str(res.coinc_path), coinc_def=None).values())
    assert len(ev) == 1
    singles = ev[0].singles
    assert sorted(s.detector for s in singles) == ["H1", "L1"]
    for s in singles:
        assert s.snr_series is not None and len(s.snr_series.data.data) % 2 == 1
        assert s.psd is not None and s.snr > 10
    assert ev[0].template_args["mass1"] == pytest.approx(res.template["mass1"])
    # the sky map: multi-order FITS beside it, the true position inside its 90 % region
    sky = res.skymap
    assert sky["path"].endswith(".multiorder.fits") and 0 < sky["area_50_deg2"] < sky["area_90_deg2"]
    m = fits.read_sky_map(sky["path"], moc=True)
    p, _ = searched_prob(m, np.degrees(table["ra"][i]), np.degrees(table["dec"][i]))
    assert p < 0.9, (p, sky)


def test_bad_or_missing_data_give_a_clear_error(searched):
    cfg, _, snaps, _, tmp = searched
    f = Followup.from_config(cfg, load_scorer(cfg).model)
    snap = snaps[0]
    bad = snap.bad.copy()
    centre = int((snap.gps_ns - snap.start_ns) * RATE // NS)
    bad[1, centre - 10:centre + 10] = True
    with pytest.raises(FollowupError, match="invalid data at the trigger in L1"):
        f.place(dataclasses.replace(snap, bad=bad))
    data = snap.data.copy()
    data[0, 5] = np.nan
    with pytest.raises(FollowupError, match="non-finite"):
        f.place(dataclasses.replace(snap, data=data))
    with pytest.raises(FollowupError, match="does not cover"):
        f.place(dataclasses.replace(snap, gps_ns=snap.start_ns + NS // 10))
    res = f.place(snap)
    even = dataclasses.replace(res.detectors[0], series=res.detectors[0].series[:-1])
    with pytest.raises(ValueError, match="odd number"):
        coinc_document(_alert(snap), template=res.params, detectors=(even, res.detectors[1]))
    with pytest.raises(ValueError, match="SNR series for"):
        write_coinc_xml(_alert(snap), tmp, template=res.params, detectors=res.detectors[:1])


def test_a_template_bank_that_does_not_fit_the_branch_falls_back_to_the_whole_bank(searched, tmp_path):
    cfg, table, snaps, _, _ = searched
    bank = tmp_path / "bank.csv"
    bank.write_text("mass1,mass2,spin1z,spin2z\n31,26,0,0\n12,8,0,0\n45,40,0.5,0.5\n")
    f = Followup.from_config(dataclasses.replace(cfg, followup=dataclasses.replace(cfg.followup,
                                                                                   template_bank=str(bank))),
                             load_scorer(cfg).model)
    assert not f.branch_maps and f.branch_template(0) is None
    res = f.place(snaps[0])
    assert res.source == "bank" and res.n_templates == 3
    assert res.params["index"] != 1  # a 20 Msun binary does not fit a 57 Msun one
    with pytest.raises(FollowupError, match="template bank"):
        Followup.from_config(dataclasses.replace(cfg, followup=dataclasses.replace(
            cfg.followup, template_bank=str(tmp_path / "missing.csv"))), None)


_JOBS = []


def slow_followup(followup, snap, alert, out_dir):
    """The follow-up worker's job: the first one meets bad data, the others take 6 s longer (a slow localisation)."""
    from gwstream.daemon.proc.followup_worker import run_followup

    _JOBS.append(alert["event_id"])  # in the worker process: its jobs so far
    if len(_JOBS) == 1:
        snap = dataclasses.replace(snap, bad=np.ones_like(snap.bad))
    else:
        time.sleep(6.0)
    return run_followup(followup, snap, alert, out_dir)


def test_a_slow_localisation_never_delays_the_next_alert(tmp_path):
    """The search process in a thread, blocks over a real socket: its alerts go out while the follow-up of
    the first is still running, and the follow-up comes as a second message (topic skymap) afterwards."""
    from gwstream.daemon.proc.search_worker import run_search_process

    # the default conditioning and the shipped background: only the loud injections reach FAR <= 1/day
    cfg = _config(tmp_path / "c.toml", tmp_path / "out", followup={"skymap": False}, psd={"psd_length_s": 64.0},
                  ranking={"background_init": "default"}, output={"far_threshold_hz": 1.0 / 86400})
    duration = 130
    sim = Simulator(cfg.simulate, seed=3, duration_s=duration, injections=True)
    tc = sim.injection_table(0, duration)["tc"]
    assert len(tc) >= 2
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.bind(cfg.endpoints.blocks)
    sub = ctx.socket(zmq.SUB)
    for topic in (b"alert", SKYMAP_TOPIC):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(cfg.endpoints.alerts)
    result = {}
    worker = threading.Thread(target=lambda: result.update(run_search_process(
        cfg, exit_on_eos=True, followup_runner=slow_followup)))
    worker.start()
    got = []
    try:
        time.sleep(3.0)  # the search binds its PUB and our SUB connects
        for b in _blocks(sim, duration):
            push.send_multipart(encode_block(b, complete_unix_ns=time.time_ns()))
            time.sleep(0.05)  # 20x real time: the loud events come 1.5 s apart in wall time
        push.send_multipart(encode_control("eos", {"end_ns": (START + duration) * NS}))
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and worker.is_alive():
            if sub.poll(200):
                topic, payload = sub.recv_multipart()
                got.append((topic, time.monotonic(), decode_alert([topic, payload])))
        while sub.poll(200):
            topic, payload = sub.recv_multipart()
            got.append((topic, time.monotonic(), decode_alert([topic, payload])))
    finally:
        worker.join(60)
        push.close(0)
        sub.close(0)
        ctx.term()
    assert not worker.is_alive()
    firsts = [(t, a) for topic, t, a in got if topic == b"alert"]
    updates = [(t, a) for topic, t, a in got if topic == SKYMAP_TOPIC]
    near = [a for _, a in firsts if np.min(np.abs(tc - a["gpstime"])) < 0.5]
    assert len(near) >= 2, [a["gpstime"] for _, a in firsts]
    # the first follow-up (of the first alert) met bad data: a clear error, no UPDATE, its alert stands
    first_id = firsts[0][1]["event_id"]
    assert result["followup_errors"] >= 1 and first_id not in {a["event_id"] for _, a in updates}
    # every alert of the loud events was out before the next follow-up came back (each takes >= 6 s)
    assert updates, got
    assert max(t for t, a in firsts if a in near) < min(t for t, _ in updates)
    upd = updates[0][1]
    assert upd["event_id"] != first_id
    assert upd["alert_type"] == "UPDATE" and upd["template"]["source"] == "template_branch"
    assert set(upd["template"]["snr"]) == {"H1", "L1"} and upd["latency"]["alert_to_followup_s"] >= 6
    first = next(a for _, a in firsts if a["event_id"] == upd["event_id"])
    assert first["alert_type"] == "PRELIMINARY" and first["template"]["chirp_mass"] > 0
    assert result["followup_worker_submitted"] >= 2
    lines = [json.loads(x) for x in (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()]
    assert {x["alert_type"] for x in lines} == {"PRELIMINARY", "UPDATE"}


def test_followup_settings_are_checked():
    with pytest.raises(ConfigError, match="followup.max_pending"):
        load_config(None, {"followup": {"max_pending": 0}})


def test_search_followup_then_localize_on_the_command_line(tmp_path):
    """``gwstream search --followup DIR`` writes coinc.xml files; ``gwstream localize`` makes their sky maps."""
    import subprocess
    import sys

    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    _config(tmp_path / "c.toml", tmp_path / "out", simulate={"injections": {"spacing_s": 60.0, "jitter_s": 1.0}})
    subprocess.run([*gw, "simulate", "--config", str(tmp_path / "c.toml"), "--duration", "70", "--seed", "5", "--out",
                    str(tmp_path / "data.hdf"), "--injections", str(tmp_path / "inj.hdf"), "--no-progress"],
                   check=True, capture_output=True, timeout=120)
    r = subprocess.run([*gw, "search", str(tmp_path / "data.hdf"), str(tmp_path / "trig.h5"), "--config",
                        str(tmp_path / "c.toml"), "--followup", str(tmp_path / "fu"), "--followup-far", "1e3",
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    xmls = sorted((tmp_path / "fu").glob("gwstream-*.xml"))
    assert xmls and summary["counters"]["followups"] == len(xmls)
    r = subprocess.run([*gw, "localize", str(xmls[-1]), "--out-dir", str(tmp_path / "maps")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(out["path"]).is_file() and out["area_90_deg2"] > out["area_50_deg2"] > 0
    r = subprocess.run([*gw, "localize", str(tmp_path / "missing.xml")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot read it" in r.stdout and "Traceback" not in r.stderr
