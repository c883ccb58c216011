"""benchmarks/bench_mf.py: the plain matched-filter search finds a loud injection where and as loud as it is,
and pure noise gives no loud coincidence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from gwstream.daemon.bank import TemplateBank
from gwstream.daemon.config import config_from_dict
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.framefiles import read_injection_file, write_hdf5_layout_attrs
from gwstream.daemon.sim.simulate import run_simulate

FS = 2048


def _load_bench_mf():
    """benchmarks/bench_mf.py as a module (the benchmarks folder is no package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mf.py"
    spec = importlib.util.spec_from_file_location("bench_mf", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_mf = _load_bench_mf()


def _sim_config():
    """One zero-spin 30+25 Msun IMRPhenomD injection at network SNR 20, merging 32 s into 64 s of data."""
    inj = {"approximant": "IMRPhenomD", "mass1_msun": [30.0, 30.0], "mass2_msun": [25.0, 25.0], "spin": "zero",
           "snr": [20.0, 20.0], "spacing_s": 64.0, "jitter_s": 0.0}
    return config_from_dict({"simulate": {"sample_rate_hz": FS, "chunk_s": 16, "injections": inj}}).simulate


@pytest.fixture(scope="module")
def bank():
    """A handful of templates around the injected masses (the exact one among them)."""
    return TemplateBank.from_params([30.0, 28.0, 32.0, 35.0, 26.0], [25.0, 24.0, 26.0, 20.0, 26.0],
                                    sample_rate_hz=FS)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mf")
    cfg = _sim_config()
    run_simulate(cfg, duration_s=64, seed=5, out=str(root / "inj.hdf"), injections_path=str(root / "inj-table.hdf"),
                 progress=False)
    run_simulate(cfg, duration_s=64, seed=6, out=str(root / "noise.hdf"), injections_path=None, progress=False)
    return root


def _triggers(path: Path) -> dict:
    with h5py.File(path, "r") as fh:
        return {k: fh[k][()] for k in ("gps", "gps_l1", "snr_h1", "snr_l1", "network_snr", "template")}


def test_loud_injection_found_at_its_time_and_snr(data, bank):
    summary = bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=data / "inj-trig.h5", threads=1)
    assert summary["n_templates"] == 5 and summary["data_s"] == 64.0 and summary["x_real_time"] > 0
    row = read_injection_file(data / "inj-table.hdf")
    assert row["tc"].size == 1
    tc, snr = float(row["tc"][0]), float(row["network_snr"][0])
    trig = _triggers(data / "inj-trig.h5")
    near = np.abs(trig["gps"] - tc) < 0.04  # H1 arrives within 21 ms of the geocentre
    assert near.sum() == 1, (trig, tc)
    assert abs(trig["gps_l1"][near][0] - trig["gps"][near][0]) <= 0.015
    assert trig["network_snr"][near][0] == pytest.approx(snr, rel=0.2)
    assert trig["network_snr"][near][0] == trig["network_snr"].max()


def test_injection_found_across_segment_boundaries(data, bank):
    """Segments much shorter than the data (several, overlapping): the injection still found as loud."""
    summary = bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=data / "inj-trig-seg.h5", threads=1,
                                     segment_s=24.0)
    assert summary["n_segments"] >= 3
    assert summary["analysed_s"] == pytest.approx(64.0 - sum(summary["pad_s"]))
    row = read_injection_file(data / "inj-table.hdf")
    trig = _triggers(data / "inj-trig-seg.h5")
    near = np.abs(trig["gps"] - row["tc"][0]) < 0.04
    assert near.sum() == 1
    assert trig["network_snr"][near][0] == pytest.approx(float(row["network_snr"][0]), rel=0.2)


def test_clustering_keeps_separate_peaks_and_no_two_within_the_window():
    width = 101
    rng = np.random.default_rng(3)
    idx = np.sort(rng.choice(5000, 600, replace=False))
    val = rng.random(idx.size)
    kept = bench_mf._cluster(idx, val, width)
    assert idx[np.argmax(val)] in idx[kept]
    assert np.all(np.diff(idx[kept]) > width // 2)
    # two signals with side lobes, far apart: one trigger each, at the peaks
    idx = np.array([10, 12, 14, 500, 505, 510])
    val = np.array([2.0, 9.0, 3.0, 1.0, 7.0, 6.9])
    np.testing.assert_array_equal(idx[bench_mf._cluster(idx, val, width)], [12, 505])


@pytest.mark.parametrize("n", [1000, 2400, 5001, 9999])
def test_segments_tile_the_searchable_data(n):
    seg_n, pad0, pad1 = 2000, 300, 100
    plan = bench_mf._plan(n, seg_n, pad0, pad1)
    length = min(seg_n, n)
    assert plan[0][1] == pad0 and plan[-1][2] == n - pad1
    for start, lo, hi in plan:  # inside the data, kept part clear of both pads
        assert 0 <= start and start + length <= n and start + pad0 <= lo < hi <= start + length - pad1
    for (_, _, hi), (_, lo, _) in zip(plan, plan[1:]):  # no gap, no overlap
        assert hi == lo


def test_bank_split_over_workers_gives_the_same_triggers(data, bank):
    for threads in (1, 2):
        bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=data / f"split-{threads}.h5", threads=threads)
    one, two = _triggers(data / "split-1.h5"), _triggers(data / "split-2.h5")
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_pure_noise_gives_no_loud_coincidence(data, bank):
    summary = bench_mf.run_mf_search(data / "noise.hdf", bank=bank, out=data / "noise-trig.h5", threads=1)
    trig = _triggers(data / "noise-trig.h5")
    assert summary["n_triggers"] == trig["gps"].size
    assert np.all(trig["network_snr"] < 10.0), trig["network_snr"]


def test_file_without_l1_is_refused(tmp_path, bank):
    path = tmp_path / "h1only.hdf"
    with h5py.File(path, "w") as fh:
        dset = fh.create_group("H1").create_dataset("1000000000", data=np.zeros(64 * FS))
        write_hdf5_layout_attrs(dset, 1_000_000_000, FS)
    with pytest.raises(FrameFileError, match="L1"):
        bench_mf.run_mf_search(path, bank=bank, out=tmp_path / "t.h5", threads=1)


def test_slides_give_a_background_and_the_loud_injection_its_far(data, bank, tmp_path):
    """Slides of the single-detector triggers: live time sum(L - k step), the injection's slides are in the
    background (its H1 with L1's noise) but quieter than it; the evaluate files carry its FAR from them."""
    out = tmp_path / "slid.h5"
    s = bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=out, threads=1, n_slides=5, slide_step_s=1.0,
                               snr_threshold=4.0)
    searched = s["analysed_s"]
    assert s["background_livetime_s"] == pytest.approx(sum(searched - k for k in range(1, 6)))
    with h5py.File(out, "r") as fh:
        bg = fh["background"]["network_snr"][()]
        slides = fh["background"]["slide"][()]
    assert set(slides.tolist()) <= set(range(1, 6))
    trig = _triggers(out)
    assert bg.size and bg.max() < trig["network_snr"].max()
    summary = bench_mf.mf_to_archive(out, tmp_path / "arch.h5", tmp_path / "bg.h5")
    from gwstream.daemon.io.archive import read_triggers
    from gwstream.daemon.stream.background import Background

    cols, attrs = read_triggers(tmp_path / "arch.h5")
    b = Background.load(tmp_path / "bg.h5")
    assert summary["n_background"] == bg.size and b.livetime_s == pytest.approx(s["background_livetime_s"])
    loudest = int(np.argmax(cols["stat"]))
    assert cols["far"][loudest] == pytest.approx(1.0 / b.livetime_s) and cols["saturated"][loudest]


def test_gates_from_the_search_zero_the_strain_where_it_gated(data, bank, tmp_path):
    row = read_injection_file(data / "inj-table.hdf")
    tc = float(row["tc"][0])
    out = tmp_path / "gated.h5"
    s = bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=out, threads=1, gates=[("H1", tc), ("L1", tc)])
    assert s["n_gates"] == 2
    trig = _triggers(out)
    assert not (np.abs(trig["gps"] - tc) < 0.04).any() or trig["network_snr"].max() < 8


def _with_blips(src: Path, out: Path, t_s: float, snr: float) -> float:
    """``src`` with a sine-Gaussian blip (150 Hz, Q 6) of optimal SNR ``snr`` at ``t_s`` in both detectors:
    a coincident glitch pair, as a time slide would line up. Returns the blips' GPS time."""
    from gwstream.daemon.sim.glitches import Glitch, optimal_snr, unit_waveform
    from pycbc.psd import aLIGOZeroDetHighPower

    g = Glitch("H1", "blip", t_s, snr, 150.0, 6.0, 0.0, 0.3, 0.1, (0, 0, 0, 0))
    t = np.arange(-0.1, 0.1, 1.0 / FS)
    h = unit_waveform(g, t)

    def psd_fn(delta_f):
        p = aLIGOZeroDetHighPower(FS // 2 * int(round(1 / delta_f)) + 1, delta_f, 10.0).numpy()
        return np.arange(p.size) * delta_f, p

    h *= snr / optimal_snr(h, FS, psd_fn, 20.0)
    i0 = int(round(t_s * FS)) - t.size // 2
    with h5py.File(src, "r") as fi, h5py.File(out, "w") as fo:
        for ifo in ("H1", "L1"):
            for name, d in fi[ifo].items():
                x = d[()].copy()
                x[i0:i0 + t.size] += h
                fo.require_group(ifo).create_dataset(name, data=x).attrs.update(dict(d.attrs))
                gps = float(d.attrs["start_time"]) + t_s
    return gps


def test_chisq_ranks_a_blip_pair_down_and_a_signal_as_it_is(data, bank, tmp_path):
    """PyCBC's power chi-squared: a loud coincident blip pair, the louder coincidence without the test, is
    ranked far below its SNR with it; the injection, matched by its own template, keeps its SNR."""
    glitchy = tmp_path / "blips.hdf"
    gps = _with_blips(data / "noise.hdf", glitchy, 40.0, 40.0)
    near = {}
    for bins in (0, 16):
        s = bench_mf.run_mf_search(glitchy, bank=bank, out=tmp_path / f"b{bins}.h5", threads=1, chisq_bins=bins)
        assert s["chisq_bins"] == bins
        with h5py.File(tmp_path / f"b{bins}.h5", "r") as fh:
            trig = {k: fh[k][()] for k in ("gps", "network_snr", "statistic", "chisq_h1", "chisq_l1")}
        i = np.flatnonzero(np.abs(trig["gps"] - gps) < 0.5)
        assert i.size == 1, trig
        near[bins] = {k: v[i[0]] for k, v in trig.items()}
    assert near[0]["network_snr"] > 15 and near[0]["statistic"] == near[0]["network_snr"]
    assert near[0]["chisq_h1"] == 0 and near[0]["chisq_l1"] == 0
    blip = near[16]
    assert blip["network_snr"] == pytest.approx(near[0]["network_snr"])
    assert blip["chisq_h1"] > 10 and blip["chisq_l1"] > 10 and blip["statistic"] < 0.5 * blip["network_snr"], blip

    bench_mf.run_mf_search(data / "inj.hdf", bank=bank, out=tmp_path / "inj.h5", threads=1, chisq_bins=16)
    row = read_injection_file(data / "inj-table.hdf")
    with h5py.File(tmp_path / "inj.h5", "r") as fh:
        trig = {k: fh[k][()] for k in ("gps", "network_snr", "statistic", "chisq_h1", "chisq_l1")}
    k = int(np.argmax(trig["statistic"]))
    assert abs(trig["gps"][k] - float(row["tc"][0])) < 0.04
    assert trig["chisq_h1"][k] < 2.5 and trig["chisq_l1"][k] < 2.5, trig
    assert trig["statistic"][k] >= 0.9 * trig["network_snr"][k]


def test_power_chisq_of_a_matching_template_is_zero_and_bins_hold_equal_power():
    rng = np.random.default_rng(1)
    density = rng.random(1000) + 0.5
    edges = bench_mf._chisq_bin_edges(density, 8)
    power = np.add.reduceat(density, edges)
    assert edges[0] == 0 and np.all(np.diff(edges) > 0) and power == pytest.approx(density.sum() / 8, rel=0.01)
    # data equal to the template (a pure, real-valued filter output at n = 0): every bin holds z / p exactly
    chisq, z = bench_mf.power_chisq(density.astype(np.complex64), 0, 20, 4096, edges, 1.0)
    assert chisq < 1e-3 * z ** 2
    np.testing.assert_allclose(bench_mf.reweighted_snr([10.0, 10.0, 10.0], [0.5, 1.0, 8.0]),
                               [10.0, 10.0, 10.0 / ((1 + 512) / 2) ** (1 / 6)])
    with pytest.raises(ValueError, match="chisq_bins"):
        bench_mf.run_mf_search("unused.hdf", bank=TemplateBank.from_params([30.0], [25.0], sample_rate_hz=FS),
                               out="unused.h5", chisq_bins=1)
