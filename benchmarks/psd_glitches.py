"""The streaming PSD estimator on glitchy against clean data: refreshes accepted, rejected, and how far they move.

Runs the search's conditioner alone (default ``[psd]``: median of 4-s Welch
segments over 64 s, refreshed every 8 s, an estimate whose broadband
sensitivity moves by more than ``max_change`` rejected) over the first
``--hours`` of each file given, and reports per file the estimates made,
accepted and rejected, and the quantiles of the broadband change.

    .venv/bin/python benchmarks/psd_glitches.py clean.hdf glitchy.hdf --hours 2 --out benchmarks/results/psd-glitches

Files are ``gwstream simulate`` output (e.g. ``benchmarks/glitch_study.py``'s
clean and glitchy data: the same Gaussian noise, with and without glitches).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def probe(path: str, hours: float) -> dict:
    from gwstream.daemon.config import Config
    from gwstream.daemon.proc.offline import file_blocks
    from gwstream.daemon.stream.conditioning import Conditioner
    from gwstream.daemon.units import NS

    cfg = Config()
    cond, data_s = None, 0.0
    changes, accepted, rejected = [], 0, 0
    for block in file_blocks(path, cfg):  # the blocks `gwstream search` reads
        if data_s >= hours * 3600:
            break
        cond = cond or Conditioner.from_config(cfg, input_rate_hz=block.sample_rates[0])
        u = cond.process(block).psd_update
        data_s += block.duration_ns / NS
        if u.estimated and np.isfinite(u.change):
            changes.append(float(u.change))
        accepted += bool(u.accepted)
        rejected += bool(u.rejected)
    ch = np.asarray(changes)
    return {"file": str(path), "hours": data_s / 3600, "estimates": int(ch.size), "accepted": accepted,
            "rejected": rejected, "change_p50": float(np.median(ch)), "change_p99": float(np.percentile(ch, 99)),
            "change_max": float(ch.max()), "max_change": cfg.psd.max_change, "min_change": cfg.psd.min_change}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    rows = [probe(f, args.hours) for f in args.files]
    print(json.dumps(rows, indent=1))
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        lines = [f"# Streaming PSD on clean and glitchy data ({args.hours:g} h each)", "",
                 f"Command: `.venv/bin/python benchmarks/psd_glitches.py {' '.join(args.files)} --hours {args.hours:g}`",
                 "", "| file | estimates | accepted | rejected | change p50 | p99 | max |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {Path(r['file']).name} | {r['estimates']} | {r['accepted']} | {r['rejected']} | "
                         f"{r['change_p50']:.4f} | {r['change_p99']:.4f} | {r['change_max']:.4f} |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
