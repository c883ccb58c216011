"""Does the statistic behave like a coincidence statistic? Loud signals and single-detector signals.

    .venv/bin/python benchmarks/coincidence_scan.py --models models/weights/default.pt models/weights/baseline.pt

On held-out windows whitened like the daemon's (the validation machinery of
``gwstream train``, seed 777, disjoint from training), for each model:

* coincident signals at network SNR 8 ... 64: the median statistic and the
  fraction above the per-window 1e-3 noise threshold (a ranking statistic must
  keep rising, or at least not fall, with SNR);
* signals in *one* detector only at single-detector SNR 8 ... 64: what one
  time slide of a real event (or a glitch) looks like. The fraction above the
  same threshold should be near zero, or the time-slid background fills with
  slides of real events and no FAR can be low.

Writes ``results/coincidence_scan.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from gwstream.daemon.config import load_config
from gwstream.daemon.train.trainset import WaveformBank, WindowMaker, make_validation_set
from gwstream.models.scorer import load_checkpoint
from gwstream.models.train import score_windows

SNRS = (8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
SINGLE = (8.0, 16.0, 32.0, 64.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["models/weights/default.pt"])
    ap.add_argument("--config", default="configs/train.toml")
    ap.add_argument("--n-noise", type=int, default=2000)
    ap.add_argument("--n-per-snr", type=int, default=100)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "coincidence_scan.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    t = cfg.train
    rate = cfg.data.analysis_rate_hz
    bank = WaveformBank.generate(t.injections, 200, seed=args.seed, sample_rate_hz=rate, workers=1, cache=None)
    data: dict = {}

    def windows(phase: str):
        """Held-out windows whitened with the ``phase`` filter (same stretches and signals for every phase)."""
        if phase in data:
            return data[phase]
        maker = WindowMaker.from_config(cfg, bank, args.seed, phase)
        x, y, snr = make_validation_set(maker, args.seed, args.n_noise, SNRS, args.n_per_snr)
        rng = np.random.default_rng(args.seed + 5)
        singles, single_snr = [], []
        for k, rho1 in enumerate(SINGLE):
            white, taps = maker.pool.stretch((args.seed, 5, k), maker.stretch_s, rng)
            x1, _, _ = maker.from_stretch(white, taps, rng, args.n_per_snr, 0, n_single=args.n_per_snr,
                                          single_snr_range=(rho1, rho1))
            singles.append(x1)
            single_snr.append(np.full(args.n_per_snr, rho1))
        data[phase] = (x, y, snr, np.concatenate(singles), np.concatenate(single_snr))
        return data[phase]

    results = {}
    for path in args.models:
        model, meta, sha = load_checkpoint(path)
        phase = (meta.get("whiten") or {}).get("phase", cfg.whiten.phase)  # as the model was trained and runs
        x, y, snr, x1, s1 = windows(phase)
        s, o = score_windows(model, x), score_windows(model, x1)
        noise = np.sort(s[y == 0])
        thr = float(noise[int(len(noise) * (1 - 1e-3))])
        results[path] = {
            "sha256": sha, "whiten_phase": phase, "threshold_fpr_1e-3": thr,
            "coincident": {f"{r:g}": {"median": float(np.median(s[(y == 1) & np.isclose(snr, r)])),
                                      "above": float(np.mean(s[(y == 1) & np.isclose(snr, r)] > thr))} for r in SNRS},
            "single": {f"{r:g}": {"median": float(np.median(o[s1 == r])), "above": float(np.mean(o[s1 == r] > thr))}
                       for r in SINGLE},
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "coincidence_scan", "n_noise": args.n_noise,
                               "n_per_snr": args.n_per_snr, "seed": args.seed, "models": results}, indent=1))
    lines = [f"# Coincidence scan ({args.n_noise} noise windows, {args.n_per_snr} windows per row)", "",
             "Fraction of windows above the per-window FPR 1e-3 noise threshold (median statistic in brackets).", "",
             "| signal | " + " | ".join(f"`{Path(p).name}`" for p in results) + " |",
             "|---|" + "---|" * len(results)]
    for kind, snrs, label in (("coincident", SNRS, "both detectors, network SNR"),
                              ("single", SINGLE, "one detector only, SNR")):
        for r in snrs:
            cells = [f"{v[kind][f'{r:g}']['above']:.2f} ({v[kind][f'{r:g}']['median']:.1f})" for v in results.values()]
            lines.append(f"| {label} {r:g} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
