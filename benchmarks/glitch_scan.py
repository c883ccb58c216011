"""How does a network rank glitches? Held-out glitch windows against its own noise threshold.

    .venv/bin/python benchmarks/glitch_scan.py --models models/weights/default.pt out/glitch.pt

On held-out windows whitened like the daemon's (``gwstream train``'s machinery, seed 778,
disjoint from training's), for each model:

* the per-window noise thresholds at FPR 1e-3 and 1e-4, from ``--n-noise`` plain noise windows;
* glitches of one population at a fixed SNR (``gwstream simulate``'s shapes: blips, scattered-light
  arches, loud transients), in one detector, an independent one in each detector (what a time
  slide pairs), and with ``--lined-up`` a pair lined up within 20 ms (the slid pairs that look most
  like a signal): the fraction above each threshold and the median statistic. A coincidence statistic
  should keep them near zero: every one above the threshold is a background entry;
* coincident signals at network SNR 8 and 12 with and without a blip (SNR 16 or 64) somewhere in the
  window of one detector: the fraction found at the same thresholds (a glitch should not hide a
  signal); with ``--loud-signals``, coincident signals at those network SNRs too.

With ``--consistency W Z0 SLOPE``, each model with a template branch gets a second column: its
statistic less the per-detector consistency test's penalty (``ranking.consistency_weight``,
``_threshold``, ``_slope``; :mod:`gwstream.daemon.stream.consistency`), each detector's residual
taken from the window alone, over the steps the head reads, as the search's scorer does.

The windows are the same for every model trained with the same whitening phase. Writes ``--out``
(JSON) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from gwstream.daemon.config import GlitchConfig, load_config
from gwstream.daemon.stream.consistency import Consistency, span_energies, window_residual
from gwstream.daemon.train.trainset import COINCIDENT_DT_S, WaveformBank, WindowMaker
from gwstream.models.scorer import load_checkpoint
from gwstream.models.train import score_windows

GLITCHES = (("blip", (8.0, 16.0, 32.0, 64.0, 128.0, 256.0)), ("scatter", (8.0, 16.0, 32.0, 64.0, 128.0)),
            ("loud", (300.0, 1000.0)))
SIGNAL_SNRS = (8.0, 12.0)
SIGNAL_BLIPS = (0.0, 16.0, 64.0)
FPRS = (1e-3, 1e-4)


def population(kind: str, snr: float) -> GlitchConfig:
    """Only ``kind``, at SNR ``snr``."""
    rates = {f"{k}_rate_per_hour": float(k == kind) for k in ("blip", "scatter", "loud")}
    if kind == "loud":
        return GlitchConfig(**rates, loud_snr=(snr, snr))
    return GlitchConfig(**rates, snr=(snr, snr))


def window_residuals(model, x: np.ndarray, slope: float, batch_size: int = 256) -> np.ndarray:
    """``(2, B)``: each detector's consistency residual of windows ``x`` ``(B, 2, N)``, from the window alone."""
    k, fs, rf, p, taps = (model.lag_steps, model.stride_samples, model.receptive_field_samples,
                          model.template_pairs, model.template_taps)
    out = np.empty((2, x.shape[0]))
    model.eval()
    for d in range(2):
        for i in range(0, x.shape[0], batch_size):
            w = np.ascontiguousarray(x[i:i + batch_size, d])
            with torch.inference_mode():
                rho2 = model.encode(torch.from_numpy(w))[:, -p:].max(dim=1).values.double().numpy()
            e = span_energies(w, np.arange(rho2.shape[1]) * fs + rf, taps)
            centre = slice(k, rho2.shape[1] - k)
            out[d, i:i + w.shape[0]] = window_residual(e[:, centre], rho2[:, centre],
                                                       np.ones_like(e[:, centre], bool), taps, slope)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["models/weights/default.pt"])
    ap.add_argument("--config", default="configs/train.toml")
    ap.add_argument("--n-noise", type=int, default=20000)
    ap.add_argument("--n-per-row", type=int, default=250)
    ap.add_argument("--seed", type=int, default=778)
    ap.add_argument("--lined-up", action="store_true",
                    help=f"also pairs lined up within {COINCIDENT_DT_S * 1e3:g} ms, as a signal's arrivals are (the "
                         "rows of older records keep their windows either way)")
    ap.add_argument("--loud-signals", nargs="*", type=float, default=[], metavar="SNR",
                    help="also coincident signals at these network SNRs (drawn after every other row)")
    ap.add_argument("--consistency", nargs=3, type=float, metavar=("WEIGHT", "THRESHOLD", "SLOPE"),
                    help="also each template model's statistic less this consistency test's penalty")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "glitch_scan.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    t = cfg.train
    rate = cfg.data.analysis_rate_hz
    bank = WaveformBank.generate(t.injections, 200, seed=args.seed, sample_rate_hz=rate, workers=1, cache=None)
    data: dict = {}
    per = args.n_per_row

    def windows(phase: str) -> dict:
        """Every row's windows, whitened with the ``phase`` filter (the same draws for every phase)."""
        if phase in data:
            return data[phase]
        maker = WindowMaker.from_config(cfg, bank, args.seed, phase)
        rng = np.random.default_rng(args.seed + 1)
        rows: dict = {}
        stretch = [0]

        def next_stretch():
            stretch[0] += 1
            return maker.pool.stretch((args.seed, 1, stretch[0]), maker.stretch_s, rng)

        def row(make, n: int, per_stretch: int = 64) -> np.ndarray:
            """``n`` windows, up to ``per_stretch`` from each fresh stretch: ``make(white, taps, k)``."""
            xs = []
            while sum(len(x) for x in xs) < n:
                white, taps = next_stretch()
                xs.append(make(white, taps, min(per_stretch, n - sum(len(x) for x in xs))))
            return np.concatenate(xs)

        def glitch_row(kind: str, snr: float, both: float, lined: float) -> np.ndarray:
            return row(lambda white, taps, k: maker.from_stretch(
                white, taps, rng, k, 0, n_glitch=k, glitches=population(kind, snr), glitch_both_fraction=both,
                glitch_coincident_fraction=lined)[0], per)

        rows["noise"] = row(lambda white, taps, k: maker.from_stretch(white, taps, rng, k, 0)[0], args.n_noise,
                            maker.stretch_s - 2)
        for kind, snrs in GLITCHES:
            for snr in snrs:
                for prefix, both in (("", 0.0), ("pair ", 1.0)):
                    rows[prefix + f"{kind} {snr:g}"] = glitch_row(kind, snr, both, 0.0)
        for snr in SIGNAL_SNRS:
            for blip in SIGNAL_BLIPS:
                rows[f"signal {snr:g}" + (f" + blip {blip:g}" if blip else "")] = row(
                    lambda white, taps, k: maker.from_stretch(
                        white, taps, rng, k, k, snrs=np.full(k, snr), glitches=population("blip", blip or 16.0),
                        glitch_signal_fraction=1.0 if blip else 0.0)[0], per)
        if args.lined_up:  # drawn last, so the other rows keep the windows of records made without them
            for kind, snrs in GLITCHES:
                for snr in snrs:
                    rows[f"lined-up pair {kind} {snr:g}"] = glitch_row(kind, snr, 1.0, 1.0)
        for snr in args.loud_signals:  # last too, for the same reason
            rows[f"signal {snr:g}"] = row(lambda white, taps, k: maker.from_stretch(
                white, taps, rng, k, k, snrs=np.full(k, snr))[0], per)
        data[phase] = rows
        return rows

    cons = Consistency(*args.consistency) if args.consistency else None
    results = {}
    for path in args.models:
        model, meta, sha = load_checkpoint(path)
        phase = (meta.get("whiten") or {}).get("phase", cfg.whiten.phase)
        rows = windows(phase)
        stats = {name: score_windows(model, x) for name, x in rows.items()}
        variants = [(path, stats)]
        if cons is not None and getattr(model, "template_pairs", 0):
            pen = {name: cons.penalty(window_residuals(model, x, cons.slope)).sum(axis=0) for name, x in rows.items()}
            variants.append((f"{path} + consistency {cons.weight:g}/{cons.threshold:g}/{cons.slope:g}",
                             {name: s - pen[name] for name, s in stats.items()}))
        for label, st in variants:
            noise = np.sort(st["noise"])
            thr = {f"{f:g}": float(noise[int(len(noise) * (1 - f))]) for f in FPRS}
            res = {"sha256": sha, "whiten_phase": phase, "thresholds": thr, "rows": {}}
            for name, s in st.items():
                if name == "noise":
                    continue
                res["rows"][name] = {"median": float(np.median(s)),
                                     "above": {f: float(np.mean(s > v)) for f, v in thr.items()}}
            results[label] = res
            print(label, json.dumps(res["thresholds"]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "glitch_scan", "n_noise": args.n_noise, "n_per_row": per,
                               "seed": args.seed, "models": results}, indent=1))
    names = list(next(iter(results.values()))["rows"])
    lines = [f"# Glitch scan ({args.n_noise} noise windows, {per} windows per row, seed {args.seed})", "",
             "Command: `.venv/bin/python benchmarks/glitch_scan.py --models "
             + " ".join(args.models) + f" --n-noise {args.n_noise} --n-per-row {per}"
             + (" --lined-up" if args.lined_up else "")
             + (" --loud-signals " + " ".join(f"{v:g}" for v in args.loud_signals) if args.loud_signals else "")
             + (" --consistency " + " ".join(f"{v:g}" for v in args.consistency) if args.consistency else "") + "`",
             "",
             "Fraction of windows above each model's per-window noise threshold at FPR 1e-3 / 1e-4 (median "
             "statistic in brackets). Glitch rows: one detector (or a `pair`, one in each at independent times; a "
             f"`lined-up pair` within {COINCIDENT_DT_S * 1e3:g} ms of each other); SNR of each glitch "
             "in its detector. Signal rows: coincident signals, with a blip in one detector's window.", "",
             "| windows | " + " | ".join(f"`{Path(p.split(' + ')[0]).name}`" + (" + consistency" if " + " in p else "")
                                        for p in results) + " |",
             "|---|" + "---|" * len(results)]
    for name in names:
        cells = []
        for v in results.values():
            r = v["rows"][name]
            cells.append(f"{r['above']['0.001']:.3f} / {r['above']['0.0001']:.3f} ({r['median']:.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
