"""Loud signals against a growing slid background, with and without hierarchical removal.

The case a new user met: the search seeded with the shipped background and fed
loud, identical-population BBH injections every ``--spacing`` seconds. Without
removal the slides pair one signal's H1 with another's L1 (and each loud
detector with noise), the background fills with loud slid triggers, and each
later signal's FAR rises. With removal (``ranking.removal_ifar_days``, on by
default) the windows of every removed zero-lag trigger are kept out of the
slides.

Runs, with the repository's CLI only:

1. ``gwstream simulate`` of ``--hours`` of Gaussian noise with injections of
   network SNR ``--snr`` every ``--spacing`` s;
2. ``gwstream search`` of it twice, ``--slides`` slides, starting from the
   shipped background (``ranking.background_init = "default"``): removal on,
   and off (``ranking.removal_ifar_days = 0``);
3. the trigger nearest each injection (within its ``var``): its streaming FAR,
   as an alert would carry it.

    .venv/bin/python benchmarks/loud_injections.py --hours 1 --slides 1000

Writes ``--out`` (JSON: every injection's FAR in both runs) and a markdown
table: injections alerted at FAR <= 1/day and 1/month, and the FARs of the
first and last injections.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--spacing", type=float, default=35.0, help="s between injections")
    ap.add_argument("--snr", type=float, nargs=2, default=[20.0, 40.0], help="network optimal SNR range")
    ap.add_argument("--seed", type=int, default=35)
    ap.add_argument("--settings", help="TOML both searches read (e.g. a candidate's [model] path, its [ranking] "
                    "background_init and removal_background, the consistency test); its ranking.background_init "
                    "replaces the shipped background")
    ap.add_argument("--work", default="out/loud_injections")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loud-injections.json"))
    args = ap.parse_args()
    import tomllib

    from gwstream.daemon.io.archive import read_triggers
    from gwstream.daemon.io.framefiles import read_injection_file
    from gwstream.daemon.settings import to_toml

    work = Path(args.work)
    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    data, inj = simulate(work, args.hours, args.snr, args.spacing, args.seed)
    table = read_injection_file(inj)
    tc = np.sort(np.asarray(table["tc"], dtype=float))
    res = {"benchmark": "loud_injections", "hours": args.hours, "n_slides": args.slides, "spacing_s": args.spacing,
           "snr": args.snr, "seed": args.seed, "n_injections": int(tc.size), "runs": {},
           "settings": Path(args.settings).read_text() if args.settings else ""}
    settings = tomllib.loads(res["settings"])
    for name, days in (("removal on", None), ("removal off", 0.0)):
        cfg = work / f"search-{'on' if days is None else 'off'}.toml"
        search = {**settings, "ranking": {"background_init": "default", **settings.get("ranking", {})}}
        if days is not None:
            search["ranking"]["removal_ifar_days"] = days
        cfg.write_text(to_toml(search))
        trig = work / f"triggers-{'on' if days is None else 'off'}.hdf"
        t0 = time.perf_counter()
        subprocess.run([*gw, "search", str(data), str(trig), "--slides", str(args.slides), "--config", str(cfg),
                        "--no-progress", "--log-level", "warning"], check=True)
        wall = time.perf_counter() - t0
        cols, attrs = read_triggers(trig)
        t, far, var = (np.asarray(cols[k], dtype=float) for k in ("time", "far", "var"))
        per = []
        for x in tc:
            near = np.nonzero(np.abs(t - x) <= var)[0]
            per.append(float(far[near].min()) if near.size else None)
        counters = attrs.get("counters")
        res["runs"][name] = {"wall_s": round(wall, 1), "far_hz": per,
                             "counters": json.loads(counters) if isinstance(counters, str) else counters}
        Path(args.out).write_text(json.dumps(res, indent=1))
    write(res, Path(args.out))


def simulate(work: Path, hours: float, snr, spacing: float, seed: int) -> tuple[Path, Path]:
    """``gwstream simulate`` of ``hours`` of noise with injections of network SNR in ``snr`` every ``spacing`` s
    (kept in ``work`` and reused): the data and injection files."""
    work.mkdir(parents=True, exist_ok=True)
    duration = int(round(hours * 3600))
    sim = work / "simulate.toml"
    sim.write_text(f"[simulate]\nsample_rate_hz = 2048\n[simulate.injections]\nsnr = [{snr[0]}, {snr[1]}]\n"
                   f"spacing_s = {spacing}\njitter_s = 2.0\n")
    data, inj = work / f"data-{duration}s.hdf", work / f"injections-{duration}s.hdf"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "simulate", "--config", str(sim), "--duration",
                        str(duration), "--seed", str(seed), "--out", str(data), "--injections", str(inj),
                        "--no-progress"], check=True)
    return data, inj


def write(res: dict, out: Path) -> None:
    out.write_text(json.dumps(res, indent=1))
    lines = [f"# Loud injections every {res['spacing_s']:g} s (network SNR {res['snr'][0]:g}-{res['snr'][1]:g}), "
             f"{res['hours']:g} h, {res['n_slides']} slides, seeded with the shipped background", "",
             f"Command: `.venv/bin/python benchmarks/loud_injections.py --hours {res['hours']:g} --slides "
             f"{res['n_slides']} --spacing {res['spacing_s']:g}" + (" --settings S`, S:" if res.get("settings") else "`"),
             *([f"\n```toml\n{res['settings'].strip()}\n```"] if res.get("settings") else []), "",
             "| run | injections | alerted at FAR <= 1/day | at <= 1/month | median FAR (/day), first 10 | "
             "median FAR (/day), last 10 | zones removed |", "|---|---|---|---|---|---|---|"]
    for name, r in res["runs"].items():
        f = np.array([np.inf if v is None else v for v in r["far_hz"]]) * DAY
        c = r.get("counters") or {}
        lines.append(f"| {name} | {f.size} | {int((f <= 1).sum())} | {int((f <= 1 / 30).sum())} | "
                     f"{np.median(f[:10]):.3g} | {np.median(f[-10:]):.3g} | {c.get('removed_zones', 0)} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
