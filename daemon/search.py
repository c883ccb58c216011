"""The search: aligned blocks -> conditioning -> scoring with time slides -> ranked triggers.

:class:`SearchStage` is the one pipeline the daemon runs on live blocks and
``gwstream search`` runs offline: :class:`~gwstream.daemon.conditioning.Conditioner`,
:class:`~gwstream.daemon.scoring.SlideScorer` and
:class:`~gwstream.daemon.ranking.RankingStage`, fed :class:`~gwstream.daemon.wire.Block`
objects. Offline, the blocks come from the very aligner the ingest process
uses (:func:`file_blocks`), driven by the data's own clock, so replay and
search see the same blocks and report the same triggers.

:func:`run_search` is ``gwstream search INPUT OUTPUT``: it reads the mock-data
HDF5 layout, gwpy/PyCBC HDF5 time series, a GWF file or a directory of GWF
files, and writes a trigger archive (:func:`write_triggers`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .aligner import Aligner, EndOfStream, Gap
from .archive import read_triggers, write_triggers
from .background import Background
from .conditioning import Conditioned, Conditioner, Status
from .config import Config
from .errors import ConfigError, FrameFileError
from .preflight import check_initial_background, check_whitening, conditioning_meta, default_model_path, preflight
from .ranking import RankingStage, Trigger
from .scoring import SlideScorer
from .wire import Block

__all__ = ["SearchStage", "default_model_path", "load_scorer", "check_whitening", "check_initial_background",
           "preflight", "file_blocks", "input_duration_s", "run_search", "write_triggers", "read_triggers"]

log = logging.getLogger(__name__)
NS = 1_000_000_000


def load_scorer(cfg: Config, path: str | Path | None = None):
    """The :class:`~gwstream.models.scorer.Scorer` of ``path``, else ``cfg.model.path``, else the shipped model."""
    from gwstream.models.scorer import Scorer

    path = Path(path or cfg.model.path or default_model_path())
    try:
        return Scorer.from_checkpoint(path, device=cfg.model.device, batch_size=cfg.model.batch_size,
                                      threads=cfg.model.threads or None)
    except (OSError, ValueError) as exc:  # the message preflight gives, for a file it could not fully check
        raise ConfigError("model.path", str(path), f"a readable checkpoint ({exc})") from None


class SearchStage:
    """Blocks in, zero-lag triggers with FARs out.

    Parameters
    ----------
    cfg : Config
        Sections data, psd, whiten, windows, ranking.
    scorer : gwstream.models.scorer.Scorer
    n_slides : int, optional
        Overrides the configured number of time slides.
    background : Background, optional
        Precomputed background to start from (``ranking.background_init`` otherwise).

    Attributes
    ----------
    ranking : RankingStage
    counters : collections.Counter
        blocks, windows, gaps, warmup_blocks, triggers.
    """

    def __init__(self, cfg: Config, scorer, *, n_slides: int | None = None, background: Background | None = None):
        self.cfg = cfg
        self.scorer = scorer
        model = scorer.model
        r = cfg.ranking
        if n_slides is None:
            n_slides = r.n_slides_joint if model.joint else r.n_slides
        self.n_slides = int(n_slides)
        check_whitening(cfg, scorer.meta)
        rate = cfg.data.analysis_rate_hz
        self.stride_samples = int(round(cfg.windows.stride_s * rate))
        stride_ns = self.stride_samples * NS // rate
        span = tuple(scorer.meta.get("merger_offset_span_s") or
                     scorer.meta.get("config", {}).get("merger_span_s") or (0.5, 0.9))
        self.merger_offset_s = float(scorer.meta.get("merger_offset_s", float(np.mean(span))))
        var_s = r.var_s or (span[1] - span[0]) / 2 + cfg.windows.stride_s
        if background is None and r.background_init:
            background = Background.load(r.background_init)
        meta = {"model_sha256": scorer.sha256 or "in-memory", "model": model.name,
                "slide_step_s": float(r.slide_step_s), "window_s": float(cfg.windows.window_s),
                "analysis_rate_hz": int(rate), **conditioning_meta(cfg)}
        self.slides = SlideScorer(scorer, sample_rate_hz=rate, stride_samples=self.stride_samples,
                                  slide_step_samples=int(round(r.slide_step_s * rate)), n_slides=self.n_slides)
        templates = getattr(model, "template_pairs", 0) and r.template_time_snr > 0
        self.ranking = RankingStage(stride_ns=stride_ns, cluster_window_s=r.cluster_window_s,
                                    merger_offset_ns=int(round(self.merger_offset_s * NS)), var_s=var_s,
                                    time_plateau=r.time_plateau, locate=self._locate if templates else None,
                                    n_slides=self.n_slides, background=background, meta=meta,
                                    n_exact=r.background_exact)
        self.conditioner: Conditioner | None = None
        self.segments: list[list[int]] = []  # analysed zero-lag window starts, merged: [first, last] grid index
        self.counters: Counter[str] = Counter()
        self.last_block_end_ns: int | None = None

    def _locate(self, first: int, last: int) -> int | None:
        """GPS ns of the merger the template branch finds in zero-lag windows ``first .. last``, or None."""
        hit = self.slides.locate(first, last, self.cfg.ranking.template_time_snr)
        if hit is None:
            return None
        rate = self.cfg.data.analysis_rate_hz
        return (hit[0] // rate) * NS + (hit[0] % rate) * NS // rate

    @property
    def background(self) -> Background:
        return self.ranking.background

    def process(self, block: Block) -> list[Trigger]:
        """Analyse one aligned block; returns the triggers it completes."""
        return self.process_many([block])[0]

    def process_many(self, blocks: list[Block]) -> list[list[Trigger]]:
        """Analyse consecutive blocks; returns the triggers each completes, as :meth:`process` block by block.

        The encoder of a factorized model runs once over each contiguous
        stretch of the blocks' whitened stream instead of once per block
        (a joint model takes them one by one),
        which is what makes a backlog (a replay at full speed, a restart
        catching up) cheaper to clear. Statistics, triggers and FARs are those
        of block-by-block processing (tested bit for bit).
        """
        if self.conditioner is None and blocks:
            # a factorized model scores the whitened stream: its windows need not be copied out
            self.conditioner = Conditioner.from_config(self.cfg, input_rate_hz=blocks[0].sample_rates[0],
                                                       copy_windows=self.scorer.model.joint)
        out: list[list[Trigger]] = []
        run: list[Conditioned] = []

        def flush() -> None:
            self.slides.feed(run)
            out.extend(self._rank(scored) for scored in self.slides.score_many(run))
            run.clear()

        for block in blocks:
            cond = self.conditioner.process(block)
            self.counters["blocks"] += 1
            self.last_block_end_ns = block.end_ns
            if cond.status is Status.GAP:
                self.counters["gaps"] += 1
            elif cond.status is Status.WARMING_UP:
                self.counters["warmup_blocks"] += 1
            if run and not SlideScorer.continues(run[-1], cond):
                flush()
            run.append(cond)
            if self.scorer.model.joint:
                flush()  # a joint model scores the conditioner's windows, which the next block overwrites
        flush()
        return out

    def _rank(self, scored: tuple[int, np.ndarray, np.ndarray] | None) -> list[Trigger]:
        if scored is None:
            return []
        first, stats, valid = scored
        self._track_segments(first, valid[0])
        self.counters["windows"] += stats.shape[1]
        self.counters["valid_windows"] += int(valid[0].sum())
        triggers = self.ranking.add(first, stats, valid)
        self.counters["triggers"] += len(triggers)
        return triggers

    def _track_segments(self, first: int, ok: np.ndarray) -> None:
        idx = first + np.nonzero(ok)[0]
        if not idx.size:
            return
        breaks = np.nonzero(np.diff(idx) != 1)[0]
        runs = zip(np.concatenate([[idx[0]], idx[breaks + 1]]), np.concatenate([idx[breaks], [idx[-1]]]))
        for a, b in runs:
            if self.segments and self.segments[-1][1] + 1 == a:
                self.segments[-1][1] = int(b)
            else:
                self.segments.append([int(a), int(b)])

    def analysed_segments(self) -> np.ndarray:
        """GPS seconds ``(n, 2)`` of trigger (merger) times the analysed windows cover, ``[start, end)``."""
        stride_ns = self.ranking.stride_ns
        off = self.ranking.merger_offset_ns
        seg = np.array(self.segments, dtype=np.int64).reshape(-1, 2)
        return np.stack([(seg[:, 0] * stride_ns + off) / NS, ((seg[:, 1] + 1) * stride_ns + off) / NS], axis=1) \
            if seg.size else np.zeros((0, 2))

    def finish(self) -> list[Trigger]:
        """End of data: the last open clusters become triggers."""
        triggers = self.ranking.flush()
        self.counters["triggers"] += len(triggers)
        return triggers


# ------------------------------------------------------------------ inputs
def _frames(path: Path, cfg: Config) -> Iterator:
    from .sources import gwf_archive_frames, hdf5_frames

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

    from .wire import Frame

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
        t0 = int(round(ts.t0.value * NS))
        x = np.asarray(ts.value, dtype=np.float64)
        for i, a in enumerate(range(0, x.size, n)):
            out.append((t0 + a * NS // rate, k, Frame(ifo, f"{ifo}:{d.strain_channel}", t0 + a * NS // rate, rate,
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
            from .framefiles import iter_hdf5_segments

            return sum(s.duration_ns for s in iter_hdf5_segments(path, [cfg.data.ifos[0]])) / NS
    except Exception:  # noqa: BLE001 - the progress bar is optional
        return None
    return None


def file_blocks(path: str | Path, cfg: Config, *, counters: Counter | None = None) -> Iterator[Block]:
    """Aligned blocks of an archive, through the ingest stage's :class:`~gwstream.daemon.aligner.Aligner`.

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
               progress: bool = True) -> dict:
    """``gwstream search``: analyse an archive, write its triggers (and optionally its background)."""
    t0 = time.monotonic()
    scorer = load_scorer(cfg, model)
    stage = SearchStage(cfg, scorer, n_slides=n_slides)
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
    while batch := list(itertools.islice(blocks, group)):
        for found in stage.process_many(batch):
            triggers += found
        seconds = sum(b.duration_ns for b in batch) / NS
        data_s += seconds
        if bar is not None:
            bar.update(seconds)
    triggers += stage.finish()
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
