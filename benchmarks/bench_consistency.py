"""What the per-detector consistency test costs a search: ``gwstream search`` with it off and on, alternately.

    .venv/bin/python benchmarks/bench_consistency.py DATA.hdf --model models/weights/glitch3.pt --slides 1000

Runs ``gwstream search DATA`` ``--repeat`` times each way, off and on in turn (so both sides share
the machine's conditions), with ``ranking.consistency_weight`` 0 and ``--weight``; reports each
run's wall time, the medians, their ratio, and whether the zero-lag trigger count changed. Run it
alone: two cores are easily shared by accident. Writes ``--out`` (JSON) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--model", default="models/weights/glitch3.pt")
    ap.add_argument("--slides", type=int, default=1000)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "consistency-cost.json"))
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for side, weight in (("off", 0.0), ("on", args.weight)):
                cfg = Path(tmp) / f"{side}.toml"
                cfg.write_text(f"[ranking]\nconsistency_weight = {weight}\nremoval_ifar_days = 0.0\n")
                out = subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "search", args.data,
                                      str(Path(tmp) / f"{side}-{i}.h5"), "--config", str(cfg), "--model", args.model,
                                      "--slides", str(args.slides), "--no-progress", "--log-level", "warning"],
                                     check=True, capture_output=True, text=True).stdout
                res = json.loads(out.strip().splitlines()[-1])
                runs[side].append({"wall_s": res["wall_s"], "x_real_time": res["speed_x_real_time"],
                                   "n_triggers": res["n_triggers"]})
                print(side, runs[side][-1], flush=True)
    med = {side: float(np.median([r["wall_s"] for r in rs])) for side, rs in runs.items()}
    data_s = json.loads(out.strip().splitlines()[-1])["data_s"]
    res = {"benchmark": "consistency_cost", "data": args.data, "model": args.model, "slides": args.slides,
           "weight": args.weight, "data_s": data_s, "runs": runs, "median_wall_s": med,
           "ratio_on_over_off": med["on"] / med["off"]}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=1))
    lines = [f"# The consistency test's cost: `gwstream search`, {data_s / 60:g} min of data, {args.slides} slides",
             "", f"Command: `.venv/bin/python benchmarks/bench_consistency.py {args.data} --model {args.model} "
             f"--slides {args.slides} --weight {args.weight:g} --repeat {args.repeat}` (hierarchical removal off, "
             "so both sides rank the same way).", "",
             "| test | wall time per run (s) | median | × real time | zero-lag triggers |", "|---|---|---|---|---|"]
    for side, rs in runs.items():
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        counts = ", ".join(str(r["n_triggers"]) for r in rs)
        lines.append(f"| {side} | {walls} | {med[side]:.1f} | {data_s / med[side]:.1f} | {counts} |")
    lines += ["", f"On / off: **{res['ratio_on_over_off']:.3f}** of the wall time."]
    out_path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
