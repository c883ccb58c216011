"""LIGO_LW ``coinc.xml`` of an alert, for GraceDB-style consumers (optional: ``output.coinc_xml``).

The document holds the tables a CBC upload is made of — ``process``,
``time_slide`` (zero lag), ``coinc_definer``, one ``sngl_inspiral`` row per
detector, ``coinc_event``, ``coinc_event_map`` and ``coinc_inspiral`` —
filled with what gwstream measures: the trigger time, the ranking statistic
(``coinc_event.likelihood``) and the FAR (``coinc_inspiral.combined_far`` and
``false_alarm_rate``). A CNN has no template, so masses and single-detector
SNRs are left out rather than invented.

:func:`upload_to_gracedb` is an optional adapter (``output.gracedb_url``, off
by default) that sends the document with ligo-gracedb, when it is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gwstream.daemon.units import NS

__all__ = ["coinc_document", "write_coinc_xml", "upload_to_gracedb"]

log = logging.getLogger(__name__)


def coinc_document(alert: dict):
    """The LIGO_LW document of one alert (an ``igwn_ligolw.ligolw.Document``)."""
    from igwn_ligolw import ligolw, lsctables

    doc = ligolw.Document()
    lw = doc.appendChild(ligolw.LIGO_LW())
    proc = doc.register_process("gwstream", {"event_id": alert["event_id"], "model": alert["model"]["name"],
                                             "model_sha256": alert["model"]["sha256"] or ""},
                                instruments=list(alert["ifos"]))
    pid = proc.process_id
    gps_s, gps_ns = divmod(int(alert["gps_ns"]), NS)

    slides = lw.appendChild(lsctables.TimeSlideTable.new())
    ts_id = slides.get_next_id()
    for ifo in alert["ifos"]:
        slides.append(slides.RowType(process_id=pid, time_slide_id=ts_id, instrument=ifo, offset=0.0))

    defs = lw.appendChild(lsctables.CoincDefTable.new())
    cd_id = defs.get_next_id()
    defs.append(defs.RowType(coinc_def_id=cd_id, search="inspiral", search_coinc_type=0,
                             description="sngl_inspiral<-->sngl_inspiral coincidences"))

    sngl = lw.appendChild(lsctables.SnglInspiralTable.new(
        columns=["process:process_id", "event_id", "ifo", "search", "channel", "end_time", "end_time_ns"]))
    ids = []
    for ifo in alert["ifos"]:
        eid = sngl.get_next_id()
        ids.append(eid)
        sngl.append(sngl.RowType(process_id=pid, event_id=eid, ifo=ifo, search="gwstream",
                                 channel=f"{ifo}:GDS-CALIB_STRAIN", end_time=gps_s, end_time_ns=gps_ns))

    coincs = lw.appendChild(lsctables.CoincTable.new())
    ce_id = coincs.get_next_id()
    coincs.append(coincs.RowType(process_id=pid, coinc_def_id=cd_id, coinc_event_id=ce_id, time_slide_id=ts_id,
                                 instruments=",".join(alert["ifos"]), nevents=len(ids),
                                 likelihood=float(alert["stat"])))

    cmap = lw.appendChild(lsctables.CoincMapTable.new())
    for eid in ids:
        cmap.append(cmap.RowType(coinc_event_id=ce_id, table_name="sngl_inspiral", event_id=eid))

    ci = lw.appendChild(lsctables.CoincInspiralTable.new(
        columns=["coinc_event:coinc_event_id", "ifos", "end_time", "end_time_ns", "combined_far",
                 "false_alarm_rate"]))
    ci.append(ci.RowType(coinc_event_id=ce_id, ifos=",".join(alert["ifos"]), end_time=gps_s, end_time_ns=gps_ns,
                         combined_far=float(alert["far"]), false_alarm_rate=float(alert["far"])))
    return doc


def write_coinc_xml(alert: dict, directory: str | Path) -> Path:
    """Write ``<directory>/<event_id>.xml`` atomically; returns its path."""
    import os

    from gwstream.daemon.io.atomic import atomic_path
    from igwn_ligolw import utils as ligolw_utils

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{alert['event_id']}.xml"
    with atomic_path(path, suffix=".xml") as tmp:
        ligolw_utils.write_filename(coinc_document(alert), tmp, with_mv=False)
        os.chmod(tmp, 0o644)
    return path


def upload_to_gracedb(xml_path: Path, url: str, group: str = "CBC", pipeline: str = "gwstream",
                      search: str = "AllSky") -> str:
    """Create a GraceDB event from a coinc.xml (needs ``ligo-gracedb`` and credentials); returns its graceid."""
    try:
        from ligo.gracedb.rest import GraceDb
    except ImportError:
        raise RuntimeError("output.gracedb_url is set but ligo-gracedb is not installed "
                           "(pip install 'gwstream[gracedb]')") from None
    client = GraceDb(service_url=url)
    resp = client.create_event(group, pipeline, str(xml_path), search=search).json()
    return resp["graceid"]
