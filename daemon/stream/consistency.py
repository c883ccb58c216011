"""Per-detector signal consistency: how much of a window's power its best template leaves unexplained.

The matched-filter searches keep their sensitivity on glitchy data with a consistency test (PyCBC's
chi-squared): a signal's power is where its template says, a glitch's is not. This is the same idea
with what the template branch of a factorized network already computes. For every feature step
``j`` of one detector's whitened stream (unit variance in noise), with ``n = template_taps``:

* ``E[j]``, the whitened data's energy over the ``n`` samples the templates read at that step;
* ``rho2[j]``, the best template's SNR squared there (the branch's largest pair energy, uncapped).

A window's residual in one detector, over the steps the head reads, is

    z = (max_j E[j] - max_j rho2[j] - n) / (sqrt(2 n) + slope * max_j rho2[j]):

the most power any template span of the window holds beyond noise, less what the window's best
template explains, in units of the noise's spread (the energy of ``n`` unit-variance samples is
``n +- sqrt(2 n)``). In Gaussian noise it is about 1 (a maximum over the window's overlapping
spans); for a signal its template matches it stays there, and for a glitch, whose power no template
explains, it is large wherever in the window the glitch is (a glitch at the window's edge need not
be in the best template's span). ``slope`` allows a loud signal the few per cent of its power a cut
template misses. The ranking statistic loses ``weight * (max(0, z_H1 - threshold) + max(0, z_L1 -
threshold))``. Each detector's term is computed from that detector alone, so a time slide pairs
them exactly as it pairs the windows: the slid background is ranked with the very statistic of the
zero lag. A signal with a glitch in the same window pays too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Consistency", "residual_z", "span_energies", "window_residual"]


@dataclass(frozen=True)
class Consistency:
    """The test's settings (``ranking.consistency_*``); ``weight`` 0 is off."""

    weight: float = 0.0
    threshold: float = 3.0
    slope: float = 0.1

    def __post_init__(self):
        for name in ("weight", "threshold", "slope"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"consistency {name} = {v!r}, expected a finite number >= 0")

    @property
    def on(self) -> bool:
        return self.weight > 0

    def meta(self) -> dict:
        """What a background's statistics depend on (part of its identity); off is ``{"weight": 0.0}``, as
        backgrounds written before the test existed are read."""
        if not self.on:
            return {"weight": 0.0}
        return {"weight": float(self.weight), "threshold": float(self.threshold), "slope": float(self.slope)}

    def penalty(self, z: np.ndarray) -> np.ndarray:
        """What a detector's window residual ``z`` takes off the statistic (NaN stays NaN)."""
        return self.weight * np.maximum(np.asarray(z, dtype=np.float64) - self.threshold, 0.0)


#: span_energies counts each sample's energy in units of 2**-24 (the energy of 1024 samples to 6e-5)
_ENERGY_SCALE = float(1 << 24)
#: and caps it at 2**28 (a sample of 16384 sigma), so that no span of 1024 samples overflows int64
_ENERGY_CAP = float(1 << 28)


def span_energies(x: np.ndarray, ends: np.ndarray, taps: int) -> np.ndarray:
    """``E``: the energy of each row of ``x`` ``(rows, n)`` over the ``taps`` samples before each of ``ends``
    (``[end - taps, end)``, every one inside the row), in float64.

    The energies are summed as integers (each sample's energy rounded to ``2**-24``, capped at ``2**28``; a
    non-finite sample counts as the cap): integer sums are exact, so a span's energy is the same bit for bit
    wherever the row starts, and a search that takes many blocks at once (one call per group) ranks exactly as
    one that takes them one by one. (A running float sum would not: its rounding depends on the row's start.)
    A running sum that wraps around int64 still gives every span's sum exactly, being exact modulo 2**64."""
    sq = np.nan_to_num(np.square(x, dtype=np.float64), nan=_ENERGY_CAP, posinf=_ENERGY_CAP)
    units = np.rint(np.minimum(sq, _ENERGY_CAP) * _ENERGY_SCALE).astype(np.int64)
    c = np.zeros((x.shape[0], x.shape[1] + 1), np.int64)
    with np.errstate(over="ignore"):
        np.cumsum(units, axis=1, out=c[:, 1:])
        diff = c[:, ends] - c[:, np.asarray(ends) - taps]
    return diff / _ENERGY_SCALE


def residual_z(energy: np.ndarray, rho2: np.ndarray, taps: int, slope: float) -> np.ndarray:
    """The residual ``(E - rho2 - n) / (sqrt(2 n) + slope * rho2)`` of a data energy ``E`` over ``n = taps``
    whitened samples and a best-template SNR squared ``rho2`` (see the module docstring)."""
    e = np.asarray(energy, dtype=np.float64)
    r = np.maximum(np.asarray(rho2, dtype=np.float64), 0.0)
    return (e - r - taps) / (math.sqrt(2.0 * taps) + slope * r)


def window_residual(energy: np.ndarray, rho2: np.ndarray, known: np.ndarray, taps: int,
                    slope: float) -> np.ndarray:
    """Each window's residual ``z`` from its steps' data energies and best-template SNRs squared.

    Parameters
    ----------
    energy, rho2 : array, shape (n_windows, steps)
        Per step of each window: the data's energy over the template span, and the best template's SNR squared.
    known : bool array, shape (n_windows, steps)
        Steps that are known; a window with none is NaN.
    taps, slope
        As :func:`residual_z`.
    """
    with np.errstate(invalid="ignore"):
        e = np.where(known, energy, -np.inf).max(axis=1)
        r = np.where(known, rho2, -np.inf).max(axis=1)
        z = residual_z(e, np.where(np.isfinite(r), r, 0.0), taps, slope)
    return np.where(known.any(axis=1), z, np.nan)
