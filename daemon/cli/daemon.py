"""The daemon's commands: ``run``, ``replay``, ``listen``, ``ingest``, the hidden ``worker``, and ``demo``."""

from __future__ import annotations

import json
import os

from .common import add_common, add_endpoints, load


def cmd_ingest(args) -> int:
    from gwstream.daemon.proc.ingest import run_ingest

    cfg = load(args)
    run_ingest(cfg, exit_on_eos=args.exit_on_eos, stats_path=args.stats)
    return 0


def cmd_run(args) -> int:
    from gwstream.daemon.proc.runner import run_daemon

    cfg = load(args, **{"output.dir": args.out})
    return run_daemon(cfg, log_level=args.log_level)


def cmd_replay(args) -> int:
    from gwstream.daemon.proc.runner import run_replay
    from gwstream.daemon.proc.spawn import free_tcp_endpoint

    extra = {"output.dir": args.out, "model.path": args.model, "ranking.n_slides": args.slides,
             "ranking.n_slides_joint": args.slides}
    for name in ("frames", "alerts", "blocks"):  # private ports unless given: replays never collide
        if getattr(args, f"{name}_endpoint", None) is None:
            extra[f"endpoints.{name}"] = free_tcp_endpoint()
    extra["endpoints.metrics"] = free_tcp_endpoint()[len("tcp://"):]
    cfg = load(args, **extra)
    summary = run_replay(cfg, args.input, speed=args.speed, log_level=args.log_level)
    print(json.dumps(summary))
    return 0 if summary["exit_code"] == 0 else 1


def cmd_listen(args) -> int:
    from gwstream.daemon.proc.runner import run_listen

    cfg = load(args)
    run_listen(cfg.endpoints.alerts, count=args.count, timeout_s=args.timeout, endpoints=cfg.endpoints,
               fmt=args.format)
    return 0


def cmd_worker(args) -> int:
    # The search shares the cores with the ingest (and, in a replay, the source) process: torch's OpenMP
    # threads sleep when idle instead of spinning through the conditioning and the socket work between
    # batches (docs/performance.md has the measurement). Read when torch loads; the environment can override it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from gwstream.daemon.proc.search_worker import run_search_process

    cfg = load(args)
    run_search_process(cfg, exit_on_eos=args.exit_on_eos)
    return 0


def cmd_demo(args) -> int:
    from gwstream.daemon.proc.demo import run_demo

    return run_demo(args)


def register(sub) -> None:
    """Add this module's commands to the ``gwstream`` sub-command parser."""
    p = sub.add_parser("ingest", help="run the ingest process alone (frames in, aligned blocks out)")
    add_common(p)
    add_endpoints(p, "frames", "blocks")
    p.add_argument("--exit-on-eos", action="store_true", help="exit when every detector's stream ended")
    p.add_argument("--stats", default=None, help="write final counters to this JSON file")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("run", help="the long-running daemon: ingest + search processes, supervised")
    add_common(p)
    add_endpoints(p, "frames", "alerts", "blocks")
    p.add_argument("--out", default=None, help="override output.dir (archive, alerts file, ranking state)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="the whole daemon over an archive (GWF directory or HDF5 file)")
    p.add_argument("input", help="GWF directory or HDF5 file")
    add_common(p)
    add_endpoints(p, "frames", "alerts", "blocks")
    p.add_argument("--speed", default="max", help="real | max | <factor> (default max)")
    p.add_argument("--out", required=True, help="directory for triggers, alerts and logs")
    p.add_argument("--model", default=None, help="checkpoint (override model.path)")
    p.add_argument("--slides", type=int, default=None, help="time slides (override ranking.n_slides)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("listen", help="print alerts as JSON lines (reconnects when the daemon restarts)")
    add_common(p)
    add_endpoints(p, "alerts")
    p.add_argument("--format", choices=("json", "gcn"), default="json",
                   help="json: each alert as published (default); gcn: as an IGWN GCN notice, sky map embedded")
    p.add_argument("--count", type=int, default=0,
                   help="exit after this many messages, first alerts and their sky-map follow-ups alike (0: never)")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds without an alert")
    p.set_defaults(func=cmd_listen, log_level="warning")

    p = sub.add_parser("worker")  # a daemon child process (started by run/replay): no help line, so not listed
    p.add_argument("role", choices=("search",))
    add_common(p)
    p.add_argument("--exit-on-eos", action="store_true")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="the embedded default end to end (what `make demo` runs)")
    add_common(p)
    p.add_argument("--duration", type=int, default=180, help="seconds of simulated data")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="out/demo", help="directory for the demo's files")
    p.add_argument("--speed", default="real", help="real | max | <factor> (default real: latencies as live)")
    p.set_defaults(func=cmd_demo, log_level="warning")
