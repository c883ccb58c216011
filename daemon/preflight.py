"""Start-up checks that need no data: the model's whitening phase and the initial background.

``gwstream run`` and ``gwstream replay`` make them before any process starts,
so that a configuration the search would refuse (a model trained with another
whitening phase, an initial background built with another model or
conditioning, an unreadable file) stops the daemon at once with that message
instead of a search process failing at each of the supervisor's restarts. The
search process makes the same checks again when it loads the model
(:class:`~gwstream.daemon.search.SearchStage`).

Nothing here imports torch: the checkpoint's meta and identity come from
:func:`gwstream.models.checkpoint.read_checkpoint_info`.
"""

from __future__ import annotations

from pathlib import Path

from .background import Background
from .config import Config
from .errors import ConfigError

__all__ = ["default_model_path", "conditioning_meta", "check_whitening", "check_initial_background", "preflight"]


def default_model_path() -> Path:
    """The shipped default model, ``models/default.pt`` inside the installed package."""
    import gwstream.models

    return Path(gwstream.models.__path__[0]) / "default.pt"


def conditioning_meta(cfg: Config) -> dict:
    """The conditioning settings a background's statistics depend on (part of its identity)."""
    return {"whiten": {"fduration_s": float(cfg.whiten.fduration_s), "highpass_hz": float(cfg.whiten.highpass_hz),
                       "phase": cfg.whiten.phase},
            "psd": {"fftlength_s": float(cfg.psd.fftlength_s), "overlap": float(cfg.psd.overlap),
                    "average": cfg.psd.average, "psd_length_s": float(cfg.psd.psd_length_s)}}


def check_whitening(cfg: Config, model_meta: dict) -> None:
    """Raise :class:`ConfigError` unless ``cfg`` whitens with the filter phase the model was trained with."""
    trained_phase = (model_meta.get("whiten") or {}).get("phase")
    if trained_phase is not None and trained_phase != cfg.whiten.phase:
        raise ConfigError("whiten.phase", cfg.whiten.phase,
                          f"{trained_phase!r}: the model was trained on windows whitened with the "
                          f"{trained_phase}-phase filter")


def check_initial_background(cfg: Config, model_sha256: str, bg: Background, what: str = "background") -> None:
    """Raise :class:`BackgroundError` unless ``bg`` can seed a search of ``cfg`` with that model.

    Checks what is known before the search starts: the model and the conditioning
    (:func:`conditioning_meta`); :class:`~gwstream.daemon.search.SearchStage`
    checks the rest when it merges it.
    """
    Background(bg.stride_ns, {"model_sha256": model_sha256, **conditioning_meta(cfg)}).check_compatible(bg, what)


def preflight(cfg: Config, *, load_weights: bool = True) -> None:
    """The search process's start-up checks that need no data, made before any process starts.

    Parameters
    ----------
    cfg : Config
    load_weights : bool
        Also build the network and check that the weights fit it (imports
        torch: about 2 s). ``gwstream run`` does (a daemon that would restart a
        failing search five times should not start one); ``gwstream replay``
        does not (its search process is not restarted after a failure, and
        reports a misfit checkpoint itself).

    Raises
    ------
    ConfigError
        For an unreadable checkpoint or background file, or a whitening phase
        other than the model's.
    BackgroundError
        For an initial background of another model or conditioning.
    """
    from gwstream.models.checkpoint import read_checkpoint_info

    path = Path(cfg.model.path or default_model_path())
    try:
        if load_weights:
            from gwstream.models.scorer import load_checkpoint

            _, meta, sha = load_checkpoint(path)
        else:
            info = read_checkpoint_info(path)
            meta, sha = info.meta, info.sha256
    except (OSError, ValueError) as exc:
        raise ConfigError("model.path", str(path), f"a readable checkpoint ({exc})") from None
    check_whitening(cfg, meta)
    if cfg.ranking.background_init:
        try:
            bg = Background.load(cfg.ranking.background_init)
        except (OSError, ValueError) as exc:
            raise ConfigError("ranking.background_init", cfg.ranking.background_init,
                              f"a readable background file ({exc})") from None
        check_initial_background(cfg, sha, bg, f"ranking.background_init {cfg.ranking.background_init}")
