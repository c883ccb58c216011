"""How loud glitches and signals are in the whitened stream: the numbers behind ``whiten.gate_threshold``.

Runs the search's conditioner (default configuration, no gating) over a
``gwstream simulate`` file and reports, for every injection (``--injections``)
and every glitch (``--glitches``) inside the analysed stretch, the largest
|whitened sample| in its detector(s) within ``--half-width`` s of its time,
binned by its SNR. A gate threshold should lie above what any signal reaches
and below what the glitches that matter reach.

    .venv/bin/python benchmarks/gate_threshold.py DATA.hdf --injections INJ.hdf --glitches GLITCHES.hdf \\
        --hours 2 --out benchmarks/results/gate-threshold
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def whitened(path: str, hours: float):
    """(first absolute analysis sample, rate, whitened stream (2, n)) of the first ``hours`` of ``path``."""
    from gwstream.daemon.config import Config
    from gwstream.daemon.proc.offline import file_blocks
    from gwstream.daemon.stream.conditioning import Conditioner
    from gwstream.daemon.units import NS

    cfg = Config()
    cond, data_s = None, 0.0
    parts, start = [], None
    for block in file_blocks(path, cfg):  # the blocks `gwstream search` reads
        if data_s >= hours * 3600:
            break
        cond = cond or Conditioner.from_config(cfg, input_rate_hz=block.sample_rates[0], copy_windows=False)
        r = cond.process(block)
        data_s += block.duration_ns / NS
        if r.stream_start is None or not r.stream.shape[1]:
            continue
        if start is None:
            start = int(r.stream_start)
        elif int(r.stream_start) != start + sum(p.shape[1] for p in parts):
            break  # a gap: keep the first contiguous stretch
        parts.append(np.abs(r.stream))
    return start, cond.rate, np.concatenate(parts, axis=1)


def peak(start: int, rate: int, x: np.ndarray, t_gps: float, ifo: int, half: float) -> float:
    a = int(round(t_gps * rate)) - start - int(half * rate)
    b = a + 2 * int(half * rate)
    if a < 0 or b > x.shape[1]:
        return float("nan")
    return float(x[ifo, a:b].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--injections", default=None)
    ap.add_argument("--glitches", default=None)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--half-width", type=float, default=0.5, help="s around each time searched for the peak")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    from gwstream.daemon.io.framefiles import read_glitch_file, read_injection_file

    start, rate, x = whitened(args.data, args.hours)
    rows = []
    if args.injections:
        inj = read_injection_file(args.injections)
        snr = np.asarray(inj["network_snr"], float)
        for t, s in zip(np.asarray(inj["tc"], float), snr):
            p = max(peak(start, rate, x, t, i, args.half_width) for i in (0, 1))
            if np.isfinite(p):
                rows.append({"kind": "BBH injection", "snr": float(s), "peak_sigma": p})
    if args.glitches:
        g = read_glitch_file(args.glitches)
        for t, ifo, kind, s in zip(g["time"], g["ifo"], g["kind"], g["snr"]):
            p = peak(start, rate, x, float(t), ("H1", "L1").index(str(ifo)), args.half_width)
            if np.isfinite(p):
                rows.append({"kind": str(kind), "snr": float(s), "peak_sigma": p})
    edges = [0, 10, 20, 50, 100, 300, 1000, 1e5]
    table = []
    for kind in sorted({r["kind"] for r in rows}):
        for lo, hi in zip(edges[:-1], edges[1:]):
            p = np.array([r["peak_sigma"] for r in rows if r["kind"] == kind and lo <= r["snr"] < hi])
            if p.size:
                table.append({"kind": kind, "snr": [lo, hi], "n": int(p.size), "peak_median": float(np.median(p)),
                              "peak_min": float(p.min()), "peak_max": float(p.max())})
    print(json.dumps(table, indent=1))
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps({"hours": args.hours, "rows": rows, "table": table}, indent=1))
        lines = [f"# Peak |whitened| of signals and glitches ({args.hours:g} h, default conditioning, no gating)", "",
                 "Command: `.venv/bin/python benchmarks/gate_threshold.py DATA.hdf --injections INJ.hdf --glitches "
                 f"GLITCHES.hdf --hours {args.hours:g}`", "",
                 "| kind | SNR (detector; network for injections) | n | peak median (sigma) | min | max |",
                 "|---|---|---|---|---|---|"]
        for r in table:
            lines.append(f"| {r['kind']} | {r['snr'][0]:g}-{r['snr'][1]:g} | {r['n']} | {r['peak_median']:.1f} | "
                         f"{r['peak_min']:.1f} | {r['peak_max']:.1f} |")
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
