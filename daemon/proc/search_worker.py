"""The search process: aligned blocks in (PULL), alerts out (PUB), triggers and background on disk.

:func:`run_search_process` is what ``gwstream run`` starts next to the
ingest process. It restores the ranking state (background, live time,
clustering carry) from ``ranking.state_file`` (default
``<output.dir>/ranking-state.h5``), runs every block through
:class:`~gwstream.daemon.stream.pipeline.SearchStage`, appends every trigger to the
hourly trigger archive, publishes an alert for each trigger with
``FAR <= output.far_threshold_hz`` and appends it to the alerts file, persists
the state every ``ranking.save_interval_s`` and on SIGTERM/SIGINT, and logs a
status line every ``output.status_interval_s``.

An alert is published once per cluster, when the cluster can no longer grow;
event ids already in the alerts file are never published again (a restart
that meets the same cluster).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

import zmq
from gwstream.daemon.config import alerts_path, archive_path, state_path, status_path
from gwstream.daemon.errors import WireError
from gwstream.daemon.io.alerts import SKYMAP_TOPIC, encode_alert, event_id, make_alert, make_update
from gwstream.daemon.io.archive import TriggerArchive
from gwstream.daemon.io.status import write_status
from gwstream.daemon.io.wire import decode_block_message
from gwstream.daemon.stream.pipeline import SearchStage
from gwstream.daemon.units import NS

from .metrics import Metrics
from .preflight import load_scorer
from .security import ServerAuth, secure_server

__all__ = ["run_search_process", "state_path", "alerts_path", "archive_path", "status_path"]

log = logging.getLogger(__name__)


def _published_ids(path: Path) -> set[str]:
    ids = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                ids.add(json.loads(line)["event_id"])
            except (ValueError, KeyError, TypeError):
                log.warning("alerts file %s: unreadable line skipped", path)
    return ids


def _start_followup(cfg, scorer, out: Path, runner):
    """The follow-up (template of the first alert) and its worker process, or ``(None, None)`` when off or
    when it cannot start (logged: the search runs without it)."""
    if not cfg.followup.enabled:
        return None, None
    from gwstream.daemon.followup.event import Followup

    from .followup_worker import FollowupWorker, run_followup

    try:
        followup = Followup.from_config(cfg, scorer.model)
        worker = FollowupWorker(cfg, int(getattr(scorer.model, "template_pairs", 0) or 0), out / "followup",
                                runner=runner or run_followup)
    except Exception as exc:  # noqa: BLE001 - alerts go out without follow-ups rather than not at all
        log.error("follow-up disabled: %s", exc)
        return None, None
    log.info("follow-up worker started: bank=%s (%d templates, branch rows %s) skymap=%s", followup.bank.path,
             len(followup.bank), "mapped" if followup.branch_maps else "not mapped", followup.skymap)
    return followup, worker


def _pastro_model(cfg, stage):
    """The p_astro model of this search's background (:func:`gwstream.daemon.followup.pastro.model_for_search`,
    which refuses a signal model made for another network), or None (logged) when there is none yet."""
    from gwstream.daemon.followup.pastro import model_for_search

    if not stage.background.livetime_s > 0:
        return None
    try:
        return model_for_search(stage.background, signal_path=cfg.followup.pastro_file or None,
                                rate_snr8_per_year=cfg.followup.pastro_rate_per_year)
    except ValueError as exc:
        log.warning("no p_astro: %s (followup.pastro_file)", exc)
        return None


def run_search_process(cfg, *, exit_on_eos: bool = False, stop: threading.Event | None = None,
                       followup_runner=None) -> dict:
    """Run until SIGTERM/SIGINT, ``stop``, or (with ``exit_on_eos``) the end of the stream.

    ``followup_runner`` replaces the follow-up worker's job function (tests:
    a slow localisation). Returns the final counters.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    scorer = load_scorer(cfg)
    stage = SearchStage(cfg, scorer, snapshots=cfg.followup.enabled)
    followup, worker = _start_followup(cfg, scorer, out, followup_runner)
    pending_alerts: dict[str, dict] = {}  # alerts whose follow-up is queued or running
    spath = state_path(cfg)
    if spath.exists():
        stage.ranking.load(spath)
    archive = TriggerArchive(archive_path(cfg), attrs={"model": scorer.name, "model_sha256": scorer.sha256 or "",
                                                       "merger_offset_s": stage.merger_offset_s})
    apath = alerts_path(cfg)
    published = _published_ids(apath)
    alerts_file = apath.open("a", encoding="utf-8")
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, cfg.ingest.high_water_mark)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(cfg.endpoints.blocks)
    auth = ServerAuth(ctx, cfg.endpoints)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 1000)
    secure_server(pub, cfg.endpoints)
    pub.bind(cfg.endpoints.alerts)
    log.info("search listening blocks=%s alerts=%s model=%s sha256=%s slides=%d state=%s", cfg.endpoints.blocks,
             cfg.endpoints.alerts, scorer.name, (scorer.sha256 or "")[:12], stage.n_slides, spath)
    metrics = Metrics()
    metrics.serve(cfg.endpoints.metrics)
    counters = stage.counters
    threshold = cfg.output.far_threshold_hz
    group = cfg.model.group_blocks
    ifos = tuple(cfg.data.ifos)
    last_save = last_flush = last_status = time.monotonic()
    last_block_end = None
    status_file = status_path(cfg)
    state, eos_end_ns = "running", None  # "end_of_stream" from an end-of-stream message to the next block
    write_status(status_file, state, counters, data_end_ns=None)
    lag_s = 0.0

    def handle(triggers, block) -> None:
        archive.append(triggers)
        for t in triggers:
            if not t.far <= threshold:
                continue
            eid = event_id(t.gps_ns)
            if eid in published:
                counters["alerts_suppressed_duplicate"] += 1
                continue
            now = time.time_ns()
            frame_end = (now - block.complete_unix_ns) / NS if block is not None and block.complete_unix_ns else None
            latency = {"frame_end_to_alert_s": frame_end,
                       "merger_to_block_end_s": (block.end_ns - t.gps_ns) / NS if block is not None else None}
            if frame_end is not None:
                # frames arrive when their data ends (live, or replay at real speed): merger -> alert
                latency["merger_to_alert_s"] = latency["merger_to_block_end_s"] + frame_end
            tpl = stage.template_of(t) if followup is not None else None
            template = followup.branch_template(*tpl) if tpl is not None else None
            alert = make_alert(t, ifos=ifos, background_livetime_s=stage.background.livetime_s,
                               n_slides=stage.n_slides, model_name=scorer.name, model_sha256=scorer.sha256,
                               latency=latency, created_unix_ns=now, template=template,
                               classification=_classification(t))
            pub.send_multipart(encode_alert(alert))
            if worker is not None:
                if stage.request_snapshot(t, eid, tpl):
                    pending_alerts[eid] = dict(alert, _created_unix_ns=now)
                else:
                    counters["followup_no_data"] += 1
            metrics.alerts.inc()
            if frame_end is not None:
                metrics.latency.observe(frame_end)
            alerts_file.write(json.dumps(alert) + "\n")
            alerts_file.flush()
            if cfg.output.coinc_xml or cfg.output.gracedb_url:
                _coinc(alert)
            published.add(eid)
            counters["alerts"] += 1
            log.info("alert event_id=%s gps=%.3f stat=%.2f far=%.3g ifar_years=%.3g saturated=%s latency_s=%s", eid,
                     t.gps_ns / NS, t.stat, t.far, t.ifar_years, t.saturated,
                     None if frame_end is None else round(frame_end, 3))

    pastro = {"model": _pastro_model(cfg, stage), "livetime_s": stage.background.livetime_s}

    def _classification(t) -> dict | None:
        model = pastro["model"]
        if model is None:
            return None
        try:
            return model(t.stat)
        except ValueError as exc:
            log.error("p_astro of the trigger at %.3f: %s", t.gps_ns / NS, exc)
            return None

    def submit_snapshots(final: bool = False) -> None:
        for snap in stage.snapshots(final=final):
            alert = pending_alerts.get(snap.event_id)
            if alert is None or not worker.submit(snap, alert):
                pending_alerts.pop(snap.event_id, None)
                counters["followups_dropped"] += alert is not None

    def publish_followups(results) -> None:
        for res in results:
            alert = pending_alerts.pop(res["event_id"], None)
            if alert is None:
                continue
            if res.get("error"):
                counters["followup_errors"] += 1
                log.error("follow-up of %s failed: %s (its alert stands)", res["event_id"], res["error"])
            if res.get("template") is None and res.get("skymap") is None:
                continue
            created = time.time_ns()
            update = make_update(alert, skymap=res.get("skymap"), template=res.get("template"),
                                 created_unix_ns=created)
            since_alert = (created - alert["_created_unix_ns"]) / NS if "_created_unix_ns" in alert else None
            lat = update["latency"]
            lat["alert_to_followup_s"] = since_alert
            if lat.get("merger_to_alert_s") is not None and since_alert is not None:
                lat["merger_to_skymap_s"] = lat["merger_to_alert_s"] + since_alert
            lat["followup_runtime_s"] = res.get("runtime_s")
            update.pop("_created_unix_ns", None)
            pub.send_multipart(encode_alert(update, SKYMAP_TOPIC))
            alerts_file.write(json.dumps(update) + "\n")
            alerts_file.flush()
            counters["skymaps" if update.get("skymap") else "followups"] += 1
            sky = update.get("skymap") or {}
            log.info("follow-up event_id=%s template_mchirp=%s network_snr=%s area90_deg2=%s latency_s=%s",
                     res["event_id"], (res.get("template") or {}).get("chirp_mass"),
                     (res.get("template") or {}).get("network_snr"), sky.get("area_90_deg2"),
                     None if since_alert is None else round(since_alert, 3))

    def _coinc(alert: dict) -> None:
        from gwstream.daemon.io.coincxml import upload_to_gracedb, write_coinc_xml

        try:
            xml = write_coinc_xml(alert, out / "coinc")
            if cfg.output.gracedb_url:
                gid = upload_to_gracedb(xml, cfg.output.gracedb_url)
                log.info("uploaded %s to GraceDB as %s", alert["event_id"], gid)
        except Exception as exc:  # noqa: BLE001 - an optional output must never stop the search
            counters["coinc_errors"] += 1
            log.error("coinc.xml / GraceDB for %s failed: %s", alert["event_id"], exc)

    def save() -> None:
        # a full or failing disk must not stop the search: the files on disk stay the last good
        # ones (atomic writes), the error is logged, and the next save tries again
        for what, fn in (("ranking state", lambda: stage.ranking.save(spath)), ("trigger archive", archive.flush)):
            try:
                fn()
            except OSError as exc:
                counters["write_errors"] += 1
                log.error("could not write the %s (%s): keeping it in memory, retrying at the next save", what, exc)

    try:
        while not stop.is_set():
            if pull.poll(200):
                # a backlog (replay at full speed, catching up) is analysed up to `group` blocks at a time;
                # live, one block is queued at most and goes through alone
                batch, other, first = [], None, True
                while other is None and len(batch) < group and (first or pull.poll(0)):
                    first = False
                    parts = pull.recv_multipart(copy=False)
                    try:
                        kind, item = decode_block_message([p.buffer for p in parts])
                    except (WireError, ValueError, KeyError, TypeError) as exc:
                        counters["bad_block_messages"] += 1
                        log.error("bad message on the blocks stream: %s", exc)
                        continue
                    if kind == "block":
                        batch.append(item)
                    else:
                        other = (kind, item)
                if batch:
                    state = "running"
                    t_batch = time.perf_counter()
                    n_win, n_gaps = counters["windows"], counters["gaps"]
                    found = stage.process_many(batch)
                    per_block_s = (time.perf_counter() - t_batch) / len(batch)
                    for item, triggers in zip(batch, found):
                        handle(triggers, item)
                        last_block_end = item.end_ns
                        if item.complete_unix_ns:
                            lag_s = (time.time_ns() - item.complete_unix_ns) / NS
                            metrics.lag.set(lag_s)
                        metrics.block_seconds.observe(per_block_s)
                        metrics.blocks.inc()
                        metrics.triggers.inc(len(triggers))
                    if worker is not None:
                        submit_snapshots()
                    metrics.ingest_counters(batch[-1].counters)
                    metrics.windows.inc(counters["windows"] - n_win)
                    metrics.batch.observe(counters["windows"] - n_win)
                    metrics.gaps.inc(counters["gaps"] - n_gaps)
                    metrics.background.set(stage.background.livetime_s)
                    metrics.livetime.set(stage.ranking.foreground_livetime_s)
                kind, item = other or (None, None)
                if kind == "gap":
                    counters["gap_messages"] += 1
                elif kind == "eos":
                    counters["eos"] += 1
                    log.info("end of stream at gps=%s", item.get("end_ns") and item["end_ns"] / NS)
                    if exit_on_eos:
                        handle(stage.finish(), None)
                    if worker is not None:
                        # no more data will come for the triggers still waiting for theirs: follow them up
                        # with what there is (a replay's sky maps then come before its end)
                        submit_snapshots(final=True)
                        if exit_on_eos:
                            publish_followups(worker.drain(cfg.followup.drain_timeout_s))
                    # every block before the end has been analysed and its alerts published: say so
                    state, eos_end_ns = "end_of_stream", item.get("end_ns")
                    write_status(status_file, state, counters, data_end_ns=last_block_end, eos_end_ns=eos_end_ns)
                    if exit_on_eos:
                        break
            if worker is not None:
                publish_followups(worker.poll())
            now = time.monotonic()
            if now - last_save >= cfg.ranking.save_interval_s:
                save()
                last_save = last_flush = now
                # p_astro's background density follows the background once it has grown by a tenth (a rebuild
                # takes a few tenths of a second: not every save)
                if stage.background.livetime_s > 1.1 * pastro["livetime_s"]:
                    pastro["model"] = _pastro_model(cfg, stage) or pastro["model"]
                    pastro["livetime_s"] = stage.background.livetime_s
            elif now - last_flush >= cfg.output.flush_interval_s:
                try:
                    archive.flush()
                except OSError as exc:
                    counters["write_errors"] += 1
                    log.error("could not write the trigger archive (%s): retrying at the next flush", exc)
                last_flush = now
            if now - last_status >= cfg.output.status_interval_s:
                last_status = now
                write_status(status_file, state, counters, data_end_ns=last_block_end, eos_end_ns=eos_end_ns)
                log.info("status blocks=%d windows=%d gaps=%d triggers=%d alerts=%d lag_s=%.3f data_gps=%s "
                         "background_livetime_s=%.3g", counters["blocks"], counters["windows"], counters["gaps"],
                         counters["triggers"], counters["alerts"], lag_s,
                         None if last_block_end is None else last_block_end / NS, stage.background.livetime_s)
    finally:
        save()
        if worker is not None:
            counters.update({f"followup_worker_{k}": v for k, v in worker.counters.items()})
            worker.close()
        alerts_file.close()
        pull.close()
        pub.close()
        auth.stop()
        ctx.term()
        write_status(status_file, "stopped", counters, data_end_ns=last_block_end, eos_end_ns=eos_end_ns)
        log.info("search stopped: blocks=%d triggers=%d alerts=%d state=%s", counters["blocks"],
                 counters["triggers"], counters["alerts"], spath)
    return dict(counters)
