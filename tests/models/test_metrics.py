"""ROC metrics against scipy and by construction."""

import numpy as np
import pytest
from gwstream.models.metrics import auc, roc, summarize, threshold_at_fpr, tpr_at_fpr
from scipy.stats import mannwhitneyu


def test_auc_equals_mann_whitney():
    rng = np.random.default_rng(0)
    noise, signal = rng.normal(size=3000), rng.normal(0.7, size=1000)
    noise[:50] = signal[:50]  # ties count one half
    expected = mannwhitneyu(signal, noise).statistic / (signal.size * noise.size)
    assert auc(noise, signal) == pytest.approx(expected, rel=1e-12)


def test_threshold_gives_at_most_the_requested_fpr():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=10_000)
    for fpr in (1e-1, 1e-2, 1e-3, 1e-4):
        t = threshold_at_fpr(noise, fpr)
        assert np.mean(noise >= t) <= fpr
        assert np.mean(noise >= np.nextafter(t, -np.inf) - 1e-12) >= fpr or fpr * noise.size < 1


def test_tpr_perfect_and_hopeless():
    noise = np.arange(1000.0)
    assert tpr_at_fpr(noise, noise + 10_000, 1e-3) == 1.0
    assert tpr_at_fpr(noise, noise - 10_000, 1e-3) == 0.0


def test_roc_is_monotone_and_ends_at_one():
    rng = np.random.default_rng(2)
    fpr, tpr, thr = roc(rng.normal(size=500), rng.normal(1, size=500))
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all() and (np.diff(thr) <= 0).all()
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0


def test_summarize_bins():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(2000), np.ones(200)]
    snrs = np.r_[np.zeros(2000), np.full(100, 6.0), np.full(100, 12.0)]
    scores = rng.normal(size=2200) + labels * snrs / 2
    out = summarize(scores, labels, snrs)
    assert out["n_noise"] == 2000
    assert out["tpr"]["0.001"]["12"] > out["tpr"]["0.001"]["6"]
    assert set(out["auc_by_snr"]) == {"6", "12"}
