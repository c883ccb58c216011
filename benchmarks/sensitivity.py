"""Sensitive distance of the search at FAR 1, 10 and 100 per day (issue 5's table).

Runs, with the repository's CLI only:

1. ``gwstream simulate --config configs/simulate.toml`` for ``--hours`` of
   H1/L1 Gaussian noise (design PSD) with injections every ~27 s (masses
   10-50 M☉, chirp distance uniform in volume, 130-350 Mpc), and a separate
   stretch of noise with another seed for the background;
2. ``gwstream search`` on the injection data (zero lag only) and on the noise
   with ``--slides`` time slides, writing its background (``--background-out``);
3. ``gwstream evaluate`` of the injections against that background.

    .venv/bin/python benchmarks/sensitivity.py --hours 24 --slides 20

Writes ``results/sensitivity.json`` (the evaluate summary plus timings) and a
markdown table; the plots stay in ``--work``/evaluate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--slides", type=int, default=20, help="time slides of the noise stretch (background)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    ap.add_argument("--config", default=None, help="search configuration (e.g. [model] threads = 1)")
    ap.add_argument("--work", default="out/sensitivity")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sensitivity.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    duration = int(round(args.hours * 3600))
    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    model = ["--model", args.model] if args.model else []
    if args.config:
        model += ["--config", args.config]
    timing = {}

    def step(name, cmd, output, reuse=True):
        # simulated data is reused from an earlier run; triggers never are (they depend on the model and code)
        if reuse and Path(output).exists():
            print(f"{name}: {output} exists, reused", flush=True)
            return
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        timing[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {timing[name]} s", flush=True)

    fg, inj, noise = work / f"fg-{duration}s.hdf", work / f"injections-{duration}s.hdf", work / f"noise-{duration}s.hdf"
    step("simulate_foreground", [*gw, "simulate", "--config", "configs/simulate.toml", "--duration", str(duration),
                                 "--seed", "1", "--out", str(fg), "--injections", str(inj), "--no-progress"], fg)
    step("simulate_noise", [*gw, "simulate", "--config", "configs/simulate.toml", "--duration", str(duration),
                            "--seed", "2", "--out", str(noise), "--no-progress"], noise)
    fg_trig, bg_trig, bg = work / "fg-triggers.hdf", work / "noise-triggers.hdf", work / "background.h5"
    step("search_foreground", [*gw, "search", str(fg), str(fg_trig), "--slides", "0", "--no-progress",
                               "--log-level", "warning", *model], fg_trig, reuse=False)
    step("search_noise", [*gw, "search", str(noise), str(bg_trig), "--slides", str(args.slides),
                          "--background-out", str(bg), "--no-progress", "--log-level", "warning", *model], bg_trig,
         reuse=False)
    ev = work / "evaluate"
    subprocess.run([*gw, "evaluate", "--injections", str(inj), "--foreground", str(fg_trig), "--background", str(bg),
                    "--out", str(ev), "--far-per-day", "1", "10", "100"], check=True)
    summary = json.loads((ev / "summary.json").read_text())
    summary.pop("curve", None)
    res = {"benchmark": "sensitivity", "hours": args.hours, "slides": args.slides, "timing_s": timing,
           "x_real_time": {k: round(duration / v, 1) for k, v in timing.items() if v > 0}, **summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    lines = [f"# Sensitivity: {args.hours:g} h of injections, background from {args.slides} slides of "
             f"{args.hours:g} h of noise", "",
             f"{summary['n_analysed']} injections analysed (of {summary['n_injections']}); background live time "
             f"{summary['background_livetime_s'] / 86400:.1f} days.", "",
             "| FAR threshold | found | found fraction | sensitive distance (Mpc) |", "|---|---|---|---|"]
    for k, v in summary["at_far_per_day"].items():
        lines.append(f"| {k} / day | {v['found']} | {v['found_fraction']:.3f} | "
                     f"{v.get('distance_mpc', float('nan')):.1f} ± {v.get('distance_sigma_mpc', float('nan')):.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
