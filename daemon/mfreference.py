"""Matched-filter reference statistic for whitened two-detector windows (issue 4).

The networks see 1-s windows of whitened H1/L1 data; the reference they are
compared with is the optimal linear search *on the same windows*: a bank of
aligned-spin IMRPhenomD templates, each whitened with the window's own
whitening FIR (exactly as :meth:`~gwstream.daemon.trainset.WindowMaker.whitened_signals`
whitens the signals), correlated with the window by FFT over every merger
time of the search span, maximised analytically over the phase, and combined
across detectors as the standard two-detector coincident SNR::

    rho_net = max_{template, t_H in span} sqrt(rho_H(t_H)^2 + max_{|dt| <= coinc_s + 1 sample} rho_L(t_H + dt)^2)

(the quadrature sum of single-detector SNRs of one template in coincidence
within the light travel time, as PyCBC's coincident search ranks pairs before
its chi-squared and phase-time-amplitude terms; the noise here is Gaussian, so
no signal-consistency test is needed).

Only the part of a template that falls inside the window can be filtered, so
the single-detector SNR at merger sample ``p`` is the exact maximum over phase
of the normalised overlap with the *truncated* template pair (template and its
Hilbert quadrature)::

    rho^2 = c^T G^-1 c,   c = (<d, h_p>, <d, hq_p>),   G = Gram matrix of (h_p, hq_p)

which is chi-squared with 2 degrees of freedom in unit-variance white noise
for every ``p`` (it reduces to ``<d,h>^2 + <d,hq>^2`` when the whole template
fits in the window).

A pure kernel (:func:`coincident_snr`) does the arithmetic on prepared filters;
:class:`MatchedFilter` holds the bank and the search geometry and prepares the
filters once per whitening filter (all windows of one noise stretch share it).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal
from gwstream.kernels import whiten as kwh

__all__ = ["Filters", "MatchedFilter", "TemplateBank", "coincident_snr", "place_bank"]

log = logging.getLogger(__name__)

#: waveform cut of the templates (s before / after merger), as the training bank's
_BEFORE_S, _AFTER_S = 2.5, 0.5
#: largest geocentre-to-detector light travel time on Earth (s), rounded up
_EARTH_DELAY_S = 0.0215


def _template(args) -> np.ndarray:
    """Plus polarisation (face-on, phase 0) of one aligned-spin template, cut like a training waveform."""
    from .trainset import _one_waveform

    (m1, m2, s1z, s2z), approximant, f_lower_hz, rate = args
    p = {"mass1": m1, "mass2": m2, "spin1x": 0.0, "spin1y": 0.0, "spin1z": s1z,
         "spin2x": 0.0, "spin2y": 0.0, "spin2z": s2z, "inclination": 0.0, "coa_phase": 0.0}
    hp, _ = _one_waveform((p, approximant, f_lower_hz, rate, _BEFORE_S, _AFTER_S))
    return hp


@dataclass
class TemplateBank:
    """Unwhitened template waveforms, merger at sample ``merger_index`` of every row.

    Attributes
    ----------
    h : numpy.ndarray
        float32 ``(n_templates, length)`` plus polarisation (face-on, zero
        phase, unit distance scale), cut to ``[-2.5 s, +0.5 s]`` around the
        merger with the training bank's start taper.
    params : dict of numpy.ndarray
        ``mass1``, ``mass2`` (Msun), ``spin1z``, ``spin2z``, shape ``(n_templates,)``.
    merger_index : int
    sample_rate_hz : int
    approximant : str
    """

    h: np.ndarray
    params: dict
    merger_index: int
    sample_rate_hz: int
    approximant: str = "IMRPhenomD"

    def __len__(self) -> int:
        return self.h.shape[0]

    @classmethod
    def from_params(cls, mass1_msun, mass2_msun, spin1z=None, spin2z=None, *, sample_rate_hz: int = 2048,
                    f_lower_hz: float = 20.0, approximant: str = "IMRPhenomD", workers: int = 1) -> TemplateBank:
        """Generate the templates of the given intrinsic parameters.

        Parameters
        ----------
        mass1_msun, mass2_msun : array_like
            Component masses (Msun), shape ``(n,)``.
        spin1z, spin2z : array_like, optional
            Aligned dimensionless spins, shape ``(n,)``; zero when omitted.
        sample_rate_hz : int
        f_lower_hz : float
            Waveform start frequency (Hz).
        approximant : str
            A pycbc time-domain approximant without precession (``IMRPhenomD``).
        workers : int
            Processes generating waveforms.
        """
        m1 = np.atleast_1d(np.asarray(mass1_msun, dtype=np.float64))
        m2 = np.atleast_1d(np.asarray(mass2_msun, dtype=np.float64))
        s1 = np.zeros_like(m1) if spin1z is None else np.atleast_1d(np.asarray(spin1z, dtype=np.float64))
        s2 = np.zeros_like(m1) if spin2z is None else np.atleast_1d(np.asarray(spin2z, dtype=np.float64))
        if not (m1.shape == m2.shape == s1.shape == s2.shape) or m1.ndim != 1 or m1.size == 0:
            raise ValueError(f"template parameters of shapes {m1.shape}, {m2.shape}, {s1.shape}, {s2.shape}: "
                             "expected equal non-empty 1-d shapes")
        if np.any(m1 <= 0) or np.any(m2 <= 0):
            raise ValueError(f"masses down to {min(m1.min(), m2.min())} Msun: expected > 0")
        if np.any(np.abs(s1) >= 1) or np.any(np.abs(s2) >= 1):
            raise ValueError(f"aligned spins up to {max(np.abs(s1).max(), np.abs(s2).max())}: expected |spin| < 1")
        jobs = [((a, b, c, d), approximant, f_lower_hz, int(sample_rate_hz)) for a, b, c, d in zip(m1, m2, s1, s2)]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                h = list(pool.map(_template, jobs, chunksize=8))
        else:
            h = [_template(j) for j in jobs]
        params = {"mass1": m1, "mass2": m2, "spin1z": s1, "spin2z": s2}
        return cls(np.stack(h).astype(np.float32), params, int(round(_BEFORE_S * sample_rate_hz)),
                   int(sample_rate_hz), approximant)

    def subset(self, idx) -> TemplateBank:
        """The templates ``idx`` (indices or boolean mask) as a new bank."""
        idx = np.asarray(idx)
        return TemplateBank(self.h[idx], {k: v[idx] for k, v in self.params.items()}, self.merger_index,
                            self.sample_rate_hz, self.approximant)

    def save(self, path: str | Path) -> Path:
        """Write the bank as ``.npz`` (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, h=self.h, merger_index=self.merger_index, sample_rate_hz=self.sample_rate_hz,
                 approximant=self.approximant, **{f"p_{k}": v for k, v in self.params.items()})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TemplateBank:
        """Read a bank written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            params = {k[2:]: z[k] for k in z.files if k.startswith("p_")}
            return cls(z["h"], params, int(z["merger_index"]), int(z["sample_rate_hz"]), str(z["approximant"]))


def _whiten_rows(h: np.ndarray, taps: np.ndarray, phase: str = "linear") -> np.ndarray:
    """Causal FIR ``taps`` (designed with ``phase``) applied to each row of ``h``, delay removed: as
    ``WindowMaker.whitened_signals``."""
    length, n_taps = h.shape[-1], taps.shape[-1]
    la = kwh.lookahead_samples(n_taps, phase)
    nfft = scipy.fft.next_fast_len(length + n_taps, real=True)
    tf = scipy.fft.rfft(taps, nfft)
    out = np.empty(h.shape, np.float64)
    for i in range(0, h.shape[0], 256):  # bounds the complex temporaries
        spec = scipy.fft.rfft(h[i:i + 256].astype(np.float64), nfft, axis=-1) * tf
        out[i:i + 256] = scipy.fft.irfft(spec, nfft, axis=-1)[..., la:la + length]
    return out


def _quadrature(w: np.ndarray) -> np.ndarray:
    """Hilbert transform of each row (the template's 90-degree phase-shifted copy)."""
    return np.imag(scipy.signal.hilbert(w, axis=-1))


def _sliding_sum(v: np.ndarray, width: int, n: int) -> np.ndarray:
    """``sum(v[..., j:j + width])`` for ``j < n`` (float64 cumulative sums)."""
    c = np.concatenate([np.zeros(v.shape[:-1] + (1,)), np.cumsum(v, axis=-1)], axis=-1)
    return c[..., width:width + n] - c[..., :n]


def place_bank(mass_range_msun=(7.0, 50.0), spin_max: float = 0.99, *, taps: np.ndarray,
               minimal_match: float = 0.97, n_candidates: int = 2000, seed: int = 0,
               sample_rate_hz: int = 2048, before_s: float = 0.95, after_s: float = 0.55,
               f_lower_hz: float = 20.0, workers: int = 1, cache: str | Path | None = None) -> TemplateBank:
    """Greedy stochastic placement of an aligned-spin IMRPhenomD bank (sbank-like).

    Candidates are drawn with component masses uniform in ``mass_range_msun``
    (sorted) and aligned spins uniform in ``[-spin_max, spin_max]`` (which
    covers the aligned components of the training population's isotropic
    spins); in draw order, a candidate joins the bank when its match with
    every template already in it is below ``minimal_match`` (the sbank
    algorithm, Ajith et al. 2014, arXiv:1210.6666, with a fixed candidate count).

    Parameters
    ----------
    mass_range_msun : (float, float)
        Component-mass range (Msun).
    spin_max : float
        Largest spin magnitude of the population.
    taps : numpy.ndarray
        float64 ``(n_taps,)`` whitening FIR defining the match (the design PSD's).
    minimal_match : float
        Placement threshold, in (0, 1).
    n_candidates : int
    seed : int
    sample_rate_hz : int
    before_s, after_s : float
        The match is computed on the whitened templates cut to
        ``[-before_s, +after_s]`` s around the merger: the most a 1-s window
        shows of a merger at 0.9 s (plus the detector delay) or 0.5 s.
    f_lower_hz : float
    workers : int
    cache : path-like, optional
        Folder where the placed bank is stored and reused (keyed by all arguments).

    Returns
    -------
    TemplateBank
    """
    if not 0.0 < minimal_match < 1.0:
        raise ValueError(f"minimal_match = {minimal_match!r}: expected in (0, 1)")
    lo, hi = mass_range_msun
    if not 0 < lo <= hi:
        raise ValueError(f"mass_range_msun = {mass_range_msun!r}: expected 0 < low <= high (Msun)")
    if n_candidates < 1:
        raise ValueError(f"n_candidates = {n_candidates!r}: expected >= 1")
    taps = np.asarray(taps, dtype=np.float64)
    key = (f"{lo}-{hi}-{spin_max}-{minimal_match}-{n_candidates}-{seed}-{sample_rate_hz}-{before_s}-{after_s}-"
           f"{f_lower_hz}-{hashlib.sha256(taps.tobytes()).hexdigest()[:12]}")
    path = None
    if cache is not None:
        path = Path(cache) / f"mfbank-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
        if path.exists():
            return TemplateBank.load(path)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
    m = rng.uniform(lo, hi, (n_candidates, 2))
    m1, m2 = m.max(axis=1), m.min(axis=1)
    spin_z = rng.uniform(-spin_max, spin_max, (n_candidates, 2))
    log.info("placing bank candidates=%d minimal_match=%.3f", n_candidates, minimal_match)
    cand = TemplateBank.from_params(m1, m2, spin_z[:, 0], spin_z[:, 1], sample_rate_hz=sample_rate_hz,
                                    f_lower_hz=f_lower_hz, workers=workers)
    mi = cand.merger_index
    w = _whiten_rows(cand.h, taps)[:, mi - int(round(before_s * sample_rate_hz)):mi + int(round(after_s * sample_rate_hz))]
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    wq = _quadrature(w)
    nfft = scipy.fft.next_fast_len(2 * w.shape[1], real=True)
    spec = scipy.fft.rfft(w, nfft, axis=1).astype(np.complex64)
    spec_q = scipy.fft.rfft(wq, nfft, axis=1).astype(np.complex64)
    kept: list[int] = [0]
    for c in range(1, n_candidates):
        k = np.asarray(kept)
        a = scipy.fft.irfft(np.conj(spec[c]) * spec[k], nfft, axis=1)
        b = scipy.fft.irfft(np.conj(spec[c]) * spec_q[k], nfft, axis=1)
        if np.sqrt(a * a + b * b).max() < minimal_match:
            kept.append(c)
    bank = cand.subset(np.asarray(kept))
    log.info("placed bank n_templates=%d of candidates=%d", len(bank), n_candidates)
    if path is not None:
        bank.save(path)
    return bank


@dataclass
class Filters:
    """Per-whitening-filter state of :class:`MatchedFilter` (see :meth:`MatchedFilter.prepare`).

    Attributes
    ----------
    spec : numpy.ndarray
        complex64 ``(n_templates, n_ifo, 2, nfft // 2 + 1)``: spectra of the
        whitened template segments (in phase, quadrature).
    inv_gram : numpy.ndarray
        float32 ``(3, n_templates, n_ifo, n_lags)``: coefficients ``(g_aa,
        g_bb, g_ab)`` of ``rho^2 = g_aa a^2 + g_bb b^2 + g_ab a b`` per lag.
    """

    spec: np.ndarray
    inv_gram: np.ndarray


def coincident_snr(windows: np.ndarray, filters: Filters, *, nfft: int, n_lags: int, coinc_samples: int,
                   template_chunk: int = 16, workers: int = 1, return_argmax: bool = False):
    """Two-detector coincident matched-filter SNR of each window (pure kernel).

    Parameters
    ----------
    windows : numpy.ndarray
        ``(n, 2, window)`` whitened H1/L1 windows.
    filters : Filters
        From :meth:`MatchedFilter.prepare`; lag ``j`` is merger sample ``last - j``.
    nfft : int
        FFT length the filters were prepared with.
    n_lags : int
        Lags prepared; the first detector is searched over ``[coinc_samples, n_lags - coinc_samples)``.
    coinc_samples : int
        Largest second-detector offset (samples).
    template_chunk : int
        Templates correlated at once (bounds memory: ``16 n_windows template_chunk nfft`` bytes).
    workers : int
        CPU threads of the FFTs and arithmetic (torch).
    return_argmax : bool
        Also return the best template and lag of each window.

    Returns
    -------
    rho : numpy.ndarray
        float64 ``(n,)`` network SNR.
    template, lag : numpy.ndarray
        int ``(n,)``, when ``return_argmax``.
    """
    import torch
    import torch.nn.functional as F

    n = windows.shape[0]
    cs = coinc_samples
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(workers)))
    try:
        with torch.inference_mode():
            d = torch.fft.rfft(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)), nfft, dim=-1)
            d_conj = torch.conj(d)[:, None, :, None, :]  # (n, 1, ifo, 1, f)
            spec = torch.from_numpy(filters.spec)
            gram = torch.from_numpy(filters.inv_gram)
            best = torch.full((n,), -float("inf"))
            best_t = torch.zeros(n, dtype=torch.long)
            best_j = torch.zeros(n, dtype=torch.long)
            for t0 in range(0, filters.spec.shape[0], template_chunk):
                sl = slice(t0, t0 + template_chunk)
                c = torch.fft.irfft(d_conj * spec[None, sl], nfft, dim=-1)[..., :n_lags]
                a, b = c[:, :, :, 0], c[:, :, :, 1]  # (n, tc, ifo, lag)
                g = gram[:, sl]
                rho2 = g[0] * a * a + g[1] * b * b + g[2] * a * b
                # max over the second detector's lags within +-cs (edges: the lags that exist)
                second = F.max_pool1d(rho2[:, :, 1], 2 * cs + 1, stride=1, padding=cs) if 2 * cs + 1 <= \
                    rho2.shape[-1] else rho2[:, :, 1].amax(dim=-1, keepdim=True).expand_as(rho2[:, :, 1])
                net = rho2[:, :, 0, cs:n_lags - cs] + second[..., cs:n_lags - cs]  # (n, tc, lag)
                flat = net.reshape(n, -1)
                val, k = flat.max(dim=1)
                better = val > best
                best = torch.where(better, val, best)
                best_t = torch.where(better, t0 + k // net.shape[-1], best_t)
                best_j = torch.where(better, cs + k % net.shape[-1], best_j)
    finally:
        torch.set_num_threads(before)
    best, best_t, best_j = best.numpy(), best_t.numpy(), best_j.numpy()
    rho = np.sqrt(np.maximum(best.astype(np.float64), 0.0))
    if return_argmax:
        return rho, best_t, best_j
    return rho


class MatchedFilter:
    """Matched-filter reference search over whitened two-detector windows.

    Parameters
    ----------
    bank : TemplateBank
    window_s : float
        Window length (s).
    merger_span_s : (float, float)
        Span of geocentric merger times the windows hold (s from the window
        start). The first detector's merger time is searched over this span
        widened by ``margin_s`` on each side (the detector's delay from the
        geocentre), the second's over ``coinc_s + 1 sample`` more.
    margin_s : float
        Widening of the span (s); default the largest Earth light travel time.
    coinc_s : float
        Largest H1-L1 arrival-time difference (s).
    template_chunk : int
        Templates correlated at once.
    workers : int
        Threads of the inverse FFTs.

    Attributes
    ----------
    window, first, last : int
        Window length and the first / last merger sample searched in the second detector.
    coinc_samples, n_lags, nfft : int
        Computed once here; see :func:`coincident_snr`.

    Notes
    -----
    Cost per window: ``4 n_templates`` real inverse FFTs of ``nfft`` samples
    (two detectors, two phases); per whitening filter: whitening the bank.
    """

    def __init__(self, bank: TemplateBank, *, window_s: float = 1.0, merger_span_s=(0.5, 0.9),
                 margin_s: float = _EARTH_DELAY_S, coinc_s: float = 0.010, template_chunk: int = 16,
                 workers: int = 1):
        rate = bank.sample_rate_hz
        if len(bank) == 0:
            raise ValueError("bank of 0 templates: expected at least one")
        lo_s, hi_s = merger_span_s
        if not 0.0 <= lo_s <= hi_s <= window_s:
            raise ValueError(f"merger_span_s = {tuple(merger_span_s)!r} s: expected 0 <= low <= high <= "
                             f"window_s = {window_s} s")
        if margin_s < 0 or coinc_s < 0:
            raise ValueError(f"margin_s = {margin_s!r} s, coinc_s = {coinc_s!r} s: expected >= 0")
        if template_chunk < 1:
            raise ValueError(f"template_chunk = {template_chunk!r}: expected >= 1")
        self.bank = bank
        self.rate = rate
        self.window = int(round(window_s * rate))
        self.coinc_samples = int(np.floor(coinc_s * rate)) + 1
        margin = int(np.ceil(margin_s * rate))
        self.first = max(0, int(round(lo_s * rate)) - margin - self.coinc_samples)
        self.last = min(self.window - 1, int(round(hi_s * rate)) + margin + self.coinc_samples)
        self.n_lags = self.last - self.first + 1
        if self.n_lags <= 2 * self.coinc_samples:
            raise ValueError(f"search span of {self.n_lags} samples is shorter than the coincidence window "
                             f"2 * {self.coinc_samples} + 1 samples")
        self.nfft = scipy.fft.next_fast_len(self.n_lags + self.window - 1, real=True)
        self.template_chunk = int(template_chunk)
        self.workers = int(workers)
        self.merger_span_s = (float(lo_s), float(hi_s))
        self.margin_s, self.coinc_s = float(margin_s), float(coinc_s)

    def prepare(self, taps: np.ndarray) -> Filters:
        """Whiten the bank with ``taps`` and precompute its segment spectra and per-lag Gram inverses.

        Parameters
        ----------
        taps : numpy.ndarray
            float ``(n_ifo, n_taps)`` whitening FIR of each detector (from
            :meth:`~gwstream.daemon.trainset.NoisePool.stretch`), ``n_ifo == 2``.
        """
        taps = np.asarray(taps, dtype=np.float64)
        if taps.ndim != 2 or taps.shape[0] != 2:
            raise ValueError(f"taps of shape {taps.shape}: expected (2, n_taps) for H1 and L1")
        h = self.bank.h
        m = self.bank.merger_index
        # lag j <-> merger sample last - j: window sample s meets template sample m - last + j + s
        start, stop = m - self.last, m - self.first + self.window  # segment [start, stop) of the template
        seg_len = stop - start
        spec, gram = [], []
        for i in range(2):
            w = _whiten_rows(h, taps[i])
            w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-300)
            pair = np.stack([w, _quadrature(w)], axis=1)  # (T, 2, length)
            seg = np.zeros((h.shape[0], 2, seg_len))
            lo, hi = max(start, 0), min(stop, h.shape[1])
            seg[..., lo - start:hi - start] = pair[..., lo:hi]
            spec.append(scipy.fft.rfft(seg, self.nfft, axis=-1).astype(np.complex64))
            # sliding Gram matrix of the template pair over the window at each lag
            aa, bb, ab = (_sliding_sum(v, self.window, self.n_lags)
                          for v in (seg[:, 0] ** 2, seg[:, 1] ** 2, seg[:, 0] * seg[:, 1]))
            det = np.maximum(aa * bb - ab * ab, 1e-12 * np.maximum(aa * bb, 1e-300))
            gram.append(np.stack([bb / det, aa / det, -2.0 * ab / det]))
        return Filters(np.stack(spec, axis=1), np.stack(gram, axis=2).astype(np.float32))

    def statistic(self, windows: np.ndarray, taps: np.ndarray | None = None, filters: Filters | None = None,
                  *, batch: int = 32, return_argmax: bool = False):
        """Network matched-filter SNR of each window.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(n, 2, window)`` whitened H1/L1 windows, all whitened with the same filter.
        taps : numpy.ndarray, optional
            That filter, ``(2, n_taps)``; or give ``filters`` from :meth:`prepare`.
        filters : Filters, optional
        batch : int
            Windows correlated at once.
        return_argmax : bool
            Also return the best template index and its first-detector merger sample.

        Returns
        -------
        rho : numpy.ndarray
            float64 ``(n,)``.
        template, merger_sample : numpy.ndarray
            int ``(n,)``, when ``return_argmax``.
        """
        windows = np.asarray(windows)
        if windows.ndim != 3 or windows.shape[1] != 2 or windows.shape[2] != self.window:
            raise ValueError(f"windows of shape {windows.shape}: expected (n, 2, {self.window})")
        if (taps is None) == (filters is None):
            raise ValueError("give exactly one of taps (2, n_taps) and filters (from prepare)")
        if filters is None:
            filters = self.prepare(taps)
        if filters.spec.shape[0] != len(self.bank) or filters.spec.shape[-1] != self.nfft // 2 + 1:
            raise ValueError(f"filters for {filters.spec.shape[0]} templates and nfft "
                             f"{2 * (filters.spec.shape[-1] - 1)}: expected {len(self.bank)} and {self.nfft}")
        if batch < 1:
            raise ValueError(f"batch = {batch!r}: expected >= 1")
        out = [coincident_snr(windows[i:i + batch], filters, nfft=self.nfft, n_lags=self.n_lags,
                              coinc_samples=self.coinc_samples, template_chunk=self.template_chunk,
                              workers=self.workers, return_argmax=True) for i in range(0, windows.shape[0], batch)]
        rho = np.concatenate([o[0] for o in out]) if out else np.zeros(0)
        if not return_argmax:
            return rho
        t = np.concatenate([o[1] for o in out]) if out else np.zeros(0, np.int64)
        j = np.concatenate([o[2] for o in out]) if out else np.zeros(0, np.int64)
        return rho, t, self.last - j
