"""``gwstream train``: compose the simulated, whitened windows with the training loop.

Writes the selected weights (``train.weights``, a :mod:`gwstream.models.scorer`
checkpoint) and, next to them, a model card (``<weights>.md``) and the
per-epoch history (``<weights>.json``).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from .config import Config
from .settings import section_to_dict
from .trainset import NoisePool, WaveformBank, WindowMaker, make_validation_set

__all__ = ["run_train", "curriculum"]

log = logging.getLogger(__name__)


def curriculum(epoch: int, start: tuple[float, float], end: tuple[float, float], n_epochs: int):
    """Network-SNR range of ``epoch``: linear from ``start`` to ``end`` over ``n_epochs``, then ``end``."""
    if n_epochs <= 0:
        return tuple(end)
    f = min(1.0, epoch / n_epochs)
    return (start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]))


def build_data(cfg: Config):
    """Training window maker and the held-out validation windows of ``cfg.train``."""
    t = cfg.train
    out = Path(t.out_dir)
    rate = cfg.data.analysis_rate_hz
    pool_kw = dict(psd_name=t.psd, n_variants=t.psd_variants, scale=t.psd_scale, tilt=t.psd_tilt,
                   fftlength_s=cfg.psd.fftlength_s, overlap=cfg.psd.overlap, average=cfg.psd.average,
                   fduration_s=cfg.whiten.fduration_s, highpass_hz=cfg.whiten.highpass_hz)
    bank = WaveformBank.generate(t.injections, t.n_waveforms, seed=t.seed, sample_rate_hz=rate,
                                 workers=t.workers, cache=out / "banks")
    val_bank = WaveformBank.generate(t.injections, t.n_val_waveforms, seed=t.seed + 10_000, sample_rate_hz=rate,
                                     workers=t.workers, cache=out / "banks")
    maker = WindowMaker(bank, NoisePool(cfg.data.ifos, rate, seed=t.seed, **pool_kw),
                        window_s=cfg.windows.window_s, merger_span_s=t.merger_span_s, stretch_s=t.stretch_s)
    val_maker = WindowMaker(val_bank, NoisePool(cfg.data.ifos, rate, seed=t.seed + 10_000, **pool_kw),
                            window_s=cfg.windows.window_s, merger_span_s=t.merger_span_s, stretch_s=t.stretch_s)
    validation = make_validation_set(val_maker, t.seed + 10_000, t.val_noise_windows, t.val_snrs,
                                     t.val_windows_per_snr)
    return maker, validation


def run_train(cfg: Config, *, progress: bool = True) -> dict:
    """Train ``cfg.train.model``; returns the final summary (also written next to the weights)."""
    import torch

    from gwstream.models.networks import build_model, count_parameters
    from gwstream.models.scorer import save_checkpoint
    from gwstream.models.train import fit

    t = cfg.train
    torch.set_num_threads(t.threads)
    t0 = time.monotonic()
    maker, validation = build_data(cfg)
    log.info("data ready: bank=%d validation=%d windows in %.1f s", len(maker.bank), validation[0].shape[0],
             time.monotonic() - t0)
    torch.manual_seed(t.seed)
    model = build_model(t.model)

    def make_epoch(epoch: int):
        snr_range = curriculum(epoch, t.snr_start, t.snr_end, t.curriculum_epochs)
        return maker.epoch((t.seed, epoch), t.windows_per_epoch, snr_range, t.signal_fraction)

    history = fit(model, make_epoch, validation, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                  weight_decay=t.weight_decay, seed=t.seed, out_dir=Path(t.out_dir) / t.model, progress=progress)
    wall = time.monotonic() - t0
    best = max(history, key=lambda h: (h["validation"]["tpr"]["0.001"].get("8", 0.0), h["validation"]["auc"]))
    meta = {
        "trained_by": "gwstream train", "config": section_to_dict(t), "psd": section_to_dict(cfg.psd),
        "whiten": section_to_dict(cfg.whiten), "windows": section_to_dict(cfg.windows),
        "merger_offset_s": float(np.mean(t.merger_span_s)), "selected_epoch": best["epoch"],
        "validation": best["validation"], "wall_s": round(wall, 1), "torch": torch.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "n_parameters": count_parameters(model),
    }
    weights = Path(t.weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, weights, meta=meta)
    weights.with_suffix(".json").write_text(json.dumps({"meta": meta, "history": history}, indent=1))
    log.info("wrote %s (epoch %d of %d, %.0f s)", weights, best["epoch"], len(history), wall)
    return meta
