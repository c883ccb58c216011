"""Soak: replay many hours of simulated data through the whole daemon at max speed, watching memory.

Simulates ``--hours`` (default 24) of 2048-Hz H1/L1 noise with injections,
runs ``gwstream replay --speed max`` over it, and samples the resident memory
(RSS, from ``/proc``) of the replay process and every child (ingest, search,
source) every ``--interval`` seconds. Reports frames in and out (ingest
counters), blocks and triggers, and the RSS of each process over time: after
the warm-up the search's memory must stay flat (the slope over the second half
of the run, in MB per simulated hour, is the figure of merit), and zero frames
may be lost. Writes JSON, markdown and a PNG of RSS versus data time.

    .venv/bin/python benchmarks/soak.py --hours 24
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GW = [sys.executable, "-m", "gwstream.daemon.cli"]


def _children(pid: int) -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
                out[int(p.name)] = next((c.decode() for c in cmd if c in (b"ingest", b"worker", b"source")), "?")
        except (OSError, ValueError, IndexError):
            continue
    return out


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--slides", type=int, default=100)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--work", default="out/soak")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    duration = int(args.hours * 3600)
    data = work / f"data-{duration}s.hdf"
    t0 = time.perf_counter()
    if not data.exists():
        subprocess.run([*GW, "simulate", "--config", "configs/simulate.toml", "--duration", str(duration), "--seed",
                        "11", "--out", str(data), "--injections", str(work / "inj.hdf"), "--no-progress"],
                       check=True)
    t_sim = time.perf_counter() - t0
    out_dir = work / "replay"
    t1 = time.perf_counter()
    proc = subprocess.Popen([*GW, "replay", str(data), "--out", str(out_dir), "--speed", "max", "--slides",
                             str(args.slides), "--log-level", "warning"], stdout=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        row = {"t": time.perf_counter() - t1, "replay": _rss_mb(proc.pid)}
        for pid, role in _children(proc.pid).items():
            row[role] = _rss_mb(pid)
        samples.append(row)
        time.sleep(args.interval)
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t1
    summary = json.loads(stdout.strip().splitlines()[-1])
    stats = json.loads((out_dir / "logs" / "ingest-stats.json").read_text())
    frames_in = sum(v for k, v in stats.items() if k.startswith("frames."))
    res = {"benchmark": "soak", "hours": args.hours, "slides": args.slides, "simulate_s": round(t_sim, 1),
           "replay_wall_s": round(wall, 1), "x_real_time": round(duration / wall, 1), "replay": summary,
           "frames_expected": 2 * duration, "frames_in": frames_in, "blocks_sent": stats.get("blocks_sent"),
           "rejected": {k: v for k, v in stats.items() if k.startswith("rejected.")}, "samples": samples}
    search = np.array([(s["t"], s.get("worker")) for s in samples if s.get("worker")], dtype=float)
    if search.size:
        half = search[search[:, 0] >= search[-1, 0] / 2]
        slope = np.polyfit(half[:, 0], half[:, 1], 1)[0] if len(half) > 2 else float("nan")
        hours_per_s = args.hours / wall
        res["search_rss_mb"] = {"start": float(search[0, 1]), "max": float(search[:, 1].max()),
                                "end": float(search[-1, 1]),
                                "slope_mb_per_data_hour_second_half": float(slope / hours_per_s)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for role in ("worker", "ingest", "source", "replay"):
            pts = [(s["t"] / wall * args.hours, s[role]) for s in samples if s.get(role)]
            if pts:
                ax.plot(*zip(*pts), label={"worker": "search"}.get(role, role))
        ax.set_xlabel("data time (hours)")
        ax.set_ylabel("RSS (MB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=110)
    except Exception as exc:  # noqa: BLE001 - the figure is optional
        print("no figure:", exc)
    r = res.get("search_rss_mb", {})
    lines = [f"# Soak: {args.hours:g} h replayed at max speed ({res['x_real_time']}x real time, {args.slides} slides)",
             "", f"- frames in {frames_in} of {2 * duration} expected; rejected {res['rejected'] or 'none'}; "
             f"triggers {summary['n_triggers']}, alerts {summary['n_alerts']}",
             f"- search RSS: start {r.get('start', float('nan')):.0f} MB, max {r.get('max', float('nan')):.0f} MB, "
             f"end {r.get('end', float('nan')):.0f} MB; slope over the second half "
             f"{r.get('slope_mb_per_data_hour_second_half', float('nan')):+.2f} MB per data hour"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
