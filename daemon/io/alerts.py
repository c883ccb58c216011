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

__all__ = ["PIPELINE", "event_id", "make_alert", "encode_alert", "decode_alert", "ALERT_TOPIC"]

PIPELINE = "gwstream"
ALERT_TOPIC = b"alert"
#: GPS - UTC (leap seconds) since 2017-01-01
GPS_UTC_OFFSET_S = 18
_GPS_EPOCH_UNIX = 315964800


def event_id(gps_ns: int, pipeline: str = PIPELINE) -> str:
    """Deterministic id, e.g. ``gwstream-1000000074512`` (GPS milliseconds)."""
    return f"{pipeline}-{int(gps_ns) // 1_000_000}"


def gps_now_ns(unix_ns: int) -> int:
    """GPS nanoseconds of a Unix time (leap seconds as of 2017)."""
    return unix_ns - _GPS_EPOCH_UNIX * NS + GPS_UTC_OFFSET_S * NS


def make_alert(trigger: Trigger, *, ifos, background_livetime_s: float, n_slides: int, model_name: str,
               model_sha256: str | None, latency: dict, created_unix_ns: int) -> dict:
    """The alert of one trigger (all times in GPS seconds, FAR in Hz)."""
    created = _dt.datetime.fromtimestamp(created_unix_ns / NS, tz=_dt.timezone.utc)
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
    }


def encode_alert(alert: dict) -> list[bytes]:
    """``[b"alert", json]`` for the PUB socket."""
    return [ALERT_TOPIC, json.dumps(alert, allow_nan=True).encode()]


def decode_alert(parts) -> dict:
    """Inverse of :func:`encode_alert`; ValueError naming what is wrong."""
    if len(parts) != 2 or bytes(parts[0]) != ALERT_TOPIC:
        raise ValueError(f"alert message with {len(parts)} parts / topic {bytes(parts[0])[:16]!r}, expected "
                         "[b'alert', json]")
    try:
        alert = json.loads(bytes(parts[1]))
    except ValueError as exc:
        raise ValueError(f"alert payload is not JSON ({exc})") from None
    if not isinstance(alert, dict) or "event_id" not in alert:
        raise ValueError("alert payload has no event_id")
    return alert
