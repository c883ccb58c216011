"""``gwstream demo``: the embedded default, end to end, over real processes and sockets.

A synthetic H1/L1 source (coloured Gaussian noise at 16384 Hz with a handful
of loud injections, ``configs/demo.toml``) publishes frames in real time to
the real daemon (``gwstream run``: the ingest and search processes under
their supervisor), which scores every window with the shipped model, ranks
triggers against a live time-slid background (seeded with the background
shipped next to the model, when it matches), and publishes alerts. The demo
subscribes like any client, prints each alert as it arrives, and ends with a
table of the injections (found or missed, with FAR), the alert latencies
(p50 / p99) and one PNG per alert (whitened H1/L1 strain and a Q-transform
around the trigger, via gwpy).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from gwstream.daemon.config import load_config, status_path
from gwstream.daemon.eval.evaluate import match_injections
from gwstream.daemon.io.alerts import ALERT_TOPIC, SKYMAP_TOPIC, decode_alert
from gwstream.daemon.io.status import read_status
from gwstream.daemon.settings import to_toml
from gwstream.daemon.sim.simulate import Simulator
from gwstream.daemon.stream.background import Background, BackgroundError
from gwstream.models import default_background_path, default_model_path

from .preflight import check_initial_background
from .spawn import free_tcp_endpoint, spawn, stop

__all__ = ["run_demo"]


def _listen(endpoint: str, alerts: list, updates: dict, stop_event: threading.Event, say) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    for topic in (ALERT_TOPIC, SKYMAP_TOPIC):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    try:
        while not stop_event.is_set():
            if sub.poll(200):
                alert = decode_alert(sub.recv_multipart())
                alert["received_unix"] = time.time()
                if alert.get("alert_type") == "UPDATE":
                    updates[alert["event_id"]] = alert
                    sky, tpl = alert.get("skymap") or {}, alert.get("template") or {}
                    lat = alert["latency"]
                    say(f"  SKY MAP {alert['event_id']}  "
                        + (f"90% area {sky['area_90_deg2']:.0f} deg2 (50%: {sky['area_50_deg2']:.0f})  "
                           if sky else "no sky map  ")
                        + (f"template {tpl['mass1']:.1f}+{tpl['mass2']:.1f} Msun, chirp mass "
                           f"{tpl['chirp_mass']:.1f}, SNR {tpl.get('network_snr', float('nan')):.1f}  " if tpl else "")
                        + (f"merger->sky map {lat['merger_to_skymap_s']:.1f} s"
                           if lat.get("merger_to_skymap_s") is not None else ""))
                    continue
                alerts.append(alert)
                lat = alert["latency"]
                say(f"  ALERT {alert['event_id']}  gps={alert['gpstime']:.3f}  stat={alert['stat']:.1f}  "
                    f"far={alert['far']:.3g} Hz ({alert['far'] * 86400:.3g}/day)"
                    f"{'  louder than all background' if alert['saturated'] else ''}  "
                    f"latency: frame->alert {lat['frame_end_to_alert_s']:.2f} s, merger->alert "
                    f"{lat['merger_to_alert_s']:.2f} s")
    finally:
        sub.close()
        ctx.term()


def _plot_alert(path: Path, sim_cfg, seed: int, duration: int, alert: dict) -> None:
    """Whitened H1/L1 strain and a Q-transform (H1) around the alert, from the (deterministic) simulation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from gwpy.timeseries import TimeSeries

    sim = Simulator(sim_cfg, seed=seed, duration_s=duration, injections=True)
    t = alert["gpstime"]
    rel = int(t) - sim_cfg.start_gps
    start_s = max(0, rel - 24)
    stop_s = min(duration, rel + 8)
    chunk = sim.chunk(start_s, stop_s - start_s)  # random access: only these seconds are simulated
    start = sim_cfg.start_gps + start_s
    fig, axes = plt.subplots(len(sim_cfg.ifos) + 1, 1, figsize=(8, 7))
    qspec = None
    for ax, ifo in zip(axes, sim_cfg.ifos):
        ts = TimeSeries(chunk[ifo], t0=start, sample_rate=sim_cfg.sample_rate_hz).resample(2048)
        white = ts.whiten(4, 2).crop(t - 1.0, t + 0.5)
        ax.plot(white.times.value - t, white.value, lw=0.6)
        ax.set_ylabel(f"{ifo} whitened")
        ax.axvline(0, color="C3", lw=0.8, ls="--")
        if qspec is None:
            qspec = ts.q_transform(outseg=(t - 1.0, t + 0.5), frange=(20, 500), whiten=True)
    axes[-2].set_xlabel(f"time from trigger (s), GPS {t:.3f}")
    ax = axes[-1]
    ax.pcolormesh(qspec.xindex.value - t, qspec.yindex.value, qspec.value.T, shading="auto")
    ax.set_yscale("log")
    ax.set_ylabel(f"{sim_cfg.ifos[0]} Q-transform\nfrequency (Hz)")
    ax.set_xlabel("time from trigger (s)")
    fig.suptitle(f"{alert['event_id']}: stat {alert['stat']:.1f}, FAR {alert['far'] * 86400:.3g}/day")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _skymaps(out: Path, alerts: list, updates: dict, table: dict, say) -> list[dict]:
    """Where each alert's sky map is, drawn as a Mollweide PNG with the matched injection's true position."""
    rows = []
    if not updates:
        return rows
    from gwstream.daemon.followup.localize import searched
    from gwstream.daemon.followup.plot import plot_skymap

    say("\nsky maps (BAYESTAR, from the template's SNR series; x marks the injection):")
    for a in alerts:
        u = updates.get(a["event_id"])
        sky = (u or {}).get("skymap")
        if not sky:
            say(f"  {a['event_id']}: no sky map" + ("" if u else " (its follow-up did not come back)"))
            continue
        k = int(np.argmin(np.abs(np.asarray(table["tc"]) - a["gpstime"])))
        true = None
        if abs(table["tc"][k] - a["gpstime"]) <= a["var_s"]:
            true = (float(np.degrees(table["ra"][k])), float(np.degrees(table["dec"][k])))
        row = {"event_id": a["event_id"], "fits": sky["path"], "area_90_deg2": sky["area_90_deg2"]}
        try:
            png = out / f"{a['event_id']}-skymap.png"
            plot_skymap(sky["path"], png, event_id=a["event_id"], true_radec=true)
            row["png"] = str(png)
            if true is not None:
                from ligo.skymap.io import fits

                row["searched_prob"] = searched(fits.read_sky_map(sky["path"], moc=True), *true)[0]
        except Exception as exc:  # noqa: BLE001 - a plot failure must not hide the results
            say(f"  sky-map plot of {a['event_id']} failed: {exc}")
        inside = "" if "searched_prob" not in row else \
            f", injection at credible level {row['searched_prob']:.2f}"
        say(f"  {a['event_id']}: 90% area {sky['area_90_deg2']:.0f} deg2{inside}\n    {sky['path']}"
            + (f"\n    {row['png']}" if "png" in row else ""))
        rows.append(row)
    return rows


def run_demo(args) -> int:
    """Run the demo; returns the process exit code."""
    out = Path(args.out)
    daemon_out = out / "daemon"
    if daemon_out.exists():
        shutil.rmtree(daemon_out)  # a fresh background and archive every run
    daemon_out.mkdir(parents=True)
    say = lambda *a: print(*a, flush=True)  # noqa: E731  (the CLI's own output)
    endpoints = {k: free_tcp_endpoint() for k in ("frames", "alerts", "blocks")}
    overrides = {f"endpoints.{k}": v for k, v in endpoints.items()}
    overrides["output.dir"] = str(daemon_out)
    overrides["endpoints.metrics"] = free_tcp_endpoint()[len("tcp://"):]
    bg_path = default_background_path()
    bg_note = "no shipped background: the background starts empty and grows with the data"
    if bg_path.exists():
        try:
            from gwstream.models.scorer import load_checkpoint

            sha = load_checkpoint(default_model_path())[2]
            bg = Background.load(bg_path)
            # the check the search makes of an initial background, for the parts known before it starts:
            # a mismatch leaves the background aside here instead of stopping the search
            check_initial_background(load_config(args.config, overrides), sha, bg, bg_path.name)
            overrides["ranking.background_init"] = str(bg_path)
            bg_note = (f"seeded with the shipped background ({bg.livetime_s / 86400:.0f} days of time slides "
                       f"of simulated noise, {bg_path.name})")
        except BackgroundError as exc:
            bg_note = f"not seeded: {exc}"
    cfg = load_config(args.config, overrides)
    cfg_path = daemon_out / "demo-config.toml"
    cfg_path.write_text(to_toml(cfg.to_dict()))
    sim_cfg = cfg.simulate
    sim = Simulator(sim_cfg, seed=args.seed, duration_s=args.duration, injections=True)
    table = sim.injection_table()
    say(f"gwstream demo: {args.duration} s of simulated H1/L1 noise at {sim_cfg.sample_rate_hz} Hz with "
        f"{len(table['tc'])} injections (seed {args.seed}), streamed in real time")
    say("through the real daemon (ingest + search processes, ZeroMQ between them), scored by the shipped model,")
    say(f"ranked against a live time-slid background ({cfg.ranking.n_slides} slides; {bg_note}).")
    say(f"Alerts are published when FAR <= {cfg.output.far_threshold_hz * 86400:g}/day. Logs and files in {out}/.\n")

    alerts: list = []
    updates: dict = {}
    stop_listen = threading.Event()
    listener = threading.Thread(target=_listen, args=(endpoints["alerts"], alerts, updates, stop_listen, say),
                                daemon=True)
    listener.start()
    daemon = spawn(["run", "--config", str(cfg_path), "--log-level", "info"], log_path=out / "daemon.log")
    source = None
    t0 = time.monotonic()
    try:
        time.sleep(1.0)
        source = spawn(["source", "synthetic", "--config", str(cfg_path), "--duration", str(args.duration),
                        "--seed", str(args.seed), "--speed", args.speed], log_path=out / "source.log")
        last_report = 0.0
        while source.poll() is None:
            time.sleep(0.5)
            el = time.monotonic() - t0
            if el - last_report >= 30:
                last_report = el
                say(f"  ... {el:.0f} s: {len(alerts)} alert(s) so far")
            if daemon.poll() is not None:
                say("demo: the daemon stopped unexpectedly; see", out / "daemon.log")
                return 1
        # the search process says when it has analysed every block before the stream's end and published
        # their alerts (its status file); then the listener has heard as many alerts as were published
        status_file = status_path(cfg)
        deadline = time.monotonic() + 60
        status = read_status(status_file)
        while time.monotonic() < deadline and (status is None or status["state"] != "end_of_stream"):
            if daemon.poll() is not None:
                say("demo: the daemon stopped unexpectedly; see", out / "daemon.log")
                return 1
            time.sleep(0.2)
            status = read_status(status_file)
        if status is None or status["state"] != "end_of_stream":
            say(f"demo: the search did not reach the end of the stream within 60 s; see {out / 'daemon.log'}")
        else:
            while time.monotonic() < deadline and len(alerts) < status["alerts"]:
                time.sleep(0.1)
            if cfg.followup.enabled and alerts:
                # the sky maps follow their alerts from the follow-up worker: wait for them (or their failure)
                say(f"  waiting for the sky maps of {len(alerts)} alert(s) ...")
                deadline = time.monotonic() + cfg.followup.drain_timeout_s
                while time.monotonic() < deadline and len(updates) < len(alerts):
                    status = read_status(status_file) or status
                    if len(updates) + status.get("followup_failures", 0) >= len(alerts):
                        break
                    time.sleep(0.2)
    finally:
        if source is not None:
            stop(source)
        stop(daemon, timeout_s=60)
        stop_listen.set()
        listener.join(5)
    wall = time.monotonic() - t0

    say("\ninjections:")
    say(f"  {'tc (GPS)':>14} {'m1':>5} {'m2':>5} {'snr_H1':>7} {'snr_L1':>7} {'network':>7}   result")
    found = 0
    a_time, a_stat, a_var = (np.array([a[k] for a in alerts], dtype=np.float64) for k in ("gpstime", "stat", "var_s"))
    match = match_injections(np.asarray(table["tc"], dtype=np.float64), a_time, a_stat, a_var)
    for k in range(len(table["tc"])):
        tc = table["tc"][k]
        if match[k] >= 0:  # the loudest alert within its var_s of the injection, as gwstream evaluate counts
            a = alerts[match[k]]
            found += 1
            res = f"FOUND  {a['event_id']}  FAR {a['far'] * 86400:.3g}/day (IFAR {a['ifar_years']:.3g} yr)"
        elif tc - sim_cfg.start_gps < 80:
            res = "missed (during the PSD warm-up)"
        else:
            res = "missed"
        say(f"  {tc:14.3f} {table['mass1'][k]:5.1f} {table['mass2'][k]:5.1f} {table['optimal_snr_H1'][k]:7.2f} "
            f"{table['optimal_snr_L1'][k]:7.2f} {table['network_snr'][k]:7.2f}   {res}")
    stray = [a for a in alerts if not any(abs(a["gpstime"] - tc) <= a["var_s"] for tc in table["tc"])]
    say(f"  alerts not matching an injection (false alarms): {len(stray)}")
    lat = {}
    for key in ("frame_end_to_alert_s", "merger_to_alert_s"):
        v = [a["latency"][key] for a in alerts if a["latency"].get(key) is not None]
        if v:
            lat[key] = {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "n": len(v)}
    say("\nalert latency (s):" + ("" if lat else " no alerts"))
    for key, v in lat.items():
        say(f"  {key:22s} p50 {v['p50']:.3f}   p99 {v['p99']:.3f}   ({v['n']} alerts)")
    for a in alerts:
        png = out / f"{a['event_id']}.png"
        try:
            _plot_alert(png, sim_cfg, args.seed, args.duration, a)
            say(f"  plot: {png}")
        except Exception as exc:  # noqa: BLE001 - a plot failure must not hide the results
            say(f"  plot of {a['event_id']} failed: {exc}")
    skymaps = _skymaps(out, alerts, updates, table, say)
    say(f"\n{args.duration} s of data in {wall:.0f} s wall (--speed {args.speed}); {len(alerts)} alerts, "
        f"{found} of {len(table['tc'])} injections found.")
    (out / "summary.json").write_text(json.dumps({
        "duration_s": args.duration, "wall_s": wall, "speed": args.speed, "n_injections": int(len(table["tc"])),
        "found": found, "false_alarms": len(stray), "latency": lat, "alerts": alerts,
        "updates": list(updates.values()), "skymaps": skymaps, "background": bg_note}, indent=1))
    return 0
