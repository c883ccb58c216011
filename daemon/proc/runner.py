"""``gwstream run``, ``gwstream replay`` and ``gwstream listen``.

``run`` is the long-running daemon: ingest and search processes under a
:class:`~gwstream.daemon.proc.supervisor.Supervisor`. ``replay`` is the same daemon
fed by a source process reading an archive at ``--speed``; it exits when the
archive ends and leaves the trigger archive (``triggers/`` and a consolidated
``triggers.h5`` in ``gwstream search``'s layout) and the alerts it published
(``alerts.jsonl``) in ``--out``. ``listen`` prints alerts as JSON lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import zmq
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.io.alerts import ALERT_TOPIC, SKYMAP_TOPIC, decode_alert
from gwstream.daemon.io.archive import read_archive
from gwstream.daemon.io.gcn import NoticeError, gcn_notice
from zmq.utils.monitor import recv_monitor_message

from .supervisor import Child, Supervisor, write_run_config

__all__ = ["run_daemon", "run_replay", "run_listen", "replay_source_kind"]

log = logging.getLogger(__name__)


def _children(cfg_path: Path, log_level: str, *, exit_on_eos: bool, logs: Path | None) -> list[Child]:
    eos = ["--exit-on-eos"] if exit_on_eos else []
    common = ["--config", str(cfg_path), "--log-level", log_level]
    lp = (lambda n: logs / f"{n}.log") if logs else (lambda n: None)
    stats = ["--stats", str(logs / "ingest-stats.json")] if logs else []
    return [Child("ingest", ["ingest", *common, *eos, *stats], lp("ingest")),
            Child("search", ["worker", "search", *common, *eos], lp("search"))]


def run_daemon(cfg, *, log_level: str = "info", max_restarts: int = 5, stop_event=None) -> int:
    """``gwstream run``: supervise ingest + search until SIGTERM/SIGINT; returns the exit code."""
    from .preflight import preflight

    # what the search would refuse stops the daemon now, not after five restarts; a background_init left
    # empty becomes the shipped background where it fits (else 'none', with a warning naming what differs)
    cfg = preflight(cfg, shipped_background=True)
    cfg_path = write_run_config(cfg)
    log.info("gwstream run: frames=%s alerts=%s output=%s", cfg.endpoints.frames, cfg.endpoints.alerts,
             cfg.output.dir)
    sup = Supervisor(_children(cfg_path, log_level, exit_on_eos=False, logs=None), max_restarts=max_restarts,
                     stop_event=stop_event)
    code = sup.run()
    if sup.failure:
        print(f"gwstream run: error: {sup.failure}", file=sys.stderr)
    return code


def replay_source_kind(path: Path) -> str:
    if path.is_dir():
        return "gwf"
    if path.suffix in (".h5", ".hdf", ".hdf5"):
        return "hdf5"
    raise ConfigError("INPUT", str(path), "a directory of GWF files or an HDF5 file (.h5/.hdf/.hdf5)")


def run_replay(cfg, input_path: str | Path, *, speed: str, log_level: str = "info", stop_event=None) -> dict:
    """``gwstream replay``: the whole daemon over an archive; returns a summary."""
    from gwstream.daemon.io.archive import write_triggers
    from gwstream.daemon.io.trigger import Trigger

    input_path = Path(input_path)
    if not input_path.exists():
        raise ConfigError("INPUT", str(input_path), "an existing GWF directory or HDF5 file")
    kind = replay_source_kind(input_path)
    from .preflight import preflight

    # the search process loads and checks the weights itself (and is not restarted
    # after a failure here): the parent checks what it can without torch
    preflight(cfg, load_weights=False)
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    from gwstream.daemon.config import state_path

    state = state_path(cfg)
    if state.exists():
        log.warning("%s holds the state of an earlier run: continuing it (data it analysed are skipped, events it "
                    "published are not sent again); give an empty --out for a fresh replay", state)
    # an archive's sample rate is whatever its files hold
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_rate_hz=0))
    cfg_path = write_run_config(cfg)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    children = _children(cfg_path, log_level, exit_on_eos=True, logs=logs)
    children.append(Child("source", ["source", kind, str(input_path), "--config", str(cfg_path), "--speed", speed,
                                     "--log-level", log_level], logs / "source.log"))
    t0 = time.monotonic()
    sup = Supervisor(children, exit_on_eos=True, max_restarts=1, stop_event=stop_event)
    code = sup.run()
    wall = time.monotonic() - t0
    cols = read_archive(out / cfg.output.archive_dir)
    rows = [Trigger(int(g), int(w), float(s), float(v), float(f), float(i), bool(sat))
            for g, w, s, v, f, i, sat in zip(cols["gps_ns"], cols["window_gps_ns"], cols["stat"], cols["var"],
                                              cols["far"], cols["ifar_years"], cols.get("saturated", []))]
    alerts = [json.loads(x) for x in (out / cfg.output.alerts_file).read_text().splitlines()] \
        if (out / cfg.output.alerts_file).exists() else []
    first = [a for a in alerts if a.get("alert_type", "PRELIMINARY") != "UPDATE"]  # not the follow-ups
    summary = {"input": str(input_path), "out": str(out), "exit_code": code, "wall_s": round(wall, 2),
               "n_triggers": len(rows), "n_alerts": len(first), "n_followups": len(alerts) - len(first),
               "speed": speed, "failure": sup.failure}
    write_triggers(out / "triggers.h5", rows, attrs={k: v for k, v in summary.items() if v is not None})
    return summary


def run_listen(endpoint: str, *, count: int = 0, timeout_s: float | None = None, out=sys.stdout,
               stop_event: threading.Event | None = None, endpoints=None, fmt: str = "json") -> int:
    """Print every alert on ``endpoint`` as one JSON line; reconnects by itself if the daemon restarts.

    Both topics: the first (PRELIMINARY) alert of a trigger, then its follow-up (UPDATE, with the sky map)
    as a second message. ``fmt`` ``"json"`` prints the alert as published, ``"gcn"`` its IGWN GCN notice
    (:func:`gwstream.daemon.io.gcn.gcn_notice`, the sky map's FITS embedded when this machine can read it).
    Returns the number of messages printed (stops after ``count`` when > 0, or ``timeout_s`` without one).
    """
    if fmt not in ("json", "gcn"):
        raise ValueError(f"listen format {fmt!r}: expected 'json' or 'gcn'")
    stop_event = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_event.set())
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 200)
    sub.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
    for topic in (ALERT_TOPIC, SKYMAP_TOPIC):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    if endpoints is not None:
        from .security import secure_client

        secure_client(sub, endpoints)
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    sub.connect(endpoint)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    n = 0
    last = time.monotonic()
    try:
        while not stop_event.is_set():
            events = dict(poller.poll(200))
            if monitor in events:
                event = recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    log.info("connected to %s", endpoint)
                else:
                    log.info("disconnected from %s; reconnecting", endpoint)
                continue
            if sub in events:
                parts = sub.recv_multipart()
                try:
                    alert = decode_alert(parts)
                except ValueError as exc:
                    log.warning("ignoring malformed alert message: %s", exc)
                    continue
                if fmt == "gcn":
                    try:
                        alert = gcn_notice(alert)
                    except NoticeError as exc:
                        log.warning("ignoring an alert with no GCN notice: %s", exc)
                        continue
                out.write(json.dumps(alert) + "\n")
                out.flush()
                n += 1
                last = time.monotonic()
                if count and n >= count:
                    break
            elif timeout_s is not None and time.monotonic() - last > timeout_s:
                break
    finally:
        sub.disable_monitor()
        monitor.close(0)
        sub.close()
        ctx.term()
    return n
