"""``gwstream train``: compose the simulated, whitened windows with the training loop.

Writes the selected weights (``train.weights``, a :mod:`gwstream.models.scorer`
checkpoint) and, next to them, a model card (``<weights>.md``) and the
per-epoch history (``<weights>.json``).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .config import Config
from .settings import section_to_dict
from .trainset import NoisePool, WaveformBank, WindowMaker, make_validation_set

__all__ = ["run_train", "curriculum", "model_card"]

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
                   fduration_s=cfg.whiten.fduration_s, highpass_hz=cfg.whiten.highpass_hz,
                   phase=cfg.whiten.phase)
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
    from gwstream.models.scorer import load_checkpoint, save_checkpoint

    from .errors import ConfigError
    from gwstream.models.train import fit

    t = cfg.train
    torch.set_num_threads(t.threads)
    t0 = time.monotonic()
    maker, validation = build_data(cfg)
    log.info("data ready: bank=%d validation=%d windows in %.1f s", len(maker.bank), validation[0].shape[0],
             time.monotonic() - t0)
    torch.manual_seed(t.seed)
    model = build_model(t.model)
    if t.init_weights:
        init, _, init_sha = load_checkpoint(t.init_weights)
        if type(init) is not type(model):
            raise ConfigError("train.init_weights", t.init_weights,
                              f"a {t.model} checkpoint (it holds {type(init).__name__})")
        model = init
        log.info("fine-tuning from %s (sha256 %s)", t.init_weights, init_sha[:12])

    def make_epoch(epoch: int):
        snr_range = curriculum(epoch, t.snr_start, t.snr_end, t.curriculum_epochs)
        return maker.epoch((t.seed, epoch), t.windows_per_epoch, snr_range, t.signal_fraction,
                           single_fraction=t.single_ifo_fraction, single_snr_range=t.single_ifo_snr,
                           loud_fraction=t.loud_fraction, loud_snr_range=t.loud_snr)

    history = fit(model, make_epoch, validation, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                  weight_decay=t.weight_decay, seed=t.seed, out_dir=Path(t.out_dir) / t.model, progress=progress)
    wall = time.monotonic() - t0
    best = max(history, key=lambda h: (h["validation"]["tpr"]["0.001"].get("8", 0.0), h["validation"]["auc"]))
    meta = {
        "command": " ".join(["gwstream", *sys.argv[1:]]) if sys.argv and "gwstream" in sys.argv[0] else
        "gwstream train", "config": section_to_dict(t), "psd": section_to_dict(cfg.psd),
        "whiten": section_to_dict(cfg.whiten), "windows": section_to_dict(cfg.windows),
        "merger_offset_s": float(np.mean(t.merger_span_s)), "selected_epoch": best["epoch"],
        "validation": best["validation"], "wall_s": round(wall, 1), "torch": torch.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "n_parameters": count_parameters(model),
    }
    if t.init_weights:
        meta["init_sha256"] = init_sha
    weights = Path(t.weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, weights, meta=meta)
    weights.with_suffix(".json").write_text(json.dumps({"meta": meta, "history": history}, indent=1))
    weights.with_suffix(".md").write_text(model_card(weights, meta, history, model))
    log.info("wrote %s (epoch %d of %d, %.0f s)", weights, best["epoch"], len(history), wall)
    return meta


def model_card(weights: Path, meta: dict, history: list[dict], model) -> str:
    """Markdown model card: what the network is, how it was trained, how it scores."""
    import hashlib

    t = meta["config"]
    v = meta["validation"]
    sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    snr_bins = [k for k in v["tpr"]["0.001"] if k != "all"]
    lines = [
        f"# Model card: `{Path(weights).name}`",
        "",
        f"- **Network**: `{t['model']}` ({type(model).__name__}), {meta['n_parameters']:,} parameters; "
        f"input whitened H1/L1 windows `[B, 2, 2048]` (1 s at 2048 Hz), output an unbounded logit (ranking statistic).",
        f"- **Hyper-parameters**: `{json.dumps(getattr(model, 'hparams', {}))}`",
        f"- **sha256**: `{sha}`",
        f"- **Trained by**: `{meta.get('command', 'gwstream train')}` (seed {t['seed']}), torch {meta['torch']}, "
        f"{meta['machine']}, {meta['wall_s'] / 60:.1f} min wall including data generation.",
        f"- **Data**: {t['windows_per_epoch']} fresh windows per epoch ({t['signal_fraction']:.0%} with a signal) for "
        f"{t['epochs']} epochs. Noise: stationary Gaussian from `{t['psd']}` and {t['psd_variants'] - 1} perturbed "
        f"variants (scale up to x{t['psd_scale']} either way, tilt (f/100 Hz)^±{t['psd_tilt']}), whitened with a PSD "
        f"*estimated* (median Welch, {meta['psd']['fftlength_s']} s segments) from each {t['stretch_s']}-s stretch "
        f"and the daemon's {meta['whiten']['fduration_s']}-s {meta['whiten'].get('phase', 'linear')}-phase FIR "
        f"(high-pass {meta['whiten']['highpass_hz']} Hz). "
        f"Signals: {t['n_waveforms']} pycbc `{t['injections']['approximant']}` waveforms, masses "
        f"{t['injections']['mass1_msun']} M☉, spins `{t['injections']['spin']}` ≤ {t['injections']['spin_max']}, "
        f"isotropic sky and orientation, merger uniformly in {t['merger_span_s']} s of the window "
        f"(trigger time = window start + {meta['merger_offset_s']:.2f} s), network SNR curriculum "
        f"{t['snr_start']} → {t['snr_end']} over {t['curriculum_epochs']} epochs."
        + (f" A further {t.get('single_ifo_fraction', 0):.0%} of the windows hold a signal in *one* detector only "
           f"(single-detector SNR uniform in {t.get('single_ifo_snr')}), labelled noise: a coincidence statistic "
           f"must rank a time-slid event or a single-detector glitch as noise." if t.get("single_ifo_fraction")
           else "")
        + (f" A {t.get('loud_fraction', 0):.0%} share of the coincident signals instead has a network SNR log-uniform "
           f"in {t.get('loud_snr')}, so the statistic keeps rising with SNR." if t.get("loud_fraction") else ""),
        *([f"- **Initialised from**: `{t['init_weights']}` (sha256 `{meta.get('init_sha256', '?')}`), i.e. this run "
           f"fine-tunes that checkpoint (see its own model card for how it was trained); the wall time above is the "
           f"fine-tuning alone."] if t.get("init_weights") else []),
        f"- **Selected epoch**: {meta['selected_epoch']} of {len(history)} (highest TPR at per-window FPR 1e-3, SNR 8).",
        "",
        f"## Validation (held out: {v['n_noise']} noise windows, {t['val_windows_per_snr']} signal windows per SNR, "
        f"waveforms and noise from seeds disjoint from training)",
        "",
        "| per-window FPR | " + " | ".join(f"TPR @ SNR {b}" for b in snr_bins) + " | AUC |",
        "|---|" + "---|" * (len(snr_bins) + 1),
    ]
    for fpr in v["tpr"]:
        row = v["tpr"][fpr]
        lines.append(f"| {fpr} | " + " | ".join(f"{row[b]:.3f}" for b in snr_bins) + f" | {v['auc']:.4f} |")
    lines += [
        "",
        "AUC per SNR bin: " + ", ".join(f"{b}: {v['auc_by_snr'][b]:.4f}" for b in snr_bins) + ".",
        "",
        "With this validation size a per-window FPR of 1e-4 rests on the few loudest noise windows; the "
        "issue-4 comparison against matched filtering on 10^5 noise windows is `benchmarks/validate.py`.",
        "",
        "## Training curve",
        "",
        "| epoch | loss | AUC | TPR@1e-3, SNR 8 | wall s |",
        "|---|---|---|---|---|",
    ]
    for h in history:
        lines.append(f"| {h['epoch']} | {h['loss']:.4f} | {h['validation']['auc']:.4f} | "
                     f"{h['validation']['tpr']['0.001'].get('8', float('nan')):.3f} | {h['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"
