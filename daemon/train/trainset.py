"""Training and validation windows, whitened exactly as the daemon whitens its stream.

Noise: stationary coloured Gaussian noise (coloured in the frequency domain) from a set of PSDs, the design PSD plus perturbed variants (broadband scale and
spectral tilt), generated afresh for every epoch. Each detector's stretch is
whitened by our own kernels with a PSD **estimated** from that stretch (median
Welch, as the daemon does), never with the true one.

Signals: a bank of pycbc time-domain waveforms (plus and cross polarisations,
intrinsic parameters from ``[simulate.injections]``-style distributions),
projected per window onto H1 and L1 with antenna patterns and light-travel
delays for an isotropic sky, delayed by an exact Fourier phase, whitened with
the *same* FIR as the noise they are added to (whitening is linear), scaled to
a target network SNR measured against that estimated PSD, and placed with the
merger at a random point of ``merger_span_s`` inside the window.

Glitches (``train.glitch_fraction``, ``train.glitch_signal_fraction``): the shapes of
``gwstream simulate``'s populations (``[train.glitches]``, daemon/sim/glitches.py: blips,
scattered-light arches, loud ms transients; the populations' rates weigh how often each is
drawn), whitened with the stretch's FIR like the signals, scaled to an SNR drawn from the
population's range (the whitened waveform's energy, as a signal's), centred anywhere a part of
it reaches the window.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
from gwstream.daemon.bank.waveforms import one_waveform
from gwstream.daemon.config import GlitchConfig, InjectionConfig
from gwstream.daemon.io.atomic import atomic_path
from gwstream.daemon.io.framefiles import GLITCH_KINDS
from gwstream.daemon.sim.glitches import Glitch, glitch_parameters, unit_waveform
from gwstream.daemon.sim.injections import draw_parameters
from gwstream.daemon.sim.noise import load_psd
from gwstream.kernels import psd as kpsd
from gwstream.kernels import whiten as kwh

__all__ = ["WaveformBank", "NoisePool", "WindowMaker", "validation_chunks", "make_validation_set"]

log = logging.getLogger(__name__)

_SKY_GPS = 1_000_000_000.0  # antenna patterns vary with GMST: a uniform ra covers it

#: Largest offset (s) between the centres of a lined-up glitch pair: the H1-L1 light travel time (10 ms)
#: and a margin, so the pair could be one signal's two arrivals.
COINCIDENT_DT_S = 0.02


@dataclass
class WaveformBank:
    """Plus/cross polarisations, merger at sample ``merger_index``, unit distance scale.

    Attributes
    ----------
    hp, hc : numpy.ndarray
        float32, shape ``(n, length)``.
    params : dict of numpy.ndarray
        Intrinsic parameters of each entry (masses, spins, inclination, phase).
    merger_index : int
        Sample of the geocentric merger in every row.
    """

    hp: np.ndarray
    hc: np.ndarray
    params: dict
    merger_index: int
    sample_rate_hz: int

    @classmethod
    def generate(cls, cfg: InjectionConfig, n: int, seed: int, sample_rate_hz: int = 2048,
                 before_s: float = 2.5, after_s: float = 0.5, workers: int = 2,
                 cache: str | Path | None = None) -> "WaveformBank":
        """Draw ``n`` waveforms (parameters from ``cfg`` with ``seed``), optionally cached as .npz."""
        key = (f"{cfg.approximant}-{cfg.f_lower_hz}-{cfg.mass1_msun}-{cfg.mass2_msun}-{cfg.spin}-"
               f"{cfg.spin_max}-{n}-{seed}-{sample_rate_hz}-{before_s}-{after_s}"
               + ("" if cfg.mass_distribution == "uniform" else f"-{cfg.mass_distribution}"))
        path = None
        if cache is not None:
            path = Path(cache) / f"bank-{_stable_hash(key)}.npz"
            if path.exists():
                with np.load(path, allow_pickle=False) as z:
                    params = {k[2:]: z[k] for k in z.files if k.startswith("p_")}
                    return cls(z["hp"], z["hc"], params, int(z["merger_index"]), sample_rate_hz)
        draws = [draw_parameters(cfg, seed, k) for k in range(n)]
        jobs = [(p, cfg.approximant, cfg.f_lower_hz, sample_rate_hz, before_s, after_s) for p in draws]
        log.info("generating waveform bank n=%d approximant=%s workers=%d", n, cfg.approximant, workers)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                waves = list(pool.map(one_waveform, jobs, chunksize=8))
        else:
            waves = [one_waveform(j) for j in jobs]
        hp = np.stack([w[0] for w in waves]).astype(np.float32)
        hc = np.stack([w[1] for w in waves]).astype(np.float32)
        names = ("mass1", "mass2", "mchirp", "spin1x", "spin1y", "spin1z", "spin2x", "spin2y", "spin2z",
                 "inclination", "coa_phase")
        params = {k: np.array([p[k] for p in draws]) for k in names}
        bank = cls(hp, hc, params, int(round(before_s * sample_rate_hz)), sample_rate_hz)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to any other name
                np.savez(tmp, hp=hp, hc=hc, merger_index=bank.merger_index,
                         **{f"p_{k}": v for k, v in params.items()})
        return bank

    def __len__(self) -> int:
        return self.hp.shape[0]


def _stable_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


class NoisePool:
    """Whitened two-detector noise stretches from a family of PSDs.

    Parameters
    ----------
    ifos : sequence of str
    sample_rate_hz : int
    psd_name : str
        pycbc analytic PSD of the design curve.
    n_variants : int
        PSDs used: the design one plus ``n_variants - 1`` perturbed ones
        (scale ``10**U(-log10 s, log10 s)``, tilt ``(f / 100 Hz)**U(-t, t)``).
    scale, tilt : float
    fftlength_s, overlap, average, fduration_s, highpass_hz, phase :
        The daemon's PSD estimate and whitening filter (config sections psd, whiten).
    seed : int
    """

    def __init__(self, ifos=("H1", "L1"), sample_rate_hz: int = 2048, *, psd_name="aLIGOZeroDetHighPower",
                 n_variants: int = 8, scale: float = 2.0, tilt: float = 0.3, low_frequency_hz: float = 10.0,
                 fftlength_s: float = 4.0, overlap: float = 0.5, average: str = "median",
                 fduration_s: float = 1.0, highpass_hz: float = 20.0, phase: str = "linear", seed: int = 0):
        self.ifos = tuple(ifos)
        self.rate = int(sample_rate_hz)
        self.fftlength_s, self.overlap, self.average = fftlength_s, overlap, average
        self.fduration_s, self.highpass_hz, self.phase = fduration_s, highpass_hz, phase
        freqs, design = load_psd(psd_name, sample_rate_hz=self.rate, delta_f_hz=1.0 / 16,
                                 low_frequency_hz=low_frequency_hz)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self.freqs = freqs
        self.psds = [design]
        f_ref = np.where(freqs > 0, freqs, 1.0) / 100.0
        for _ in range(n_variants - 1):
            s = 10 ** rng.uniform(-math.log10(scale), math.log10(scale))
            t = rng.uniform(-tilt, tilt)
            self.psds.append(design * s * f_ref ** t)
        self.n_taps = int(round(fduration_s * self.rate))
        self.lookahead = kwh.lookahead_samples(self.n_taps, phase)

    def _noise(self, psd: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Stationary Gaussian noise with one-sided ``psd``, coloured in the frequency domain.

        ``E|X_k|^2 = S(f_k) n fs / 2`` so that ``var(x) = integral of S df``; a
        stretch is its own period, which is harmless for training windows cut
        well inside it (the long-stream generator is :class:`ColoredNoise`).
        """
        f = np.fft.rfftfreq(n, 1.0 / self.rate)
        amp = np.sqrt(np.interp(f, self.freqs, psd) * n * self.rate / 4.0)
        spec = amp * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
        spec[0] = spec[-1] = 0.0
        return scipy.fft.irfft(spec, n)

    def stretch(self, seed_words: tuple[int, ...], duration_s: int, rng: np.random.Generator):
        """One whitened stretch per detector.

        Returns
        -------
        white : numpy.ndarray
            float32 ``(n_ifo, n)`` whitened noise, the corrupted edges cut off.
        taps : numpy.ndarray
            float64 ``(n_ifo, n_taps)`` whitening filter designed from the estimated PSD.
        """
        n = int(duration_s * self.rate)
        head, tail = kwh.edge_samples(self.n_taps, self.phase)
        white, taps = [], []
        for i in range(len(self.ifos)):
            psd = self.psds[rng.integers(len(self.psds))]
            x = self._noise(psd, n, np.random.default_rng(np.random.SeedSequence([*seed_words, i])))
            f_est, p_est = kpsd.welch(x, self.rate, self.fftlength_s, self.overlap, self.average)
            args = (self.rate, f_est, p_est, self.fduration_s, self.highpass_hz, self.phase)
            white.append(kwh.whiten(x, *args)[head:n - tail])
            taps.append(kwh.design_fir(*args))
        return np.stack(white).astype(np.float32), np.stack(taps)


class WindowMaker:
    """Cut labelled, whitened two-detector windows: noise, or noise plus a scaled signal.

    Parameters
    ----------
    bank : WaveformBank
    pool : NoisePool
    window_s : float
        Window length (s).
    merger_span_s : (float, float)
        The merger is placed uniformly in this span of the window (s from its start).
    stretch_s : int
        Length of each noise stretch (s): its PSD is estimated over it.
    """

    def __init__(self, bank: WaveformBank, pool: NoisePool, *, window_s: float = 1.0,
                 merger_span_s: tuple[float, float] = (0.5, 0.9), stretch_s: int = 128):
        if bank.sample_rate_hz != pool.rate:
            raise ValueError(f"bank at {bank.sample_rate_hz} Hz, noise at {pool.rate} Hz: expected equal rates")
        self.bank, self.pool = bank, pool
        self.rate = pool.rate
        self.window = int(round(window_s * self.rate))
        self.span = (int(merger_span_s[0] * self.rate), int(merger_span_s[1] * self.rate))
        if self.span[0] > self.bank.merger_index or \
                self.window - self.span[0] > self.bank.hp.shape[1] - self.bank.merger_index:
            raise ValueError(f"merger_span_s {merger_span_s} does not fit the bank's waveforms")
        self.stretch_s = int(stretch_s)
        from pycbc.detector import Detector

        self._detectors = [Detector(ifo) for ifo in pool.ifos]

    @classmethod
    def from_config(cls, cfg, bank: WaveformBank, seed: int, phase: str | None = None) -> "WindowMaker":
        """Windows of ``bank``'s signals in noise as ``cfg.train`` makes it (its PSD family, seed ``seed``),
        whitened as the daemon whitens (``cfg.psd``, ``cfg.whiten``; ``phase`` overrides ``whiten.phase``)."""
        t = cfg.train
        pool = NoisePool(cfg.data.ifos, cfg.data.analysis_rate_hz, seed=seed, psd_name=t.psd,
                         n_variants=t.psd_variants, scale=t.psd_scale, tilt=t.psd_tilt,
                         fftlength_s=cfg.psd.fftlength_s, overlap=cfg.psd.overlap, average=cfg.psd.average,
                         fduration_s=cfg.whiten.fduration_s, highpass_hz=cfg.whiten.highpass_hz,
                         phase=phase or cfg.whiten.phase)
        return cls(bank, pool, window_s=cfg.windows.window_s, merger_span_s=t.merger_span_s, stretch_s=t.stretch_s)

    def whitened_signals(self, idx: np.ndarray, taps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Project bank entries ``idx`` for random sky positions and whiten them with ``taps``.

        Returns float64 ``(k, n_ifo, length)``, geocentric merger at ``bank.merger_index``.
        """
        k = idx.size
        ra = rng.uniform(0, 2 * np.pi, k)
        dec = np.arcsin(rng.uniform(-1, 1, k))
        pol = rng.uniform(0, 2 * np.pi, k)
        hp, hc = self.bank.hp[idx].astype(np.float64), self.bank.hc[idx].astype(np.float64)
        length = hp.shape[1]
        n_taps = taps.shape[-1]
        la = kwh.lookahead_samples(n_taps, self.pool.phase)
        nfft = scipy.fft.next_fast_len(length + n_taps, real=True)
        freqs = np.fft.rfftfreq(nfft, 1.0 / self.rate)
        out = np.empty((k, len(self._detectors), length))
        for i, det in enumerate(self._detectors):
            fp, fc = det.antenna_pattern(ra, dec, pol, _SKY_GPS)
            delay = det.time_delay_from_earth_center(ra, dec, _SKY_GPS)
            h = np.asarray(fp)[:, None] * hp + np.asarray(fc)[:, None] * hc
            spec = scipy.fft.rfft(h, nfft, axis=1) * scipy.fft.rfft(taps[i], nfft)[None, :]
            spec *= np.exp(-2j * np.pi * freqs[None, :] * np.asarray(delay)[:, None])
            out[:, i] = scipy.fft.irfft(spec, nfft, axis=1)[:, la:la + length]
        return out

    def whitened_glitch(self, cfg: GlitchConfig, taps: np.ndarray, rng: np.random.Generator,
                        near_s: float | None = None) -> tuple[np.ndarray, float]:
        """One glitch drawn from ``cfg``'s populations, whitened with ``taps`` (one detector's FIR), cut to the
        window: float64 ``(window,)``, and its centre (seconds from the window's start).

        The population is drawn with probability proportional to its rate; the shape
        (:func:`~gwstream.daemon.sim.glitches.glitch_parameters`) and the SNR as ``gwstream simulate``
        draws them, the SNR being the whole whitened glitch's (its energy, as a signal's). The centre is
        uniform over the times where part of the glitch lies in the window, or, with ``near_s``, within
        :data:`COINCIDENT_DT_S` of that time (a second glitch lined up with a first, as a signal's
        arrivals are).
        """
        rates = np.array([cfg.blip_rate_per_hour, cfg.scatter_rate_per_hour, cfg.loud_rate_per_hour])
        kind = GLITCH_KINDS[int(rng.choice(len(GLITCH_KINDS), p=rates / rates.sum()))]
        u = rng.random((1, 4))
        q, f0, snr, duration, half = (float(a[0]) for a in glitch_parameters(cfg, kind, u))
        g = Glitch(ifo=self.pool.ifos[0], kind=kind, time_s=0.0, snr=snr, f0_hz=f0, q=q, duration_s=duration,
                   phase=float(2.0 * np.pi * u[0, 3]), half_span_s=half, key=(0, 0, 0, 0))
        reach = min(half, 0.5 * duration + 0.05)  # most of the energy lies within duration/2 of the centre
        if near_s is None:
            centre = rng.uniform(-reach, self.window / self.rate + reach)
        else:
            centre = near_s + rng.uniform(-COINCIDENT_DT_S, COINCIDENT_DT_S)
        n_taps = taps.size
        first = math.floor((centre - half) * self.rate) - n_taps
        h = unit_waveform(g, np.arange(first, math.ceil((centre + half) * self.rate) + n_taps + 1) / self.rate
                          - centre)
        la = kwh.lookahead_samples(n_taps, self.pool.phase)
        nfft = scipy.fft.next_fast_len(h.size + n_taps, real=True)
        w = scipy.fft.irfft(scipy.fft.rfft(h, nfft) * scipy.fft.rfft(taps, nfft), nfft)[la:la + h.size]
        energy = float(np.sqrt((w ** 2).sum()))
        out = np.zeros(self.window)
        if energy > 0:
            a, b = max(0, first), min(self.window, first + h.size)
            if b > a:
                out[a:b] = w[a - first:b - first] * (snr / energy)
        return out, centre

    def from_stretch(self, white: np.ndarray, taps: np.ndarray, rng: np.random.Generator, n_windows: int,
                     n_signals: int, snr_range: tuple[float, float] | None = None, snrs: np.ndarray | None = None,
                     n_single: int = 0, single_snr_range: tuple[float, float] = (5.0, 40.0),
                     loud_fraction: float = 0.0, loud_snr_range: tuple[float, float] = (16.0, 64.0),
                     info: dict | None = None, n_glitch: int = 0, glitches: GlitchConfig | None = None,
                     glitch_both_fraction: float = 0.25, glitch_signal_fraction: float = 0.0,
                     glitch_coincident_fraction: float = 0.0):
        """``n_windows`` windows from one whitened stretch, the first ``n_signals`` with signals.

        A ``loud_fraction`` of the signals (when their SNR is drawn from
        ``snr_range``) instead get a network SNR log-uniform in ``loud_snr_range``:
        coincident signals as loud as the single-detector negatives, so the
        network cannot learn "loud means noise" (the statistic must rise with SNR).

        The next ``n_single`` windows (label 0) hold a signal in *one* detector
        only (chosen at random), at a single-detector SNR drawn from
        ``single_snr_range``: what a time slide of a real event, or a glitch,
        looks like. A coincidence statistic must rank them as noise.

        The next ``n_glitch`` windows (label 0) hold a glitch drawn from ``glitches``
        (:meth:`whitened_glitch`) in one detector, and with probability
        ``glitch_both_fraction`` an independent one in the other; a
        ``glitch_coincident_fraction`` of those pairs are lined up within
        :data:`COINCIDENT_DT_S`, as a signal's arrivals are (the pairs a slide makes
        that look most like a signal; at random times, 1-4 % are). A
        ``glitch_signal_fraction`` of the signal windows also get a glitch in one
        detector. Without glitches the random draws are those of a window set
        without them, and without coincident pairs those of a set made before they
        existed.

        Returns ``(x float32 (n, n_ifo, window), label float32 (n,), snr float32 (n,))``.
        When a dict ``info`` is given, it receives per-window arrays (NaN or -1 where
        a window holds no coincident signal; the random draws are the same either way):
        ``bank_index``, ``ifo_snr`` ``(n, n_ifo)`` (each detector's optimal SNR of the
        whole whitened signal, after scaling), ``window_snr`` (network SNR of the part
        inside the window) and ``merger_sample`` (its position in the window).
        """
        n = white.shape[1]
        starts = np.sort(rng.choice(np.arange(0, n - self.window, self.window), n_windows, replace=False))
        x = np.stack([white[:, s:s + self.window] for s in starts]).astype(np.float32)
        label = np.zeros(n_windows, np.float32)
        snr = np.zeros(n_windows, np.float32)
        if info is not None:
            info.update(bank_index=np.full(n_windows, -1, np.int64),
                        ifo_snr=np.full((n_windows, len(self._detectors)), np.nan),
                        window_snr=np.full(n_windows, np.nan), merger_sample=np.full(n_windows, -1, np.int64))
        if n_signals:
            idx = rng.integers(len(self.bank), size=n_signals)
            sig = self.whitened_signals(idx, taps, rng)
            if snrs is None:
                snrs = rng.uniform(*snr_range, n_signals)
                if loud_fraction > 0:
                    loud = rng.random(n_signals) < loud_fraction
                    lo, hi = np.log(loud_snr_range[0]), np.log(loud_snr_range[1])
                    snrs = np.where(loud, np.exp(rng.uniform(lo, hi, n_signals)), snrs)
            rho = np.sqrt((sig ** 2).sum(axis=(1, 2)))
            sig *= (snrs / rho)[:, None, None]
            pos = rng.integers(self.span[0], self.span[1] + 1, n_signals)
            m = self.bank.merger_index
            for j in range(n_signals):
                cut = sig[j, :, m - pos[j]:m - pos[j] + self.window]
                x[j] += cut.astype(np.float32)
                if info is not None:
                    info["window_snr"][j] = np.sqrt((cut ** 2).sum())
            label[:n_signals] = 1.0
            snr[:n_signals] = snrs
            if info is not None:
                info["bank_index"][:n_signals] = idx
                info["ifo_snr"][:n_signals] = np.sqrt((sig ** 2).sum(axis=2))
                info["merger_sample"][:n_signals] = pos
        if n_single:
            if n_signals + n_single > n_windows:
                raise ValueError(f"{n_signals} signal + {n_single} single-detector windows > {n_windows} windows")
            idx = rng.integers(len(self.bank), size=n_single)
            sig = self.whitened_signals(idx, taps, rng)
            which = rng.integers(sig.shape[1], size=n_single)
            rho1 = rng.uniform(*single_snr_range, n_single)
            pos = rng.integers(self.span[0], self.span[1] + 1, n_single)
            m = self.bank.merger_index
            for j in range(n_single):
                one = sig[j, which[j], m - pos[j]:m - pos[j] + self.window]
                norm = np.sqrt((sig[j, which[j]] ** 2).sum())
                if norm > 0:
                    x[n_signals + j, which[j]] += (one * (rho1[j] / norm)).astype(np.float32)
        if n_glitch or (n_signals and glitch_signal_fraction > 0):
            if glitches is None:
                raise ValueError("glitch windows asked for without a GlitchConfig (glitches=...)")
            if n_signals + n_single + n_glitch > n_windows:
                raise ValueError(f"{n_signals} signal + {n_single} single-detector + {n_glitch} glitch windows > "
                                 f"{n_windows} windows")
            n_ifo = white.shape[0]
            rows = [(n_signals + n_single + j, True) for j in range(n_glitch)]
            rows += [(j, False) for j in np.flatnonzero(rng.random(n_signals) < glitch_signal_fraction)]
            for row, may_pair in rows:
                first = int(rng.integers(n_ifo))
                hit = [first]
                if may_pair and n_ifo > 1 and rng.random() < glitch_both_fraction:
                    hit.append(int((first + 1 + rng.integers(n_ifo - 1)) % n_ifo))
                lined_up = len(hit) > 1 and glitch_coincident_fraction > 0 and rng.random() < glitch_coincident_fraction
                centre = None
                for i in hit:
                    g, c = self.whitened_glitch(glitches, taps[i], rng, near_s=centre)
                    x[row, i] += g.astype(np.float32)
                    centre = c if lined_up else None
        return x, label, snr

    def epoch(self, seed_words: tuple[int, ...], n: int, snr_range: tuple[float, float],
              signal_fraction: float = 0.5, windows_per_stretch: int = 64, single_fraction: float = 0.0,
              single_snr_range: tuple[float, float] = (5.0, 40.0), loud_fraction: float = 0.0,
              loud_snr_range: tuple[float, float] = (16.0, 64.0), hard_fraction: float = 0.0,
              hard_picker=None, glitch_fraction: float = 0.0, glitches: GlitchConfig | None = None,
              glitch_both_fraction: float = 0.25, glitch_signal_fraction: float = 0.0,
              glitch_coincident_fraction: float = 0.0):
        """``n`` shuffled training windows for one epoch, deterministic for ``seed_words``.

        ``signal_fraction`` of them hold a signal (label 1); ``single_fraction``
        hold a signal in one detector only (label 0, see :meth:`from_stretch`).
        A ``hard_fraction`` of them are *hard negatives*: noise windows chosen by
        ``hard_picker(white, k) -> [(h1_start, l1_start), ...]`` (sample indices
        into each whitened stretch, at most ``k`` distinct windows; the L1 part may be
        time-slid against H1), e.g. the ones the current model scores highest;
        rows it has no pick for keep plain noise windows.
        Without a picker (or with ``hard_fraction = 0``) the draws are exactly
        those of a plain epoch. A ``glitch_fraction`` of them hold glitches (label 0),
        and a ``glitch_signal_fraction`` of the signal windows a glitch too
        (:meth:`from_stretch`).
        """
        rng = np.random.default_rng(np.random.SeedSequence([*seed_words, 11]))
        xs, ys, ss = [], [], []
        made, s = 0, 0
        while made < n:
            m = min(windows_per_stretch, n - made)
            white, taps = self.pool.stretch((*seed_words, s), self.stretch_s, rng)
            n_sig = int(round(m * signal_fraction))
            n_one = min(m - n_sig, int(round(m * single_fraction)))
            n_gl = min(m - n_sig - n_one, int(round(m * glitch_fraction)))
            x, y, snr = self.from_stretch(white, taps, rng, m, n_sig, snr_range, n_single=n_one,
                                          single_snr_range=single_snr_range, loud_fraction=loud_fraction,
                                          loud_snr_range=loud_snr_range, n_glitch=n_gl, glitches=glitches,
                                          glitch_both_fraction=glitch_both_fraction,
                                          glitch_coincident_fraction=glitch_coincident_fraction,
                                          glitch_signal_fraction=glitch_signal_fraction)
            n_hard = (min(m - n_sig - n_one - n_gl, int(round(m * hard_fraction)))
                      if hard_picker is not None else 0)
            if n_hard > 0:
                picks = hard_picker(white, n_hard)
                if len(picks) > n_hard:
                    raise ValueError(f"hard_picker returned {len(picks)} windows, expected at most {n_hard}")
                for j, (s1, s2) in enumerate(picks):
                    row = m - n_hard + j
                    x[row, 0] = white[0, s1:s1 + self.window]
                    x[row, 1] = white[1, s2:s2 + self.window]
            xs.append(x), ys.append(y), ss.append(snr)
            made += m
            s += 1
        order = rng.permutation(n)
        return np.concatenate(xs)[order], np.concatenate(ys)[order], np.concatenate(ss)[order]


def validation_chunks(maker: WindowMaker, seed: int, n_noise: int, snrs=(6.0, 8.0, 10.0, 12.0),
                      n_per_snr: int = 1000, with_info: bool = False):
    """Yield ``(x, label, snr, taps)`` per noise stretch: held-out windows, a stretch at a time.

    With ``with_info``, ``(x, label, snr, taps, info)``: ``info`` is the per-window dict of
    :meth:`WindowMaker.from_stretch` (which signal, each detector's SNR, ...); the windows are the same.

    ``n_noise`` noise-only windows (non-overlapping, from fresh stretches whose
    seeds are disjoint from training's), then ``n_per_snr`` signal windows at
    each network SNR, from the bank given to ``maker`` (use a bank drawn with
    another seed). Streaming, so 10^5 windows never sit in memory at once.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    per = maker.stretch_s - 2
    s = 0
    for rho, count in [(0.0, n_noise)] + [(float(r), n_per_snr) for r in snrs]:
        made = 0
        while made < count:
            m = min(per, count - made, 64 if rho else per)
            white, taps = maker.pool.stretch((seed, 99, s), maker.stretch_s, rng)
            k = m if rho else 0
            info: dict | None = {} if with_info else None
            x, y, snr = maker.from_stretch(white, taps, rng, m, k, snrs=np.full(k, rho) if k else None, info=info)
            yield (x, y, snr, taps, info) if with_info else (x, y, snr, taps)
            made += m
            s += 1


def make_validation_set(maker: WindowMaker, seed: int, n_noise: int, snrs=(6.0, 8.0, 10.0, 12.0),
                        n_per_snr: int = 1000):
    """All of :func:`validation_chunks` at once: ``(x, label, snr)`` like :meth:`WindowMaker.epoch`."""
    chunks = list(validation_chunks(maker, seed, n_noise, snrs, n_per_snr))
    return tuple(np.concatenate([c[i] for c in chunks]) for i in range(3))
