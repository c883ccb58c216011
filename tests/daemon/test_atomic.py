"""The daemon's atomic writer: all or nothing under the destination, with the mode open() would give."""

import os

import pytest
from gwstream.daemon.io import atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "state.h5"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(dest) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.h5"]


def test_the_new_file_gets_the_umask_mode_not_mkstemps(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        assert atomic.new_file_mode() == 0o640
    finally:
        os.umask(old)
    monkeypatch.setattr(atomic, "FILE_MODE", 0o640)
    with atomic.atomic_path(tmp_path / "bank.npz", suffix=".tmp.npz") as tmp:
        assert os.path.basename(tmp).startswith(".bank.npz.") and tmp.endswith(".tmp.npz")
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert (tmp_path / "bank.npz").read_bytes() == b"new"
    assert (tmp_path / "bank.npz").stat().st_mode & 0o777 == 0o640
