"""``gwstream search``: an archive through the daemon's own pipeline, offline.

:func:`run_search` reads the mock-data HDF5 layout, gwpy/PyCBC HDF5 time
series, a GWF file or a directory of GWF files; the blocks come from the very
aligner the ingest process uses (:func:`file_blocks`), driven by the data's own
clock, so replay and search see the same blocks and report the same triggers.
It runs them through :class:`~gwstream.daemon.stream.pipeline.SearchStage` and
writes a trigger archive (:func:`~gwstream.daemon.io.archive.write_triggers`).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gwstream.daemon.config import Config
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.alerts import event_id
from gwstream.daemon.io.archive import write_triggers
from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.io.wire import Block
from gwstream.daemon.stream.aligner import Aligner, EndOfStream, Gap
from gwstream.daemon.stream.pipeline import SearchStage
from gwstream.daemon.units import NS, samples_to_ns, seconds_to_ns

from .preflight import load_scorer

__all__ = ["file_blocks", "group_ns", "grouped", "input_duration_s", "input_paths", "input_segments", "run_search",
           "write_search_output"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ inputs
def input_paths(inputs) -> list[Path]:
    """One input or several, as a list of paths (an empty list is an error naming what was expected)."""
    if isinstance(inputs, (str, Path)):
        return [Path(inputs)]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise FrameFileError("no input given (expected HDF5 files, GWF files or GWF directories)")
    return paths


def _frames(path: Path, cfg: Config, start_ns: int | None = None, end_ns: int | None = None,
            unreadable: list | None = None) -> Iterator:
    from gwstream.daemon.proc.sources import gwf_archive_frames, hdf5_frames

    d = cfg.data
    if path.is_dir():
        return gwf_archive_frames(path, d.ifos, strain_channel=d.strain_channel, state_channel=d.state_channel,
                                  start_gps=None if start_ns is None else int(start_ns // NS),
                                  end_gps=None if end_ns is None else int(-(-end_ns // NS)), unreadable=unreadable)
    if path.suffix == ".gwf":
        return _single_gwf_frames(path, cfg)
    if path.suffix in (".h5", ".hdf", ".hdf5"):
        return hdf5_frames(path, d.ifos, frame_s=cfg.ingest.block_s, strain_channel=d.strain_channel,
                           state_word=d.state_mask, start_ns=start_ns, end_ns=end_ns)
    raise FrameFileError(f"{path}: expected an HDF5 file (.h5/.hdf/.hdf5), a .gwf file or a directory of GWF files")


def _input_frames(paths: list[Path], cfg: Config, start_ns: int | None, end_ns: int | None,
                  unreadable: list | None) -> Iterator:
    """The frames of every input in ``[start_ns, end_ns)``, merged in time (detectors in config order)."""
    order = {ifo: k for k, ifo in enumerate(cfg.data.ifos)}

    def one(path):
        for frame in _frames(path, cfg, start_ns, end_ns, unreadable):
            if (start_ns is None or frame.gps_ns >= start_ns) and (end_ns is None or frame.gps_ns < end_ns):
                yield frame.gps_ns, order.get(frame.ifo, len(order)), frame

    if len(paths) == 1:
        return (f for _, _, f in one(paths[0]))
    return (f for _, _, f in heapq.merge(*(one(p) for p in paths), key=lambda t: (t[0], t[1])))


def _single_gwf_frames(path: Path, cfg: Config) -> Iterator:
    """Frames of one (possibly multi-second, multi-detector) GWF file, cut into blocks."""
    from gwpy.timeseries import TimeSeries
    from gwstream.daemon.io.wire import Frame

    d = cfg.data
    per_ifo = []
    for ifo in d.ifos:
        try:
            ts = TimeSeries.read(str(path), f"{ifo}:{d.strain_channel}")
        except Exception as exc:  # noqa: BLE001 - any reader failure names the file and channel
            raise FrameFileError(f"{path}: cannot read {ifo}:{d.strain_channel} ({exc})") from None
        per_ifo.append((ifo, ts))
    out = []
    for k, (ifo, ts) in enumerate(per_ifo):
        rate = int(round(ts.sample_rate.value))
        n = int(round(cfg.ingest.block_s * rate))
        t0 = seconds_to_ns(ts.t0.value)
        x = np.asarray(ts.value, dtype=np.float64)
        for i, a in enumerate(range(0, x.size, n)):
            out.append((t0 + samples_to_ns(a, rate), k, Frame(ifo, f"{ifo}:{d.strain_channel}", t0 + samples_to_ns(a, rate), rate,
                                                      x[a:a + n], (d.state_mask,), i)))
    out.sort(key=lambda t: (t[0], t[1]))
    return iter(f for _, _, f in out)


def input_segments(inputs, cfg: Config, *, unreadable: list | None = None) -> list[tuple[int, int]]:
    """GPS ns ``[start, end)`` stretches (merged, sorted) where any input holds data of the first detector.

    An input that cannot be read (a damaged HDF5 file, a GWF file without the
    strain channel) is left out; with ``unreadable`` it is listed there as
    ``(path, reason)``, otherwise the error propagates.
    """
    from gwstream.daemon.io.framefiles import iter_hdf5_segments, parse_gwf_name

    ifo = cfg.data.ifos[0]
    spans: list[tuple[int, int]] = []
    for path in input_paths(inputs):
        try:
            if not path.exists():
                raise FrameFileError(f"{path}: no such file or directory")
            if path.is_dir():
                for f in sorted(path.glob(f"*-{ifo}_*.gwf")):
                    try:
                        _obs, _type, gps, dur = parse_gwf_name(f.name)
                    except FrameFileError:
                        continue
                    spans.append((gps * NS, (gps + dur) * NS))
            elif path.suffix == ".gwf":
                frames = [f for f in _single_gwf_frames(path, cfg) if f.ifo == ifo]
                spans += [(f.gps_ns, f.end_ns) for f in frames]
            elif path.suffix in (".h5", ".hdf", ".hdf5"):
                spans += [(s.gps_start_ns, s.gps_start_ns + s.duration_ns) for s in iter_hdf5_segments(path, [ifo])]
            else:
                raise FrameFileError(f"{path}: expected an HDF5 file (.h5/.hdf/.hdf5), a .gwf file or a directory "
                                     "of GWF files")
        except (FrameFileError, OSError, KeyError, ValueError) as exc:
            if unreadable is None:
                raise
            log.error("input %s left out: %s", path, exc)
            unreadable.append((str(path), str(exc)))
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def input_duration_s(inputs, cfg: Config) -> float | None:
    """Seconds of data per detector in the inputs (for a progress bar), or None when unknown."""
    try:
        return sum(b - a for a, b in input_segments(inputs, cfg)) / NS
    except Exception:  # noqa: BLE001 - the progress bar is optional
        return None


def file_blocks(inputs, cfg: Config, *, counters: Counter | None = None, start_ns: int | None = None,
                end_ns: int | None = None, unreadable: list | None = None) -> Iterator[Block]:
    """Aligned blocks of an archive (one input or several), through the ingest stage's
    :class:`~gwstream.daemon.stream.aligner.Aligner`.

    The aligner's clock is the data's own (each frame's end time), so late
    timeouts mean the same as live and a detector missing from part of the
    archive becomes a gap, not a stall. ``start_ns``/``end_ns`` keep the
    frames that start in ``[start_ns, end_ns)``: the blocks of a stretch are
    those of the whole archive over that stretch. A GWF file that cannot be
    read is a gap, listed in ``unreadable`` as ``(path, reason)``.
    """
    paths = input_paths(inputs)
    for path in paths:
        if not path.exists():
            raise FrameFileError(f"{path}: no such file or directory")
    aligner = Aligner.from_config(_learn_rate(cfg))
    counters = counters if counters is not None else Counter()

    def emit(items):
        for item in items:
            if isinstance(item, Block):
                yield item
            elif isinstance(item, Gap):
                counters["gaps"] += 1

    now = 0
    for frame in _input_frames(paths, cfg, start_ns, end_ns, unreadable):
        now = max(now, frame.end_ns)
        yield from emit(aligner.add(frame, now))
    yield from emit(x for x in aligner.flush() if not isinstance(x, EndOfStream))
    counters.update({k: v for k, v in aligner.counters.items() if k.startswith("rejected")})


def group_ns(cfg: Config) -> int:
    """Length (ns) of the GPS grid cells whose blocks a factorized encoder takes in one pass."""
    return int(cfg.model.group_blocks) * cfg.ingest.block_ns


def grouped(blocks: Iterator[Block], cell_ns: int) -> Iterator[list[Block]]:
    """Consecutive blocks, grouped by the ``cell_ns`` GPS grid cell they start in.

    The groups are fixed by absolute time, not by how many blocks came
    before, so a search of any stretch of an archive groups its blocks as a
    search of the whole archive does (what makes a span of a distributed
    search score exactly what one process scores).
    """
    batch: list[Block] = []
    for block in blocks:
        if batch and block.gps_ns // cell_ns != batch[0].gps_ns // cell_ns:
            yield batch
            batch = []
        batch.append(block)
    if batch:
        yield batch


def _learn_rate(cfg: Config) -> Config:
    """``cfg`` with ``data.input_rate_hz = 0``: an archive's rate is whatever its files hold."""
    import dataclasses

    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_rate_hz=0))


# ------------------------------------------------------------------ command
def run_search(input_path, output: str | Path, cfg: Config, *, model: str | Path | None = None,
               n_slides: int | None = None, background_out: str | Path | None = None,
               progress: bool = True, followup_dir: str | Path | None = None,
               followup_far_hz: float = 1.0 / 86400) -> dict:
    """``gwstream search``: analyse an archive (one input or several), write its triggers (and optionally its
    background).

    With ``followup_dir``, every trigger whose FAR when it was ranked is at
    most ``followup_far_hz`` gets the follow-up's template and SNR series, written as
    ``<followup_dir>/<event_id>.xml`` (coinc.xml with the PSDs: what
    ``gwstream localize`` and BAYESTAR read).
    """
    t0 = time.monotonic()
    scorer = load_scorer(cfg, model)
    stage = SearchStage(cfg, scorer, n_slides=n_slides, snapshots=followup_dir is not None)
    followup = None
    if followup_dir is not None:
        from gwstream.daemon.followup.event import Followup

        followup = Followup.from_config(cfg, scorer.model)
    counters: Counter[str] = Counter()
    triggers: list[Trigger] = []
    total = input_duration_s(input_path, cfg)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="s", desc="search", leave=False)
    data_s = 0.0
    unreadable: list = []
    blocks = file_blocks(input_path, cfg, counters=counters, unreadable=unreadable)

    def follow(found: list[Trigger], final: bool = False) -> None:
        if followup is None:
            return
        for t in found:
            if t.far <= followup_far_hz:
                stage.request_snapshot(t, event_id(t.gps_ns))
        for snap in stage.snapshots(final=final):
            followup.write_coinc(snap, followup_dir, ifos=cfg.data.ifos, model_name=scorer.name,
                                 model_sha256=scorer.sha256, counters=counters)

    for batch in grouped(blocks, group_ns(cfg)):
        for found in stage.process_many(batch):
            triggers += found
            follow(found)
        seconds = sum(b.duration_ns for b in batch) / NS
        data_s += seconds
        if bar is not None:
            bar.update(seconds)
    last = stage.finish()
    triggers += last
    follow(last, final=True)
    if bar is not None:
        bar.close()
    wall = time.monotonic() - t0
    bg = stage.background
    summary = {
        "input": _input_name(input_path), "data_s": data_s, "wall_s": round(wall, 2),
        "speed_x_real_time": round(data_s / wall, 1) if wall > 0 else None,
        "n_triggers": len(triggers), "livetime_s": stage.ranking.foreground_livetime_s,
        "background_livetime_s": bg.livetime_s, "n_slides": stage.n_slides, "model": scorer.name,
        "model_sha256": scorer.sha256, "merger_offset_s": stage.merger_offset_s,
        "counters": dict(stage.counters) | dict(counters),
        "unreadable": [{"file": f, "error": e} for f, e in unreadable],
        "gates": [{"ifo": i, "gps": t, "peak_sigma": p} for i, t, p in stage.gates],
        "removal_stat": stage.ranking.removal_stat,
    }
    write_search_output(output, triggers, summary, stage.analysed_segments(), bg, background_out)
    log.info("search done: %.0f s of data in %.1f s (%.0fx real time), %d triggers, live %.0f s, background "
             "%.3g s from %d slides", data_s, wall, data_s / max(wall, 1e-9), len(triggers),
             stage.ranking.foreground_livetime_s, bg.livetime_s, stage.n_slides)
    return summary


def _input_name(inputs) -> str:
    return " ".join(str(p) for p in input_paths(inputs))


def write_search_output(output, triggers: list[Trigger], summary: dict, segments: np.ndarray, background,
                        background_out=None) -> None:
    """The trigger archive (``summary`` as its attributes, nested values as JSON) and, optionally, the background."""
    attrs = {k: v for k, v in summary.items() if v is not None and k != "gates"}
    write_triggers(output, triggers, attrs=attrs, segments=segments, gates=summary.get("gates"))
    if background_out:
        background.save(background_out)
