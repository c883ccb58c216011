"""Whitening by a truncated inverse-ASD FIR filter, whole-series or streaming.

The filter is designed exactly as gwpy's ``TimeSeries.whiten`` does
(``gwpy.signal.filter_design.fir_from_transfer``: linearly interpolated
1/ASD, hard high-pass below ``highpass_hz``, 5-bin Tukey edge taper, inverse
FFT, Hann-truncated to ``fduration_s``) and applied by FFT overlap-save as a
*causal* convolution whose only state is the last ``n_taps - 1`` input
samples, so whitening a stream in any chunks gives the samples of whitening
it at once. No I/O, no logging, no globals.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from gwstream.kernels.common import check_precision, run_split, thread_count
from gwstream.kernels.psd import hann

__all__ = [
    "whiten",
    "design_fir",
    "minimum_phase",
    "lookahead_samples",
    "edge_samples",
    "convolve_stream",
    "new_history",
]

_PHASES = ("linear", "minimum")
#: overlap-save block length (samples) for long inputs: long enough that the filter's overlap is a small
#: share of each block, short enough that a block's transforms stay in cache
_BLOCK_NFFT = 2**15
#: samples per channel transformed in one batched FFT call (bounds temporaries to a few MB)
_BATCH_SAMPLES = 2**19


def _check_phase(phase: str) -> None:
    if phase not in _PHASES:
        raise ValueError(f"phase = {phase!r}, expected one of {_PHASES}")


def _n_taps(sample_rate: float, fduration_s: float) -> int:
    n = fduration_s * sample_rate
    n_taps = int(round(n))
    if n_taps < 4 or n_taps % 2 or abs(n - n_taps) > 1e-6 * max(n, 1.0):
        raise ValueError(
            f"fduration_s = {fduration_s!r} s is {n:g} samples at {sample_rate} Hz, "
            "expected an even whole number >= 4 of samples"
        )
    return n_taps


def lookahead_samples(n_taps: int, phase: str = "linear") -> int:
    """Samples of future data a whitened sample needs (the filter's delay).

    ``(n_taps - 1) // 2`` for the linear-phase filter (as ``fftconvolve(...,
    mode='same')`` centres it in gwpy), 0 for the minimum-phase one. The
    default phase is :func:`design_fir`'s (gwpy's), not the daemon's setting.
    """
    _check_phase(phase)
    return (n_taps - 1) // 2 if phase == "linear" else 0


def edge_samples(n_taps: int, phase: str = "linear") -> tuple[int, int]:
    """Samples at (start, end) of a :func:`whiten` output that the filter corrupts."""
    la = lookahead_samples(n_taps, phase)
    return n_taps - 1 - la, la


def design_fir(
    sample_rate: float,
    psd_freqs: np.ndarray,
    psd: np.ndarray,
    fduration_s: float = 1.0,
    highpass_hz: float = 20.0,
    phase: str = "linear",
    design_length_s: float = 64.0,
    extrapolate: bool = True,
) -> np.ndarray:
    """Design the whitening FIR filter from a one-sided PSD.

    Parameters
    ----------
    sample_rate : float
        Sampling rate of the data to whiten (Hz).
    psd_freqs : numpy.ndarray
        Frequencies of ``psd`` (Hz), shape ``(n_freq,)``, ascending, from 0 Hz.
    psd : numpy.ndarray
        One-sided PSD (strain^2/Hz), shape ``(n_freq,)`` or ``(channels, n_freq)``.
    fduration_s : float
        Filter length (s); an even number of samples.
    highpass_hz : float
        The inverse ASD is zeroed below this frequency (Hz); 0 disables.
    phase : {"linear", "minimum"}
        Linear phase (symmetric, delay ``(n_taps - 1) // 2`` samples) or
        minimum phase (causal, no look-ahead, same magnitude response to
        within the truncation). The default, linear, is gwpy's filter; the
        daemon passes its ``whiten.phase`` setting (minimum by default).
    design_length_s : float
        Length (s) of the frequency grid the 1/ASD is interpolated onto
        before the inverse FFT. gwpy uses the duration of the data, so its
        filter drifts with it as ``~0.1 / T`` (rms of the whitened output).
    extrapolate : bool
        Richardson-extrapolate designs on grids of ``T`` and ``T / 2`` to the
        long-data limit (error ``O(1/T^2)``, rms of the whitened output for
        the aLIGO design PSD: 1.6e-4 at 64 s, 4e-5 at 128 s, 1e-5 at 256 s;
        gwpy's own filter for one hour of data sits 3e-5 from that limit).
        With ``False`` the taps equal gwpy's for data of duration ``T``.

    Returns
    -------
    numpy.ndarray
        float64 taps, shape ``(n_taps,)`` or ``(channels, n_taps)``; causal
        convolution with them yields whitened data (unit variance for
        stationary Gaussian noise with this PSD), delayed by
        :func:`lookahead_samples`.

    Notes
    -----
    Mirrors ``gwpy.signal.filter_design.fir_from_transfer(1/asd, ntaps,
    window='hann', ncorner=int(highpass/df))`` including the
    ``sqrt(2 dt)`` normalisation applied by ``gwpy.timeseries.TimeSeries.whiten``.
    Minimum phase uses the real-cepstrum (homomorphic) construction of
    Oppenheim & Schafer, *Discrete-Time Signal Processing*, sec. 13.9.
    """
    _check_phase(phase)
    n_taps = _n_taps(sample_rate, fduration_s)
    psd_freqs = np.asarray(psd_freqs, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    if psd.shape[-1] != psd_freqs.shape[0] or psd.ndim not in (1, 2):
        raise ValueError(
            f"psd has shape {psd.shape}, expected (n_freq,) or (channels, n_freq) with n_freq = {psd_freqs.shape[0]}"
        )
    if psd_freqs[0] != 0 or psd_freqs[-1] < 0.5 * sample_rate * (1 - 1e-9):
        raise ValueError(
            f"psd_freqs span [{psd_freqs[0]}, {psd_freqs[-1]}] Hz, expected [0, Nyquist = {sample_rate / 2}] Hz"
        )
    if not 0 <= highpass_hz < sample_rate / 2:
        raise ValueError(f"highpass_hz = {highpass_hz!r} Hz, expected in [0, Nyquist = {sample_rate / 2}) Hz")
    n_design = max(int(round(design_length_s * sample_rate)), 4 * n_taps)
    n_design += (-n_design) % (4 if extrapolate else 2)
    # gwpy: FrequencySeries.interpolate (linear in the ASD) onto the design grid, then 1/asd
    f = np.arange(n_design // 2 + 1) * (sample_rate / n_design)
    asd = np.stack([np.interp(f, psd_freqs, np.sqrt(np.clip(p, 0.0, None))) for p in np.atleast_2d(psd)])
    with np.errstate(divide="ignore"):
        transfer = np.where(asd > 0, 1.0 / np.where(asd > 0, asd, 1.0), 0.0)
    spec = _gwpy_transfer(sample_rate, transfer, highpass_hz, n_design)
    if extrapolate:
        # gwpy's design converges as 1/T in the grid length T: Richardson step -> O(1/T^2).
        # The T/2 design's impulse near t = 0 is twice that of its spectrum zero-interleaved
        # onto the T grid, so both designs share one inverse FFT (linear in the spectrum).
        spec *= 2.0
        spec[:, ::2] -= 2.0 * _gwpy_transfer(sample_rate, transfer[:, ::2], highpass_hz, n_design // 2)
    taps = _truncate_impulse(scipy.fft.irfft(spec, n=n_design, axis=-1, workers=-1), n_taps)
    taps *= np.sqrt(2.0 / sample_rate)
    if phase == "minimum":
        taps = minimum_phase(taps)
    return taps[0] if psd.ndim == 1 else taps


def _gwpy_transfer(sample_rate, transfer, highpass_hz, n_design):
    """gwpy's ``_truncate_transfer`` on a grid of ``n_design`` samples; transfer is (C, n_design//2+1)."""
    df = sample_rate / n_design
    transfer = transfer.copy()
    # hard corner, 5-sample Tukey taper at both ends
    ncorner = int(highpass_hz / df) if highpass_hz else 0
    transfer[:, :ncorner] = 0.0
    taper = hann(10, sym=True)  # scipy.signal.windows.tukey(10, alpha=1.0)
    transfer[:, ncorner:ncorner + 5] *= taper[:5]
    transfer[:, -5:] *= taper[-5:]
    return transfer


def _truncate_impulse(impulse, n_taps):
    """gwpy's ``_truncate_impulse`` + roll: symmetric Hann truncation centred on tap n_taps/2 - 1."""
    n_design = impulse.shape[-1]
    half = n_taps // 2
    win = hann(n_taps)
    taps = np.zeros((impulse.shape[0], n_taps))
    k = np.arange(half)
    taps[:, half - 1 + k] = impulse[:, k] * win[half + k]
    taps[:, n_taps - 1] = 0.0
    k = np.arange(1, half)
    taps[:, half - 1 - k] = impulse[:, n_design - k] * win[half - k]
    return taps


def minimum_phase(taps: np.ndarray, oversample: int = 16, floor: float = 1e-6) -> np.ndarray:
    """Minimum-phase FIR of the same length with (nearly) the same magnitude response.

    Parameters
    ----------
    taps : numpy.ndarray
        Linear-phase taps, shape ``(n_taps,)`` or ``(channels, n_taps)``.
    oversample : int
        FFT length as a multiple of ``n_taps`` for the cepstrum (limits its aliasing).
    floor : float
        Magnitudes below ``floor * max`` are raised to it before the logarithm
        (the high-passed band would otherwise be log(0)).

    Returns
    -------
    numpy.ndarray
        Same shape as ``taps``; the tail's last quarter is cosine-tapered.

    Notes
    -----
    Real-cepstrum folding as in ``scipy.signal.minimum_phase(method='homomorphic')``,
    but keeping the full magnitude (scipy's version returns its square root).
    """
    one_d = np.ndim(taps) == 1
    taps = np.atleast_2d(np.asarray(taps, dtype=np.float64))
    n_taps = taps.shape[-1]
    nfft = scipy.fft.next_fast_len(oversample * n_taps)
    mag = np.abs(scipy.fft.rfft(taps, n=nfft, axis=-1))
    mag = np.maximum(mag, floor * mag.max(axis=-1, keepdims=True))
    cep = scipy.fft.irfft(np.log(mag), n=nfft, axis=-1)
    fold = np.zeros_like(cep)
    fold[:, 0] = cep[:, 0]
    fold[:, 1:(nfft + 1) // 2] = 2.0 * cep[:, 1:(nfft + 1) // 2]
    if nfft % 2 == 0:
        fold[:, nfft // 2] = cep[:, nfft // 2]
    h = scipy.fft.irfft(np.exp(scipy.fft.rfft(fold, axis=-1)), n=nfft, axis=-1)[:, :n_taps]
    n_tail = n_taps // 4
    h[:, n_taps - n_tail:] *= 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n_tail + 1) / n_tail))
    return h[0] if one_d else h


def new_history(n_taps: int, n_channels: int | None = None) -> np.ndarray:
    """Zero history (the state before the first sample) for :func:`convolve_stream`."""
    shape = (n_taps - 1,) if n_channels is None else (n_channels, n_taps - 1)
    return np.zeros(shape)


def _gather(x2, h2, a, dst):
    """dst[:, i] = ext[a + i]: ext is the history before 0, x2 on [0, n), zeros after."""
    m = h2.shape[-1]
    n = x2.shape[-1]
    length = dst.shape[-1]
    o = 0
    if a < 0:
        k = min(-a, length)
        dst[:, :k] = h2[:, m + a:m + a + k]
        o, a = k, a + k
    if o < length and a < n:
        k = min(n - a, length - o)
        dst[:, o:o + k] = x2[:, a:a + k]
        o, a = o + k, a + k
    if o < length:
        dst[:, o:] = 0.0


def _fir_range(x2, t2, h2, start, length, block_nfft, dtype, workers):
    """Causal FIR output ``y[start:start + length]`` of ext (see :func:`_gather`), by overlap-save.

    Blocks are gathered from the input batch by batch (no padded copy of the
    whole input), transformed in ``dtype`` and written straight into the
    output; the taps are transformed once, in float64.
    """
    c = x2.shape[0]
    m = t2.shape[-1] - 1
    out = np.empty((c, length), dtype=dtype)
    if length == 0:
        return out
    if length + m <= block_nfft:
        nfft = scipy.fft.next_fast_len(length + m, real=True)
    else:
        nfft = block_nfft
    step = nfft - m
    n_blocks = -(-length // step)
    ctype = np.complex64 if dtype == np.float32 else np.complex128
    spec_taps = scipy.fft.rfft(t2, n=nfft, axis=-1).astype(ctype)[:, None, :]
    batch = max(1, _BATCH_SAMPLES // nfft)

    def blocks(lo, hi):  # one thread: a contiguous range of blocks, all channels
        buf = np.empty((c, min(batch, hi - lo), nfft), dtype=dtype)
        for b0 in range(lo, hi, batch):
            b1 = min(b0 + batch, hi)
            for j in range(b1 - b0):
                _gather(x2, h2, start + (b0 + j) * step - m, buf[:, j])
            spec = scipy.fft.rfft(buf[:, : b1 - b0], axis=-1)
            spec *= spec_taps
            y = scipy.fft.irfft(spec, n=nfft, axis=-1)
            for j in range(b1 - b0):
                o = (b0 + j) * step
                k = min(step, length - o)
                out[:, o:o + k] = y[:, j, m:m + k]

    run_split(blocks, n_blocks, thread_count(workers))
    return out


def convolve_stream(
    x: np.ndarray,
    taps: np.ndarray,
    history: np.ndarray,
    block_nfft: int = _BLOCK_NFFT,
    precision: str = "double",
    workers: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Causal FIR filtering of one chunk of a stream: ``y[i] = sum_j taps[j] x[i - j]``.

    Parameters
    ----------
    x : numpy.ndarray
        New samples, shape ``(n,)`` or ``(channels, n)``.
    taps : numpy.ndarray
        Filter, shape ``(n_taps,)`` or ``(channels, n_taps)``.
    history : numpy.ndarray
        The ``n_taps - 1`` samples preceding ``x`` (zeros at a stream start),
        shape ``(n_taps - 1,)`` or ``(channels, n_taps - 1)``.
    block_nfft : int
        FFT length of the overlap-save blocks for long chunks (> ``n_taps``).
    precision : {"double", "single"}
        Arithmetic of the block FFTs and of ``y``. ``"single"`` (float32,
        taps transformed in float64 then rounded) is about twice as fast; for
        whitening it adds ~4e-7 rms to unit-variance output.
    workers : int
        Threads (``scipy.fft`` convention; -1: all cores), each filtering a
        contiguous range of blocks.

    Returns
    -------
    y : numpy.ndarray
        float64 (float32 with ``precision="single"``), same shape as ``x``.
    history : numpy.ndarray
        The state to pass with the next chunk (the input's dtype, never rounded).

    Notes
    -----
    FFT overlap-save, blocks gathered batch by batch; equal to
    ``scipy.signal.lfilter(taps, 1, x, zi=...)`` to rounding, for any
    chunking of the stream.
    """
    dtype = check_precision(precision)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    taps = np.asarray(taps, dtype=np.float64)
    one_d = x.ndim == 1
    x2 = np.atleast_2d(x)
    t2 = np.atleast_2d(taps)
    h2 = np.atleast_2d(np.asarray(history))
    c, n = x2.shape
    n_taps = t2.shape[-1]
    if h2.shape != (c, n_taps - 1):
        raise ValueError(f"history has shape {np.shape(history)}, expected {(c, n_taps - 1)} (n_taps - 1 samples)")
    if t2.shape[0] not in (1, c):
        raise ValueError(f"taps has {t2.shape[0]} channels, expected 1 or {c}")
    if not block_nfft > n_taps - 1:
        raise ValueError(f"block_nfft = {block_nfft!r} samples, expected > n_taps - 1 = {n_taps - 1}")
    m = n_taps - 1
    y = _fir_range(x2, t2, h2, 0, n, block_nfft, dtype, workers)
    new_hist = np.concatenate([h2, x2], axis=1)[:, -m:] if n < m else x2[:, n - m:].copy()
    if one_d:
        return y[0], new_hist[0]
    return y, new_hist


def whiten(
    x: np.ndarray,
    sample_rate: float,
    psd_freqs: np.ndarray,
    psd: np.ndarray,
    fduration_s: float = 1.0,
    highpass_hz: float = 20.0,
    phase: str = "linear",
    design_length_s: float = 64.0,
    extrapolate: bool = True,
    return_valid: bool = False,
    precision: str = "double",
    workers: int = -1,
):
    """Whiten a whole series with the truncated inverse-ASD FIR filter.

    Parameters
    ----------
    x : numpy.ndarray
        Strain, shape ``(n,)`` or ``(channels, n)``, float32/float64.
    sample_rate : float
        Hz.
    psd_freqs, psd : numpy.ndarray
        One-sided PSD (strain^2/Hz) on ``psd_freqs`` (Hz) from 0 to Nyquist;
        ``psd`` shape ``(n_freq,)`` or ``(channels, n_freq)``.
    fduration_s : float
        FIR length (s); ``fduration_s / 2`` is corrupted at each end.
    highpass_hz : float
        High-pass corner (Hz).
    phase : {"linear", "minimum"}
        See :func:`design_fir`.
    design_length_s, extrapolate
        Filter design grid, see :func:`design_fir`. The defaults give the
        long-data limit of gwpy's filter, the same taps the streaming stage
        uses; ``design_length_s = n / sample_rate, extrapolate = False``
        reproduces gwpy's filter for this very series.
    return_valid : bool
        Also return the validity mask (edges corrupted by the filter are False).
    precision : {"double", "single"}
        Arithmetic of the convolution, see :func:`convolve_stream` (the
        filter is always designed in float64).
    workers : int
        Threads for the convolution (``scipy.fft`` convention; -1: all cores).

    Returns
    -------
    y : numpy.ndarray
        float64 (float32 with ``precision="single"``), same shape as ``x``: whitened, zero mean and unit variance
        for stationary Gaussian noise of this PSD, aligned with ``x`` (the
        linear-phase filter's delay is removed).
    valid : numpy.ndarray
        bool, shape ``(n,)``; only when ``return_valid``.

    Notes
    -----
    Mirrors ``gwpy.timeseries.TimeSeries.whiten(asd=..., fduration=...,
    highpass=...)`` (filter design, centring and ``sqrt(2 dt)``
    normalisation) without gwpy's mean-detrend and Hann edge taper: edges are
    zero-padded instead and flagged invalid.
    """
    dtype = check_precision(precision)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n,) or (channels, n)")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n = x.shape[-1]
    taps = design_fir(sample_rate, psd_freqs, psd, fduration_s, highpass_hz, phase, design_length_s, extrapolate)
    if taps.ndim == 2 and x.ndim == 1:
        raise ValueError(f"psd has {taps.shape[0]} channels but x is one-dimensional")
    n_taps = taps.shape[-1]
    la = lookahead_samples(n_taps, phase)
    x2 = np.atleast_2d(x)
    # causal output delayed by la, zeros after the end: no padded copy of the input
    y = _fir_range(x2, np.atleast_2d(taps), new_history(n_taps, x2.shape[0]), la, n, _BLOCK_NFFT, dtype, workers)
    if x.ndim == 1:
        y = y[0]
    if not return_valid:
        return y
    head, tail = edge_samples(n_taps, phase)
    valid = np.zeros(n, dtype=bool)
    valid[head:n - tail] = True
    return y, valid
