"""Start-up checks that need no data: the model's whitening phase and the initial background.

``gwstream run`` and ``gwstream replay`` make them before any process starts,
so that a configuration the search would refuse (a model trained with another
whitening phase, an initial background built with another model or
conditioning, an unreadable file) stops the daemon at once with that message
instead of a search process failing at each of the supervisor's restarts. The
search process makes the same checks again when it loads the model
(:class:`~gwstream.daemon.stream.pipeline.SearchStage`).

Nothing here imports torch: the checkpoint's meta and identity come from
:func:`gwstream.models.checkpoint.read_checkpoint_info`.
"""

from __future__ import annotations

from pathlib import Path

from gwstream.daemon.config import Config
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.stream.background import Background
from gwstream.daemon.stream.identity import check_whitening, conditioning_meta
from gwstream.models import default_model_path

__all__ = ["default_model_path", "check_initial_background", "preflight", "load_scorer"]


def check_initial_background(cfg: Config, model_sha256: str, bg: Background, what: str = "background") -> None:
    """Raise :class:`BackgroundError` unless ``bg`` can seed a search of ``cfg`` with that model.

    Checks what is known before the search starts: the model and the conditioning
    (:func:`conditioning_meta`); :class:`~gwstream.daemon.stream.pipeline.SearchStage`
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
        torch, which is slow to load). ``gwstream run`` does (a daemon that would restart a
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


def load_scorer(cfg: Config, path: str | Path | None = None):
    """The :class:`~gwstream.models.scorer.Scorer` of ``path``, else ``cfg.model.path``, else the shipped model."""
    from gwstream.models.scorer import Scorer

    path = Path(path or cfg.model.path or default_model_path())
    try:
        return Scorer.from_checkpoint(path, device=cfg.model.device, batch_size=cfg.model.batch_size,
                                      threads=cfg.model.threads or None)
    except (OSError, ValueError) as exc:  # the message preflight gives, for a file it could not fully check
        raise ConfigError("model.path", str(path), f"a readable checkpoint ({exc})") from None
