"""Power spectral density: Welch's method and a streaming Welch estimator.

Pure functions of arrays plus :class:`StreamingWelch`, a small state holder
whose whole state is a handful of arrays (``snapshot()`` / ``restore()``).
No I/O, no logging, no globals.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.fft
import scipy.signal

__all__ = [
    "welch",
    "periodograms",
    "combine_periodograms",
    "median_bias",
    "sensitivity_proxy",
    "StreamingWelch",
    "PsdUpdate",
]

_AVERAGES = ("median", "mean")
_PRECISIONS = {"double": np.float64, "single": np.float32}
#: samples per channel windowed and transformed per batched FFT call (fits in L2 as float32)
_WELCH_BATCH_SAMPLES = 2**18


def _check_average(average: str) -> None:
    if average not in _AVERAGES:
        raise ValueError(f"average = {average!r}, expected one of {_AVERAGES}")


def _check_precision(precision: str) -> type:
    if precision not in _PRECISIONS:
        raise ValueError(f"precision = {precision!r}, expected one of {tuple(_PRECISIONS)}")
    return _PRECISIONS[precision]


def _segment_geometry(sample_rate: float, fftlength_s: float, overlap: float) -> tuple[int, int]:
    """(nperseg, step) in samples; checks the values."""
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
    win = scipy.signal.get_window("hann", nperseg)
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
    _check_average(average)
    n_seg = pg.shape[-2]
    if n_seg < 1:
        raise ValueError("no complete FFT segment to average: expected n_segments >= 1, got 0")
    if average == "mean":
        return pg.mean(axis=-2)
    return np.median(pg, axis=-2) / median_bias(n_seg)


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


def _n_threads(workers: int) -> int:
    """Threads for ``workers`` in the ``scipy.fft`` convention (-1: all cores)."""
    if workers == 0 or workers < -(os.cpu_count() or 1):
        raise ValueError(f"workers = {workers!r}, expected >= 1 or a negative count from the core count (-1: all)")
    return workers if workers > 0 else max(1, (os.cpu_count() or 1) + 1 + workers)


def _run_split(fn, n_items: int, n_threads: int) -> None:
    """Call ``fn(lo, hi)`` on ``n_threads`` contiguous ranges covering ``range(n_items)``."""
    n_threads = max(1, min(n_threads, n_items))
    edges = [n_items * k // n_threads for k in range(n_threads + 1)]
    if n_threads == 1:
        fn(0, n_items)
        return
    with ThreadPoolExecutor(n_threads) as ex:
        for f in [ex.submit(fn, lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]:
            f.result()


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
    win = scipy.signal.get_window("hann", nperseg)
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

    n_threads = _n_threads(workers)
    _run_split(segments, n_seg, n_threads)
    rows = pg.reshape(c * nfreq, n_seg)
    avg = np.empty(c * nfreq)
    if average == "mean":
        def combine(lo, hi):
            avg[lo:hi] = rows[lo:hi].mean(axis=-1, dtype=np.float64)
    else:
        def combine(lo, hi):
            avg[lo:hi] = _median_last_axis(rows[lo:hi]) / median_bias(n_seg)
    _run_split(combine, c * nfreq, n_threads)
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
    _check_average(average)
    dtype = _check_precision(precision)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n,) or (channels, n)")
    nperseg, step = _segment_geometry(sample_rate, fftlength_s, overlap)
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


def sensitivity_proxy(
    freqs: np.ndarray, psd: np.ndarray, f_low_hz: float = 20.0, f_high_hz: float | None = None
) -> np.ndarray:
    """Broadband inspiral sensitivity of a PSD (arbitrary units, larger = more sensitive).

    Parameters
    ----------
    freqs : numpy.ndarray
        Frequencies (Hz), shape ``(n_freq,)``.
    psd : numpy.ndarray
        One-sided PSD (strain^2/Hz), shape ``(n_freq,)`` or ``(channels, n_freq)``.
    f_low_hz, f_high_hz : float
        Integration band (Hz); ``f_high_hz`` defaults to 90 % of the top frequency.

    Returns
    -------
    numpy.ndarray
        ``sqrt(sum f^(-7/3) / S(f) df)`` per channel, shape ``()`` or ``(channels,)``.

    Notes
    -----
    Proportional to the inspiral horizon distance (Allen et al. 2012,
    arXiv:gr-qc/0509116, eq. 3.1 with the Newtonian f^-7/3 spectrum); a
    relative change of this number is the fractional change of the range.
    """
    f_high_hz = 0.9 * freqs[-1] if f_high_hz is None else f_high_hz
    band = (freqs >= max(f_low_hz, freqs[1] if freqs.size > 1 else 0.0)) & (freqs <= f_high_hz)
    if not band.any():
        raise ValueError(f"no frequency in [{f_low_hz}, {f_high_hz}] Hz; freqs span [{freqs[0]}, {freqs[-1]}] Hz")
    f = freqs[band]
    s = np.asarray(psd)[..., band]
    with np.errstate(divide="ignore"):
        integrand = np.where(s > 0, f ** (-7.0 / 3.0) / np.where(s > 0, s, 1.0), 0.0)
    return np.sqrt(integrand.sum(axis=-1) * (freqs[1] - freqs[0]))


class PsdUpdate:
    """Outcome of :meth:`StreamingWelch.update` (plain attributes).

    Attributes
    ----------
    estimated : bool
        A new estimate was computed on this call (refresh due and enough data).
    accepted : bool
        That estimate replaced the current PSD.
    rejected : bool
        It was rejected: its sensitivity moved by more than ``max_change``.
    change : float
        Largest relative sensitivity change of the estimate across channels (nan if none).
    n_segments : int
        FFT segments the estimate averaged.
    """

    __slots__ = ("estimated", "accepted", "rejected", "change", "n_segments")

    def __init__(self, estimated=False, accepted=False, rejected=False, change=float("nan"), n_segments=0):
        self.estimated = estimated
        self.accepted = accepted
        self.rejected = rejected
        self.change = change
        self.n_segments = n_segments

    def __repr__(self) -> str:
        return (
            f"PsdUpdate(estimated={self.estimated}, accepted={self.accepted}, rejected={self.rejected}, "
            f"change={self.change:.3g}, n_segments={self.n_segments})"
        )


class StreamingWelch:
    """Welch PSD over the trailing ``psd_length_s`` of *valid* data of a stream.

    Samples arrive in order with their absolute sample index (any chunking).
    FFT segments sit on a fixed grid of absolute indices (start multiple of
    the step), so the estimate does not depend on how the stream is chunked.
    A segment touching any invalid sample is skipped. Every ``refresh_s`` of
    stream time a new estimate is formed from the segments ending within the
    trailing ``psd_length_s``, if they cover at least ``min_valid_s``; it is
    accepted unless its :func:`sensitivity_proxy` differs from the current
    PSD's by more than ``max_change`` (relative) in any channel, in which case
    the current PSD is kept and the rejection reported. After
    ``accept_after_rejections`` consecutive rejections the next estimate is
    accepted (the detector really changed).

    Parameters
    ----------
    n_channels : int
        Channels (detectors) estimated together.
    sample_rate : float
        Hz.
    fftlength_s, overlap, average
        As in :func:`welch`.
    psd_length_s : float
        Trailing span of data (s) the estimate uses.
    refresh_s : float
        Cadence of re-estimation (s of stream time).
    min_valid_s : float, optional
        Valid data (s, counted in whole segments) needed for an estimate;
        default ``psd_length_s`` (a full warm-up).
    max_change : float
        Largest accepted relative change of the broadband sensitivity.
    f_low_hz : float
        Low edge (Hz) of the sensitivity integral.
    accept_after_rejections : int
        Consecutive rejections after which an estimate is accepted anyway.

    Notes
    -----
    Each estimate equals :func:`welch` over the same complete segments
    (``scipy.signal.welch``); PyCBC Live's ``StrainBuffer.recalculate_psd``
    uses the same trailing-median scheme with a variation check.
    """

    def __init__(
        self,
        n_channels: int,
        sample_rate: float,
        fftlength_s: float,
        overlap: float = 0.5,
        average: str = "median",
        psd_length_s: float = 64.0,
        refresh_s: float = 8.0,
        min_valid_s: float | None = None,
        max_change: float = 0.2,
        f_low_hz: float = 20.0,
        accept_after_rejections: int = 3,
    ):
        _check_average(average)
        self.nperseg, self.step = _segment_geometry(sample_rate, fftlength_s, overlap)
        if psd_length_s < fftlength_s:
            raise ValueError(f"psd_length_s = {psd_length_s} s, expected >= fftlength_s = {fftlength_s} s")
        if not refresh_s > 0:
            raise ValueError(f"refresh_s = {refresh_s!r} s, expected > 0")
        if not max_change > 0:
            raise ValueError(f"max_change = {max_change!r}, expected > 0")
        self.n_channels = int(n_channels)
        self.sample_rate = float(sample_rate)
        self.average = average
        self.psd_length = int(round(psd_length_s * sample_rate))
        self.refresh = max(1, int(round(refresh_s * sample_rate)))
        min_valid_s = psd_length_s if min_valid_s is None else min_valid_s
        # whole segments covering min_valid_s of data with the configured overlap
        self.min_segments = max(1, int(np.ceil((min_valid_s * sample_rate - self.nperseg) / self.step)) + 1)
        self.max_segments = (self.psd_length - self.nperseg) // self.step + 1
        self.max_change = float(max_change)
        self.f_low_hz = float(f_low_hz)
        self.accept_after_rejections = int(accept_after_rejections)
        self.freqs = np.fft.rfftfreq(self.nperseg, 1.0 / self.sample_rate)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (data, segments and the current PSD)."""
        nf = self.freqs.size
        c = self.n_channels
        self._buf = np.zeros((c, self.nperseg))  # last nperseg samples
        self._buf_valid = np.zeros(self.nperseg, dtype=bool)
        self._next_index = -1  # absolute index of the next expected sample (-1: none yet)
        self._pg = np.zeros((self.max_segments, c, nf))  # ring of periodograms
        self._pg_end = np.full(self.max_segments, -1, dtype=np.int64)  # end index (excl.) per slot, -1 empty
        self._pg_slot = 0
        self._last_refresh = -1  # absolute index at last refresh attempt
        self.psd = None  # accepted PSD, shape (C, n_freq), or None
        self.psd_index = -1  # absolute index of the end of data behind self.psd
        self.n_rejected = 0  # consecutive rejections

    def snapshot(self) -> dict:
        """Copy of the whole state as a dict of arrays and ints."""
        return {
            "buf": self._buf.copy(), "buf_valid": self._buf_valid.copy(), "next_index": self._next_index,
            "pg": self._pg.copy(), "pg_end": self._pg_end.copy(), "pg_slot": self._pg_slot,
            "last_refresh": self._last_refresh,
            "psd": None if self.psd is None else self.psd.copy(), "psd_index": self.psd_index,
            "n_rejected": self.n_rejected,
        }

    def restore(self, state: dict) -> None:
        """Restore a :meth:`snapshot` (shapes must match this configuration)."""
        if state["pg"].shape != self._pg.shape:
            raise ValueError(f"snapshot periodograms of shape {state['pg'].shape}, expected {self._pg.shape}")
        self._buf = state["buf"].copy()
        self._buf_valid = state["buf_valid"].copy()
        self._next_index = int(state["next_index"])
        self._pg = state["pg"].copy()
        self._pg_end = state["pg_end"].copy()
        self._pg_slot = int(state["pg_slot"])
        self._last_refresh = int(state["last_refresh"])
        self.psd = None if state["psd"] is None else state["psd"].copy()
        self.psd_index = int(state["psd_index"])
        self.n_rejected = int(state["n_rejected"])

    # ----------------------------------------------------------------- update
    def n_segments_available(self, end_index: int | None = None) -> int:
        """Stored segments within the trailing ``psd_length`` before ``end_index``.

        The span is rounded up to the segment grid (at most ``step - 1`` more
        samples), so a full ``psd_length`` of valid data always yields
        ``(psd_length - nperseg) // step + 1`` segments whatever its alignment.
        """
        end = self._next_index if end_index is None else end_index
        ends = self._pg_end
        return int(np.count_nonzero((ends >= 0) & (ends > end - self.psd_length + self.nperseg - self.step) & (ends <= end)))

    def update(self, x: np.ndarray, valid: np.ndarray, start_index: int) -> PsdUpdate:
        """Add samples; re-estimate when a refresh is due.

        Parameters
        ----------
        x : numpy.ndarray
            Samples, shape ``(channels, n)`` (strain).
        valid : numpy.ndarray
            bool, shape ``(n,)`` (shared by channels) or ``(channels, n)``
            (a sample invalid in any channel is invalid).
        start_index : int
            Absolute sample index of ``x[:, 0]``. A jump forward is a gap
            (the partial segment is dropped); backwards is an error.

        Returns
        -------
        PsdUpdate
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[0] != self.n_channels:
            raise ValueError(f"x has {x.shape[0]} channels, expected {self.n_channels}")
        valid = np.asarray(valid, dtype=bool)
        if valid.ndim == 2:
            valid = valid.all(axis=0)
        n = x.shape[1]
        if valid.shape != (n,):
            raise ValueError(f"valid has shape {valid.shape}, expected ({n},)")
        start_index = int(start_index)
        if self._next_index >= 0 and start_index < self._next_index:
            raise ValueError(
                f"start_index = {start_index} is before the next expected sample {self._next_index} (out of order)"
            )
        if self._next_index < 0 or start_index > self._next_index:
            self._buf_valid[:] = False  # gap: nothing before start_index is usable
            if self._last_refresh < 0:
                self._last_refresh = start_index
        # work array: previous nperseg samples + new ones
        L = self.nperseg
        work = np.concatenate([self._buf, x], axis=1)
        wvalid = np.concatenate([self._buf_valid, valid])
        base = start_index - L  # absolute index of work[:, 0]
        end = start_index + n
        # segment starts on the absolute grid s = k*step with base <= s and s + L <= end
        # whose end is > start_index (not already processed)
        first = max(base, start_index - L + 1)
        k0 = -(-first // self.step)
        k1 = (end - L) // self.step
        if k1 >= k0:
            starts = np.arange(k0, k1 + 1) * self.step
            bad = np.concatenate([[0], np.cumsum(~wvalid)])
            rel = starts - base
            ok = (bad[rel + L] - bad[rel]) == 0
            starts = starts[ok]
            if starts.size:
                # keep only what the ring can hold
                starts = starts[-self.max_segments:]
                rel = starts - base
                segs = np.stack([work[:, r:r + L] for r in rel], axis=1)  # (C, S, L)
                pg = periodograms(segs.reshape(-1, L), self.sample_rate, L, L)[:, 0, :]
                pg = pg.reshape(self.n_channels, starts.size, -1)
                for j, s in enumerate(starts):
                    self._pg[self._pg_slot] = pg[:, j, :]
                    self._pg_end[self._pg_slot] = s + L
                    self._pg_slot = (self._pg_slot + 1) % self.max_segments
        self._buf = work[:, -L:].copy()
        self._buf_valid = wvalid[-L:].copy()
        self._next_index = end
        if self._last_refresh < 0:
            self._last_refresh = start_index
        if self.psd is None:
            due = self.n_segments_available() >= self.min_segments
        else:
            due = end - self._last_refresh >= self.refresh
        if not due:
            return PsdUpdate()
        self._last_refresh = end
        return self._estimate(end)

    def _estimate(self, end: int) -> PsdUpdate:
        ends = self._pg_end
        sel = (ends >= 0) & (ends > end - self.psd_length + self.nperseg - self.step) & (ends <= end)
        n_seg = int(np.count_nonzero(sel))
        if n_seg < self.min_segments:
            return PsdUpdate(n_segments=n_seg)  # not enough valid data: keep the current PSD
        order = np.argsort(ends[sel])
        pg = self._pg[sel][order]  # (S, C, F)
        new = combine_periodograms(np.moveaxis(pg, 0, 1), self.average)  # (C, F)
        if self.psd is None:
            self._accept(new, end)
            return PsdUpdate(estimated=True, accepted=True, n_segments=n_seg)
        s_new = sensitivity_proxy(self.freqs, new, self.f_low_hz)
        s_old = sensitivity_proxy(self.freqs, self.psd, self.f_low_hz)
        change = float(np.max(np.abs(s_new / s_old - 1.0)))
        if change > self.max_change and self.n_rejected < self.accept_after_rejections:
            self.n_rejected += 1
            return PsdUpdate(estimated=True, rejected=True, change=change, n_segments=n_seg)
        self._accept(new, end)
        return PsdUpdate(estimated=True, accepted=True, change=change, n_segments=n_seg)

    def _accept(self, psd: np.ndarray, end: int) -> None:
        self.psd = psd
        self.psd_index = end
        self.n_rejected = 0

    def drop_psd(self) -> None:
        """Forget the current PSD (e.g. after a gap longer than ``psd_length_s``)."""
        self.psd = None
        self.psd_index = -1
        self.n_rejected = 0
