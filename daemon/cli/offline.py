"""Offline commands: ``gwstream train``, ``search``, ``evaluate`` and ``campaign``."""

from __future__ import annotations

import json

from .common import add_common, load


def cmd_train(args) -> int:
    from gwstream.daemon.train.training import run_train

    cfg = load(args, **{"train.epochs": args.epochs, "train.weights": args.weights,
                         "train.out_dir": args.out_dir, "train.model": args.model})
    meta = run_train(cfg, progress=not args.no_progress)
    print(json.dumps({k: meta[k] for k in ("selected_epoch", "wall_s", "n_parameters")} |
                     {"weights": cfg.train.weights, "validation": meta["validation"]}))
    return 0


def _load_search(args):
    """The config of ``search`` and ``campaign``, with the options they share."""
    return load(args, **{"model.path": args.model, "ranking.n_slides": args.slides,
                         "ranking.n_slides_joint": args.slides, "cluster.scheduler": args.scheduler,
                         "cluster.span_s": args.span_s})


def cmd_search(args) -> int:
    cfg = _load_search(args)
    if args.workers is not None or cfg.cluster.scheduler or cfg.cluster.backend != "local":
        if args.followup:
            raise SystemExit("gwstream search: --followup runs in one process (it needs the whitened data around "
                             "each trigger as the search passes it); drop --workers/--scheduler, or run "
                             "gwstream localize on a one-process search of the triggers' stretch")
        from gwstream.daemon.cluster.search import run_cluster_search

        summary = run_cluster_search(args.input, args.output, cfg, workers=args.workers,
                                     background_out=args.background_out, progress=not args.no_progress)
    else:
        from gwstream.daemon.proc.offline import run_search

        summary = run_search(args.input, args.output, cfg, background_out=args.background_out,
                             progress=not args.no_progress, followup_dir=args.followup,
                             followup_far_hz=args.followup_far)
    print(json.dumps({k: v for k, v in summary.items() if k != "spans"}))
    return 0


def cmd_evaluate(args) -> int:
    from gwstream.daemon.eval.evaluate import run_evaluate

    summary = run_evaluate(args.injections, args.foreground, args.background, args.out,
                           far_per_day=args.far_per_day, glitches=args.glitches)
    shown = {k: summary[k] for k in ("n_injections", "sensitive_distance_mpc", "out")}
    if "glitch" in summary:
        on_glitch = summary["glitch"]["coincident"]["any"]
        shown["glitch"] = {k: on_glitch[k] for k in ("n_triggers", "n_with_injection",
                                                      "n_far_le_1_per_day_without_injection")}
    print(json.dumps(shown))
    return 0


def cmd_campaign(args) -> int:
    from gwstream.daemon.cluster.campaign import run_campaign

    cfg = _load_search(args)
    record = run_campaign(args.injections, args.foreground, args.out, cfg, background=args.background,
                          workers=args.workers, far_per_day=args.far_per_day, progress=not args.no_progress)
    print(json.dumps(record["evaluate"]))
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``gwstream`` sub-command parser."""
    p = sub.add_parser("train", help="train a network on simulated, whitened windows ([train])")
    add_common(p)
    p.add_argument("--model", default=None, choices=("baseline", "resnet", "factorized"), help="override train.model")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (stages that set their own keep theirs)")
    p.add_argument("--weights", default=None, help="override train.weights (output checkpoint)")
    p.add_argument("--out-dir", default=None, help="override train.out_dir (checkpoints, resume)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="offline search of an archive (same pipeline as the daemon)")
    p.add_argument("input", nargs="+",
                   help="HDF5 files (mock-data layout or gwpy/PyCBC), GWF files or GWF directories (one or more)")
    p.add_argument("output", help="trigger archive to write (HDF5: time, stat, var, far, ...)")
    add_common(p)
    p.add_argument("--model", default=None, help="checkpoint (override model.path; default the shipped model)")
    p.add_argument("--slides", type=int, default=None, help="time slides (override ranking.n_slides)")
    p.add_argument("--background-out", default=None, metavar="PATH",
                   help="also write the time-slid background (a daemon can start from it)")
    p.add_argument("--followup", default=None, metavar="DIR",
                   help="write a coinc.xml with the template's SNR series and the PSDs for every trigger at "
                        "FAR <= --followup-far (gwstream localize makes their sky maps)")
    p.add_argument("--followup-far", type=float, default=1.0 / 86400, metavar="HZ",
                   help="FAR (Hz, when ranked) of the triggers --followup writes (default 1/day)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="search in spans on a Dask LocalCluster of N worker processes (or, with [cluster] backend "
                        "htcondor/slurm, N worker jobs); results equal the one-process search's")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="search in spans on a running Dask scheduler (tcp://host:8786; override cluster.scheduler)")
    p.add_argument("--span-s", type=float, default=None, metavar="S",
                   help="data per span (override cluster.span_s)")
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
    p.add_argument("--glitches", default=None, metavar="PATH",
                   help="glitch file (gwstream simulate --glitches): add the 'glitch' section (foreground triggers "
                        "on glitches, their FARs) to summary.json")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("campaign", help="an injection campaign: search the data with injections (and noise-only "
                                        "data) on a Dask cluster, then evaluate")
    p.add_argument("--injections", required=True, help="injection file (gwstream simulate --injections)")
    p.add_argument("--foreground", required=True, nargs="+", help="data with the injections (HDF5/GWF inputs)")
    p.add_argument("--background", nargs="+", default=None,
                   help="noise-only data whose time-slid background ranks the injections (default: the "
                        "foreground's own)")
    p.add_argument("--out", required=True, help="directory for the archives, summary.json and the plots")
    add_common(p)
    p.add_argument("--model", default=None, help="checkpoint (override model.path)")
    p.add_argument("--slides", type=int, default=None, help="time slides (override ranking.n_slides)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="LocalCluster worker processes (or jobqueue jobs); default one per core")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running Dask scheduler")
    p.add_argument("--span-s", type=float, default=None, metavar="S", help="data per span (cluster.span_s)")
    p.add_argument("--far-per-day", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                   help="FAR thresholds of the summary table (per day)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_campaign)
