"""Matched-filter reference statistic for whitened two-detector windows (issue 4).

The networks see 1-s windows of whitened H1/L1 data; the reference they are
compared with is the optimal linear search *on the same windows*: a bank of
aligned-spin IMRPhenomD templates, each whitened with the window's own
whitening FIR (exactly as :meth:`~gwstream.daemon.train.trainset.WindowMaker.whitened_signals`
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

import logging
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal
from gwstream.daemon.bank.templates import TemplateBank, quadrature, whiten_templates

__all__ = ["Filters", "MatchedFilter", "coincident_snr"]

log = logging.getLogger(__name__)

#: largest geocentre-to-detector light travel time on Earth (s), rounded up
_EARTH_DELAY_S = 0.0215


def _sliding_sum(v: np.ndarray, width: int, n: int) -> np.ndarray:
    """``sum(v[..., j:j + width])`` for ``j < n`` (float64 cumulative sums)."""
    c = np.concatenate([np.zeros(v.shape[:-1] + (1,)), np.cumsum(v, axis=-1)], axis=-1)
    return c[..., width:width + n] - c[..., :n]


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
            :meth:`~gwstream.daemon.train.trainset.NoisePool.stretch`), ``n_ifo == 2``.
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
            w = whiten_templates(h, taps[i])
            w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-300)
            pair = np.stack([w, quadrature(w)], axis=1)  # (T, 2, length)
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
