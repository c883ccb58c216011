"""Issue-4 validation: networks against a matched-filter reference on the same whitened windows.

Plain script::

    python benchmarks/validate.py --models models/weights/default.pt [other.pt ...]
        [--config configs/train.toml] [--n-noise 100000] [--n-per-snr 2000] [--seed S] [--out PATH]

The validation set is generated once, from ``--seed`` (default 20001, the
issue-4 set, whatever the config's ``train.seed``: that was 1 when the set
was made, and each recipe that trains a new default may change it; disjoint
from the training data and from the per-epoch validation of ``gwstream
train``, which uses train.seed + 10 000), with the
config's PSD family, whitening (PSD estimated from each noise stretch, the
daemon's FIR) and merger span, and a validation waveform bank of
``--n-waveforms`` draws from ``[train.injections]``. It is the set
:func:`~gwstream.daemon.train.trainset.make_validation_set` would return, streamed one
noise stretch at a time (10^5 windows are 1.6 GB): every chunk is scored by
each network and by :class:`~gwstream.daemon.eval.matched_filter.MatchedFilter`, and
only the scores are kept.

The matched-filter reference is an aligned-spin IMRPhenomD bank placed
stochastically over the training mass range (see
:func:`~gwstream.daemon.bank.place_bank`); with ``--bank-check N`` its
fitting factor (recovered / in-window optimal network SNR, noise-free) is
measured on N training-distribution signals of the validation bank and N
aligned-spin IMRPhenomD signals.

Writes ``--out`` (JSON) and a markdown table next to it (same stem, ``.md``):
per model and MF, AUC, TPR at per-window FPR 1e-3 and 1e-4 in each SNR bin,
and each network's TPR as a fraction of matched filtering's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from gwstream.daemon.bank import place_bank
from gwstream.daemon.config import InjectionConfig, load_config
from gwstream.daemon.eval.matched_filter import MatchedFilter
from gwstream.daemon.train.trainset import WaveformBank, WindowMaker, validation_chunks
from gwstream.kernels import whiten as kwh
from gwstream.models.metrics import summarize, threshold_at_fpr

FPRS = (1e-3, 1e-4)
# The matched filter whitens its templates with the linear-phase filter (daemon.mfreference), so the
# reference windows are whitened that way whatever the config's whiten.phase; each network is scored on
# the same stretches and signals whitened as it was trained (its checkpoint's whiten.phase).
MF_PHASE = "linear"
ISSUE4_SEED = 20_001  # the validation set of the issue-4 tables (train.seed 1 + 20 000 when it was made)


def fitting_factors(mf: MatchedFilter, maker: WindowMaker, taps: np.ndarray, n: int, seed: int) -> dict:
    """Noise-free recovered / in-window optimal network SNR of ``n`` signals of ``maker.bank``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    idx = rng.integers(len(maker.bank), size=n)
    sig = maker.whitened_signals(idx, taps, rng)
    pos = rng.integers(maker.span[0], maker.span[1] + 1, n)
    m = maker.bank.merger_index
    x = np.stack([sig[j, :, m - pos[j]:m - pos[j] + maker.window] for j in range(n)]).astype(np.float32)
    opt = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2)))
    ff = mf.statistic(x, taps) / opt
    q = np.quantile(ff, [0.0, 0.01, 0.05, 0.5])
    return {"n": int(n), "min": float(q[0]), "p01": float(q[1]), "p05": float(q[2]), "median": float(q[3]),
            "mean": float(ff.mean()), "snr_loss_mean": float(1 - np.mean(ff ** 3) ** (1 / 3))}


#: the per-window FPR and the SNR rows of the breakdown of missed signals
MISS_FPR = 1e-4
MISS_ROWS = ("8", "12")


def mf_threshold_from_tpr(scores: np.ndarray, labels: np.ndarray, snrs: np.ndarray, tpr: dict,
                          row: str = "8") -> tuple[float, dict]:
    """The matched-filter threshold at ``MISS_FPR`` that gives the recorded TPR in SNR bin ``row``.

    ``scores`` hold the matched filter's statistic of the signal windows (noise windows NaN); ``tpr`` is the
    recorded ``{fpr: {bin: value}}`` of the full run, whose threshold came from the 10^5 noise windows.
    Returns the threshold and, per bin, the recorded TPR and the one this threshold gives (a check).
    """
    sel = (labels == 1) & np.isclose(snrs, float(row))
    s = np.sort(scores[sel])[::-1]
    k = int(round(tpr[f"{MISS_FPR:g}"][row] * s.size))
    t = float(s[0] + 1.0) if k == 0 else float(s[k - 1]) if k >= s.size else float(0.5 * (s[k - 1] + s[k]))
    check = {b: {"recorded": v, "here": float(np.mean(scores[(labels == 1) & np.isclose(snrs, float(b))] >= t))}
             for b, v in tpr[f"{MISS_FPR:g}"].items() if b != "all"}
    return t, check


def miss_breakdown(stats: dict, labels: np.ndarray, snrs: np.ndarray, info: dict, params: dict,
                   thresholds: dict | None = None) -> dict:
    """TPR at per-window FPR ``MISS_FPR`` of each statistic, in the SNR rows ``MISS_ROWS``, by signal property.

    The properties: the weaker detector's optimal SNR (a signal one detector barely sees looks like a
    single-detector glitch to a coincidence statistic), the total mass, and the share of the network SNR
    that falls inside the 1-s window (the rest of a long inspiral is before it, for every statistic alike).
    """
    sig = labels == 1
    idx = info["bank_index"]
    mtotal = np.where(idx >= 0, params["mass1"][np.maximum(idx, 0)] + params["mass2"][np.maximum(idx, 0)], np.nan)
    props = {
        "weaker detector's SNR": ([0, 2, 3, 4, 5, np.inf], np.nanmin(np.where(sig[:, None], info["ifo_snr"], np.inf),
                                                                   axis=1)),
        "total mass (M☉)": ([14, 30, 50, 70, 100.01], mtotal),
        "in-window share of the network SNR": ([0, 0.8, 0.9, 0.97, 1.0001], info["window_snr"] / np.maximum(snrs, 1e-9)),
    }
    out: dict = {"fpr": MISS_FPR, "rows": {}}
    given = thresholds or {}
    thresholds = {name: given[name] if name in given else threshold_at_fpr(sc[labels == 0], MISS_FPR)
                  for name, sc in stats.items()}
    for row in MISS_ROWS:
        in_row = sig & (np.isclose(snrs, float(row)))
        if not in_row.any():
            continue
        out["rows"][row] = {}
        for title, (edges, value) in props.items():
            bins = []
            for lo, hi in zip(edges[:-1], edges[1:]):
                sel = in_row & (value >= lo) & (value < hi)
                entry = {"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "tpr": {}}
                for name, sc in stats.items():
                    entry["tpr"][name] = float(np.mean(sc[sel] >= thresholds[name])) if sel.any() else float("nan")
                bins.append(entry)
            out["rows"][row][title] = bins
    return out


def _miss_markdown(m: dict) -> list[str]:
    lines = [f"## Where the signals are missed (TPR at per-window FPR {m['fpr']:g}, signals in each bin in brackets)",
             ""]
    def label(b):
        return f"≥ {b['lo']:g}" if b["hi"] == np.inf or b["hi"] > 1e3 else f"{b['lo']:g}–{b['hi']:.3g}"

    for row, props in m["rows"].items():
        for title, bins in props.items():
            names = list(bins[0]["tpr"])
            lines.append(f"SNR {row}, by {title}:")
            lines.append("")
            lines.append("| statistic | " + " | ".join(f"{label(b)} ({b['n']})" for b in bins) + " |")
            lines.append("|---|" + "---|" * len(bins))
            for name in names:
                lines.append(f"| {name} | " + " | ".join("—" if b["n"] == 0 else f"{b['tpr'][name]:.3f}"
                                                         for b in bins) + " |")
            lines.append("")
    return lines


def markdown(res: dict) -> str:
    snr_bins = [k for k in res["mf"]["tpr"]["0.001"] if k != "all"]
    lines = [(f"# Validation: networks vs matched filtering ({res['n_noise']} noise windows, "
              f"{res['n_per_snr']} signal windows per SNR, seed {res['seed']})"), "",
             (f"Matched filter: {res['bank']['n_templates']} aligned-spin IMRPhenomD templates "
              f"(placement minimal match {res['bank']['minimal_match']}), two-detector coincident SNR."), ""]
    for fpr in (f"{f:g}" for f in FPRS):
        lines += [f"## per-window FPR {fpr}", "",
                  "| statistic | AUC | " + " | ".join(f"TPR @ SNR {b}" for b in snr_bins) + " |",
                  "|---|---|" + "---|" * len(snr_bins)]
        for name, r in [("matched filter", res["mf"])] + list(res["models"].items()):
            cells = []
            for b in snr_bins:
                cell = f"{r['tpr'][fpr][b]:.3f}"
                if name != "matched filter":
                    frac = r["tpr_fraction_of_mf"][fpr][b]
                    cell += f" ({frac:.0%} of MF)" if np.isfinite(frac) else " (MF 0)"
                cells.append(cell)
            lines.append(f"| {name} | {r['auc']:.4f} | " + " | ".join(cells) + " |")
        lines.append("")
    t = res["timing_s"]
    own = {k: v for k, v in res.get("whiten_phase", {}).items() if v != res["whiten_phase"]["matched filter"]}
    if own:
        lines.append(", ".join(f"`{k}`" for k in own) + " scored on the same noise stretches and signals whitened "
                     "with the " + "/".join(sorted(set(own.values()))) + "-phase filter it was trained with and "
                     "runs with (window positions in each stretch shift by the filter's delay); the matched filter "
                     f"and the other networks on the {res['whiten_phase']['matched filter']}-phase windows.")
        lines.append("")
    if "mf_from" in res:
        lines.append(f"Matched-filter row and its timing from `{res['mf_from']}` (same validation set, checked by "
                     "its data key); networks scored in this run.")
        lines.append("")
    lines.append(f"Timings (s): data {t['data']:.1f}, MF {t['mf']:.1f} "
                 f"({res['n_windows'] / max(t['mf'], 1e-9):.0f} windows/s, bank preparation "
                 f"{t['mf_prepare']:.1f} s of it), " + ", ".join(f"{k} {v:.1f}" for k, v in t["models"].items())
                 + f"; total {t['total']:.1f}.")
    if res.get("misses", {}).get("rows"):
        lines.append("")
        lines += _miss_markdown(res["misses"])
        if "mf_signals_check" in res:
            lines.append("(Matched filter: filtered here on the signal windows only, at the threshold that gives "
                         "its recorded TPR at SNR 8 from the 10^5 noise windows; the other SNR bins then give " +
                         ", ".join(f"{v['here']:.3f}" for v in res["mf_signals_check"].values()) + " against "
                         "the recorded " + ", ".join(f"{v['recorded']:.3f}" for v in res["mf_signals_check"].values())
                         + ".)")
        elif "mf_from" in res:
            lines.append("(The matched filter's per-window scores are not in its earlier result: networks only.)")
    if "bank_check" in res:
        lines.append("")
        lines.append("Bank fitting factor (noise-free, in-window): " + "; ".join(
            f"{k}: min {v['min']:.3f}, 1% {v['p01']:.3f}, median {v['median']:.3f}" for k, v in res["bank_check"].items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/train.toml")
    ap.add_argument("--models", nargs="*", default=["models/weights/default.pt"], help="checkpoints to score")
    ap.add_argument("--n-noise", type=int, default=100_000)
    ap.add_argument("--n-per-snr", type=int, default=2000)
    ap.add_argument("--snrs", type=float, nargs="+", default=None, help="network SNR bins (default: train.val_snrs)")
    ap.add_argument("--seed", type=int, default=None, help="default: 20001, the issue-4 set")
    ap.add_argument("--n-waveforms", type=int, default=1000, help="validation waveform bank size")
    ap.add_argument("--minimal-match", type=float, default=0.95, help="MF bank placement threshold")
    ap.add_argument("--bank-candidates", type=int, default=3000)
    ap.add_argument("--bank-check", type=int, default=0, help="signals for the bank fitting-factor check (0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="processes generating waveforms")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and matched-filter FFT threads")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "validation.json"))
    ap.add_argument("--model-card", default=None, metavar="CARD.md",
                    help="also write the table into this model card (replacing its previous issue-4 section)")
    ap.add_argument("--mf-cache", default="out/validation",
                    help="directory of matched-filter score caches: an interrupted run resumes, and a later run "
                         "on the same set (other models) reuses them")
    ap.add_argument("--mf-from", default=None, metavar="RESULT.json",
                    help="take the matched-filter row from an earlier result on the same validation set (checked "
                         "by its data key) instead of recomputing it; the networks are scored afresh")
    ap.add_argument("--mf-signals", action="store_true",
                    help="with --mf-from: filter the signal windows (not the 10^5 noise ones) so the breakdown of "
                         "misses has a matched-filter row; its threshold at FPR 1e-4 is the one that reproduces "
                         "the earlier result's TPR at SNR 8 (checked against its other SNR bins)")
    args = ap.parse_args()
    if args.mf_signals and not args.mf_from:
        ap.error("--mf-signals goes with --mf-from (without it every window is filtered anyway)")
    for name in ("n_noise", "n_per_snr", "n_waveforms"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} = {getattr(args, name)}: expected >= 1")

    from gwstream.models.scorer import Scorer

    t_start = time.perf_counter()
    cfg = load_config(args.config)
    t = cfg.train
    seed = ISSUE4_SEED if args.seed is None else args.seed
    snrs = tuple(t.val_snrs) if args.snrs is None else tuple(args.snrs)
    rate = cfg.data.analysis_rate_hz
    cache = Path(t.out_dir) / "banks"
    scorers = {Path(p).stem: Scorer.from_checkpoint(p, device="cpu", threads=args.threads, batch_size=256)
               for p in args.models}

    val_bank = WaveformBank.generate(t.injections, args.n_waveforms, seed=seed, sample_rate_hz=rate,
                                     workers=args.workers, cache=cache)

    def window_maker(phase: str) -> WindowMaker:
        """The validation windows, whitened with the ``phase`` filter (the stretches and signals do not depend on it)."""
        return WindowMaker.from_config(cfg, val_bank, seed, phase)

    maker = window_maker(MF_PHASE)
    pool = maker.pool
    t_bank = time.perf_counter()
    inj = t.injections
    mass_range = (min(inj.mass1_msun[0], inj.mass2_msun[0]), max(inj.mass1_msun[1], inj.mass2_msun[1]))
    res: dict = {"benchmark": "validation", "config": args.config, "seed": seed, "n_noise": args.n_noise,
                 "n_per_snr": args.n_per_snr, "snrs": list(snrs), "n_waveforms": args.n_waveforms,
                 "approximant": inj.approximant,
                 "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    prev = None
    if args.mf_from:
        prev = json.loads(Path(args.mf_from).read_text())
        for k in ("seed", "n_noise", "n_per_snr", "snrs", "n_waveforms", "approximant"):
            if prev.get(k) != res[k]:
                ap.error(f"--mf-from {args.mf_from}: {k} = {prev.get(k)!r} there, {res[k]!r} here: "
                         "not the same validation set")
        res["bank"] = prev["bank"]
        mf = None
        print(f"data: waveform bank {len(val_bank)}; matched-filter row from {args.mf_from}", flush=True)
    if not args.mf_from or args.mf_signals:
        design_taps = kwh.design_fir(rate, pool.freqs, pool.psds[0], cfg.whiten.fduration_s,
                                     cfg.whiten.highpass_hz, MF_PHASE)
        bank = place_bank(mass_range, inj.spin_max if inj.spin != "zero" else 0.0, taps=design_taps,
                          minimal_match=args.minimal_match, n_candidates=args.bank_candidates, seed=seed,
                          sample_rate_hz=rate, f_lower_hz=inj.f_lower_hz, workers=args.workers, cache=cache)
        mf = MatchedFilter(bank, window_s=cfg.windows.window_s, merger_span_s=t.merger_span_s, workers=args.threads)
        bank_desc = {"n_templates": len(bank), "approximant": bank.approximant,
                       "minimal_match": args.minimal_match, "candidates": args.bank_candidates,
                       "mass_range_msun": list(mass_range), "spin_max": inj.spin_max,
                       "search_merger_samples": [mf.first, mf.last], "coinc_samples": mf.coinc_samples}
        if prev is not None and bank_desc != prev["bank"]:
            sys.exit(f"--mf-signals: the matched-filter bank placed here ({bank_desc}) is not {args.mf_from}'s "
                     f"({prev['bank']})")
        res["bank"] = bank_desc
        print(f"data: waveform bank {len(val_bank)}, MF bank {len(bank)} templates", flush=True)
    t_bank = time.perf_counter() - t_bank

    if args.bank_check and mf is not None:
        _, taps0 = pool.stretch((seed, 77), t.stretch_s, np.random.default_rng(seed))
        res["bank_check"] = {f"{inj.approximant} (validation bank)": fitting_factors(mf, maker, taps0,
                                                                                      args.bank_check, seed)}
        if inj.approximant != "IMRPhenomD":
            d_cfg = InjectionConfig(approximant="IMRPhenomD", spin="aligned", mass1_msun=inj.mass1_msun,
                                    mass2_msun=inj.mass2_msun, spin_max=inj.spin_max, f_lower_hz=inj.f_lower_hz)
            d_bank = WaveformBank.generate(d_cfg, args.bank_check, seed=seed + 1, sample_rate_hz=rate,
                                           workers=args.workers, cache=cache)
            d_maker = WindowMaker(d_bank, pool, window_s=cfg.windows.window_s, merger_span_s=t.merger_span_s,
                                  stretch_s=t.stretch_s)
            res["bank_check"]["IMRPhenomD aligned spin"] = fitting_factors(mf, d_maker, taps0, args.bank_check, seed)
        print("bank fitting factors:", json.dumps(res["bank_check"]), flush=True)

    tcfg = cfg.to_dict()["train"]
    if tcfg["injections"].get("mass_distribution") == "uniform":  # keys of sets made before the option existed
        del tcfg["injections"]["mass_distribution"]
    data_keys = ("psd", "psd_variants", "psd_scale", "psd_tilt", "stretch_s", "merger_span_s", "injections")
    # the windows' PSD is one Welch estimate per stretch: the streaming-only keys do not touch them
    # (and leaving them out keeps the keys of sets made before they existed)
    psd_keys = {k: v for k, v in cfg.to_dict()["psd"].items() if k not in ("min_change",)}
    # nor are the windows gated: the streaming search's autogating keys stay out too
    whiten_keys = {k: v for k, v in cfg.to_dict()["whiten"].items() if not k.startswith("gate_")}
    key = hashlib.sha256(json.dumps([seed, args.n_noise, args.n_per_snr, list(snrs), args.n_waveforms,
                                     res["bank"], psd_keys, {**whiten_keys, "phase": MF_PHASE},
                                     {k: tcfg[k] for k in data_keys}], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    cache_path = Path(args.mf_cache) / f"mf-{key}.npz"
    if prev is not None:
        if Path(prev.get("mf_cache", "")).name != cache_path.name:
            sys.exit(f"--mf-from {args.mf_from}: its data key ({Path(prev.get('mf_cache', '?')).name}) is not this "
                     f"set's ({cache_path.name}): the config's PSD, whitening or injections differ")
        res["mf_from"] = args.mf_from
    cached: list = []
    if mf is not None and cache_path.exists():
        with np.load(cache_path) as z:
            cached = np.split(z["scores"], np.cumsum(z["sizes"])[:-1]) if z["sizes"].size else []
        print(f"matched-filter scores of {len(cached)} chunks from {cache_path}", flush=True)
    res["mf_cache"] = str(cache_path)

    def save_cache(chunks):
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(cache_path.stem + ".tmp.npz")
        np.savez(tmp, scores=np.concatenate(chunks) if chunks else np.zeros(0),
                 sizes=np.array([c.size for c in chunks], dtype=np.int64))
        tmp.replace(cache_path)

    # A network trained on windows whitened otherwise (whiten.phase in its checkpoint) is scored on windows
    # made from the same noise stretches and signals, whitened its way: as it runs in the daemon.
    phases = {name: (sc.meta.get("whiten") or {}).get("phase", cfg.whiten.phase) for name, sc in scorers.items()}
    other = sorted(set(phases.values()) - {MF_PHASE})
    makers = {MF_PHASE: maker, **{ph: window_maker(ph) for ph in other}}
    res["whiten_phase"] = {"matched filter": MF_PHASE, **phases}
    labels, snr_all, mf_scores = [], [], []
    model_scores: dict[str, list] = {k: [] for k in scorers}
    timing = {"data": 0.0, "mf": 0.0, "mf_prepare": 0.0, "models": {k: 0.0 for k in scorers}}
    n_done = 0
    total = args.n_noise + len(snrs) * args.n_per_snr
    t0 = time.perf_counter()
    streams = {ph: validation_chunks(m, seed, args.n_noise, snrs, args.n_per_snr, with_info=ph == MF_PHASE)
               for ph, m in makers.items()}
    infos: list[dict] = []
    for chunks in zip(*streams.values()):
        by_phase = dict(zip(streams, chunks))
        x, y, snr, taps, info = by_phase[MF_PHASE]
        infos.append(info)
        for ph in other:  # same stretches, same signals: only the whitening filter differs
            if not (np.array_equal(by_phase[ph][1], y) and np.array_equal(by_phase[ph][2], snr)):
                sys.exit(f"internal error: the {ph}-phase validation windows do not follow the {MF_PHASE} ones")
        t1 = time.perf_counter()
        timing["data"] += t1 - t0
        i_chunk = len(mf_scores)
        if prev is not None:  # the row comes from --mf-from
            if args.mf_signals:
                if y.any():
                    mf_scores.append(mf.statistic(x, filters=mf.prepare(taps)))
                    timing["mf_signals"] = timing.get("mf_signals", 0.0) + time.perf_counter() - t1
                else:
                    mf_scores.append(np.full(x.shape[0], np.nan))
        elif i_chunk < len(cached) and cached[i_chunk].size == x.shape[0]:
            mf_scores.append(cached[i_chunk])
        else:
            filters = mf.prepare(taps)
            t2 = time.perf_counter()
            mf_scores.append(mf.statistic(x, filters=filters))
            timing["mf_prepare"] += t2 - t1
            timing["mf"] += time.perf_counter() - t1
            if len(mf_scores) % 20 == 0:
                save_cache(mf_scores)
        for name, scorer in scorers.items():
            t4 = time.perf_counter()
            model_scores[name].append(scorer.score(by_phase[phases[name]][0]))
            timing["models"][name] += time.perf_counter() - t4
        labels.append(y)
        snr_all.append(snr)
        n_done += x.shape[0]
        if n_done // 5000 != (n_done - x.shape[0]) // 5000:
            print(f"  {n_done}/{total} windows, {time.perf_counter() - t_start:.0f} s", flush=True)
        t0 = time.perf_counter()
    labels, snr_all = np.concatenate(labels), np.concatenate(snr_all)
    res["n_windows"] = int(labels.size)
    if prev is not None:
        if prev["n_windows"] != res["n_windows"]:
            sys.exit(f"--mf-from {args.mf_from}: {prev['n_windows']} windows there, {res['n_windows']} here")
        res["mf"] = prev["mf"]
        timing["mf"], timing["mf_prepare"] = prev["timing_s"]["mf"], prev["timing_s"]["mf_prepare"]
    else:
        if len(mf_scores) > len(cached):
            save_cache(mf_scores)
        res["mf"] = summarize(np.concatenate(mf_scores), labels, snr_all, FPRS)
    res["models"] = {}
    for name in scorers:
        r = summarize(np.concatenate(model_scores[name]).astype(np.float64), labels, snr_all, FPRS)
        r["checkpoint"] = str(scorers[name].path)
        r["sha256"] = scorers[name].sha256
        r["network"] = scorers[name].name
        r["whiten_phase"] = phases[name]
        r["tpr_fraction_of_mf"] = {
            fpr: {b: (v / res["mf"]["tpr"][fpr][b] if res["mf"]["tpr"][fpr][b] > 0 else float("nan"))
                  for b, v in row.items()} for fpr, row in r["tpr"].items()}
        res["models"][name] = r
    info = {k: np.concatenate([i[k] for i in infos]) for k in infos[0]}
    stats = {**({"matched filter": np.concatenate(mf_scores)} if mf is not None else {}),
             **{name: np.concatenate(model_scores[name]).astype(np.float64) for name in scorers}}
    fixed = {}
    if prev is not None and mf is not None:  # --mf-signals: the threshold that reproduces the earlier TPRs
        fixed["matched filter"], res["mf_signals_check"] = mf_threshold_from_tpr(stats["matched filter"], labels,
                                                                                   snr_all, prev["mf"]["tpr"])
        print("matched filter on the signal windows, thresholds from the earlier TPR at SNR 8:",
              json.dumps(res["mf_signals_check"]), flush=True)
    res["misses"] = miss_breakdown(stats, labels, snr_all, info, val_bank.params, fixed)
    timing["total"] = time.perf_counter() - t_start
    timing["bank"] = t_bank
    res["timing_s"] = timing
    res["mf_windows_per_s"] = res["n_windows"] / max(timing["mf"], 1e-9)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float))
    md = markdown(res)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    if args.model_card:
        update_model_card(Path(args.model_card), md, " ".join(["python", *sys.argv]))


CARD_MARK = "<!-- issue-4 validation -->"


def update_model_card(card: Path, md: str, command: str) -> None:
    """Put the table into a model card, between markers (replacing an earlier one)."""
    text = card.read_text()
    if CARD_MARK in text:
        text = text[:text.index(CARD_MARK)].rstrip() + "\n"
    body = md.replace("# Validation:", "## Validation against matched filtering:", 1).replace("\n## per-window",
                                                                                          "\n### per-window")
    card.write_text(f"{text}\n{CARD_MARK}\n{body}\nReproduce: `{command}`\n")
    print(f"updated {card}")


if __name__ == "__main__":
    main()
