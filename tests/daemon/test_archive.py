"""Trigger archive: hourly files, atomic rewrites, restarts never duplicate, a full disk corrupts nothing."""

import errno

import h5py
import numpy as np
import pytest
from gwstream.daemon.io.archive import TriggerArchive, archive_name, read_archive
from gwstream.daemon.stream.ranking import Trigger
from gwstream.daemon.units import NS


def trig(t_s, stat=1.0):
    g = int(t_s * NS)
    return Trigger(g, g - 700_000_000, stat, 0.26, 0.01, 3e-6, False)


def test_hourly_files_round_trip_and_restart_does_not_duplicate(tmp_path):
    a = TriggerArchive(tmp_path, attrs={"model": "m"})
    a.append([trig(1_000_000_000 + 10 * k) for k in range(400)])  # crosses an hour boundary
    a.flush()
    files = sorted(p.name for p in tmp_path.glob("*.h5"))
    assert files == sorted({archive_name(int((1_000_000_000 + 10 * k) * NS)) for k in range(400)})
    b = TriggerArchive(tmp_path)  # a restart: the open hour is read back
    b.append([trig(1_000_000_000 + 10 * k) for k in range(390, 410)])
    b.flush()
    cols = read_archive(tmp_path)
    assert cols["time"].size == 410 and (np.diff(cols["gps_ns"]) > 0).all()


def test_full_disk_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    a = TriggerArchive(tmp_path)
    a.append([trig(1_000_000_000 + k) for k in range(5)])
    path = a.flush()
    before = path.read_bytes()
    a.append([trig(1_000_000_010)])

    def no_space(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "create_dataset", no_space)
    with pytest.raises(OSError, match="No space"):
        a.flush()
    monkeypatch.undo()
    assert path.read_bytes() == before  # untouched, still readable
    assert read_archive(tmp_path)["time"].size == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    a.flush()  # the next flush succeeds and loses nothing
    assert read_archive(tmp_path)["time"].size == 6


def test_unreadable_hour_is_set_aside_not_lost(tmp_path):
    bad = tmp_path / archive_name(1_000_000_000 * NS)
    bad.write_bytes(b"garbage")
    a = TriggerArchive(tmp_path)
    a.append([trig(1_000_000_001)])
    a.flush()
    assert bad.with_suffix(".unreadable").exists()
    assert read_archive(tmp_path)["time"].size == 1


def test_gates_round_trip_as_a_group(tmp_path):
    from gwstream.daemon.io.archive import read_triggers, write_triggers

    gates = [{"ifo": "H1", "gps": 1000000012.25, "peak_sigma": 61.5}, {"ifo": "L1", "gps": 1000000100.5,
                                                                        "peak_sigma": 1500.0}]
    write_triggers(tmp_path / "t.h5", [], attrs={"n": 1}, gates=gates)
    cols, attrs = read_triggers(tmp_path / "t.h5")
    assert attrs["gates"] == gates and "gates" not in cols
    write_triggers(tmp_path / "u.h5", [])
    assert "gates" not in read_triggers(tmp_path / "u.h5")[1]
