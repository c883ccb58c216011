"""Simulated data: noise PSD, determinism, injections and their SNR, written files.

Tolerances live in one block below, each justified from the statistics it bounds.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from gwstream.daemon.config import config_from_dict
from gwstream.daemon.errors import ConfigError, FrameFileError
from gwstream.daemon.io.framefiles import (
    iter_hdf5_segments,
    read_gwf_frame,
    read_injection_file,
    write_injection_file,
)
from gwstream.daemon.sim.injections import MCHIRP_REF_MSUN, chirp_mass, draw_parameters
from gwstream.daemon.sim.noise import ColoredNoise, load_psd
from gwstream.daemon.sim.simulate import NOISE_FIR_S, STATE_RATE_HZ, Simulator, run_simulate
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import welch

# --------------------------------------------------------------------------- tolerances
FS = 2048
#: Welch set-up of the PSD test: mean of Hann-windowed 4-s segments, 50 % overlap, 512 s.
WELCH_SEG_S, WELCH_DATA_S = 4, 512
#: Ratios estimate/target are averaged over bands of this many Welch bins (4 Hz).
BAND_BINS = 16
#: Relative standard deviation of one band average. One Welch bin averages
#: N = 255 segments whose 50 %-overlapped Hann windows correlate with
#: rho^2 = 0.0278, so var = (1 + 2 rho^2) / N (Percival & Walden 1993, eq. 292b):
#: sigma_bin = 0.064. Hann makes neighbouring bins correlate (periodogram
#: correlation 4/9 at lag 1, 1/36 at lag 2), so a mean of m bins has
#: var = sigma_bin^2 (1 + 2*4/9 + 2/36) / m: sigma_band = 0.022 for m = 16.
_N_SEG = (WELCH_DATA_S - WELCH_SEG_S) // (WELCH_SEG_S // 2) + 1
SIGMA_BAND = math.sqrt((1 + 2 * 0.0278) / _N_SEG) * math.sqrt((1 + 8 / 9 + 2 / 36) / BAND_BINS)
#: 5 sigma over ~245 bands: chance of a false failure ~1e-4 for an arbitrary seed.
PSD_BAND_RTOL = 5 * SIGMA_BAND
#: The FIR's exact realised PSD (|FFT(fir)|^2 2/fs) vs the requested one, 20-1000 Hz:
#: the Hann window smooths the response over 1/16 Hz only (observed 4e-5).
PSD_FIR_RTOL = 1e-3
#: Signal-only data: matched-filter SNR vs recorded optimal SNR. Differences come
#: from the waveform cut/taper (< 1e-4 of SNR) and from the SNR integral being
#: evaluated on different frequency grids (data length vs injection buffer);
#: observed <= 7e-4 for IMRPhenomD and XPHM.
SNR_NOISEFREE_RTOL = 0.005
#: Noisy data: rho_mf = |rho_opt + n| with n complex unit Gaussian, so
#: rho_mf - rho_opt ~ N(0, 1) to O(1/rho); 4 sigma per detector.
SNR_NOISY_ATOL = 4.0
F_BAND = (20.0, 1000.0)


def sim_config(**injections):
    """A validated SimulateConfig at 2048 Hz with fast IMRPhenomD injections unless overridden."""
    inj = {
        "approximant": "IMRPhenomD", "mass1_msun": [20.0, 40.0], "mass2_msun": [20.0, 40.0],
        "snr": [15.0, 30.0], "spacing_s": 12.0, "jitter_s": 1.0,
    }
    inj.update(injections)
    return config_from_dict({"simulate": {"sample_rate_hz": FS, "chunk_s": 16, "injections": inj}}).simulate


@pytest.fixture(scope="module")
def psd_grid():
    return load_psd(sample_rate_hz=FS, delta_f_hz=1.0 / NOISE_FIR_S, low_frequency_hz=10.0)


# --------------------------------------------------------------------------- load_psd


def test_load_psd_analytic_is_zero_below_low_frequency(psd_grid):
    freqs, psd = psd_grid
    assert freqs[0] == 0 and freqs[-1] == FS / 2 and np.allclose(np.diff(freqs), 1 / NOISE_FIR_S)
    assert np.all(psd[freqs < 10.0] == 0)
    assert np.all(psd[freqs >= 10.0] > 0)


def test_load_psd_unknown_name_is_config_error():
    with pytest.raises(ConfigError, match="pycbc analytic PSD name"):
        load_psd("NotAPsd", sample_rate_hz=FS, delta_f_hz=0.25, low_frequency_hz=10.0)


@pytest.mark.parametrize("is_asd", [False, True])
def test_load_psd_from_file_matches_analytic(tmp_path, psd_grid, is_asd):
    freqs, psd = psd_grid
    keep = freqs >= 5.0
    path = tmp_path / "psd.txt"
    np.savetxt(path, np.column_stack([freqs[keep], np.sqrt(psd[keep]) if is_asd else psd[keep]]))
    f2, p2 = load_psd(path=str(path), is_asd=is_asd, sample_rate_hz=FS, delta_f_hz=0.25, low_frequency_hz=10.0)
    target = np.interp(f2, freqs, psd)
    band = (f2 >= 20) & (f2 <= 1000)
    np.testing.assert_allclose(p2[band], target[band], rtol=1e-3)
    assert np.all(p2[f2 < 10] == 0)


def test_load_psd_missing_or_garbled_file(tmp_path):
    with pytest.raises(FrameFileError, match="nope.txt"):
        load_psd(path=str(tmp_path / "nope.txt"), sample_rate_hz=FS, delta_f_hz=0.25, low_frequency_hz=10.0)
    bad = tmp_path / "bad.txt"
    bad.write_text("frequency psd\n1 two\n")
    with pytest.raises(FrameFileError, match="bad.txt"):
        load_psd(path=str(bad), sample_rate_hz=FS, delta_f_hz=0.25, low_frequency_hz=10.0)


# --------------------------------------------------------------------------- noise


def test_noise_fir_realises_requested_psd(psd_grid):
    noise = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=1)
    f, realised = noise.realised_psd()
    band = (f >= F_BAND[0]) & (f <= F_BAND[1])
    target = np.interp(f[band], *psd_grid)
    assert np.max(np.abs(realised[band] / target - 1)) < PSD_FIR_RTOL


def test_noise_welch_psd_matches_requested(psd_grid):
    noise = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=2024)
    x = noise.generate(0, WELCH_DATA_S * FS)
    f, pxx = welch(x, fs=FS, nperseg=WELCH_SEG_S * FS, window="hann", average="mean")
    band = (f >= F_BAND[0]) & (f < F_BAND[1])
    ratio = pxx[band] / np.interp(f[band], *psd_grid)
    n_bands = ratio.size // BAND_BINS
    bands = ratio[: n_bands * BAND_BINS].reshape(n_bands, BAND_BINS).mean(axis=1)
    worst = np.max(np.abs(bands - 1))
    assert worst < PSD_BAND_RTOL, f"max band deviation {worst:.3f} > {PSD_BAND_RTOL:.3f}"
    # the scatter itself is what the tolerance assumes (not over-smoothed, not too noisy)
    assert 0.7 * SIGMA_BAND < np.std(bands) < 1.3 * SIGMA_BAND


def test_noise_random_access_is_bit_identical(psd_grid):
    noise = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=7)
    n = 3 * noise.block_samples + 123
    whole = noise.generate(0, 2 * n)
    fresh = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=7)
    assert np.array_equal(whole, np.concatenate([fresh.generate(0, n), fresh.generate(n, n)]))
    backwards = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=7)
    assert np.array_equal(whole[n:], backwards.generate(n, n))
    assert np.array_equal(whole[5:17], backwards.generate(5, 12))
    other = ColoredNoise(*psd_grid, sample_rate_hz=FS, seed=8).generate(0, 1000)
    assert not np.allclose(other, whole[:1000], rtol=1e-3, atol=0)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=6), start=st.integers(-500, 500))
def test_noise_any_chunking_is_bit_identical(cuts, start):
    freqs = np.linspace(0, 128, 65)
    psd = np.where(freqs >= 8, 1.0 / (1 + freqs / 20) ** 2, 0.0)
    ref = ColoredNoise(freqs, psd, sample_rate_hz=256, seed=3, fir_duration_s=1.0).generate(start, 3000)
    noise = ColoredNoise(freqs, psd, sample_rate_hz=256, seed=3, fir_duration_s=1.0)
    edges = [0, *sorted(cuts), 3000]
    parts = [noise.generate(start + a, b - a) for a, b in zip(edges[:-1], edges[1:])]
    assert np.array_equal(np.concatenate(parts), ref)


# --------------------------------------------------------------------------- injections


def test_injection_parameters_follow_config():
    cfg = sim_config(snr=[], distance="chirp_uniform_volume", distance_mpc=[100.0, 300.0],
                     mass1_msun=[10.0, 50.0], mass2_msun=[10.0, 50.0]).injections
    rows = [draw_parameters(cfg, 11, k, 1000) for k in range(300)]
    m1 = np.array([r["mass1"] for r in rows])
    m2 = np.array([r["mass2"] for r in rows])
    assert np.all(m2 <= m1) and m1.min() >= 10 and m1.max() <= 50 and m2.min() >= 10
    dc = np.array([r["chirp_distance"] for r in rows])
    d = np.array([r["distance"] for r in rows])
    assert np.all((dc >= 100) & (dc <= 300))
    np.testing.assert_allclose(d, dc * (chirp_mass(m1, m2) / MCHIRP_REF_MSUN) ** (5 / 6), rtol=1e-12)
    tc = np.array([r["tc_offset"] for r in rows])
    assert np.all(np.abs(tc - (np.arange(300) + 0.5) * cfg.spacing_s) <= cfg.jitter_s)
    spins = np.array([[r[f"spin{b}{c}"] for b in "12" for c in "xyz"] for r in rows])
    assert np.all(spins[:, [0, 1, 3, 4]] == 0) and np.all(np.abs(spins[:, [2, 5]]) <= cfg.spin_max)
    np.testing.assert_equal(draw_parameters(cfg, 11, 5, 1000), rows[5])
    assert draw_parameters(cfg, 12, 5, 1000)["mass1"] != rows[5]["mass1"]
    iso = sim_config(approximant="IMRPhenomXPHM", spin="isotropic", spin_max=0.5).injections
    mags = [math.hypot(r["spin1x"], r["spin1y"], r["spin1z"]) for r in
            (draw_parameters(iso, 1, k) for k in range(50))]
    assert max(mags) <= 0.5 and min(mags) >= 0


def test_log_uniform_masses_favour_light_binaries_over_the_same_range():
    uni = sim_config(mass1_msun=[7.0, 50.0], mass2_msun=[7.0, 50.0]).injections
    log = sim_config(mass1_msun=[7.0, 50.0], mass2_msun=[7.0, 50.0], mass_distribution="log_uniform").injections
    a = [draw_parameters(uni, 3, k) for k in range(2000)]
    b = [draw_parameters(log, 3, k) for k in range(2000)]
    mt = {name: np.array([r["mass1"] + r["mass2"] for r in rows]) for name, rows in (("uni", a), ("log", b))}
    assert mt["log"].min() >= 14 and mt["log"].max() <= 100
    assert np.mean(mt["log"] < 30) > 0.2 > 0.1 > np.mean(mt["uni"] < 30)
    # the same random numbers: only the masses change
    assert [r["ra"] for r in a] == [r["ra"] for r in b] and a[0]["mass1"] != b[0]["mass1"]
    with pytest.raises(ConfigError, match="one of"):
        sim_config(mass_distribution="powerlaw")


@pytest.fixture(scope="module")
def signal_only():
    """64 s of signal-only data with 5 IMRPhenomD injections, and the same with noise."""
    cfg = sim_config()
    clean = Simulator(cfg, seed=31, duration_s=64, injections=True, noise=False)
    noisy = Simulator(cfg, seed=31, duration_s=64, injections=True)
    return cfg, clean.chunk(0, 64), noisy.chunk(0, 64), clean.injection_table(), noisy.injection_table()


def independent_mf_snr(row: dict, ifo: str, data: np.ndarray, data_gps: float, approximant: str, psd_grid):
    """pycbc matched-filter SNR of ``data`` with a template built here from the recorded parameters."""
    from pycbc.detector import Detector
    from pycbc.filter import matched_filter
    from pycbc.psd import interpolate
    from pycbc.types import FrequencySeries, TimeSeries
    from pycbc.waveform import get_td_waveform

    hp, hc = get_td_waveform(
        approximant=approximant, mass1=row["mass1"], mass2=row["mass2"],
        spin1x=row["spin1x"], spin1y=row["spin1y"], spin1z=row["spin1z"],
        spin2x=row["spin2x"], spin2y=row["spin2y"], spin2z=row["spin2z"],
        distance=row["distance"], inclination=row["inclination"], coa_phase=row["coa_phase"],
        delta_t=1.0 / FS, f_lower=row["f_lower"],
    )
    det = Detector(ifo)
    fp, fc = det.antenna_pattern(row["ra"], row["dec"], row["polarization"], row["tc"])
    delay = det.time_delay_from_earth_center(row["ra"], row["dec"], row["tc"])
    h = (fp * hp.numpy() + fc * hc.numpy())
    where = (row["tc"] - data_gps + delay + float(hp.start_time)) * FS
    n0 = math.floor(where)
    template = np.zeros(data.size)
    a, b = max(0, n0), min(data.size, n0 + h.size)
    template[a:b] = h[a - n0:b - n0]
    template = TimeSeries(template, delta_t=1.0 / FS).cyclic_time_shift((where - n0) / FS)
    psd = interpolate(FrequencySeries(psd_grid[1], delta_f=psd_grid[0][1]), 1.0 / (data.size / FS))
    snr = matched_filter(template, TimeSeries(data, delta_t=1.0 / FS), psd=psd, low_frequency_cutoff=row["f_lower"])
    return abs(complex(snr[0]))


def rows_of(table):
    return [{k: v[i] for k, v in table.items()} for i in range(len(table["tc"]))]


def test_injection_snr_noise_free_matches_matched_filter(signal_only, psd_grid):
    cfg, clean, _, table, _ = signal_only
    assert len(table["tc"]) == 5
    lo, hi = cfg.injections.snr
    assert np.all((table["network_snr"] >= lo) & (table["network_snr"] <= hi))
    worst = 0.0
    for row in rows_of(table):
        for ifo in cfg.ifos:
            rho = independent_mf_snr(row, ifo, clean[ifo], cfg.start_gps, "IMRPhenomD", psd_grid)
            worst = max(worst, abs(rho / row[f"optimal_snr_{ifo}"] - 1))
        net = math.hypot(*(row[f"optimal_snr_{ifo}"] for ifo in cfg.ifos))
        assert net == pytest.approx(row["network_snr"], rel=1e-12)
    assert worst < SNR_NOISEFREE_RTOL, f"worst relative SNR difference {worst:.2e}"


def test_injection_snr_noisy_within_noise(signal_only, psd_grid):
    cfg, _, noisy, table, noisy_table = signal_only
    for key in table:
        assert np.array_equal(table[key], noisy_table[key]), key  # injections do not depend on noise
    diffs = []
    for row in rows_of(table):
        for ifo in cfg.ifos:
            rho = independent_mf_snr(row, ifo, noisy[ifo], cfg.start_gps, "IMRPhenomD", psd_grid)
            diffs.append(rho - row[f"optimal_snr_{ifo}"])
    assert np.max(np.abs(diffs)) < SNR_NOISY_ATOL, diffs


def test_injection_snr_xphm_precessing(psd_grid):
    cfg = sim_config(approximant="IMRPhenomXPHM", spin="isotropic", mass1_msun=[30.0, 40.0],
                     mass2_msun=[25.0, 35.0], spacing_s=16.0, snr=[20.0, 20.0])
    sim = Simulator(cfg, seed=4, duration_s=16, injections=True, noise=False)
    data = sim.chunk(0, 16)
    (row,) = rows_of(sim.injection_table())
    assert row["approximant"] == "IMRPhenomXPHM" and row["network_snr"] == pytest.approx(20.0, rel=1e-12)
    assert math.hypot(row["spin1x"], row["spin1y"]) > 0
    for ifo in cfg.ifos:
        rho = independent_mf_snr(row, ifo, data[ifo], cfg.start_gps, "IMRPhenomXPHM", psd_grid)
        assert rho == pytest.approx(row[f"optimal_snr_{ifo}"], rel=SNR_NOISEFREE_RTOL)


def test_injection_file_round_trip(tmp_path, signal_only):
    table = signal_only[3]
    path = tmp_path / "inj.hdf"
    write_injection_file(path, table)
    back = read_injection_file(path)
    assert set(back) == set(table)
    for key in table:
        assert np.array_equal(back[key], table[key]), key
    with h5py.File(path) as fh:
        assert fh.attrs["approximant"] == "IMRPhenomD" and fh.attrs["ifos"] == "H1,L1"
    assert [p.name for p in tmp_path.iterdir()] == ["inj.hdf"]
    with pytest.raises(FrameFileError, match="missing.hdf"):
        read_injection_file(tmp_path / "missing.hdf")


# --------------------------------------------------------------------------- simulator


def test_simulator_deterministic_and_chunk_invariant():
    cfg = sim_config(spacing_s=6.0, jitter_s=0.5)
    one = Simulator(cfg, seed=9, duration_s=40, injections=True).chunk(0, 40)
    for chunk_s in (16, 7):
        sim = Simulator(cfg, seed=9, duration_s=40, injections=True)
        chunks = list(sim.iter_chunks(chunk_s=chunk_s))
        assert [g for g, _ in chunks] == list(range(cfg.start_gps, cfg.start_gps + 40, chunk_s))
        for ifo in cfg.ifos:
            assert np.array_equal(np.concatenate([c[ifo] for _, c in chunks]), one[ifo])
    endless = Simulator(cfg, seed=9, duration_s=None, injections=True)
    stream = endless.iter_chunks(chunk_s=5)
    got = {ifo: [] for ifo in cfg.ifos}
    for _ in range(8):
        _, c = next(stream)
        for ifo in cfg.ifos:
            got[ifo].append(c[ifo])
    for ifo in cfg.ifos:
        assert np.array_equal(np.concatenate(got[ifo]), one[ifo])  # a finite run is a prefix
    other = Simulator(cfg, seed=10, duration_s=40, injections=True).chunk(0, 40)
    assert not np.allclose(other["H1"], one["H1"], rtol=1e-3, atol=0)
    assert not np.allclose(one["H1"], one["L1"], rtol=1e-3, atol=0)
    short = Simulator(cfg, seed=9, duration_s=20, injections=True).injection_table()
    full = Simulator(cfg, seed=9, duration_s=40, injections=True).injection_table()
    assert np.array_equal(short["tc"], full["tc"][: len(short["tc"])])
    assert np.array_equal(short["network_snr"], full["network_snr"][: len(short["tc"])])


def test_simulator_state_vector_and_checks():
    cfg = sim_config()
    sim = Simulator(cfg, seed=0, duration_s=8, injections=False)
    words = sim.state_vector(3)
    assert words.dtype == np.uint32 and words.size == 3 * STATE_RATE_HZ and np.all(words == cfg.state_word)
    with pytest.raises(ValueError, match="past the end"):
        sim.chunk(4, 8)
    with pytest.raises(ValueError, match="endless"):
        Simulator(cfg, seed=0, duration_s=None, injections=True).injection_table()
    assert sim.injection_table()["tc"].size == 0


# --------------------------------------------------------------------------- run_simulate


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cfg = sim_config(spacing_s=4.0, jitter_s=0.5)
    root = tmp_path_factory.mktemp("sim")
    kw = dict(duration_s=8, seed=123, progress=False)
    hdf = run_simulate(cfg, out=str(root / "data.hdf5"), fmt="hdf5", injections_path=str(root / "inj_h.hdf"), **kw)
    gwf = run_simulate(cfg, out=str(root / "frames"), fmt="gwf", injections_path=str(root / "inj_g.hdf"), **kw)
    return cfg, root, hdf, gwf


def test_run_simulate_hdf5_layout(written):
    cfg, root, hdf, _ = written
    assert hdf["n_injections"] == 2 and str(root / "data.hdf5") in hdf["files"]
    with h5py.File(root / "data.hdf5") as fh:
        assert sorted(fh) == ["H1", "L1"]
        dset = fh["H1"][str(cfg.start_gps)]
        assert dset.attrs["start_time"] == cfg.start_gps and dset.attrs["delta_t"] == 1.0 / FS
        assert dset.shape == (8 * FS,) and dset.dtype == np.float64
    segs = list(iter_hdf5_segments(root / "data.hdf5", ["H1", "L1"]))
    assert [(s.ifo, s.gps_start_ns, s.sample_rate) for s in segs] == [
        ("H1", cfg.start_gps * 10**9, FS), ("L1", cfg.start_gps * 10**9, FS)]


def test_run_simulate_gwf_equals_hdf5_via_gwpy_and_pycbc(written):
    from gwpy.timeseries import TimeSeries
    from pycbc.frame import read_frame

    cfg, root, _, gwf = written
    frames = sorted((root / "frames").iterdir())
    assert len(frames) == 16 and len(gwf["files"]) == 17
    assert frames[0].name == f"H-H1_SIM-{cfg.start_gps}-1.gwf" and frames[-1].name == f"L-L1_SIM-{cfg.start_gps + 7}-1.gwf"
    with h5py.File(root / "data.hdf5") as fh:
        for ifo in cfg.ifos:
            ref = fh[ifo][str(cfg.start_gps)][()]
            paths = [root / "frames" / f"{ifo[0]}-{ifo}_SIM-{cfg.start_gps + i}-1.gwf" for i in range(8)]
            channel = f"{ifo}:{cfg.strain_channel}"
            via_gwpy = np.concatenate([TimeSeries.read(str(p), channel).value for p in paths])
            via_pycbc = read_frame([str(p) for p in paths], channel, start_time=cfg.start_gps,
                                   end_time=cfg.start_gps + 8)
            assert via_pycbc.dtype == np.float64 and float(via_pycbc.start_time) == cfg.start_gps
            assert np.array_equal(via_gwpy, ref)
            assert np.array_equal(via_pycbc.numpy(), ref)
            frame = read_gwf_frame(paths[3], ifo, cfg.strain_channel, cfg.state_channel)
            assert frame.gps_ns == (cfg.start_gps + 3) * 10**9 and frame.sample_rate == FS
            assert np.array_equal(frame.state, np.full(16, cfg.state_word, dtype=np.uint32))
    a, b = read_injection_file(root / "inj_h.hdf"), read_injection_file(root / "inj_g.hdf")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_run_simulate_same_seed_bit_identical(written, tmp_path):
    cfg, root, _, _ = written
    run_simulate(cfg, duration_s=8, seed=123, out=str(tmp_path / "again.hdf5"), fmt="hdf5",
                 injections_path=str(tmp_path / "inj.hdf"), progress=False)
    plain = run_simulate(cfg, duration_s=8, seed=123, out=str(tmp_path / "plain.hdf5"), fmt="hdf5",
                         injections_path=None, progress=False)
    assert plain["n_injections"] == 0
    with h5py.File(root / "data.hdf5") as ref, h5py.File(tmp_path / "again.hdf5") as again, \
            h5py.File(tmp_path / "plain.hdf5") as noinj:
        key = f"H1/{cfg.start_gps}"
        assert np.array_equal(ref[key][()], again[key][()])
        assert not np.array_equal(ref[key][()], noinj[key][()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.hdf5", "inj.hdf", "plain.hdf5"]


def test_run_simulate_rejects_bad_arguments(tmp_path):
    cfg = sim_config()
    with pytest.raises(ConfigError, match="format"):
        run_simulate(cfg, duration_s=4, seed=1, out=str(tmp_path / "x"), fmt="csv", injections_path=None)
    with pytest.raises(ConfigError, match="duration"):
        run_simulate(cfg, duration_s=0, seed=1, out=str(tmp_path / "x"), fmt="hdf5", injections_path=None)
