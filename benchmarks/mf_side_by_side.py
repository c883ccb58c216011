"""gwstream and the matched-filter reference on the same data, each with FARs from its own time slides.

For one data file with injections (``gwstream simulate`` output, or MLGWSC-1
data from ``benchmarks/mlgwsc_data.py``):

1. the first ``--hours`` of data are copied to ``--work`` (whole segments,
   the last one cut), with the injections that merge in them;
2. ``gwstream search --slides N --background-out`` of it, gating at
   ``--gate`` sigma (0: off) and hierarchical removal as configured;
3. ``benchmarks/bench_mf.py``'s matched filter of the same copy with the same
   slides and, when gating, the gates gwstream opened (so both analyse the same
   gated strain), with ``--chisq-bins`` its power chi-squared test, turned into
   an archive and a background;
4. ``gwstream evaluate`` of both against their own backgrounds.

    .venv/bin/python benchmarks/mf_side_by_side.py DATA.hdf INJ.hdf --hours 6 --slides 100 --gate 25 \\
        --work out/mfsbs --out benchmarks/results/mf-side-by-side.json

Writes ``--out`` (JSON: both evaluate summaries, timings) and markdown: sensitive
distance at FAR 1/day and 1/month for both, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FARS = (1.0, 1.0 / 30)


def cut(data: str, injections: str, hours: float, out_data: Path, out_inj: Path) -> float:
    """The first ``hours`` of ``data`` (whole segments in time order, the last cut) and the injections merging in
    them; returns the seconds copied."""
    from gwstream.daemon.io.framefiles import iter_hdf5_segments

    left = int(hours * 3600)
    kept = []
    with h5py.File(out_data, "w") as fo:
        for seg in iter_hdf5_segments(data, ("H1", "L1")):
            if seg.ifo == "H1":
                take = min(left, int(len(seg.dataset) // seg.sample_rate))
                left -= take
            else:
                take = kept[-1][2] if kept and kept[-1][0] == seg.gps_start_ns else 0
            if take <= 0:
                continue
            n = take * seg.sample_rate
            gps = seg.gps_start_ns / 1e9
            d = fo.require_group(seg.ifo).create_dataset(str(int(gps)), data=seg.dataset[:n])
            d.attrs["start_time"], d.attrs["delta_t"] = gps, 1.0 / seg.sample_rate
            if seg.ifo == "H1":
                kept.append((seg.gps_start_ns, gps, take))
    with h5py.File(injections, "r") as fi, h5py.File(out_inj, "w") as fo:  # every column and attribute, cut
        tc = np.asarray(fi["tc"][()], float)
        inside = np.zeros(tc.size, bool)
        for _, gps, take in kept:
            inside |= (tc >= gps) & (tc < gps + take)
        for k, v in fi.items():
            if isinstance(v, h5py.Dataset):
                fo.create_dataset(k, data=v[()][inside] if v.shape[:1] == tc.shape else v[()])
                fo[k].attrs.update(dict(v.attrs))
        fo.attrs.update(dict(fi.attrs))
    return float(sum(k[2] for k in kept))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("injections")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--slides", type=int, default=100)
    ap.add_argument("--gate", type=float, default=0.0, help="whiten.gate_threshold for gwstream (0: off)")
    ap.add_argument("--threads", type=int, default=2, help="matched-filter worker processes")
    ap.add_argument("--chisq-bins", type=int, default=0, help="the matched filter's power chi-squared bins (0: "
                    "none; it then ranks on network SNR, which glitches defeat)")
    ap.add_argument("--work", default="out/mf_side_by_side")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mf-side-by-side.json"))
    ap.add_argument("--model", help="gwstream's checkpoint (default: the shipped model)")
    ap.add_argument("--settings", help="TOML gwstream's search reads (e.g. a ranking.removal_background made with "
                    "--model's own network); --gate is added to its [whiten]")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, inj = work / "data.hdf", work / "injections.hdf"
    seconds = cut(args.data, args.injections, args.hours, data, inj)
    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    res = {"benchmark": "mf_side_by_side", "data": args.data, "hours": seconds / 3600, "n_slides": args.slides,
           "gate_threshold": args.gate, "model": args.model or "default", "chisq_bins": args.chisq_bins}
    cfg = work / "search.toml"
    from glitch_study import with_gate

    cfg.write_text(with_gate(Path(args.settings).read_text() if args.settings else "", args.gate) or "\n")
    model = ["--model", args.model] if args.model else []
    trig, bg = work / "gwstream-triggers.hdf", work / "gwstream-background.h5"
    t0 = time.perf_counter()
    subprocess.run([*gw, "search", str(data), str(trig), "--slides", str(args.slides), "--background-out", str(bg),
                    "--config", str(cfg), "--no-progress", "--log-level", "warning", *model], check=True)
    res["gwstream_s"] = round(time.perf_counter() - t0, 1)
    mf, mf_trig, mf_bg = work / "mf.h5", work / "mf-triggers.hdf", work / "mf-background.h5"
    bank = work / "mf477.npz"  # the issue-4 reference bank (benchmarks/validate.py's placement), as bench_mf reads it
    if not bank.exists():
        from gwstream.daemon.bank import TemplateBank
        from gwstream.daemon.bank.templates import load_template_params

        p = load_template_params(ROOT / "configs" / "banks" / "mf477.csv")
        TemplateBank.from_params(p["mass1"], p["mass2"], p["spin1z"], p["spin2z"], workers=2).save(bank)
    gates = ["--gates-from", str(trig)] if args.gate > 0 else []
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_mf.py"), str(data), "--out", str(mf),
                          "--bank", str(bank), "--slides", str(args.slides), "--threads", str(args.threads),
                          "--chisq-bins", str(args.chisq_bins), "--archive-out", str(mf_trig),
                          str(mf_bg), *gates], check=True, capture_output=True, text=True, cwd=ROOT)
    res["mf_s"] = round(time.perf_counter() - t0, 1)
    res["mf_summary"] = json.loads(out.stdout.strip().splitlines()[-1])
    for name, (t, b) in {"gwstream": (trig, bg), "matched filter": (mf_trig, mf_bg)}.items():
        ev = work / f"evaluate-{name.replace(' ', '-')}"
        subprocess.run([*gw, "evaluate", "--injections", str(inj), "--foreground", str(t), "--background", str(b),
                        "--out", str(ev), "--far-per-day", *[str(f) for f in FARS]], check=True)
        res[name] = json.loads((ev / "summary.json").read_text())
    Path(args.out).write_text(json.dumps(res, indent=1))
    write(res, Path(args.out))


def write(res: dict, out: Path) -> None:
    def dist(summary, f):
        for k, v in summary.get("at_far_per_day", {}).items():
            if abs(float(k) - f) <= 1e-5 * f:
                return v.get("distance_mpc"), v.get("distance_sigma_mpc")
        return None, None

    lines = [f"# gwstream and the matched filter on {Path(res['data']).name}, first {res['hours']:.2f} h, "
             f"{res['n_slides']} slides each, gating {res['gate_threshold']:g} sigma" +
             (" (off)" if not res["gate_threshold"] else ""), "", f"gwstream's model: {res.get('model', 'default')}",
             "",
             f"gwstream search {res['gwstream_s']} s; matched filter {res['mf_s']} s "
             f"({res['mf_summary'].get('n_templates')} templates, {res['mf_summary'].get('n_gates', 0)} gates applied, "
             + (f"ranked on re-weighted SNR with a {res['chisq_bins']}-bin power chi-squared)."
                if res.get("chisq_bins") else "ranked on network SNR, no chi-squared)."),
             "", "| FAR | gwstream (Mpc) | matched filter (Mpc) | gwstream / matched filter |", "|---|---|---|---|"]
    for f in FARS:
        g, gs = dist(res["gwstream"], f)
        m, ms = dist(res["matched filter"], f)
        ratio = f"{g / m:.3f}" if g and m else "-"
        cell = []
        for name, d, e in (("gwstream", g, gs), ("matched filter", m, ms)):
            reach = res[name].get("background_livetime_s")
            if not d and reach and reach * f < 86400.0:  # the background is shorter than 1/f: no trigger can get there
                cell.append(f"unreachable ({reach / 86400:.1f} days of slides)")
            else:
                cell.append(f"{d:.0f} ± {e:.0f}" if d else "0 (none found)" if d is not None else "-")
        lines.append(f"| 1/{1 / f:g} days | {cell[0]} | {cell[1]} | {ratio} |")
    extra = res.get("gwstream", {}).get("n_background_triggers"), res.get("mf_summary", {}).get("n_background")
    lines += ["", f"Slid triggers in the backgrounds: gwstream {extra[0]}, matched filter {extra[1]}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
