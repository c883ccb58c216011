"""What a model and a background must share with the search's configuration.

A background's statistics depend on how the data were conditioned, and a
model only scores data whitened the way it was trained on. These checks need
no data and no numerics (no numba, no torch), so the daemon's preflight can
make them before any process starts, and the search makes them again when it
loads the model.
"""

from __future__ import annotations

from gwstream.daemon.config import Config
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.units import samples_to_ns

from .consistency import Consistency

__all__ = ["conditioning_meta", "search_meta", "check_whitening", "check_consistency", "setting_name",
           "consistency"]

#: the configuration setting of each top-level key of a background's meta that is not a section of its own
_SETTING_OF_META = {"slide_step_s": "ranking.slide_step_s", "cluster_window_s": "ranking.cluster_window_s",
                    "consistency.weight": "ranking.consistency_weight",
                    "consistency.threshold": "ranking.consistency_threshold",
                    "consistency.slope": "ranking.consistency_slope",
                    "window_s": "windows.window_s", "analysis_rate_hz": "data.analysis_rate_hz",
                    "model_sha256": "model.path (sha256)", "model": "model.path (network)"}


def setting_name(meta_key: str) -> str:
    """The setting a (dotted) key of a background's meta stands for: ``psd.psd_length_s`` is itself,
    ``slide_step_s`` is ``ranking.slide_step_s``, ``model_sha256`` is the model's checkpoint."""
    return _SETTING_OF_META.get(meta_key, meta_key)


def conditioning_meta(cfg: Config) -> dict:
    """The conditioning settings a background's statistics depend on (part of its identity).

    The autogating threshold is one of them: gating changes which glitches reach the slides, so a
    background made without gates is too loud for a gated search, and one made with gates too quiet
    for a search without (FARs below the truth). Backgrounds written before the threshold was
    recorded are read as ungated (:meth:`Background.read_group`)."""
    return {"whiten": {"fduration_s": float(cfg.whiten.fduration_s), "highpass_hz": float(cfg.whiten.highpass_hz),
                       "phase": cfg.whiten.phase, "gate_threshold": float(cfg.whiten.gate_threshold)},
            "psd": {"fftlength_s": float(cfg.psd.fftlength_s), "overlap": float(cfg.psd.overlap),
                    "average": cfg.psd.average, "psd_length_s": float(cfg.psd.psd_length_s)}}


def search_meta(cfg: Config, model_sha256: str) -> dict:
    """What a background's meta must agree with to be counted in a search of ``cfg`` with that model, as far as it
    is known before the search starts (the search adds the network's name): the model, window stride and length,
    analysis rate, slide step, cluster window and the conditioning (:func:`conditioning_meta`)."""
    rate = int(cfg.data.analysis_rate_hz)
    return {"model_sha256": model_sha256, "slide_step_s": float(cfg.ranking.slide_step_s),
            "window_s": float(cfg.windows.window_s), "analysis_rate_hz": rate,
            "stride_ns": samples_to_ns(int(round(cfg.windows.stride_s * rate)), rate),
            "cluster_window_s": float(cfg.ranking.cluster_window_s), "consistency": consistency(cfg).meta(),
            **conditioning_meta(cfg)}


def consistency(cfg: Config) -> Consistency:
    """The per-detector consistency test ``cfg.ranking`` sets (off at weight 0)."""
    r = cfg.ranking
    return Consistency(float(r.consistency_weight), float(r.consistency_threshold), float(r.consistency_slope))


def check_consistency(weight: float, template_pairs: int, model_path="the model") -> None:
    """Raise :class:`ConfigError` when ``ranking.consistency_weight`` (``weight``) is on for a model without a
    template branch (the test reads the branch's best template)."""
    if weight > 0 and template_pairs <= 0:
        raise ConfigError("ranking.consistency_weight", weight,
                          f"0: {model_path} has no template branch, which the consistency test needs")


def check_whitening(cfg: Config, model_meta: dict) -> None:
    """Raise :class:`ConfigError` unless ``cfg`` whitens with the filter phase the model was trained with."""
    trained_phase = (model_meta.get("whiten") or {}).get("phase")
    if trained_phase is not None and trained_phase != cfg.whiten.phase:
        raise ConfigError("whiten.phase", cfg.whiten.phase,
                          f"{trained_phase!r}: the model was trained on windows whitened with the "
                          f"{trained_phase}-phase filter")
