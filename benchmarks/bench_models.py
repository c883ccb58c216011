"""Scoring throughput of the three networks, and the factorized stream and time-slide paths.

The factorized network is timed as built by default and with a 32-pair template branch
(``factorized+templates``: 32 filter pairs of 1024 taps, 32 more head units).

Plain script: ``python benchmarks/bench_models.py [--duration 32] [--threads 2] [--repeat 5]``.
On ``--threads`` CPU threads, with freshly initialised weights (speed does not
depend on training), it times:

- *per-window*: :meth:`Scorer.score` on 1-s windows (2048 Hz, two detectors)
  cut every 1/16 s, i.e. 16 windows per second of data, for every network;
- *stream*: the factorized model's ``encode_stream`` once over the data and
  ``head_windows`` for the same 16 windows/s (the ranking stage's path);
- *slides*: one ``head_windows`` call scoring K time slides of the 16 windows
  of one second of data (L1 shifted by multiples of 16 feature steps,
  circularly over a 20-s feature cache).

Throughput is seconds of two-detector data per wall second (× real time),
best of ``--repeat``. FLOPs come from ``torch.utils.flop_counter`` (convolutions
and matrix products only; 1 MAC = 2 FLOPs). The stream path is compared with
the per-window path of the same model in the same run; for the stream path
"MFLOP/win" is the encoder's cost per second of data over 16 windows. Writes
``benchmarks/results/models.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from gwstream.models.networks import MODEL_NAMES, build_model, count_parameters
from gwstream.models.scorer import Scorer
from torch.utils.flop_counter import FlopCounterMode

FS = 2048
WINDOWS_PER_S = 16


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, allocator
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=32.0, help="seconds of data per timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--slides", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "models.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n_s = int(round(args.duration * FS))
    stream = rng.standard_normal((2, n_s)).astype(np.float32)
    stride = FS // WINDOWS_PER_S
    n_win = (n_s - FS) // stride + 1
    windows = np.stack([stream[:, i * stride : i * stride + FS] for i in range(n_win)])
    data_s = n_win / WINDOWS_PER_S  # seconds of data the windows advance over
    results: dict = {
        "benchmark": "models",
        "threads": args.threads,
        "duration_s": args.duration,
        "windows_per_s": WINDOWS_PER_S,
        "n_windows": n_win,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "rows": {},
    }
    rows = results["rows"]
    one = torch.from_numpy(windows[:1])
    # the networks as built by default, and the factorized one with a 32-pair template branch (v11's geometry)
    variants = [(name, name, {}) for name in MODEL_NAMES]
    variants.append(("factorized+templates", "factorized", {"template_pairs": 32, "template_taps": 1024}))
    for name, kind, hp in variants:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(kind, **hp).eval()
        scorer = Scorer(model, device="cpu", batch_size=256, threads=args.threads)
        t = best_of(lambda: scorer.score(windows), args.repeat)
        rows[f"{name} per-window"] = {
            "params": count_parameters(model),
            "weights_bytes": sum(v.numel() * v.element_size() for v in model.state_dict().values()),
            "mflop_per_window": flops(lambda: model(one)) / 1e6,
            "seconds": t,
            "ms_per_data_s": 1e3 * t / data_s,
            "x_real_time": data_s / t,
        }
        if model.joint:
            continue
        x = torch.from_numpy(stream)
        with torch.inference_mode():
            feats = model.encode_stream(x)
        starts = np.arange(0, feats.shape[-1] - model.window_steps + 1, stride // model.stride_samples)
        t_enc = best_of(lambda: scorer.encode_stream(stream), args.repeat)
        t_head = best_of(lambda: scorer.head_windows(feats, starts), args.repeat)
        one_s = torch.from_numpy(stream[:, : 2 * FS])
        f_enc = flops(lambda: model.encode_stream(one_s)) / 2  # per second: 2 s of data
        rows[f"{name} stream"] = {
            "mflop_per_data_s_encoder": f_enc / 1e6,
            "mflop_per_window": f_enc / 1e6 / WINDOWS_PER_S,  # encoder amortised over 16 windows/s
            "encode_seconds": t_enc,
            "head_seconds": t_head,
            "seconds": t_enc + t_head,
            "ms_per_data_s": 1e3 * (t_enc + t_head) / data_s,
            "x_real_time": data_s / (t_enc + t_head),
            "speedup_vs_per_window": rows[f"{name} per-window"]["seconds"] / (t_enc + t_head),
        }
        # K time slides of one second of data (16 windows) from a 20-s cache.
        cache = torch.from_numpy(rng.standard_normal((2, 20 * FS)).astype(np.float32))
        with torch.inference_mode():
            cfeats = model.encode_stream(cache)
        win = 16 * np.arange(WINDOWS_PER_S)
        for k in args.slides:
            slides = 16 * (1 + np.arange(k))
            t_k = best_of(lambda: scorer.head_windows(cfeats, win, slides, wrap=True), max(1, args.repeat // 2))
            rows[f"{name} {k} slides x 1 s"] = {
                "slides": k,
                "seconds": t_k,
                "us_per_slide_window": 1e6 * t_k / (k * WINDOWS_PER_S),
                "x_real_time": 1.0 / t_k,
                "background_s_per_wall_s": k / t_k,
            }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"threads={args.threads}  data={data_s:.1f} s  windows={n_win} (16/s)  torch {torch.__version__}")
    print(f"{'path':34s} {'params':>8s} {'MFLOP/win':>10s} {'ms/data-s':>10s} {'x real time':>12s}")
    for key, r in rows.items():
        params = f"{r['params']:8d}" if "params" in r else " " * 8
        mfl = f"{r['mflop_per_window']:10.1f}" if "mflop_per_window" in r else " " * 10
        ms = f"{r['ms_per_data_s']:10.2f}" if "ms_per_data_s" in r else f"{1e3 * r['seconds']:8.1f}ms"
        extra = f"  ({r['background_s_per_wall_s']:.0f} s of background / s)" if "slides" in r else ""
        print(f"{key:34s} {params} {mfl} {ms} {r['x_real_time']:12.1f}{extra}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
