"""Alerts: the JSON a subscriber receives for a significant trigger.

Field names follow the IGWN alert conventions where one exists (``gpstime``,
``far`` in Hz, ``pipeline``, ``group``, ``search``, ``instruments``). The event id
is a pure function of the pipeline and the trigger's GPS time (to the
millisecond), so a restarted daemon that meets the same cluster again can
never issue a second id for it.
"""

from __future__ import annotations

import datetime as _dt
import json

from gwstream.daemon.io.trigger import Trigger
from gwstream.daemon.units import NS

__all__ = ["PIPELINE", "event_id", "make_alert", "encode_alert", "decode_alert", "ALERT_TOPIC", "SKYMAP_TOPIC",
           "SIGNIFICANT_FAR_HZ", "iso_utc", "make_update"]

PIPELINE = "gwstream"
#: topic of the first (PRELIMINARY) alert of a trigger, published as soon as the trigger is ranked
ALERT_TOPIC = b"alert"
#: topic of the follow-up (UPDATE) alert: the same alert with its template SNR series' results and sky map
SKYMAP_TOPIC = b"skymap"
TOPICS = (ALERT_TOPIC, SKYMAP_TOPIC)
#: the IGWN "significant" threshold for CBC alerts: one per month (as GCN's notices use it)
SIGNIFICANT_FAR_HZ = 1.0 / (30 * 86400)
#: GPS - UTC (leap seconds) since 2017-01-01
GPS_UTC_OFFSET_S = 18
_GPS_EPOCH_UNIX = 315964800


def event_id(gps_ns: int, pipeline: str = PIPELINE) -> str:
    """Deterministic id, e.g. ``gwstream-1000000074512`` (GPS milliseconds)."""
    return f"{pipeline}-{int(gps_ns) // 1_000_000}"


def gps_now_ns(unix_ns: int) -> int:
    """GPS nanoseconds of a Unix time (leap seconds as of 2017)."""
    return unix_ns - _GPS_EPOCH_UNIX * NS + GPS_UTC_OFFSET_S * NS


def iso_utc(gps_ns: int) -> str:
    """ISO 8601 UTC of a GPS time (leap seconds as of 2017), to the millisecond, e.g. ``2017-08-17T12:41:04.400Z``."""
    unix_ns = int(gps_ns) + _GPS_EPOCH_UNIX * NS - GPS_UTC_OFFSET_S * NS
    return _iso(unix_ns)


def _iso(unix_ns: int) -> str:
    t = _dt.datetime.fromtimestamp(unix_ns // NS, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{(unix_ns % NS) // 1_000_000:03d}Z"


def make_alert(trigger: Trigger, *, ifos, background_livetime_s: float, n_slides: int, model_name: str,
               model_sha256: str | None, latency: dict, created_unix_ns: int, template: dict | None = None,
               classification: dict | None = None) -> dict:
    """The alert of one trigger (all times in GPS seconds, FAR in Hz).

    Today's flat fields stay; ``alert_type``, ``time_created`` and ``event``
    add the IGWN/GCN notice layout (``event.time`` in ISO UTC,
    ``event.classification`` the p_astro categories, ``event.properties``
    the source properties from the template's masses). ``template`` is the
    best template's parameters (:func:`gwstream.daemon.followup.snr.template_record`),
    ``classification`` ``{"BBH": p, "Terrestrial": 1 - p}``. ``far_floor_hz``
    is the smallest FAR the background's live time can give (``1 / livetime``):
    a ``far`` at the floor (``saturated``) is an upper bound.
    """
    created = _dt.datetime.fromtimestamp(created_unix_ns / NS, tz=_dt.timezone.utc)
    floor = 1.0 / background_livetime_s if background_livetime_s > 0 else float("inf")
    properties = None
    if template:
        # a BBH search's templates: both components above 3 Msun means no neutron star, so no remnant matter
        has_ns = float(min(template["mass1"], template["mass2"]) < 3.0)
        properties = {"HasNS": has_ns, "HasRemnant": has_ns, "HasMassGap": float(
            any(3.0 <= m <= 5.0 for m in (template["mass1"], template["mass2"])))}
    return {
        "event_id": event_id(trigger.gps_ns),
        "pipeline": PIPELINE,
        "group": "CBC",
        "search": "AllSky",
        "gpstime": trigger.gps_ns / NS,
        "gps_ns": int(trigger.gps_ns),
        "var_s": trigger.var,
        "far": trigger.far,
        "ifar_years": trigger.ifar_years,
        "stat": trigger.stat,
        "saturated": trigger.saturated,
        "ifos": list(ifos),
        "instruments": ",".join(ifos),
        "background": {"livetime_s": background_livetime_s, "n_slides": int(n_slides)},
        "model": {"name": model_name, "sha256": model_sha256},
        "latency": dict(latency),
        "created": created.isoformat().replace("+00:00", "Z"),
        "far_floor_hz": floor,
        "template": template,
        "alert_type": "PRELIMINARY",
        "time_created": _iso(int(created_unix_ns)),
        "event": {
            "time": iso_utc(trigger.gps_ns),
            "far": trigger.far,
            "significant": bool(trigger.far <= SIGNIFICANT_FAR_HZ),
            "instruments": list(ifos),
            "group": "CBC",
            "pipeline": PIPELINE,
            "search": "AllSky",
            "classification": classification,
            "properties": properties,
            "duration": None,
            "central_frequency": None,
        },
        "skymap": None,
    }


def make_update(alert: dict, *, skymap: dict | None, template: dict | None, created_unix_ns: int) -> dict:
    """The follow-up (UPDATE) alert of ``alert``: its sky map (``path``, ``area_50_deg2``, ``area_90_deg2``, ...)
    and the template the SNR series were computed with; everything else as the first alert said."""
    out = json.loads(json.dumps(alert))
    out["alert_type"] = "UPDATE"
    out["time_created"] = _iso(int(created_unix_ns))
    out["skymap"] = skymap
    if template is not None:
        out["template"] = template
    return out


def encode_alert(alert: dict, topic: bytes = ALERT_TOPIC) -> list[bytes]:
    """``[b"alert", json]`` (or ``[b"skymap", json]`` for a follow-up) for the PUB socket."""
    return [topic, json.dumps(alert, allow_nan=True).encode()]


def decode_alert(parts) -> dict:
    """Inverse of :func:`encode_alert` (either topic); ValueError naming what is wrong."""
    if len(parts) != 2 or bytes(parts[0]) not in TOPICS:
        raise ValueError(f"alert message with {len(parts)} parts / topic {bytes(parts[0])[:16]!r}, expected "
                         "[b'alert', json] or [b'skymap', json]")
    try:
        alert = json.loads(bytes(parts[1]))
    except ValueError as exc:
        raise ValueError(f"alert payload is not JSON ({exc})") from None
    if not isinstance(alert, dict) or "event_id" not in alert:
        raise ValueError("alert payload has no event_id")
    return alert
