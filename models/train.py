"""Training loop: epochs of labelled windows in, a checkpoint per epoch, metrics on held-out windows.

The data come from a callable (``make_epoch(epoch) -> (x, label, snr)``) so this
module knows nothing of how windows are simulated or whitened (the daemon's
training orchestration composes :mod:`gwstream.daemon.train.trainset` with this).
Deterministic for a seed: parameters are initialised from ``seed``, each
epoch's batch order and dropout from ``(seed, epoch)``, so a run resumed from
its checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_path
from .metrics import summarize

__all__ = ["fit", "score_windows", "selection_key"]

log = logging.getLogger(__name__)


def score_windows(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Scores of ``x`` (float32 ``[B, 2, N]``) in eval mode, batched, under inference mode."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size]))).float().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _atomic_save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def selection_key(summary: dict, select_fpr: float = 1e-3, select_snr: str = "8") -> tuple[float, float]:
    """How :func:`fit` ranks epochs: TPR at ``select_fpr`` in SNR bin ``select_snr`` (all bins when absent), then AUC."""
    tpr = summary["tpr"][f"{select_fpr:g}"]
    return float(tpr.get(select_snr, tpr["all"])), float(summary["auc"])


def fit(
    model: nn.Module,
    make_epoch: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    out_dir: str | Path,
    select_fpr: float = 1e-3,
    select_snr: str = "8",
    select: str = "best",
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` with binary cross-entropy on logits; resume from ``out_dir/checkpoint.pt``.

    Parameters
    ----------
    model : torch.nn.Module
        ``forward([B, 2, N]) -> [B]`` logits.
    make_epoch : callable
        ``make_epoch(epoch) -> (x float32 [n, 2, N], label {0, 1} [n], snr [n])``.
    validation : tuple
        Held-out ``(x, label, snr)``; noise windows have label 0 (their snr is ignored).
    epochs, batch_size, lr, weight_decay :
        AdamW with a cosine learning-rate schedule over ``epochs``.
    seed : int
    out_dir : path
        ``checkpoint.pt`` (last epoch, with optimiser state) and ``best.pt`` (state
        of the epoch with the highest TPR at ``select_fpr`` for SNR bin ``select_snr``,
        ties broken by AUC) are written here, atomically.
    select : {"best", "last"}
        The weights ``model`` is left with: that best epoch's, or the last epoch's.

    Returns
    -------
    list of dict
        One entry per epoch: loss, learning rate, wall time, validation summary.
    """
    if select not in ("best", "last"):
        raise ValueError(f"select = {select!r}, expected 'best' or 'last'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    torch.manual_seed(seed)
    # parameters a network asks to move at another rate (``lr_scales``: name -> factor on lr) get a group of
    # their own, without weight decay (they start at something meaningful: filters, a gain)
    scales = getattr(model, "lr_scales", {}) or {}
    named = dict(model.named_parameters())
    unknown = sorted(set(scales) - set(named))
    if unknown:
        raise ValueError(f"lr_scales names {unknown}, which the model does not have")
    for k, f in scales.items():  # a scale of 0 freezes: no gradient is computed for it at all
        named[k].requires_grad_(f != 0)
    groups = [{"params": [p for k, p in named.items() if k not in scales]}]
    groups += [{"params": [named[k]], "lr": lr * f, "weight_decay": 0.0} for k, f in sorted(scales.items()) if f]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    history: list[dict] = []
    best_key = (-1.0, -1.0)
    start = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = json.loads(state["history_json"])
        start = int(state["epoch"]) + 1
        best_key = (float(state["best_tpr"]), float(state["best_auc"]))
        log.info("resuming from %s at epoch %d", ckpt_path, start)
    loss_fn = nn.BCEWithLogitsLoss()
    xv, yv, sv = validation
    for epoch in range(start, epochs):
        t0 = time.monotonic()
        x, y, _snr = make_epoch(epoch)
        t_data = time.monotonic() - t0
        rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 3]))
        torch.manual_seed(int(rng.integers(2**62)))
        order = rng.permutation(x.shape[0])
        model.train()
        losses = []
        n_batches = math.ceil(x.shape[0] / batch_size)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = torch.from_numpy(x[idx])
            yb = torch.from_numpy(y[idx].astype(np.float32))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if bar is not None:
            bar.close()
        sched.step()
        scores = score_windows(model, xv)
        summary = summarize(scores, yv, sv)
        entry = {
            "epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": float(opt.param_groups[0]["lr"]),
            "data_s": round(t_data, 2), "wall_s": round(time.monotonic() - t0, 2), "validation": summary,
        }
        history.append(entry)
        key = selection_key(summary, select_fpr, select_snr)
        tpr = key[0]
        if key > best_key:
            best_key = key
            _atomic_save({"state_dict": model.state_dict(), "epoch": epoch + 1}, out_dir / "best_state.pt")
        _atomic_save({
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "history_json": json.dumps(history), "best_tpr": best_key[0], "best_auc": best_key[1],
        }, ckpt_path)
        log.info("epoch=%d loss=%.4f auc=%.4f tpr@%g(snr %s)=%.3f data_s=%.1f wall_s=%.1f", epoch + 1,
                 entry["loss"], summary["auc"], select_fpr, select_snr, tpr, t_data, entry["wall_s"])
        if on_epoch is not None:
            on_epoch(entry)
    best = out_dir / "best_state.pt"
    if select == "best" and best.exists():
        model.load_state_dict(torch.load(best, weights_only=True, map_location="cpu")["state_dict"])
    return history
