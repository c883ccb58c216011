"""The daemon's trigger archive: every clustered zero-lag trigger, on disk, never half-written.

Triggers go into one HDF5 file per GPS hour, ``<dir>/T-GWSTREAM-<gps>-3600.h5``
(the hour's start), in the layout of :func:`gwstream.daemon.search.write_triggers`.
The current hour's file is rewritten atomically (temporary file +
``os.replace``) on every :meth:`TriggerArchive.flush`, so a reader, a crash
or a full disk never leaves a corrupt file, and the cost of a flush is bounded
by one hour of triggers whatever the run's length. :func:`read_archive` reads
a whole directory back as one table.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .errors import FrameFileError
from .ranking import Trigger

__all__ = ["TriggerArchive", "read_archive", "archive_name"]

log = logging.getLogger(__name__)
NS = 1_000_000_000
HOUR_NS = 3600 * NS
_NAME = re.compile(r"^T-GWSTREAM-(\d+)-3600\.h5$")


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
        from .search import read_triggers

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
        from .search import write_triggers

        path = self.directory / archive_name(self._hour * HOUR_NS)
        write_triggers(path, self._rows, attrs=self.attrs)
        self.n_written = sum(1 for _ in self._rows)
        self._dirty = False
        return path


def read_archive(directory: str | Path) -> dict[str, np.ndarray]:
    """All triggers of an archive directory, time-ordered, as columns."""
    from .search import read_triggers

    directory = Path(directory)
    files = sorted((p for p in directory.glob("T-GWSTREAM-*-3600.h5") if _NAME.match(p.name)),
                   key=lambda p: int(_NAME.match(p.name).group(1)))
    parts = [read_triggers(p)[0] for p in files]
    if not parts:
        return {k: np.zeros(0) for k in ("time", "stat", "var", "far", "ifar_years", "gps_ns", "window_gps_ns")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
