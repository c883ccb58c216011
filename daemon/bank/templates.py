"""The template bank: aligned-spin templates, their whitening, and their placement.

The default network's template branch is built from such a bank
(``train.template_bank``; :func:`gwstream.daemon.train.training.template_filters`),
and the matched-filter reference statistic
(:class:`gwstream.daemon.eval.matched_filter.MatchedFilter`) filters with one.

:class:`TemplateBank` holds unwhitened templates, merger at a fixed sample;
:func:`whiten_templates` applies a window's whitening FIR to them exactly as
the training windows are whitened; :func:`quadrature` gives each template's
90-degree phase-shifted copy; :func:`place_bank` places a bank stochastically.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.signal
from gwstream.daemon.io.atomic import atomic_path
from gwstream.kernels import whiten as kwh

from .waveforms import TEMPLATE_BEFORE_S, template_waveform

__all__ = ["TemplateBank", "whiten_templates", "quadrature", "place_bank", "load_template_params"]

log = logging.getLogger(__name__)


@dataclass
class TemplateBank:
    """Unwhitened template waveforms, merger at sample ``merger_index`` of every row.

    Attributes
    ----------
    h : numpy.ndarray
        float32 ``(ntemplate_waveforms, length)`` plus polarisation (face-on, zero
        phase, unit distance scale), cut to ``[-2.5 s, +0.5 s]`` around the
        merger with the training bank's start taper.
    params : dict of numpy.ndarray
        ``mass1``, ``mass2`` (Msun), ``spin1z``, ``spin2z``, shape ``(ntemplate_waveforms,)``.
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
                h = list(pool.map(template_waveform, jobs, chunksize=8))
        else:
            h = [template_waveform(j) for j in jobs]
        params = {"mass1": m1, "mass2": m2, "spin1z": s1, "spin2z": s2}
        return cls(np.stack(h).astype(np.float32), params, int(round(TEMPLATE_BEFORE_S * sample_rate_hz)),
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
        with atomic_path(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to any other name
            np.savez(tmp, h=self.h, merger_index=self.merger_index, sample_rate_hz=self.sample_rate_hz,
                     approximant=self.approximant, **{f"p_{k}": v for k, v in self.params.items()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> TemplateBank:
        """Read a bank written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            params = {k[2:]: z[k] for k in z.files if k.startswith("p_")}
            return cls(z["h"], params, int(z["merger_index"]), int(z["sample_rate_hz"]), str(z["approximant"]))


def whiten_templates(h: np.ndarray, taps: np.ndarray, phase: str = "linear") -> np.ndarray:
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


def quadrature(w: np.ndarray) -> np.ndarray:
    """Hilbert transform of each row (the template's 90-degree phase-shifted copy)."""
    return np.imag(scipy.signal.hilbert(w, axis=-1))


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
    w = whiten_templates(cand.h, taps)[:, mi - int(round(before_s * sample_rate_hz)):mi + int(round(after_s * sample_rate_hz))]
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    wq = quadrature(w)
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


def load_template_params(path: str | Path) -> dict[str, np.ndarray]:
    """Template parameters ``mass1``, ``mass2``, ``spin1z``, ``spin2z`` from a CSV file (a header naming those
    columns) or a placed bank (:class:`~gwstream.daemon.bank.TemplateBank` ``.npz``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    names = ("mass1", "mass2", "spin1z", "spin2z")
    if path.suffix == ".npz":
        params = TemplateBank.load(path).params
    else:
        import csv

        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        if reader.fieldnames is None or not set(names) <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{path}: expected a header with columns {', '.join(names)}")
        try:
            rows = [{k.strip(): float(v) for k, v in r.items()} for r in reader]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: a row that is not numbers ({exc})") from None
        params = {k: np.array([r[k] for r in rows]) for k in names}
    out = {k: np.asarray(params[k], dtype=np.float64) for k in names}
    if not out["mass1"].size or not all(np.isfinite(v).all() for v in out.values()):
        raise ValueError(f"{path}: expected finite parameters of at least one template")
    return out
