"""Replay throughput and alert latency of the whole daemon (real processes, real sockets).

Throughput: ``gwstream replay --speed max`` over ``--minutes`` of simulated
2048-Hz H1/L1 data with injections, as a multiple of real time, for each
``--slides`` value; the peer in the same run is ``gwstream search`` on the
same file with the same settings (the same pipeline without processes and
sockets), so the ratio is the daemon's overhead. The second peer is a plain
matched-filter search of the same file (``benchmarks/bench_mf.py``: the
477-template bank of the issue-4 reference, FFTW when the ``bench`` extra is
installed), the yardstick the throughput target is set against.

Latency: ``gwstream replay --speed real`` over ``--latency-minutes`` of data
with loud injections every 30 s: the alerts' ``frame_end_to_alert_s``
(ingest completing the block that closed the cluster -> alert published) and
``merger_to_alert_s`` (merger GPS -> alert, frames arriving when their data
ends), p50 / p99.

    .venv/bin/python benchmarks/bench_replay.py --minutes 20 --slides 0 1000 --latency-minutes 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GW = [sys.executable, "-m", "gwstream.daemon.cli"]


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--slides", type=int, nargs="*", default=[0, 1000], help="time slides of each throughput "
                    "run; none: latency only")
    ap.add_argument("--latency-minutes", type=float, default=10.0, help="0: skip the real-time run")
    ap.add_argument("--latency-seed", type=int, default=8, help="seed of the real-time run's data and injections")
    ap.add_argument("--latency-followup", default="both", choices=("off", "on", "both"),
                    help="real-time run(s) without / with the alerts' follow-up (sky maps); both: off, then on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mf", action="store_true", help="skip the matched-filter peer")
    ap.add_argument("--group-blocks", type=int, default=None, help="model.group_blocks (default: the config "
                    "default); 1 = the encoder takes one block at a time")
    ap.add_argument("--model", default="", help="checkpoint (default: the shipped models/weights/default.pt); the "
                    "whitening follows the phase it was trained with")
    ap.add_argument("--work", default="out/bench_replay")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "replay.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from gwstream.models import default_model_path
    from gwstream.models.checkpoint import read_checkpoint_info
    from gwstream.models.scorer import load_checkpoint

    model_path = Path(args.model) if args.model else default_model_path()
    meta = load_checkpoint(model_path)[1]
    phase = (meta.get("whiten") or {}).get("phase", "linear")
    # the consistency test needs a template branch: off for a model without one, whatever the default
    templates = int(read_checkpoint_info(model_path).hparams.get("template_pairs", 0))
    cfg = _toml(work / "bench.toml", f"""
[simulate]
sample_rate_hz = 2048
[simulate.injections]
approximant = "IMRPhenomD"
mass1_msun = [20.0, 40.0]
mass2_msun = [15.0, 35.0]
snr = [15.0, 25.0]
spacing_s = 30.0
jitter_s = 3.0
[model]
threads = {args.threads}
path = "{model_path.resolve()}"{"" if args.group_blocks is None else f"{chr(10)}group_blocks = {args.group_blocks}"}
[whiten]
phase = "{phase}"
{"" if templates else f"[ranking]{chr(10)}consistency_weight = 0.0{chr(10)}"}[output]
far_threshold_hz = 0.01
""")
    res: dict = {"benchmark": "replay", "minutes": args.minutes, "threads": args.threads, "model": str(model_path),
                 "whiten_phase": phase, "group_blocks": args.group_blocks, "runs": []}
    duration = int(args.minutes * 60)
    data = work / f"data-{duration}s.hdf"
    if args.slides and not data.exists():
        subprocess.run([*GW, "simulate", "--config", str(cfg), "--duration", str(duration), "--seed", "7", "--out",
                        str(data), "--injections", str(work / "inj.hdf"), "--no-progress"], check=True)
    for k in args.slides:
        t0 = time.perf_counter()
        subprocess.run([*GW, "search", str(data), str(work / f"search-{k}.h5"), "--config", str(cfg), "--slides",
                        str(k), "--no-progress", "--log-level", "warning"], check=True)
        t_search = time.perf_counter() - t0
        # a replay into a directory holding an earlier run's state continues that run
        # (analysed data skipped, published events not re-sent): start from nothing
        shutil.rmtree(work / f"replay-{k}", ignore_errors=True)
        t0 = time.perf_counter()
        r = subprocess.run([*GW, "replay", str(data), "--config", str(cfg), "--out", str(work / f"replay-{k}"),
                            "--speed", "max", "--slides", str(k), "--log-level", "warning"], check=True,
                           capture_output=True, text=True)
        t_replay = time.perf_counter() - t0
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        row = {"slides": k, "replay_wall_s": round(t_replay, 1), "search_wall_s": round(t_search, 1),
               "replay_x_real_time": round(duration / t_replay, 1), "search_x_real_time": round(duration / t_search, 1),
               "ratio_replay_over_search": round(t_search / t_replay, 2), "n_triggers": summary["n_triggers"]}
        res["runs"].append(row)
        print(json.dumps(row), flush=True)
    if args.slides and not args.no_mf:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_mf import run_mf_search, validation_bank

        bank, _ = validation_bank()
        mf = run_mf_search(data, bank=bank, out=work / "mf-triggers.h5", threads=args.threads)
        res["matched_filter"] = {k: mf[k] for k in ("wall_s", "x_real_time", "data_s", "analysed_s", "n_templates",
                                                   "n_triggers", "fft", "threads")}
        print(json.dumps(res["matched_filter"]), flush=True)
    if args.latency_minutes > 0:
        lat_s = int(args.latency_minutes * 60)
        ldata = work / f"latency-{lat_s}s-seed{args.latency_seed}.hdf"
        if not ldata.exists():
            subprocess.run([*GW, "simulate", "--config", str(cfg), "--duration", str(lat_s), "--seed",
                            str(args.latency_seed), "--out", str(ldata), "--injections",
                            str(work / f"inj-latency-seed{args.latency_seed}.hdf"), "--no-progress"], check=True)
        modes = {"on": [True], "off": [False], "both": [False, True]}[args.latency_followup]
        for followup in modes:
            out = work / ("replay-real-followup" if followup else "replay-real")
            shutil.rmtree(out, ignore_errors=True)
            lcfg = _toml(work / f"bench-followup-{'on' if followup else 'off'}.toml",
                         cfg.read_text() + f"[followup]\nenabled = {'true' if followup else 'false'}\n")
            subprocess.run([*GW, "replay", str(ldata), "--config", str(lcfg), "--out", str(out), "--speed", "real",
                            "--log-level", "warning"], check=True, capture_output=True)
            lines = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
            alerts = [a for a in lines if a.get("alert_type", "PRELIMINARY") == "PRELIMINARY"]
            updates = [a for a in lines if a.get("alert_type") == "UPDATE"]
            lat = {}
            for key, rows in (("frame_end_to_alert_s", alerts), ("merger_to_block_end_s", alerts),
                              ("merger_to_alert_s", alerts), ("alert_to_followup_s", updates),
                              ("merger_to_skymap_s", updates), ("followup_runtime_s", updates)):
                v = np.array([a["latency"][key] for a in rows if a["latency"].get(key) is not None])
                if v.size:
                    lat[key] = {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                                "max": float(v.max()), "n": int(v.size)}
            key = "latency_followup" if followup else "latency"
            res[key] = {"minutes": args.latency_minutes, "seed": args.latency_seed, "followup": followup,
                        "n_alerts": len(alerts), "n_updates": len(updates),
                        "n_skymaps": sum(1 for a in updates if a.get("skymap")), **lat}
            print(json.dumps(res[key]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    what = f"{args.minutes:g} min" if res["runs"] else f"{args.latency_minutes:g} min at --speed real"
    lines = [f"# Replay: {what} of 2048-Hz H1/L1, model `{model_path.name}` ({phase}-phase "
             f"whitening), {args.threads} threads"
             + ("" if args.group_blocks is None else f", model.group_blocks = {args.group_blocks}"), ""]
    mf = res.get("matched_filter")
    if res["runs"]:
        lines += ["| slides | replay x real time | search x real time (peer) | replay / search |"
                  + (" matched filter x real time (peer) | replay / matched filter |" if mf else ""),
                  "|---|---|---|---|" + ("---|---|" if mf else "")]
    lines += [f"| {r['slides']} | {r['replay_x_real_time']} | {r['search_x_real_time']} | "
              f"{r['ratio_replay_over_search']} |"
              + (f" {mf['x_real_time']} | {round(r['replay_x_real_time'] / mf['x_real_time'], 1)} |" if mf else "")
              for r in res["runs"]]
    if mf:
        lines += ["", f"Matched filter: `benchmarks/bench_mf.py`, {mf['n_templates']} aligned-spin IMRPhenomD "
                      f"templates, {mf['fft']}, {mf['threads']} processes, {mf['n_triggers']} coincident triggers; "
                      f"{mf['wall_s']} s for {mf['data_s']:g} s of data."]
    for name, label in (("latency", "follow-up off"), ("latency_followup", "follow-up on (sky maps)")):
        if name not in res:
            continue
        r = res[name]
        lines += ["", f"Latency at --speed real, {label} ({args.latency_minutes:g} min, seed {args.latency_seed}, "
                      f"{r['n_alerts']} alerts, {r['n_updates']} follow-ups, {r['n_skymaps']} sky maps):"]
        for key in ("frame_end_to_alert_s", "merger_to_block_end_s", "merger_to_alert_s", "alert_to_followup_s",
                    "merger_to_skymap_s", "followup_runtime_s"):
            if key in r:
                v = r[key]
                lines.append(f"- {key}: p50 {v['p50']:.3f} s, p99 {v['p99']:.3f} s (max {v['max']:.3f} s)")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
