#!/usr/bin/env python
"""Distributed search against one process, on the same data in one run: equality, speed-up, per-span overhead.

For each number of slides, the same archive is searched by

* ``one``: ``gwstream search`` in one process (torch's default threads: every core),
* ``w1``: ``gwstream search --workers 1`` (a LocalCluster of one single-threaded worker),
* ``w2``: ``gwstream search --workers 2``,

each a fresh ``gwstream`` process run alone, timed from outside (start-up and
cluster start included) and by its own summary. The archives and backgrounds
are compared column by column with ``one``'s. From the spans' own timing the
record gives the per-span overhead (set-up, conditioning-only lead-in, scored
lead-in) and the owned data's per-core throughput, and from those the
projection of docs/scaling.md (core-hours for a year, the cluster for a day).

    benchmarks/bench_cluster.py --hours 2 --slides 0 1000 --record benchmarks/results/cluster-2h
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
YEAR_S = 365.25 * 86400


def simulate(out: Path, hours: float, seed: int) -> tuple[Path, Path]:
    data, inj = out / "data.h5", out / "inj.h5"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "simulate", "--duration", str(int(hours * 3600)),
                        "--seed", str(seed), "--out", str(data), "--injections", str(inj), "--sample-rate", "2048",
                        "--no-progress", "--log-level", "warning"], check=True)
    return data, inj


def search(data: Path, out: Path, slides: int, workers: int | None, span_s: float | None) -> dict:
    cmd = [sys.executable, "-m", "gwstream.daemon.cli", "search", str(data), str(out / "triggers.h5"), "--slides",
           str(slides), "--background-out", str(out / "background.h5"), "--no-progress", "--log-level", "warning"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if span_s is not None:
        cmd += ["--span-s", str(span_s)]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-4000:]}")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    summary["outside_wall_s"] = round(wall, 2)
    if workers is not None:  # the spans' timing is in the archive's attributes (the CLI prints the rest)
        from gwstream.daemon.io.archive import read_triggers

        _, attrs = read_triggers(out / "triggers.h5")
        summary["spans"] = json.loads(attrs["spans"])
    return summary


def same(a: Path, b: Path) -> dict:
    """Column by column: identical (bit for bit) or the largest difference."""
    from gwstream.daemon.io.archive import read_triggers
    from gwstream.daemon.stream.background import Background

    x, xa = read_triggers(a / "triggers.h5")
    y, ya = read_triggers(b / "triggers.h5")
    out = {}
    for k in ("time", "stat", "far", "var", "gps_ns", "window_gps_ns", "saturated"):
        if x[k].shape != y[k].shape:
            out[k] = f"{x[k].shape[0]} vs {y[k].shape[0]} rows"
        else:
            out[k] = True if np.array_equal(x[k], y[k]) else float(np.max(np.abs(x[k].astype(float) - y[k])))
    out["segments"] = bool(np.array_equal(xa["segments"], ya["segments"]))
    out["livetime_s"] = xa["livetime_s"] == ya["livetime_s"]
    p, q = Background.load(a / "background.h5"), Background.load(b / "background.h5")
    out["background"] = bool(np.array_equal(p.counts, q.counts) and np.array_equal(p.loudest, q.loudest)
                             and p.floor == q.floor and p.live_windows == q.live_windows)
    out["identical"] = all(v is True for v in out.values())
    return out


def span_costs(summary: dict) -> dict:
    """Per-span overhead and the owned data's throughput per worker (one core), from the spans' timing."""
    spans = summary["spans"]
    owned_s = sum(s.get("owned_s", 0.0) for s in spans)
    data_s = sum(s["data_s"] for s in spans)
    lead = [s for s in spans if s["lead_s"] > 0]
    mean = (lambda key, rows: float(np.mean([s.get(key, 0.0) for s in rows])) if rows else 0.0)
    return {
        "n_spans": len(spans), "per_core_x_real_time": round(data_s / owned_s, 2) if owned_s else None,
        "setup_s_mean": round(mean("setup_s", spans), 2),
        "conditioning_lead_s_mean": round(mean("conditioning_lead_s", lead), 2),
        "scored_lead_s_mean": round(mean("scored_lead_s", lead), 2),
        "lead_data_s_mean": round(mean("lead_s", lead), 1),
        "span_wall_sum_s": round(sum(s["wall_s"] for s in spans), 2),
    }


def projection(rows: dict, span_s: float, psd_lead_s: float) -> dict:
    """Core-hours for a year of H1/L1 data, and workers for a day of wall time, at 1000 and 10,000 slides.

    Per-core cost of a second of data is linear in the slides (the head runs once per slide):
    ``c(K) = c0 + K * c1`` from the measured w1 throughputs at 0 and 1000 slides. A span adds a
    conditioning-only lead-in (psd_lead_s) and a scored lead-in of the slides' reach (K s + 64 s).
    """
    c = {k: 1.0 / rows[k]["w1"]["costs"]["per_core_x_real_time"] for k in rows if "w1" in rows[k]}
    if 0 not in c or 1000 not in c:
        return {}
    c0, c1 = c[0], (c[1000] - c[0]) / 1000
    cond = {k: rows[k]["w1"]["costs"]["conditioning_lead_s_mean"] / max(rows[k]["w1"]["costs"]["lead_data_s_mean"]
            - (k + 64), 1.0) for k in rows if "w1" in rows[k]}
    cond_cost = float(np.median(list(cond.values())))  # s of wall per s of conditioning-only lead-in
    out = {"cost_per_data_s_0": c0, "cost_per_data_s_per_slide": c1, "conditioning_cost_per_s": cond_cost}
    for k, span in ((1000, span_s), (10000, max(span_s, 86400.0))):
        per_s = c0 + k * c1
        lead_cost = psd_lead_s * cond_cost + (k + 64) * per_s
        frac = lead_cost / (span * per_s)
        core_h = YEAR_S * per_s * (1 + frac) / 3600
        out[f"slides_{k}"] = {"per_core_x_real_time": round(1 / per_s, 2), "span_s": span,
                              "lead_in_overhead": round(frac, 3), "core_hours_per_year": round(core_h),
                              "workers_for_one_day": int(np.ceil(core_h / 24))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=3001)
    ap.add_argument("--data", type=Path, default=None, help="an archive to search instead of simulating one")
    ap.add_argument("--slides", type=int, nargs="+", default=[0, 1000])
    ap.add_argument("--modes", nargs="+", default=["one", "w1", "w2"], choices=("one", "w1", "w2"))
    ap.add_argument("--span-s", type=float, default=3600.0, help="span length of the w1/w2 runs")
    ap.add_argument("--extra-span-s", type=float, nargs="*", default=[],
                    help="also run w2 with these span lengths (overhead against span length)")
    ap.add_argument("--psd-lead-s", type=float, default=512.0, help="cluster.psd_lead_s in force (for the projection)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--record", type=Path, default=None, help="write RECORD.json and RECORD.md")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or simulate(work, args.hours, args.seed)[0]
    rows: dict = {}
    for k in args.slides:
        rows[k] = {}
        runs = [(m, {"one": None, "w1": 1, "w2": 2}[m], None if m == "one" else args.span_s) for m in args.modes]
        runs += [(f"w2-span{int(s)}", 2, s) for s in args.extra_span_s]
        for name, workers, span in runs:
            out = work / f"k{k}-{name}"
            out.mkdir(exist_ok=True)
            s = search(data, out, k, workers, span)
            row = {"wall_s": s["wall_s"], "outside_wall_s": s["outside_wall_s"], "data_s": s["data_s"],
                   "n_triggers": s["n_triggers"], "speed_x_real_time": s["speed_x_real_time"]}
            if workers is not None:
                row["costs"] = span_costs(s)
                row["spans"] = s["spans"]
            if name != "one" and "one" in rows[k]:
                row["equal_to_one"] = same(work / f"k{k}-one", out)
            rows[k][name] = row
            print(json.dumps({"slides": k, "run": name, **{x: y for x, y in row.items() if x != "spans"}}), flush=True)
        base = rows[k].get("one")
        for name, row in rows[k].items():
            if base is not None and name != "one":
                row["speedup_vs_one"] = round(base["wall_s"] / row["wall_s"], 3)
                row["speedup_vs_one_outside"] = round(base["outside_wall_s"] / row["outside_wall_s"], 3)
    record = {"data": str(data), "hours": args.hours, "seed": args.seed, "span_s": args.span_s,
              "rows": rows, "projection": projection(rows, args.span_s, args.psd_lead_s)}
    print(json.dumps(record["projection"], indent=1))
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.record}.json").write_text(json.dumps(record, indent=1))
        Path(f"{args.record}.md").write_text(markdown(record, " ".join(sys.argv[1:])))
    return 0


def markdown(record: dict, argv: str) -> str:
    lines = [f"# Distributed search against one process ({record['hours']} h, seed {record['seed']})", "",
             f"`benchmarks/bench_cluster.py {argv}`: each run a fresh `gwstream search` process, run alone on this "
             "2-core machine; `one` = one process (torch on both cores), `wN` = `--workers N` (single-threaded "
             f"LocalCluster workers, spans of {record['span_s']:.0f} s unless named).", "",
             "| slides | run | wall (s) | outside (s) | × real time | speed-up vs one | identical to one | spans | "
             "per-core × real time | set-up / cond. lead-in / scored lead-in per span (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, runs in record["rows"].items():
        for name, r in runs.items():
            c = r.get("costs", {})
            eq = r.get("equal_to_one", {})
            ident = "—" if not eq else ("yes (bit for bit)" if eq["identical"] else
                                        ", ".join(f"{x}: {y}" for x, y in eq.items() if y is not True))
            lines.append(f"| {k} | {name} | {r['wall_s']:.1f} | {r['outside_wall_s']:.1f} | "
                         f"{r['speed_x_real_time']} | {r.get('speedup_vs_one', '—')} | {ident} | "
                         f"{c.get('n_spans', '—')} | {c.get('per_core_x_real_time', '—')} | "
                         + (f"{c['setup_s_mean']} / {c['conditioning_lead_s_mean']} / {c['scored_lead_s_mean']} |"
                            if c else "— |"))
    p = record.get("projection") or {}
    if p:
        lines += ["", "## Projection (on paper, from the w1 rows)", "",
                  f"Per-core cost of one second of data: {p['cost_per_data_s_0']:.4f} s + "
                  f"{p['cost_per_data_s_per_slide'] * 1000:.4f} s per 1000 slides; conditioning-only lead-in "
                  f"{p['conditioning_cost_per_s']:.4f} s per s.", "",
                  "| slides | per-core × real time | span | lead-in overhead | core-hours per year of H1/L1 | "
                  "workers for one day |", "|---|---|---|---|---|---|"]
        for k in (1000, 10000):
            q = p[f"slides_{k}"]
            lines.append(f"| {k} | {q['per_core_x_real_time']} | {q['span_s'] / 3600:.0f} h | "
                         f"{100 * q['lead_in_overhead']:.1f} % | {q['core_hours_per_year']} | "
                         f"{q['workers_for_one_day']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
