"""Glitches and per-segment PSD variation for simulated data, random access and chunk-invariant.

Three populations (:class:`~gwstream.daemon.config.GlitchConfig`), drawn independently in each
detector, Poisson in time at a rate per hour:

``blip``
    sine-Gaussian ``h(t) = A exp(-(t - t0)^2 / tau^2) sin(2 pi f0 (t - t0) + phi)`` with
    ``tau = Q / (sqrt(2) pi f0)``; Q uniform over ``blip_q``, f0 log-uniform over ``blip_f0_hz``.
``scatter``
    a scattered-light arch: instantaneous frequency ``f(t) = f_max cos(pi (t - t0) / T)`` for
    ``|t - t0| < T / 2`` (rising from 0 to ``f_max`` and back), phase
    ``phi + 2 f_max T sin(pi (t - t0) / T)``, under a Hann envelope ``cos^2(pi (t - t0) / T)``;
    ``f_max`` uniform over ``scatter_f_max_hz``, ``T`` uniform over ``scatter_duration_s``.
``loud``
    a loud, ms-long broadband transient (what autogating removes): a sine-Gaussian with
    ``Q = LOUD_Q = 1`` (bandwidth ~ f0), f0 log-uniform over ``loud_f0_hz``.

Every glitch is scaled to its optimal SNR in its detector,
``rho^2 = 4 sum |h(f)|^2 / S(f) df`` over ``S(f) > 0`` (the simulator's PSD, zero below its
low-frequency cut-off), computed on the glitch's own sampled waveform; the SNR is drawn
log-uniform over ``snr`` (blips, arches) or ``loud_snr`` (loud), phi uniform in [0, 2 pi).
Sine-Gaussians are cut at ``|t - t0| <= 5 tau`` (``exp(-25)``). The table's ``duration_s`` is
``2 tau`` for sine-Gaussians and ``T`` for arches; ``f0_hz`` is f0 or ``f_max``; ``q`` is NaN for
arches.

Chunk invariance: time is cut into blocks of :data:`GLITCH_BLOCK_S` from sample 0; population
``p`` (index in ``GLITCH_KINDS``) of detector ``i`` (index in ``IFO_NAMES``) in block ``k`` comes
from ``SeedSequence([s_i, p, k])``, ``s_i = derived_seed(seed, 2, i)``: a Poisson count, sorted
uniform centre times in the block, then an ``(n, 4)`` array of uniforms in a fixed column order.
A glitch's waveform is computed once on its absolute sample grid and the part overlapping a
requested chunk is added, glitches in (block, population, index) order, so the strain of a seed
is bit-identical however it is chunked, and a waveform may straddle chunk boundaries. The table
lists glitches whose centre lies in the requested span.

PSD variation (:class:`SegmentedNoise`): the noise is split into bands by amplitude weights
``v_b(f)`` (hat functions, linear in log f, between centres :data:`PSD_BAND_CENTRES_HZ`;
``sum_b v_b = 1``), each band coloured from the *same* white noise with the FIR of
``sqrt(S) v_b``, so the bands add up to the stationary noise. Band ``b`` is multiplied by
``a_b = exp(N(0, sigma))``, drawn per segment of ``psd_segment_s`` from
``SeedSequence([derived_seed(seed, 3, i), segment])``; at each segment edge the factor moves to
the next segment's by a raised cosine over :data:`PSD_RAMP_S`, so the data stay continuous. Within
a segment the ASD is the stationary one times the log-f interpolation of the ``a_b``. The SNRs of
glitches and injections are against the stationary PSD.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from gwstream.daemon.config import IFO_NAMES, GlitchConfig
from gwstream.daemon.io.framefiles import GLITCH_COLUMNS, GLITCH_KINDS

from .noise import ColoredNoise, derived_seed

__all__ = [
    "GLITCH_BLOCK_S",
    "LOUD_Q",
    "PSD_BAND_CENTRES_HZ",
    "PSD_RAMP_S",
    "Glitch",
    "GlitchInjector",
    "band_weights",
    "SegmentedNoise",
    "glitch_columns_empty",
    "glitch_parameters",
    "optimal_snr",
    "unit_waveform",
]

logger = logging.getLogger(__name__)

#: glitches are drawn per block of this many seconds (from sample 0)
GLITCH_BLOCK_S = 1024
#: quality factor of the loud broadband transients
LOUD_Q = 1.0
#: sine-Gaussians are cut at this many e-folding times tau either side of the centre
_SG_CUT_TAUS = 5.0
#: centres of the PSD-variation bands, Hz
PSD_BAND_CENTRES_HZ = (25.0, 75.0, 225.0, 675.0)
#: length of the raised-cosine ramp of the PSD factor at a segment edge, s
PSD_RAMP_S = 8.0
#: drawn glitch lists kept (per detector, population and block)
_DRAWS_KEPT = 512


def _log_uniform(lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    return lo * (hi / lo) ** u


def _tau(f0: float, q: float) -> float:
    return q / (math.sqrt(2.0) * math.pi * f0)


@dataclass(frozen=True)
class Glitch:
    """One glitch in one detector; times in s after ``start_gps``."""

    ifo: str
    kind: str
    time_s: float
    snr: float
    f0_hz: float
    q: float
    duration_s: float
    phase: float
    half_span_s: float
    key: tuple[int, int, int, int]

    def __post_init__(self):
        if self.kind not in GLITCH_KINDS:
            raise ValueError(f"glitch kind {self.kind!r}: expected one of {GLITCH_KINDS}")


def unit_waveform(g: Glitch, t: np.ndarray) -> np.ndarray:
    """Unit-amplitude waveform of ``g`` at times ``t`` (s relative to its centre)."""
    if g.kind == "scatter":
        x = t / g.duration_s
        inside = np.abs(x) < 0.5
        h = np.cos(np.pi * x) ** 2 * np.sin(g.phase + 2.0 * g.f0_hz * g.duration_s * np.sin(np.pi * x))
        return np.where(inside, h, 0.0)
    tau = _tau(g.f0_hz, g.q)
    return np.exp(-((t / tau) ** 2)) * np.sin(2.0 * np.pi * g.f0_hz * t + g.phase)


def glitch_parameters(cfg: GlitchConfig, kind: str, u: np.ndarray):
    """Parameters of glitches of population ``kind`` from uniforms ``u`` of shape ``(n, 4)`` (columns 0-2;
    column 3 is the phase's): ``(q, f0_hz, snr, duration_s, half_span_s)``, arrays of ``n``."""
    n = u.shape[0]
    c = cfg
    if kind == "blip":
        q = c.blip_q[0] + (c.blip_q[1] - c.blip_q[0]) * u[:, 0]
        f0 = _log_uniform(*c.blip_f0_hz, u[:, 1])
        snr = _log_uniform(*c.snr, u[:, 2])
        tau = q / (math.sqrt(2.0) * math.pi * f0)
        return q, f0, snr, 2.0 * tau, _SG_CUT_TAUS * tau
    if kind == "scatter":
        f0 = c.scatter_f_max_hz[0] + (c.scatter_f_max_hz[1] - c.scatter_f_max_hz[0]) * u[:, 0]
        duration = c.scatter_duration_s[0] + (c.scatter_duration_s[1] - c.scatter_duration_s[0]) * u[:, 1]
        snr = _log_uniform(*c.snr, u[:, 2])
        return np.full(n, np.nan), f0, snr, duration, 0.5 * duration
    if kind == "loud":
        f0 = _log_uniform(*c.loud_f0_hz, u[:, 0])
        snr = _log_uniform(*c.loud_snr, u[:, 2])
        tau = LOUD_Q / (math.sqrt(2.0) * math.pi * f0)
        return np.full(n, LOUD_Q), f0, snr, 2.0 * tau, _SG_CUT_TAUS * tau
    raise ValueError(f"glitch kind {kind!r}: expected one of {GLITCH_KINDS}")


def optimal_snr(h: np.ndarray, sample_rate_hz: int, psd_fn: Callable[[float], tuple[np.ndarray, np.ndarray]],
                low_frequency_hz: float) -> float:
    """``sqrt(4 sum |h(f)|^2 / S(f) df)`` over ``f >= low_frequency_hz`` where ``S > 0`` (DC and Nyquist left out).

    ``h(f) = rfft(h) / fs`` zero-padded to a power of two of at least one second;
    ``psd_fn(delta_f) -> (freqs, psd)`` on that grid.
    """
    fs = int(sample_rate_hz)
    n_fft = 1 << int(math.ceil(math.log2(max(h.size, fs))))
    delta_f = fs / n_fft
    freqs, psd = psd_fn(delta_f)
    if psd.size != n_fft // 2 + 1:
        raise ValueError(f"psd_fn({delta_f} Hz) gave {psd.size} bins, expected {n_fft // 2 + 1}")
    spectrum = np.fft.rfft(h, n=n_fft) / fs
    ok = (freqs >= low_frequency_hz) & (psd > 0)
    ok[0] = ok[-1] = False
    return float(np.sqrt(4.0 * delta_f * np.sum(np.abs(spectrum[ok]) ** 2 / psd[ok])))


def glitch_columns_empty() -> dict[str, np.ndarray]:
    """A glitch table with no rows."""
    return {c: np.array([], dtype=str if c in ("ifo", "kind") else np.float64) for c in GLITCH_COLUMNS}


class GlitchInjector:
    """Lazily drawn glitches of every detector, added to chunks of strain.

    Parameters
    ----------
    cfg : GlitchConfig
        Rates and distributions.
    seed : int
        Master seed; detector ``ifo`` uses ``derived_seed(seed, 2, IFO_NAMES.index(ifo))``.
    ifos : sequence of str
        Detectors.
    sample_rate_hz : int
        Sample rate of the strain, Hz.
    start_gps : int
        GPS time of absolute sample 0, s.
    psd_fn : callable
        ``psd_fn(delta_f_hz) -> (freqs, psd)``: the PSD the SNRs are computed against.
    low_frequency_hz : float
        The SNR integral starts here.
    cache_size : int
        Glitch waveforms kept.
    """

    def __init__(
        self,
        cfg: GlitchConfig,
        *,
        seed: int,
        ifos: Sequence[str],
        sample_rate_hz: int,
        start_gps: int,
        psd_fn: Callable[[float], tuple[np.ndarray, np.ndarray]],
        low_frequency_hz: float,
        cache_size: int = 64,
    ):

        self.cfg = cfg
        self.seed = int(seed)
        self.ifos = tuple(ifos)
        self.sample_rate_hz = int(sample_rate_hz)
        self.start_gps = int(start_gps)
        self.psd_fn = psd_fn
        self.low_frequency_hz = float(low_frequency_hz)
        self.cache_size = int(cache_size)
        self.rates = {"blip": cfg.blip_rate_per_hour, "scatter": cfg.scatter_rate_per_hour,
                      "loud": cfg.loud_rate_per_hour}
        self._ifo_seed = {ifo: derived_seed(self.seed, 2, IFO_NAMES.index(ifo)) for ifo in self.ifos}
        spans = {
            "blip": _SG_CUT_TAUS * _tau(cfg.blip_f0_hz[0], cfg.blip_q[1]),
            "scatter": 0.5 * cfg.scatter_duration_s[1],
            "loud": _SG_CUT_TAUS * _tau(cfg.loud_f0_hz[0], LOUD_Q),
        }
        #: the longest half-span of any glitch drawn, s
        self.max_half_span_s = max([spans[k] for k in GLITCH_KINDS if self.rates[k] > 0], default=0.0)
        self._draws: OrderedDict[tuple[str, str, int], list[Glitch]] = OrderedDict()
        self._strain: OrderedDict[tuple, tuple[int, np.ndarray]] = OrderedDict()

    # -- parameters ---------------------------------------------------------

    def draw(self, ifo: str, kind: str, block: int) -> list[Glitch]:
        """The glitches of population ``kind`` in detector ``ifo`` centred in block ``block``, by time."""
        cache_key = (ifo, kind, int(block))
        cached = self._draws.get(cache_key)
        if cached is not None:
            self._draws.move_to_end(cache_key)
            return cached
        rate = self.rates[kind]
        glitches: list[Glitch] = []
        if rate > 0 and block >= 0:
            p = GLITCH_KINDS.index(kind)
            rng = np.random.default_rng(np.random.SeedSequence([self._ifo_seed[ifo], p, int(block)]))
            n = int(rng.poisson(rate * GLITCH_BLOCK_S / 3600.0))
            times = np.sort(rng.uniform(0.0, GLITCH_BLOCK_S, n)) + block * GLITCH_BLOCK_S
            u = rng.random((n, 4))
            q, f0, snr, duration, half = glitch_parameters(self.cfg, kind, u)
            phase = 2.0 * np.pi * u[:, 3]
            i = IFO_NAMES.index(ifo)
            glitches = [
                Glitch(ifo=ifo, kind=kind, time_s=float(times[j]), snr=float(snr[j]), f0_hz=float(f0[j]),
                       q=float(q[j]), duration_s=float(duration[j]), phase=float(phase[j]),
                       half_span_s=float(half[j]), key=(i, p, int(block), j))
                for j in range(n)
            ]
        self._draws[cache_key] = glitches
        while len(self._draws) > _DRAWS_KEPT:
            self._draws.popitem(last=False)
        return glitches

    def glitches(self, start_s: float, stop_s: float) -> list[Glitch]:
        """Glitches of every detector centred in ``[start_s, stop_s)`` s after ``start_gps``, by time."""
        rows = []
        first, last = max(0, math.floor(start_s / GLITCH_BLOCK_S)), math.floor(stop_s / GLITCH_BLOCK_S)
        for block in range(first, last + 1):
            for ifo in self.ifos:
                for kind in GLITCH_KINDS:
                    rows.extend(g for g in self.draw(ifo, kind, block) if start_s <= g.time_s < stop_s)
        rows.sort(key=lambda g: (g.time_s, IFO_NAMES.index(g.ifo)))
        return rows

    def table(self, start_s: float, stop_s: float) -> dict[str, np.ndarray]:
        """Glitch table (:data:`~gwstream.daemon.io.framefiles.GLITCH_COLUMNS`) of :meth:`glitches`; ``time`` GPS."""
        rows = self.glitches(start_s, stop_s)
        if not rows:
            return glitch_columns_empty()
        return {
            "ifo": np.array([g.ifo for g in rows], dtype=str),
            "time": np.array([self.start_gps + g.time_s for g in rows], dtype=np.float64),
            "kind": np.array([g.kind for g in rows], dtype=str),
            "snr": np.array([g.snr for g in rows], dtype=np.float64),
            "f0_hz": np.array([g.f0_hz for g in rows], dtype=np.float64),
            "q": np.array([g.q for g in rows], dtype=np.float64),
            "duration_s": np.array([g.duration_s for g in rows], dtype=np.float64),
        }

    # -- strain -------------------------------------------------------------

    def strain(self, g: Glitch) -> tuple[int, np.ndarray]:
        """``(first_sample, h)``: the glitch at its SNR on the absolute sample grid (cached)."""
        cached = self._strain.get(g.key)
        if cached is not None:
            self._strain.move_to_end(g.key)
            return cached
        fs = self.sample_rate_hz
        first = math.ceil((g.time_s - g.half_span_s) * fs)
        last = math.floor((g.time_s + g.half_span_s) * fs)
        t = np.arange(first, last + 1) / fs - g.time_s
        h = unit_waveform(g, t)
        rho = optimal_snr(h, fs, self.psd_fn, self.low_frequency_hz)
        if not rho > 0:
            raise ValueError(f"{g.kind} glitch in {g.ifo} at {g.time_s:.3f} s (f0 {g.f0_hz:.1f} Hz) has no power "
                             f"above the low-frequency cut-off {self.low_frequency_hz} Hz; cannot scale it to an SNR")
        h *= g.snr / rho
        self._strain[g.key] = (first, h)
        while len(self._strain) > self.cache_size:
            self._strain.popitem(last=False)
        return first, h

    def add_to(self, start_sample: int, out: Mapping[str, np.ndarray]) -> None:
        """Add every glitch overlapping ``[start_sample, start_sample + n)`` to ``out`` (in place).

        Parameters
        ----------
        start_sample : int
            Absolute index of ``out[ifo][0]``.
        out : mapping of str to numpy.ndarray
            ``{ifo: float64 array of n samples}``.
        """
        n = len(next(iter(out.values())))
        fs = self.sample_rate_hz
        stop_sample = start_sample + n
        t_lo, t_hi = start_sample / fs, stop_sample / fs
        margin = self.max_half_span_s + 2.0 / fs
        first_block = max(0, math.floor((t_lo - margin) / GLITCH_BLOCK_S))
        last_block = math.floor((t_hi + margin) / GLITCH_BLOCK_S)
        for block in range(first_block, last_block + 1):
            for ifo in self.ifos:
                if ifo not in out:
                    continue
                x = out[ifo]
                for kind in GLITCH_KINDS:
                    for g in self.draw(ifo, kind, block):
                        if g.time_s + g.half_span_s + 2.0 / fs < t_lo or g.time_s - g.half_span_s - 2.0 / fs > t_hi:
                            continue
                        first, h = self.strain(g)
                        a, b = max(start_sample, first), min(stop_sample, first + h.size)
                        if b > a:
                            x[a - start_sample:b - start_sample] += h[a - first:b - first]


def band_weights(freqs: np.ndarray) -> np.ndarray:
    """Amplitude weights ``v_b(f)``, shape ``(len(PSD_BAND_CENTRES_HZ), len(freqs))``, summing to 1 at each f."""
    logc = np.log(np.asarray(PSD_BAND_CENTRES_HZ))
    logf = np.log(np.maximum(np.asarray(freqs, dtype=np.float64), 1e-3))
    eye = np.eye(len(PSD_BAND_CENTRES_HZ))
    return np.stack([np.interp(logf, logc, eye[b]) for b in range(len(PSD_BAND_CENTRES_HZ))])


class SegmentedNoise:
    """Coloured Gaussian noise whose ASD changes per segment and frequency band (see the module notes).

    Same interface as :class:`~gwstream.daemon.sim.noise.ColoredNoise` (``generate``); the white
    noise is ``ColoredNoise``'s of ``seed``, so ``sigma -> 0`` gives the stationary noise. Costs
    one colouring per band (four times the stationary noise's).

    Parameters
    ----------
    freqs, psd : numpy.ndarray
        The stationary one-sided PSD (strain²/Hz) on a regular grid.
    sample_rate_hz : int
    seed : int
        White-noise seed (the stationary noise's).
    sigma : float
        Standard deviation of the natural log of each band's ASD factor.
    segment_s : float
        Segment length, s (>= 2 * PSD_RAMP_S).
    gain_seed : int
        Seed of the factors; segment ``k`` draws from ``SeedSequence([gain_seed, k])``.
    fir_duration_s : float
        Colouring FIR length, s.
    """

    def __init__(self, freqs: np.ndarray, psd: np.ndarray, sample_rate_hz: int, seed: int, *, sigma: float,
                 segment_s: float, gain_seed: int, fir_duration_s: float = 16.0):
        if not segment_s >= 2 * PSD_RAMP_S:
            raise ValueError(f"segment_s = {segment_s!r}: expected >= {2 * PSD_RAMP_S} s")
        self.sample_rate_hz = int(sample_rate_hz)
        self.sigma = float(sigma)
        self.segment_s = float(segment_s)
        self.gain_seed = int(gain_seed)
        weights = band_weights(freqs)
        self.bands = [ColoredNoise(freqs, psd * w**2, sample_rate_hz, seed, fir_duration_s=fir_duration_s)
                      for w in weights]
        self._gains: OrderedDict[int, np.ndarray] = OrderedDict()

    def gains(self, segment: int) -> np.ndarray:
        """ASD factor of each band in segment ``segment`` (segments before 0 take segment 0's)."""
        segment = max(0, int(segment))
        cached = self._gains.get(segment)
        if cached is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.gain_seed, segment]))
            cached = np.exp(self.sigma * rng.standard_normal(len(self.bands)))
            self._gains[segment] = cached
            while len(self._gains) > 64:
                self._gains.popitem(last=False)
        return cached

    def gain_curve(self, start_sample: int, n: int) -> np.ndarray:
        """Factors of samples ``[start_sample, start_sample + n)``, shape ``(n_bands, n)``."""
        t = (int(start_sample) + np.arange(n)) / self.sample_rate_hz
        edge = np.round(t / self.segment_s).astype(np.int64)
        x = t - edge * self.segment_s
        w = 0.5 - 0.5 * np.cos(np.pi * np.clip((x + 0.5 * PSD_RAMP_S) / PSD_RAMP_S, 0.0, 1.0))
        if n == 0:
            return np.zeros((len(self.bands), 0))
        lo, hi = int(edge.min()) - 1, int(edge.max())
        table = np.stack([self.gains(k) for k in range(lo, hi + 1)])  # (segments, bands)
        before, after = table[edge - 1 - lo].T, table[edge - lo].T
        return before * (1.0 - w) + after * w

    def generate(self, start_sample: int, n: int) -> np.ndarray:
        """Samples ``[start_sample, start_sample + n)``, float64 strain."""
        gain = self.gain_curve(start_sample, n)
        out = np.zeros(int(n))
        for b, noise in enumerate(self.bands):
            out += gain[b] * noise.generate(start_sample, n)
        return out
