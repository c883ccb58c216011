"""Power spectral density by Welch's method (the streaming estimator is in :mod:`.psd_stream`).

Pure functions of arrays: no I/O, no logging, no globals.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import scipy.fft

from .common import check_precision, run_split, thread_count

__all__ = [
    "hann",
    "welch",
    "periodograms",
    "median_of_last_axis",
    "combine_periodograms",
    "median_bias",
    "check_average",
    "segment_geometry",
]

_AVERAGES = ("median", "mean")
#: samples per channel windowed and transformed per batched FFT call (fits in L2 as float32)
_WELCH_BATCH_SAMPLES = 2**18


def hann(m: int, sym: bool = False) -> np.ndarray:
    """Hann window of ``m`` samples, bit for bit ``scipy.signal.windows.hann(m, sym)``.

    Periodic (``sym=False``, what ``scipy.signal.get_window('hann', m)`` gives)
    for spectral estimation, symmetric for tapers; computed here as scipy does
    (a general-cosine sum on ``linspace(-pi, pi)``) so the search process need
    not import ``scipy.signal`` (which imports ``scipy.stats``, slow to load).
    Cached: the array is shared and read-only.
    """
    if int(m) != m or m < 0:
        raise ValueError(f"window length {m!r}, expected a non-negative integer")
    return _hann(int(m), bool(sym))


@functools.lru_cache(maxsize=32)
def _hann(m: int, sym: bool) -> np.ndarray:
    if m <= 1:
        w = np.ones(m)
    else:
        n = m if sym else m + 1
        fac = np.linspace(-np.pi, np.pi, n, dtype=np.float64)
        w = np.zeros(n, dtype=np.float64)
        for k, a in enumerate((0.5, 0.5)):
            w += np.float64(a) * np.cos(k * fac)
        w = w if sym else w[:-1].copy()
    w.flags.writeable = False
    return w


def check_average(average: str) -> None:
    """ValueError unless ``average`` names a way to average periodograms (``"median"`` or ``"mean"``)."""
    if average not in _AVERAGES:
        raise ValueError(f"average = {average!r}, expected one of {_AVERAGES}")


def segment_geometry(sample_rate: float, fftlength_s: float, overlap: float) -> tuple[int, int]:
    """Welch segment length and step ``(nperseg, step)`` in samples, checking the values.

    Parameters
    ----------
    sample_rate : float
        Hz, > 0.
    fftlength_s : float
        Segment length (s): a whole number >= 2 of samples.
    overlap : float
        Fraction of a segment shared with the next, in [0, 1).
    """
    if not sample_rate > 0:
        raise ValueError(f"sample_rate = {sample_rate!r} Hz, expected > 0")
    nperseg_f = fftlength_s * sample_rate
    nperseg = int(round(nperseg_f))
    if nperseg < 2 or abs(nperseg - nperseg_f) > 1e-6 * max(1.0, nperseg_f):
        raise ValueError(
            f"fftlength_s = {fftlength_s!r} s is {nperseg_f:g} samples at {sample_rate} Hz, "
            "expected a whole number >= 2 of samples"
        )
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap = {overlap!r}, expected a fraction of fftlength in [0, 1)")
    noverlap = int(round(overlap * nperseg))
    return nperseg, nperseg - noverlap


def median_bias(n_segments: int) -> float:
    """Bias of the median of ``n`` chi^2_2 periodogram values vs their mean.

    Parameters
    ----------
    n_segments : int
        Number of averaged periodograms (>= 1).

    Returns
    -------
    float
        ``1 + sum_{k=1}^{(n-1)//2} (1/(2k+1) - 1/(2k))``; divide the median by it.

    Notes
    -----
    Identical to ``scipy.signal._spectral_py._median_bias`` (used by
    ``scipy.signal.welch(average="median")`` and so by gwpy's ``'median'``
    method) and to LAL's ``XLALMedianBias``.
    """
    ii_2 = 2.0 * np.arange(1, (n_segments - 1) // 2 + 1)
    return float(1.0 + np.sum(1.0 / (ii_2 + 1.0) - 1.0 / ii_2))


def periodograms(x: np.ndarray, sample_rate: float, nperseg: int, step: int) -> np.ndarray:
    """One-sided Hann-windowed periodograms of consecutive segments.

    Parameters
    ----------
    x : numpy.ndarray
        Samples, shape ``(n,)`` or ``(channels, n)``, float32/float64 (strain).
    sample_rate : float
        Hz.
    nperseg : int
        Segment length (samples).
    step : int
        Samples between segment starts (``nperseg - noverlap``).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(..., n_segments, nperseg // 2 + 1)``, strain^2/Hz.
        ``n_segments = (n - nperseg) // step + 1`` (0 if ``n < nperseg``).

    Notes
    -----
    Each segment is mean-detrended, multiplied by a periodic Hann window
    (``scipy.signal.get_window('hann', nperseg)``) and scaled to a density
    exactly as ``scipy.signal.welch(..., detrend='constant',
    scaling='density')`` does.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    n_seg = (n - nperseg) // step + 1 if n >= nperseg else 0
    nfreq = nperseg // 2 + 1
    if n_seg == 0:
        return np.zeros(x.shape[:-1] + (0, nfreq))
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[..., ::step, :][..., :n_seg, :]
    win = hann(nperseg)
    scale = 1.0 / (sample_rate * np.sum(win**2))
    pg = np.empty(x.shape[:-1] + (n_seg, nfreq))
    batch = max(1, 2**19 // nperseg)  # segments per FFT call: bounded temporaries
    for b0 in range(0, n_seg, batch):
        s = segs[..., b0:b0 + batch, :]
        w = (s - s.mean(axis=-1, keepdims=True)) * win
        spec = scipy.fft.rfft(w, axis=-1, workers=-1)
        np.multiply(spec.real, spec.real, out=pg[..., b0:b0 + batch, :])
        pg[..., b0:b0 + batch, :] += spec.imag**2
    pg *= scale
    if nperseg % 2:
        pg[..., 1:] *= 2.0
    else:
        pg[..., 1:-1] *= 2.0
    return pg


def combine_periodograms(pg: np.ndarray, average: str = "median") -> np.ndarray:
    """Average periodograms along the segment axis (``-2``).

    Parameters
    ----------
    pg : numpy.ndarray
        Shape ``(..., n_segments, n_freq)``, ``n_segments >= 1``.
    average : {"median", "mean"}
        Median (divided by :func:`median_bias`) or mean.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., n_freq)``.

    Notes
    -----
    Mirrors the averaging step of ``scipy.signal.welch``.
    """
    check_average(average)
    n_seg = pg.shape[-2]
    if n_seg < 1:
        raise ValueError("no complete FFT segment to average: expected n_segments >= 1, got 0")
    if average == "mean":
        return pg.mean(axis=-2)
    return _median_segments(pg) / median_bias(n_seg)


def _median_segments(pg: np.ndarray) -> np.ndarray:
    """``np.median(pg, axis=-2)``, bit for bit, faster: one partition along a contiguous segment axis."""
    return median_of_last_axis(np.ascontiguousarray(np.swapaxes(pg, -1, -2)))


def median_of_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)``, bit for bit, by one partition of ``a`` in place (its order is lost)."""
    n = a.shape[-1]
    a.partition(n // 2 if n % 2 else (n // 2 - 1, n // 2), axis=-1)
    if n % 2:
        return a[..., n // 2].copy()
    return (a[..., n // 2 - 1] + a[..., n // 2]) / 2.0


@numba.njit(cache=True, nogil=True)
def _detrend_window(x, means, first, count, step, win, out):  # pragma: no cover - compiled
    """out[c, j] = (segment first + j - its mean) * win[c] for j < count, in out's precision."""
    nperseg = out.shape[2]
    for c in range(out.shape[0]):
        for j in range(count):
            s = (first + j) * step
            m = means[c, first + j]
            for i in range(nperseg):
                out[c, j, i] = (x[c, s + i] - m) * win[c, i]


@numba.njit(cache=True, nogil=True)
def _power_transposed(spec, first, out):  # pragma: no cover - compiled
    """out[c, f, first + j] = |spec[c, j, f]|^2 (frequency-major, for a row-wise median)."""
    for c in range(spec.shape[0]):
        for f in range(spec.shape[2]):
            for j in range(spec.shape[1]):
                v = spec[c, j, f]
                out[c, f, first + j] = v.real * v.real + v.imag * v.imag



def _segment_means(x: np.ndarray, nperseg: int, step: int, n_seg: int) -> np.ndarray:
    """float64 mean of every segment, shape (C, n_seg); one pass when ``step`` divides ``nperseg``."""
    if nperseg % step == 0:
        k = nperseg // step
        n_blk = n_seg + k - 1
        blk = x[:, : n_blk * step].reshape(x.shape[0], n_blk, step).sum(axis=-1, dtype=np.float64)
        tot = blk[:, :n_seg].copy()
        for i in range(1, k):
            tot += blk[:, i:i + n_seg]
        return tot / nperseg
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[:, ::step, :][:, :n_seg, :]
    return segs.mean(axis=-1, dtype=np.float64)


def _median_last_axis(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` (same values), partitioning ``a`` in place.

    A single ``kth`` keeps numpy on its SIMD introselect (two ``kth`` values,
    as ``np.median`` passes for an even count, are several times slower); the
    lower middle value of an even count is then the maximum of the lower part.
    """
    n = a.shape[-1]
    k = n // 2
    a.partition(k, axis=-1)
    hi = a[..., k].astype(np.float64)
    if n % 2:
        return hi
    lo = a[..., :k].max(axis=-1).astype(np.float64)
    return (lo + hi) / 2.0


def _welch_averaged(x, sample_rate, nperseg, step, average, dtype, workers):
    """Welch average of (C, n) data without holding all segments: (C, n_freq) float64."""
    c, n = x.shape
    n_seg = (n - nperseg) // step + 1
    nfreq = nperseg // 2 + 1
    win = hann(nperseg)
    density = 1.0 / (sample_rate * np.sum(win**2))
    means = _segment_means(x, nperseg, step, n_seg)
    # power-of-two prescale (exact): keeps float32 powers of strain (~1e-40) out of the subnormals
    gain = np.ones(c)
    if dtype == np.float32:
        peak = np.maximum(np.max(x, axis=-1), -np.min(x, axis=-1)).astype(np.float64)  # no |x| temporary
        ok = (peak > 0) & np.isfinite(peak)
        gain[ok] = np.exp2(-np.floor(np.log2(peak[ok])))
    wins = win[None, :] * gain[:, None]
    batch = max(1, _WELCH_BATCH_SAMPLES // nperseg)
    pg = np.empty((c, nfreq, n_seg), dtype=dtype)

    def segments(lo, hi):  # one thread: window, transform, square a range of segments
        seg = np.empty((c, min(batch, hi - lo), nperseg), dtype=dtype)
        for b0 in range(lo, hi, batch):
            b1 = min(b0 + batch, hi)
            _detrend_window(x, means, b0, b1 - b0, step, wins, seg)
            _power_transposed(scipy.fft.rfft(seg[:, : b1 - b0], axis=-1), b0, pg)

    n_threads = thread_count(workers)
    run_split(segments, n_seg, n_threads)
    rows = pg.reshape(c * nfreq, n_seg)
    avg = np.empty(c * nfreq)
    if average == "mean":
        def combine(lo, hi):
            avg[lo:hi] = rows[lo:hi].mean(axis=-1, dtype=np.float64)
    else:
        def combine(lo, hi):
            avg[lo:hi] = _median_last_axis(rows[lo:hi]) / median_bias(n_seg)
    run_split(combine, c * nfreq, n_threads)
    avg = avg.reshape(c, nfreq)
    avg *= density / gain[:, None] ** 2
    if nperseg % 2:
        avg[:, 1:] *= 2.0
    else:
        avg[:, 1:-1] *= 2.0
    return avg


def welch(
    x: np.ndarray,
    sample_rate: float,
    fftlength_s: float,
    overlap: float = 0.5,
    average: str = "median",
    precision: str = "double",
    workers: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD by Welch's method with a Hann window.

    Parameters
    ----------
    x : numpy.ndarray
        Strain samples, shape ``(n,)`` or ``(channels, n)``, float32/float64.
    sample_rate : float
        Sampling rate (Hz).
    fftlength_s : float
        FFT segment length (s); must be a whole number of samples.
    overlap : float
        Overlap of consecutive segments as a fraction of ``fftlength_s``
        (0.5 = 50 %).
    average : {"median", "mean"}
        Median with the chi^2 median bias correction, or mean.
    precision : {"double", "single"}
        Arithmetic of the windowed segments, FFTs and periodograms (the
        segment means and the final scaling are always float64). ``"single"``
        is about twice as fast; its PSD differs from the double-precision one
        by ~1e-6 relative (float32 rounding of the FFT, relative to the
        segment's total power), far below the estimate's own scatter.
    workers : int
        Threads (``scipy.fft`` convention; -1: all cores); each windows,
        transforms and squares its own range of segments, then takes the
        average of its own range of frequencies.

    Returns
    -------
    freqs : numpy.ndarray
        Frequencies (Hz), shape ``(nfft // 2 + 1,)``, ``nfft = fftlength_s * sample_rate``.
    psd : numpy.ndarray
        float64 PSD (strain^2/Hz), shape ``(n_freq,)`` or ``(channels, n_freq)``.

    Raises
    ------
    ValueError
        If ``x`` is shorter than one FFT segment or a parameter is out of range.

    Notes
    -----
    Equal (to rounding) to ``scipy.signal.welch(x, fs=sample_rate,
    window='hann', nperseg=N, noverlap=round(overlap*N), detrend='constant',
    scaling='density', average=average)`` and to gwpy's
    ``TimeSeries.psd(fftlength_s, overlap_s, method=average)``. Segments are
    windowed and transformed in batches straight from the input (no copy of
    all overlapping segments) and the periodograms stored frequency-major,
    so the median is a row-wise in-place partition.
    """
    check_average(average)
    dtype = check_precision(precision)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n,) or (channels, n)")
    nperseg, step = segment_geometry(sample_rate, fftlength_s, overlap)
    if x.shape[-1] < nperseg:
        raise ValueError(
            f"x has {x.shape[-1]} samples, expected at least fftlength_s * sample_rate = {nperseg}"
        )
    x2 = np.atleast_2d(x)
    if x2.dtype not in (np.float32, np.float64):
        x2 = x2.astype(np.float64)
    psd = _welch_averaged(x2, float(sample_rate), nperseg, step, average, dtype, workers)
    freqs = np.fft.rfftfreq(nperseg, 1.0 / sample_rate)
    return freqs, psd[0] if x.ndim == 1 else psd
