"""``gwstream train``: compose the simulated, whitened windows with the training loop.

Writes the selected weights (``train.weights``, a :mod:`gwstream.models.scorer`
checkpoint) and, next to them, a model card (``<weights>.md``) and the
per-epoch history (``<weights>.json``).
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
from gwstream.daemon.bank import load_template_params
from gwstream.daemon.config import Config, TrainConfig
from gwstream.daemon.settings import section_to_dict

from .trainset import COINCIDENT_DT_S, WaveformBank, WindowMaker, make_validation_set

__all__ = ["run_train", "curriculum", "model_card", "HardNegativePicker"]

log = logging.getLogger(__name__)


def curriculum(epoch: int, start: tuple[float, float], end: tuple[float, float], n_epochs: int):
    """Network-SNR range of ``epoch``: linear from ``start`` to ``end`` over ``n_epochs``, then ``end``."""
    if n_epochs <= 0:
        return tuple(end)
    f = min(1.0, epoch / n_epochs)
    return (start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1]))


def build_data(cfg: Config):
    """Training window maker and the held-out validation windows of ``cfg.train``."""
    t = cfg.train
    out = Path(t.out_dir)
    rate = cfg.data.analysis_rate_hz
    bank = WaveformBank.generate(t.injections, t.n_waveforms, seed=t.seed, sample_rate_hz=rate,
                                 workers=t.workers, cache=out / "banks")
    val_bank = WaveformBank.generate(t.injections, t.n_val_waveforms, seed=t.seed + 10_000, sample_rate_hz=rate,
                                     workers=t.workers, cache=out / "banks")
    maker = WindowMaker.from_config(cfg, bank, t.seed)
    val_maker = WindowMaker.from_config(cfg, val_bank, t.seed + 10_000)
    validation = make_validation_set(val_maker, t.seed + 10_000, t.val_noise_windows, t.val_snrs,
                                     t.val_windows_per_snr)
    return maker, validation


def template_filters(cfg: Config, pairs: int, taps: int, params: dict | None = None) -> np.ndarray:
    """Initial filters of a factorized network's template branch: ``(2 * pairs, taps)`` float32.

    ``pairs`` zero-spin IMRPhenomD templates with chirp masses log-spaced over the
    training range (equal masses and, alternately, mass ratio 2, components clipped
    to the range), whitened with the filter the daemon designs from the design PSD
    (``train.psd``, ``whiten`` phase and high-pass), cut to their last ``taps`` samples
    ending ``train.template_after`` samples after the merger; row ``i`` is a cut and
    row ``i + pairs`` its Hilbert quadrature, each scaled to unit norm, so in
    unit-variance whitened noise a pair's amplitude is the template's SNR over the cut.

    With ``params`` (``mass1``, ``mass2`` and optionally ``spin1z``, ``spin2z``
    arrays of ``pairs`` templates, e.g. a placed bank's) those templates are cut instead.
    """
    from gwstream.daemon.bank import TemplateBank, quadrature, whiten_templates
    from gwstream.daemon.sim.noise import load_psd
    from gwstream.kernels import whiten as kwh

    t, rate = cfg.train, cfg.data.analysis_rate_hz
    inj = t.injections
    s1 = s2 = None
    if params is None:
        lo = max(inj.mass1_msun[0], inj.mass2_msun[0])
        hi = max(inj.mass1_msun[1], inj.mass2_msun[1])
        mc = np.geomspace(lo * 2 ** -0.2, hi * 2 ** -0.2, pairs)  # chirp mass of (lo, lo) .. (hi, hi)
        q = np.where(np.arange(pairs) % 2 == 0, 1.0, 2.0)
        total = mc * (1 + q) ** 1.2 / q ** 0.6
        m1 = np.clip(total * q / (1 + q), lo, hi)
        m2 = np.clip(total / (1 + q), lo, hi)
    else:
        m1, m2 = np.asarray(params["mass1"], float), np.asarray(params["mass2"], float)
        s1, s2 = params.get("spin1z"), params.get("spin2z")
        if m1.shape != (pairs,):
            raise ValueError(f"template params for {m1.shape} templates: expected ({pairs},)")
    bank = TemplateBank.from_params(m1, m2, s1, s2, sample_rate_hz=rate, f_lower_hz=inj.f_lower_hz,
                                    workers=t.workers)
    freqs, psd = load_psd(t.psd, sample_rate_hz=rate, delta_f_hz=1.0 / 16, low_frequency_hz=10.0)
    fir = kwh.design_fir(rate, freqs, psd, cfg.whiten.fduration_s, cfg.whiten.highpass_hz, cfg.whiten.phase)
    w = whiten_templates(bank.h, fir, cfg.whiten.phase)
    n = bank.h.shape[1]
    end = bank.merger_index + t.template_after
    if end > n or end < taps:
        raise ValueError(f"template cut [{end - taps}, {end}) leaves the {n}-sample templates")
    wq = quadrature(w)
    rows = np.concatenate([w[:, end - taps:end], wq[:, end - taps:end]])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise ValueError("a whitened template is zero over its cut: template_taps too short for its merger")
    log.info("template branch: %d pairs of %d taps, total masses %s Msun", pairs, taps,
             np.round(m1 + m2, 1).tolist())
    return (rows / norms).astype(np.float32)


def _built(t):
    """A fresh ``t.model`` network (``train.dilations`` for a factorized one, when set)."""
    from gwstream.daemon.errors import ConfigError
    from gwstream.models.networks import build_model

    if not t.dilations:
        return build_model(t.model)
    if t.model != "factorized":
        raise ConfigError("train.dilations", list(t.dilations), f"empty for a {t.model} model (only factorized has them)")
    try:
        return build_model(t.model, dilations=tuple(t.dilations))
    except ValueError as exc:
        raise ConfigError("train.dilations", list(t.dilations), str(exc)) from None


def _with_template_branch(cfg: Config, model):
    """``model`` with ``train.template_pairs`` template filters added (a new branch, initialised) when asked."""
    from gwstream.daemon.errors import ConfigError
    from gwstream.models import surgery

    t = cfg.train
    pairs = t.template_pairs
    if not pairs:
        if t.template_bank:
            raise ConfigError("train.template_pairs", pairs, "the branch's pairs with train.template_bank's "
                              "templates (not 0)")
        return model
    have = getattr(model, "template_pairs", None)
    if have is None:
        raise ConfigError("train.template_pairs", pairs, f"0 for a {t.model} model (only factorized has the branch)")
    if t.template_bank:  # a placed bank's templates, added to the branch there is (or a new one)
        try:
            params = load_template_params(t.template_bank)
        except ValueError as exc:
            raise ConfigError("train.template_bank", t.template_bank, str(exc)) from None
        n = params["mass1"].size
        if pairs != have + n:
            raise ConfigError("train.template_pairs", pairs, f"{have + n}: the {have} pairs of the network plus "
                              f"the {n} templates of train.template_bank")
        filters = template_filters(cfg, n, t.template_taps, params)
        if have:
            if (model.template_taps, model.template_after) != (t.template_taps, t.template_after):
                raise ConfigError("train.template_taps", t.template_taps,
                                  f"{model.template_taps} taps, {model.template_after} after the merger, as in "
                                  "train.init_weights")
            return surgery.with_more_templates(model, filters)
        return surgery.with_template_branch(model, n, t.template_taps, filters, t.template_after)
    if have:
        if (model.template_taps, model.template_after) != (t.template_taps, t.template_after) or pairs < have:
            raise ConfigError("train.template_pairs", pairs,
                              f"{have} or more pairs of {model.template_taps} taps, {model.template_after} after the "
                              "merger, as in train.init_weights, or 0")
        if pairs > have:  # grown: the new pairs' chirp masses interleave with the old ones (log-spaced too)
            return surgery.with_more_templates(model, template_filters(cfg, pairs - have, t.template_taps))
        return model
    if t.template_after >= t.template_taps:
        raise ConfigError("train.template_after", t.template_after,
                          f"fewer than train.template_taps ({t.template_taps}) samples")
    if t.template_taps > model.receptive_field_samples:
        raise ConfigError("train.template_taps", t.template_taps,
                          f"at most the network's receptive field, {model.receptive_field_samples} samples")
    return surgery.with_template_branch(model, pairs, t.template_taps,
                                            template_filters(cfg, pairs, t.template_taps), t.template_after)


class HardNegativePicker:
    """Mine the noise windows a factorized model scores highest, for :meth:`WindowMaker.epoch`.

    Each call encodes the first ``span_s + slides`` seconds of a whitened noise
    stretch once (:meth:`FactorizedNet.encode_stream`) and scores, from those
    features, every window whose H1 part starts in the first ``span_s``
    seconds (one per feature step, 8 samples) against L1 slid by 0, 1, ...,
    ``slides - 1`` s (:meth:`FactorizedNet.head_windows`): about
    ``slides * span_s * 256`` noise windows per stretch for the price of
    encoding it. It returns the ``k`` highest, no two within
    a window length of each other in H1 or in L1 -- fewer than ``k`` when the
    scan holds fewer such windows (about ``span_s / 2`` at most). Slid windows are noise as good as any: the
    detectors' noise is independent. The model is scored in eval mode and left
    in the mode it was in.
    """

    def __init__(self, model, rate: int, *, slides: int = 16, span_s: int = 48):
        self.model, self.rate, self.slides, self.span_s = model, int(rate), int(slides), int(span_s)
        self.window = int(model.window_samples)
        self.scores: list[float] = []
        self.short = 0  # windows asked for but not found distinct from the picks (since the last summary)

    def __call__(self, white: np.ndarray, k: int) -> list[tuple[int, int]]:
        import torch

        model, rate, step = self.model, self.rate, self.model.stride_samples
        n = (self.span_s + self.slides) * rate
        if white.shape[-1] < n:
            raise ValueError(f"noise stretch of {white.shape[-1]} samples, expected >= {n} "
                             f"(hard_negative_span_s + hard_negative_slides seconds)")
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                feats = model.encode_stream(torch.from_numpy(np.ascontiguousarray(white[:, :n], dtype=np.float32)))
                slide_steps = np.arange(self.slides) * (rate // step)
                starts = np.arange((self.span_s * rate - self.window) // step + 1)
                scores = model.head_windows(feats, starts, slide_steps).float().numpy().copy()
        finally:
            model.train(was_training)
        picks = []
        guard = self.window // step
        l1_starts = starts[None, :] + slide_steps[:, None]
        for _ in range(k):
            i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
            if scores[i, j] == -np.inf:  # every window left shares data with a pick
                self.short += k - len(picks)
                break
            self.scores.append(float(scores[i, j]))
            picks.append((int(starts[j]) * step, int(l1_starts[i, j]) * step))
            # no second window sharing (most of) this H1 or this L1 stretch of data
            scores[:, np.abs(starts - starts[j]) <= guard] = -np.inf
            scores[np.abs(l1_starts - l1_starts[i, j]) <= guard] = -np.inf
        return picks

    def summary(self) -> str:
        """Scores of the windows picked since the last call (then forgets them)."""
        s, self.scores = np.asarray(self.scores), []
        short, self.short = self.short, 0
        if not s.size:
            return "none"
        return (f"{s.size} windows, logit median {np.median(s):.2f}, min {s.min():.2f}, max {s.max():.2f}"
                + (f"; {short} more asked for than the scans held distinct (plain noise windows instead)"
                   if short else ""))


def _epoch_maker(maker: WindowMaker, st, picker: HardNegativePicker | None):
    """``make_epoch(epoch)`` of one stage's settings ``st`` (a :class:`TrainConfig`)."""

    def make_epoch(epoch: int):
        snr_range = curriculum(epoch, st.snr_start, st.snr_end, st.curriculum_epochs)
        out = maker.epoch((st.seed, epoch), st.windows_per_epoch, snr_range, st.signal_fraction,
                          single_fraction=st.single_ifo_fraction, single_snr_range=st.single_ifo_snr,
                          loud_fraction=st.loud_fraction, loud_snr_range=st.loud_snr,
                          hard_fraction=st.hard_negative_fraction, hard_picker=picker,
                          glitch_fraction=st.glitch_fraction, glitches=st.glitches,
                          glitch_both_fraction=st.glitch_both_fraction,
                          glitch_coincident_fraction=st.glitch_coincident_fraction,
                          glitch_signal_fraction=st.glitch_signal_fraction)
        if picker is not None:
            log.info("epoch=%d hard negatives: %s", epoch + 1, picker.summary())
        return out

    return make_epoch


def initial_model(cfg: Config):
    """The network ``gwstream train`` starts from, and the sha256 of ``train.init_weights`` (None without one).

    Random (``train.dilations``) or ``train.init_weights``; grown by ``train.template_pairs`` /
    ``train.template_bank``, a new branch's gain at ``train.template_gain_init``; per-template gains,
    diagonal template units and the learning-rate scales as the config asks. Seeded by ``train.seed``.
    """
    import torch
    from gwstream.daemon.errors import ConfigError
    from gwstream.models import surgery
    from gwstream.models.scorer import load_checkpoint

    t = cfg.train
    init_sha = None
    torch.manual_seed(t.seed)
    model = _built(t)
    if t.init_weights:
        init, _, init_sha = load_checkpoint(t.init_weights)
        if type(init) is not type(model):
            raise ConfigError("train.init_weights", t.init_weights,
                              f"a {t.model} checkpoint (it holds {type(init).__name__})")
        if t.dilations and tuple(init.hparams.get("dilations", ())) != tuple(t.dilations):
            raise ConfigError("train.dilations", list(t.dilations), f"empty or train.init_weights' own, "
                              f"{list(init.hparams.get('dilations', ()))}")
        model = init
        log.info("fine-tuning from %s (sha256 %s)", t.init_weights, init_sha[:12])
    had_branch = bool(getattr(model, "template_pairs", 0))
    model = _with_template_branch(cfg, model)
    if getattr(model, "template_pairs", 0):
        if not had_branch and t.template_gain_init:
            with torch.no_grad():
                model.template_gain.fill_(t.template_gain_init)
        model.lr_scales["templates.weight"] = t.template_filter_lr_scale
    elif t.template_gain_init or t.template_filter_lr_scale != TrainConfig.template_filter_lr_scale:
        key = "train.template_gain_init" if t.template_gain_init else "train.template_filter_lr_scale"
        raise ConfigError(key, getattr(t, key.split(".")[1]), "its default for a network without a template branch "
                          "(set train.template_pairs)")
    if t.template_gain == "per_template":
        if not getattr(model, "template_pairs", 0):
            raise ConfigError("train.template_gain", t.template_gain, "'shared' for a network without a template "
                              "branch (set train.template_pairs)")
        if not model.template_gain.dim():
            model = surgery.with_per_template_gain(model)
    if t.template_units == "diagonal" and not getattr(model, "diagonal_template_units", False):
        if not getattr(model, "template_pairs", 0):
            raise ConfigError("train.template_units", t.template_units, "'dense' for a network without a template "
                              "branch (set train.template_pairs)")
        model = surgery.with_diagonal_template_units(model)
    if getattr(model, "template_pairs", 0) and t.template_lr_scale != 1.0:
        model.lr_scales["template_gain"] = t.template_lr_scale

    return model, init_sha


def run_train(cfg: Config, *, progress: bool = True) -> dict:
    """Train ``cfg.train.model``; returns the final summary (also written next to the weights)."""
    import torch
    from gwstream.daemon.errors import ConfigError
    from gwstream.models.networks import count_parameters
    from gwstream.models.scorer import save_checkpoint
    from gwstream.models.train import fit, selection_key

    t = cfg.train
    torch.set_num_threads(t.threads)
    t0 = time.monotonic()
    maker, validation = build_data(cfg)
    data_s = time.monotonic() - t0
    log.info("data ready: bank=%d validation=%d windows in %.1f s", len(maker.bank), validation[0].shape[0], data_s)
    model, init_sha = initial_model(cfg)

    stages = t.stage_configs()
    history: list[dict] = []
    for i, st in enumerate(stages):
        picker = None
        if st.hard_negative_fraction > 0:
            if not hasattr(model, "encode_stream"):
                key = f"train.stages[{i}].hard_negative_fraction" if t.stages else "train.hard_negative_fraction"
                raise ConfigError(key, st.hard_negative_fraction,
                                  f"0 for a {t.model} model (hard-negative mining scans streams with a factorized "
                                  f"model's encode_stream/head_windows)")
            picker = HardNegativePicker(model, cfg.data.analysis_rate_hz, slides=st.hard_negative_slides,
                                        span_s=st.hard_negative_span_s)
        stage_dir = Path(t.out_dir) / f"stage-{i + 1}" if t.stages else Path(t.out_dir)
        if t.stages:
            log.info("stage %d of %d: %d epochs, lr %g, seed %d (%s)", i + 1, len(stages), st.epochs, st.lr,
                     st.seed, stage_dir)
        stage_history = fit(model, _epoch_maker(maker, st, picker), validation, epochs=st.epochs,
                            batch_size=st.batch_size, lr=st.lr, weight_decay=st.weight_decay, seed=st.seed,
                            out_dir=stage_dir / t.model, select=st.select_epoch, progress=progress)
        if t.stages:
            stage_history = [{**h, "stage": i + 1} for h in stage_history]
        history += stage_history
    wall = time.monotonic() - t0
    # the weights kept are the last stage's choice among its own epochs
    best = (stage_history[-1] if stages[-1].select_epoch == "last" else
            max(stage_history, key=lambda h: selection_key(h["validation"])))
    meta = {
        "command": " ".join(["gwstream", *sys.argv[1:]]) if sys.argv and "gwstream" in sys.argv[0] else
        "gwstream train", "config": section_to_dict(t), "psd": section_to_dict(cfg.psd),
        "whiten": section_to_dict(cfg.whiten), "windows": section_to_dict(cfg.windows),
        "merger_offset_s": float(np.mean(t.merger_span_s)), "selected_epoch": best["epoch"],
        "validation": best["validation"], "wall_s": round(wall, 1),
        # the work itself: data preparation plus every epoch's own wall time (a resumed run's
        # process wall time leaves out the epochs it resumed past)
        "train_wall_s": round(data_s + sum(h["wall_s"] for h in history), 1), "torch": torch.__version__,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_trainable": count_parameters(model),  # fewer when some are frozen (train.template_filter_lr_scale = 0)
    }
    if t.stages:
        meta["stages"] = [section_to_dict(st) | {"stage": i + 1} for i, st in enumerate(stages)]
        meta["selected_stage"] = len(stages)
    if t.init_weights:
        meta["init_sha256"] = init_sha
    weights = Path(t.weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, weights, meta=meta)
    weights.with_suffix(".json").write_text(json.dumps({"meta": meta, "history": history}, indent=1))
    weights.with_suffix(".md").write_text(model_card(weights, meta, history, model))
    log.info("wrote %s (epoch %d of %d, %.0f s)", weights, best["epoch"], len(history), wall)
    return meta


def _glitch_sentence(t: dict) -> str:
    """The model card's words on training with glitches (``t``: the train section as saved)."""
    if not (t.get("glitch_fraction") or t.get("glitch_signal_fraction")):
        return ""
    g = t.get("glitches") or {}
    rates = {k: g.get(f"{k}_rate_per_hour", 0) for k in ("blip", "scatter", "loud")}
    total = sum(rates.values()) or 1.0
    mix = ", ".join(f"{k} {v / total:.0%}" for k, v in rates.items() if v)
    lined = (f", {t['glitch_coincident_fraction']:.0%} of those pairs lined up within "
             f"{COINCIDENT_DT_S * 1e3:g} ms"
             if t.get("glitch_coincident_fraction") else "")
    return (f" A {t.get('glitch_fraction', 0):.0%} share of the windows hold simulated glitches (`gwstream "
            f"simulate`'s shapes: {mix}; blips and arches at SNR log-uniform in {g.get('snr')}, loud transients in "
            f"{g.get('loud_snr')}), whitened like the signals, in one detector ({t.get('glitch_both_fraction', 0):.0%} "
            f"of them an independent one in each{lined}), labelled noise; {t.get('glitch_signal_fraction', 0):.0%} of "
            f"the signals also hold a glitch in one detector.")


def model_card(weights: Path, meta: dict, history: list[dict], model) -> str:
    """Markdown model card: what the network is, how it was trained, how it scores."""
    import hashlib

    stages = meta.get("stages") or []
    t = {**meta["config"], **stages[-1]} if stages else meta["config"]  # the last stage's mixture is described
    v = meta["validation"]
    wall_s = meta.get("train_wall_s", meta["wall_s"])
    n_epochs = stages[-1]["epochs"] if stages else len(history)
    sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    snr_bins = [k for k in v["tpr"]["0.001"] if k != "all"]
    lines = [
        f"# Model card: `{Path(weights).name}`",
        "",
        f"- **Network**: `{t['model']}` ({type(model).__name__}), {meta['n_parameters']:,} parameters"
        + (f" ({meta['n_trainable']:,} of them trained)" if meta.get("n_trainable", meta["n_parameters"])
           != meta["n_parameters"] else "") + "; "
        "input whitened H1/L1 windows `[B, 2, 2048]` (1 s at 2048 Hz), output an unbounded logit (ranking statistic).",
        f"- **Hyper-parameters**: `{json.dumps(getattr(model, 'hparams', {}))}`",
        f"- **sha256**: `{sha}`",
        f"- **Trained by**: `{meta.get('command', 'gwstream train')}` (seed {t['seed']}), torch {meta['torch']}, "
        f"{meta['machine']}, {wall_s / 60:.1f} min wall including data generation"
        + (f" ({len(stages)} stages, table below)." if stages else "."),
        f"- **Data**: {t['windows_per_epoch']} fresh windows per epoch ({t['signal_fraction']:.0%} with a signal) for "
        f"{n_epochs} epochs{' (the last stage; earlier stages: table below)' if stages else ''}. "
        f"Noise: stationary Gaussian from `{t['psd']}` and {t['psd_variants'] - 1} perturbed "
        f"variants (scale up to x{t['psd_scale']} either way, tilt (f/100 Hz)^±{t['psd_tilt']}), whitened with a PSD "
        f"*estimated* (median Welch, {meta['psd']['fftlength_s']} s segments) from each {t['stretch_s']}-s stretch "
        f"and the daemon's {meta['whiten']['fduration_s']}-s {meta['whiten'].get('phase', 'linear')}-phase FIR "
        f"(high-pass {meta['whiten']['highpass_hz']} Hz). "
        f"Signals: {t['n_waveforms']} pycbc `{t['injections']['approximant']}` waveforms, masses "
        f"{t['injections']['mass1_msun']} M☉, spins `{t['injections']['spin']}` ≤ {t['injections']['spin_max']}, "
        f"isotropic sky and orientation, merger uniformly in {t['merger_span_s']} s of the window "
        f"(trigger time = window start + {meta['merger_offset_s']:.2f} s), network SNR curriculum "
        f"{t['snr_start']} → {t['snr_end']} over {t['curriculum_epochs']} epochs."
        + (f" A further {t.get('single_ifo_fraction', 0):.0%} of the windows hold a signal in *one* detector only "
           f"(single-detector SNR uniform in {t.get('single_ifo_snr')}), labelled noise: a coincidence statistic "
           f"must rank a time-slid event or a single-detector glitch as noise." if t.get("single_ifo_fraction")
           else "")
        + (f" A {t.get('loud_fraction', 0):.0%} share of the coincident signals instead has a network SNR log-uniform "
           f"in {t.get('loud_snr')}, so the statistic keeps rising with SNR." if t.get("loud_fraction") else "")
        + (f" A {t.get('hard_negative_fraction', 0):.1%} share of the windows are *hard negatives*, mined afresh each "
           f"epoch: of every stretch's first {t.get('hard_negative_span_s')} s, against L1 slid by 0-"
           f"{t.get('hard_negative_slides', 1) - 1} s, the noise windows the model of the moment scores highest "
           f"(about {t.get('hard_negative_slides', 0) * t.get('hard_negative_span_s', 0) * 256:,} windows scanned per "
           f"stretch), so training sees the loud tail of noise that sets the threshold at a low false-alarm rate."
           if t.get("hard_negative_fraction") else "")
        + _glitch_sentence(t),
        *([f"- **Initialised from**: `{t['init_weights']}` (sha256 `{meta.get('init_sha256', '?')}`), i.e. this run "
           f"fine-tunes that checkpoint (see its own model card for how it was trained); the wall time above is the "
           f"fine-tuning alone."] if t.get("init_weights") else []),
        f"- **Selected epoch**: {meta['selected_epoch']} of {n_epochs} "
        + (f"of stage {len(stages)} " if stages else "")
        + ("(the last: `train.select_epoch = \"last\"`)." if t.get("select_epoch") == "last" else
           "(highest TPR at per-window FPR 1e-3, SNR 8)."),
        "",
        f"## Validation (held out: {v['n_noise']} noise windows, {t['val_windows_per_snr']} signal windows per SNR, "
        f"waveforms and noise from seeds disjoint from training)",
        "",
        "| per-window FPR | " + " | ".join(f"TPR @ SNR {b}" for b in snr_bins) + " | AUC |",
        "|---|" + "---|" * (len(snr_bins) + 1),
    ]
    for fpr in v["tpr"]:
        row = v["tpr"][fpr]
        lines.append(f"| {fpr} | " + " | ".join(f"{row[b]:.3f}" for b in snr_bins) + f" | {v['auc']:.4f} |")
    if stages:
        lines += ["", "## Stages", "",
                  "Each stage trains the model the previous one left, with `[train]`'s settings changed by its "
                  "`[[train.stages]]` table; banks, PSDs and validation windows are shared.", "",
                  "| stage | epochs | lr | seed | network SNR (curriculum) | single-detector | hard negatives | loud "
                  "| glitches | kept | wall min |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for st in stages:
            snr = (f"{st['snr_start']} → {st['snr_end']} over {st['curriculum_epochs']}"
                   if st["curriculum_epochs"] and st["snr_start"] != st["snr_end"] else f"{st['snr_end']}")
            single = (f"{st['single_ifo_fraction']:.0%} at {st['single_ifo_snr']}" if st["single_ifo_fraction"]
                      else "-")
            hard = (f"{st['hard_negative_fraction']:.1%} of {st['hard_negative_span_s']} s × "
                    f"{st['hard_negative_slides']} slides" if st["hard_negative_fraction"] else "-")
            loud = f"{st['loud_fraction']:.0%}" if st["loud_fraction"] else "-"
            glitch = (f"{st.get('glitch_fraction', 0):.0%} (+{st.get('glitch_signal_fraction', 0):.0%} of signals)"
                      if st.get("glitch_fraction") or st.get("glitch_signal_fraction") else "-")
            mins = sum(h["wall_s"] for h in history if h.get("stage") == st["stage"]) / 60
            lines.append(f"| {st['stage']} | {st['epochs']} | {st['lr']:g} | {st['seed']} | {snr} | {single} | "
                         f"{hard} | {loud} | {glitch} | {st['select_epoch']} | {mins:.1f} |")
    lines += [
        "",
        "AUC per SNR bin: " + ", ".join(f"{b}: {v['auc_by_snr'][b]:.4f}" for b in snr_bins) + ".",
        "",
        "With this validation size a per-window FPR of 1e-4 rests on the few loudest noise windows; the "
        "issue-4 comparison against matched filtering on 10^5 noise windows is `benchmarks/validate.py`.",
        "",
        "## Training curve",
        "",
        "| " + ("stage | " if stages else "") + "epoch | loss | AUC | TPR@1e-3, SNR 8 | wall s |",
        "|---|" + ("---|" if stages else "") + "---|---|---|---|",
    ]
    for h in history:
        lines.append("| " + (f"{h['stage']} | " if stages else "") + f"{h['epoch']} | {h['loss']:.4f} | "
                     f"{h['validation']['auc']:.4f} | {h['validation']['tpr']['0.001'].get('8', float('nan')):.3f} | "
                     f"{h['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"
