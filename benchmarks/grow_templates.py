"""A factorized checkpoint grown by the templates of a placed bank, untrained: what those templates add.

Plain script::

    python benchmarks/grow_templates.py --bank out/train/banks/mfbank-49229e13a69d09b0.npz \\
        [--model models/weights/default.pt] [--config configs/train.toml] --out out/v13mf.pt

Every template of ``--bank`` (a :class:`~gwstream.daemon.bank.TemplateBank`
file; ``benchmarks/validate.py`` places and caches the issue-4 matched filter's
477-template bank there) is cut to the model's ``template_taps`` as
:func:`~gwstream.daemon.train.training.template_filters` cuts the training ladder, and
:func:`gwstream.models.surgery.with_more_templates` appends the pairs to ``--model``'s branch,
each with a head unit set to its two-detector SNR²: the best-template statistic is
then the maximum over the old and the new pairs, with the model's trained gain.
Nothing is trained. Score the result with ``benchmarks/validate.py --models OUT ...``.
The checkpoint is written to ``--out`` (not shipped: 605 pairs are 8.8 MB).
"""

from __future__ import annotations

import argparse

from gwstream.daemon.bank import TemplateBank
from gwstream.daemon.config import load_config
from gwstream.daemon.train.training import template_filters
from gwstream.models import surgery
from gwstream.models.scorer import load_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", required=True, help="TemplateBank file (.npz)")
    ap.add_argument("--model", default="models/weights/default.pt", help="factorized checkpoint with a template branch")
    ap.add_argument("--config", default="configs/train.toml", help="its training config (whitening, PSD, taps)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = load_config(args.config)
    model, meta, _ = load_checkpoint(args.model)
    if not getattr(model, "template_pairs", 0):
        ap.error(f"--model {args.model}: a factorized network with a template branch is needed")
    bank = TemplateBank.load(args.bank)
    params = {k: bank.params[k] for k in ("mass1", "mass2", "spin1z", "spin2z")}
    filters = template_filters(cfg, len(bank), model.template_taps, params)
    grown = surgery.with_more_templates(model, filters).eval()
    save_checkpoint(grown, args.out, meta={"whiten": meta.get("whiten"), "grown_from": args.model,
                                           "grown_by_bank": args.bank})
    print(f"{args.out}: {model.template_pairs} + {len(bank)} = {grown.template_pairs} template pairs")


if __name__ == "__main__":
    main()
