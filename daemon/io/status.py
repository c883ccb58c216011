"""The search process's status file: how it tells other processes where it is.

One small JSON document, rewritten atomically (readers never see half of it)
at start-up, every ``output.status_interval_s``, at each end-of-stream message
and when the process stops; its path is
:func:`gwstream.daemon.config.status_path` (``<output.dir>/search-status.json``).

Fields: ``state`` (``running``; ``end_of_stream`` once every block before the
stream's end has been analysed and its alerts published, until the next block;
``stopped``), ``pid``, the counters ``blocks``, ``triggers``, ``alerts`` and
``end_of_stream_messages``, ``data_end_gps`` (end of the last block analysed)
and ``end_of_stream_gps``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from gwstream.daemon.units import NS

from .atomic import atomic_path

__all__ = ["STATES", "write_status", "read_status"]

log = logging.getLogger(__name__)

#: the values of ``state``
STATES = ("running", "end_of_stream", "stopped")


def write_status(path: str | os.PathLike, state: str, counters: Mapping[str, int], *, data_end_ns: int | None,
                 eos_end_ns: int | None = None) -> None:
    """Rewrite the status file at ``path`` atomically; an unwritable file is logged, never raised.

    Parameters
    ----------
    path : path-like
    state : str
        One of :data:`STATES`.
    counters : mapping
        The search's counters (``blocks``, ``triggers``, ``alerts``, ``eos``; missing ones count 0).
    data_end_ns, eos_end_ns : int or None
        GPS ns of the end of the last block analysed and of the last end-of-stream message.
    """
    if state not in STATES:
        raise ValueError(f"status state {state!r}: expected one of {STATES}")
    doc = {"state": state, "pid": os.getpid(), "blocks": int(counters.get("blocks", 0)),
           "triggers": int(counters.get("triggers", 0)), "alerts": int(counters.get("alerts", 0)),
           "end_of_stream_messages": int(counters.get("eos", 0)),
           # follow-ups (sky maps) sent, and those that failed or were dropped: with ``alerts``, what a
           # reader waiting for every alert's follow-up needs
           "followups": int(counters.get("skymaps", 0)) + int(counters.get("followups", 0)),
           "followup_failures": int(counters.get("followup_errors", 0)) + int(counters.get("followups_dropped", 0))
           + int(counters.get("followup_no_data", 0)),
           "data_end_gps": None if data_end_ns is None else data_end_ns / NS,
           "end_of_stream_gps": None if eos_end_ns is None else eos_end_ns / NS}
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(doc))
    except OSError as exc:  # the file is for others to read: it never stops the search
        log.error("could not write the status file %s (%s)", path, exc)


def read_status(path: str | os.PathLike) -> dict | None:
    """The status document at ``path``, or None while there is none (not yet written, or unreadable)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("state") in STATES else None
