"""Detection metrics of per-window scores: ROC, AUC, true-positive rate at a false-positive rate."""

from __future__ import annotations

import numpy as np

__all__ = ["roc", "auc", "threshold_at_fpr", "tpr_at_fpr", "summarize"]


def roc(noise: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: ``(fpr, tpr, thresholds)`` for "score >= threshold", thresholds descending."""
    noise = np.sort(np.asarray(noise, dtype=np.float64))
    signal = np.sort(np.asarray(signal, dtype=np.float64))
    thresholds = np.unique(np.concatenate([noise, signal]))[::-1]
    fpr = (noise.size - np.searchsorted(noise, thresholds, side="left")) / max(noise.size, 1)
    tpr = (signal.size - np.searchsorted(signal, thresholds, side="left")) / max(signal.size, 1)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[np.inf], thresholds])


def auc(noise: np.ndarray, signal: np.ndarray) -> float:
    """Area under the ROC curve = P(signal score > noise score) + P(tie) / 2 (Mann-Whitney)."""
    noise = np.asarray(noise, dtype=np.float64)
    signal = np.asarray(signal, dtype=np.float64)
    if not noise.size or not signal.size:
        return float("nan")
    both = np.concatenate([noise, signal])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size)
    ranks[order] = np.arange(1, both.size + 1)
    # average ranks over ties
    sorted_vals = both[order]
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    for f, c in zip(first[counts > 1], counts[counts > 1]):
        ranks[order[f:f + c]] = f + (c + 1) / 2.0
    r_signal = ranks[noise.size:].sum()
    return float((r_signal - signal.size * (signal.size + 1) / 2.0) / (noise.size * signal.size))


def threshold_at_fpr(noise: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose false-positive fraction ``P(noise >= t)`` is at most ``fpr``.

    With ``n`` noise windows the achievable fractions are ``k / n``; the
    threshold sits just above the ``floor(fpr * n) + 1``-th loudest noise score.
    """
    noise = np.sort(np.asarray(noise, dtype=np.float64))[::-1]
    k = int(np.floor(fpr * noise.size))
    if k >= noise.size:
        return -np.inf
    return float(np.nextafter(noise[k], np.inf))


def tpr_at_fpr(noise: np.ndarray, signal: np.ndarray, fpr: float) -> float:
    """Fraction of signal windows scoring at or above :func:`threshold_at_fpr`."""
    t = threshold_at_fpr(noise, fpr)
    return float(np.mean(np.asarray(signal, dtype=np.float64) >= t))


def summarize(scores: np.ndarray, labels: np.ndarray, snrs: np.ndarray, fprs=(1e-3, 1e-4)) -> dict:
    """AUC and TPR at each per-window FPR, overall and per network-SNR bin.

    Returns ``{"n_noise", "auc", "tpr": {fpr: {snr: value, "all": value}}, "auc_by_snr": {snr: value}}``
    (keys as strings, JSON-ready).
    """
    noise = scores[labels == 0]
    out = {"n_noise": int(noise.size), "auc": auc(noise, scores[labels == 1]), "tpr": {}, "auc_by_snr": {}}
    bins = sorted({float(s) for s in snrs[labels == 1]})
    for fpr in fprs:
        row = {"all": tpr_at_fpr(noise, scores[labels == 1], fpr)}
        for b in bins:
            row[f"{b:g}"] = tpr_at_fpr(noise, scores[(labels == 1) & (snrs == b)], fpr)
        out["tpr"][f"{fpr:g}"] = row
    for b in bins:
        out["auc_by_snr"][f"{b:g}"] = auc(noise, scores[(labels == 1) & (snrs == b)])
    return out
