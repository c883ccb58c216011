"""How loud signals score: the zero-lag statistic of loud injections, per model and consistency setting.

A search must rank a loud signal far above its background: a GW150914-like event should get the
smallest FAR the background can give. A network fine-tuned to rank glitches as noise can learn
"loud means glitch" instead, and a consistency test can take off a loud signal what its best
(cut, aligned-spin) template misses. This scores the data of ``benchmarks/loud_injections.py``
(Gaussian noise with injections of network SNR ``--snr`` every ``--spacing`` s, the same seed and
files) with ``gwstream search --slides 0`` once per ``--run LABEL MODEL WEIGHT`` (checkpoint,
``ranking.consistency_weight``), and tabulates each injection's statistic: the loudest zero-lag
trigger within its ``var``. No FARs: the statistic alone, so the runs need no backgrounds.

    .venv/bin/python benchmarks/loud_scores.py --run v16 out/v16.pt 0 --run glitch3 models/weights/glitch3.pt 0 \\
        --run glitch3+test models/weights/glitch3.pt 1

Writes ``--out`` (JSON: every injection's statistic per run) and a markdown table: median,
10th percentile, and how many injections score below 3 and 2 (a clean background's statistic at
FAR 1/day is about 2.9).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from loud_injections import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs=3, action="append", required=True, metavar=("LABEL", "MODEL", "WEIGHT"),
                    help="a search: its label, checkpoint and ranking.consistency_weight (repeat)")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--spacing", type=float, default=35.0, help="s between injections")
    ap.add_argument("--snr", type=float, nargs=2, default=[20.0, 40.0], help="network optimal SNR range")
    ap.add_argument("--seed", type=int, default=35)
    ap.add_argument("--work", default="out/loud_injections", help="data (shared with loud_injections.py) and "
                                                                  "trigger files")
    ap.add_argument("--reuse", action="store_true", help="reuse a run's trigger file when it exists")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loud-signal-scores.json"))
    args = ap.parse_args()
    from gwstream.daemon.eval.evaluate import match_injections
    from gwstream.daemon.io.archive import read_triggers
    from gwstream.daemon.io.framefiles import read_injection_file

    work = Path(args.work)
    data, inj = simulate(work, args.hours, args.snr, args.spacing, args.seed)
    table = read_injection_file(inj)
    order = np.argsort(np.asarray(table["tc"], dtype=float))
    tc = np.asarray(table["tc"], dtype=float)[order]
    snr = np.asarray(table["network_snr"], dtype=float)[order]
    res = {"benchmark": "loud_scores", "hours": args.hours, "spacing_s": args.spacing, "snr": args.snr,
           "seed": args.seed, "network_snr": [round(float(x), 2) for x in snr], "runs": {}}
    for label, model, weight in args.run:
        cfg = work / f"scores-{label}.toml"
        cfg.write_text(f'[model]\npath = "{model}"\n[ranking]\nconsistency_weight = {float(weight)}\n')
        trig = work / f"scores-{label}.h5"
        if not (args.reuse and trig.exists()):
            subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "search", str(data), str(trig), "--slides",
                            "0", "--config", str(cfg), "--no-progress", "--log-level", "warning"], check=True)
        cols, attrs = read_triggers(trig)
        stat = np.asarray(cols["stat"], dtype=float)
        idx = match_injections(tc, np.asarray(cols["time"], dtype=float), stat, np.asarray(cols["var"], dtype=float))
        per = [float(stat[i]) if i >= 0 else None for i in idx]
        res["runs"][label] = {"model": model, "consistency_weight": float(weight),
                              "model_sha256": attrs.get("model_sha256"), "stat": per}
    write(res, Path(args.out))


def write(res: dict, out: Path) -> None:
    out.write_text(json.dumps(res, indent=1))
    lines = [f"# Loud signals: zero-lag statistic of injections of network SNR {res['snr'][0]:g}-{res['snr'][1]:g} "
             f"every {res['spacing_s']:g} s, {res['hours']:g} h", "",
             "Command: `.venv/bin/python benchmarks/loud_scores.py "
             + " ".join(f"--run {k} {r['model']} {r['consistency_weight']:g}" for k, r in res["runs"].items()) + "`",
             "", "Each injection's statistic is its loudest zero-lag trigger within the trigger's `var`; injections in "
             "the 64-s PSD warm-up have none. A clean background's statistic at FAR 1/day is about 2.9.", "",
             "| run | model | consistency test | injections scored | median | 10th percentile | below 3 | below 2 |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in res["runs"].items():
        s = np.array([np.nan if v is None else v for v in r["stat"]])
        s = s[np.isfinite(s)]
        lines.append(f"| {label} | `{r['model']}` | {'on' if r['consistency_weight'] > 0 else 'off'} | {s.size} | "
                     f"{np.median(s):.2f} | {np.percentile(s, 10):.2f} | {int((s < 3).sum())} | {int((s < 2).sum())} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
