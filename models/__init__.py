"""gwstream.models: torch networks, the batched scorer, training and the shipped weights.

Modules (import them directly; this package imports nothing heavy, so loading it is cheap):

- ``networks``: the network interface (``forward(windows [B, 2, N]) -> logits [B]``),
  the ``baseline`` and ``resnet`` joint networks and ``build_model(name, **hparams)``;
- ``factorized``: ``FactorizedNet``, the per-detector encoder + coincidence head, with the
  public streaming interface (``project``, ``lag_pool``, ``head_projected``, ``template_track``, ...)
  that scores windows and time slides from cached features;
- ``encoder``: ``StreamEncoder``, the encoder run incrementally over a stream, its state explicit
  (``EncoderState``: snapshot and restore);
- ``head``: the coincidence head and lag pooling as plain functions of tensors;
- ``surgery``: networks grown from a trained one (a template branch, more templates, per-template
  gains, diagonal template units);
- ``scorer``: ``Scorer`` (batched CPU/CUDA inference), weights-only checkpoints
  (``save_checkpoint``, ``load_checkpoint``) and deployable exports (``load_exported``).

The weights the product ships live in ``weights/`` beside this file: the default
network with its card and time-slid background, and the ``baseline`` and ``resnet``
networks of the seed comparison.
"""

from pathlib import Path

__all__ = ["WEIGHTS_DIR", "default_model_path", "default_background_path", "default_bank_path"]

#: folder of the shipped weights (package data)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_model_path() -> Path:
    """The shipped default network, ``weights/default.pt`` inside the installed package."""
    return WEIGHTS_DIR / "default.pt"


def default_background_path() -> Path:
    """The time-slid background shipped with the default network (``weights/default-background.h5``)."""
    return WEIGHTS_DIR / "default-background.h5"


def default_bank_path() -> Path:
    """The template bank of the default network's template branch, in its order (``weights/default-bank.csv``)."""
    return WEIGHTS_DIR / "default-bank.csv"
