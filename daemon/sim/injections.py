"""Binary-black-hole injections: parameters, per-detector strain, injection files.

Injection ``k`` of a stream merges near ``start_gps + (k + 0.5) * spacing_s``
and all its parameters come from its own generator,
``np.random.default_rng(np.random.SeedSequence([seed, 1, k]))``, so an
endless synthetic stream draws them lazily and a finite file is a prefix of
the endless stream. :class:`InjectionProjector` turns injection ``k`` into
strain in each detector once (pycbc time-domain waveform, antenna pattern,
light-travel delay, sub-sample Fourier shift) and adds the part that overlaps
any requested chunk, so chunk boundaries never show in the data.

Examples
--------
>>> proj = InjectionProjector(InjectionConfig(), seed=1, ifos=("H1", "L1"),
...                           sample_rate_hz=2048, start_gps=1_000_000_000,
...                           psd_fn=my_psd)
>>> out = {"H1": np.zeros(2048 * 64), "L1": np.zeros(2048 * 64)}
>>> proj.add_to(0, out)
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.fft
from gwstream.daemon.config import InjectionConfig

__all__ = [
    "MCHIRP_REF_MSUN",
    "PARAMETER_COLUMNS",
    "chirp_mass",
    "draw_parameters",
    "injection_columns",
    "InjectionProjector",
]

logger = logging.getLogger(__name__)

#: chirp mass of a 1.4 + 1.4 Msun binary, the reference of chirp distance
MCHIRP_REF_MSUN = 1.4 * 2.0 ** (-1.0 / 5.0)

#: per-injection columns other than the per-detector SNRs
PARAMETER_COLUMNS = (
    "tc", "mass1", "mass2", "mchirp", "distance", "chirp_distance",
    "ra", "dec", "inclination", "polarization", "coa_phase",
    "spin1x", "spin1y", "spin1z", "spin2x", "spin2y", "spin2z",
)

#: seconds kept after the merger (ringdown has decayed by > 1e-3 in amplitude)
POST_MERGER_S = 1.0
#: zero samples either side of a waveform before its sub-sample Fourier shift
_SHIFT_PAD = 32
#: the Earth's light-crossing radius bounds the detector delay, s
_MAX_EARTH_DELAY_S = 0.0213
#: parameter rows remembered (a day of injections at the default 24-s spacing)
_PARAMS_KEPT = 4096


def chirp_mass(mass1: np.ndarray | float, mass2: np.ndarray | float) -> np.ndarray | float:
    """Chirp mass ``(m1 m2)^(3/5) / (m1 + m2)^(1/5)`` in the masses' unit."""
    return (mass1 * mass2) ** 0.6 / (mass1 + mass2) ** 0.2


def injection_columns(ifos: Sequence[str]) -> tuple[str, ...]:
    """All columns of an injection table for detectors ``ifos``."""
    return PARAMETER_COLUMNS + tuple(f"optimal_snr_{ifo}" for ifo in ifos) + (
        "network_snr", "approximant", "f_lower",
    )


def _pre_merger_s(f_lower_hz: float, mass1: float, mass2: float, spin: float) -> float:
    """Longest stretch kept before the merger, s.

    1.25 x the LALSimulation chirp-time bound from ``f_lower_hz`` plus three
    cycles and 1 s: pycbc's time-domain Phenom waveforms are conditioned
    from below f_lower and padded to a power of two with FFT residue
    (~1e-5 of the peak) before that; cutting here loses < 1e-4 of the
    optimal SNR above f_lower (checked for IMRPhenomD/XPHM, 7-50 Msun).
    """
    import lal
    import lalsimulation

    bound = lalsimulation.SimInspiralChirpTimeBound(
        float(f_lower_hz), mass1 * lal.MSUN_SI, mass2 * lal.MSUN_SI, spin, spin
    )
    return 1.25 * bound + 3.0 / f_lower_hz + 1.0


def draw_parameters(cfg: InjectionConfig, seed: int, k: int, start_gps: float = 0.0) -> dict:
    """Parameters of injection ``k``, a function of ``(cfg, seed, k)`` only.

    Parameters
    ----------
    cfg : InjectionConfig
        Distributions.
    seed : int
        Stream seed.
    k : int
        Injection index, >= 0.
    start_gps : float
        GPS start of the stream, s.

    Returns
    -------
    dict
        ``tc`` (geocentric merger GPS, s), ``tc_offset`` (s after
        ``start_gps``), masses (Msun), spins, ``distance`` and
        ``chirp_distance`` (Mpc), angles (rad), and ``target_snr`` (nan
        unless ``cfg.snr`` is set).

    Notes
    -----
    Sixteen uniforms are drawn at once in a fixed order, so each parameter
    uses the same random number whatever the options. Chirp distance is
    ``d (Mc_ref / Mc)^(5/6)`` with ``Mc_ref = 1.4 * 2^(-1/5)`` Msun.
    """
    if k < 0:
        raise ValueError(f"injection index k = {k}: expected >= 0")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1, int(k)]))
    u = rng.random(16)
    tc_offset = (k + 0.5) * cfg.spacing_s + cfg.jitter_s * (2.0 * u[0] - 1.0)
    if cfg.mass_distribution == "log_uniform":
        m1 = cfg.mass1_msun[0] * (cfg.mass1_msun[1] / cfg.mass1_msun[0]) ** u[1]
        m2 = cfg.mass2_msun[0] * (cfg.mass2_msun[1] / cfg.mass2_msun[0]) ** u[2]
    else:
        m1 = cfg.mass1_msun[0] + (cfg.mass1_msun[1] - cfg.mass1_msun[0]) * u[1]
        m2 = cfg.mass2_msun[0] + (cfg.mass2_msun[1] - cfg.mass2_msun[0]) * u[2]
    if m2 > m1:
        m1, m2 = m2, m1
    spins = np.zeros((2, 3))
    for body, (ua, ub, uc) in enumerate((u[3:6], u[6:9])):
        if cfg.spin == "aligned":
            spins[body, 2] = cfg.spin_max * (2.0 * ua - 1.0)
        elif cfg.spin == "isotropic":
            magnitude = cfg.spin_max * ua
            cos_theta = 2.0 * ub - 1.0
            sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta**2))
            phi = 2.0 * math.pi * uc
            spins[body] = magnitude * np.array([sin_theta * math.cos(phi), sin_theta * math.sin(phi), cos_theta])
    mc = chirp_mass(m1, m2)
    lo, hi = cfg.distance_mpc
    if cfg.distance == "uniform":
        distance = lo + (hi - lo) * u[9]
    else:
        distance = (lo**3 + (hi**3 - lo**3) * u[9]) ** (1.0 / 3.0)
        if cfg.distance == "chirp_uniform_volume":
            distance *= (mc / MCHIRP_REF_MSUN) ** (5.0 / 6.0)
    target_snr = cfg.snr[0] + (cfg.snr[1] - cfg.snr[0]) * u[15] if cfg.snr else float("nan")
    params = {
        "tc": float(start_gps) + tc_offset,
        "tc_offset": tc_offset,
        "mass1": m1,
        "mass2": m2,
        "mchirp": mc,
        "distance": distance,
        "chirp_distance": distance * (MCHIRP_REF_MSUN / mc) ** (5.0 / 6.0),
        "ra": 2.0 * math.pi * u[10],
        "dec": math.asin(2.0 * u[11] - 1.0),
        "inclination": math.acos(2.0 * u[12] - 1.0),
        "polarization": 2.0 * math.pi * u[13],
        "coa_phase": 2.0 * math.pi * u[14],
        "spin1x": spins[0, 0], "spin1y": spins[0, 1], "spin1z": spins[0, 2],
        "spin2x": spins[1, 0], "spin2y": spins[1, 1], "spin2z": spins[1, 2],
        "target_snr": target_snr,
    }
    return {key: float(value) for key, value in params.items()}


def fractional_shift(x: np.ndarray, shift_samples: float) -> np.ndarray:
    """Delay ``x`` by ``0 <= shift_samples < 1`` samples with an exact Fourier phase.

    ``x`` must already be zero-padded at both ends (the shift is circular).
    """
    n = scipy.fft.next_fast_len(x.size, real=True)
    spectrum = scipy.fft.rfft(x, n=n)
    spectrum *= np.exp(-2j * np.pi * np.fft.rfftfreq(n) * shift_samples)
    return scipy.fft.irfft(spectrum, n=n)[: x.size]


@dataclass
class _Injection:
    params: dict
    first_sample: int
    strain: dict[str, np.ndarray]

    @property
    def stop_sample(self) -> int:
        return self.first_sample + max(len(v) for v in self.strain.values())


class InjectionProjector:
    """Per-detector strain of a lazily drawn stream of injections.

    Parameters
    ----------
    cfg : InjectionConfig
        Distributions and grid of merger times.
    seed : int
        Stream seed; injection ``k`` uses ``SeedSequence([seed, 1, k])``.
    ifos : sequence of str
        Detectors (pycbc names).
    sample_rate_hz : int
        Sample rate of the output strain, Hz.
    start_gps : int
        GPS time of absolute sample 0, s.
    psd_fn : callable
        ``psd_fn(delta_f_hz) -> (freqs, psd)``: the PSD the noise is drawn
        from, on a grid of step ``delta_f_hz`` up to Nyquist (strain²/Hz).
    low_frequency_hz : float
        The noise has no power below this; the SNR integral starts at
        ``max(f_lower_hz, low_frequency_hz)``.
    cache_size : int
        Injections whose strain is kept (a forward stream needs 2-3).

    Notes
    -----
    Waveforms come from ``pycbc.waveform.get_td_waveform``, are cut to
    ``[-_pre_merger_s, POST_MERGER_S]`` around the merger, projected with
    ``pycbc.detector.Detector.antenna_pattern`` at ``tc``, tapered at the
    start (``TimeSeries.taper_timeseries('TAPER_START')``, LALSimulation's
    taper) and placed at ``tc + time_delay_from_earth_center`` by an integer
    offset plus an exact Fourier phase shift of the fraction. Optimal SNR is
    ``pycbc.filter.sigma`` against ``psd_fn``. With ``cfg.snr`` set the
    strain is scaled to the target network SNR and the distance divided by
    the same factor (amplitude is exactly 1/distance).
    """

    def __init__(
        self,
        cfg: InjectionConfig,
        *,
        seed: int,
        ifos: Sequence[str],
        sample_rate_hz: int,
        start_gps: int,
        psd_fn: Callable[[float], tuple[np.ndarray, np.ndarray]],
        low_frequency_hz: float = 0.0,
        cache_size: int = 8,
    ):
        from pycbc.detector import Detector

        self.cfg = cfg
        self.seed = int(seed)
        self.ifos = tuple(ifos)
        self.sample_rate_hz = int(sample_rate_hz)
        self.start_gps = int(start_gps)
        self.psd_fn = psd_fn
        self.snr_low_hz = max(cfg.f_lower_hz, low_frequency_hz)
        self.detectors = {ifo: Detector(ifo) for ifo in self.ifos}
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, _Injection] = OrderedDict()
        self._params: OrderedDict[int, dict] = OrderedDict()
        self._recorded: OrderedDict[int, dict] = OrderedDict()
        self._psd_cache: dict[int, object] = {}
        spin = cfg.spin_max if cfg.spin != "zero" else 0.0
        #: longest waveform stretch before / after the geocentric merger, s
        self.max_pre_merger_s = _pre_merger_s(cfg.f_lower_hz, cfg.mass1_msun[0], cfg.mass2_msun[0], spin)
        self.max_post_merger_s = POST_MERGER_S
        self._margin_s = _MAX_EARTH_DELAY_S + 2.0 * (_SHIFT_PAD + 2) / self.sample_rate_hz
        logger.debug(
            "injection projector seed=%d ifos=%s max_pre_merger_s=%.2f approximant=%s",
            self.seed, ",".join(self.ifos), self.max_pre_merger_s, cfg.approximant,
        )

    # -- which injections -------------------------------------------------

    def indices_with_tc(self, start_s: float, stop_s: float) -> list[int]:
        """Indices whose merger ``tc_offset`` lies in ``[start_s, stop_s)`` (s after start_gps)."""
        spacing, jitter = self.cfg.spacing_s, self.cfg.jitter_s
        k_lo = max(0, math.floor((start_s - jitter) / spacing - 0.5))
        k_hi = math.ceil((stop_s + jitter) / spacing - 0.5)
        return [k for k in range(k_lo, k_hi + 1) if start_s <= self._draw(k)["tc_offset"] < stop_s]

    def _candidates(self, start_s: float, stop_s: float) -> range:
        """Indices whose strain may overlap ``[start_s, stop_s)`` (s after start_gps)."""
        spacing, jitter = self.cfg.spacing_s, self.cfg.jitter_s
        k_lo = math.ceil((start_s - jitter - self.max_post_merger_s - self._margin_s) / spacing - 0.5)
        k_hi = math.floor((stop_s + jitter + self.max_pre_merger_s + self._margin_s) / spacing - 0.5)
        return range(max(0, k_lo), k_hi + 1)

    # -- parameters and strain --------------------------------------------

    @staticmethod
    def _remember(store: OrderedDict, k: int, value: dict) -> None:
        store[k] = value
        while len(store) > _PARAMS_KEPT:
            store.popitem(last=False)

    def _draw(self, k: int) -> dict:
        params = self._params.get(k)
        if params is None:
            params = draw_parameters(self.cfg, self.seed, k, self.start_gps)
            self._remember(self._params, k, params)
        return params

    def _psd_series(self, n_fft: int):
        from pycbc.types import FrequencySeries

        series = self._psd_cache.get(n_fft)
        if series is None:
            delta_f = self.sample_rate_hz / n_fft
            _, psd = self.psd_fn(delta_f)
            if psd.size != n_fft // 2 + 1:
                raise ValueError(f"psd_fn({delta_f} Hz) gave {psd.size} bins, expected {n_fft // 2 + 1}")
            series = FrequencySeries(psd, delta_f=delta_f)
            self._psd_cache[n_fft] = series
        return series

    def _polarizations(self, p: dict) -> tuple[np.ndarray, np.ndarray, float]:
        """Cut plus/cross polarizations and the time of their first sample relative to tc, s."""
        from pycbc.waveform import get_td_waveform

        cfg = self.cfg
        hp, hc = get_td_waveform(
            approximant=cfg.approximant, mass1=p["mass1"], mass2=p["mass2"],
            spin1x=p["spin1x"], spin1y=p["spin1y"], spin1z=p["spin1z"],
            spin2x=p["spin2x"], spin2y=p["spin2y"], spin2z=p["spin2z"],
            distance=p["distance"], inclination=p["inclination"], coa_phase=p["coa_phase"],
            delta_t=1.0 / self.sample_rate_hz, f_lower=cfg.f_lower_hz,
        )
        spin = max(math.hypot(p["spin1x"], p["spin1y"], p["spin1z"]),
                   math.hypot(p["spin2x"], p["spin2y"], p["spin2z"]))
        t0 = float(hp.start_time)
        pre_s = min(_pre_merger_s(cfg.f_lower_hz, p["mass1"], p["mass2"], spin), self.max_pre_merger_s)
        i0 = max(0, math.ceil((-pre_s - t0) * self.sample_rate_hz))
        i1 = min(len(hp), math.floor((POST_MERGER_S - t0) * self.sample_rate_hz) + 1)
        return hp.numpy()[i0:i1], hc.numpy()[i0:i1], t0 + i0 / self.sample_rate_hz

    def _compute(self, k: int) -> _Injection:
        from pycbc.filter import sigma
        from pycbc.types import TimeSeries

        p = dict(self._draw(k))
        hp, hc, t_first = self._polarizations(p)
        fs = self.sample_rate_hz
        strain: dict[str, np.ndarray] = {}
        offsets: dict[str, float] = {}
        for ifo, det in self.detectors.items():
            fp, fc = det.antenna_pattern(p["ra"], p["dec"], p["polarization"], p["tc"])
            delay = det.time_delay_from_earth_center(p["ra"], p["dec"], p["tc"])
            h = TimeSeries(fp * hp + fc * hc, delta_t=1.0 / fs).taper_timeseries("TAPER_START").numpy()
            offsets[ifo] = (p["tc_offset"] + delay + t_first) * fs - _SHIFT_PAD
            padded = np.zeros(h.size + 2 * _SHIFT_PAD)
            padded[_SHIFT_PAD:_SHIFT_PAD + h.size] = h
            frac = offsets[ifo] - math.floor(offsets[ifo])
            strain[ifo] = fractional_shift(padded, frac)
        first = min(math.floor(o) for o in offsets.values())
        for ifo in self.ifos:
            lead = math.floor(offsets[ifo]) - first
            if lead:
                strain[ifo] = np.concatenate([np.zeros(lead), strain[ifo]])
        length = max(v.size for v in strain.values())
        n_fft = 1 << max(10, int(math.ceil(math.log2(length))))
        snrs = {}
        for ifo in self.ifos:
            buf = np.zeros(n_fft)
            buf[: strain[ifo].size] = strain[ifo]
            snrs[ifo] = float(sigma(TimeSeries(buf, delta_t=1.0 / fs), self._psd_series(n_fft), self.snr_low_hz))
        network = math.sqrt(sum(v * v for v in snrs.values()))
        if self.cfg.snr:
            if not network > 0:
                raise ValueError(f"injection {k}: network optimal SNR is {network}, cannot rescale to a target")
            scale = p["target_snr"] / network
            for ifo in self.ifos:
                strain[ifo] *= scale
                snrs[ifo] *= scale
            network *= scale
            p["distance"] /= scale
            p["chirp_distance"] /= scale
        for ifo in self.ifos:
            p[f"optimal_snr_{ifo}"] = snrs[ifo]
        p["network_snr"] = network
        p["approximant"] = self.cfg.approximant
        p["f_lower"] = self.cfg.f_lower_hz
        logger.debug("injection k=%d tc=%.4f network_snr=%.2f", k, p["tc"], network)
        return _Injection(params=p, first_sample=first, strain=strain)

    def injection(self, k: int) -> _Injection:
        """Injection ``k`` with its recorded parameters and strain (cached)."""
        inj = self._cache.get(k)
        if inj is None:
            inj = self._compute(k)
            self._remember(self._recorded, k, inj.params)
            self._cache[k] = inj
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(k)
        return inj

    def parameters(self, k: int) -> dict:
        """Recorded parameters of injection ``k`` (see :func:`injection_columns`)."""
        recorded = self._recorded.get(k)
        return recorded if recorded is not None else self.injection(k).params

    def add_to(self, start_sample: int, out: Mapping[str, np.ndarray]) -> None:
        """Add every injection overlapping ``[start_sample, start_sample + n)`` to ``out``.

        Parameters
        ----------
        start_sample : int
            Absolute index of ``out[ifo][0]`` (sample 0 is ``start_gps``).
        out : mapping of str to numpy.ndarray
            ``{ifo: float64 array of n samples}``, modified in place; injections
            are added in index order, so the result does not depend on chunking.
        """
        n = len(next(iter(out.values())))
        fs = self.sample_rate_hz
        stop_sample = start_sample + n
        for k in self._candidates(start_sample / fs, stop_sample / fs):
            inj = self.injection(k)
            if inj.stop_sample <= start_sample or inj.first_sample >= stop_sample:
                continue
            for ifo in self.ifos:
                if ifo not in out:
                    continue
                h = inj.strain[ifo]
                a = max(start_sample, inj.first_sample)
                b = min(stop_sample, inj.first_sample + h.size)
                if b > a:
                    out[ifo][a - start_sample:b - start_sample] += h[a - inj.first_sample:b - inj.first_sample]

    def table(self, start_s: float, stop_s: float) -> dict[str, np.ndarray]:
        """Injection table for mergers in ``[start_s, stop_s)`` (s after start_gps)."""
        rows = [self.parameters(k) for k in self.indices_with_tc(start_s, stop_s)]
        table = {}
        for col in injection_columns(self.ifos):
            if col == "approximant":
                table[col] = np.array([r[col] for r in rows], dtype=str)
            else:
                table[col] = np.array([r[col] for r in rows], dtype=np.float64)
        return table
