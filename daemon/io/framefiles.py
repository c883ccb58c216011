"""GWF and HDF5 strain files: names, atomic writes, checked reads.

GWF frames follow the LIGO naming convention ``<OBS>-<IFO>_<TYPE>-<GPS>-<DUR>.gwf``
(e.g. ``H-H1_llhoft-1000000000-1.gwf``) and carry a strain channel and a 16 Hz
state-vector channel; they are written and read through gwpy (LALFrame /
FrameL backend). HDF5 strain comes in the community mock-data layout (groups
per detector, one dataset per contiguous segment named by its integer GPS
start, attributes ``start_time`` and ``delta_t``) or as a single gwpy/PyCBC
time series. Every failure to read raises :class:`FrameFileError` naming the
file and the cause.

Examples
--------
>>> gwf_name("H1", "SIM", 1000000000)
'H-H1_SIM-1000000000-1.gwf'
>>> parse_gwf_name("/dev/shm/H-H1_llhoft-1000000000-1.gwf")
('H', 'H1_llhoft', 1000000000, 1)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.atomic import atomic_path
from gwstream.daemon.units import NS, samples_to_ns, seconds_to_ns

__all__ = [
    "GwfFrame",
    "Hdf5Segment",
    "gwf_name",
    "parse_gwf_name",
    "write_gwf_frame",
    "read_gwf_frame",
    "iter_hdf5_segments",
    "write_hdf5_layout_attrs",
    "write_injection_file",
    "read_injection_file",
    "GLITCH_COLUMNS",
    "GLITCH_KINDS",
    "write_glitch_file",
    "read_glitch_file",
]

logger = logging.getLogger(__name__)

_GWF_RE = re.compile(r"^(?P<obs>[A-Z0-9]+)-(?P<tag>[^-/]+)-(?P<gps>\d+)-(?P<dur>\d+)\.gwf$")


@dataclass(frozen=True)
class GwfFrame:
    """One detector's data from one GWF file.

    Attributes
    ----------
    gps_ns : int
        GPS time of the first sample, ns.
    sample_rate : int
        Strain sample rate, Hz.
    strain : numpy.ndarray
        Strain, shape ``(n,)``, float64.
    state : numpy.ndarray
        State-vector words at 16 Hz, uint32.
    """

    gps_ns: int
    sample_rate: int
    strain: np.ndarray
    state: np.ndarray


@dataclass(frozen=True)
class Hdf5Segment:
    """One contiguous segment of one detector in an HDF5 strain file.

    Attributes
    ----------
    ifo : str
        Detector.
    gps_start_ns : int
        GPS time of the first sample, ns.
    sample_rate : int
        Hz.
    dataset : h5py.Dataset or numpy.ndarray
        The samples; read in slices (``dataset[a:b]``).
    """

    ifo: str
    gps_start_ns: int
    sample_rate: int
    dataset: object

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def duration_ns(self) -> int:
        return samples_to_ns(len(self.dataset), self.sample_rate)


def _full_channel(ifo: str, channel: str) -> str:
    """``<ifo>:<channel>``; a channel already carrying the ``<ifo>:`` prefix is kept as is."""
    return channel if channel.startswith(f"{ifo}:") else f"{ifo}:{channel}"


def gwf_name(ifo: str, frame_type: str, gps: int, duration: int = 1) -> str:
    """File name ``<I>-<IFO>_<frame_type>-<gps>-<duration>.gwf``.

    Parameters
    ----------
    ifo : str
        Detector, e.g. ``"H1"``; its first letter is the observatory.
    frame_type : str
        Frame type tag, e.g. ``"llhoft"`` (no ``-`` allowed).
    gps : int
        GPS start, s.
    duration : int
        Duration, s.
    """
    if not ifo or "-" in frame_type or not frame_type:
        raise FrameFileError(
            f"cannot name a frame for ifo={ifo!r}, frame_type={frame_type!r}: expected a non-empty ifo and a "
            "frame type without '-'"
        )
    if int(gps) != gps or gps < 0 or int(duration) != duration or duration <= 0:
        raise FrameFileError(f"gps={gps!r}, duration={duration!r}: expected integers gps >= 0, duration > 0 (s)")
    return f"{ifo[0]}-{ifo}_{frame_type}-{int(gps)}-{int(duration)}.gwf"


def parse_gwf_name(path: str | os.PathLike) -> tuple[str, str, int, int]:
    """Split a GWF file name into ``(observatory, frame_type, gps, duration)``.

    ``frame_type`` is the full middle field (e.g. ``"H1_llhoft"``), as in
    the LIGO convention ``<OBS>-<TAG>-<GPS>-<DUR>.gwf``.

    Raises
    ------
    FrameFileError
        The name does not follow the convention.
    """
    name = Path(path).name
    match = _GWF_RE.match(name)
    if match is None:
        raise FrameFileError(
            f"frame file name {name!r}: expected '<OBS>-<TYPE>-<GPS>-<DURATION>.gwf', e.g. 'H-H1_llhoft-1000000000-1.gwf'"
        )
    return match["obs"], match["tag"], int(match["gps"]), int(match["dur"])


def write_gwf_frame(
    path: str | os.PathLike,
    ifo: str,
    gps: int,
    sample_rate_hz: int,
    strain: np.ndarray,
    state_words: np.ndarray,
    strain_channel: str,
    state_channel: str,
) -> None:
    """Write one GWF frame atomically (:func:`gwstream.daemon.io.atomic.atomic_path`).

    Parameters
    ----------
    path : str or path-like
        Destination file.
    ifo : str
        Detector; channels are ``<ifo>:<strain_channel>`` and ``<ifo>:<state_channel>``.
    gps : int
        GPS start of the frame, s.
    sample_rate_hz : int
        Strain sample rate, Hz.
    strain : numpy.ndarray
        Strain samples, float32 or float64.
    state_words : numpy.ndarray
        State-vector words spanning the frame evenly (16 Hz for 1-s frames), uint32.
    strain_channel, state_channel : str
        Channel names after ``<ifo>:`` (a name already starting with
        ``<ifo>:`` is used as is).
    """
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    path = Path(path)
    strain = np.asarray(strain)
    duration = len(strain) / sample_rate_hz
    state_words = np.asarray(state_words, dtype=np.uint32)
    if not len(state_words) or duration <= 0:
        raise FrameFileError(f"frame {str(path)!r}: expected at least one strain sample and one state word")
    channels = TimeSeriesDict()
    for suffix, data, rate in (
        (strain_channel, strain, sample_rate_hz),
        (state_channel, state_words, len(state_words) / duration),
    ):
        name = _full_channel(ifo, suffix)
        channels[name] = TimeSeries(data, t0=int(gps), sample_rate=rate, channel=name, name=name)
    try:
        with atomic_path(path) as tmp:
            channels.write(tmp, format="gwf")
    except Exception as exc:
        if isinstance(exc, FrameFileError):
            raise
        raise FrameFileError(f"frame {str(path)!r}: cannot write ({type(exc).__name__}: {exc})") from exc


def read_gwf_frame(path: str | os.PathLike, ifo: str, strain_channel: str, state_channel: str) -> GwfFrame:
    """Read strain and state vector of one detector from a GWF file.

    Parameters
    ----------
    path : str or path-like
        GWF file.
    ifo : str
        Detector prefix of the channels.
    strain_channel, state_channel : str
        Channel names after ``<ifo>:`` (a name already starting with
        ``<ifo>:`` is used as is).

    Raises
    ------
    FrameFileError
        Missing, truncated (half-written) or corrupt file, or a missing
        channel; the message names the path, the channel and the cause.
    """
    from gwpy.timeseries import TimeSeriesDict

    path = str(path)
    if not os.path.isfile(path):
        raise FrameFileError(f"frame {path!r}: no such file")
    strain_name, state_name = _full_channel(ifo, strain_channel), _full_channel(ifo, state_channel)
    try:
        data = TimeSeriesDict.read(path, [strain_name, state_name])
    except Exception as exc:
        # tell a missing channel from an unreadable file
        if "not found" in str(exc):
            missing = [c for c in (strain_name, state_name) if c in str(exc)] or [strain_name, state_name]
            raise FrameFileError(f"frame {path!r}: channel {missing[0]!r} not found ({exc})") from None
        raise FrameFileError(f"frame {path!r}: cannot read ({type(exc).__name__}: {exc})") from None
    strain, state = data[strain_name], data[state_name]
    rate = float(strain.sample_rate.value)
    if rate <= 0 or abs(rate - round(rate)) > 1e-9 * rate:
        raise FrameFileError(f"frame {path!r}: sample rate {rate} Hz of {strain_name!r}, expected an integer")
    t0 = strain.t0.value
    gps_ns = seconds_to_ns(t0) if not float(t0).is_integer() else int(t0) * NS
    return GwfFrame(
        gps_ns=gps_ns,
        sample_rate=int(round(rate)),
        strain=np.asarray(strain.value, dtype=np.float64),
        state=np.asarray(state.value).astype(np.uint32),
    )


def _rate_from_delta_t(where: str, delta_t: float) -> int:
    if not delta_t > 0:
        raise FrameFileError(f"{where}: delta_t = {delta_t!r} s, expected > 0")
    rate = 1.0 / float(delta_t)
    if abs(rate - round(rate)) > 1e-6 * rate:
        raise FrameFileError(f"{where}: delta_t = {delta_t!r} s gives {rate:g} Hz, expected an integer sample rate")
    return int(round(rate))


def _gps_ns(where: str, seconds: object) -> int:
    try:
        value = float(np.asarray(seconds).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise FrameFileError(f"{where}: start time {seconds!r}, expected GPS seconds") from None
    return seconds_to_ns(value)


def write_hdf5_layout_attrs(dataset: h5py.Dataset, start_gps: float, sample_rate_hz: int) -> None:
    """Set the mock-data layout attributes ``start_time`` (GPS s) and ``delta_t`` (s)."""
    dataset.attrs["start_time"] = start_gps
    dataset.attrs["delta_t"] = 1.0 / sample_rate_hz


def iter_hdf5_segments(
    path: str | os.PathLike, ifos: Sequence[str] | None = None, *, ifo: str | None = None
) -> Iterator[Hdf5Segment]:
    """Contiguous strain segments of an HDF5 file, sorted by GPS start then detector.

    Accepts the mock-data layout (``/<IFO>/<gps>`` datasets with
    ``start_time`` and ``delta_t``) or a single time-series dataset written
    by gwpy (``x0``/``dx`` attributes) or PyCBC (``start_time``/``delta_t``);
    the detector of the latter comes from ``ifo``, or the dataset's
    ``channel``/``name`` attribute (``"H1:..."``).

    Parameters
    ----------
    path : str or path-like
        HDF5 file; it stays open as long as any yielded segment's dataset
        is referenced.
    ifos : sequence of str, optional
        Detectors wanted (all found when None).
    ifo : str, optional
        Detector of a single-dataset file.

    Yields
    ------
    Hdf5Segment

    Raises
    ------
    FrameFileError
        Missing file, or a layout other than the two above (the message
        says what was found and what was expected).
    """
    path = str(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise FrameFileError(f"HDF5 file {path!r}: cannot open ({exc})") from None
    try:
        segments = _find_segments(fh, path, ifos, ifo)
    except BaseException:
        fh.close()
        raise
    # no explicit close: h5py keeps the file open while any yielded dataset lives
    yield from segments


def _find_segments(fh: h5py.File, path: str, ifos: Sequence[str] | None, ifo: str | None) -> list[Hdf5Segment]:
    groups = [k for k, v in fh.items() if isinstance(v, h5py.Group)]
    datasets = [k for k, v in fh.items() if isinstance(v, h5py.Dataset)]
    segments: list[Hdf5Segment] = []
    if groups:
        wanted = list(ifos) if ifos is not None else groups
        missing = [i for i in wanted if i not in groups]
        if missing:
            raise FrameFileError(
                f"HDF5 file {path!r}: found groups {sorted(groups)}, expected detector groups {list(wanted)}"
            )
        for name in wanted:
            for key, dset in fh[name].items():
                where = f"HDF5 file {path!r} dataset {name}/{key}"
                if not isinstance(dset, h5py.Dataset) or dset.ndim != 1:
                    raise FrameFileError(f"{where}: expected a 1-D dataset per segment")
                if "start_time" not in dset.attrs or "delta_t" not in dset.attrs:
                    raise FrameFileError(
                        f"{where}: found attributes {sorted(dset.attrs)}, expected 'start_time' and 'delta_t'"
                    )
                segments.append(Hdf5Segment(
                    ifo=name,
                    gps_start_ns=_gps_ns(where, dset.attrs["start_time"]),
                    sample_rate=_rate_from_delta_t(where, float(dset.attrs["delta_t"])),
                    dataset=dset,
                ))
    elif len(datasets) == 1:
        dset = fh[datasets[0]]
        where = f"HDF5 file {path!r} dataset {datasets[0]!r}"
        attrs = dset.attrs
        if dset.ndim != 1:
            raise FrameFileError(f"{where}: shape {dset.shape}, expected a 1-D time series")
        if "x0" in attrs and "dx" in attrs:
            start, delta_t = attrs["x0"], float(attrs["dx"])
        elif "start_time" in attrs and "delta_t" in attrs:
            start, delta_t = attrs["start_time"], float(attrs["delta_t"])
        else:
            raise FrameFileError(
                f"{where}: found attributes {sorted(attrs)}, expected 'x0'/'dx' (gwpy) or "
                "'start_time'/'delta_t' (PyCBC)"
            )
        name = ifo
        if name is None:
            for key in ("channel", "name"):
                label = attrs.get(key)
                if isinstance(label, bytes):
                    label = label.decode()
                if isinstance(label, str) and ":" in label:
                    name = label.split(":", 1)[0]
                    break
        if name is None:
            raise FrameFileError(
                f"{where}: no 'channel'/'name' attribute like 'H1:...', expected one or an explicit ifo"
            )
        if ifos is None or name in ifos:
            segments.append(Hdf5Segment(
                ifo=name, gps_start_ns=_gps_ns(where, start),
                sample_rate=_rate_from_delta_t(where, delta_t), dataset=dset,
            ))
        else:
            raise FrameFileError(f"{where}: holds detector {name!r}, expected one of {list(ifos)}")
    else:
        raise FrameFileError(
            f"HDF5 file {path!r}: found groups {sorted(groups)} and datasets {sorted(datasets)}, expected "
            "detector groups ('H1/', 'L1/') of segment datasets, or a single gwpy/PyCBC time-series dataset"
        )
    if not segments:
        raise FrameFileError(f"HDF5 file {path!r}: no strain segments found for {list(ifos or [])}")
    segments.sort(key=lambda s: (s.gps_start_ns, s.ifo))
    return segments


# ----------------------------------------------------------- injection tables
def write_injection_file(path: str | os.PathLike, table: Mapping[str, np.ndarray],
                         attrs: Mapping[str, object] | None = None) -> None:
    """Write an injection table to HDF5 atomically (:func:`gwstream.daemon.io.atomic.atomic_path`).

    Parameters
    ----------
    path : str or path-like
        Destination ``.hdf`` file.
    table : mapping of str to numpy.ndarray
        One column per key, equal lengths (:meth:`InjectionProjector.table`).
    attrs : mapping, optional
        More root attributes (how the injections were drawn: ``distance``,
        ``distance_mpc``, ``snr``, for :mod:`gwstream.daemon.eval.evaluate`).

    Notes
    -----
    One dataset per column; root attributes ``approximant``, ``ifos`` (from
    the ``optimal_snr_<IFO>`` columns) and ``n_injections``.
    """
    path = Path(path)
    lengths = {k: len(v) for k, v in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"injection table columns differ in length: {lengths}")
    ifos = [k[len("optimal_snr_"):] for k in table if k.startswith("optimal_snr_")]
    approximants = sorted({str(a) for a in table.get("approximant", [])})
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        for key, values in table.items():
            values = np.asarray(values)
            if values.dtype.kind in "UO":
                values = values.astype("S")
            fh.create_dataset(key, data=values)
        fh.attrs["approximant"] = ",".join(approximants)
        fh.attrs["ifos"] = ",".join(ifos)
        fh.attrs["n_injections"] = next(iter(lengths.values()), 0)
        for key, value in (attrs or {}).items():
            fh.attrs[key] = value


def read_injection_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an injection table written by :func:`write_injection_file`.

    Returns
    -------
    dict of str to numpy.ndarray
        One array per column; string columns decoded to ``str``.

    Raises
    ------
    FrameFileError
        Missing or unreadable file, or no ``tc`` column.
    """
    try:
        with h5py.File(path, "r") as fh:
            table = {}
            for key, dset in fh.items():
                if not isinstance(dset, h5py.Dataset):
                    continue
                values = dset[()]
                if values.dtype.kind == "S":
                    values = values.astype(str)
                table[key] = values
    except OSError as exc:
        raise FrameFileError(f"injection file {str(path)!r}: cannot read ({exc})") from None
    if "tc" not in table:
        raise FrameFileError(f"injection file {str(path)!r}: found columns {sorted(table)}, expected 'tc' among them")
    return table


# ------------------------------------------------------------- glitch tables
#: columns of a glitch table, in file order: detector, GPS of the centre/peak (s), population, optimal SNR in
#: that detector, central (blip, loud) or arch-top (scatter) frequency (Hz), quality factor (NaN for
#: scatter), duration (s; 2 tau for sine-Gaussians, the arch length for scatter)
GLITCH_COLUMNS = ("ifo", "time", "kind", "snr", "f0_hz", "q", "duration_s")
#: glitch populations (:mod:`gwstream.daemon.sim.glitches`)
GLITCH_KINDS = ("blip", "scatter", "loud")
_GLITCH_FORMAT = "gwstream-glitches-1"
_GLITCH_STRINGS = ("ifo", "kind")


def _check_glitch_table(where: str, table: Mapping[str, np.ndarray], error: type) -> dict[str, np.ndarray]:
    """The columns of ``table`` as typed arrays, or ``error`` naming ``where`` and the bad field."""
    missing = [c for c in GLITCH_COLUMNS if c not in table]
    if missing:
        raise error(f"glitch file {where}: column(s) {missing} missing, expected {list(GLITCH_COLUMNS)}")
    out: dict[str, np.ndarray] = {}
    for col in GLITCH_COLUMNS:
        values = np.asarray(table[col])
        if values.ndim != 1:
            raise error(f"glitch file {where}: column {col!r} has shape {values.shape}, expected one dimension")
        if col in _GLITCH_STRINGS:
            out[col] = values.astype(str)
        else:
            try:
                out[col] = values.astype(np.float64)
            except (TypeError, ValueError):
                raise error(f"glitch file {where}: column {col!r} is {values.dtype}, expected numbers") from None
    lengths = {c: len(v) for c, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise error(f"glitch file {where}: columns differ in length {lengths}")
    bad_kind = sorted({str(k) for k in out["kind"]} - set(GLITCH_KINDS))
    if bad_kind:
        raise error(f"glitch file {where}: column 'kind' holds {bad_kind}, expected values among {list(GLITCH_KINDS)}")
    for col, rule, ok in (("time", "finite GPS seconds", np.isfinite(out["time"])),
                          ("snr", "finite values > 0", np.isfinite(out["snr"]) & (out["snr"] > 0)),
                          ("f0_hz", "finite values > 0 Hz", np.isfinite(out["f0_hz"]) & (out["f0_hz"] > 0)),
                          ("q", "values > 0 or NaN", np.isnan(out["q"]) | (out["q"] > 0)),
                          ("duration_s", "finite values > 0 s",
                           np.isfinite(out["duration_s"]) & (out["duration_s"] > 0))):
        if not np.all(ok):
            i = int(np.flatnonzero(~ok)[0])
            raise error(f"glitch file {where}: column {col!r} row {i} = {float(out[col][i])!r}, expected {rule}")
    return out


def write_glitch_file(path: str | os.PathLike, table: Mapping[str, np.ndarray],
                      attrs: Mapping[str, object] | None = None) -> None:
    """Write a glitch table to HDF5 atomically.

    Parameters
    ----------
    path : str or path-like
        Destination ``.hdf`` file.
    table : mapping of str to numpy.ndarray
        The :data:`GLITCH_COLUMNS` (:meth:`gwstream.daemon.sim.simulate.Simulator.glitch_table`),
        equal lengths; other keys are refused.
    attrs : mapping, optional
        More root attributes (how the glitches were drawn: rates, ranges, duration).

    Raises
    ------
    ValueError
        A column missing, unknown, of another length, or holding an impossible value (the
        message names the file and the column).

    Notes
    -----
    One dataset per column (``ifo`` and ``kind`` as byte strings); root attributes ``format``
    (``gwstream-glitches-1``), ``ifos`` (comma-separated, sorted) and ``n_glitches``.
    """
    path = Path(path)
    extra = sorted(set(table) - set(GLITCH_COLUMNS))
    if extra:
        raise ValueError(f"glitch file {str(path)!r}: unknown column(s) {extra}, expected {list(GLITCH_COLUMNS)}")
    cols = _check_glitch_table(repr(str(path)), table, ValueError)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        for key in GLITCH_COLUMNS:
            values = cols[key]
            fh.create_dataset(key, data=values.astype("S") if key in _GLITCH_STRINGS else values)
        fh.attrs["format"] = _GLITCH_FORMAT
        fh.attrs["ifos"] = ",".join(sorted(set(cols["ifo"])))
        fh.attrs["n_glitches"] = len(cols["time"])
        for key, value in (attrs or {}).items():
            fh.attrs[key] = value


def read_glitch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a glitch table written by :func:`write_glitch_file`.

    Returns
    -------
    dict of str to numpy.ndarray
        The :data:`GLITCH_COLUMNS`; ``ifo`` and ``kind`` as ``str``, the others float64.

    Raises
    ------
    FrameFileError
        Missing or unreadable file, a missing column, columns of different lengths, an unknown
        ``kind`` or an impossible value (the message names the file and the column).
    """
    where = repr(str(path))
    if not Path(path).is_file():
        raise FrameFileError(f"glitch file {where}: no such file")
    try:
        with h5py.File(path, "r") as fh:
            table = {}
            for key, dset in fh.items():
                if not isinstance(dset, h5py.Dataset):
                    continue
                values = dset[()]
                if isinstance(values, np.ndarray) and values.dtype.kind == "S":
                    values = values.astype(str)
                table[key] = values
    except OSError as exc:
        raise FrameFileError(f"glitch file {where}: cannot read ({exc})") from None
    return _check_glitch_table(where, table, FrameFileError)
