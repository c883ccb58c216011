"""Commands that make or send data: ``gwstream simulate`` and ``gwstream source``."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

from gwstream.daemon.config import parse_speed

from .common import add_common, add_endpoints, load

log = logging.getLogger("gwstream")


def cmd_simulate(args) -> int:
    from gwstream.daemon.sim.simulate import run_simulate

    cfg = load(args, **{"simulate.sample_rate_hz": args.sample_rate, "simulate.start_gps": args.start})
    summary = run_simulate(
        cfg.simulate, duration_s=args.duration, seed=args.seed, out=args.out, fmt=args.format,
        injections_path=args.injections, dtype=args.dtype, progress=not args.no_progress,
        glitches_path=args.glitches,
    )
    files = summary.get("files", [])
    if len(files) > 6:  # a day of GWF frames is 172800 names: show the shape of it
        summary = {**summary, "files": files[:2] + ["..."] + files[-2:], "n_files": len(files)}
    print(json.dumps(summary, default=str))
    return 0


def cmd_source(args) -> int:
    from gwstream.daemon.proc import sources

    cfg = load(args, **{"source.speed": args.speed})
    speed = parse_speed(cfg.source.speed, "--speed")
    ifos = cfg.data.ifos
    stats: Counter = Counter()
    if args.kind == "synthetic":
        from gwstream.daemon.sim.simulate import Simulator

        sim_cfg = load(args, **{"simulate.sample_rate_hz": args.sample_rate,
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
    from gwstream.daemon.proc.security import secure_client

    sent = sources.publish(frames, cfg.endpoints.frames, speed=speed, ifos=ifos,
                           high_water_mark=cfg.ingest.high_water_mark,
                           secure=lambda sock: secure_client(sock, cfg.endpoints))
    stats.update(sent)
    stats["wall_s"] = round(time.monotonic() - t0, 3)
    log.info("source done %s", " ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``gwstream`` sub-command parser."""
    p = sub.add_parser("simulate", help="write simulated H1/L1 noise (+ injections) as HDF5 or GWF")
    add_common(p)
    p.add_argument("--duration", type=int, required=True, help="seconds of data")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="HDF5 file, or directory of GWF frames")
    p.add_argument("--format", choices=("hdf5", "gwf"), default="hdf5")
    p.add_argument("--injections", default=None, metavar="PATH",
                   help="add injections ([simulate.injections]) and write their parameters to PATH")
    p.add_argument("--glitches", default=None, metavar="PATH",
                   help="write the glitch table to PATH (glitches are added whenever [simulate.glitches] "
                        "sets a rate > 0, e.g. configs/simulate-glitchy.toml)")
    p.add_argument("--sample-rate", type=int, default=None, help="override simulate.sample_rate_hz")
    p.add_argument("--start", type=int, default=None, help="GPS start (override simulate.start_gps)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="HDF5 sample type")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("source", help="publish frames on the frames endpoint")
    p.add_argument("kind", choices=("synthetic", "gwf", "hdf5"))
    p.add_argument("input", nargs="?", help="GWF directory or HDF5 file (gwf, hdf5)")
    add_common(p)
    add_endpoints(p, "frames")
    p.add_argument("--speed", default=None, help="real | max | <factor> (default source.speed)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: noise/injection seed")
    p.add_argument("--duration", type=int, default=0, help="synthetic: seconds (0 = endless)")
    p.add_argument("--sample-rate", type=int, default=None, help="synthetic: override simulate.sample_rate_hz")
    p.add_argument("--start", type=int, default=None, help="GPS start")
    p.add_argument("--no-injections", action="store_true", help="synthetic: noise only")
    p.add_argument("--follow", action="store_true", help="gwf: follow a live directory for new files")
    p.set_defaults(func=cmd_source)
