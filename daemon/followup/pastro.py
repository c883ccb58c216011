"""p_astro: the probability that a trigger is astrophysical, from a two-component (FGMC) model.

Triggers above a threshold statistic ``x_th`` are a Poisson mixture of
astrophysical signals and noise::

    p_astro(x) = r_s f(x) / (r_s f(x) + r_b b(x))

with ``x`` the ranking statistic (``stat``, the network's logit), ``b`` and
``f`` the background and signal densities of ``x`` above ``x_th`` (each
integrating to 1) and ``r_b``, ``r_s`` their rates above ``x_th`` (Hz of
live time; times the foreground live time they are FGMC's expected counts
``Lambda_b``, ``Lambda_s``). The final ratio is :func:`ligo.p_astro.computation.p_astro_update`
with the Bayes factor ``f / b`` and those counts.

* ``r_b b(x)`` is minus the derivative of the time-slid background's rate
  curve ``R_b(x) = n_background(>= x) / T_background``
  (:class:`~gwstream.daemon.stream.background.Background`): ``log R_b`` is a
  monotone cubic (PCHIP) through knots whose counts fall by ``knot_factor``
  from ``x_th`` down to the ``n_tail``-th loudest background value, and an
  exponential beyond it whose slope is the maximum-likelihood fit to those
  ``n_tail`` loudest values, so ``b`` never reaches zero.
* ``f(x)``: signals uniform in volume have optimal network SNR ``rho``
  distributed as ``3 rho_lo^3 / rho^4`` above ``rho_lo``; ``f`` is the
  distribution of their statistic, a kernel density of the statistics of
  simulated injections searched with the model, each weighted by
  ``rho^-4 / q(rho)`` (``q`` the density they were drawn from), with the
  population above the injected SNRs added through a fitted line
  ``stat = alpha + beta rho`` (:class:`SignalModel`, shipped for the default
  network as ``models/weights/default-pastro.json``).
* ``r_s``: fitted to the search's own foreground by the FGMC mixture likelihood
  (:meth:`PAstroModel.fit`: posterior mean of ``Lambda_s`` under a Jeffreys
  prior, ``Lambda_b`` fixed to the background's expected count or fitted with
  it), or, for a live daemon with little foreground, a configured rate of
  signals above network SNR 8, ``r_s = R_8 (8 / rho_lo)^3 S(x_th)`` with
  ``S(x_th)`` the share of the signals whose statistic reaches ``x_th``
  (:meth:`PAstroModel.with_rate`).

The log Bayes factor ``log f/b`` is tabulated once and made non-decreasing in
``x`` (a louder trigger never gets a smaller p_astro); a statistic below
``x_th`` is evaluated at ``x_th``. Evaluating one trigger is a table lookup
(about 0.1 ms). The model, its assumptions and its calibration are in
``docs/pastro.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gwstream.daemon.stream.background import SECONDS_PER_YEAR, Background

__all__ = ["BackgroundDensity", "SignalModel", "PAstroModel", "DEFAULT_SIGNAL_PATH", "DEFAULT_RATE_SNR8_PER_YEAR",
           "load_signal_model", "model_for_search", "p_astro", "fgmc_counts"]

_FORMAT = "gwstream-pastro"
_SIGNAL_FORMAT = "gwstream-pastro-signal"
_VERSION = 1
#: the signal model of the default network (``benchmarks/pastro_calibration.py``)
DEFAULT_SIGNAL_PATH = Path(__file__).resolve().parents[2] / "models" / "weights" / "default-pastro.json"
#: astrophysical BBH signals per year with optimal network SNR >= 8 assumed by a live daemon (configurable; see
#: docs/pastro.md for where the number comes from)
DEFAULT_RATE_SNR8_PER_YEAR = 150.0
_TABLE_STEP = 0.01  # statistic step of the tabulated log Bayes factor


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r}, expected a finite number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} = {value!r}, expected a finite number")
    return v


# ------------------------------------------------------------------ background
@dataclass
class BackgroundDensity:
    """Smooth rate ``R_b(x)`` (Hz) of background triggers with statistic ``>= x``, and its density ``-dR_b/dx``.

    ``knots_x``, ``knots_log_rate``: the PCHIP knots of ``log R_b`` from the
    threshold to ``tail_x``; beyond ``tail_x``, ``R_b = R_b(tail_x) exp(-tail_slope (x - tail_x))``.
    """

    knots_x: np.ndarray
    knots_log_rate: np.ndarray
    tail_slope: float
    livetime_s: float = 0.0
    n_above: int = 0

    def __post_init__(self) -> None:
        self.knots_x = np.asarray(self.knots_x, dtype=np.float64).reshape(-1)
        self.knots_log_rate = np.asarray(self.knots_log_rate, dtype=np.float64).reshape(-1)
        x, y = self.knots_x, self.knots_log_rate
        if x.size < 2 or x.size != y.size or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"background density needs >= 2 finite knots, got {x.size} x / {y.size} log-rate")
        if (np.diff(x) <= 0).any() or (np.diff(y) >= 0).any():
            raise ValueError("background density knots: x must increase and log rate decrease strictly")
        self.tail_slope = _finite("tail_slope", self.tail_slope)
        if not self.tail_slope > 0:
            raise ValueError(f"tail_slope = {self.tail_slope!r}, expected > 0")
        from scipy.interpolate import PchipInterpolator

        self._log_rate = PchipInterpolator(x, y, extrapolate=False)
        self._dlog_rate = self._log_rate.derivative()

    @property
    def threshold(self) -> float:
        return float(self.knots_x[0])

    @property
    def tail_x(self) -> float:
        return float(self.knots_x[-1])

    @property
    def rate_above_threshold_hz(self) -> float:
        return float(np.exp(self.knots_log_rate[0]))

    @classmethod
    def from_background(cls, background: Background, threshold_stat: float, *, knot_factor: float = 1.5,
                        n_tail: int = 50, min_count: int = 20) -> BackgroundDensity:
        """Fit to a time-slid :class:`~gwstream.daemon.stream.background.Background` above ``threshold_stat``."""
        if not isinstance(background, Background):
            raise ValueError(f"background must be a Background, got {type(background).__name__}")
        x_th = _finite("threshold_stat", threshold_stat)
        t_bg = float(background.livetime_s)
        if not t_bg > 0:
            raise ValueError("background has no live time: it cannot give a background density")
        if not knot_factor > 1:
            raise ValueError(f"knot_factor = {knot_factor!r}, expected > 1")
        n_th = int(background.count_at_least(x_th))
        if n_th < min_count:
            raise ValueError(f"only {n_th} background triggers at or above threshold_stat = {x_th:g} (need >= "
                             f"{min_count}): lower the threshold or collect more background")
        loud = background.loudest[background.loudest > max(background.floor, x_th)]  # exact, descending
        n_tail = int(min(max(n_tail, 3), n_th // 2, loud.size))
        if n_tail < 3:
            raise ValueError(f"the background keeps {loud.size} exact values above threshold_stat = {x_th:g} "
                             f"and its floor {background.floor:g}; need >= 3 for the tail fit")
        tail_x = float(loud[n_tail - 1])
        excess = loud[: n_tail - 1] - tail_x
        if not excess.sum() > 0:
            raise ValueError(f"the {n_tail} loudest background values are all equal ({tail_x:g}): no tail slope")
        tail_slope = (n_tail - 1) / float(excess.sum())
        # the count curve on exact points: histogram bin edges, and the exact list above its floor
        lo, w = background.hist_range[0], background.bin_width
        edges = lo + w * np.arange(math.ceil((x_th - lo) / w), math.floor((tail_x - lo) / w) + 1)
        pts = np.unique(np.concatenate([[x_th, tail_x], edges[(edges > x_th) & (edges < tail_x)],
                                        loud[(loud > x_th) & (loud < tail_x)]]))
        counts = background.count_at_least(pts).astype(np.float64)
        counts = np.minimum.accumulate(counts)  # a count curve never rises (guards the bin-conservative part)
        knots_x, knots_n = [x_th], [float(n_th)]
        target = n_th / knot_factor
        for xv, n in zip(pts, counts):
            if xv <= knots_x[-1]:
                continue
            if n <= target and n > n_tail and n < knots_n[-1]:
                knots_x.append(float(xv))
                knots_n.append(float(n))
                target = n / knot_factor
        if tail_x > knots_x[-1] and n_tail < knots_n[-1]:
            knots_x.append(tail_x)
            knots_n.append(float(n_tail))
        else:  # the threshold sits in the tail itself: the exponential from there
            knots_x.append(knots_x[-1] + math.log(knots_n[-1] / max(n_tail - 1, 1)) / tail_slope + 1e-9)
            knots_n.append(float(max(n_tail - 1, 1)))
        return cls(np.array(knots_x), np.log(np.array(knots_n) / t_bg), tail_slope, t_bg, n_th)

    def log_rate(self, x) -> np.ndarray:
        """``log R_b(x)`` (``x >= threshold``; below, the threshold's value)."""
        x = np.maximum(np.asarray(x, dtype=np.float64), self.threshold)
        inner = self._log_rate(np.minimum(x, self.tail_x))
        return np.where(x <= self.tail_x, inner, self.knots_log_rate[-1] - self.tail_slope * (x - self.tail_x))

    def log_density(self, x) -> np.ndarray:
        """``log(-dR_b/dx)``, the background's rate density (Hz per unit statistic), for ``x >= threshold``."""
        x = np.maximum(np.asarray(x, dtype=np.float64), self.threshold)
        slope = np.where(x <= self.tail_x, -self._dlog_rate(np.minimum(x, self.tail_x)), self.tail_slope)
        with np.errstate(divide="ignore"):
            return self.log_rate(x) + np.log(np.maximum(slope, 1e-300))

    def to_dict(self) -> dict:
        return {"knots_x": self.knots_x.tolist(), "knots_log_rate": self.knots_log_rate.tolist(),
                "tail_slope": self.tail_slope, "livetime_s": self.livetime_s, "n_above": self.n_above}

    @classmethod
    def from_dict(cls, d: dict) -> BackgroundDensity:
        return cls(d["knots_x"], d["knots_log_rate"], d["tail_slope"], float(d.get("livetime_s", 0.0)),
                   int(d.get("n_above", 0)))


# ---------------------------------------------------------------------- signal
@dataclass
class SignalModel:
    """Density of the ranking statistic of astrophysical signals: uniform in volume, network SNR ``rho >= rho_lo``.

    ``x`` (a uniform grid) and ``log_f``: the log density of the statistic of
    such signals, over all of them (a signal the search misses has no
    statistic, so ``f`` integrates to the found fraction, < 1). Beyond the
    grid, ``f`` continues as ``rho^-4 drho/dx`` with a linear map
    ``rho(x) = tail_rho + tail_drho (x - x[-1])`` fitted to the loudest
    injections. :meth:`log_density` normalises ``f`` above a threshold.
    """

    x: np.ndarray
    log_f: np.ndarray
    tail_rho: float
    tail_drho: float
    rho_lo: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64).reshape(-1)
        self.log_f = np.asarray(self.log_f, dtype=np.float64).reshape(-1)
        x, y = self.x, self.log_f
        if x.size < 3 or x.size != y.size or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"signal model needs >= 3 finite grid points, got {x.size} x / {y.size} log density")
        if (np.diff(x) <= 0).any():
            raise ValueError("signal model grid x must increase strictly")
        for name in ("tail_rho", "tail_drho", "rho_lo"):
            setattr(self, name, _finite(name, getattr(self, name)))
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)!r}, expected > 0")
        self.meta = dict(self.meta)
        f = np.exp(y)
        # survival on the grid: trapezoid from each point to the end, plus the analytic tail f_N rho_N / (3 drho)
        seg = 0.5 * (f[1:] + f[:-1]) * np.diff(x)
        tail = f[-1] * self.tail_rho / (3.0 * self.tail_drho)
        self._surv = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]]) + tail

    @property
    def found_fraction(self) -> float:
        """Fraction of the signals (``rho >= rho_lo``) that give a trigger at all: the integral of ``f``."""
        return float(self._surv[0])

    def _tail_rho(self, x: np.ndarray) -> np.ndarray:
        return self.tail_rho + self.tail_drho * (x - self.x[-1])

    def log_f_of(self, x) -> np.ndarray:
        """``log f(x)`` (not normalised above a threshold); below the grid, its first value."""
        x = np.asarray(x, dtype=np.float64)
        inner = np.interp(x, self.x, self.log_f)
        with np.errstate(invalid="ignore", divide="ignore"):
            tail = self.log_f[-1] - 4.0 * np.log(self._tail_rho(np.clip(x, self.x[-1], 1e300)) / self.tail_rho)
        return np.where(x <= self.x[-1], inner, np.where(x == np.inf, -np.inf, tail))

    def survival(self, x) -> np.ndarray:
        """``int_x^inf f``: the fraction of the signals with a statistic ``>= x``."""
        x = np.asarray(x, dtype=np.float64)
        inner = np.interp(x, self.x, self._surv)
        # between grid points the trapezoid's share of the segment is taken linearly (interp): fine at the grid step
        beyond = np.exp(self.log_f_of(np.maximum(x, self.x[-1]))) * self._tail_rho(np.maximum(x, self.x[-1])) \
            / (3.0 * self.tail_drho)
        return np.where(x <= self.x[-1], inner, beyond)

    def log_density(self, x, threshold_stat: float) -> np.ndarray:
        """``log f(x)`` normalised to integrate to 1 above ``threshold_stat``."""
        x = np.maximum(np.asarray(x, dtype=np.float64), threshold_stat)
        return self.log_f_of(x) - math.log(float(self.survival(threshold_stat)))

    @classmethod
    def from_injections(cls, stat, rho, weights=None, *, rho_lo: float, rho_hi: float | None = None,
                        bandwidth: float = 0.5, step: float = 0.05, tail_quantile: float = 0.75,
                        meta: dict | None = None) -> SignalModel:
        """Estimate ``f`` from simulated injections: their statistics reweighted to ``p(rho) ~ rho^-4``.

        Parameters
        ----------
        stat : array
            The statistic each injection was found at (its loudest trigger
            within the trigger's ``var``); NaN or -inf for a missed one.
        rho : array
            Each injection's optimal network SNR.
        weights : array, optional
            Importance weights to a population uniform in volume,
            ``rho^-4 / q(rho)`` for injections drawn from ``q``; default
            ``rho^-4``, right for injections drawn uniform in network SNR
            (``[simulate.injections] snr = [lo, hi]``).
        rho_lo : float
            Weaker signals are not counted as signals (their triggers are noise's).
        rho_hi : float, optional
            Top of the injected SNR range (default: the loudest injection).
            The population's share above it, ``(rho_lo / rho_hi)^3``, is
            added through the fitted line ``stat = alpha + beta rho`` with its
            Gaussian scatter: ``int_{rho_hi}^inf 3 rho_lo^3 rho^-4 N(x; alpha + beta rho) drho``.
        bandwidth : float
            Gaussian kernel width in statistic units.
        tail_quantile : float
            The found injections above this quantile of ``rho`` fit the line
            ``stat = alpha + beta rho`` (least squares) whose inverse ``rho(stat)``
            continues ``f`` beyond the loudest injections.
        """
        stat = np.asarray(stat, dtype=np.float64).reshape(-1)
        rho = np.asarray(rho, dtype=np.float64).reshape(-1)
        if stat.size != rho.size:
            raise ValueError(f"{stat.size} statistics for {rho.size} SNRs")
        if not (np.isfinite(rho).all() and (rho > 0).all()):
            raise ValueError("injection SNRs must be finite and > 0")
        w = rho ** -4.0 if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != rho.shape or not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError("weights must be finite, >= 0 and one per injection")
        for name, v in (("rho_lo", rho_lo), ("bandwidth", bandwidth), ("step", step)):
            if not _finite(name, v) > 0:
                raise ValueError(f"{name} = {v!r}, expected > 0")
        rho_hi = float(rho.max()) if rho_hi is None else _finite("rho_hi", rho_hi)
        if not rho_hi > rho_lo:
            raise ValueError(f"rho_hi = {rho_hi:g}, expected > rho_lo = {rho_lo:g}")
        keep = (rho >= rho_lo) & (rho <= rho_hi)
        stat, rho, w = stat[keep], rho[keep], w[keep]
        if not w.sum() > 0:
            raise ValueError(f"no injection with weight at rho >= rho_lo = {rho_lo:g}")
        w = w / w.sum()
        found = np.isfinite(stat)
        if found.sum() < 20:
            raise ValueError(f"{int(found.sum())} found injections with rho >= {rho_lo:g}: need >= 20")
        xs, ws, rs = stat[found], w[found], rho[found]
        loud = rs >= np.quantile(rs, tail_quantile)
        if loud.sum() < 3 or np.ptp(xs[loud]) <= 0:
            raise ValueError("too few loud found injections to fit the tail's rho(stat)")
        beta, alpha = np.polyfit(rs[loud], xs[loud], 1)  # stat = alpha + beta rho (rho is known exactly)
        if not beta > 0:
            raise ValueError(f"the loudest injections' statistic does not grow with their SNR (slope {beta:g})")
        slope, icpt = 1.0 / beta, -alpha / beta  # rho(stat) = icpt + slope stat
        x_hi = alpha + beta * rho_hi  # where the population above the injected range starts
        smooth = max(bandwidth, float(np.std(xs[loud] - (alpha + beta * rs[loud]))))
        top = max(xs.max() + 4.0 * bandwidth, x_hi + 6.0 * smooth)
        grid = np.arange(xs.min() - 4.0 * bandwidth, top + step, step)
        dens = np.zeros(grid.size)
        for a in range(0, xs.size, 256):
            z = (grid[:, None] - xs[None, a:a + 256]) / bandwidth
            dens += (np.exp(-0.5 * z * z) * ws[None, a:a + 256]).sum(axis=1)
        m_hi = (rho_lo / rho_hi) ** 3
        dens *= (1.0 - m_hi) / (bandwidth * math.sqrt(2.0 * math.pi))
        # signals above the injected range: int_{rho_hi}^inf 3 rho_lo^3 rho^-4 N(x; alpha + beta rho, smooth) drho
        r_nodes = rho_hi * np.logspace(0.0, 3.0, 601)
        r_w = 3.0 * rho_lo ** 3 * r_nodes ** -4.0 * np.gradient(r_nodes)
        z = (grid[:, None] - (alpha + beta * r_nodes[None, :])) / smooth
        above = (np.exp(-0.5 * z * z) * r_w[None, :]).sum(axis=1) / (smooth * math.sqrt(2.0 * math.pi))
        log_f = np.round(np.log(np.maximum(dens + above, 1e-300)), 6)  # 6 decimals: a small JSON file
        grid = np.round(grid, 6)
        tail_rho = float(icpt + slope * grid[-1])
        if not tail_rho > 0:
            raise ValueError(f"the loud injections' rho(stat) is {tail_rho:g} at the grid's end")
        info = {"n_injections": int(rho.size), "n_found": int(found.sum()), "rho_hi": rho_hi,
                "bandwidth": bandwidth, "tail_fit": {"rho_min": float(rs[loud].min()), "stat_per_rho": float(beta),
                                                     "stat_at_rho_0": float(alpha), "scatter": smooth},
                "effective_sample_size": float(1.0 / np.sum(w ** 2))}
        return cls(grid, log_f, tail_rho, float(slope), float(rho_lo), dict(meta or {}, **info))

    def to_dict(self) -> dict:
        return {"format": _SIGNAL_FORMAT, "version": _VERSION, "x": self.x.tolist(), "log_f": self.log_f.tolist(), "tail_rho": self.tail_rho,
                "tail_drho": self.tail_drho, "rho_lo": self.rho_lo, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> SignalModel:
        if not isinstance(d, dict) or d.get("format") != _SIGNAL_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not a gwstream p_astro signal model (format {got!r}, expected {_SIGNAL_FORMAT!r})")
        if int(d.get("version", -1)) != _VERSION:
            raise ValueError(f"signal model version {d.get('version')!r}, expected {_VERSION}")
        try:
            return cls(d["x"], d["log_f"], d["tail_rho"], d["tail_drho"], d["rho_lo"], d.get("meta", {}))
        except KeyError as exc:
            raise ValueError(f"signal model: key {exc} missing") from None


def load_signal_model(path: str | Path | None = None) -> SignalModel:
    """The signal model in a JSON file (default: the shipped one of the default network)."""
    path = Path(path) if path is not None else DEFAULT_SIGNAL_PATH
    try:
        d = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the p_astro signal model ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if isinstance(d, dict) and d.get("format") == _FORMAT:  # a whole PAstroModel file: take its signal part
        d = d.get("signal", {})
    return SignalModel.from_dict(d)


# ------------------------------------------------------------------------ FGMC
def fgmc_counts(log_f, log_b, background_count: float | None = None, *, n_grid: int = 4001):
    """Expected counts ``(Lambda_s, Lambda_b)`` of the FGMC two-component Poisson mixture.

    ``log_f``, ``log_b``: each foreground trigger's log signal and background
    densities (each normalised above the threshold). With ``background_count``
    given, ``Lambda_b`` is fixed to it and ``Lambda_s`` is the posterior mean
    under a Jeffreys prior ``Lambda_s^-1/2``; without, both are fitted by
    expectation-maximisation (maximum likelihood; ``Lambda_s + Lambda_b = N``).
    """
    log_f = np.asarray(log_f, dtype=np.float64).reshape(-1)
    log_b = np.asarray(log_b, dtype=np.float64).reshape(-1)
    if log_f.shape != log_b.shape:
        raise ValueError(f"{log_f.size} signal densities for {log_b.size} background densities")
    if np.isnan(log_f).any() or np.isnan(log_b).any():
        raise ValueError("densities must not be NaN")
    n = log_f.size
    log_r = log_f - log_b  # log Bayes factor of each trigger
    if background_count is None:
        if n == 0:
            return 0.0, 0.0
        frac = 0.5
        for _ in range(10_000):  # EM on the signal fraction
            q = 1.0 / (1.0 + (1.0 - frac) / max(frac, 1e-300) * np.exp(-log_r))
            new = float(q.mean())
            if abs(new - frac) < 1e-12:
                break
            frac = new
        return frac * n, (1.0 - frac) * n
    lb = _finite("background_count", background_count)
    if not lb > 0:
        raise ValueError(f"background_count = {background_count!r}, expected > 0")
    hi = n + 10.0 * math.sqrt(n + 1.0) + 20.0
    u = np.linspace(0.0, math.sqrt(hi), n_grid)  # Jeffreys prior: uniform in sqrt(Lambda_s)
    lam = u * u
    # log L(lam) = -lam + sum log(lam f_i + lb b_i) up to a constant: sum log(lb) + log1p(lam / lb * exp(log_r))
    log_like = -lam.copy()
    if n:
        r = np.exp(np.minimum(log_r, 700.0))
        chunk = max(1, 2_000_000 // max(n, 1))
        for a in range(0, lam.size, chunk):
            log_like[a:a + chunk] += np.log1p(np.outer(lam[a:a + chunk] / lb, r)).sum(axis=1)
    w = np.exp(log_like - log_like.max())
    return float(np.trapezoid(w * lam, u) / np.trapezoid(w, u)), lb


# ------------------------------------------------------------------------ model
class PAstroModel:
    """The two-component p_astro model: fitted once, evaluated per alert (``model(stat)``).

    Parameters
    ----------
    background : BackgroundDensity
    signal : SignalModel
    signal_rate_hz : float
        Astrophysical triggers above the threshold per second of live time.
    meta : dict
        How the rates were obtained (shown in ``to_dict``).
    """

    def __init__(self, background: BackgroundDensity, signal: SignalModel, signal_rate_hz: float,
                 meta: dict | None = None):
        if not isinstance(background, BackgroundDensity) or not isinstance(signal, SignalModel):
            raise ValueError("PAstroModel needs a BackgroundDensity and a SignalModel")
        self.background, self.signal = background, signal
        self.signal_rate_hz = _finite("signal_rate_hz", signal_rate_hz)
        if self.signal_rate_hz < 0:
            raise ValueError(f"signal_rate_hz = {signal_rate_hz!r}, expected >= 0")
        self.meta = dict(meta or {})
        if self.threshold_stat < self.signal.x[0] or not float(self.signal.survival(self.threshold_stat)) > 0:
            raise ValueError(f"threshold_stat = {self.threshold_stat:g} lies below the signal model's range "
                             f"(from {self.signal.x[0]:g})")
        self._build_table()

    # ---------------------------------------------------------------- fitting
    @property
    def threshold_stat(self) -> float:
        return self.background.threshold

    @property
    def background_rate_hz(self) -> float:
        return self.background.rate_above_threshold_hz

    @classmethod
    def fit(cls, background: Background, foreground_stats, foreground_livetime_s: float, *, threshold_stat: float,
            signal: SignalModel | None = None, fit_background: bool = False, **density_kw) -> PAstroModel:
        """Fit the signal rate to a foreground's triggers (FGMC).

        ``foreground_stats``: the statistics of the zero-lag triggers of
        ``foreground_livetime_s`` seconds (those below ``threshold_stat`` are
        ignored). ``Lambda_b`` is the background's expected count
        ``R_b(x_th) T_fg``, or fitted too with ``fit_background``.
        """
        signal = signal if signal is not None else load_signal_model()
        stats = np.asarray(foreground_stats, dtype=np.float64).reshape(-1)
        if not np.isfinite(stats).all():
            raise ValueError("foreground statistics must be finite")
        t_fg = _finite("foreground_livetime_s", foreground_livetime_s)
        if not t_fg > 0:
            raise ValueError(f"foreground_livetime_s = {foreground_livetime_s!r}, expected > 0")
        dens = BackgroundDensity.from_background(background, threshold_stat, **density_kw)
        x_th = dens.threshold
        above = stats[stats >= x_th]
        log_f = signal.log_density(above, x_th)
        log_b = dens.log_density(above) - math.log(dens.rate_above_threshold_hz)
        expected_b = dens.rate_above_threshold_hz * t_fg
        lam_s, lam_b = fgmc_counts(log_f, log_b, None if fit_background else expected_b)
        meta = {"how": "fgmc", "fit_background": bool(fit_background), "foreground_livetime_s": t_fg,
                "n_foreground_above": int(above.size), "lambda_s": lam_s, "lambda_b": lam_b,
                "expected_background_count": expected_b}
        if fit_background and lam_b > 0:
            meta["background_rate_fitted_hz"] = lam_b / t_fg
        return cls(dens, signal, lam_s / t_fg, meta)

    @classmethod
    def with_rate(cls, background: Background, *, threshold_stat: float, signal: SignalModel | None = None,
                  rate_snr8_per_year: float = DEFAULT_RATE_SNR8_PER_YEAR, **density_kw) -> PAstroModel:
        """A model whose signal rate is configured: ``rate_snr8_per_year`` signals per year above network SNR 8."""
        signal = signal if signal is not None else load_signal_model()
        rate = _finite("rate_snr8_per_year", rate_snr8_per_year)
        if rate < 0:
            raise ValueError(f"rate_snr8_per_year = {rate_snr8_per_year!r}, expected >= 0")
        dens = BackgroundDensity.from_background(background, threshold_stat, **density_kw)
        above = float(signal.survival(dens.threshold))
        r_s = rate * (8.0 / signal.rho_lo) ** 3 * above / SECONDS_PER_YEAR
        return cls(dens, signal, r_s, {"how": "configured rate", "rate_snr8_per_year": rate,
                                       "signal_fraction_above_threshold": above})

    # ------------------------------------------------------------- evaluation
    def _raw_log_bayes(self, x: np.ndarray) -> np.ndarray:
        x_th = self.threshold_stat
        return self.signal.log_density(x, x_th) - (self.background.log_density(x) - math.log(self.background_rate_hz))

    def _build_table(self) -> None:
        x0 = self.threshold_stat
        x1 = max(self.background.tail_x, float(self.signal.x[-1])) + 5.0
        self._x = np.arange(x0, x1 + _TABLE_STEP, _TABLE_STEP)
        self._lbf = np.maximum.accumulate(self._raw_log_bayes(self._x))

    def log_bayes_factor(self, stat) -> np.ndarray:
        """``log f/b`` (non-decreasing in ``stat``; ``stat`` below the threshold counts as the threshold)."""
        x = np.asarray(stat, dtype=np.float64)
        inner = np.interp(x, self._x, self._lbf)
        with np.errstate(invalid="ignore"):
            beyond = np.maximum(self._raw_log_bayes(np.clip(x, self._x[-1], 1e300)), self._lbf[-1])
        return np.where(x <= self._x[-1], inner, np.where(x == np.inf, np.inf, beyond))

    def counts(self, livetime_s: float = 1.0) -> dict:
        """FGMC's mean values of the Poisson counts in ``livetime_s`` (p-astro's ``mean_values_dict``)."""
        return {"counts_BBH": self.signal_rate_hz * livetime_s,
                "counts_Terrestrial": self.background_rate_hz * livetime_s}

    def p_astro(self, stat) -> np.ndarray:
        """p_astro of statistic(s) ``stat`` as an array (the formula of ``p_astro_update``, vectorised)."""
        x = np.asarray(stat, dtype=np.float64)
        if np.isnan(x).any():
            raise ValueError("stat is NaN")
        # Lambda_s bf / (Lambda_b + Lambda_s bf), written to stay finite for any bf
        log_odds = self.log_bayes_factor(x) + math.log(max(self.signal_rate_hz, 1e-300) / self.background_rate_hz)
        return 0.5 * (1.0 + np.tanh(0.5 * log_odds)) if self.signal_rate_hz > 0 else np.zeros(x.shape)

    def __call__(self, stat: float) -> dict:
        """``{"BBH": p, "Terrestrial": 1 - p}`` of one trigger."""
        try:
            x = float(stat)
        except (TypeError, ValueError):
            raise ValueError(f"stat = {stat!r}, expected a number") from None
        if math.isnan(x) or x == -math.inf:
            raise ValueError(f"stat = {stat!r}, expected a number (or +inf)")
        from ligo.p_astro.computation import p_astro_update

        bf = math.exp(min(float(self.log_bayes_factor(x)), 700.0))
        p = float(p_astro_update("counts_BBH", {"counts_BBH": bf}, self.counts()))
        return {"BBH": p, "Terrestrial": 1.0 - p}

    # -------------------------------------------------------------------- I/O
    def to_dict(self) -> dict:
        return {"format": _FORMAT, "version": _VERSION, "threshold_stat": self.threshold_stat,
                "signal_rate_hz": self.signal_rate_hz, "background_rate_hz": self.background_rate_hz,
                "background": self.background.to_dict(), "signal": self.signal.to_dict(), "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> PAstroModel:
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a gwstream p_astro model (format "
                             f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r}, expected {_FORMAT!r})")
        if int(d.get("version", -1)) != _VERSION:
            raise ValueError(f"p_astro model version {d.get('version')!r}, expected {_VERSION}")
        try:
            return cls(BackgroundDensity.from_dict(d["background"]), SignalModel.from_dict(d["signal"]),
                       d["signal_rate_hz"], d.get("meta", {}))
        except KeyError as exc:
            raise ValueError(f"p_astro model: key {exc} missing") from None

    def save(self, path: str | Path) -> Path:
        from gwstream.daemon.io.atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PAstroModel:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the p_astro model ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None


# ------------------------------------------------------------- search process
def model_for_search(background: Background, *, signal_path: str | Path | None = None,
                     threshold_stat: float | None = None,
                     rate_snr8_per_year: float = DEFAULT_RATE_SNR8_PER_YEAR) -> PAstroModel:
    """The model a search builds once at start-up from its time-slid background and the shipped signal model.

    ``threshold_stat`` defaults to the signal model's recommended one (its
    ``meta["threshold_stat"]``); the signal rate is configured
    (:meth:`PAstroModel.with_rate`). A :class:`ValueError` says why no model
    can be built (no background live time yet, too few background triggers
    above the threshold, a signal model of another network).
    """
    signal = load_signal_model(signal_path)
    ours, theirs = signal.meta.get("model_sha256"), getattr(background, "meta", {}).get("model_sha256")
    if ours and theirs and ours != theirs:
        raise ValueError(f"the p_astro signal model was calibrated for model {ours[:12]}, the background is of "
                         f"model {theirs[:12]}: calibrate the new model (benchmarks/pastro_calibration.py)")
    if threshold_stat is None:
        if "threshold_stat" not in signal.meta:
            raise ValueError("the signal model recommends no threshold_stat: pass one")
        threshold_stat = signal.meta["threshold_stat"]
    return PAstroModel.with_rate(background, threshold_stat=threshold_stat, signal=signal,
                                 rate_snr8_per_year=rate_snr8_per_year)


def p_astro(model: PAstroModel, stat: float) -> dict:
    """Per alert: ``{"BBH": p, "Terrestrial": 1 - p}`` of a trigger's statistic (a table lookup)."""
    return model(stat)
