"""``gwstream search``: an archive through the daemon's own pipeline, offline.

:func:`run_search` reads the mock-data HDF5 layout, gwpy/PyCBC HDF5 time
series, a GWF file or a directory of GWF files; the blocks come from the very
aligner the ingest process uses (:func:`file_blocks`), driven by the data's own
clock, so replay and search see the same blocks and report the same triggers.
It runs them through :class:`~gwstream.daemon.stream.pipeline.SearchStage` and
writes a trigger archive (:func:`~gwstream.daemon.io.archive.write_triggers`).
"""

from __future__ import annotations

import itertools
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

__all__ = ["file_blocks", "input_duration_s", "run_search"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ inputs
def _frames(path: Path, cfg: Config) -> Iterator:
    from gwstream.daemon.proc.sources import gwf_archive_frames, hdf5_frames

    d = cfg.data
    if path.is_dir():
        return gwf_archive_frames(path, d.ifos, strain_channel=d.strain_channel, state_channel=d.state_channel)
    if path.suffix == ".gwf":
        return _single_gwf_frames(path, cfg)
    if path.suffix in (".h5", ".hdf", ".hdf5"):
        return hdf5_frames(path, d.ifos, frame_s=cfg.ingest.block_s, strain_channel=d.strain_channel,
                           state_word=d.state_mask)
    raise FrameFileError(f"{path}: expected an HDF5 file (.h5/.hdf/.hdf5), a .gwf file or a directory of GWF files")


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


def input_duration_s(path: str | Path, cfg: Config) -> float | None:
    """Seconds of data per detector in ``path`` (for a progress bar), or None when unknown."""
    path = Path(path)
    try:
        if path.is_dir():
            return float(len(list(path.glob(f"*-{cfg.data.ifos[0]}_*.gwf"))))
        if path.suffix in (".h5", ".hdf", ".hdf5"):
            from gwstream.daemon.io.framefiles import iter_hdf5_segments

            return sum(s.duration_ns for s in iter_hdf5_segments(path, [cfg.data.ifos[0]])) / NS
    except Exception:  # noqa: BLE001 - the progress bar is optional
        return None
    return None


def file_blocks(path: str | Path, cfg: Config, *, counters: Counter | None = None) -> Iterator[Block]:
    """Aligned blocks of an archive, through the ingest stage's :class:`~gwstream.daemon.stream.aligner.Aligner`.

    The aligner's clock is the data's own (each frame's end time), so late
    timeouts mean the same as live and a detector missing from part of the
    archive becomes a gap, not a stall.
    """
    path = Path(path)
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
    for frame in _frames(path, cfg):
        now = max(now, frame.end_ns)
        yield from emit(aligner.add(frame, now))
    yield from emit(x for x in aligner.flush() if not isinstance(x, EndOfStream))
    counters.update({k: v for k, v in aligner.counters.items() if k.startswith("rejected")})


def _learn_rate(cfg: Config) -> Config:
    """``cfg`` with ``data.input_rate_hz = 0``: an archive's rate is whatever its files hold."""
    import dataclasses

    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_rate_hz=0))


# ------------------------------------------------------------------ command
def run_search(input_path: str | Path, output: str | Path, cfg: Config, *, model: str | Path | None = None,
               n_slides: int | None = None, background_out: str | Path | None = None,
               progress: bool = True, followup_dir: str | Path | None = None,
               followup_far_hz: float = 1.0 / 86400) -> dict:
    """``gwstream search``: analyse an archive, write its triggers (and optionally its background).

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
    group = cfg.model.group_blocks  # > 0: checked by the config
    blocks = file_blocks(input_path, cfg, counters=counters)
    def follow(found: list[Trigger], final: bool = False) -> None:
        if followup is None:
            return
        for t in found:
            if t.far <= followup_far_hz:
                stage.request_snapshot(t, event_id(t.gps_ns))
        for snap in stage.snapshots(final=final):
            followup.write_coinc(snap, followup_dir, ifos=cfg.data.ifos, model_name=scorer.name,
                                 model_sha256=scorer.sha256, counters=counters)

    while batch := list(itertools.islice(blocks, group)):
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
        "input": str(input_path), "data_s": data_s, "wall_s": round(wall, 2),
        "speed_x_real_time": round(data_s / wall, 1) if wall > 0 else None,
        "n_triggers": len(triggers), "livetime_s": stage.ranking.foreground_livetime_s,
        "background_livetime_s": bg.livetime_s, "n_slides": stage.n_slides, "model": scorer.name,
        "model_sha256": scorer.sha256, "merger_offset_s": stage.merger_offset_s,
        "counters": dict(stage.counters) | dict(counters),
    }
    attrs = {k: v for k, v in summary.items() if k not in ("counters",) and v is not None}
    attrs["counters"] = summary["counters"]
    write_triggers(output, triggers, attrs=attrs, segments=stage.analysed_segments())
    if background_out:
        bg.save(background_out)
    log.info("search done: %.0f s of data in %.1f s (%.0fx real time), %d triggers, live %.0f s, background "
             "%.3g s from %d slides", data_s, wall, data_s / max(wall, 1e-9), len(triggers),
             stage.ranking.foreground_livetime_s, bg.livetime_s, stage.n_slides)
    return summary
