"""Networks with everything but their template branch silenced, on the training's held-out windows.

Plain script::

    python benchmarks/templates_alone.py [--config configs/train.toml] [--models models/weights/default.pt ...]
        [--out benchmarks/results/templates_alone.md]

For each checkpoint with a template branch, two rows: the network as it is, and the
same network with its MLP's output layer zeroed and ``template_gain`` set to 1, so its
logit is only the best-template statistic minus 5 (what ``train.template_gain_init = 1``
starts a network at). A further row builds that statistic from ``train.template_bank``'s
templates as ``gwstream train`` places them (:func:`~gwstream.daemon.train.training.initial_model`, for a
recipe from scratch). The windows are the held-out validation set ``gwstream train``
builds from the config (5000 noise windows, 500 signals per SNR for the shipped
recipes), so TPR at FPR 1e-4 rests on the loudest few noise windows; FPR 1e-3 is the
figure to compare. Why: it showed that the 477 placed templates alone detect as well as
v15 on Gaussian noise, so a network can be trained from scratch around them (v16).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def silenced(model):
    """``model`` with its MLP output zeroed and template_gain 1 (in place)."""
    with torch.no_grad():
        model.mlp[-1].weight.zero_()
        model.mlp[-1].bias.zero_()
        model.template_gain.fill_(1.0)
    return model


def main(argv=None) -> int:
    from gwstream.daemon.config import load_config
    from gwstream.daemon.train import training as tr
    from gwstream.models.metrics import summarize
    from gwstream.models.scorer import load_checkpoint
    from gwstream.models.train import score_windows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/train.toml")
    ap.add_argument("--models", nargs="*", default=["models/weights/default.pt"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/templates_alone.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    t0 = time.monotonic()
    _maker, (xv, yv, sv) = tr.build_data(cfg)
    rows = []

    def score(name, model):
        model.eval()
        r = summarize(score_windows(model, xv), yv, sv)
        rows.append((name, r))
        print(name, {f: round(r["tpr"][f]["8"], 3) for f in r["tpr"]}, flush=True)

    if cfg.train.template_bank and not cfg.train.init_weights:
        score(f"{Path(cfg.train.template_bank).name} placed, alone", silenced(tr.initial_model(cfg)[0]))
    for path in args.models:
        model, _, _ = load_checkpoint(path)
        score(f"{Path(path).name}", model)
        if getattr(model, "template_pairs", 0):
            score(f"{Path(path).name}, its templates alone", silenced(load_checkpoint(path)[0]))
    snrs = [k for k in rows[0][1]["tpr"]["0.001"] if k != "all"]
    lines = [f"# Template branches alone, on `{args.config}`'s held-out windows "
             f"({int((yv == 0).sum())} noise windows, {int((yv == 1).sum())} signals)", "",
             f"`.venv/bin/python benchmarks/templates_alone.py --config {args.config} --models "
             f"{' '.join(args.models)}` ({time.monotonic() - t0:.0f} s). \"alone\": the MLP's output zeroed and "
             "template_gain 1, the logit the best-template statistic - 5.", ""]
    for fpr in ("0.001", "0.0001"):
        lines += [f"## per-window FPR {fpr}", "", "| statistic | AUC | " + " | ".join(f"TPR @ SNR {k}" for k in snrs)
                  + " |", "|---|---|" + "---|" * len(snrs)]
        lines += [f"| {n} | {r['auc']:.4f} | " + " | ".join(f"{r['tpr'][fpr][k]:.3f}" for k in snrs) + " |"
                  for n, r in rows]
        lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
