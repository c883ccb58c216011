"""Glitches in simulated data: file round trip, chunk invariance, SNR calibration, rates, PSD variation,
and the ``glitch`` section of ``gwstream evaluate``."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from gwstream.daemon.cli import main
from gwstream.daemon.config import config_from_dict
from gwstream.daemon.errors import ConfigError, FrameFileError
from gwstream.daemon.io.framefiles import (
    GLITCH_COLUMNS,
    GLITCH_KINDS,
    read_glitch_file,
    write_glitch_file,
    write_injection_file,
)
from gwstream.daemon.sim.glitches import GLITCH_BLOCK_S, PSD_RAMP_S, SegmentedNoise
from gwstream.daemon.sim.noise import ColoredNoise
from gwstream.daemon.sim.simulate import Simulator

FS = 2048
#: Poisson counts: 5 sigma either side (chance of a false failure ~ 1e-6 per count).
N_SIGMA = 5.0
#: Signal-only data: pycbc's sigma of the written glitch vs the SNR it was drawn with. Both are
#: sums of |h(f)|^2 / S(f) over the same sampled waveform, on different frequency grids (1-4 s
#: zero-padding here vs 8 s there); observed < 1e-5.
SNR_RTOL = 0.01


def glitch_config(ifos=("H1", "L1"), **glitches):
    return config_from_dict({"simulate": {"sample_rate_hz": FS, "chunk_s": 16, "ifos": list(ifos),
                                          "glitches": glitches}}).simulate


def assert_tables_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b) == set(GLITCH_COLUMNS)
    for key in GLITCH_COLUMNS:
        if a[key].dtype.kind == "f":
            assert np.array_equal(a[key], b[key], equal_nan=True), key
        else:
            assert list(a[key]) == list(b[key]), key


# --------------------------------------------------------------------------- glitch file


def test_glitch_file_round_trip_and_errors(tmp_path):
    cfg = glitch_config(blip_rate_per_hour=600, scatter_rate_per_hour=300, loud_rate_per_hour=300)
    table = Simulator(cfg, seed=4, duration_s=120, injections=False, noise=False).glitch_table()
    assert set(table["kind"]) == set(GLITCH_KINDS) and set(table["ifo"]) == {"H1", "L1"}
    path = tmp_path / "glitches.hdf"
    write_glitch_file(path, table, attrs={"duration_s": 120.0})
    back = read_glitch_file(path)
    assert_tables_equal(back, table)
    with h5py.File(path) as fh:
        assert fh.attrs["format"] == "gwstream-glitches-1" and fh.attrs["n_glitches"] == len(table["time"])
    assert [p.name for p in tmp_path.iterdir()] == ["glitches.hdf"]

    with pytest.raises(FrameFileError, match="missing.hdf.*no such file"):
        read_glitch_file(tmp_path / "missing.hdf")
    bad = tmp_path / "bad.hdf"
    with h5py.File(bad, "w") as fh:  # no 'kind' column
        for key in GLITCH_COLUMNS:
            if key != "kind":
                fh.create_dataset(key, data=np.asarray(table[key]).astype("S") if key == "ifo" else table[key])
    with pytest.raises(FrameFileError, match=r"bad.hdf.*\['kind'\] missing"):
        read_glitch_file(bad)
    with h5py.File(bad, "a") as fh:
        fh.create_dataset("kind", data=np.array(["blip"] * (len(table["time"]) - 1) + ["whistle"], dtype="S"))
    with pytest.raises(FrameFileError, match=r"bad.hdf.*'kind' holds \['whistle'\]"):
        read_glitch_file(bad)
    with pytest.raises(ValueError, match=r"x.hdf.*column 'snr' row 0"):
        write_glitch_file(tmp_path / "x.hdf", {**table, "snr": -table["snr"]})
    with pytest.raises(ValueError, match=r"x.hdf.*'duration_s'.*missing"):
        write_glitch_file(tmp_path / "x.hdf", {k: v for k, v in table.items() if k != "duration_s"})
    assert not (tmp_path / "x.hdf").exists()


def test_simulate_cli_writes_the_glitch_file(tmp_path, capsys):
    toml = tmp_path / "glitchy.toml"
    toml.write_text("[simulate]\nchunk_s = 4\n[simulate.glitches]\nblip_rate_per_hour = 1800\n"
                    "loud_rate_per_hour = 900\n")
    assert main(["simulate", "--config", str(toml), "--duration", "8", "--seed", "3", "--out",
                 str(tmp_path / "d.hdf"), "--glitches", str(tmp_path / "g.hdf"), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    back = read_glitch_file(tmp_path / "g.hdf")
    assert summary["n_glitches"] == len(back["time"]) > 0 and str(tmp_path / "g.hdf") in summary["files"]
    cfg = config_from_dict({"simulate": {"chunk_s": 4, "glitches": {"blip_rate_per_hour": 1800,
                                                                     "loud_rate_per_hour": 900}}}).simulate
    sim = Simulator(cfg, seed=3, duration_s=8, injections=False)
    assert_tables_equal(back, sim.glitch_table())
    with h5py.File(tmp_path / "d.hdf") as fh, h5py.File(tmp_path / "g.hdf") as gh:
        assert np.array_equal(fh[f"H1/{cfg.start_gps}"][()], sim.chunk(0, 8)["H1"])
        assert gh.attrs["ifos"] == "H1,L1" and gh.attrs["blip_rate_per_hour"] == 1800.0


# --------------------------------------------------------------------------- strain


def test_glitches_chunk_invariant_and_off_by_default():
    cfg = glitch_config(blip_rate_per_hour=3600, scatter_rate_per_hour=900, loud_rate_per_hour=900,
                        psd_variation=0.3, psd_segment_s=16)
    one = Simulator(cfg, seed=11, duration_s=40, injections=False).chunk(0, 40)
    table = Simulator(cfg, seed=11, duration_s=40, injections=False).glitch_table()
    t = table["time"] - cfg.start_gps
    straddle = [c for c in range(7, 40, 7) if np.any(np.abs(t - c) < table["duration_s"] / 2)]
    assert straddle, "no glitch straddles a 7-s chunk boundary: the test proves less than it claims"
    for chunk_s in (16, 7):
        chunks = list(Simulator(cfg, seed=11, duration_s=40, injections=False).iter_chunks(chunk_s=chunk_s))
        for ifo in cfg.ifos:
            assert np.array_equal(np.concatenate([c[ifo] for _, c in chunks]), one[ifo])
    sim = Simulator(cfg, seed=11, duration_s=40, injections=False)
    part = sim.chunk(13, 9)  # random access mid-way
    assert np.array_equal(part["L1"], one["L1"][13 * FS:22 * FS])
    endless = Simulator(cfg, seed=11, duration_s=None, injections=False)
    assert np.array_equal(endless.chunk(0, 40)["H1"], one["H1"])
    assert_tables_equal(endless.glitch_table(0, 40), table)
    # glitches are there, and the seed's noise underneath is unchanged when they are switched off
    plain = Simulator(glitch_config(), seed=11, duration_s=40, injections=False)
    assert plain.glitcher is None and all(type(n) is ColoredNoise for n in plain.noise.values())
    assert plain.glitch_table()["time"].size == 0
    assert not np.allclose(plain.chunk(0, 40)["H1"], one["H1"], rtol=1e-3, atol=0)


@pytest.mark.parametrize("kind", GLITCH_KINDS)
def test_glitch_snr_calibrated_against_the_psd(kind):
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries, TimeSeries

    cfg = glitch_config(ifos=("H1",), **{f"{kind}_rate_per_hour": 400})
    sim = Simulator(cfg, seed=2, duration_s=96, injections=False, noise=False)
    table, data = sim.glitch_table(), sim.chunk(0, 96)["H1"]
    t = table["time"] - cfg.start_gps
    n_fft = 8 * FS
    _, psd = sim.psd(FS / n_fft)
    checked = 0
    for i, t0 in enumerate(t):
        if np.sum(np.abs(t - t0) < 6.0) > 1 or not 3.0 < t0 < 93.0:
            continue  # neighbours within the cut-out
        buf = np.zeros(n_fft)
        buf[:6 * FS] = data[int(t0 * FS) - 3 * FS:int(t0 * FS) + 3 * FS]
        rho = sigma(TimeSeries(buf, delta_t=1.0 / FS), FrequencySeries(psd, delta_f=FS / n_fft),
                    low_frequency_cutoff=cfg.low_frequency_hz)
        assert rho == pytest.approx(table["snr"][i], rel=SNR_RTOL), (kind, t0, table["f0_hz"][i])
        checked += 1
    assert checked >= 2


def test_glitch_rates_and_distributions_from_the_table():
    rates = {"blip": 60.0, "scatter": 30.0, "loud": 10.0}
    hours = 8
    cfg = glitch_config(blip_rate_per_hour=rates["blip"], scatter_rate_per_hour=rates["scatter"],
                        loud_rate_per_hour=rates["loud"])
    sim = Simulator(cfg, seed=7, duration_s=hours * 3600, injections=False, noise=False)
    table = sim.glitch_table()
    assert np.all(np.diff(table["time"]) >= 0)
    g = cfg.glitches
    for ifo in cfg.ifos:
        for kind, rate in rates.items():
            sel = (table["ifo"] == ifo) & (table["kind"] == kind)
            expected = rate * hours
            assert abs(sel.sum() - expected) <= N_SIGMA * math.sqrt(expected), (ifo, kind, sel.sum())
            lo, hi = g.loud_snr if kind == "loud" else g.snr
            snr = table["snr"][sel]
            assert np.all((snr >= lo) & (snr <= hi))
            # log-uniform: half below the geometric mean of the range
            below = np.mean(snr < math.sqrt(lo * hi))
            assert abs(below - 0.5) <= N_SIGMA * 0.5 / math.sqrt(sel.sum()), (kind, below)
    blip = table["kind"] == "blip"
    assert np.all((table["q"][blip] >= 2) & (table["q"][blip] <= 20))
    assert np.all((table["f0_hz"][blip] >= 30) & (table["f0_hz"][blip] <= 500))
    scatter = table["kind"] == "scatter"
    assert np.all(np.isnan(table["q"][scatter]))
    assert np.all((table["duration_s"][scatter] >= 1.5) & (table["duration_s"][scatter] <= 5))
    loud = table["kind"] == "loud"
    assert np.all(table["duration_s"][loud] < 0.005)  # ms-long
    # detectors draw independently; the table of a span does not depend on how it is asked for
    assert not np.array_equal(table["time"][table["ifo"] == "H1"][:5], table["time"][table["ifo"] == "L1"][:5])
    split = [sim.glitch_table(a, b) for a, b in ((0, 1000.5), (1000.5, GLITCH_BLOCK_S + 3), (GLITCH_BLOCK_S + 3,
                                                                                              hours * 3600))]
    assert_tables_equal({k: np.concatenate([s[k] for s in split]) for k in GLITCH_COLUMNS}, table)


def test_psd_variation_is_smooth_and_reduces_to_the_stationary_noise():
    base = Simulator(glitch_config(), seed=5, duration_s=48, injections=False).noise["H1"]
    cfg = glitch_config(psd_variation=1e-12, psd_segment_s=16)
    tiny = Simulator(cfg, seed=5, duration_s=48, injections=False).noise["H1"]
    assert isinstance(tiny, SegmentedNoise)
    x, y = tiny.generate(0, 48 * FS), base.generate(0, 48 * FS)
    assert np.max(np.abs(x - y)) < 1e-9 * np.std(y)  # the bands add up to the stationary noise
    noise = Simulator(glitch_config(psd_variation=0.5, psd_segment_s=32), seed=5, duration_s=96,
                      injections=False).noise["H1"]
    gain = noise.gain_curve(0, 96 * FS)
    for k in range(3):  # flat at the segment's factors away from the edges
        mid = int((k * 32 + 16) * FS)
        assert np.array_equal(gain[:, mid], noise.gains(k))
    step = np.max(np.abs(np.diff(gain, axis=1)))
    jump = np.max(np.abs(noise.gains(1) - noise.gains(0)))
    assert jump > 0.1 and step < 2.0 * jump * np.pi / (2.0 * PSD_RAMP_S * FS)  # raised-cosine slope, no jumps


def test_glitch_config_checks():
    for glitches, key in (({"blip_q": [20.0, 2.0]}, "blip_q"),
                          ({"blip_f0_hz": [30.0, 1500.0]}, "blip_f0_hz"),
                          ({"psd_variation": 0.1}, "psd_segment_s"),
                          ({"scatter_rate_per_hour": 1.0, "scatter_f_max_hz": [5.0, 60.0]}, "scatter_f_max_hz"),
                          ({"blip_rate_per_hour": -1.0}, "blip_rate_per_hour")):
        with pytest.raises(ConfigError, match=f"simulate.glitches.{key}"):
            glitch_config(**glitches)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_glitch_section(tmp_path, capsys):
    t0 = 1_000_000_000.0
    day = 86400.0
    glitches = {
        "ifo": np.array(["H1", "L1", "H1", "L1", "H1"]),
        "time": t0 + np.array([100.0, 200.0, 300.0, 400.0, 5000.0]),
        "kind": np.array(["blip", "scatter", "loud", "blip", "scatter"]),
        "snr": np.array([20.0, 30.0, 1000.0, 8.0, 50.0]),
        "f0_hz": np.array([100.0, 40.0, 200.0, 60.0, 30.0]),
        "q": np.array([5.0, np.nan, 1.0, 10.0, np.nan]),
        "duration_s": np.array([0.02, 4.0, 0.004, 0.1, 2.0]),
    }
    write_glitch_file(tmp_path / "g.hdf", glitches, attrs={"ifos": "H1,L1"})
    tc = t0 + np.array([50.0, 200.5, 700.0])
    write_injection_file(tmp_path / "inj.hdf", {"tc": tc, "distance": np.full(3, 200.0), "mchirp": np.full(3, 20.0),
                                                "mass1": np.full(3, 23.0), "mass2": np.full(3, 23.0)},
                         attrs={"distance": "chirp_uniform_volume"})
    # trigger: time, stat, var. FAR per day = (n_background >= stat + 1) / 60 (60 days of background)
    triggers = [
        (50.05, 10.0, 0.1),    # injection only
        (100.05, 8.0, 0.1),    # H1 blip: 4 / 60 per day
        (200.6, 16.0, 0.2),    # L1 scatter and an injection: 1 / 60
        (202.3, 3.0, 0.2),     # 2.3 s from the scatter > 0.2 + 4 / 2: not on it
        (300.0, 20.0, 0.1),    # H1 loud: 1 / 60
        (400.0, 0.1, 0.1),     # L1 blip: 68 / 60 per day
        (700.0, 9.0, 0.1),     # injection only
    ]
    with h5py.File(tmp_path / "fg.hdf", "w") as f:
        f.create_dataset("time", data=t0 + np.array([r[0] for r in triggers]))
        f.create_dataset("stat", data=np.array([r[1] for r in triggers]))
        f.create_dataset("var", data=np.array([r[2] for r in triggers]))
        f.create_dataset("segments", data=np.array([[t0, t0 + 1000.0]]))
        f.attrs["livetime_s"] = 1000.0
    with h5py.File(tmp_path / "bg.hdf", "w") as f:
        bg = np.r_[np.full(60, 0.5), [2.0, 4.0, 6.0, 7.0, 9.5, 11.0, 15.0]]
        f.create_dataset("time", data=t0 + np.arange(bg.size, dtype=float))
        f.create_dataset("stat", data=bg)
        f.create_dataset("var", data=np.full(bg.size, 0.1))
        f.attrs["livetime_s"] = 60 * day
    assert main(["evaluate", "--injections", str(tmp_path / "inj.hdf"), "--foreground", str(tmp_path / "fg.hdf"),
                 "--background", str(tmp_path / "bg.hdf"), "--out", str(tmp_path / "out"),
                 "--glitches", str(tmp_path / "g.hdf")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["glitch"] == {"n_triggers": 4, "n_with_injection": 1, "n_far_le_1_per_day_without_injection": 2}
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["glitch"]
    assert s["file"] == str(tmp_path / "g.hdf") and s["n_foreground_triggers"] == 7
    assert s["n_glitches"] == {"H1": {"blip": 1, "scatter": 1, "loud": 1}, "L1": {"blip": 1, "scatter": 1, "loud": 0}}
    assert s["n_glitches_analysed"]["H1"] == {"blip": 1, "scatter": 0, "loud": 1}
    c = s["coincident"]
    assert c["any"]["far_per_day"] == pytest.approx([1 / 60, 1 / 60, 4 / 60, 68 / 60])
    assert c["any"]["far_per_day_quantiles"]["max"] == pytest.approx(68 / 60)
    counts = ("n_triggers", "n_with_injection", "n_without_injection", "n_far_le_1_per_day", "n_far_le_1_per_month",
              "n_far_le_1_per_day_without_injection", "n_far_le_1_per_month_without_injection")
    expected = {"any": (4, 1, 3, 3, 2, 2, 1), "blip": (2, 0, 2, 1, 0, 1, 0), "scatter": (1, 1, 0, 1, 1, 0, 0),
                "loud": (1, 0, 1, 1, 1, 1, 1)}
    for kind, values in expected.items():
        assert tuple(c[kind][k] for k in counts) == values, kind
    # without --glitches: no section
    assert main(["evaluate", "--injections", str(tmp_path / "inj.hdf"), "--foreground", str(tmp_path / "fg.hdf"),
                 "--background", str(tmp_path / "bg.hdf"), "--out", str(tmp_path / "out2")]) == 0
    assert "glitch" not in json.loads((tmp_path / "out2" / "summary.json").read_text())
