"""The daemon's trigger archive: every clustered zero-lag trigger, on disk, never half-written.

Triggers go into one HDF5 file per GPS hour, ``<dir>/T-GWSTREAM-<gps>-3600.h5``
(the hour's start), in the layout of :func:`write_triggers`.
The current hour's file is rewritten atomically (temporary file +
``os.replace``) on every :meth:`TriggerArchive.flush`, so a reader, a crash
or a full disk never leaves a corrupt file, and the cost of a flush is bounded
by one hour of triggers whatever the run's length. :func:`read_archive` reads
a whole directory back as one table.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.units import NS

__all__ = ["TriggerArchive", "read_archive", "archive_name", "write_triggers", "read_triggers"]

log = logging.getLogger(__name__)
HOUR_NS = 3600 * NS
_NAME = re.compile(r"^T-GWSTREAM-(\d+)-3600\.h5$")
_ARCHIVE_FORMAT = "gwstream-triggers"


def archive_name(gps_ns: int) -> str:
    """File name of the hour holding GPS time ``gps_ns``."""
    return f"T-GWSTREAM-{gps_ns // HOUR_NS * 3600}-3600.h5"


class TriggerArchive:
    """Append triggers; flush rewrites the open hour's file atomically.

    Parameters
    ----------
    directory : path
        Created if missing. Triggers of an hour already on disk (a restart)
        are read back and kept; a trigger is never written twice (same
        ``gps_ns``).
    attrs : dict
        File attributes written with every hour (model, configuration).
    """

    def __init__(self, directory: str | Path, attrs: dict | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.attrs = dict(attrs or {})
        self._hour: int | None = None
        self._rows: list[Trigger] = []
        self._dirty = False
        self.n_written = 0

    def _load_hour(self, hour: int) -> list[Trigger]:
        path = self.directory / archive_name(hour * HOUR_NS)
        if not path.exists():
            return []
        try:
            cols, _ = read_triggers(path)
        except FrameFileError as exc:
            # keep the unreadable file for inspection, start the hour afresh
            bad = path.with_suffix(".unreadable")
            path.replace(bad)
            log.error("trigger archive %s unreadable (%s): moved to %s", path, exc, bad)
            return []
        return [Trigger(int(g), int(w), float(s), float(v), float(f), float(i), bool(sat))
                for g, w, s, v, f, i, sat in zip(cols["gps_ns"], cols["window_gps_ns"], cols["stat"], cols["var"],
                                                  cols["far"], cols["ifar_years"], cols["saturated"])]

    def append(self, triggers) -> None:
        """Add triggers (in time order); a new hour flushes and closes the previous one."""
        for t in triggers:
            hour = t.gps_ns // HOUR_NS
            if hour != self._hour:
                self.flush()
                self._hour = hour
                self._rows = self._load_hour(hour)
            if self._rows and t.gps_ns <= self._rows[-1].gps_ns:
                continue  # already archived (restart)
            self._rows.append(t)
            self._dirty = True

    def flush(self) -> Path | None:
        """Write the open hour's file (atomically) if it changed."""
        if self._hour is None or not self._dirty:
            return None
        path = self.directory / archive_name(self._hour * HOUR_NS)
        write_triggers(path, self._rows, attrs=self.attrs)
        self.n_written = sum(1 for _ in self._rows)
        self._dirty = False
        return path


def read_archive(directory: str | Path) -> dict[str, np.ndarray]:
    """All triggers of an archive directory, time-ordered, as columns."""
    directory = Path(directory)
    files = sorted((p for p in directory.glob("T-GWSTREAM-*-3600.h5") if _NAME.match(p.name)),
                   key=lambda p: int(_NAME.match(p.name).group(1)))
    parts = [read_triggers(p)[0] for p in files]
    if not parts:
        return {k: np.zeros(0) for k in ("time", "stat", "var", "far", "ifar_years", "gps_ns", "window_gps_ns")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write_triggers(path: str | Path, triggers: Iterable[Trigger], *, attrs: dict | None = None,
                   segments: np.ndarray | None = None, gates: list | None = None) -> Path:
    """Write a trigger archive (HDF5, one row per zero-lag trigger), atomically.

    Datasets ``time`` (GPS s, float64), ``stat``, ``var`` (s), ``far`` (Hz),
    ``ifar_years``, ``saturated`` (bool), ``gps_ns`` and ``window_gps_ns``
    (int64 ns); ``segments`` (GPS s, ``(n, 2)``, the merger times the
    analysed windows cover); group ``gates`` (datasets ``ifo``, ``gps``,
    ``peak_sigma``: the autogating's gates, from ``gates``, a list of dicts with those keys);
    file attributes from ``attrs`` (live times, model, config).
    """
    import h5py
    from gwstream.daemon.io.atomic import atomic_path

    rows = list(triggers)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {
        "time": np.array([t.gps_ns / NS for t in rows], dtype=np.float64),
        "stat": np.array([t.stat for t in rows], dtype=np.float64),
        "var": np.array([t.var for t in rows], dtype=np.float64),
        "far": np.array([t.far for t in rows], dtype=np.float64),
        "ifar_years": np.array([t.ifar_years for t in rows], dtype=np.float64),
        "saturated": np.array([t.saturated for t in rows], dtype=bool),
        "gps_ns": np.array([t.gps_ns for t in rows], dtype=np.int64),
        "window_gps_ns": np.array([t.window_gps_ns for t in rows], dtype=np.int64),
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=v)
        f.create_dataset("segments", data=np.zeros((0, 2)) if segments is None else np.asarray(segments, float))
        if gates is not None:
            g = f.create_group("gates")
            g.create_dataset("ifo", data=np.array([x["ifo"] for x in gates], dtype="S2"))
            g.create_dataset("gps", data=np.array([x["gps"] for x in gates], dtype=np.float64))
            g.create_dataset("peak_sigma", data=np.array([x["peak_sigma"] for x in gates], dtype=np.float64))
        f.attrs["format"] = _ARCHIVE_FORMAT
        for k, v in (attrs or {}).items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    return path


def read_triggers(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Columns and attributes of a trigger archive; :class:`FrameFileError` naming what is wrong."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FrameFileError(f"{path}: no such trigger file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("time", "stat", "var") if k not in f]
            if missing:
                raise FrameFileError(f"{path}: not a trigger archive (datasets {missing} missing)")
            cols = {k: np.asarray(f[k][()]) for k in f.keys() if isinstance(f[k], h5py.Dataset) and k != "segments"}
            attrs_segments = np.asarray(f["segments"][()]) if "segments" in f else None
            gates = None
            if "gates" in f:
                gates = [{"ifo": i.decode(), "gps": float(t), "peak_sigma": float(p)} for i, t, p in
                         zip(f["gates"]["ifo"][()], f["gates"]["gps"][()], f["gates"]["peak_sigma"][()])]
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise FrameFileError(f"{path}: unreadable as HDF5 ({exc})") from None
    n = {v.shape[0] for v in cols.values()}
    if len(n) > 1:
        raise FrameFileError(f"{path}: columns of different lengths {sorted(n)}")
    attrs["segments"] = attrs_segments
    if gates is not None:
        attrs["gates"] = gates
    for k in ("livetime_s", "background_livetime_s"):
        if k in attrs:
            attrs[k] = float(attrs[k])
    return cols, attrs
