"""Stationary coloured Gaussian noise with random access by absolute sample index.

:func:`load_psd` turns a pycbc analytic PSD name or a two-column text file into
a one-sided PSD on a regular frequency grid; :class:`ColoredNoise` generates
Gaussian noise with that PSD such that sample ``i`` depends only on
``(seed, i)``, never on how a range was requested. A day of data is produced
block by block in constant memory, and any chunking of the same range gives
bit-identical samples.

Examples
--------
>>> freqs, psd = load_psd(sample_rate_hz=2048, delta_f_hz=0.0625, low_frequency_hz=10.0)
>>> noise = ColoredNoise(freqs, psd, sample_rate_hz=2048, seed=7)
>>> x = noise.generate(0, 4096)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
from gwstream.daemon.errors import ConfigError, FrameFileError
from scipy.signal import fftconvolve, get_window

__all__ = ["load_psd", "ColoredNoise", "derived_seed"]

logger = logging.getLogger(__name__)


def _grid_length(sample_rate_hz: float, delta_f_hz: float) -> int:
    """Number of one-sided frequency bins 0, delta_f, ..., Nyquist."""
    if not delta_f_hz > 0:
        raise ConfigError("delta_f_hz", delta_f_hz, "a frequency step > 0 Hz")
    if not sample_rate_hz > 0:
        raise ConfigError("sample_rate_hz", sample_rate_hz, "a sample rate > 0 Hz")
    return int(np.floor(sample_rate_hz / 2.0 / delta_f_hz + 1e-9)) + 1


def _read_psd_file(path: str, is_asd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two columns (Hz, PSD or ASD) from a text file, checked."""
    p = Path(path)
    if not p.is_file():
        raise FrameFileError(f"PSD file {path!r}: no such file (expected a two-column text file: Hz, PSD)")
    try:
        table = np.loadtxt(p, comments=("#", "%"), ndmin=2)
    except ValueError as exc:
        raise FrameFileError(f"PSD file {path!r}: not numeric two-column text ({exc})") from None
    if table.shape[1] < 2 or table.shape[0] < 2:
        raise FrameFileError(
            f"PSD file {path!r}: found shape {table.shape}, expected at least 2 rows of two columns (Hz, PSD)"
        )
    freqs, values = table[:, 0], table[:, 1]
    if not np.all(np.isfinite(table[:, :2])) or np.any(values < 0) or np.any(np.diff(freqs) <= 0):
        raise FrameFileError(
            f"PSD file {path!r}: expected finite, non-negative values at strictly increasing frequencies"
        )
    return freqs, values**2 if is_asd else values


def derived_seed(seed: int, *words: int) -> int:
    """A 64-bit seed derived from ``seed`` and ``words``: independent streams of one master seed (a detector's
    noise, its glitches, its PSD variation)."""
    return int(np.random.SeedSequence([int(seed), *words]).generate_state(1, dtype=np.uint64)[0])


def load_psd(
    name: str = "aLIGOZeroDetHighPower",
    *,
    path: str = "",
    is_asd: bool = False,
    sample_rate_hz: float,
    delta_f_hz: float,
    low_frequency_hz: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD on ``0, delta_f_hz, ..., sample_rate_hz / 2``.

    Parameters
    ----------
    name : str
        pycbc analytic PSD name (``pycbc.psd.get_psd_model_list()``), used
        when ``path`` is empty.
    path : str
        Two-column text file (frequency in Hz, PSD in strain²/Hz or ASD in
        strain/√Hz); overrides ``name``. Interpolated log-log onto the grid
        by ``pycbc.psd.read.from_numpy_arrays``.
    is_asd : bool
        The file's second column is an ASD (squared here).
    sample_rate_hz : float
        Sample rate, Hz; the grid ends at its Nyquist frequency.
    delta_f_hz : float
        Frequency step, Hz.
    low_frequency_hz : float
        Below this the PSD is zero (the noise has no power there).

    Returns
    -------
    freqs : numpy.ndarray
        Frequencies, Hz, shape ``(n_f,)``.
    psd : numpy.ndarray
        PSD, strain²/Hz, shape ``(n_f,)``, float64.

    Raises
    ------
    ConfigError
        Unknown PSD name or impossible grid.
    FrameFileError
        Missing or garbled PSD file (the message names the path).

    Notes
    -----
    LALSimulation's analytic PSDs leave the Nyquist bin at zero; it is
    filled with its neighbour here so the noise has no spurious notch there.
    """
    import pycbc.psd
    from pycbc.psd.read import from_numpy_arrays

    length = _grid_length(sample_rate_hz, delta_f_hz)
    if path:
        f_file, s_file = _read_psd_file(path, is_asd)
        if f_file[-1] < sample_rate_hz / 2 - delta_f_hz:
            raise FrameFileError(
                f"PSD file {path!r}: ends at {f_file[-1]:g} Hz, expected it to reach Nyquist "
                f"= {sample_rate_hz / 2:g} Hz"
            )
        try:
            series = from_numpy_arrays(f_file, s_file, length, delta_f_hz, low_frequency_hz)
        except Exception as exc:  # pycbc raises bare ValueError/AssertionError
            raise FrameFileError(f"PSD file {path!r}: cannot interpolate onto the grid ({exc})") from None
    else:
        models = pycbc.psd.get_psd_model_list()
        if name not in models:
            raise ConfigError(
                "simulate.psd", name,
                "a pycbc analytic PSD name (pycbc.psd.get_psd_model_list()), e.g. 'aLIGOZeroDetHighPower'",
            )
        series = pycbc.psd.from_string(name, length, delta_f_hz, low_frequency_hz)
    psd = np.array(series.numpy(), dtype=np.float64)
    freqs = np.arange(length) * float(delta_f_hz)
    if length > 1 and psd[-1] == 0.0 and freqs[-1] >= low_frequency_hz:
        psd[-1] = psd[-2]
    psd[freqs < low_frequency_hz] = 0.0
    return freqs, psd


class ColoredNoise:
    """Stationary coloured Gaussian noise, random access by absolute sample index.

    White unit-variance Gaussian noise is drawn in blocks aligned to absolute
    sample indices, block ``j`` from ``np.random.SeedSequence([seed, j])``,
    and coloured with a centred, Hann-windowed FIR of ``fir_duration_s``
    whose amplitude response is ``sqrt(psd * sample_rate_hz / 2)`` (unit
    white noise at rate fs has one-sided PSD 2/fs). Each output block is the
    ``valid`` convolution of the filter with its own block plus the
    neighbouring blocks' edges, so its value is a function of the seed and
    the block index only.

    Parameters
    ----------
    freqs : numpy.ndarray
        Frequencies of ``psd``, Hz, shape ``(n_f,)``, increasing.
    psd : numpy.ndarray
        One-sided PSD, strain²/Hz, shape ``(n_f,)``.
    sample_rate_hz : int
        Sample rate, Hz.
    seed : int
        Non-negative seed.
    fir_duration_s : float
        FIR length, s; sets the frequency resolution (1 / fir_duration_s) of
        the realised PSD.

    Attributes
    ----------
    n_taps : int
        FIR length, samples.
    block_samples : int
        White-noise block length, samples (>= n_taps).
    fir : numpy.ndarray
        The colouring filter, shape ``(n_taps,)``.

    Notes
    -----
    The realised PSD is ``|FFT(fir)|² · 2 / fs`` (:meth:`realised_psd`),
    the requested PSD smoothed by the window's kernel at resolution
    1/fir_duration_s; for smooth detector PSDs it agrees to well under 1 %
    above the low-frequency cut-off. Same approach as ``gwpy``'s FIR
    design (``gwpy.signal.filter_design.fir_from_transfer``).
    """

    #: output blocks kept; a forward stream needs only the last one
    _CACHE_BLOCKS = 4

    def __init__(
        self,
        freqs: np.ndarray,
        psd: np.ndarray,
        sample_rate_hz: int,
        seed: int,
        fir_duration_s: float = 16.0,
    ):
        freqs = np.asarray(freqs, dtype=np.float64)
        psd = np.asarray(psd, dtype=np.float64)
        if freqs.ndim != 1 or freqs.shape != psd.shape or freqs.size < 2:
            raise ValueError(
                f"freqs and psd must be 1-D of equal length >= 2, got shapes {freqs.shape} and {psd.shape}"
            )
        if np.any(psd < 0) or not np.all(np.isfinite(psd)):
            raise ValueError("psd must be finite and non-negative (strain²/Hz)")
        if int(sample_rate_hz) != sample_rate_hz or sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz = {sample_rate_hz!r}: expected a positive integer (Hz)")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed = {seed!r}: expected a non-negative integer")
        self.sample_rate_hz = int(sample_rate_hz)
        self.seed = int(seed)
        self.n_taps = int(round(fir_duration_s * self.sample_rate_hz))
        if self.n_taps < 16:
            raise ValueError(f"fir_duration_s = {fir_duration_s} s gives {self.n_taps} taps, expected >= 16")
        self.block_samples = 1 << int(np.ceil(np.log2(self.n_taps)))
        self.fir = self._design(freqs, psd)
        # output sample i = sum_k fir[k] * white[i + centre - k]
        self._centre = self.n_taps // 2
        self._white_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._out_cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _design(self, freqs: np.ndarray, psd: np.ndarray) -> np.ndarray:
        fs = self.sample_rate_hz
        grid = np.fft.rfftfreq(self.n_taps, 1.0 / fs)
        target = np.interp(grid, freqs, psd, left=0.0, right=psd[-1])
        amplitude = np.sqrt(target * fs / 2.0)
        fir = np.fft.irfft(amplitude, n=self.n_taps)
        fir = np.roll(fir, self.n_taps // 2) * get_window("hann", self.n_taps)
        return fir

    def realised_psd(self, n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact PSD of the generated noise, ``|FFT(fir)|² · 2 / fs``.

        Parameters
        ----------
        n_fft : int, optional
            FFT length, samples (default: 4 × n_taps).

        Returns
        -------
        freqs, psd : numpy.ndarray
            Hz and strain²/Hz.
        """
        n_fft = n_fft or 4 * self.n_taps
        response = np.fft.rfft(self.fir, n=n_fft)
        return np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate_hz), np.abs(response) ** 2 * 2.0 / self.sample_rate_hz

    def _white(self, block: int) -> np.ndarray:
        cached = self._white_cache.get(block)
        if cached is not None:
            self._white_cache.move_to_end(block)
            return cached
        if block < 0:
            # blocks before sample 0 exist too (the FIR needs them); fold the sign into the seed
            key = [self.seed, 1, -block]
        else:
            key = [self.seed, block]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        white = rng.standard_normal(self.block_samples)
        self._white_cache[block] = white
        while len(self._white_cache) > self._CACHE_BLOCKS + 2:
            self._white_cache.popitem(last=False)
        return white

    def _block(self, block: int) -> np.ndarray:
        cached = self._out_cache.get(block)
        if cached is not None:
            self._out_cache.move_to_end(block)
            return cached
        b = self.block_samples
        # white samples needed: [block*b + centre - n_taps + 1, block*b + b + centre)
        lo = block * b + self._centre - self.n_taps + 1
        hi = block * b + b + self._centre
        first, last = lo // b, (hi - 1) // b
        white = np.concatenate([self._white(j) for j in range(first, last + 1)])
        start = lo - first * b
        segment = white[start:start + (hi - lo)]
        out = fftconvolve(segment, self.fir, mode="valid")
        self._out_cache[block] = out
        while len(self._out_cache) > self._CACHE_BLOCKS:
            self._out_cache.popitem(last=False)
        return out

    def generate(self, start_sample: int, n: int) -> np.ndarray:
        """Samples ``[start_sample, start_sample + n)`` of the noise stream.

        Parameters
        ----------
        start_sample : int
            Absolute index of the first sample (may be negative).
        n : int
            Number of samples, >= 0.

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, float64, strain.
        """
        if int(start_sample) != start_sample or int(n) != n or n < 0:
            raise ValueError(f"start_sample = {start_sample!r}, n = {n!r}: expected integers with n >= 0")
        start_sample, n = int(start_sample), int(n)
        out = np.empty(n, dtype=np.float64)
        b = self.block_samples
        pos = start_sample
        stop = start_sample + n
        while pos < stop:
            block = pos // b
            data = self._block(block)
            i0 = pos - block * b
            i1 = min(b, stop - block * b)
            out[pos - start_sample:pos - start_sample + (i1 - i0)] = data[i0:i1]
            pos += i1 - i0
        return out
