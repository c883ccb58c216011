"""``gwstream`` command line (contract in ``shared/DESIGN.md``, "Command line")."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter

from .config import Config, load_config, parse_speed
from .errors import GwstreamError

log = logging.getLogger("gwstream")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s %(message)s")
    formatter.converter = time.gmtime  # UTC, whatever TZ a library sets at import
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration (configs/*.toml); defaults when omitted")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def _endpoints(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}-endpoint", dest=f"{name}_endpoint", default=None,
                       help=f"override endpoints.{name}")


def _load(args, **extra) -> Config:
    overrides = {}
    for name in ("frames", "alerts", "blocks"):
        value = getattr(args, f"{name}_endpoint", None)
        if value is not None:
            overrides[f"endpoints.{name}"] = value
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return load_config(args.config, overrides)


# ------------------------------------------------------------------ commands
def cmd_simulate(args) -> int:
    from .simulate import run_simulate

    cfg = _load(args, **{"simulate.sample_rate_hz": args.sample_rate, "simulate.start_gps": args.start})
    summary = run_simulate(
        cfg.simulate, duration_s=args.duration, seed=args.seed, out=args.out, fmt=args.format,
        injections_path=args.injections, dtype=args.dtype, progress=not args.no_progress,
    )
    files = summary.get("files", [])
    if len(files) > 6:  # a day of GWF frames is 172800 names: show the shape of it
        summary = {**summary, "files": files[:2] + ["..."] + files[-2:], "n_files": len(files)}
    print(json.dumps(summary, default=str))
    return 0


def cmd_source(args) -> int:
    from . import sources

    cfg = _load(args, **{"source.speed": args.speed})
    speed = parse_speed(cfg.source.speed, "--speed")
    ifos = cfg.data.ifos
    stats: Counter = Counter()
    if args.kind == "synthetic":
        from .simulate import Simulator

        sim_cfg = _load(args, **{"simulate.sample_rate_hz": args.sample_rate,
                                 "simulate.start_gps": args.start}).simulate
        sim = Simulator(sim_cfg, seed=args.seed, duration_s=args.duration or None,
                        injections=not args.no_injections)
        frames = sources.synthetic_frames(sim, strain_channel=cfg.data.strain_channel)
    elif args.kind == "hdf5":
        frames = sources.hdf5_frames(args.input, ifos, strain_channel=cfg.data.strain_channel,
                                     state_word=cfg.data.state_mask)
    else:
        kw = dict(strain_channel=cfg.data.strain_channel, state_channel=cfg.data.state_channel, stats=stats)
        if args.follow:
            frames = sources.gwf_follow_frames(
                args.input, ifos, start_gps=args.start, poll_s=cfg.source.poll_s,
                read_retries=cfg.source.read_retries, retry_wait_s=cfg.source.retry_wait_s,
                file_timeout_s=cfg.source.file_timeout_s, **kw)
        else:
            frames = sources.gwf_archive_frames(args.input, ifos, start_gps=args.start,
                                                read_retries=cfg.source.read_retries,
                                                retry_wait_s=cfg.source.retry_wait_s, **kw)
    t0 = time.monotonic()
    from .security import secure_client

    sent = sources.publish(frames, cfg.endpoints.frames, speed=speed, ifos=ifos,
                           high_water_mark=cfg.ingest.high_water_mark,
                           secure=lambda sock: secure_client(sock, cfg.endpoints))
    stats.update(sent)
    stats["wall_s"] = round(time.monotonic() - t0, 3)
    log.info("source done %s", " ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


def cmd_ingest(args) -> int:
    from .ingest import run_ingest

    cfg = _load(args)
    run_ingest(cfg, exit_on_eos=args.exit_on_eos, stats_path=args.stats)
    return 0


def cmd_train(args) -> int:
    from .training import run_train

    cfg = _load(args, **{"train.epochs": args.epochs, "train.weights": args.weights,
                         "train.out_dir": args.out_dir, "train.model": args.model})
    meta = run_train(cfg, progress=not args.no_progress)
    print(json.dumps({k: meta[k] for k in ("selected_epoch", "wall_s", "n_parameters")} |
                     {"weights": cfg.train.weights, "validation": meta["validation"]}))
    return 0


def cmd_search(args) -> int:
    from .search import run_search

    cfg = _load(args, **{"model.path": args.model, "ranking.n_slides": args.slides,
                         "ranking.n_slides_joint": args.slides})
    summary = run_search(args.input, args.output, cfg, background_out=args.background_out,
                         progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import run_evaluate

    summary = run_evaluate(args.injections, args.foreground, args.background, args.out,
                           far_per_day=args.far_per_day)
    print(json.dumps({k: summary[k] for k in ("n_injections", "sensitive_distance_mpc", "out")}))
    return 0


def cmd_worker(args) -> int:
    # The search shares the cores with the ingest (and, in a replay, the source) process: torch's OpenMP
    # threads sleep when idle instead of spinning through the conditioning and the socket work between
    # batches (replay of 1 h: ~7 % faster here). Read when torch loads; the environment can override it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .searchproc import run_search_process

    cfg = _load(args)
    run_search_process(cfg, exit_on_eos=args.exit_on_eos)
    return 0


def cmd_run(args) -> int:
    from .runner import run_daemon

    cfg = _load(args, **{"output.dir": args.out})
    return run_daemon(cfg, log_level=args.log_level)


def cmd_replay(args) -> int:
    from .procs import free_tcp_endpoint
    from .runner import run_replay

    extra = {"output.dir": args.out, "model.path": args.model, "ranking.n_slides": args.slides,
             "ranking.n_slides_joint": args.slides}
    for name in ("frames", "alerts", "blocks"):  # private ports unless given: replays never collide
        if getattr(args, f"{name}_endpoint", None) is None:
            extra[f"endpoints.{name}"] = free_tcp_endpoint()
    extra["endpoints.metrics"] = free_tcp_endpoint()[len("tcp://"):]
    cfg = _load(args, **extra)
    summary = run_replay(cfg, args.input, speed=args.speed, log_level=args.log_level)
    print(json.dumps(summary))
    return 0 if summary["exit_code"] == 0 else 1


def cmd_listen(args) -> int:
    from .runner import run_listen

    cfg = _load(args)
    run_listen(cfg.endpoints.alerts, count=args.count, timeout_s=args.timeout, endpoints=cfg.endpoints)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gwstream", description="Streaming ML search for binary black-hole mergers in H1/L1 strain.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="write simulated H1/L1 noise (+ injections) as HDF5 or GWF")
    _common(p)
    p.add_argument("--duration", type=int, required=True, help="seconds of data")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="HDF5 file, or directory of GWF frames")
    p.add_argument("--format", choices=("hdf5", "gwf"), default="hdf5")
    p.add_argument("--injections", default=None, metavar="PATH",
                   help="add injections ([simulate.injections]) and write their parameters to PATH")
    p.add_argument("--sample-rate", type=int, default=None, help="override simulate.sample_rate_hz")
    p.add_argument("--start", type=int, default=None, help="GPS start (override simulate.start_gps)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="HDF5 sample type")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("source", help="publish frames on the frames endpoint")
    p.add_argument("kind", choices=("synthetic", "gwf", "hdf5"))
    p.add_argument("input", nargs="?", help="GWF directory or HDF5 file (gwf, hdf5)")
    _common(p)
    _endpoints(p, "frames")
    p.add_argument("--speed", default=None, help="real | max | <factor> (default source.speed)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: noise/injection seed")
    p.add_argument("--duration", type=int, default=0, help="synthetic: seconds (0 = endless)")
    p.add_argument("--sample-rate", type=int, default=None, help="synthetic: override simulate.sample_rate_hz")
    p.add_argument("--start", type=int, default=None, help="GPS start")
    p.add_argument("--no-injections", action="store_true", help="synthetic: noise only")
    p.add_argument("--follow", action="store_true", help="gwf: follow a live directory for new files")
    p.set_defaults(func=cmd_source)

    p = sub.add_parser("ingest", help="run the ingest process alone (frames in, aligned blocks out)")
    _common(p)
    _endpoints(p, "frames", "blocks")
    p.add_argument("--exit-on-eos", action="store_true", help="exit when every detector's stream ended")
    p.add_argument("--stats", default=None, help="write final counters to this JSON file")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("train", help="train a network on simulated, whitened windows ([train])")
    _common(p)
    p.add_argument("--model", default=None, choices=("baseline", "resnet", "factorized"), help="override train.model")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (stages that set their own keep theirs)")
    p.add_argument("--weights", default=None, help="override train.weights (output checkpoint)")
    p.add_argument("--out-dir", default=None, help="override train.out_dir (checkpoints, resume)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="offline search of an archive (same pipeline as the daemon)")
    p.add_argument("input", help="HDF5 file (mock-data layout or gwpy/PyCBC), GWF file or GWF directory")
    p.add_argument("output", help="trigger archive to write (HDF5: time, stat, var, far, ...)")
    _common(p)
    p.add_argument("--model", default=None, help="checkpoint (override model.path; default the shipped model)")
    p.add_argument("--slides", type=int, default=None, help="time slides (override ranking.n_slides)")
    p.add_argument("--background-out", default=None, metavar="PATH",
                   help="also write the time-slid background (a daemon can start from it)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("evaluate", help="found/missed, FAR and sensitive distance of a search with injections")
    p.add_argument("--injections", required=True, help="injection file (gwstream simulate --injections)")
    p.add_argument("--foreground", required=True, help="trigger archive of the data with injections")
    p.add_argument("--background", required=True,
                   help="noise-only run: its trigger archive, or its time-slid background (search --background-out)")
    p.add_argument("--out", required=True, help="directory for summary.json and the plots")
    p.add_argument("--far-per-day", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                   help="FAR thresholds of the summary table (per day)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="the long-running daemon: ingest + search processes, supervised")
    _common(p)
    _endpoints(p, "frames", "alerts", "blocks")
    p.add_argument("--out", default=None, help="override output.dir (archive, alerts file, ranking state)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="the whole daemon over an archive (GWF directory or HDF5 file)")
    p.add_argument("input", help="GWF directory or HDF5 file")
    _common(p)
    _endpoints(p, "frames", "alerts", "blocks")
    p.add_argument("--speed", default="max", help="real | max | <factor> (default max)")
    p.add_argument("--out", required=True, help="directory for triggers, alerts and logs")
    p.add_argument("--model", default=None, help="checkpoint (override model.path)")
    p.add_argument("--slides", type=int, default=None, help="time slides (override ranking.n_slides)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("listen", help="print alerts as JSON lines (reconnects when the daemon restarts)")
    _common(p)
    _endpoints(p, "alerts")
    p.add_argument("--count", type=int, default=0, help="exit after this many alerts (0: never)")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds without an alert")
    p.set_defaults(func=cmd_listen, log_level="warning")

    p = sub.add_parser("worker", help=argparse.SUPPRESS)  # a daemon child process (started by run/replay)
    p.add_argument("role", choices=("search",))
    _common(p)
    p.add_argument("--exit-on-eos", action="store_true")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="the embedded default end to end (what `make demo` runs)")
    _common(p)
    p.add_argument("--duration", type=int, default=180, help="seconds of simulated data")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="out/demo", help="directory for the demo's files")
    p.add_argument("--speed", default="real", help="real | max | <factor> (default real: latencies as live)")
    p.set_defaults(func=cmd_demo, log_level="warning")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "log_level", "info"))
    if argv is None:  # a program run, not main(argv) from Python: this process is ours to tune
        from .procs import bound_omp_spin, keep_freed_memory

        keep_freed_memory()
        bound_omp_spin()  # before any command imports torch or numba
    if args.command == "source" and args.kind in ("gwf", "hdf5") and not args.input:
        parser.error(f"source {args.kind} needs an INPUT path")
    try:
        code = args.func(args)
    except GwstreamError as exc:
        print(f"gwstream {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    if argv is None and args.command in _FAST_EXIT:
        _exit_now(code)
    return code


# Commands that import torch, whose interpreter teardown takes ~0.6 s on this machine after the work is
# done: every file they write is closed by then (context managers, atomic renames), so a program run of
# them (not main(argv) from Python) ends with os._exit once its output is flushed.
_FAST_EXIT = frozenset({"worker", "search"})


def _exit_now(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
