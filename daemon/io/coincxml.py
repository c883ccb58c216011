"""LIGO_LW ``coinc.xml`` of an alert, as BAYESTAR and GraceDB read it (``output.coinc_xml``, and the follow-up).

The document holds the tables a CBC upload is made of — ``process``,
``time_slide`` (zero lag), ``coinc_definer``, one ``sngl_inspiral`` row per
detector, ``coinc_event``, ``coinc_event_map`` and ``coinc_inspiral`` — filled
with what gwstream measures: the trigger time, the ranking statistic
(``coinc_event.likelihood``) and the FAR (``coinc_inspiral.combined_far``).
Once the follow-up has placed a template (:mod:`gwstream.daemon.followup.snr`),
the ``sngl_inspiral`` rows carry its masses and spins and each detector's SNR,
phase and peak time, the document holds each detector's complex SNR series as
a ``COMPLEX8TimeSeries`` (linked to its row by an ``event_id`` Param) and the
PSDs as ``REAL8FrequencySeries`` (``lal.series.make_psd_xmldoc``), as
``ligo.skymap.io.events.ligolw`` reads them. Without a template the masses and
single-detector SNRs are left out rather than invented.

The process is ``gwstream``; its SNR series follow the FINDCHIRP phase
convention (PyCBC's), which ligo.skymap must be told for a pipeline it does
not know (:func:`gwstream.daemon.followup.localize.register_phase_convention`).

:func:`upload_to_gracedb` is an optional adapter (``output.gracedb_url``, off
by default) that sends the document with ligo-gracedb, when it is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from gwstream.daemon.units import NS

__all__ = ["coinc_document", "write_coinc_xml", "upload_to_gracedb"]

log = logging.getLogger(__name__)


#: sngl_inspiral columns written (those ligo.skymap and GraceDB read, plus the chirp mass)
_SNGL_COLUMNS = ["process:process_id", "event_id", "ifo", "search", "channel", "end_time", "end_time_ns", "snr",
                 "coa_phase", "mass1", "mass2", "mchirp", "eta", "mtotal", "spin1x", "spin1y", "spin1z", "spin2x",
                 "spin2y", "spin2z", "f_final", "eff_distance", "sigmasq", "chisq", "chisq_dof", "template_duration"]


def coinc_document(alert: dict, *, template: dict | None = None, detectors=(), psds: dict | None = None):
    """The LIGO_LW document of one alert (an ``igwn_ligolw.ligolw.Document``).

    Parameters
    ----------
    alert : dict
        :func:`gwstream.daemon.io.alerts.make_alert`'s alert.
    template : dict, optional
        ``mass1``, ``mass2``, ``spin1z``, ``spin2z`` of the template placed on the trigger.
    detectors : sequence, optional
        Per-detector results with attributes ``ifo``, ``snr``, ``phase``, ``end_ns``, ``series`` (complex),
        ``series_start_ns``, ``delta_t`` (:class:`gwstream.daemon.followup.snr.DetectorSNR`).
    psds : dict, optional
        ``{ifo: (freqs Hz, psd strain^2/Hz)}`` with uniformly spaced frequencies from 0.
    """
    import lal
    import lal.series
    from igwn_ligolw import ligolw, lsctables

    doc = ligolw.Document()
    lw = doc.appendChild(ligolw.LIGO_LW())
    proc = doc.register_process("gwstream", {"event_id": alert["event_id"], "model": alert["model"]["name"],
                                             "model_sha256": alert["model"]["sha256"] or ""},
                                instruments=list(alert["ifos"]))
    pid = proc.process_id
    gps_s, gps_ns = divmod(int(alert["gps_ns"]), NS)
    by_ifo = {d.ifo: d for d in detectors}
    if detectors and set(by_ifo) != set(alert["ifos"]):
        raise ValueError(f"SNR series for {sorted(by_ifo)}, the alert's detectors are {list(alert['ifos'])}")

    slides = lw.appendChild(lsctables.TimeSlideTable.new())
    ts_id = slides.get_next_id()
    for ifo in alert["ifos"]:
        slides.append(slides.RowType(process_id=pid, time_slide_id=ts_id, instrument=ifo, offset=0.0))

    defs = lw.appendChild(lsctables.CoincDefTable.new())
    cd_id = defs.get_next_id()
    defs.append(defs.RowType(coinc_def_id=cd_id, search="inspiral", search_coinc_type=0,
                             description="sngl_inspiral<-->sngl_inspiral coincidences"))

    sngl = lw.appendChild(lsctables.SnglInspiralTable.new(columns=_SNGL_COLUMNS))
    m1 = m2 = mchirp = None
    if template is not None:
        m1, m2 = float(template["mass1"]), float(template["mass2"])
        mchirp = (m1 * m2) ** 0.6 / (m1 + m2) ** 0.2
    ids = []
    for ifo in alert["ifos"]:
        eid = sngl.get_next_id()
        ids.append(eid)
        d = by_ifo.get(ifo)
        end_s, end_ns = divmod(int(d.end_ns), NS) if d is not None else (gps_s, gps_ns)
        row = {c.split(":")[-1]: 0.0 for c in _SNGL_COLUMNS}
        row.update(process_id=pid, event_id=eid, ifo=ifo, search="gwstream", channel=f"{ifo}:GDS-CALIB_STRAIN",
                   end_time=end_s, end_time_ns=end_ns, chisq_dof=0)
        if d is not None:
            row.update(snr=float(d.snr), coa_phase=float(d.phase))
        if template is not None:
            row.update(mass1=m1, mass2=m2, mchirp=mchirp, mtotal=m1 + m2, eta=m1 * m2 / (m1 + m2) ** 2,
                       spin1z=float(template["spin1z"]), spin2z=float(template["spin2z"]))
        sngl.append(sngl.RowType(**row))

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
                 "false_alarm_rate", "snr", "mchirp", "mass"]))
    net = float(sum(d.snr ** 2 for d in detectors) ** 0.5) if detectors else 0.0
    ci.append(ci.RowType(coinc_event_id=ce_id, ifos=",".join(alert["ifos"]), end_time=gps_s, end_time_ns=gps_ns,
                         combined_far=float(alert["far"]), false_alarm_rate=float(alert["far"]), snr=net,
                         mchirp=mchirp or 0.0, mass=(m1 + m2) if template is not None else 0.0))

    for ifo, eid in zip(alert["ifos"], ids):
        d = by_ifo.get(ifo)
        if d is None:
            continue
        series = np.asarray(d.series, dtype=np.complex64)
        if series.ndim != 1 or series.size % 2 == 0 or not np.isfinite(series).all():
            raise ValueError(f"{ifo} SNR series of {series.shape} samples: expected an odd number of finite ones")
        ts = lal.CreateCOMPLEX8TimeSeries("snr", lal.LIGOTimeGPS(*divmod(int(d.series_start_ns), NS)), 0.0,
                                          float(d.delta_t), lal.DimensionlessUnit, series.size)
        ts.data.data[:] = series
        elem = lw.appendChild(lal.series.build_COMPLEX8TimeSeries(ts))
        elem.appendChild(ligolw.Param.from_pyvalue("event_id", int(eid)))
    if psds:
        lal_psds = {}
        for ifo, (freqs, psd) in psds.items():
            freqs, psd = np.asarray(freqs, float), np.asarray(psd, float)
            if freqs.ndim != 1 or freqs.size != psd.size or freqs.size < 2 or not np.isfinite(psd).all():
                raise ValueError(f"{ifo} PSD of {psd.shape} values on {freqs.shape} frequencies: expected matching "
                                 "finite 1-d arrays")
            fs = lal.CreateREAL8FrequencySeries("psd", lal.LIGOTimeGPS(gps_s), float(freqs[0]),
                                                float(freqs[1] - freqs[0]), lal.StrainUnit ** 2 / lal.HertzUnit,
                                                psd.size)
            fs.data.data[:] = psd
            lal_psds[ifo] = fs
        lal.series.make_psd_xmldoc(lal_psds, lw)
    return doc


def write_coinc_xml(alert: dict, directory: str | Path, **extra) -> Path:
    """Write ``<directory>/<event_id>.xml`` atomically (``extra``: :func:`coinc_document`'s template, detectors
    and psds); returns its path."""
    import os

    from gwstream.daemon.io.atomic import atomic_path
    from igwn_ligolw import utils as ligolw_utils

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{alert['event_id']}.xml"
    with atomic_path(path, suffix=".xml") as tmp:
        ligolw_utils.write_filename(coinc_document(alert, **extra), tmp, with_mv=False)
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
