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


def kill_run(data: Path, out: Path, slides: int, span_s: float, after_s: float = 5.0) -> dict:
    """``--workers 2`` with one worker SIGKILLed ``after_s`` into its first span; the archive is then compared
    with the clean run's."""
    import os
    import signal
    import threading

    from distributed import Client, LocalCluster
    from gwstream.daemon.cluster.search import run_cluster_search
    from gwstream.daemon.config import load_config

    cfg = load_config(None, {"ranking.n_slides": slides, "cluster.span_s": span_s})
    out.mkdir(parents=True, exist_ok=True)
    killed: dict = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"GOMP_SPINCOUNT": "100000"}) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_one():
            while not killed.get("stop"):
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    time.sleep(after_s)
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.update(worker=busy[0], pid=pids[busy[0]], at_s=round(time.monotonic() - t0, 1))
                    return
                time.sleep(0.05)

        t0 = time.monotonic()
        thread = threading.Thread(target=kill_one, daemon=True)
        thread.start()
        summary = run_cluster_search(data, out / "triggers.h5", cfg, client=client, progress=False,
                                     background_out=out / "background.h5")
        killed["stop"] = True
    return {"killed": {k: v for k, v in killed.items() if k != "stop"}, "wall_s": summary["wall_s"],
            "skipped_spans": summary["skipped_spans"], "n_triggers": summary["n_triggers"]}


def span_costs(summary: dict) -> dict:
    """Per-span overhead and the owned data's throughput per worker (one core), from the spans' timing."""
    spans = summary["spans"]
    owned_s = sum(s.get("owned_s", 0.0) for s in spans)
    data_s = sum(s["data_s"] for s in spans)
    lead = [s for s in spans if s["lead_s"] > 0]
    mean = (lambda key, rows: float(np.mean([s.get(key, 0.0) for s in rows])) if rows else 0.0)
    out = {
        "n_spans": len(spans), "per_core_x_real_time": round(data_s / owned_s, 2) if owned_s else None,
        "setup_s_mean": round(mean("setup_s", spans), 2),
        "lead_data_s_mean": round(mean("lead_s", lead), 1),
        "span_wall_sum_s": round(sum(s["wall_s"] for s in spans), 2),
        # what the driver, the scheduler and the cluster's start cost beyond the spans' own work (per worker)
        "outside_spans_s": round(summary["outside_wall_s"] - sum(s["wall_s"] for s in spans)
                                 / max(1, summary.get("workers") or 1), 2),
    }
    for phase in ("conditioning_lead", "primed_lead", "scored_lead"):
        out[f"{phase}_s_mean"] = round(mean(f"{phase}_s", lead), 2)
        wall = sum(s.get(f"{phase}_s", 0.0) for s in lead)
        data = sum(s.get(f"{phase}_data_s", 0.0) for s in lead)
        out[f"{phase}_cost_per_s"] = wall / data if data else None  # wall s per s of data, one core
    return out


def projection(rows: dict, psd_lead_s: float, spans=((1000, 14400.0), (10000, 86400.0))) -> dict:
    """Core-hours for a year of H1/L1 data, and workers for a day of wall time, at 1000 and 10,000 slides.

    Per-core cost of a second of owned data is linear in the slides (the head runs once per slide):
    ``c(K) = c0 + K * c1`` from the measured w1 throughputs at 0 and 1000 slides. A span adds its lead-in:
    ``psd_lead_s`` of conditioning, the slides' reach primed (encoder only) and the last 64 s scored, each at
    the per-second cost measured on the w1 spans' lead-ins.
    """
    from gwstream.daemon.cluster.spans import RANK_LEAD_S, margin_ns
    from gwstream.daemon.config import load_config
    from gwstream.daemon.units import NS

    w1 = {k: rows[k]["w1"]["costs"] for k in rows if "w1" in rows[k]}
    if 0 not in w1 or 1000 not in w1:
        return {}
    c0 = 1.0 / w1[0]["per_core_x_real_time"]
    c1 = (1.0 / w1[1000]["per_core_x_real_time"] - c0) / 1000

    def rate(key):
        vals = [c[key] for c in w1.values() if c.get(key)]
        return float(np.median(vals)) if vals else 0.0

    cond, prime = rate("conditioning_lead_cost_per_s"), rate("primed_lead_cost_per_s")
    out = {"cost_per_data_s_0": c0, "cost_per_data_s_per_slide": c1, "conditioning_cost_per_s": cond,
           "primed_cost_per_s": prime}
    for k, span in spans:
        per_s = c0 + k * c1
        margin = margin_ns(load_config(None), k) / NS
        lead_cost = psd_lead_s * cond + max(0.0, margin - RANK_LEAD_S) * prime + RANK_LEAD_S * per_s
        frac = lead_cost / (span * per_s)
        core_h = YEAR_S * per_s * (1 + frac) / 3600
        out[f"slides_{k}"] = {"per_core_x_real_time": round(1 / per_s, 2), "span_s": span,
                              "span_wall_h": round((span * per_s + lead_cost) / 3600, 2),
                              "lead_in_overhead": round(frac, 4), "core_hours_per_year": round(core_h),
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
    ap.add_argument("--kill", action="store_true",
                    help="also run --workers 2 with one worker SIGKILLed mid-span (first slides value), compared "
                         "with one process")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--record", type=Path, default=None, help="write RECORD.json and RECORD.md")
    ap.add_argument("--from-json", type=Path, default=None, help="only rewrite RECORD.md from this RECORD.json")
    args = ap.parse_args()
    if args.from_json:
        record = json.loads(args.from_json.read_text())
        record["rows"] = {int(k): v for k, v in record["rows"].items()}
        for runs in record["rows"].values():
            for name, row in runs.items():
                if "spans" in row:
                    row["costs"] = span_costs({"spans": row["spans"], "outside_wall_s": row["outside_wall_s"],
                                               "workers": int(name[1])})
        record["projection"] = projection(record["rows"], args.psd_lead_s)
        args.from_json.with_suffix(".md").write_text(markdown(record, record.get("argv", "")))
        args.from_json.write_text(json.dumps(record, indent=1))
        return 0
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
    if args.kill:
        k = args.slides[0]
        out = work / f"k{k}-kill"
        rows[k]["w2-killed"] = kill = kill_run(data, out, k, args.span_s)
        if (work / f"k{k}-one").exists():
            kill["equal_to_one"] = same(work / f"k{k}-one", out)
        print(json.dumps({"slides": k, "run": "w2-killed", **kill}), flush=True)
    record = {"data": str(data), "hours": args.hours, "seed": args.seed, "span_s": args.span_s,
              "argv": " ".join(sys.argv[1:]),
              "rows": rows, "projection": projection(rows, args.psd_lead_s)}
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
             "per-core × real time | set-up / conditioned / primed / scored lead-in per span (s) | outside the spans (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, runs in record["rows"].items():
        for name, r in runs.items():
            if name == "w2-killed":
                continue
            c = r.get("costs", {})
            eq = r.get("equal_to_one", {})
            ident = "—" if not eq else ("yes (bit for bit)" if eq["identical"] else
                                        ", ".join(f"{x}: {y}" for x, y in eq.items() if y is not True))
            lines.append(f"| {k} | {name} | {r['wall_s']:.1f} | {r['outside_wall_s']:.1f} | "
                         f"{r['speed_x_real_time']} | {r.get('speedup_vs_one', '—')} | {ident} | "
                         f"{c.get('n_spans', '—')} | {c.get('per_core_x_real_time', '—')} | "
                         + (f"{c['setup_s_mean']} / {c['conditioning_lead_s_mean']} / "
                            f"{c.get('primed_lead_s_mean', '—')} / {c['scored_lead_s_mean']} | "
                            f"{c.get('outside_spans_s', '—')} |" if c else "— | — |"))
    for k, runs in record["rows"].items():
        if "w2-killed" in runs:
            r = runs["w2-killed"]
            eq = r.get("equal_to_one", {})
            lines += ["", f"Kill test ({k} slides): worker pid {r['killed'].get('pid')} SIGKILLed "
                          f"{r['killed'].get('at_s')} s into the run; {len(r['skipped_spans'])} spans skipped, "
                          f"{r['n_triggers']} triggers, identical to one process: "
                          f"{'yes (bit for bit)' if eq.get('identical') else eq}."]
    p = record.get("projection") or {}
    if p:
        lines += ["", "## Projection (on paper, from the w1 rows)", "",
                  f"Per-core cost of one second of data: {p['cost_per_data_s_0']:.4f} s + "
                  f"{p['cost_per_data_s_per_slide'] * 1000:.4f} s per 1000 slides; lead-in per s of data: "
                  f"conditioning {p['conditioning_cost_per_s']:.4f} s, priming {p['primed_cost_per_s']:.4f} s.", "",
                  "| slides | per-core × real time | span | one span's wall (h) | lead-in overhead | "
                  "core-hours per year of H1/L1 | workers for one day |", "|---|---|---|---|---|---|---|"]
        for k in (1000, 10000):
            q = p[f"slides_{k}"]
            lines.append(f"| {k} | {q['per_core_x_real_time']} | {q['span_s'] / 3600:.0f} h | {q['span_wall_h']} | "
                         f"{100 * q['lead_in_overhead']:.1f} % | {q['core_hours_per_year']} | "
                         f"{q['workers_for_one_day']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
