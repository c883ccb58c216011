"""Shared fixtures of the kernel tests; every numerical tolerance lives here, with its reason.

Tests run with ``--import-mode=importlib``, so tolerances reach tests through
the ``tol`` fixture rather than an import.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

TOLERANCES = SimpleNamespace(
    # Same algorithm, same float64 operations in a different order (batched FFTs,
    # median of the same numbers): agreement to a few ulps of the result.
    PSD_VS_SCIPY_RTOL=1e-10,
    # gwpy's TimeSeries.psd calls scipy.signal.welch underneath: same bound.
    PSD_VS_GWPY_RTOL=1e-10,
    # Resampling with the same taps as resample_poly: a dot product of 545 terms
    # summed in another order (fastmath SIMD); |x| ~ 1, so 1e-12 absolute is
    # ~1e4 ulps, far above rounding and far below any indexing error (~1).
    RESAMPLE_VS_SCIPY_ATOL=1e-12,
    # Chunked vs one-shot causal FIR: identical arithmetic for decimation
    # (exact), FFT overlap-save with different block boundaries for whitening:
    # rounding of float64 FFTs of length <= 2**16 relative to the signal rms.
    CHUNK_ATOL=1e-10,
    # Whitening with gwpy's exact filter (design grid = data length, no
    # extrapolation) vs gwpy.TimeSeries.whiten, away from the edges: only
    # gwpy's mean detrend (mean ~1e-3 sigma of the input times the FIR's
    # DC gain ~1e-4) and FFT rounding differ.
    WHITEN_VS_GWPY_EXACT_ATOL=1e-6,
    # Our default filter (long-data limit from a 64-s design grid) vs gwpy's
    # for T seconds of data: gwpy drifts by ~0.1/T rms (4e-4 for 256 s) and
    # our limit is 1.6e-4 off; rms of the difference in units of the unit
    # whitened noise.
    WHITEN_DEFAULT_VS_GWPY_RMS=1e-3,
    # PyCBC's path (inverse_spectrum_truncation with a symmetric numpy Hann,
    # |FFT| of the truncated response, circular FFT division) is a different
    # but equivalent filter: measured rms difference 4e-4 (1 h) to 8e-4
    # (256 s) of unit noise; 3e-3 flags a real disagreement (a wrong
    # normalisation or alignment is O(1)).
    WHITEN_VS_PYCBC_RMS=3e-3,
    # Unit variance of whitened Gaussian noise: the sample std of N samples
    # with correlation time ~1 sample has sd ~1/sqrt(2N); plus the PSD
    # estimate's own bias (median of 63+ segments, ~1 %). 0.03 ~ 5 sigma at
    # N = 2**17.
    UNIT_STD_ATOL=0.03,
    # Welch in single precision (float32 segments, FFTs, periodograms) vs
    # scipy in float64, coloured aLIGO noise: float32 FFT rounding relative to
    # a segment's total power, which the low frequencies dominate; measured
    # <= 5e-6 at the worst bin of an hour (median 3e-7), 1e-4 flags a real error
    # (a wrong scale or missed prescale is O(1)).
    PSD_SINGLE_VS_SCIPY_RTOL=1e-4,
    # Single-precision whitening vs double precision, unit-variance output:
    # float32 rounding of the block FFTs, measured 4e-7 rms / 2e-6 max.
    WHITEN_SINGLE_VS_DOUBLE_ATOL=2e-5,
    # Stage windows (float32) vs the offline kernels in float64: float32
    # rounding of unit-variance samples (6e-8 relative, max over 1e6 values).
    STAGE_VS_OFFLINE_ATOL=1e-5,
    # Peak time of a whitened chirp: the linear-phase FIR has zero group
    # delay; the envelope peak moves by less than one cycle at ~300 Hz.
    CHIRP_PEAK_S=0.005,
)


@pytest.fixture(scope="session")
def tol():
    """The tolerances above."""
    return TOLERANCES


def _coloured_noise(rng: np.random.Generator, n: int, sample_rate: float, channels: int | None = None):
    """Gaussian noise with the aLIGO design PSD (pycbc aLIGOZeroDetHighPower), flat below 10 Hz."""
    import pycbc.psd

    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    psd = np.asarray(pycbc.psd.aLIGOZeroDetHighPower(f.size, f[1], 10.0).numpy())
    psd[f < 10] = psd[f >= 10][0]
    shape = (f.size,) if channels is None else (channels, f.size)
    spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.sqrt(psd * sample_rate * n / 4)
    spec[..., 0] = 0.0
    return np.fft.irfft(spec, n, axis=-1), f, psd


@pytest.fixture(scope="session")
def coloured_noise():
    """``make(rng, n, sample_rate, channels=None) -> (x, freqs, true_psd)``."""
    return _coloured_noise
