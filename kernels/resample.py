"""Integer-factor decimation with a Kaiser-window anti-alias FIR, whole-series or streaming.

The filter is evaluated only at the kept output samples (the polyphase
form: no discarded sample is computed). The streaming form is causal and
carries ``n_taps - 1`` input samples plus the decimation phase between
chunks, so decimating a stream in any chunks gives the samples of
decimating it at once. No I/O, no logging, no globals.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "antialias_taps",
    "decimate",
    "decimate_stream",
    "new_state",
    "DecimateState",
    "delay_samples",
    "PASSBAND_FRACTION",
    "STOPBAND_ATTENUATION_DB",
]

#: the pass band runs from 0 to this fraction of the *output* Nyquist frequency
PASSBAND_FRACTION = 0.85
#: attenuation (dB) from the output Nyquist frequency up; also sets the pass-band ripple 10**(-A/20)
STOPBAND_ATTENUATION_DB = 80.0


class DecimateState(NamedTuple):
    """State of :func:`decimate_stream` between chunks.

    Attributes
    ----------
    history : numpy.ndarray
        The last ``n_taps - 1`` input samples, shape ``(channels, n_taps - 1)``.
    offset : int
        Input samples to skip at the start of the next chunk before the next
        kept output sample, in ``[0, factor)``.
    """

    history: np.ndarray
    offset: int


def _check_factor(factor) -> int:
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor = {factor!r}, expected an integer >= 1")
    return int(factor)


@lru_cache(maxsize=16)
def _taps_cached(factor: int, passband_fraction: float, attenuation_db: float) -> np.ndarray:
    if factor == 1:
        return np.ones(1)
    import scipy.signal  # here, not at the top: only a resampling search pays its import

    nyq_in = 1.0  # work in units of the input Nyquist frequency
    f_stop = nyq_in / factor
    f_pass = passband_fraction * f_stop
    # +1 dB: kaiserord's length formula is approximate and lands a few tenths short
    numtaps, beta = scipy.signal.kaiserord(attenuation_db + 1.0, (f_stop - f_pass) / nyq_in)
    half = -(-(numtaps - 1) // (2 * factor)) * factor  # half-length a multiple of factor
    taps = scipy.signal.firwin(2 * half + 1, 0.5 * (f_pass + f_stop), window=("kaiser", beta), fs=2.0)
    taps.setflags(write=False)
    return taps


def antialias_taps(
    factor: int,
    passband_fraction: float = PASSBAND_FRACTION,
    attenuation_db: float = STOPBAND_ATTENUATION_DB,
) -> np.ndarray:
    """Anti-alias low-pass FIR for decimation by ``factor``.

    Parameters
    ----------
    factor : int
        Decimation factor (>= 1; 1 returns the identity filter ``[1.0]``).
    passband_fraction : float
        Pass-band edge as a fraction of the output Nyquist frequency.
    attenuation_db : float
        Stop-band attenuation (dB) from the output Nyquist frequency up; the
        pass-band ripple is ``10**(-attenuation_db / 20)`` (Kaiser designs
        have equal ripple in both bands).

    Returns
    -------
    numpy.ndarray
        Read-only float64 taps, odd length ``2 * m * factor + 1`` (symmetric,
        unit DC gain, delay ``m * factor`` input samples = ``m`` output samples).

    Notes
    -----
    Kaiser-window design (``scipy.signal.kaiserord`` + ``scipy.signal.firwin``),
    cut-off midway in the transition band. Defaults: for 16384 -> 2048 Hz,
    flat to 1e-4 (0.001 dB) over 0-870 Hz and >= 80 dB down from 1024 Hz, so
    any alias lands >= 80 dB below the original; 545 taps.
    """
    factor = _check_factor(factor)
    if not 0 < passband_fraction < 1:
        raise ValueError(f"passband_fraction = {passband_fraction!r}, expected in (0, 1)")
    if not attenuation_db > 20:
        raise ValueError(f"attenuation_db = {attenuation_db!r} dB, expected > 20 dB")
    return _taps_cached(factor, float(passband_fraction), float(attenuation_db))


def delay_samples(factor: int, taps: np.ndarray | None = None) -> int:
    """Delay of :func:`decimate_stream` in *output* samples (half the filter)."""
    factor = _check_factor(factor)
    taps = antialias_taps(factor) if taps is None else taps
    return (taps.shape[0] - 1) // 2 // factor


@numba.njit(cache=True, fastmath=True, parallel=True)
def _fir_decimate(buf, taps_rev, factor, first, n_out, out):  # pragma: no cover - compiled
    # out[c, k] = sum_j taps[j] * buf[c, first + k*factor - j], as a forward (SIMD) dot product
    n_taps = taps_rev.shape[0]
    for c in range(buf.shape[0]):
        row = buf[c]
        for k in numba.prange(n_out):
            s = first + k * factor - n_taps + 1
            acc = 0.0
            for j in range(n_taps):
                acc += taps_rev[j] * row[s + j]
            out[c, k] = acc


def new_state(factor: int, n_channels: int = 1, taps: np.ndarray | None = None) -> DecimateState:
    """State at the start of a stream: zero history, first sample kept."""
    taps = antialias_taps(factor) if taps is None else taps
    return DecimateState(np.zeros((n_channels, taps.shape[0] - 1)), 0)


def decimate_stream(
    x: np.ndarray, factor: int, state: DecimateState, taps: np.ndarray | None = None
) -> tuple[np.ndarray, DecimateState]:
    """Decimate one chunk of a stream (causal; delay :func:`delay_samples`).

    Parameters
    ----------
    x : numpy.ndarray
        New samples, shape ``(n,)`` or ``(channels, n)``, any length.
    factor : int
        Decimation factor.
    state : DecimateState
        From :func:`new_state` or the previous call.
    taps : numpy.ndarray, optional
        Filter; default :func:`antialias_taps` ``(factor)``.

    Returns
    -------
    y : numpy.ndarray
        float64, shape ``(n_out,)`` or ``(channels, n_out)``: the causal
        filter output at every input index ``i`` with ``i % factor == 0``
        counted from the stream start.
    state : DecimateState
        To pass with the next chunk.

    Notes
    -----
    Output ``k`` (from the stream start) equals
    ``scipy.signal.resample_poly(x, 1, factor, window=taps)[k - delay]``.
    """
    factor = _check_factor(factor)
    taps = antialias_taps(factor) if taps is None else np.asarray(taps, dtype=np.float64)
    x = np.asarray(x)
    one_d = x.ndim == 1
    x2 = np.atleast_2d(x).astype(np.float64, copy=False)
    c, n = x2.shape
    hist, offset = state
    if hist.shape != (c, taps.shape[0] - 1):
        raise ValueError(f"state history has shape {hist.shape}, expected {(c, taps.shape[0] - 1)}")
    if not 0 <= offset < factor:
        raise ValueError(f"state offset = {offset}, expected in [0, {factor})")
    m = hist.shape[1]
    buf = np.concatenate([hist, x2], axis=1)
    n_out = -(-(n - offset) // factor) if n > offset else 0
    y = np.empty((c, n_out))
    if n_out:
        _fir_decimate(buf, np.ascontiguousarray(taps[::-1]), factor, m + offset, n_out, y)
    new = DecimateState(buf[:, buf.shape[1] - m:].copy(), offset + n_out * factor - n)
    return (y[0] if one_d else y), new


def decimate(x: np.ndarray, factor: int, taps: np.ndarray | None = None) -> np.ndarray:
    """Decimate a whole series by an integer factor (zero-phase, zero-padded ends).

    Parameters
    ----------
    x : numpy.ndarray
        Samples, shape ``(n,)`` or ``(channels, n)``, float32/float64.
    factor : int
        Decimation factor (e.g. 8 for 16384 -> 2048 Hz).
    taps : numpy.ndarray, optional
        Anti-alias filter of odd length; default :func:`antialias_taps`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(ceil(n / factor),)`` or ``(channels, ceil(n / factor))``,
        sample ``k`` at the time of input sample ``k * factor``.

    Notes
    -----
    Equal to rounding to ``scipy.signal.resample_poly(x, 1, factor,
    window=taps, axis=-1)`` (zero padding at both ends); only the kept
    samples are computed.
    """
    factor = _check_factor(factor)
    taps = antialias_taps(factor) if taps is None else np.asarray(taps, dtype=np.float64)
    if taps.ndim != 1 or taps.shape[0] % 2 == 0:
        raise ValueError(f"taps has shape {taps.shape}, expected an odd-length 1-d filter")
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n,) or (channels, n)")
    half = (taps.shape[0] - 1) // 2
    c = 1 if x.ndim == 1 else x.shape[0]
    n = x.shape[-1]
    n_out = -(-n // factor)
    # causal output at input index k*factor + half is the centred output k
    pad_front = (-half) % factor  # make the first causal output land on k*factor + half
    front = (half + pad_front) // factor
    xp = np.concatenate(
        [np.zeros((c, pad_front)), np.atleast_2d(x).astype(np.float64), np.zeros((c, half + factor))], axis=1
    )
    y, _ = decimate_stream(xp, factor, new_state(factor, c, taps), taps)
    y = y[:, front:front + n_out]
    return y[0] if x.ndim == 1 else y
