"""The template of a trigger and its complex SNR series in each detector, from the search's whitened data.

The search whitens each detector's strain with a causal FIR designed from its
running PSD (:class:`~gwstream.daemon.stream.conditioning.Conditioner`). A
template whitened by the same filter and correlated with that stream is the
matched filter with the ``1 / PSD`` weighting, so the SNR series come from the
data the search already holds (a :class:`~gwstream.daemon.stream.snapshot.TriggerSnapshot`),
not from a second read of the strain.

Conventions are PyCBC's (``pycbc.filter.matched_filter``, which BAYESTAR reads
without inverting phases): ``z(t) = 4 ∫_0^∞ s̃(f) h̃*(f) e^{2πift} df / σ`` with
a frequency-domain IMRPhenomD template whose merger is at ``t = 0``, so the
series peaks at the merger time and ``|z|^2`` has mean 2 in Gaussian noise.

The template: with a template branch, the model's best template at the
trigger and its nearest neighbours in the bank (the branch's templates are
cut to 0.5 s; the full templates rank the few again); without one, every
template of the bank (a quick matched filter around the trigger).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gwstream.daemon.bank import load_template_params
from gwstream.daemon.errors import GwstreamError
from gwstream.daemon.sim.injections import chirp_mass
from gwstream.daemon.units import NS, sample_time_ns
from gwstream.kernels import whiten as kwh

__all__ = ["FollowupError", "DetectorSNR", "TemplateSNR", "TemplateBankParams", "template_snr", "template_record",
           "F_LOWER_HZ", "APPROXIMANT"]

log = logging.getLogger(__name__)

#: the templates' start frequency (Hz): the search's high-pass and the bank's
F_LOWER_HZ = 20.0
APPROXIMANT = "IMRPhenomD"
#: largest H1-L1 arrival-time difference searched for the network peak (light travel 10 ms, plus margin)
MAX_LAG_S = 0.015


class FollowupError(GwstreamError, ValueError):
    """A trigger's follow-up cannot be made (bad or missing data, an unusable template); the alert stands."""


@dataclass(frozen=True)
class DetectorSNR:
    """One detector's matched-filter result at the trigger.

    Attributes
    ----------
    ifo : str
    snr : float
        ``|z|`` at the detector's peak.
    phase : float
        ``arg z`` there (radians, PyCBC/FINDCHIRP convention).
    end_ns : int
        GPS ns of the peak (the template's merger time in this detector).
    series : numpy.ndarray
        complex64, an odd number of samples centred on this detector's peak.
    series_start_ns : int
        GPS ns of ``series[0]``.
    delta_t : float
        Sample spacing (s).
    sigma : float
        The template's norm ``sqrt(<h_w, h_w>)`` in the whitened stream's units (not a distance scale).
    """

    ifo: str
    snr: float
    phase: float
    end_ns: int
    series: np.ndarray
    series_start_ns: int
    delta_t: float
    sigma: float


@dataclass(frozen=True)
class TemplateSNR:
    """The template placed on a trigger and its SNR series.

    Attributes
    ----------
    params : dict
        ``mass1``, ``mass2``, ``spin1z``, ``spin2z`` (Msun, dimensionless) and ``index`` (row of the bank).
    detectors : tuple of DetectorSNR
    network_snr : float
    source : str
        ``template_branch`` (the model's template, re-ranked with its neighbours) or ``bank`` (every template).
    n_templates : int
        Templates filtered.
    """

    params: dict
    detectors: tuple
    network_snr: float
    source: str
    n_templates: int

    @property
    def chirp_mass(self) -> float:
        return float(chirp_mass(self.params["mass1"], self.params["mass2"]))


class TemplateBankParams:
    """A template bank's parameters (rows in the order of the model's template branch, when it has one).

    Parameters
    ----------
    path : str or Path
        A CSV with columns ``mass1, mass2, spin1z, spin2z`` or a placed ``.npz`` bank.
    """

    def __init__(self, path: str | Path | None, params: dict | None = None):
        if params is None:
            try:
                params = load_template_params(path)
            except ValueError as exc:
                raise FollowupError(f"template bank: {exc}") from None
        self.params = {k: np.asarray(params[k], dtype=np.float64) for k in ("mass1", "mass2", "spin1z", "spin2z")}
        self.path = None if path is None else Path(path)
        m1, m2 = self.params["mass1"], self.params["mass2"]
        s1, s2 = self.params["spin1z"], self.params["spin2z"]
        self.mchirp = chirp_mass(m1, m2)
        self.chi_eff = (m1 * s1 + m2 * s2) / (m1 + m2)
        self.eta = m1 * m2 / (m1 + m2) ** 2

    @classmethod
    def from_rows(cls, rows: list[dict]) -> TemplateBankParams:
        """A bank of the given templates (dicts with ``mass1``, ``mass2``, ``spin1z``, ``spin2z``)."""
        return cls(None, {k: [float(r[k]) for r in rows] for k in ("mass1", "mass2", "spin1z", "spin2z")})

    def __len__(self) -> int:
        return int(self.params["mass1"].size)

    def row(self, i: int) -> dict:
        return {k: float(v[i]) for k, v in self.params.items()} | {"index": int(i)}

    def neighbours(self, i: int, n: int) -> np.ndarray:
        """Row ``i`` and the ``n - 1`` rows nearest it (chirp mass to 3 %, effective spin to 0.1, eta to 0.03)."""
        d = (np.log(self.mchirp / self.mchirp[i]) / 0.03) ** 2 + ((self.chi_eff - self.chi_eff[i]) / 0.1) ** 2 \
            + ((self.eta - self.eta[i]) / 0.03) ** 2
        return np.argsort(d, kind="stable")[:n]


@functools.lru_cache(maxsize=2048)
def _fd_template(m1: float, m2: float, s1z: float, s2z: float, n: int, rate: int) -> np.ndarray:
    """One-sided FD plus polarisation (face-on, 1 Mpc), ``n // 2 + 1`` bins of ``rate / n`` Hz; merger at t = 0."""
    from pycbc.waveform import get_fd_waveform

    hp, _ = get_fd_waveform(approximant=APPROXIMANT, mass1=m1, mass2=m2, spin1z=s1z, spin2z=s2z, distance=1.0,
                            f_lower=F_LOWER_HZ, delta_f=rate / n)
    out = np.zeros(n // 2 + 1, np.complex128)
    m = min(out.size, len(hp))
    out[:m] = hp.numpy()[:m]
    return out


def _filter_response(taps: np.ndarray, phase: str, n: int) -> np.ndarray:
    """The whitening FIR's frequency response as the stream sees it (its delay removed from the labels)."""
    la = kwh.lookahead_samples(taps.size, phase)
    f = np.arange(n // 2 + 1) / n
    return np.fft.rfft(taps, n) * np.exp(2j * np.pi * f * la)


class _Filter:
    """Matched filter of one snapshot: its data's spectra, reused for every template."""

    def __init__(self, snap):
        if snap.data.ndim != 2 or snap.data.shape[0] != len(snap.ifos) or snap.data.shape[1] < snap.sample_rate_hz:
            raise FollowupError(f"snapshot of {snap.event_id}: data of shape {snap.data.shape}, expected "
                                f"({len(snap.ifos)}, >= {snap.sample_rate_hz})")
        if not np.isfinite(snap.data).all():
            raise FollowupError(f"snapshot of {snap.event_id}: non-finite whitened samples")
        self.snap = snap
        self.n = snap.data.shape[1]
        self.rate = int(snap.sample_rate_hz)
        x = np.where(snap.bad, 0.0, snap.data.astype(np.float64))
        self.xf = np.fft.rfft(x, axis=-1)
        self.resp = _filter_response(np.asarray(snap.taps, np.float64), snap.phase, self.n)
        # the trigger's sample and the span searched for the peak (the trigger time is known to a few windows)
        self.centre = int(round((snap.gps_ns - snap.start_ns) * self.rate / NS))

    def series(self, m1, m2, s1z, s2z) -> tuple[np.ndarray, np.ndarray]:
        """Complex SNR ``(n_ifo, n)`` over the whole snapshot (cyclic: valid away from its start) and sigma."""
        h = _fd_template(float(m1), float(m2), float(s1z), float(s2z), self.n, self.rate) * self.resp
        hh = np.abs(h) ** 2
        hh[0] = 0.0
        sigma = np.sqrt(2.0 * hh.sum() / self.n)  # <h_w, h_w> in unit-variance white noise
        full = np.zeros((self.xf.shape[0], self.n), np.complex128)
        full[:, :self.n // 2 + 1] = self.xf * np.conj(h)
        full[:, 0] = 0.0
        # 4 Δf Σ x̃ h̃* e^{2πift} / S_w with x̃ = Δt DFT and S_w = 2 Δt: 2 / n Σ_k ..., i.e. 2 ifft
        z = 2.0 * np.fft.ifft(full, axis=-1) / max(sigma, 1e-300)
        return z, np.full(self.xf.shape[0], sigma)


def _network_peak(z: np.ndarray, centre: int, search: int, lag: int) -> tuple[int, float]:
    """Sample of the reference detector's peak maximising ``|z_0|^2 + max_lag |z_1|^2`` near ``centre``."""
    lo, hi = max(centre - search, lag), min(centre + search + 1, z.shape[1] - lag)
    if hi <= lo:
        raise FollowupError("the trigger lies outside its snapshot's data")
    p = np.abs(z) ** 2
    net = p[0, lo:hi].copy()
    for other in p[1:]:
        best = np.max(np.stack([other[lo + d:hi + d] for d in range(-lag, lag + 1)]), axis=0)
        net += best
    i = int(np.argmax(net))
    return lo + i, float(np.sqrt(net[i]))


def template_snr(snap, bank: TemplateBankParams, *, half_width_s: float = 0.1, search_s: float = 0.25,
                 neighbours: int = 32) -> TemplateSNR:
    """Place a template on ``snap``'s trigger and compute its SNR series in every detector.

    Parameters
    ----------
    snap : gwstream.daemon.stream.snapshot.TriggerSnapshot
    bank : TemplateBankParams
        The model's bank (its branch's templates in order) or the reference bank.
    half_width_s : float
        The series span ``± half_width_s`` around the network peak (an odd number of samples).
    search_s : float
        How far from the trigger time the peak is looked for.
    neighbours : int
        With a branch template: how many templates (it and its nearest) are ranked.

    Raises
    ------
    FollowupError
        Bad data at the trigger in any detector, a template index outside the bank, or no finite SNR.
    """
    f = _Filter(snap)
    rate = f.rate
    w = int(round(half_width_s * rate))
    lag = int(np.ceil(MAX_LAG_S * rate))
    span = slice(f.centre - int(search_s * rate) - w - 2 * lag, f.centre + int(search_s * rate) + w + 2 * lag + 1)
    if span.start < 0 or span.stop > f.n:
        raise FollowupError(f"{snap.event_id}: the snapshot does not cover ±{search_s + half_width_s} s around "
                            "the trigger")
    bad = snap.bad[:, span].any(axis=1)
    if bad.any():
        raise FollowupError(f"{snap.event_id}: invalid data at the trigger in "
                            f"{', '.join(i for i, b in zip(snap.ifos, bad) if b)}")
    if snap.template_index is not None and 0 <= snap.template_index < len(bank):
        rows, source = bank.neighbours(int(snap.template_index), neighbours), "template_branch"
    else:
        if snap.template_index is not None:
            log.warning("%s: template index %d outside the bank of %d (%s): filtering with every template",
                        snap.event_id, snap.template_index, len(bank), bank.path)
        rows, source = np.arange(len(bank)), "bank"
    best = None
    for r in rows:
        p = bank.row(int(r))
        z, sigma = f.series(p["mass1"], p["mass2"], p["spin1z"], p["spin2z"])
        j, net = _network_peak(z, f.centre, int(search_s * rate), lag)
        if np.isfinite(net) and (best is None or net > best[0]):
            best = (net, p, z, j, sigma)
    if best is None:
        raise FollowupError(f"{snap.event_id}: no template gives a finite SNR")
    net, p, z, j, sigma = best
    dets = []
    for k, ifo in enumerate(snap.ifos):
        # each detector's series is centred on its own peak (its trigger time), as BAYESTAR requires
        i = int(np.argmax(np.abs(z[k, j - lag:j + lag + 1]))) + j - lag
        dets.append(DetectorSNR(
            ifo=ifo, snr=float(np.abs(z[k, i])), phase=float(np.angle(z[k, i])),
            end_ns=snap.start_ns + sample_time_ns(i, rate), series=z[k, i - w:i + w + 1].astype(np.complex64),
            series_start_ns=snap.start_ns + sample_time_ns(i - w, rate), delta_t=1.0 / rate, sigma=float(sigma[k])))
    return TemplateSNR(params=p, detectors=tuple(dets), network_snr=float(net), source=source, n_templates=len(rows))


def template_record(params: dict, snr: TemplateSNR | None = None, *, branch_snr: float | None = None) -> dict:
    """The alert's ``template`` field: masses, spins, chirp mass and (once measured) the per-detector SNRs."""
    out = {k: float(params[k]) for k in ("mass1", "mass2", "spin1z", "spin2z")}
    out["index"] = int(params.get("index", -1))
    out["chirp_mass"] = float(chirp_mass(out["mass1"], out["mass2"]))
    if branch_snr is not None:
        out["branch_snr"] = float(branch_snr)
    if snr is not None:
        out["source"] = snr.source
        out["network_snr"] = snr.network_snr
        out["snr"] = {d.ifo: d.snr for d in snr.detectors}
        out["coa_phase"] = {d.ifo: d.phase for d in snr.detectors}
        out["end_time"] = {d.ifo: d.end_ns / NS for d in snr.detectors}
    return out
