"""gwstream.models: torch networks, the batched scorer, training and shipped weights.

Modules (import them directly; this package imports nothing, so loading it is cheap):

- ``networks``: the network interface (``forward(windows [B, 2, N]) -> logits [B]``),
  the ``baseline`` and ``resnet`` joint networks and ``build_model(name, **hparams)``;
- ``factorized``: the per-detector encoder + coincidence head, with the stream path
  (``encode_stream``, ``head_windows``) that scores windows and time slides from cached features;
- ``scorer``: ``Scorer`` (batched CPU/CUDA inference), weights-only checkpoints
  (``save_checkpoint``, ``load_checkpoint``) and deployable exports (``load_exported``).
"""
