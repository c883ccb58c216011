"""Growing a trained :class:`~gwstream.models.factorized.FactorizedNet`: new networks built from an old one.

Each function returns a new network of the same class (the argument is left
as it was), in the argument's training mode, with its ``lr_scales``:

- :func:`with_template_branch`: a template branch added to a network without
  one, its outputs unchanged;
- :func:`with_more_templates`: more filter pairs appended to a branch, the
  old ones and their head units unchanged;
- :func:`with_per_template_gain`: one gain per template instead of one shared;
- :func:`with_diagonal_template_units`: template units that read only their
  own template's energy.

:class:`FactorizedNet` keeps classmethods of the same names that call these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from gwstream.models.factorized import FactorizedNet

__all__ = ["with_template_branch", "with_more_templates", "grown", "with_per_template_gain",
           "with_diagonal_template_units"]


def with_template_branch(model: FactorizedNet, pairs: int, taps: int, filters: np.ndarray | torch.Tensor,
                         after: int = 100) -> FactorizedNet:
    """``model`` (without a branch) grown by a template branch of ``filters``, its outputs unchanged.

    The encoder is ``model``'s; hidden unit ``h + k`` of the head reads template
    ``k``'s energy in H1 plus its lag-maximum in L1 (that template's two-detector
    SNR squared), and ``template_gain`` starts at zero.

    Parameters
    ----------
    model : FactorizedNet
        A network without a template branch.
    pairs, taps : int
        Filter pairs and their length, samples.
    filters : array, shape (2 * pairs, taps)
        Pair ``i`` is rows ``i`` and ``i + pairs`` (see ``FactorizedNet.set_templates``).
    after : int
        Samples of each template after its merger.
    """
    if model.template_pairs:
        raise ValueError(f"the network already has a template branch ({model.template_pairs} pairs)")
    return grown(model, filters, template_pairs=int(pairs), template_taps=int(taps), template_after=int(after))


def with_more_templates(model: FactorizedNet, filters: np.ndarray | torch.Tensor) -> FactorizedNet:
    """``model`` (with a template branch) grown by the filter pairs ``filters`` ``(2 * extra, taps)``.

    Everything ``model`` has is kept where it was: its filters are pairs
    ``0 .. P - 1``, its head units and their weights unchanged. The new pairs
    come after them, each with a new hidden unit that reads its energy in H1
    plus its lag-maximum in L1 (as :func:`with_template_branch` sets them
    up), so the best-template statistic is now the maximum over all pairs.
    A per-template gain gives each new pair the mean of the old ones.
    """
    p = model.template_pairs
    if not p:
        raise ValueError("the network has no template branch to grow (use with_template_branch)")
    w = torch.as_tensor(np.asarray(filters, dtype=np.float32))
    if w.dim() != 2 or w.shape[0] % 2 or not w.shape[0] or w.shape[1] != model.template_taps:
        raise ValueError(f"new template filters of shape {tuple(w.shape)}, expected (2 * extra pairs, "
                         f"{model.template_taps})")
    return grown(model, w, template_pairs=p + w.shape[0] // 2)


def grown(model: FactorizedNet, filters: np.ndarray | torch.Tensor, **hparams) -> FactorizedNet:
    """``model`` with ``hparams["template_pairs"] - P`` new filter pairs after its ``P`` (0: a new branch).

    The encoder, the MLP and the head's existing weights are copied; new pair
    ``k``'s hidden unit reads its energy channel with weight 1 in both
    projections, so the unit is that template's two-detector SNR squared.
    """
    p = model.template_pairs
    new = type(model)(**{**model.hparams, **hparams})
    extra = new.template_pairs - p
    c, h = model.hparams["channels"], model.hparams["hidden"]
    w = torch.as_tensor(np.asarray(filters, dtype=np.float32))
    own = model.state_dict()
    with torch.no_grad():
        for k, v in new.state_dict().items():
            if k.startswith(("encoder.", "mlp.")):
                v.copy_(own[k])
        for proj, old in ((new.proj_h1, model.proj_h1), (new.proj_l1, model.proj_l1)):
            proj.weight.zero_()
            proj.weight[: h + p, : c + p] = old.weight  # old features and units keep their places
            proj.weight[h + p:, c + p:, 0] = torch.eye(extra)
            if proj.bias is not None:
                proj.bias.zero_()
                proj.bias[: h + p] = old.bias
        new.template_gain.zero_()
        if p and model.template_gain.dim():
            new.template_gain[:p] = model.template_gain
            new.template_gain[p:] = model.template_gain.mean()
        elif p:
            new.template_gain.copy_(model.template_gain)
    if p:  # pair i is rows i and i + pairs: the old pairs' rows, then the new ones', in each half
        old_w = model.templates.weight[:, 0].detach()
        w = torch.cat([old_w[:p], w[: w.shape[0] // 2], old_w[p:], w[w.shape[0] // 2:]])
    new.set_templates(w)
    new.lr_scales = {**new.lr_scales, **model.lr_scales}
    return new.train(model.training)


def with_per_template_gain(model: FactorizedNet) -> FactorizedNet:
    """``model`` (with a template branch and one shared gain) with one gain per template, each the shared one.

    Its outputs are unchanged when the shared gain is positive (a positive
    factor commutes with the maximum over templates).
    """
    if not model.template_pairs or model.template_gain.dim() > 0:
        raise ValueError("expected a network with a template branch and one shared template_gain")
    new = type(model)(**{**model.hparams, "per_template_gain": True})
    own = model.state_dict()
    with torch.no_grad():
        for k, v in new.state_dict().items():
            v.copy_(own[k].expand_as(v) if k == "template_gain" else own[k])
    new.lr_scales = dict(model.lr_scales)
    return new.train(model.training)


def with_diagonal_template_units(model: FactorizedNet) -> FactorizedNet:
    """``model`` with ``diagonal_template_units``: the projections' weights outside that structure set to zero.

    Each template unit keeps the weight on its own energy and its bias; the
    ``H`` units keep all theirs. What is dropped (template units reading
    other channels) is what training leaves of the zeros
    :func:`with_template_branch` and :func:`with_more_templates` start from:
    small, but not zero, so the logits move a little; score the result again.
    """
    if not model.template_pairs:
        raise ValueError("expected a network with a template branch")
    new = type(model)(**{**model.hparams, "diagonal_template_units": True})
    new.load_state_dict(model.state_dict())
    h, p, c = new.projection_channels - new.template_pairs, new.template_pairs, new.hparams["channels"]
    keep = torch.zeros(h + p, c + p, dtype=torch.bool)
    keep[:h] = True
    keep[h + torch.arange(p), c + torch.arange(p)] = True
    with torch.no_grad():
        for proj in (new.proj_h1, new.proj_l1):
            proj.weight[:, :, 0].masked_fill_(~keep, 0.0)
    new.lr_scales = dict(model.lr_scales)
    return new.train(model.training)
