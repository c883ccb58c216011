"""The search's status file: what other processes read to know where the search is."""

from __future__ import annotations

import json
import os

import pytest
from gwstream.daemon.io.status import read_status, write_status
from gwstream.daemon.units import NS


def test_status_round_trip(tmp_path):
    path = tmp_path / "search-status.json"
    assert read_status(path) is None  # not written yet
    write_status(path, "end_of_stream", {"blocks": 12, "triggers": 3, "alerts": 1, "eos": 1},
                 data_end_ns=1_000_000_012 * NS, eos_end_ns=1_000_000_012 * NS)
    doc = read_status(path)
    assert doc["state"] == "end_of_stream"
    assert (doc["blocks"], doc["triggers"], doc["alerts"], doc["end_of_stream_messages"]) == (12, 3, 1, 1)
    assert doc["data_end_gps"] == doc["end_of_stream_gps"] == 1_000_000_012.0
    assert doc["pid"] == os.getpid()
    write_status(path, "running", {}, data_end_ns=None)  # rewritten whole, missing counters count 0
    assert read_status(path) == {"state": "running", "pid": os.getpid(), "blocks": 0, "triggers": 0, "alerts": 0,
                                 "end_of_stream_messages": 0, "followups": 0, "followup_failures": 0,
                                 "data_end_gps": None, "end_of_stream_gps": None}
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'done'"):
        write_status(tmp_path / "s.json", "done", {}, data_end_ns=None)


def test_unreadable_or_foreign_status_reads_as_none(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{half")
    assert read_status(path) is None
    path.write_text(json.dumps({"state": "exploded"}))
    assert read_status(path) is None


def test_an_unwritable_status_file_is_logged_not_raised(tmp_path, caplog):
    target = tmp_path / "missing-dir" / "s.json"  # its folder does not exist
    write_status(target, "running", {}, data_end_ns=None)
    assert "could not write the status file" in caplog.text
    assert read_status(target) is None
