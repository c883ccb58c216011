"""A sky map as a picture: Mollweide PNG of the probability with its 50% and 90% credible contours.

``gwstream skymap`` (:mod:`gwstream.daemon.cli.skymap`) calls :func:`plot_skymap`
on a multi-order FITS sky map (the one an UPDATE alert's ``skymap.path`` names, or
any BAYESTAR-style ``*.multiorder.fits``); :func:`skymap_of_alerts` finds that
path in an alerts file (JSON lines, ``<output.dir>/alerts.jsonl``). The drawing is
ligo.skymap's (``astro hours mollweide`` axes, ``imshow_hpx``, ``contour_hpx``,
greedy credible levels) on matplotlib's Agg canvas, without pyplot.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
from gwstream.daemon.errors import GwstreamError

__all__ = ["SkymapError", "read_skymap", "credible_areas", "flatten", "plot_skymap", "skymap_of_alerts",
           "is_fits"]

log = logging.getLogger(__name__)

#: finest HEALPix order drawn (nside 512, 3.1M pixels, 0.013 deg²): a finer map is averaged down for the picture
#: (the areas come from the multi-order map itself)
PLOT_MAX_ORDER = 9


class SkymapError(GwstreamError, OSError):
    """A sky map or alerts file is missing, unreadable, or holds no sky map for the event asked for."""


def is_fits(path: str | Path) -> bool:
    """Whether ``path`` starts like a FITS file (or a gzip-compressed one)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return head.startswith((b"SIMPLE  =", b"\x1f\x8b"))


def read_skymap(path: str | Path):
    """The multi-order sky map at ``path`` as an astropy Table (``UNIQ``, ``PROBDENSITY`` in 1/sr, ...)."""
    from ligo.skymap.io.fits import read_sky_map

    path = Path(path)
    if not path.is_file():
        raise SkymapError(f"sky map {str(path)!r}: no such file")
    try:
        table = read_sky_map(str(path), moc=True)
    except Exception as exc:  # astropy raises OSError, ValueError, KeyError... for a file that is not a sky map
        raise SkymapError(f"sky map {str(path)!r} is not a HEALPix FITS sky map ({type(exc).__name__}: {exc})") \
            from None
    if "UNIQ" not in table.colnames or "PROBDENSITY" not in table.colnames:
        raise SkymapError(f"sky map {str(path)!r} has columns {table.colnames}, expected UNIQ and PROBDENSITY")
    return table


def credible_areas(table, levels=(0.5, 0.9)) -> dict:
    """``{"area_50_deg2": ..., "area_90_deg2": ...}``: :func:`gwstream.daemon.followup.localize.credible_areas`
    (the smallest sky areas holding ``levels``, greedy, at the map's own resolution) keyed for the title."""
    from .localize import credible_areas as areas

    return {f"area_{round(100 * lv)}_deg2": a for lv, a in zip(levels, areas(table, levels))}


def flatten(table, max_order: int = PLOT_MAX_ORDER) -> np.ndarray:
    """Probability per pixel of a NESTED map at the map's finest order (at most ``max_order``), summing to 1."""
    from ligo.skymap.moc import rasterize, uniq2order

    order = min(int(np.max(uniq2order(np.asarray(table["UNIQ"])))), max_order)
    flat = rasterize(table["UNIQ", "PROBDENSITY"], order=order)
    prob = np.asarray(flat["PROBDENSITY"], dtype=float)
    prob = np.where(np.isfinite(prob) & (prob > 0), prob, 0.0)
    total = prob.sum()
    if total <= 0:
        raise SkymapError("the sky map holds no probability")
    return prob / total


def plot_skymap(path: str | Path, png: str | Path, *, event_id: str | None = None,
                true_radec: tuple[float, float] | None = None, dpi: int = 120) -> dict:
    """Draw the sky map at ``path`` into ``png``; returns ``{"png", "skymap", "event_id", "area_50_deg2",
    "area_90_deg2"}``. ``event_id`` titles it (default: the map's ``OBJECT``, else its file name);
    ``true_radec`` (degrees) marks a known position."""
    from astropy.utils.exceptions import AstropyDeprecationWarning

    with warnings.catch_warnings():  # ligo.skymap 2.5.4 imports a private module of reproject, which warns
        warnings.simplefilter("ignore", AstropyDeprecationWarning)
        import ligo.skymap.plot  # noqa: F401 (registers the astro projections and the cylon colour map)
        from ligo.skymap.plot import reticle
    from ligo.skymap.postprocess import find_greedy_credible_levels
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = read_skymap(path)
    areas = credible_areas(table)
    prob = flatten(table)
    name = event_id or table.meta.get("objid") or Path(path).name
    fig = Figure(figsize=(8.0, 4.8), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111, projection="astro hours mollweide")
    ax.grid(True)
    ax.imshow_hpx((prob, "ICRS"), nested=True, vmin=0.0, vmax=float(prob.max()), cmap="cylon")
    cls = 100.0 * find_greedy_credible_levels(prob)
    cs = ax.contour_hpx((cls, "ICRS"), nested=True, colors="k", linewidths=0.7, levels=(50, 90))
    ax.clabel(cs, fmt="%g%%", fontsize=7)
    if true_radec is not None:
        ra, dec = true_radec
        ax.plot(ra, dec, transform=ax.get_transform("world"), marker=reticle(), markersize=24,
                markeredgewidth=2, color="tab:green", label="true position")
    ax.set_title(f"{name}\n50%: {areas['area_50_deg2']:.0f} deg²   90%: {areas['area_90_deg2']:.0f} deg²",
                 fontsize=10)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(png, format="png", bbox_inches="tight")
    except OSError as exc:
        raise SkymapError(f"cannot write {str(png)!r}: {exc.strerror or exc}") from None
    return {"png": str(png), "skymap": str(Path(path).resolve()), "event_id": name, **areas}


def skymap_of_alerts(alerts_path: str | Path, event_id: str | None = None) -> tuple[Path, dict]:
    """The sky map file and the alert that names it, from an alerts file (JSON lines): the last alert of
    ``event_id`` with a sky map, or the last alert with one. A relative ``skymap.path`` is taken relative to
    the alerts file's folder. :class:`SkymapError` says what is missing."""
    alerts_path = Path(alerts_path)
    try:
        lines = alerts_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SkymapError(f"alerts file {str(alerts_path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    found, seen = None, False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            alert = json.loads(line)
        except ValueError:  # a live file's last line may be half written
            log.warning("%s:%d is not JSON; skipped", alerts_path, n)
            continue
        if not isinstance(alert, dict) or (event_id is not None and alert.get("event_id") != event_id):
            continue
        seen = True
        sky = alert.get("skymap")
        if isinstance(sky, dict) and sky.get("path"):
            found = alert
    if found is None:
        if event_id is None:
            raise SkymapError(f"alerts file {str(alerts_path)!r} holds no alert with a sky map "
                              "(the follow-up UPDATE alert carries it)")
        if not seen:
            raise SkymapError(f"alerts file {str(alerts_path)!r} holds no alert {event_id!r}")
        raise SkymapError(f"alert {event_id!r} in {str(alerts_path)!r} has no sky map (its follow-up UPDATE "
                          "alert has not been written)")
    fits = Path(found["skymap"]["path"])
    if not fits.is_absolute():
        fits = alerts_path.parent / fits
    return fits, found
