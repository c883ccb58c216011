"""An alert as an IGWN GCN Kafka notice (the JSON layout of the IGWN public alerts user guide).

:func:`gcn_notice` maps an alert of :mod:`gwstream.daemon.io.alerts` (the first,
``PRELIMINARY`` one or its ``UPDATE`` with the sky map) onto the notice layout::

    {"superevent_id", "alert_type", "time_created",
     "event": {"significant", "time", "far", "instruments", "group", "pipeline", "search",
               "properties", "classification", "duration", "central_frequency", "skymap"},
     "external_coinc": null, "urls": {...}}

``superevent_id`` is our event id (there is no GraceDB superevent), ``event.skymap``
the base64 of the multi-order FITS file the alert's ``skymap.path`` names (null
when the alert has none, or it cannot be read: a warning, never an exception),
``urls`` a map of strings (``skymap``: the FITS file's ``file://`` URI, when the
alert names one). :func:`validate_notice` checks a notice against that layout and
names the first field that is missing or of the wrong type.
"""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path

from gwstream.daemon.errors import GwstreamError

__all__ = ["gcn_notice", "validate_notice", "NoticeError", "ALERT_TYPES", "NOTICE_FIELDS", "EVENT_FIELDS"]

log = logging.getLogger(__name__)

#: the IGWN alert types (igwn-gwalert-schema's AlertType)
ALERT_TYPES = ("EARLY_WARNING", "PRELIMINARY", "INITIAL", "UPDATE", "RETRACTION")
#: the notice's top-level fields, in the user guide's order
NOTICE_FIELDS = ("superevent_id", "alert_type", "time_created", "event", "external_coinc", "urls")
#: the fields of ``event``, in the user guide's order (``properties`` ... ``skymap`` may be null)
EVENT_FIELDS = ("significant", "time", "far", "instruments", "group", "pipeline", "search", "properties",
                "classification", "duration", "central_frequency", "skymap")
_NULLABLE = frozenset({"properties", "classification", "duration", "central_frequency", "skymap"})
#: the first bytes of a FITS file, and of a gzip-compressed one (``.fits.gz``)
_FITS_MAGIC = (b"SIMPLE  =", b"\x1f\x8b")


class NoticeError(GwstreamError, ValueError):
    """An alert or a notice lacks a field the GCN notice layout needs, or holds one of the wrong type."""


def gcn_notice(alert: dict, *, embed_skymap: bool = True) -> dict:
    """The GCN notice of ``alert`` (see the module's docstring); :class:`NoticeError` names a missing field."""
    if not isinstance(alert, dict):
        raise NoticeError(f"alert is a {type(alert).__name__}, expected a JSON object")
    for key in ("event_id", "alert_type", "time_created", "event"):
        if key not in alert:
            raise NoticeError(f"alert {alert.get('event_id', '?')!r} has no {key!r} field (the IGWN notice "
                              "layout of daemon/io/alerts.py)")
    event = alert["event"]
    if event is not None and not isinstance(event, dict):
        raise NoticeError(f"alert field 'event' is a {type(event).__name__}, expected an object or null")
    skymap = alert.get("skymap")
    path = skymap.get("path") if isinstance(skymap, dict) else None
    urls = {"skymap": Path(path).resolve().as_uri()} if path else {}
    notice = {
        "superevent_id": alert["event_id"],
        "alert_type": alert["alert_type"],
        "time_created": alert["time_created"],
        "event": None,
        "external_coinc": None,
        "urls": urls,
    }
    if event is not None:  # a RETRACTION has none
        out = {}
        for key in EVENT_FIELDS[:-1]:
            if key in event:
                out[key] = event[key]
            elif key in _NULLABLE:
                out[key] = None
            else:
                raise NoticeError(f"alert {alert['event_id']!r} has no 'event.{key}' field")
        out["skymap"] = _read_skymap(path, alert["event_id"]) if embed_skymap and path else None
        notice["event"] = out
    validate_notice(notice)
    return notice


def _read_skymap(path: str, eid: str) -> str | None:
    """Base64 of the FITS file at ``path``, or None with a warning when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        log.warning("alert %s: sky map %s not embedded: %s", eid, path, exc.strerror or exc)
        return None
    if not data.startswith(_FITS_MAGIC):
        log.warning("alert %s: sky map %s not embedded: not a FITS file (starts %r)", eid, path, data[:9])
        return None
    return base64.b64encode(data).decode("ascii")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_notice(notice: dict) -> None:
    """Check ``notice`` against the GCN notice layout; :class:`NoticeError` names the first bad field."""
    if not isinstance(notice, dict):
        raise NoticeError(f"notice is a {type(notice).__name__}, expected a JSON object")
    for key in NOTICE_FIELDS:
        if key not in notice:
            raise NoticeError(f"GCN notice has no required field {key!r}")
    for key in ("superevent_id", "time_created"):
        if not isinstance(notice[key], str) or not notice[key]:
            raise NoticeError(f"GCN notice field {key!r} = {notice[key]!r}: expected a non-empty string")
    if notice["alert_type"] not in ALERT_TYPES:
        raise NoticeError(f"GCN notice field 'alert_type' = {notice['alert_type']!r}: expected one of "
                          f"{', '.join(ALERT_TYPES)}")
    urls = notice["urls"]
    if not isinstance(urls, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in urls.items()):
        raise NoticeError(f"GCN notice field 'urls' = {urls!r}: expected a map of strings")
    event = notice["event"]
    if event is None:
        if notice["alert_type"] != "RETRACTION":
            raise NoticeError(f"GCN notice field 'event' is null in a {notice['alert_type']} notice "
                              "(only a RETRACTION has none)")
        return
    if not isinstance(event, dict):
        raise NoticeError(f"GCN notice field 'event' is a {type(event).__name__}, expected an object")
    for key in EVENT_FIELDS:
        if key not in event:
            raise NoticeError(f"GCN notice has no required field 'event.{key}'")
        if event[key] is None and key not in _NULLABLE:
            raise NoticeError(f"GCN notice field 'event.{key}' is null")

    def bad(key, expected):
        return NoticeError(f"GCN notice field 'event.{key}' = {event[key]!r}: expected {expected}")

    if not isinstance(event["significant"], bool):
        raise bad("significant", "true or false")
    if not _number(event["far"]) or math.isnan(event["far"]) or event["far"] < 0:
        raise bad("far", "a false-alarm rate in Hz (a number >= 0)")
    if not isinstance(event["instruments"], list) or not all(isinstance(i, str) for i in event["instruments"]):
        raise bad("instruments", "a list of detector names")
    for key in ("time", "group", "pipeline", "search"):
        if not isinstance(event[key], str):
            raise bad(key, "a string")
    for key in ("properties", "classification"):
        v = event[key]
        if v is not None and not (isinstance(v, dict) and all(_number(x) for x in v.values())):
            raise bad(key, "null or a map of numbers")
    for key in ("duration", "central_frequency"):
        if event[key] is not None and not _number(event[key]):
            raise bad(key, "null or a number")
    if event["skymap"] is not None and not isinstance(event["skymap"], str):
        raise bad("skymap", "null or the base64 of a FITS file")
