"""Start-up checks that need no data: the model's whitening phase and the initial background.

``gwstream run`` and ``gwstream replay`` make them before any process starts,
so that a configuration the search would refuse (a model trained with another
whitening phase, an initial background built with another model or
conditioning, an unreadable file) stops the daemon at once with that message
instead of a search process failing at each of the supervisor's restarts. The
search process makes the same checks again when it loads the model
(:class:`~gwstream.daemon.stream.pipeline.SearchStage`).

``gwstream run`` also decides here where its background starts
(:func:`resolve_background_init`): left at its default, ``ranking.background_init``
becomes the background shipped with the default model when it was made with
the configured model and conditioning, and ``none`` (start empty, with a
warning naming the setting that differs) otherwise.

Nothing here imports torch: the checkpoint's meta and identity come from
:func:`gwstream.models.checkpoint.read_checkpoint_info`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from gwstream.daemon.config import Config, state_path
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.stream.background import Background, BackgroundError, initial_background_path
from gwstream.daemon.stream.identity import check_consistency, check_whitening, search_meta
from gwstream.models import default_background_path, default_model_path

__all__ = ["default_model_path", "check_initial_background", "preflight", "resolve_background_init", "load_scorer"]

log = logging.getLogger(__name__)


def check_initial_background(cfg: Config, model_sha256: str, bg: Background, what: str = "background") -> None:
    """Raise :class:`BackgroundError` unless ``bg`` can seed a search of ``cfg`` with that model.

    Checks what is known before the search starts: the model, the windows, the time slides, the clustering
    and the conditioning (:func:`search_meta`); :class:`~gwstream.daemon.stream.pipeline.SearchStage`
    checks the network's name too when it merges it.
    """
    meta = search_meta(cfg, model_sha256)
    Background(meta["stride_ns"], meta).check_compatible(bg, what)


def _with_background_init(cfg: Config, value: str) -> Config:
    return dataclasses.replace(cfg, ranking=dataclasses.replace(cfg.ranking, background_init=value))


def resolve_background_init(cfg: Config, model_sha256: str) -> Config:
    """``cfg`` with the background ``gwstream run`` starts from when ``ranking.background_init`` is left empty.

    The shipped background (:func:`gwstream.models.default_background_path`) when it was made with this
    model and conditioning; ``"none"`` (start empty) when the ranking state (``ranking.state_file``) of an
    earlier run is there to be restored (it already holds its background: adding the shipped one again would
    count it twice), or, with a warning naming the setting that differs, when the shipped background does not
    fit. A ``background_init`` that is given is returned as it is (:func:`preflight` checks it).
    """
    if cfg.ranking.background_init.strip():
        return cfg
    state = state_path(cfg)
    if state.exists():
        log.info("ranking state %s will be restored: its background is continued (the shipped background is not "
                 "added to it)", state)
        return _with_background_init(cfg, "none")
    path = default_background_path()
    try:
        bg = Background.load(path)
        check_initial_background(cfg, model_sha256, bg, "the shipped background")
    except BackgroundError as exc:
        log.warning("not starting from the shipped background %s: %s. The background starts empty: no FAR reaches "
                    "the alert threshold until the time slides have gathered the live time (set "
                    "ranking.background_init to a background made with this setup, or to 'none' to silence this)",
                    path, exc)
        return _with_background_init(cfg, "none")
    log.info("starting from the shipped background %s: live time %.0f s (%.1f days) from %d time slides",
             path, bg.livetime_s, bg.livetime_s / 86400, bg.n_slides_max)
    return _with_background_init(cfg, str(path))


def preflight(cfg: Config, *, load_weights: bool = True, shipped_background: bool = False) -> Config:
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
    shipped_background : bool
        Start from the shipped background when ``ranking.background_init`` is left empty and it fits
        (:func:`resolve_background_init`; ``gwstream run``).

    Returns
    -------
    Config
        ``cfg``, with ``ranking.background_init`` resolved when ``shipped_background``.

    Raises
    ------
    ConfigError
        For an unreadable checkpoint or background file, a whitening phase
        other than the model's, or a consistency test the model cannot make.
    BackgroundError
        For an initial background of another model or conditioning.
    """
    from gwstream.models.checkpoint import read_checkpoint_info

    path = Path(cfg.model.path or default_model_path())
    try:
        if load_weights:
            from gwstream.models.scorer import load_checkpoint

            model, meta, sha = load_checkpoint(path)
            templates = int(getattr(model, "template_pairs", 0))
        else:
            info = read_checkpoint_info(path)
            meta, sha = info.meta, info.sha256
            templates = int(info.hparams.get("template_pairs", 0)) if info.name == "factorized" else 0
    except (OSError, ValueError) as exc:
        raise ConfigError("model.path", str(path), f"a readable checkpoint ({exc})") from None
    check_whitening(cfg, meta)
    check_consistency(cfg.ranking.consistency_weight, templates, path)
    if shipped_background:
        cfg = resolve_background_init(cfg, sha)
    init = initial_background_path(cfg.ranking.background_init)
    if init is not None:
        try:
            bg = Background.load(init)
        except (OSError, ValueError) as exc:
            raise ConfigError("ranking.background_init", cfg.ranking.background_init,
                              f"a readable background file ({exc})") from None
        check_initial_background(cfg, sha, bg, f"ranking.background_init {init}")
    return cfg


def load_scorer(cfg: Config, path: str | Path | None = None):
    """The :class:`~gwstream.models.scorer.Scorer` of ``path``, else ``cfg.model.path``, else the shipped model."""
    from gwstream.models.scorer import Scorer

    path = Path(path or cfg.model.path or default_model_path())
    try:
        return Scorer.from_checkpoint(path, device=cfg.model.device, batch_size=cfg.model.batch_size,
                                      threads=cfg.model.threads or None)
    except (OSError, ValueError) as exc:  # the message preflight gives, for a file it could not fully check
        raise ConfigError("model.path", str(path), f"a readable checkpoint ({exc})") from None
