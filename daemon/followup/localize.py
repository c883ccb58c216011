"""BAYESTAR sky maps from gwstream's coinc.xml (``ligo.skymap``), their credible areas and searched probabilities.

:func:`localize_coinc` reads the document with ligo.skymap's own event
reader (the PSDs from the same file, as GraceDB's pipeline does), runs
``ligo.skymap.bayestar.localize`` and writes the multi-order FITS sky map.
The templates BAYESTAR uses to model the SNR series are IMRPhenomD from
20 Hz, as the search's bank (``waveform``, ``f_low``).

ligo.skymap must be told each pipeline's phase convention; gwstream's
series are PyCBC's (FINDCHIRP: not inverted), registered by
:func:`register_phase_convention` before any read.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .snr import APPROXIMANT, F_LOWER_HZ, FollowupError

__all__ = ["SkyMapResult", "localize_coinc", "register_phase_convention", "credible_areas", "searched"]

log = logging.getLogger(__name__)

PROGRAM = "gwstream"


def register_phase_convention() -> None:
    """Tell ligo.skymap's coinc.xml reader that the ``gwstream`` process writes FINDCHIRP-convention phases."""
    from ligo.skymap.io.events.ligolw import LigoLWEventSource

    LigoLWEventSource._invert_phases.setdefault(PROGRAM, False)


@dataclass(frozen=True)
class SkyMapResult:
    """A written sky map and what the alert says of it."""

    path: Path
    area_50_deg2: float
    area_90_deg2: float
    distmean_mpc: float | None
    diststd_mpc: float | None
    runtime_s: float

    def as_dict(self) -> dict:
        return {"path": str(Path(self.path).resolve()), "format": "multiorder.fits",
                "area_50_deg2": self.area_50_deg2, "area_90_deg2": self.area_90_deg2,
                "distmean_mpc": self.distmean_mpc, "diststd_mpc": self.diststd_mpc,
                "localization_s": self.runtime_s, "method": "BAYESTAR"}


def _probdensity_areas(table) -> tuple[np.ndarray, np.ndarray]:
    """Probability and area (deg^2) of every pixel of a multi-order map."""
    from astropy import units as u
    from ligo.skymap import moc

    level, _ = moc.uniq2nest(table["UNIQ"])
    area_sr = (np.pi / 3.0) / 4.0 ** level  # 4 pi / (12 * 4^level)
    prob = np.asarray(table["PROBDENSITY"]) * area_sr
    return prob, (area_sr * u.sr).to_value(u.deg ** 2)


def credible_areas(table, levels=(0.5, 0.9)) -> list[float]:
    """The smallest areas (deg^2) holding each credible level of a multi-order map."""
    prob, area = _probdensity_areas(table)
    dens = np.asarray(table["PROBDENSITY"])
    order = np.argsort(dens)[::-1]
    cum = np.cumsum(prob[order])
    cum_area = np.cumsum(area[order])
    return [float(cum_area[min(np.searchsorted(cum, lv * cum[-1]), cum.size - 1)]) for lv in levels]


def searched(table, ra_deg: float, dec_deg: float) -> tuple[float, float]:
    """Searched probability and searched area (deg^2) of a true position: the probability and area of the
    pixels at least as dense as the one holding it (``ligo.skymap.postprocess.crossmatch``'s definitions,
    without its distance and contour work, which take seconds per map)."""
    import astropy_healpix as ah
    from astropy import units as u
    from ligo.skymap import moc

    level, ipix = moc.uniq2nest(np.asarray(table["UNIQ"]))
    top = int(level.max())
    true = int(ah.HEALPix(nside=2 ** top, order="nested").lonlat_to_healpix(ra_deg * u.deg, dec_deg * u.deg))
    shift = (2 * (top - level)).astype(np.int64)
    hit = np.flatnonzero(((ipix << shift) <= true) & (true < ((ipix + 1) << shift)))
    if hit.size != 1:
        raise ValueError(f"sky map: {hit.size} pixels hold RA {ra_deg:g}, Dec {dec_deg:g} (expected one)")
    prob, area = _probdensity_areas(table)
    dens = np.asarray(table["PROBDENSITY"])
    inside = dens >= dens[hit[0]]
    return float(prob[inside].sum() / prob.sum()), float(area[inside].sum())


def localize_coinc(xml_path: str | Path, fits_path: str | Path, *, event_id: str | None = None) -> SkyMapResult:
    """BAYESTAR on a coinc.xml written with SNR series and PSDs; writes ``fits_path`` (multi-order FITS).

    Raises
    ------
    FollowupError
        The document holds no event, or ligo.skymap refuses it (the message says why).
    """
    from gwstream.daemon.io.atomic import atomic_path
    from ligo.skymap.bayestar import localize
    from ligo.skymap.io import events, fits

    register_phase_convention()
    xml_path = Path(xml_path)
    try:
        source = events.ligolw.open(str(xml_path), psd_file=str(xml_path), coinc_def=None)
        evs = list(source.values())
    except Exception as exc:  # noqa: BLE001 - any reader failure names the file
        raise FollowupError(f"{xml_path}: ligo.skymap cannot read it ({type(exc).__name__}: {exc})") from None
    if len(evs) != 1:
        raise FollowupError(f"{xml_path}: {len(evs)} events, expected one")
    t0 = time.perf_counter()
    try:
        table = localize(evs[0], waveform=APPROXIMANT, f_low=F_LOWER_HZ)
    except Exception as exc:  # noqa: BLE001 - BAYESTAR's refusal, named
        raise FollowupError(f"{xml_path}: BAYESTAR failed ({type(exc).__name__}: {exc})") from None
    runtime = time.perf_counter() - t0
    table.meta["objid"] = event_id or xml_path.stem
    table.meta["creator"] = PROGRAM
    fits_path = Path(fits_path)
    fits_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(fits_path, suffix=".fits") as tmp:
        fits.write_sky_map(str(tmp), table, moc=True)
        os.chmod(tmp, 0o644)
    a50, a90 = credible_areas(table)
    mean, std = table.meta.get("distmean"), table.meta.get("diststd")
    return SkyMapResult(fits_path, a50, a90, None if mean is None else float(mean),
                        None if std is None else float(std), runtime)
