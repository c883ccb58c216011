"""How far does the template branch's filter bank get on its own, untrained, on the issue-4 windows?

Plain script::

    python benchmarks/template_probe.py [--pairs 32] [--taps 1024] [--n-noise 20000] [--n-per-snr 1000]
        [--snr 8] [--stride 8] [--bank PATH] [--models models/weights/default.pt ...] [--out PATH]

``--bank`` cuts the templates of a placed bank instead (``--pairs`` of them): the
issue-4 matched filter's 477-template bank is cached by ``benchmarks/validate.py`` as
``out/train/banks/mfbank-*.npz``. ``--stride`` sets the probe's time grid.

The filters are :func:`gwstream.daemon.train.training.template_filters` (zero-spin whitened
IMRPhenomD templates, unit-norm pairs with their quadratures, the last ``--taps``
samples up to ``train.template_after`` after the merger): what ``train.template_pairs``
starts a factorized network's template branch with. Each window's probe statistic
uses them as that branch does, at the network's 8-sample feature stride (feature
steps ending at ``rf - 1 + 8 j``, rf = 1112 samples, v8's receptive field): the network SNR
``max over templates and steps of sqrt(A_H1(t)^2 + max_{|l| <= 3} A_L1(t + l)^2)``,
``A`` a pair's amplitude — a 2-detector matched filter with a tiny bank, cut
templates and a coarse time grid. The windows are the issue-4 validation set's
first ``--n-noise`` noise windows and ``--n-per-snr`` signals at ``--snr`` (seed 20001,
``configs/train.toml``'s data, minimum-phase whitening as the daemon's); the
``--models`` are scored on the same windows. ``probe-indep`` takes each
detector's best template on its own (no same-template coincidence). Reports TPR at per-window FPR 1e-3 and
1e-4 (the latter rests on ``n_noise / 10^4`` windows) overall and by total mass.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gwstream.daemon.config import load_config
from gwstream.daemon.train.training import template_filters
from gwstream.daemon.train.trainset import WaveformBank, WindowMaker, validation_chunks

MASS_BINS = ((14, 30), (30, 50), (50, 70), (70, 100))
RF, STRIDE, LAG = 1112, 8, 3  # v8's receptive field, feature stride and lag steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/train.toml")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--taps", type=int, default=1024)
    ap.add_argument("--bank", default=None, help="a placed bank (.npz, TemplateBank.save) whose templates to cut: "
                    "--pairs of them, evenly spread in its order (default: template_filters' chirp-mass ladder)")
    ap.add_argument("--n-noise", type=int, default=20_000)
    ap.add_argument("--n-per-snr", type=int, default=1000)
    ap.add_argument("--snr", type=float, default=8.0)
    ap.add_argument("--long-taps", type=int, default=0, help="also the same templates cut to this many taps, "
                    "read over more of the window on the feature steps late enough to hold them ('probe+long': "
                    "the larger of the two statistics); 0: off")
    ap.add_argument("--stride", type=int, default=STRIDE, help="samples between probe steps (the network's: 8)")
    ap.add_argument("--seed", type=int, default=20_001)
    ap.add_argument("--models", nargs="*", default=["models/weights/default.pt"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON result (default: print only)")
    args = ap.parse_args()
    if not 1 <= args.taps <= RF:
        ap.error(f"--taps {args.taps}: expected 1 .. {RF}")
    from gwstream.models.scorer import Scorer

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    t, rate = cfg.train, cfg.data.analysis_rate_hz
    params = None
    if args.bank:
        from gwstream.daemon.bank import TemplateBank
        tb = TemplateBank.load(args.bank)
        if not 1 <= args.pairs <= len(tb):
            ap.error(f"--pairs {args.pairs}: the bank holds {len(tb)} templates")
        idx = np.linspace(0, len(tb) - 1, args.pairs).round().astype(int)
        params = {k: tb.params[k][idx] for k in ("mass1", "mass2", "spin1z", "spin2z")}
    filt = torch.from_numpy(template_filters(cfg, args.pairs, args.taps, params))[:, None, :]
    if args.long_taps:
        if not RF < args.long_taps <= cfg.windows.window_s * cfg.data.analysis_rate_hz:
            ap.error(f"--long-taps {args.long_taps}: expected more than {RF} and at most the window")
        filt_long = torch.from_numpy(template_filters(cfg, args.pairs, args.long_taps, params))[:, None, :]
        j0 = -(-(args.long_taps - RF) // args.stride)  # first step whose long templates fit in the window
        o_long = RF - args.long_taps + args.stride * j0
    bank = WaveformBank.generate(t.injections, 1000, seed=args.seed, sample_rate_hz=rate, workers=t.workers,
                                 cache=Path(t.out_dir) / "banks")
    maker = WindowMaker.from_config(cfg, bank, args.seed, "minimum")
    scorers = {Path(p).stem: Scorer.from_checkpoint(p, device="cpu", threads=args.threads, batch_size=256)
               for p in args.models}
    p = args.pairs
    lag = -(-LAG * STRIDE // args.stride)  # the same +-24 samples
    stats: dict[str, list] = {"probe": [], "probe-capped": [], "probe-sum": [], "probe-indep": [],
                               **({"probe+long": []} if args.long_taps else {}), **{k: [] for k in scorers}}
    labels, masses = [], []

    def network(e: torch.Tensor) -> torch.Tensor:
        """``max over templates and steps of e_H1 + max_{|l| <= lag} e_L1`` of per-detector values ``(b, 2, P, T)``."""
        l1 = torch.nn.functional.max_pool1d(e[:, 1], 2 * lag + 1, stride=1)
        return (e[:, 0, :, lag:-lag] + l1).flatten(1).amax(1)

    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, y, _snr, _taps, info in validation_chunks(maker, args.seed, args.n_noise, (args.snr,),
                                                         args.n_per_snr, with_info=True):
            xt = torch.from_numpy(x[..., RF - args.taps:]).float()
            b = xt.shape[0]
            z = torch.nn.functional.conv1d(xt.reshape(2 * b, 1, -1), filt, stride=args.stride)
            a2 = (z[:, :p] ** 2 + z[:, p:] ** 2).reshape(b, 2, p, -1)
            stats["probe"].append(network(a2).sqrt().numpy())
            # each detector's SNR^2 capped at 64 (SNR 8) before the sum: a louder single-detector signal (a slid
            # event, a glitch) counts no more than SNR 8 in that detector
            stats["probe-capped"].append(network(a2.clamp(max=64.0)).sqrt().numpy())
            # the sum of amplitudes, as a factorized network's template units add them (less their noise means)
            stats["probe-sum"].append(network(a2.sqrt() - 1.25).numpy())
            # each detector's best template on its own (no same-template requirement): what a head reading
            # only max_k E_k per detector could form
            stats["probe-indep"].append(network(a2.amax(2, keepdim=True)).sqrt().numpy())
            if args.long_taps:  # steps j0.. of the same grid, each template read over long_taps samples
                zl = torch.nn.functional.conv1d(torch.from_numpy(x[..., o_long:]).float().reshape(2 * b, 1, -1),
                                                filt_long, stride=args.stride)
                long_stat = network((zl[:, :p] ** 2 + zl[:, p:] ** 2).reshape(b, 2, p, -1)).sqrt().numpy()
                stats["probe+long"].append(np.maximum(stats["probe"][-1], long_stat))
            for name, sc in scorers.items():
                stats[name].append(sc.score(x))
            bi = np.maximum(info["bank_index"], 0)
            masses.append(np.where(y == 1, bank.params["mass1"][bi] + bank.params["mass2"][bi], 0.0))
            labels.append(y)
    y, mt = np.concatenate(labels), np.concatenate(masses)
    res = {"benchmark": "template_probe", "pairs": p, "taps": args.taps, "bank": args.bank, "stride": args.stride,
           "long_taps": args.long_taps, "n_noise": int((y == 0).sum()),
           "n_signals": int((y == 1).sum()), "snr": args.snr, "seed": args.seed, "wall_s": 0.0, "tpr": {}}
    for name, chunks in stats.items():
        s = np.concatenate(chunks).astype(np.float64)
        noise = np.sort(s[y == 0])[::-1]
        res["tpr"][name] = {}
        for fpr in (1e-3, 1e-4):
            k = int(round(fpr * noise.size))
            if k < 1:
                continue
            thr = noise[k - 1]
            row = {"all": float(np.mean(s[y == 1] > thr))}
            for lo, hi in MASS_BINS:
                sel = (y == 1) & (mt >= lo) & (mt < hi)
                row[f"{lo}-{hi}"] = float(np.mean(s[sel] > thr)) if sel.any() else float("nan")
            res["tpr"][name][str(fpr)] = row
            print(f"{name:>12s} FPR {fpr:g}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
