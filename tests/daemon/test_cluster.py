"""The distributed search: spans that cover the data once, a merge that is order-free, and results equal to one
process's (triggers, FARs, background, live time, segments), through Dask workers, a killed worker and an
unreadable file."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from gwstream.daemon.cluster.merge import merge_backgrounds, merge_spans
from gwstream.daemon.cluster.search import run_cluster_search, span_config
from gwstream.daemon.cluster.spans import margin_ns, plan_spans, run_span
from gwstream.daemon.config import load_config
from gwstream.daemon.io.archive import read_triggers
from gwstream.daemon.proc.offline import group_ns, input_segments, run_search
from gwstream.daemon.sim.simulate import run_simulate
from gwstream.daemon.stream.background import Background
from gwstream.daemon.units import NS
from hypothesis import given, settings
from hypothesis import strategies as st

GPS = 1_000_000_000
SLIDES = 12
SPAN_S = 128.0


def _cfg(**extra):
    # torch on one thread, as a span's worker: a different thread count may round a few statistics differently
    # (windows right after a gap), see docs/scaling.md
    return load_config(None, {"ranking.n_slides": SLIDES, "cluster.psd_lead_s": 256.0, "cluster.span_s": SPAN_S,
                              "model.threads": 1,
                              "simulate.sample_rate_hz": 2048, "simulate.start_gps": GPS, **extra})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """10 min of two-detector noise with injections (2048 Hz) and the one-process search of it."""
    d = tmp_path_factory.mktemp("cluster")
    cfg = _cfg()
    run_simulate(cfg.simulate, duration_s=600, seed=11, out=str(d / "data.h5"), injections_path=str(d / "inj.h5"),
                 progress=False)
    run_search(d / "data.h5", d / "single.h5", cfg, background_out=d / "single-bg.h5", progress=False)
    return d


@pytest.fixture(scope="module")
def client():
    """One single-worker LocalCluster for the tests that do not need two workers (its start costs seconds)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def _assert_same_search(a_path, b_path, a_bg=None, b_bg=None):
    a, aa = read_triggers(a_path)
    b, ba = read_triggers(b_path)
    assert a["stat"].size > 20
    for k in ("time", "stat", "var", "far", "ifar_years", "saturated", "gps_ns", "window_gps_ns"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(aa["segments"], ba["segments"])
    for k in ("livetime_s", "background_livetime_s", "n_triggers", "n_slides"):
        assert aa[k] == ba[k], k
    if a_bg is not None:
        _assert_same_background(Background.load(a_bg), Background.load(b_bg))


def _assert_same_background(x: Background, y: Background):
    np.testing.assert_array_equal(x.counts, y.counts)
    np.testing.assert_array_equal(x.loudest, y.loudest)
    assert (x.floor, x.live_windows, x.n_triggers, x.n_slides_max) == (y.floor, y.live_windows, y.n_triggers,
                                                                       y.n_slides_max)


# ------------------------------------------------------------------ planning
def test_spans_own_every_stretch_of_data_once_on_the_scoring_grid():
    cfg = _cfg()
    cell = group_ns(cfg)
    segs = [(GPS * NS + 3 * NS, (GPS + 700) * NS), ((GPS + 1500) * NS, (GPS + 2000) * NS)]
    plan = plan_spans(segs, cfg, SLIDES, span_s=200.0)
    assert plan[0].start_ns == segs[0][0] and plan[-1].end_ns == segs[-1][1] and plan[-1].last
    for a, b in zip(plan[:-1], plan[1:]):
        assert a.end_ns == b.start_ns and b.start_ns % cell == 0
        assert b.score_ns <= b.start_ns - margin_ns(cfg, SLIDES) or b.score_ns == segs[0][0]
        assert b.lead_ns <= b.score_ns and b.lead_ns % cell == 0 or b.lead_ns == segs[0][0]
        # a span records its conditioner where the next checks its own, inside its own blocks
        if not b.cold:
            assert a.next_score_ns == b.score_ns and b.score_ns < a.end_ns and b.score_ns <= b.rank_ns
    # the gap 700-1500 s holds no span of its own; the owned data add up to the input's
    assert sum(s.data_s for s in plan) == pytest.approx(sum(b - a for a, b in segs) / NS)
    assert all(s.data_s > 0 for s in plan)
    assert plan[0].cold and not plan[-1].cold


def test_a_span_is_never_shorter_than_what_its_slides_reach_back():
    cfg = _cfg()
    plan = plan_spans([(GPS * NS, (GPS + 4000) * NS)], cfg, 1000, span_s=60.0)
    assert min(s.end_ns - s.start_ns for s in plan[1:-1]) >= margin_ns(cfg, 1000)


# ------------------------------------------------------------------- merging
_values = st.lists(st.floats(-20, 20, allow_nan=False, width=32), max_size=60)


def _bg(values, live, n_exact=5):
    b = Background(62_500_000, {"model": "m"}, n_exact=n_exact, hist_range=(-10.0, 10.0), bin_width=0.5)
    b.add(np.asarray(values, dtype=np.float64), live, 3)
    return b


@settings(max_examples=150, deadline=None)
@given(_values, _values, _values, st.lists(st.floats(-25, 25, allow_nan=False, width=32), min_size=1, max_size=8))
def test_far_against_a_prefix_and_a_later_part_is_the_far_of_the_merged_background(a, b, c, stats):
    """What a span records when it ranks a trigger, joined to the spans before it, is one process's FAR, also where
    the exact lists overflow into the histogram (n_exact = 5)."""
    prefix = merge_backgrounds([_bg(a, 7), _bg(b, 3)])
    later = _bg(c, 5)
    merged = merge_backgrounds([later], into=prefix)
    one = _bg(a + b + c, 15)  # one process, adding everything in turn
    for s in stats:
        n, binned = later.count_parts(s)
        far, sat = prefix.far_joined(s, later.live_windows, n, binned)
        want, want_sat = one.far(s)
        assert far == float(want) and sat == bool(want_sat)
        assert float(merged.far(s)[0]) == far


@settings(max_examples=100, deadline=None)
@given(_values, _values, _values, st.randoms(use_true_random=False))
def test_background_merge_is_associative_and_order_free(a, b, c, rnd):
    parts = [_bg(a, 1), _bg(b, 2), _bg(c, 4)]
    one = _bg(a + b + c, 7)
    left = merge_backgrounds([merge_backgrounds(parts[:2]), parts[2]])
    right = merge_backgrounds([parts[0], merge_backgrounds(parts[1:])])
    shuffled = parts[:]
    rnd.shuffle(shuffled)
    for m in (left, right, merge_backgrounds(shuffled)):
        _assert_same_background(m, one)


# -------------------------------------------------------------- spans, in process
@pytest.fixture(scope="module")
def span_results(data):
    """Every span of the 10 min run in this process, in time order, as the driver settles them."""
    cfg = span_config(_cfg(), None)
    plan = plan_spans(input_segments(data / "data.h5", cfg), cfg, SLIDES)
    return cfg, plan, [run_span([data / "data.h5"], cfg, s) for s in plan]


def test_spans_merged_in_any_order_equal_the_one_process_search(data, span_results, tmp_path):
    cfg, plan, results = span_results
    assert len(plan) >= 4 and any(not s.cold for s in plan)
    for before, after in zip(results[:-1], results[1:]):
        if not after.span.cold:  # the lead-in reached the state one process had there
            assert after.entry_digest == before.exit_digest
    single, attrs = read_triggers(data / "single.h5")
    counters = attrs["counters"] if isinstance(attrs["counters"], dict) else json.loads(attrs["counters"])
    assert counters["removed_zones"] > 0  # hierarchical removal took part, and the spans agree on it
    assert sum(r.counters.get("removed_zones", 0) for r in results) == counters["removed_zones"]
    want_bg = Background.load(data / "single-bg.h5")
    for order in (results, results[::-1], random.Random(3).sample(results, len(results))):
        merged = merge_spans(copy.deepcopy(order), n_spans=len(plan))
        np.testing.assert_array_equal([t.far for t in merged.triggers], single["far"])
        np.testing.assert_array_equal([t.stat for t in merged.triggers], single["stat"])
        np.testing.assert_array_equal([t.gps_ns for t in merged.triggers], single["gps_ns"])
        _assert_same_background(merged.background, want_bg)
    with pytest.raises(ValueError, match="missing"):
        merge_spans(results[:-1], n_spans=len(plan))
    with pytest.raises(ValueError, match="twice"):
        merge_spans(results + results[:1])


def test_a_span_rerun_from_the_span_befores_conditioner_decides_the_same(data, span_results):
    """The driver's fallback when a lead-in did not converge: the span restarts from the previous span's
    conditioner at its check point and gives the same triggers and background."""
    cfg, plan, results = span_results
    k = next(i for i, s in enumerate(plan) if not s.cold)
    again = run_span([data / "data.h5"], cfg, plan[k], seed=results[k - 1].exit_state)
    assert again.seeded
    assert [(t.gps_ns, t.stat) for t in again.triggers] == [(t.gps_ns, t.stat) for t in results[k].triggers]
    np.testing.assert_array_equal(again.far_inputs, results[k].far_inputs)
    _assert_same_background(again.background, results[k].background)


def test_mock_data_with_many_segments_and_gaps_equal_one_process(data, tmp_path, client):
    """The mock-data layout with three segments: a short gap (the PSD is kept) and one longer than the PSD (it is
    dropped and re-estimated); spans fall before, inside and after them. The lead-in is too short to converge
    (16 s, less than a PSD warm-up), so the driver must catch every span's mismatch and rerun it from the span
    before's conditioner."""
    import h5py

    cfg = _cfg()
    rate = 2048
    pieces = [(0, 250), (262, 420), (520, 600)]  # s after GPS; gaps of 12 s and 100 s
    with h5py.File(data / "data.h5", "r") as src, h5py.File(tmp_path / "multi.h5", "w") as dst:
        for ifo in ("H1", "L1"):
            x = src[f"{ifo}/{GPS}"][()]
            for a, b in pieces:
                d = dst.create_dataset(f"{ifo}/{GPS + a}", data=x[a * rate:b * rate])
                d.attrs["start_time"], d.attrs["delta_t"] = GPS + a, 1.0 / rate
    run_search(tmp_path / "multi.h5", tmp_path / "one.h5", cfg, background_out=tmp_path / "one-bg.h5",
               progress=False)
    assert len(input_segments(tmp_path / "multi.h5", cfg)) == 3
    short = _cfg(**{"cluster.psd_lead_s": 16.0})
    summary = run_cluster_search(tmp_path / "multi.h5", tmp_path / "t.h5", short, client=client, span_s=96.0,
                                 progress=False, background_out=tmp_path / "t-bg.h5")
    assert len(summary["spans"]) >= 5
    assert "rerun from the span before" in [s["checked"] for s in summary["spans"]]
    _assert_same_search(tmp_path / "one.h5", tmp_path / "t.h5", tmp_path / "one-bg.h5", tmp_path / "t-bg.h5")


# ------------------------------------------------------------------ on Dask
def test_search_on_two_dask_workers_equals_one_process_bit_for_bit(data, tmp_path):
    """The CLI: gwstream search --workers 2 writes the archive and background one process writes."""
    toml = tmp_path / "c.toml"
    toml.write_text(f"[ranking]\nn_slides = {SLIDES}\n[model]\nthreads = 1\n"
                    f"[cluster]\npsd_lead_s = 256.0\nspan_s = {SPAN_S}\n")
    out = subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "search", str(data / "data.h5"),
                          str(tmp_path / "t.h5"), "--config", str(toml), "--workers", "2", "--no-progress",
                          "--background-out", str(tmp_path / "bg.h5"), "--log-level", "warning"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["workers"] == 2 and summary["skipped_spans"] == [] and summary["unreadable"] == []
    _assert_same_search(data / "single.h5", tmp_path / "t.h5", data / "single-bg.h5", tmp_path / "bg.h5")


def test_a_worker_killed_mid_search_changes_nothing(data, tmp_path):
    """SIGKILL one worker process while it searches a span: Dask reruns the span elsewhere, the result is the
    clean run's."""
    from distributed import Client, LocalCluster

    cfg = _cfg(**{"cluster.span_s": 256.0})
    killed = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_one():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if any("gwstream-span" in k for k in keys)]
                if busy:
                    time.sleep(1.0)  # well inside the span
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed["worker"] = busy[0]
                    return
                time.sleep(0.05)

        t = threading.Thread(target=kill_one, daemon=True)
        t.start()
        summary = run_cluster_search(data / "data.h5", tmp_path / "t.h5", cfg, client=client, progress=False,
                                     background_out=tmp_path / "bg.h5")
        t.join(5)
    assert killed, "no worker was killed"
    assert summary["skipped_spans"] == []
    _assert_same_search(data / "single.h5", tmp_path / "t.h5", data / "single-bg.h5", tmp_path / "bg.h5")


# ------------------------------------------------------------------ bad input
def test_an_unreadable_frame_file_is_named_with_its_span_and_the_rest_completes(tmp_path, client):
    cfg = _cfg()
    frames = tmp_path / "frames"
    run_simulate(cfg.simulate, duration_s=300, seed=5, out=str(frames), fmt="gwf", progress=False)
    bad = sorted(frames.glob("*-L1_*.gwf"))[230]
    bad.write_bytes(b"not a frame file")
    summary = run_cluster_search(frames, tmp_path / "t.h5", cfg, client=client, progress=False)
    [entry] = summary["unreadable"]
    assert entry["file"] == str(bad) and "span" in entry and entry["error"]
    span = summary["spans"][entry["span"]]
    gps = int(bad.name.split("-")[2])
    assert span["start"] <= gps < span["end"]
    _, attrs = read_triggers(tmp_path / "t.h5")
    assert json.loads(attrs["unreadable"])[0]["file"] == str(bad)
    # one process reads the same file as a gap too: the same triggers
    run_search(frames, tmp_path / "one.h5", cfg, progress=False)
    _assert_same_search(tmp_path / "one.h5", tmp_path / "t.h5")


def test_an_unreadable_input_file_is_left_out_by_name(data, tmp_path, client):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n garbage")
    # through --scheduler: a running cluster's address (here the module's LocalCluster)
    summary = run_cluster_search([data / "data.h5", broken], tmp_path / "t.h5", _cfg(),
                                 scheduler=client.scheduler.address, progress=False)
    assert [u["file"] for u in summary["unreadable"]] == [str(broken)]
    assert summary["unreadable"][0]["span"] is None
    _assert_same_search(data / "single.h5", tmp_path / "t.h5")


# ------------------------------------------------------------------ jobqueue
@pytest.mark.parametrize("name, want", [
    ("cluster-slurm.toml", ["#SBATCH -p compute", "--cpus-per-task=8", "--nthreads 1", "--nworkers 8",
                            "GOMP_SPINCOUNT"]),
    ("cluster-htcondor.toml", ["getenv = True", "MY.DaskWorkerCores = 4", "--nthreads 1", "--nworkers 4"]),
])
def test_the_example_cluster_configs_make_the_job_scripts_they_document(name, want):
    from pathlib import Path

    from gwstream.daemon.cluster.search import jobqueue_cluster

    cfg = load_config(Path(__file__).parents[2] / "configs" / name)
    cluster = jobqueue_cluster(cfg)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for w in want:
        assert w in script, (w, script)


def test_a_malformed_htcondor_directive_is_refused_by_name():
    from gwstream.daemon.cluster.search import jobqueue_cluster
    from gwstream.daemon.errors import ConfigError

    cfg = load_config(None, {"cluster.backend": "htcondor", "cluster.job_extra": ["request_gpus"]})
    with pytest.raises(ConfigError, match="cluster.job_extra"):
        jobqueue_cluster(cfg)


# ------------------------------------------------------------------ campaign
def test_a_campaign_searches_on_the_cluster_and_evaluates(data, tmp_path, client):
    from gwstream.daemon.cluster.campaign import run_campaign

    record = run_campaign(data / "inj.h5", [data / "data.h5"], tmp_path / "camp", _cfg(), client=client,
                          progress=False)
    # the foreground search is the one-process search, and evaluate ran on it with its own background
    _assert_same_search(data / "single.h5", tmp_path / "camp" / "foreground.h5",
                        data / "single-bg.h5", tmp_path / "camp" / "foreground-background.h5")
    summary = json.loads((tmp_path / "camp" / "summary.json").read_text())
    assert summary["n_injections"] == record["evaluate"]["n_injections"] > 0
    assert json.loads((tmp_path / "camp" / "campaign.json").read_text())["searches"]["foreground"]["n_triggers"] > 0
