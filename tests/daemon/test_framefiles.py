"""GWF and HDF5 strain files: names, round trips, and every way a read can fail."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.framefiles import (
    gwf_name,
    iter_hdf5_segments,
    parse_gwf_name,
    read_gwf_frame,
    write_gwf_frame,
)
from hypothesis import given
from hypothesis import strategies as st

FS = 2048
GPS = 1_000_000_000
STRAIN, STATE = "GDS-CALIB_STRAIN", "GDS-CALIB_STATE_VECTOR"


@pytest.fixture
def frame(tmp_path):
    """One valid 1-s H1 frame and what was written into it."""
    rng = np.random.default_rng(5)
    strain = rng.standard_normal(FS) * 1e-21
    state = np.arange(16, dtype=np.uint32) | 3
    path = tmp_path / gwf_name("H1", "TEST", GPS)
    write_gwf_frame(path, "H1", GPS, FS, strain, state, STRAIN, STATE)
    return path, strain, state


# --------------------------------------------------------------------------- names


@given(
    ifo=st.sampled_from(["H1", "L1", "V1", "K1"]),
    frame_type=st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True),
    gps=st.integers(0, 2_000_000_000),
    duration=st.integers(1, 4096),
)
def test_gwf_name_round_trip(ifo, frame_type, gps, duration):
    name = gwf_name(ifo, frame_type, gps, duration)
    assert parse_gwf_name(f"/some/dir/{name}") == (ifo[0], f"{ifo}_{frame_type}", gps, duration)


def test_gwf_name_examples():
    assert gwf_name("H1", "SIM", 1000000000) == "H-H1_SIM-1000000000-1.gwf"
    assert gwf_name("L1", "llhoft", 1234, 4) == "L-L1_llhoft-1234-4.gwf"
    assert parse_gwf_name("H-H1_llhoft-1000000000-1.gwf") == ("H", "H1_llhoft", 1000000000, 1)


@pytest.mark.parametrize("name", [
    "H-H1_llhoft-1000000000.gwf", "H-H1_llhoft-10000x0000-1.gwf", "H-H1_llhoft-1000000000-1.hdf5",
    ".H-H1_llhoft-1000000000-1.gwf.tmp", "H1_llhoft-1000000000-1.gwf", "",
])
def test_parse_gwf_name_rejects(name):
    with pytest.raises(FrameFileError, match="expected '<OBS>-<TYPE>-<GPS>-<DURATION>.gwf'"):
        parse_gwf_name(name)


def test_gwf_name_rejects_dash_in_type():
    with pytest.raises(FrameFileError, match="frame type"):
        gwf_name("H1", "a-b", GPS)


# --------------------------------------------------------------------------- GWF


def test_gwf_round_trip(frame, tmp_path):
    path, strain, state = frame
    got = read_gwf_frame(path, "H1", STRAIN, STATE)
    assert got.gps_ns == GPS * 10**9 and got.sample_rate == FS
    assert got.strain.dtype == np.float64 and np.array_equal(got.strain, strain)
    assert got.state.dtype == np.uint32 and np.array_equal(got.state, state)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    full = read_gwf_frame(path, "H1", f"H1:{STRAIN}", f"H1:{STATE}")  # full names accepted too
    assert np.array_equal(full.strain, strain) and np.array_equal(full.state, state)


def test_gwf_float32_strain_reads_as_float64(tmp_path):
    strain = np.linspace(-1, 1, FS, dtype=np.float32)
    path = tmp_path / gwf_name("L1", "TEST", GPS + 1)
    write_gwf_frame(path, "L1", GPS + 1, FS, strain, np.full(16, 3), STRAIN, STATE)
    got = read_gwf_frame(path, "L1", STRAIN, STATE)
    assert got.strain.dtype == np.float64 and np.array_equal(got.strain, strain.astype(np.float64))


@pytest.mark.parametrize("keep", [0, 100, 0.5, 0.9])
def test_truncated_gwf_is_frame_file_error(frame, tmp_path, keep):
    path, _, _ = frame
    data = path.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    bad = tmp_path / gwf_name("H1", "CUT", GPS)
    bad.write_bytes(data[:n])
    with pytest.raises(FrameFileError, match="CUT"):
        read_gwf_frame(bad, "H1", STRAIN, STATE)


def test_corrupt_gwf_is_frame_file_error(frame, tmp_path):
    path, _, _ = frame
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    garbage = tmp_path / gwf_name("H1", "GARBAGE", GPS)
    garbage.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    with pytest.raises(FrameFileError, match="GARBAGE"):
        read_gwf_frame(garbage, "H1", STRAIN, STATE)
    with pytest.raises(FrameFileError, match="no such file"):
        read_gwf_frame(tmp_path / "absent.gwf", "H1", STRAIN, STATE)


def test_missing_channels_are_named(frame, tmp_path):
    from gwpy.timeseries import TimeSeries

    path, _, _ = frame
    with pytest.raises(FrameFileError, match="H1:NOT_A_CHANNEL"):
        read_gwf_frame(path, "H1", STRAIN, "NOT_A_CHANNEL")
    with pytest.raises(FrameFileError, match="L1:"):
        read_gwf_frame(path, "L1", STRAIN, STATE)
    strain_only = tmp_path / gwf_name("H1", "NOSTATE", GPS)
    TimeSeries(np.zeros(FS), t0=GPS, sample_rate=FS, name=f"H1:{STRAIN}", channel=f"H1:{STRAIN}").write(
        str(strain_only), format="gwf")
    with pytest.raises(FrameFileError, match=f"H1:{STATE}"):
        read_gwf_frame(strain_only, "H1", STRAIN, STATE)


# --------------------------------------------------------------------------- HDF5


def _mock(path, segments):
    with h5py.File(path, "w") as fh:
        for ifo, start, data in segments:
            dset = fh.require_group(ifo).create_dataset(str(start), data=data)
            dset.attrs["start_time"] = start
            dset.attrs["delta_t"] = 1.0 / FS


def test_hdf5_mock_layout_segments_sorted(tmp_path):
    path = tmp_path / "mock.hdf5"
    _mock(path, [("H1", GPS + 100, np.ones(FS)), ("H1", GPS, np.zeros(2 * FS)),
                 ("L1", GPS, np.zeros(2 * FS)), ("L1", GPS + 100, np.ones(FS))])
    segs = []
    for seg in iter_hdf5_segments(path, ["H1", "L1"]):
        segs.append((seg.ifo, seg.gps_start_ns, seg.sample_rate, len(seg), float(seg.dataset[0])))
    assert segs == [
        ("H1", GPS * 10**9, FS, 2 * FS, 0.0), ("L1", GPS * 10**9, FS, 2 * FS, 0.0),
        ("H1", (GPS + 100) * 10**9, FS, FS, 1.0), ("L1", (GPS + 100) * 10**9, FS, FS, 1.0),
    ]
    only_l1 = [s.ifo for s in iter_hdf5_segments(path, ["L1"])]
    assert only_l1 == ["L1", "L1"]


def test_hdf5_gwpy_and_pycbc_single_series(tmp_path):
    from gwpy.timeseries import TimeSeries
    from pycbc.types import TimeSeries as PycbcTimeSeries

    data = np.arange(FS, dtype=np.float64)
    gw = tmp_path / "gwpy.hdf5"
    TimeSeries(data, t0=GPS, sample_rate=FS, channel=f"L1:{STRAIN}", name=f"L1:{STRAIN}").write(
        str(gw), format="hdf5")
    (seg,) = iter_hdf5_segments(gw, ["H1", "L1"])
    assert (seg.ifo, seg.gps_start_ns, seg.sample_rate) == ("L1", GPS * 10**9, FS)
    assert np.array_equal(seg.dataset[:], data)
    pc = tmp_path / "pycbc.hdf"
    PycbcTimeSeries(data, delta_t=1.0 / FS, epoch=GPS + 0.5).save(str(pc))
    with pytest.raises(FrameFileError, match="explicit ifo"):
        list(iter_hdf5_segments(pc))
    (seg,) = iter_hdf5_segments(pc, ifo="H1")
    assert (seg.ifo, seg.gps_start_ns, seg.sample_rate) == ("H1", GPS * 10**9 + 500_000_000, FS)


def test_hdf5_bad_layouts(tmp_path):
    no_attrs = tmp_path / "noattrs.hdf5"
    with h5py.File(no_attrs, "w") as fh:
        fh.create_group("H1").create_dataset(str(GPS), data=np.zeros(8))
    with pytest.raises(FrameFileError, match="expected 'start_time' and 'delta_t'"):
        list(iter_hdf5_segments(no_attrs, ["H1"]))

    odd_rate = tmp_path / "oddrate.hdf5"
    with h5py.File(odd_rate, "w") as fh:
        dset = fh.create_group("H1").create_dataset(str(GPS), data=np.zeros(8))
        dset.attrs["start_time"] = GPS
        dset.attrs["delta_t"] = 1.0 / 3000.5
    with pytest.raises(FrameFileError, match="integer sample rate"):
        list(iter_hdf5_segments(odd_rate, ["H1"]))

    missing_ifo = tmp_path / "onlyh1.hdf5"
    _mock(missing_ifo, [("H1", GPS, np.zeros(8))])
    with pytest.raises(FrameFileError, match="expected detector groups"):
        list(iter_hdf5_segments(missing_ifo, ["H1", "L1"]))

    two_series = tmp_path / "two.hdf5"
    with h5py.File(two_series, "w") as fh:
        fh.create_dataset("a", data=np.zeros(8))
        fh.create_dataset("b", data=np.zeros(8))
    with pytest.raises(FrameFileError, match="found groups"):
        list(iter_hdf5_segments(two_series, ["H1"]))

    not_hdf5 = tmp_path / "text.hdf5"
    not_hdf5.write_text("hello")
    with pytest.raises(FrameFileError, match="cannot open"):
        list(iter_hdf5_segments(not_hdf5, ["H1"]))
