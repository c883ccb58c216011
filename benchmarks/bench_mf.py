"""Plain FFT matched-filter search over an archive: the peer of the replay throughput benchmark.

Plain script::

    .venv/bin/python benchmarks/bench_mf.py DATA.hdf --out triggers.h5 [--bank PATH] [--bank-size N]
        [--threads 2] [--config configs/train.toml]

``DATA.hdf`` is what ``gwstream simulate`` writes (H1/L1 strain, read with
:func:`~gwstream.daemon.io.framefiles.iter_hdf5_segments`, so any file the daemon
reads as HDF5 will do). The search is the standard frequency-domain matched
filter of a PyCBC search (``pycbc_inspiral``), with PyCBC's power chi-squared
test as an option (``--chisq-bins``; off by default, where the noise is Gaussian):

* **Segments.** The data both detectors hold are cut into analysis segments
  of ``segment_s`` (256 s) overlapping by ``pad_start + pad_end``; the inverse
  FFT is circular, so only the merger times ``[pad_start, segment - pad_end)``
  of a segment are kept, and the kept parts tile the data. ``pad_start`` is
  the longest template's duration from ``f_lower_hz`` plus ``psd_inverse_s``
  (the over-whitening filter reaches that far each side), ``pad_end`` is
  ``psd_inverse_s`` plus 0.5 s of ringdown; the first ``pad_start`` and last
  ``pad_end`` seconds of the data cannot be searched (as in PyCBC). Data
  shorter than a segment are searched as one zero-padded segment.
* **PSD.** Estimated from each segment's own data: Welch median average of
  4-s Hann-windowed segments with 2-s stride (``pycbc.psd.welch``, as
  ``pycbc_inspiral --psd-estimation median``), interpolated to the segment's
  frequency resolution and its inverse truncated to ``psd_inverse_s`` in the
  time domain (``pycbc.psd.inverse_spectrum_truncation``, Hann taper).
* **Templates.** The bank's aligned-spin parameters, generated in the
  frequency domain once per run at the segment's resolution
  (``pycbc.waveform.get_fd_waveform``, ``f_lower_hz`` to Nyquist): the full
  inspiral, not the 3-s time-domain cut stored in a
  :class:`~gwstream.daemon.bank.TemplateBank`.
* **Filtering.** Per template, detector and segment, the complex SNR
  ``z(t) = 4 sum_{f >= f_lower} d~(f) h~*(f) / S(f) e^{2 pi i f t} / sigma``
  by one single-precision complex inverse FFT of the segment length: FFTW
  through ``pyfftw`` (the ``bench`` extra; planned with ``FFTW_MEASURE``, as
  PyCBC plans its FFTW transforms) when installed, scipy's pocketfft
  otherwise, which is about half as fast (the summary's ``fft`` says which). ``threads`` cores are used
  by splitting the bank over that many forked worker processes, each
  single-threaded, and taking the maximum of their results: scipy's
  ``workers`` only parallelises batches of transforms, not one 1-D transform,
  and template generation (LALSimulation) is serial; a PyCBC search uses
  several cores the same way (one ``pycbc_inspiral`` job per bank split).
* **Triggers.** Per template and detector, the samples of ``|z|`` at or
  above ``snr_threshold`` that are the largest within ``+-cluster_s / 2``
  (PyCBC's fixed-window then sliding-window clustering); an H1 and an L1
  trigger *of the same template* within ``coinc_s`` (10 ms light travel time
  plus 5 ms) form a coincidence with network SNR ``sqrt(snr_H1^2 +
  snr_L1^2)``, and the coincidences of all templates are clustered the same
  way on it (by H1 time). Same-template coincidence is PyCBC's; pairing the
  bank-maximised ``|z|`` of each detector instead loses loud signals, because
  the best templates of the two detectors can differ and their merger times
  be offset by 10-15 ms (2 of 40 injections of network SNR 15-25 in a
  20-minute test).
* **Chi-squared** (``chisq_bins = p > 0``; Allen 2005, PyCBC's
  ``--chisq-bins``). For each single-detector trigger that meets a trigger of
  the other detector (at zero lag or in a slide), the template's band is cut
  into ``p`` bins of equal template power ``<h|h>`` under the segment's PSD,
  the complex SNR of each bin ``z_l`` is summed at the trigger's sample, and
  ``chi^2 = p sum_l |z_l - z / p|^2`` (``2p - 2`` degrees of freedom; a glitch
  puts its power in a few bins, a signal that matches the template spreads it
  as the template does). The trigger is ranked on PyCBC's re-weighted SNR
  ``rho / ((1 + chi_r^6) / 2)^(1/6)`` where ``chi_r^2 = chi^2 / (2p - 2) > 1``
  (``rho`` otherwise), and coincidences on ``sqrt(rhohat_H1^2 +
  rhohat_L1^2)``, zero lag and slides alike. The SNR threshold and the
  clustering of single-detector triggers stay on ``rho``.

:func:`run_mf_search` writes the coincident triggers (and the single-detector
ones) to HDF5 and returns a summary; its ``wall_s`` covers everything the
search does after it is handed its bank (reading, PSDs, template generation,
filtering, clustering, coincidence, writing). Bank placement or loading is
timed separately by the script (``bank_s``). The default bank is the one
``benchmarks/validate.py`` places for the issue-4 matched-filter reference
(:func:`~gwstream.daemon.bank.place_bank`, aligned-spin IMRPhenomD,
7-50 Msun, minimal match 0.95, 3000 candidates), read from that script's
cache when present, placed and cached there otherwise.

The script prints one JSON line: ``data_s``, ``wall_s``, ``x_real_time``
(``data_s / wall_s``), ``cpu_s``, ``n_templates``, ``n_triggers``,
``threads``, the time breakdown, and the bank used with ``bank_s``. Start-up
(Python and PyCBC imports, a few seconds) is in neither.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.fft
import scipy.ndimage
from gwstream.daemon.bank import TemplateBank
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.framefiles import iter_hdf5_segments
from gwstream.daemon.units import NS

__all__ = ["run_mf_search", "validation_bank"]

log = logging.getLogger("bench_mf")

IFOS = ("H1", "L1")
#: how far past its merger a template reaches (ringdown, with margin), s
_POST_MERGER_S = 0.5
#: benchmarks/validate.py's bank placement (its --minimal-match and --bank-candidates defaults)
VALIDATION_MINIMAL_MATCH, VALIDATION_CANDIDATES = 0.95, 3000


def validation_bank(config: str | Path = "configs/train.toml", *, workers: int = 2) -> tuple[TemplateBank, Path]:
    """The matched-filter bank of ``benchmarks/validate.py --config config`` (its defaults).

    Placed exactly as that script places it (design PSD of the training noise,
    linear-phase whitening FIR, mass and spin range of ``[train.injections]``,
    seed ``train.seed + 20000``), so both share the cached file.

    Parameters
    ----------
    config : path-like
        The training config the validation was run with.
    workers : int
        Processes generating candidate waveforms when the bank has to be placed.

    Returns
    -------
    bank : TemplateBank
    cache : pathlib.Path
        Folder the bank is cached in (``<train.out_dir>/banks``).
    """
    from gwstream.daemon.bank import place_bank
    from gwstream.daemon.config import load_config
    from gwstream.daemon.train.trainset import NoisePool
    from gwstream.kernels import whiten as kwh

    cfg = load_config(str(config))
    t = cfg.train
    inj = t.injections
    rate = cfg.data.analysis_rate_hz
    seed = t.seed + 20_000
    pool = NoisePool(cfg.data.ifos, rate, psd_name=t.psd, seed=seed)
    taps = kwh.design_fir(rate, pool.freqs, pool.psds[0], cfg.whiten.fduration_s, cfg.whiten.highpass_hz, "linear")
    mass_range = (min(inj.mass1_msun[0], inj.mass2_msun[0]), max(inj.mass1_msun[1], inj.mass2_msun[1]))
    cache = Path(t.out_dir) / "banks"
    bank = place_bank(mass_range, inj.spin_max if inj.spin != "zero" else 0.0, taps=taps,
                      minimal_match=VALIDATION_MINIMAL_MATCH, n_candidates=VALIDATION_CANDIDATES, seed=seed,
                      sample_rate_hz=rate, f_lower_hz=inj.f_lower_hz, workers=workers, cache=cache)
    return bank, cache


# ------------------------------------------------------------------ data
@dataclass
class _Span:
    """Contiguous data both detectors hold."""

    gps_start_ns: int
    rate: int
    strain: np.ndarray  # float64 (2, n): H1, L1


def _read_spans(path: str | Path) -> list[_Span]:
    """The stretches of ``path`` where H1 and L1 both have strain."""
    segs = list(iter_hdf5_segments(path, IFOS))
    by_ifo = {ifo: [s for s in segs if s.ifo == ifo] for ifo in IFOS}
    missing = [ifo for ifo, s in by_ifo.items() if not s]
    if missing:
        raise FrameFileError(f"HDF5 file {str(path)!r}: no {'/'.join(missing)} strain (found "
                             f"{sorted({s.ifo for s in segs})}), expected both H1 and L1")
    spans = []
    for h1 in by_ifo["H1"]:
        for l1 in by_ifo["L1"]:
            if h1.sample_rate != l1.sample_rate:
                raise FrameFileError(f"HDF5 file {str(path)!r}: H1 at {h1.sample_rate} Hz, L1 at {l1.sample_rate} "
                                     "Hz: expected one sample rate")
            rate = h1.sample_rate
            start, stop = max(h1.gps_start_ns, l1.gps_start_ns), min(h1.gps_start_ns + h1.duration_ns,
                                                                     l1.gps_start_ns + l1.duration_ns)
            if stop <= start:
                continue
            offsets = [(start - s.gps_start_ns) * rate for s in (h1, l1)]
            if any(o % NS for o in offsets):
                raise FrameFileError(f"HDF5 file {str(path)!r}: H1 and L1 samples not on a common grid "
                                     f"(starts {h1.gps_start_ns} and {l1.gps_start_ns} ns at {rate} Hz)")
            i0 = [o // NS for o in offsets]
            n = (stop - start) * rate // NS
            strain = np.stack([np.asarray(s.dataset[a:a + n], dtype=np.float64) for s, a in zip((h1, l1), i0)])
            spans.append(_Span(start, rate, strain))
    if not spans:
        raise FrameFileError(f"HDF5 file {str(path)!r}: H1 and L1 strain do not overlap in time")
    return sorted(spans, key=lambda s: s.gps_start_ns)


def _plan(n: int, seg_n: int, pad0: int, pad1: int) -> list[tuple[int, int, int]]:
    """``(start, keep_lo, keep_hi)`` sample offsets of the segments of an ``n``-sample span.

    Segments of ``seg_n`` samples step by ``seg_n - pad0 - pad1``; the last is
    moved back to end with the data, and each keeps its merger samples from
    where the previous one stopped. A span shorter than ``seg_n`` is one segment.
    """
    if n <= seg_n:
        return [(0, pad0, n - pad1)] if n - pad1 > pad0 else []
    step = seg_n - pad0 - pad1
    starts = list(range(0, n - seg_n + 1, step))
    if starts[-1] + seg_n < n:
        starts.append(n - seg_n)
    plan, done = [], pad0
    for s in starts:
        plan.append((s, done, s + seg_n - pad1))
        done = s + seg_n - pad1
    return plan


@dataclass
class _Segment:
    """One analysis segment, both detectors, ready to filter."""

    span: int
    start: int  # sample offset of the segment in its span
    keep: slice  # merger samples kept, relative to the segment start
    w: np.ndarray  # complex64 (2, nfft // 2 + 1): rfft(d) / S, scaled by 1 / w_scale, zero outside the band
    w_scale: np.ndarray  # float64 (2,)
    inv_psd: np.ndarray  # float64 (2, n_band): 1 / S over the band


def _condition(x: np.ndarray, rate: int, nfft: int, kmin: int, kmax: int, psd_segment_s: float,
               psd_inverse_s: float, f_lower_hz: float, where: str) -> tuple[np.ndarray, float, np.ndarray]:
    """PSD-weighted spectrum of one detector's segment (``where`` names it): ``(w, scale, 1 / S[kmin:kmax])``."""
    import pycbc.psd
    from pycbc.types import TimeSeries

    seg_len = int(round(psd_segment_s * rate))
    psd = pycbc.psd.welch(TimeSeries(x, delta_t=1.0 / rate), seg_len=seg_len, seg_stride=seg_len // 2,
                          avg_method="median")
    psd = pycbc.psd.interpolate(psd, rate / nfft)
    psd = pycbc.psd.inverse_spectrum_truncation(psd, int(round(psd_inverse_s * rate)),
                                                low_frequency_cutoff=f_lower_hz, trunc_method="hann")
    s = psd.numpy()[kmin:kmax]
    if not np.all(s > 0):
        raise ValueError(f"{where}: PSD estimate not positive in {np.sum(~(s > 0))} of {s.size} frequency bins "
                         f"in [{f_lower_hz}, {rate / 2}) Hz: expected noisy strain (is it all zero?)")
    inv = 1.0 / s
    spec = scipy.fft.rfft(x, nfft)
    band = spec[kmin:kmax] * inv
    scale = float(np.abs(band).max()) or 1.0
    w = np.zeros(nfft // 2 + 1, np.complex64)
    w[kmin:kmax] = band / scale
    return w, scale, inv


def _fd_templates(params: dict, approximant: str, delta_f: float, f_lower_hz: float, f_final_hz: float,
                  n_bins: int):
    """Frequency-domain templates of ``params`` (bank columns), one at a time: ``h~`` complex128 ``(n_bins,)``."""
    from pycbc.waveform import get_fd_waveform

    for i in range(len(params["mass1"])):
        hp, _ = get_fd_waveform(approximant=approximant, mass1=float(params["mass1"][i]),
                                mass2=float(params["mass2"][i]), spin1z=float(params["spin1z"][i]),
                                spin2z=float(params["spin2z"][i]), delta_f=delta_f, f_lower=f_lower_hz,
                                f_final=f_final_hz)
        h = np.zeros(n_bins, np.complex128)
        m = min(n_bins, len(hp))
        h[:m] = hp.numpy()[:m]
        yield h


def _cluster(idx: np.ndarray, val: np.ndarray, width: int) -> np.ndarray:
    """Positions (into ``idx``) of the samples that are the largest within ``+-width // 2`` samples.

    ``idx`` (sorted, sample numbers) and ``val`` are the samples above
    threshold. PyCBC's two steps: the largest in each fixed window of
    ``width`` samples, then of those, the ones with no louder survivor within
    ``+-width // 2`` (only the neighbouring windows can hold one).
    """
    if idx.size == 0:
        return np.zeros(0, np.int64)
    bins = idx // width
    order = np.lexsort((-val, bins))
    keep = order[np.r_[True, bins[order][1:] != bins[order][:-1]]]
    i, v = idx[keep], val[keep]
    near = np.diff(i) <= width // 2
    beaten_by_prev = np.r_[False, near & (v[:-1] > v[1:])]
    beaten_by_next = np.r_[near & (v[1:] >= v[:-1]), False]
    return keep[~(beaten_by_prev | beaten_by_next)]


def _inverse_fft():
    """``(name, ifft)``: a single-threaded complex64 inverse FFT, normalised like ``numpy.fft.ifft``.

    FFTW (``pyfftw``, the ``bench`` extra), planned once per length with
    ``FFTW_MEASURE`` as PyCBC plans its transforms, when installed; scipy's
    pocketfft otherwise (about half as fast at 2^19 points here). FFTW's
    result is its output buffer, overwritten by the next call.
    """
    try:
        import pyfftw
    except ImportError:
        return "pocketfft (scipy)", scipy.fft.ifft
    plans = {}

    def ifft(q: np.ndarray) -> np.ndarray:
        plan = plans.get(q.size)
        if plan is None:
            a, b = (pyfftw.empty_aligned(q.size, dtype=np.complex64) for _ in range(2))
            plan = plans[q.size] = pyfftw.FFTW(a, b, direction="FFTW_BACKWARD", flags=("FFTW_MEASURE",), threads=1)
        plan.input_array[:] = q
        return plan()

    return "FFTW (pyfftw)", ifft


def reweighted_snr(snr: np.ndarray, chisq_r: np.ndarray) -> np.ndarray:
    """PyCBC's re-weighted SNR ("newsnr"): ``snr / ((1 + chisq_r^3) / 2)^(1/6)`` where the reduced chi-squared
    ``chisq_r > 1``, ``snr`` unchanged where it is not."""
    snr, chisq_r = np.asarray(snr, float), np.asarray(chisq_r, float)
    return np.where(chisq_r > 1.0, snr * ((1.0 + chisq_r ** 3) / 2.0) ** (-1.0 / 6.0), snr)


def _chisq_bin_edges(density: np.ndarray, bins: int) -> np.ndarray:
    """Start offsets (into the band) of ``bins`` frequency bins of equal template power ``density``
    (``|h~|^2 / S`` over the band); the first is 0."""
    c = np.cumsum(density)
    edges = np.searchsorted(c, c[-1] * np.arange(1, bins) / bins, side="right")
    return np.concatenate([[0], edges]).astype(np.int64)


def power_chisq(q_band: np.ndarray, n: int, kmin: int, nfft: int, edges: np.ndarray,
                snr_scale: float) -> tuple[float, float]:
    """Allen's power chi-squared of one trigger.

    ``q_band`` is the filter's integrand over the band (``d~ h~* / S`` at bins
    ``kmin ..``), ``n`` the trigger's sample in the segment, ``edges`` the bins'
    starts (:func:`_chisq_bin_edges`), and ``snr_scale`` turns ``ifft(q)`` into
    the complex SNR. Returns ``(chisq, snr)``: ``p sum_l |z_l - z / p|^2`` over the
    ``p`` bins' complex SNRs ``z_l`` (which sum to the SNR ``z``), and ``|z|``.
    """
    k = np.arange(kmin, kmin + q_band.size, dtype=np.float64)
    terms = q_band.astype(np.complex128) * np.exp(2j * np.pi * (k * n % nfft) / nfft)
    z_l = np.add.reduceat(terms, edges) * (snr_scale / nfft)
    z = z_l.sum()
    p = edges.size
    return float(p * np.sum(np.abs(z_l - z / p) ** 2)), float(abs(z))


def _filter_bank(rows: np.ndarray, params: dict, approximant: str, segments: list[_Segment], *, nfft: int,
                 kmin: int, kmax: int, rate: int, f_lower_hz: float, snr_threshold: float, width: int,
                 coinc_n: int, n_slides: int = 0, slide_n: int = 0, chisq_bins: int = 0):
    """Coincident triggers of the templates ``rows`` (bank row numbers).

    Per template and detector, the SNR^2 samples ``>= snr_threshold^2`` of
    all segments are clustered over each span (:func:`_cluster`); an H1 and
    an L1 trigger of the same template within ``coinc_n`` samples are a
    coincidence (the loudest L1 one when several are). With ``chisq_bins``,
    the triggers that meet one of the other detector get their power
    chi-squared (:func:`power_chisq`, once each) and are ranked on their
    re-weighted SNR (:func:`reweighted_snr`).

    Returns
    -------
    coinc : dict of numpy.ndarray
        ``span``, ``h1``, ``l1`` (sample numbers in the span), ``snr2_h1``,
        ``snr2_l1``, ``template`` (bank row), ``slide`` of each coincidence:
        slide ``k`` pairs H1's trigger at sample ``s`` with L1's at
        ``s - k * slide_n`` (0: zero lag), as gwstream's slides do; ``rank2_h1``,
        ``rank2_l1``, the squared re-weighted SNRs (the SNRs squared without
        chi-squared), and ``chisq_h1``, ``chisq_l1``, the reduced chi-squared
        (0 without).
    n_single : numpy.ndarray
        int ``(2,)``: single-detector triggers (all templates) of H1, L1.
    templates_s, filter_s : float
        Time generating templates, and filtering them (with their clustering and coincidence).
    """
    params = {k: v[rows] for k, v in params.items()}
    thr2 = np.float32(snr_threshold * snr_threshold)
    delta_f = rate / nfft
    n_bins = nfft // 2 + 1
    q = np.zeros(nfft, np.complex64)  # the negative frequencies stay zero: analytic (complex) SNR
    r = np.empty(max(g.keep.stop - g.keep.start for g in segments), np.float32)
    spans = sorted({g.span for g in segments})
    keys = ("span", "h1", "l1", "snr2_h1", "snr2_l1", "rank2_h1", "rank2_l1", "chisq_h1", "chisq_l1", "template",
            "slide")
    out = {k: [] for k in keys}
    dof = 2 * chisq_bins - 2
    n_single = np.zeros(2, np.int64)
    templates_s = filter_s = 0.0
    ifft = _inverse_fft()[1]
    t0 = time.perf_counter()
    for j, h in enumerate(_fd_templates(params, approximant, delta_f, f_lower_hz, rate / 2, n_bins)):
        t1 = time.perf_counter()
        templates_s += t1 - t0
        power = h.real[kmin:kmax] ** 2 + h.imag[kmin:kmax] ** 2
        h_scale = float(np.sqrt(power.max())) or 1.0
        hc = (np.conj(h) / h_scale).astype(np.complex64)
        hits = {(sp, i): ([], [], []) for sp in spans for i in range(2)}  # sample numbers, SNR^2, segment
        factors = np.empty((len(segments), 2))  # |z|^2 / |ifft(q)|^2 of each segment and detector
        for g, seg in enumerate(segments):
            rs = r[:seg.keep.stop - seg.keep.start]
            for i in range(2):
                sigma2 = 4.0 * delta_f * float(power @ seg.inv_psd[i])
                # |z|^2 = 16 |ifft(rfft(d) h~* / S)|^2 / sigma^2, with the scalings of w and hc undone
                factors[g, i] = 16.0 * (seg.w_scale[i] * h_scale) ** 2 / sigma2
                factor = np.float32(factors[g, i])
                np.multiply(hc, seg.w[i], out=q[:n_bins])
                z = ifft(q)[seg.keep]
                np.multiply(z.real, z.real, out=rs)
                rs += z.imag * z.imag
                rs *= factor
                above = np.flatnonzero(rs >= thr2)
                if above.size:
                    hits[seg.span, i][0].append(seg.start + seg.keep.start + above)
                    hits[seg.span, i][1].append(rs[above].astype(np.float64))
                    hits[seg.span, i][2].append(np.full(above.size, g, np.int64))
        edges = {}
        for sp in spans:
            trig = []
            for i in range(2):
                samples, snr2, seg_of = hits[sp, i]
                idx = np.concatenate(samples) if samples else np.zeros(0, np.int64)
                val = np.concatenate(snr2) if snr2 else np.zeros(0)
                where = np.concatenate(seg_of) if seg_of else np.zeros(0, np.int64)
                k = _cluster(idx, val, width)
                # rank^2 and reduced chi^2 of each trigger, filled in (NaN: not yet) when it first meets one
                rank = np.full(k.size, np.nan) if chisq_bins else val[k].copy()
                trig.append((idx[k], val[k], where[k], rank, np.zeros(k.size)))
                n_single[i] += k.size
            if not (trig[0][0].size and trig[1][0].size):
                continue

            def ranked(i: int, t: np.ndarray) -> np.ndarray:
                """rank^2 of detector ``i``'s triggers ``t``, their chi-squared computed where not yet."""
                idx_i, val_i, where_i, rank_i, chi_i = trig[i]
                for m in t[np.isnan(rank_i[t])]:
                    g = int(where_i[m])
                    seg = segments[g]
                    if (g, i) not in edges:  # the bins, per segment and detector (its PSD) of this template
                        edges[g, i] = _chisq_bin_edges(power * seg.inv_psd[i], chisq_bins)
                    chisq, _ = power_chisq(hc[kmin:kmax] * seg.w[i][kmin:kmax], int(idx_i[m] - seg.start), kmin,
                                           nfft, edges[g, i], math.sqrt(factors[g, i]))
                    chi_i[m] = chisq / dof
                    rank_i[m] = reweighted_snr(np.sqrt(val_i[m]), chi_i[m]) ** 2
                return rank_i[t]

            (h_idx, h_val, _, h_rank, h_chi), (l_idx, l_val, _, l_rank, l_chi) = trig
            for k in range(n_slides + 1):
                moved = l_idx + k * slide_n  # L1's trigger at s lands on H1's s + k * slide_n
                lo = np.searchsorted(moved, h_idx - coinc_n, "left")
                hi = np.searchsorted(moved, h_idx + coinc_n, "right")
                for a in np.flatnonzero(hi > lo):
                    ranked(0, np.array([a]))
                    b = lo[a] + int(np.argmax(ranked(1, np.arange(lo[a], hi[a]))))
                    for key, value in (("span", sp), ("h1", h_idx[a]), ("l1", l_idx[b]), ("snr2_h1", h_val[a]),
                                       ("snr2_l1", l_val[b]), ("rank2_h1", h_rank[a]), ("rank2_l1", l_rank[b]),
                                       ("chisq_h1", h_chi[a]), ("chisq_l1", l_chi[b]), ("template", rows[j]),
                                       ("slide", k)):
                        out[key].append(value)
        t0 = time.perf_counter()
        filter_s += t0 - t1
        if (j + 1) % max(1, rows.size // 5) == 0:
            log.info("worker of rows %d...: templates %d/%d", rows[0], j + 1, rows.size)
    dtypes = {k: np.int64 if k in ("span", "h1", "l1", "template", "slide") else np.float64 for k in keys}
    coinc = {k: np.asarray(v, dtype=dtypes[k]) for k, v in out.items()}
    return coinc, n_single, templates_s, filter_s


def _max_duration_s(bank: TemplateBank, f_lower_hz: float) -> float:
    """Longest template duration from ``f_lower_hz`` (PyCBC's estimate)."""
    from pycbc.waveform import get_waveform_filter_length_in_time

    p = bank.params
    return max(float(get_waveform_filter_length_in_time(bank.approximant, mass1=float(p["mass1"][i]),
                                                        mass2=float(p["mass2"][i]), spin1z=float(p["spin1z"][i]),
                                                        spin2z=float(p["spin2z"][i]), f_lower=f_lower_hz))
               for i in range(len(bank)))


def _cpu_s() -> float:
    """CPU time (user + system) of this process and its finished children, s."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _write(out: Path, coinc: dict, bank: TemplateBank, attrs: dict, background: dict | None = None,
           segments: np.ndarray | None = None) -> None:
    """Triggers, bank parameters, slid triggers, searched segments and summary to HDF5 (via a temporary file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with h5py.File(tmp, "w") as fh:
        for k, v in coinc.items():
            fh.create_dataset(k, data=v)
        if background is not None:
            g = fh.create_group("background")
            for k, v in background.items():
                g.create_dataset(k, data=v)
        if segments is not None:
            fh.create_dataset("segments", data=segments)
        g = fh.create_group("bank")
        for k, v in bank.params.items():
            g.create_dataset(k, data=v)
        g.attrs["approximant"] = bank.approximant
        for k, v in attrs.items():
            fh.attrs[k] = v
    tmp.replace(out)


def _gate(spans: list[_Span], gates: list, half_s: float, taper_s: float) -> int:
    """Apply ``gates`` (``(detector, GPS s)``) to the spans' strain in place (``pycbc.strain.gate_data``);
    returns how many fell in the data."""
    from pycbc.strain import gate_data
    from pycbc.types import TimeSeries

    used = 0
    for span in spans:
        t0 = span.gps_start_ns / NS
        t1 = t0 + span.strain.shape[1] / span.rate
        for i, ifo in enumerate(IFOS):
            mine = [(float(t), half_s, taper_s) for g_ifo, t in gates
                    if g_ifo == ifo and t0 - half_s - taper_s < float(t) < t1 + half_s + taper_s]
            if mine:
                ts = TimeSeries(span.strain[i].copy(), delta_t=1.0 / span.rate, epoch=t0)
                span.strain[i] = gate_data(ts, mine).numpy()
                used += len(mine)
    return used


def mf_to_archive(triggers: str | Path, out_triggers: str | Path, out_background: str | Path,
                  var_s: float = 0.25) -> dict:
    """Turn a :func:`run_mf_search` file into what ``gwstream evaluate`` reads: a trigger archive (statistic:
    the file's ``statistic``, network SNR or re-weighted SNR; FAR from the file's own time slides,
    ``(n_louder + 1) / T``) and a background file.

    The background is a :class:`~gwstream.daemon.stream.background.Background` with a 1-ms stride, so the
    slides' live time is counted to the millisecond.
    """
    from gwstream.daemon.io.archive import write_triggers
    from gwstream.daemon.io.trigger import Trigger
    from gwstream.daemon.stream.background import Background, far_to_ifar_years

    with h5py.File(triggers, "r") as fh:
        key = "statistic" if "statistic" in fh else "network_snr"  # files written before chi-squared
        gps, snr = fh["gps"][()], fh[key][()]
        bg_snr = fh["background"][key][()] if "background" in fh else np.zeros(0)
        segments = fh["segments"][()] if "segments" in fh else None
        live_s = float(fh.attrs.get("background_livetime_s", 0.0))
    stride_ns = 1_000_000
    bg = Background(stride_ns, {"model": "matched_filter"}, hist_range=(0.0, 1000.0))
    bg.add(bg_snr, live_windows=int(round(live_s * NS / stride_ns)), n_slides=1)
    far, sat = bg.far(snr) if len(snr) else (np.zeros(0), np.zeros(0, bool))
    rows = [Trigger(int(round(t * NS)), int(round(t * NS)), float(s), float(var_s), float(f),
                    float(far_to_ifar_years(f)), bool(z)) for t, s, f, z in zip(gps, snr, far, sat)]
    write_triggers(out_triggers, rows, attrs={"model": "matched_filter", "background_livetime_s": bg.livetime_s,
                                              "livetime_s": float(np.sum(np.diff(segments, axis=1)))
                                              if segments is not None else 0.0}, segments=segments)
    bg.save(out_background)
    return {"n_triggers": len(rows), "background_livetime_s": bg.livetime_s, "n_background": int(bg_snr.size)}


# ------------------------------------------------------------------ search
def run_mf_search(path: str | Path, *, bank: TemplateBank, out: str | Path, threads: int = 2,
                  segment_s: float = 256.0, psd_segment_s: float = 4.0, psd_inverse_s: float = 4.0,
                  f_lower_hz: float = 20.0, snr_threshold: float = 5.5, cluster_s: float = 1.0,
                  coinc_s: float = 0.015, gates: list | None = None, gate_half_width_s: float = 0.25,
                  gate_taper_s: float = 0.25, n_slides: int = 0, slide_step_s: float = 1.0,
                  chisq_bins: int = 0) -> dict:
    """Matched-filter search of the H1/L1 strain in ``path`` with ``bank``; coincident triggers to ``out``.

    Parameters
    ----------
    path : path-like
        HDF5 strain (``gwstream simulate`` output, or any layout
        :func:`~gwstream.daemon.io.framefiles.iter_hdf5_segments` reads) with H1 and L1.
    bank : TemplateBank
        Only its parameters (``mass1``, ``mass2``, ``spin1z``, ``spin2z``) and
        ``approximant`` are used; templates are generated in the frequency domain.
    out : path-like
        HDF5 file written: datasets ``gps`` (H1 trigger GPS, s), ``gps_l1``,
        ``snr_h1``, ``snr_l1``, ``network_snr``, ``chisq_h1``, ``chisq_l1``
        (reduced; 0 without chi-squared), ``statistic`` (what they are ranked
        on: the network re-weighted SNR with chi-squared, ``network_snr``
        without), ``template`` (bank row) of the coincident triggers; group
        ``bank`` (the parameters); the summary as root attributes.
    threads : int
        Cores: the bank is split over this many forked worker processes
        (single-threaded each; run in-process when 1).
    segment_s : float
        Analysis segment (s); its FFT length.
    psd_segment_s : float
        Welch segment of the PSD estimate (s), stride half of it.
    psd_inverse_s : float
        Time-domain length the inverse ASD is truncated to (s).
    f_lower_hz : float
        Low-frequency cutoff of the filter and the templates (Hz).
    snr_threshold : float
        Single-detector SNR threshold.
    cluster_s : float
        Clustering window (s): a trigger is the largest SNR within ``+-cluster_s / 2``.
    coinc_s : float
        Largest H1-L1 trigger time difference (s).
    gates : list of (str, float), optional
        ``(detector, GPS s)`` of gates to apply to the strain before anything
        else (``pycbc.strain.gate_data``: zero within ``± gate_half_width_s``,
        Tukey taper of ``gate_taper_s`` each side). Pass the gates of a
        ``gwstream search`` of the same data (its archive's ``gates``) to filter
        the data that search analysed, gated where it gated.
    n_slides, slide_step_s : int, float
        Time slides of the single-detector triggers, gwstream's convention (slide
        ``k``: H1 at ``t`` with L1 at ``t - k * slide_step_s``), coincident and
        clustered over the bank like zero lag; written to the group ``background``
        (``network_snr``, ``statistic``, ``slide``; attribute ``livetime_s``, the
        analysed merger time both detectors share at each slide, summed).
    chisq_bins : int
        Bins of the power chi-squared test (0: none); see the module's notes.

    Returns
    -------
    dict
        ``data_s`` (seconds of strain per detector), ``analysed_s`` (merger
        times searched), ``wall_s``, ``x_real_time`` (``data_s / wall_s``),
        ``cpu_s`` (CPU time of the search and its workers over ``wall_s``),
        ``n_templates``, ``n_triggers`` (coincident, clustered over the
        bank), ``n_single`` (single-detector triggers of all templates, per
        detector), ``threads``, ``timing_s`` (wall time of ``read``, ``psd``
        (template durations, PSD estimates and data FFTs), ``filter``
        (template generation, filtering, per-template clustering and
        coincidence), ``triggers`` (clustering the coincidences over the
        bank), ``write``; and ``worker_templates`` / ``worker_filter``, the
        generation / the rest of ``filter`` summed over the workers) and the
        settings.
    """
    t_start, cpu_start = time.perf_counter(), _cpu_s()
    if len(bank) == 0:
        raise ValueError("bank of 0 templates: expected at least one")
    if threads < 1:
        raise ValueError(f"threads = {threads!r}: expected >= 1")
    if chisq_bins < 0 or chisq_bins == 1:
        raise ValueError(f"chisq_bins = {chisq_bins!r}: expected 0 (no chi-squared) or at least 2")
    if not (segment_s > 0 and psd_segment_s > 0 and psd_inverse_s > 0 and cluster_s > 0 and coinc_s >= 0):
        raise ValueError(f"segment_s = {segment_s!r}, psd_segment_s = {psd_segment_s!r}, psd_inverse_s = "
                         f"{psd_inverse_s!r}, cluster_s = {cluster_s!r}, coinc_s = {coinc_s!r}: expected > 0 "
                         "(coinc_s >= 0)")
    timing = {}
    spans = _read_spans(path)
    rate = spans[0].rate
    if any(s.rate != rate for s in spans):
        raise FrameFileError(f"HDF5 file {str(path)!r}: sample rates {sorted({s.rate for s in spans})} Hz: "
                             "expected one")
    if not 0 < f_lower_hz < rate / 2:
        raise ValueError(f"f_lower_hz = {f_lower_hz!r}: expected in (0, {rate / 2}) Hz (Nyquist of the data)")
    data_s = sum(s.strain.shape[1] for s in spans) / rate
    n_gates = _gate(spans, gates or [], gate_half_width_s, gate_taper_s)
    t0 = time.perf_counter()
    timing["read"] = t0 - t_start

    max_dur = _max_duration_s(bank, f_lower_hz)
    pad0 = int(math.ceil((max_dur + psd_inverse_s) * rate))
    pad1 = int(math.ceil((psd_inverse_s + _POST_MERGER_S) * rate))
    seg_n = int(round(segment_s * rate))
    longest = max(s.strain.shape[1] for s in spans)
    # one FFT length for every segment, so each template is generated once
    nfft = seg_n if longest >= seg_n else 2 * scipy.fft.next_fast_len(-(-longest // 2))
    if pad0 + pad1 >= min(seg_n, longest):
        raise ValueError(f"segments of {min(seg_n, longest) / rate:g} s leave nothing to search after the "
                         f"{pad0 / rate:.1f} s start pad (longest template {max_dur:.1f} s + {psd_inverse_s} s) and "
                         f"{pad1 / rate:.1f} s end pad: expected longer data or segment_s")
    kmin, kmax = int(math.ceil(f_lower_hz * nfft / rate)), nfft // 2  # Nyquist bin left out
    segments: list[_Segment] = []
    for si, span in enumerate(spans):
        n = span.strain.shape[1]
        for start, lo, hi in _plan(n, seg_n, pad0, pad1):
            x = span.strain[:, start:start + min(seg_n, n)]
            gps = (span.gps_start_ns + start * NS // rate) / NS
            cond = [_condition(x[i], rate, nfft, kmin, kmax, psd_segment_s, psd_inverse_s, f_lower_hz,
                               f"{IFOS[i]} segment at GPS {gps:.3f}") for i in range(2)]
            segments.append(_Segment(si, start, slice(lo - start, hi - start), np.stack([c[0] for c in cond]),
                                     np.array([c[1] for c in cond]), np.stack([c[2] for c in cond])))
    skipped = [s.strain.shape[1] / rate for i, s in enumerate(spans) if not any(g.span == i for g in segments)]
    if skipped:
        log.warning("spans too short to search (s): %s", skipped)
    t1 = time.perf_counter()
    timing["psd"] = t1 - t0

    width = int(round(cluster_s * rate)) | 1
    parts = [np.arange(w, len(bank), threads, dtype=np.int64) for w in range(min(threads, len(bank)))]
    slide_n = int(round(slide_step_s * rate))
    kw = dict(nfft=nfft, kmin=kmin, kmax=kmax, rate=rate, f_lower_hz=f_lower_hz, snr_threshold=snr_threshold,
              width=width, coinc_n=int(math.floor(coinc_s * rate)), n_slides=int(n_slides), slide_n=slide_n,
              chisq_bins=int(chisq_bins))
    if len(parts) == 1:
        results = [_filter_bank(parts[0], bank.params, bank.approximant, segments, **kw)]
    else:
        with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_filter_bank, rows, bank.params, bank.approximant, segments, **kw)
                       for rows in parts]
            results = [f.result() for f in futures]
    timing["worker_templates"] = sum(r[2] for r in results)
    timing["worker_filter"] = sum(r[3] for r in results)
    t0 = time.perf_counter()
    timing["filter"] = t0 - t1

    # the coincidences of all templates, clustered over the bank: the loudest within +-cluster_s / 2
    c = {k: np.concatenate([r[0][k] for r in results]) for k in results[0][0]}
    network2, rank2 = c["snr2_h1"] + c["snr2_l1"], c["rank2_h1"] + c["rank2_l1"]
    clustered = []
    for sp, k in sorted(set(zip(c["span"].tolist(), c["slide"].tolist()))):
        mine = np.flatnonzero((c["span"] == sp) & (c["slide"] == k))
        mine = mine[np.argsort(c["h1"][mine], kind="stable")]
        clustered.append(mine[_cluster(c["h1"][mine], rank2[mine], width)])
    clustered = np.concatenate(clustered) if clustered else np.zeros(0, np.int64)
    kept = clustered[c["slide"][clustered] == 0]
    slid = clustered[c["slide"][clustered] > 0]
    # merger samples each span searches (the segments' kept parts tile one stretch): a slide k pairs k steps less
    searched = {}
    for g in segments:
        a, b = g.start + g.keep.start, g.start + g.keep.stop
        lo, hi = searched.get(g.span, (a, b))
        searched[g.span] = (min(lo, a), max(hi, b))
    live_slides = sum(max(0, (b - a) - k * slide_n) for a, b in searched.values()
                      for k in range(1, int(n_slides) + 1)) / rate
    gps0 = np.array([s.gps_start_ns / NS for s in spans])[c["span"][kept]]
    coinc = {"gps": gps0 + c["h1"][kept] / rate, "gps_l1": gps0 + c["l1"][kept] / rate,
             "snr_h1": np.sqrt(c["snr2_h1"][kept]), "snr_l1": np.sqrt(c["snr2_l1"][kept]),
             "network_snr": np.sqrt(network2[kept]), "chisq_h1": c["chisq_h1"][kept],
             "chisq_l1": c["chisq_l1"][kept], "statistic": np.sqrt(rank2[kept]), "template": c["template"][kept]}
    background = {"network_snr": np.sqrt(network2[slid]), "statistic": np.sqrt(rank2[slid]),
                  "slide": c["slide"][slid]}
    segs = np.array([[spans[i].gps_start_ns / NS + a / rate, spans[i].gps_start_ns / NS + b / rate]
                     for i, (a, b) in sorted(searched.items())]).reshape(-1, 2)
    n_single = sum(r[1] for r in results)
    t1 = time.perf_counter()
    timing["triggers"] = t1 - t0

    summary = {
        "benchmark": "matched_filter", "input": str(path), "data_s": data_s,
        "analysed_s": sum(g.keep.stop - g.keep.start for g in segments) / rate,
        "n_templates": len(bank), "n_triggers": int(coinc["gps"].size),
        "n_single": {ifo: int(n) for ifo, n in zip(IFOS, n_single)}, "threads": int(threads),
        "fft": f"{_inverse_fft()[0]} complex64", "segment_s": nfft / rate, "n_segments": len(segments),
        "pad_s": [pad0 / rate, pad1 / rate], "longest_template_s": max_dur, "f_lower_hz": f_lower_hz,
        "psd": f"welch median {psd_segment_s:g} s, inverse truncated to {psd_inverse_s:g} s",
        "snr_threshold": snr_threshold, "cluster_s": cluster_s, "coinc_s": coinc_s,
        "n_gates": n_gates, "n_slides": int(n_slides), "slide_step_s": slide_step_s, "chisq_bins": int(chisq_bins),
        "statistic": "network re-weighted SNR (power chi-squared)" if chisq_bins else "network SNR",
        "background_livetime_s": live_slides, "n_background": int(slid.size),
    }
    _write(Path(out), coinc, bank, {k: json.dumps(v) if isinstance(v, dict) else v for k, v in summary.items()},
           background=background, segments=segs)
    t_end = time.perf_counter()
    timing["write"] = t_end - t1
    wall = t_end - t_start
    summary.update(wall_s=round(wall, 2), x_real_time=round(data_s / wall, 2),
                   cpu_s=round(_cpu_s() - cpu_start, 2),
                   timing_s={k: round(v, 2) for k, v in timing.items()})
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="HDF5 strain with H1 and L1 (gwstream simulate output)")
    ap.add_argument("--out", required=True, help="HDF5 file of the triggers")
    ap.add_argument("--bank", default=None, help="TemplateBank .npz (TemplateBank.save); default: the "
                    "validation bank of --config, from benchmarks/validate.py's cache or placed and cached there")
    ap.add_argument("--config", default="configs/train.toml", help="training config defining the validation bank")
    ap.add_argument("--bank-size", type=int, default=None, help="use the first N templates (placement order)")
    ap.add_argument("--threads", type=int, default=2, help="cores: worker processes sharing the bank")
    ap.add_argument("--workers", type=int, default=2, help="processes generating waveforms if the bank is placed")
    ap.add_argument("--segment-s", type=float, default=256.0)
    ap.add_argument("--snr-threshold", type=float, default=5.5)
    ap.add_argument("--slides", type=int, default=0, help="time slides (gwstream's convention), for FARs")
    ap.add_argument("--slide-step-s", type=float, default=1.0)
    ap.add_argument("--chisq-bins", type=int, default=0, help="bins of the power chi-squared test; triggers are "
                    "ranked on the re-weighted SNR (0: no test, network SNR, for Gaussian noise)")
    ap.add_argument("--gates-from", default=None, help="a gwstream trigger archive: apply its gates to the strain")
    ap.add_argument("--archive-out", nargs=2, metavar=("TRIGGERS", "BACKGROUND"), default=None,
                    help="also write a gwstream trigger archive (FARs from the slides) and background, for "
                         "gwstream evaluate")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.bank_size is not None and args.bank_size < 1:
        ap.error(f"--bank-size = {args.bank_size}: expected >= 1")

    t0 = time.perf_counter()
    if args.bank:
        bank, source = TemplateBank.load(args.bank), args.bank
    else:
        bank, cache = validation_bank(args.config, workers=args.workers)
        source = f"validation bank of {args.config} (cache {cache})"
    n_full = len(bank)
    if args.bank_size is not None:
        if args.bank_size > n_full:
            ap.error(f"--bank-size = {args.bank_size}: the bank has {n_full} templates")
        bank = bank.subset(np.arange(args.bank_size))
    bank_s = time.perf_counter() - t0
    gates = None
    if args.gates_from:
        from gwstream.daemon.io.archive import read_triggers

        _, attrs = read_triggers(args.gates_from)
        gates = [(g["ifo"], g["gps"]) for g in attrs.get("gates") or []]
    summary = run_mf_search(args.data, bank=bank, out=args.out, threads=args.threads, segment_s=args.segment_s,
                            snr_threshold=args.snr_threshold, gates=gates, n_slides=args.slides,
                            slide_step_s=args.slide_step_s, chisq_bins=args.chisq_bins)
    summary.update(bank=source, bank_templates_full=n_full, bank_s=round(bank_s, 2))
    if args.archive_out:
        summary["archive"] = mf_to_archive(args.out, *args.archive_out)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
