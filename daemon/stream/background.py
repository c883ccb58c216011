"""The time-slid background: how often noise alone is as loud, and over how much live time.

:class:`Background` keeps every clustered background trigger's ranking
statistic compactly and exactly enough to give false-alarm rates::

    FAR(stat) = (n_background(>= stat) + 1) / T_background      [Hz]

``n_background(>= stat)`` comes from a bounded, sorted list of the loudest
``n_exact`` statistics (exact for every ``stat`` above the loudest one ever
evicted from it, the ``floor``) and, below the floor, from a histogram of all
statistics whose count includes the whole bin holding ``stat`` (never fewer
than the true count, so a FAR there is conservative by at most one bin). The
live time is an exact integer count of analysed slid windows times the window
stride, so ``T_background`` has no rounding drift over a month.

The store is written atomically to HDF5 (temporary file + ``os.replace``) and
read back with every field validated; a background built offline by
``gwstream search --background-out`` is the same file and can seed a daemon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gwstream.daemon.config import RankingConfig
from gwstream.daemon.errors import GwstreamError
from gwstream.daemon.units import NS

from .identity import setting_name

__all__ = ["Background", "BackgroundError", "BackgroundMismatch", "SECONDS_PER_YEAR", "far_hz", "far_to_ifar_years",
           "first_difference", "initial_background_path"]

SECONDS_PER_YEAR = 365.25 * 86400.0
_FORMAT = "gwstream-background"
_VERSION = 1


class BackgroundError(GwstreamError, ValueError):
    """A background file is unreadable, malformed, or was built for another search."""


class BackgroundMismatch(BackgroundError):
    """A background built for another search: ``setting`` (dotted, e.g. ``psd.psd_length_s``) is ``expected``
    here but was ``found`` where the background was made."""

    def __init__(self, message: str, setting: str, expected, found):
        super().__init__(message)
        self.setting, self.expected, self.found = setting, expected, found


def first_difference(expected: dict, found: dict, prefix: str = ""):
    """``(dotted key, expected value, found value)`` of the first setting (sorted keys, nested tables entered)
    that both dicts define differently, or None."""
    for key in sorted(set(expected) & set(found)):
        a, b = expected[key], found[key]
        if isinstance(a, dict) and isinstance(b, dict):
            diff = first_difference(a, b, f"{prefix}{key}.")
            if diff is not None:
                return diff
        elif a != b:
            return f"{prefix}{key}", a, b
    return None


def initial_background_path(value: str) -> Path | None:
    """The file a ``ranking.background_init`` value names: None for ``""`` or ``"none"`` (start empty; what ``""``
    means to ``gwstream run`` is decided before the search starts), the shipped background for ``"default"``."""
    value = value.strip()
    if value.lower() in ("", "none"):
        return None
    if value.lower() == "default":
        from gwstream.models import default_background_path

        return default_background_path()
    return Path(value)


def far_hz(n_louder, livetime_s: float):
    """False-alarm rate ``(n + 1) / T`` in Hz of a statistic reached or passed by ``n_louder`` background triggers.

    Parameters
    ----------
    n_louder : int or numpy.ndarray
        Background triggers with statistic ``>=`` the one ranked.
    livetime_s : float
        Background live time ``T`` (s), > 0.

    Notes
    -----
    The ``+ 1`` counts the ranked trigger itself as a possible member of the
    background, so a statistic louder than all of it gets FAR ``1 / T``
    (an upper bound), never 0.
    """
    return (n_louder + 1.0) / livetime_s


def far_to_ifar_years(far_hz):
    """Inverse FAR in years (``inf`` for FAR 0)."""
    far = np.asarray(far_hz, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 / (far * SECONDS_PER_YEAR)


@dataclass
class Background:
    """Clustered background triggers and their live time.

    Parameters
    ----------
    stride_ns : int
        Window stride; one analysed window adds this much live time.
    meta : dict
        What the background is valid for (model sha256, cluster window, slide
        step, ...): :meth:`merge` and :meth:`check_compatible` refuse a
        background whose ``meta`` differs in any key both define.
    n_exact : int
        Length of the exact list of the loudest statistics.
    hist_range : (float, float)
        Statistic range of the histogram (values outside land in the edge bins).
    bin_width : float
        Histogram bin width (the largest possible over-count below the floor).
    """

    stride_ns: int
    meta: dict = field(default_factory=dict)
    n_exact: int = RankingConfig().background_exact
    hist_range: tuple[float, float] = (-50.0, 50.0)
    bin_width: float = 0.01
    counts: np.ndarray = None  # int64 (n_bins,)
    loudest: np.ndarray = None  # float64, sorted descending, at most n_exact
    floor: float = -np.inf  # largest statistic ever evicted from `loudest`
    n_triggers: int = 0
    live_windows: int = 0
    n_slides_max: int = 0  # most slides ever analysed at once

    def __post_init__(self) -> None:
        if int(self.stride_ns) <= 0:
            raise ValueError(f"stride_ns = {self.stride_ns!r}, expected > 0")
        lo, hi = (float(v) for v in self.hist_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"hist_range = {self.hist_range!r}, expected finite (low, high) with high > low")
        if not self.bin_width > 0:
            raise ValueError(f"bin_width = {self.bin_width!r}, expected > 0")
        if int(self.n_exact) < 1:
            raise ValueError(f"n_exact = {self.n_exact!r}, expected >= 1")
        self.stride_ns, self.n_exact = int(self.stride_ns), int(self.n_exact)
        self.hist_range = (lo, hi)
        self.n_bins = int(np.ceil((hi - lo) / self.bin_width))
        if self.counts is None:
            self.counts = np.zeros(self.n_bins, dtype=np.int64)
        if self.loudest is None:
            self.loudest = np.zeros(0, dtype=np.float64)
        self.meta = dict(self.meta)

    # ----------------------------------------------------------------- filling
    @property
    def livetime_s(self) -> float:
        """Background live time (s): analysed slid windows times the stride."""
        return self.live_windows * self.stride_ns / NS

    def _bins(self, stats: np.ndarray) -> np.ndarray:
        b = np.floor((stats - self.hist_range[0]) / self.bin_width)
        return np.clip(b, 0, self.n_bins - 1).astype(np.int64)

    def add(self, stats, live_windows: int = 0, n_slides: int = 0) -> None:
        """Add clustered background statistics and the live windows they were found in."""
        stats = np.asarray(stats, dtype=np.float64).reshape(-1)
        if not np.isfinite(stats).all():
            raise ValueError("background statistics must be finite (invalid windows are not triggers)")
        if int(live_windows) < 0:
            raise ValueError(f"live_windows = {live_windows!r}, expected >= 0")
        self.live_windows += int(live_windows)
        self.n_slides_max = max(self.n_slides_max, int(n_slides))
        if not stats.size:
            return
        self.n_triggers += stats.size
        self.counts += np.bincount(self._bins(stats), minlength=self.n_bins)
        if self.loudest.size == self.n_exact:
            # the list is full: only statistics above its quietest entry can enter it
            low = stats <= self.loudest[-1]
            if low.any():
                self.floor = max(self.floor, float(stats[low].max()))
                stats = stats[~low]
            if not stats.size:
                return
        merged = np.concatenate([self.loudest, stats])
        if merged.size > self.n_exact:
            part = np.partition(merged, merged.size - self.n_exact)
            dropped, kept = part[: merged.size - self.n_exact], part[merged.size - self.n_exact:]
            self.floor = max(self.floor, float(dropped.max()))
            merged = kept
        self.loudest = np.sort(merged)[::-1].copy()

    # ------------------------------------------------------------------- query
    def count_at_least(self, stat) -> np.ndarray:
        """Background triggers with statistic ``>= stat`` (exact above ``floor``, else a bin-conservative count)."""
        stat = np.asarray(stat, dtype=np.float64)
        flat = stat.reshape(-1)
        asc = self.loudest[::-1]
        exact = asc.size - np.searchsorted(asc, flat, side="left")
        tail = np.concatenate([np.cumsum(self.counts[::-1])[::-1], [0]])
        binned = tail[self._bins(np.where(np.isfinite(flat), flat, self.hist_range[0]))]
        binned = np.where(flat == np.inf, 0, binned)
        out = np.where(flat > self.floor, exact, np.maximum(binned, exact))
        return out.reshape(stat.shape).astype(np.int64)

    def far(self, stat):
        """``(far_hz, saturated)`` of statistic(s) ``stat``; FAR is ``inf`` with no live time yet."""
        n = self.count_at_least(stat)
        t = self.livetime_s
        with np.errstate(divide="ignore"):
            far = far_hz(n, t) if t > 0 else np.full(np.shape(n), np.inf)
        return far, n == 0

    def stat_at_far(self, far: float) -> float:
        """The smallest statistic whose :meth:`far` is at most ``far`` (Hz), from the exact list: just above the
        ``(n+1)``-th loudest entry, where ``n = floor(far * T) - 1`` louder ones are allowed; when not even the
        loudest may be passed (``far * T < 1``), just above the loudest. Never below the floor (the binned
        counts there are not exact). ``inf`` for an empty background."""
        if not self.loudest.size:
            return float("inf")
        allowed = int(np.floor(far * self.livetime_s * (1 + 1e-12))) - 1
        at = float(self.loudest[min(max(allowed, 0), self.loudest.size - 1)])
        return float(np.nextafter(max(at, self.floor), np.inf))

    def count_parts(self, stat: float) -> tuple[int, int]:
        """What :meth:`far_joined` needs of this background at ``stat``: ``(n, binned)``.

        ``n`` is the exact number of statistics ``>= stat`` when it is at most
        ``n_exact`` (``stat`` above the floor), else -1; ``binned`` the
        histogram's count of the bins from ``stat``'s upwards.
        """
        stat = float(stat)
        asc = self.loudest[::-1]
        n = int(asc.size - np.searchsorted(asc, stat, side="left")) if stat > self.floor else -1
        tail = np.concatenate([np.cumsum(self.counts[::-1])[::-1], [0]])
        binned = 0 if stat == np.inf else int(tail[self._bins(np.asarray([stat]))[0]])
        return n, binned

    def far_joined(self, stat: float, live_windows: int, n: int, binned: int) -> tuple[float, bool]:
        """``(far_hz, saturated)`` of ``stat`` against this background merged with a later one whose
        :attr:`live_windows` and :meth:`count_parts` at ``stat`` are given.

        Equals :meth:`far` of the merged background exactly: the floor of a
        background is the largest statistic its exact list ever left out,
        i.e. the ``n_exact + 1``-th largest it holds, so a statistic above the
        merged floor is one that at most ``n_exact`` statistics of both parts
        reach, and the counts add. This is how a span of a distributed search
        gets the FAR one process gives, without the spans before it.
        """
        mine, my_binned = self.count_parts(stat)
        if mine >= 0 and n >= 0 and mine + n <= self.n_exact:
            count = mine + n
        else:
            count = my_binned + binned
        windows = self.live_windows + int(live_windows)
        t = windows * self.stride_ns / NS
        far = float(far_hz(count, t)) if t > 0 else float("inf")
        return far, count == 0

    # ----------------------------------------------------------------- combine
    def check_compatible(self, other: Background, what: str = "background") -> None:
        """Raise :class:`BackgroundError` unless ``other`` can be counted with this one."""
        if other.stride_ns != self.stride_ns:
            mine, theirs = self.stride_ns / NS, other.stride_ns / NS
            raise BackgroundMismatch(f"windows.stride_s = {mine!r} (the window stride), {what} was made with "
                                     f"{theirs!r}", "windows.stride_s", mine, theirs)
        if (other.hist_range, other.bin_width) != (self.hist_range, self.bin_width):
            raise BackgroundError(
                f"{what} has histogram {other.hist_range} / {other.bin_width}, expected "
                f"{self.hist_range} / {self.bin_width}"
            )
        diff = first_difference(self.meta, other.meta)
        if diff is not None:
            key, expected, found = diff
            key = setting_name(key)
            raise BackgroundMismatch(f"{key} = {expected!r}, {what} was made with {found!r}", key, expected, found)

    def merge(self, other: Background) -> None:
        """Add another compatible background (e.g. one precomputed offline) to this one."""
        self.check_compatible(other)
        self.counts += other.counts
        self.n_triggers += other.n_triggers
        self.live_windows += other.live_windows
        self.n_slides_max = max(self.n_slides_max, other.n_slides_max)
        self.floor = max(self.floor, other.floor)
        merged = np.concatenate([self.loudest, other.loudest])
        if merged.size > self.n_exact:
            part = np.partition(merged, merged.size - self.n_exact)
            self.floor = max(self.floor, float(part[: merged.size - self.n_exact].max()))
            merged = part[merged.size - self.n_exact:]
        self.loudest = np.sort(merged)[::-1].copy()

    # --------------------------------------------------------------------- I/O
    def write_group(self, group) -> None:
        """Write into an open h5py group."""
        group.attrs["format"] = _FORMAT
        group.attrs["version"] = _VERSION
        group.attrs["stride_ns"] = self.stride_ns
        group.attrs["n_exact"] = self.n_exact
        group.attrs["hist_range"] = np.asarray(self.hist_range, dtype=np.float64)
        group.attrs["bin_width"] = float(self.bin_width)
        group.attrs["floor"] = float(self.floor)
        group.attrs["n_triggers"] = int(self.n_triggers)
        group.attrs["live_windows"] = int(self.live_windows)
        group.attrs["n_slides"] = int(self.n_slides_max)
        group.attrs["livetime_s"] = float(self.livetime_s)
        group.attrs["meta_json"] = json.dumps(self.meta, sort_keys=True)
        group.create_dataset("counts", data=self.counts, compression="gzip", compression_opts=1)
        group.create_dataset("loudest", data=self.loudest)

    @classmethod
    def read_group(cls, group, where: str = "background") -> Background:
        """Read and validate what :meth:`write_group` wrote."""
        a = group.attrs

        def need(key):
            if key not in a:
                raise BackgroundError(f"{where}: attribute {key!r} missing")
            return a[key]

        if need("format") != _FORMAT:
            raise BackgroundError(f"{where}: format {a['format']!r}, expected {_FORMAT!r}")
        if int(need("version")) != _VERSION:
            raise BackgroundError(f"{where}: version {int(a['version'])}, expected {_VERSION}")
        for key in ("counts", "loudest"):
            if key not in group:
                raise BackgroundError(f"{where}: dataset {key!r} missing")
        try:
            meta = json.loads(need("meta_json"))
            if isinstance(meta, dict) and isinstance(meta.get("whiten"), dict):
                # written before the gate threshold was part of the identity: made without gating (as the
                # shipped backgrounds were), so a gated search does not count it as its own
                meta["whiten"].setdefault("gate_threshold", 0.0)
            if isinstance(meta, dict) and "model_sha256" in meta:
                # written before the consistency test existed: made without it
                meta.setdefault("consistency", {"weight": 0.0})
            bg = cls(int(need("stride_ns")), meta, int(need("n_exact")),
                     tuple(float(v) for v in need("hist_range")), float(need("bin_width")))
        except (ValueError, TypeError) as exc:
            raise BackgroundError(f"{where}: {exc}") from None
        counts = np.asarray(group["counts"][()])
        loudest = np.asarray(group["loudest"][()], dtype=np.float64)
        if counts.shape != (bg.n_bins,) or counts.dtype.kind not in "iu" or (counts < 0).any():
            raise BackgroundError(f"{where}: counts of shape {counts.shape} / dtype {counts.dtype}, expected "
                                  f"({bg.n_bins},) non-negative integers")
        if loudest.ndim != 1 or loudest.size > bg.n_exact or not np.isfinite(loudest).all() \
                or (np.diff(loudest) > 0).any():
            raise BackgroundError(f"{where}: loudest must be at most {bg.n_exact} finite values sorted descending")
        n_trig, live = int(need("n_triggers")), int(need("live_windows"))
        if n_trig != int(counts.sum()) or live < 0 or loudest.size > n_trig:
            raise BackgroundError(f"{where}: n_triggers = {n_trig} but the histogram holds {int(counts.sum())} "
                                  f"(live_windows = {live})")
        bg.counts = counts.astype(np.int64)
        bg.loudest = loudest
        bg.floor = float(need("floor"))
        bg.n_triggers, bg.live_windows = n_trig, live
        bg.n_slides_max = int(need("n_slides"))
        return bg

    def save(self, path: str | Path) -> Path:
        """Write to an HDF5 file of its own, atomically."""
        import h5py
        from gwstream.daemon.io.atomic import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            self.write_group(f.create_group("background"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Background:
        """Read a file written by :meth:`save` (or a state file that holds a ``background`` group)."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise BackgroundError(f"{path}: no such background file")
        try:
            with h5py.File(path, "r") as f:
                if "background" not in f:
                    raise BackgroundError(f"{path}: no 'background' group (not a gwstream background file)")
                return cls.read_group(f["background"], str(path))
        except OSError as exc:
            raise BackgroundError(f"{path}: unreadable as HDF5 ({exc})") from None
