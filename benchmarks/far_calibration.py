"""FAR calibration of the whole search on pure simulated noise (the long form of the test).

Simulates ``--hours`` of H1/L1 coloured Gaussian noise (design PSD, no
injections; with glitches when ``--config`` asks for them, e.g. a copy of
``configs/simulate-glitchy.toml`` with a ``[whiten]`` gate) with ``gwstream simulate``, searches it with ``gwstream search``
(the shipped model, ``--slides`` time slides), and compares, for FAR
thresholds ``f`` over two or more decades, the number of zero-lag triggers with
``FAR <= f`` against the expectation ``f * T`` (T the analysed zero-lag live
time): a search whose FARs mean what they say gives counts consistent with
Poisson(f T). Writes JSON and a markdown table.

    .venv/bin/python benchmarks/far_calibration.py --hours 4 --slides 1000

The peer in the same run is the expectation itself; the search's throughput
(x real time, with that many slides) is reported too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from gwstream.daemon.io.archive import read_triggers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--work", default="out/far_calibration", help="data and trigger files")
    ap.add_argument("--config", default=None, help="search configuration (default: built-in defaults)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "far_calibration.json"))
    ap.add_argument("--rewrite", action="store_true", help="only re-render --out's JSON and markdown")
    args = ap.parse_args()
    if args.rewrite:
        write(json.loads(Path(args.out).read_text()), Path(args.out))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    duration = int(round(args.hours * 3600))
    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    cfg = ["--config", args.config] if args.config else []
    data = work / f"noise-{duration}s-seed{args.seed}.hdf"
    t0 = time.perf_counter()
    if not data.exists():
        subprocess.run([*gw, "simulate", "--duration", str(duration), "--seed", str(args.seed), "--out", str(data),
                        "--sample-rate", "2048", "--no-progress", *cfg], check=True)
    t_sim = time.perf_counter() - t0
    trig = work / f"triggers-{duration}s-{args.slides}slides.hdf"
    t1 = time.perf_counter()
    subprocess.run([*gw, "search", str(data), str(trig), "--slides", str(args.slides), "--no-progress",
                    "--log-level", "warning", *cfg], check=True)
    t_search = time.perf_counter() - t1
    cols, attrs = read_triggers(trig)
    t = float(attrs["livetime_s"])
    far = cols["far"]
    rows = []
    f_min = 1.0 / float(attrs["background_livetime_s"])
    for f in np.logspace(np.log10(max(f_min * 10, 1e-5)), 0, 13):
        n, mu = int((far <= f).sum()), f * t
        rows.append({"far_hz": float(f), "far_per_day": float(f * 86400), "observed": n, "expected": mu,
                     "sigma": float(np.sqrt(mu)), "z": float((n - mu) / np.sqrt(mu)) if mu > 0 else 0.0})
    res = {"benchmark": "far_calibration", "hours": args.hours, "seed": args.seed, "n_slides": args.slides,
           "config": args.config,
           "livetime_s": t, "background_livetime_s": float(attrs["background_livetime_s"]),
           "n_triggers": int(far.size), "model_sha256": attrs.get("model_sha256"),
           "simulate_s": round(t_sim, 1), "search_s": round(t_search, 1),
           "search_x_real_time": round(duration / t_search, 1), "rows": rows}
    write(res, Path(args.out))


def write(res: dict, out: Path) -> None:
    """JSON and markdown. Rows with ``f`` above half the clustered noise-trigger rate are
    reported but not judged: one trigger per cluster window caps the count there, and the
    quietest trigger's FAR is the background trigger rate itself, so ``n(FAR <= f)`` stops
    following ``f T`` by construction."""
    rate = res["n_triggers"] / res["livetime_s"]
    for r in res["rows"]:
        r["judged"] = r["far_hz"] <= 0.5 * rate
    judged = [r for r in res["rows"] if r["judged"]]
    res["trigger_rate_hz"] = rate
    res["max_abs_z"] = max(abs(r["z"]) for r in judged)
    res["judged_far_per_day"] = [judged[0]["far_per_day"], judged[-1]["far_per_day"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    t = res["livetime_s"]
    noise = "Gaussian noise" if not res.get("config") else f"noise simulated and searched with `{res['config']}`"
    lines = [f"# FAR calibration: {res['hours']:g} h of {noise}, {res['n_slides']} time slides",
             "", f"Zero-lag live time {t:.0f} s, background live time {res['background_livetime_s']:.3g} s, "
             f"{res['n_triggers']} zero-lag triggers ({rate:.3f} Hz); search {res['search_x_real_time']}x real time "
             f"(simulate {res['simulate_s']:.0f} s, search {res['search_s']:.0f} s).",
             "", "| FAR threshold (per day) | triggers with FAR <= f | expected f T | (obs - exp) / sqrt(exp) |",
             "|---|---|---|---|"]
    lines += [f"| {r['far_per_day']:.3g} | {r['observed']} | {r['expected']:.1f} | {r['z']:+.2f}"
              + ("" if r["judged"] else " (f above half the trigger rate: not judged)") + " |" for r in res["rows"]]
    lines += ["", f"Largest |z| over the judged thresholds ({res['judged_far_per_day'][0]:.3g} to "
              f"{res['judged_far_per_day'][1]:.3g} per day): {res['max_abs_z']:.2f}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
