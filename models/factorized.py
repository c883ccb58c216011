"""Factorized detector: a per-detector encoder and a light H1-L1 coincidence head.

The encoder turns one detector's whitened strain into a time-resolved feature
sequence; the head pairs H1 features at step ``t`` with L1 features at
``t + lag`` for ``|lag| <= lag_steps`` and pools them into one logit per
window. Because the encoder sees one detector at a time and uses only
unpadded ("valid") convolutions, it can run once over a long contiguous
stream (:meth:`FactorizedNet.encode_stream`) and every window, and every time
slide of L1 against H1, is scored from the cached features by the head alone
(:meth:`FactorizedNet.head_windows`).

Alignment
---------
Feature ``j`` of a sequence depends exactly on input samples
``[j * stride_samples, j * stride_samples + receptive_field_samples)``.
A window that starts at stream sample ``s`` with ``s % stride_samples == 0``
therefore has features equal to stream features
``s // stride_samples + arange(n_features(window_samples))``, up to float
rounding (convolution of a longer input may sum in a different order). The
default stride is 8 samples, which divides the 1/16-s window stride (128
samples at 2048 Hz).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gwstream.models.networks import GWNet
from torch import nn

__all__ = ["FactorizedNet", "StreamEncoder"]

_STEM_STRIDE = 4
_STEM_KERNEL = 32
_CONV_KERNEL = 8
_POOL = 2
_MLP_ROWS = 256  # rows per gemm of the head's MLP on the streaming path (FactorizedNet._mlp_rows)
#: slides from which the head's best template goes by the pruned kernel even without kept top lists
_PRUNE_SLIDES = 16
_TEMPLATE_LR_SCALE = 0.01  # template filters (unit norm, taps ~0.03) move at 1 % of the learning rate
_TEMPLATE_EPS = 1e-6  # keeps the statistic's gradient finite at zero
#: about the best-template statistic of a noise window (the square root of the largest of ~3000 chi-squared
#: values with 4 degrees of freedom): subtracted so that the statistic's weight leaves noise logits in place
_TEMPLATE_NOISE = 5.0


#: a template's SNR squared counts up to this (SNR 8) in one detector in the head: a louder single-detector signal
#: (an event slid against the other detector's noise, a glitch) counts as much as SNR 8 there, not more. The
#: encoder's features are not capped: FactorizedNet.template_track times loud events with them
_TEMPLATE_CAP = 64.0


def _energy(z: torch.Tensor, pairs: int) -> torch.Tensor:
    """``z_c^2 + z_q^2`` of filter-pair outputs ``z`` ``(B, 2 * pairs, T)``: each template's SNR squared."""
    return z[:, :pairs] ** 2 + z[:, pairs:] ** 2


def _by_fixed_rows(x: torch.Tensor, f, out: torch.Tensor | None = None) -> torch.Tensor:
    """``f`` over the rows of ``x [m, k]`` in blocks of exactly ``_MLP_ROWS`` rows (the last zero-padded), ``[m, ...]``.

    A CPU gemm's rounding depends on how many rows it is given (small batches take
    other kernels), not on where a row sits in a batch of a given size: one fixed
    shape makes each row's result independent of how many rows come with it.
    ``x`` may be a strided view (the template branch's unfolded strain): its rows
    are copied one block at a time into a buffer that stays in cache, never all
    at once. The results go to ``out`` when given.
    """
    m, k = x.shape
    block = x.new_zeros((_MLP_ROWS, k))
    for r0 in range(0, max(m, 1), _MLP_ROWS):
        n = min(_MLP_ROWS, m - r0)
        block[:n] = x[r0:r0 + n]
        block[n:] = 0.0
        y = f(block)
        if out is None:
            out = y.new_empty((m, *y.shape[1:]))
        out[r0:r0 + n] = y[:n]
    return out


class _DilatedValidBlock(nn.Module):
    """Residual block: ELU(BN(conv k=3, dilation d, no padding)) + centre-cropped input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = int(dilation)
        self.conv = nn.Conv1d(channels, channels, 3, dilation=self.dilation, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation
        return x[..., d : x.shape[-1] - d] + self.act(self.bn(self.conv(x)))


class FactorizedNet(GWNet):
    """Per-detector encoder with a coincidence head over relative lags.

    Parameters
    ----------
    sample_rate_hz, window_samples : int
        Input geometry (2048 Hz, 2048 samples = 1 s).
    stem_channels : int
        Channels of the stride-4 stem convolution (2048 → 512 Hz).
    channels : int
        Feature channels ``C`` of the encoder output, one vector per
        ``stride_samples`` (8 samples, 3.9 ms at 2048 Hz).
    dilations : list of int
        Dilations of the residual ``k = 3`` blocks at the feature rate; they
        set the receptive field (default 1624 samples, 0.79 s: a feature
        sees the in-window inspiral of any merger in the 0.5-0.9 s span).
    hidden : int
        Width ``H`` of the coincidence layer.
    max_lag_ms : float
        Largest |H1 − L1| arrival-time difference the head searches, ms
        (10 ms, the light travel time between the sites).
    template_pairs : int
        Filter pairs ``P`` of the template branch (0: none). Each pair is a
        ``template_taps``-long filter and its quadrature, correlated with the
        strain at the feature stride; the pair's energy ``z_c^2 + z_q^2`` (a
        matched-filter SNR squared when the pair is a unit-norm whitened
        template and its Hilbert transform) is appended to the features as one
        more channel (the head reads it capped at 64, SNR 8 in one detector),
        and the head gets ``P`` more hidden units. With
        their weights as :meth:`with_template_branch` sets them, unit ``k`` is
        template ``k``'s two-detector SNR squared (H1 plus the L1 maximum over
        lags), and the largest of the units over templates and steps, square
        rooted, is the window's *best-template statistic* (a 2-detector matched
        filter with a small bank of cut templates): the logit adds
        ``template_gain * (statistic - 5)``. The filters are set by
        :meth:`set_templates` (training builds them from whitened pycbc
        templates) and train at ``lr_scales`` times the learning rate.
    template_taps : int
        Length of each template filter, samples (at most the receptive field:
        feature ``j``'s filters read samples ``[j * stride + rf - taps,
        j * stride + rf)``, the end of the encoder's receptive field).
    template_after : int
        Samples of each template after its merger (``train.template_after``):
        feature ``j``'s templates peak for a merger at sample
        ``j * stride + rf - template_after`` (:meth:`template_merger_sample`).
    per_template_gain : bool
        One ``template_gain`` per template instead of one for all: the logit
        adds ``max_k template_gain[k] * (sqrt(u_k) - 5)`` over the templates'
        units ``u_k`` (with equal gains, the shared gain's term exactly).
    diagonal_template_units : bool
        Template unit ``k`` reads only its own template's energy (a weight and
        a bias): the template rows' other weights are zero and never computed,
        so a projection costs ``H (C + P) + P`` per step instead of
        ``(H + P)(C + P)`` (what makes hundreds of templates affordable). The
        ``H`` units read every channel as before. Trained dense networks keep
        the dropped weights at ~1e-3 (:meth:`with_diagonal_template_units`).

    Attributes
    ----------
    feature_channels : int
        Channels ``C`` of :meth:`encode`'s output: ``channels``, plus
        ``template_pairs`` template energies after them.
    stride_samples : int
        Input samples per feature step (8).
    receptive_field_samples : int
        Input samples one feature depends on.
    lag_steps : int
        Head searches lags ``-lag_steps .. +lag_steps`` feature steps:
        ``ceil(max_lag_ms * 1e-3 * sample_rate_hz / stride_samples)``, 3 by
        default (±24 samples = ±11.7 ms; ±10 ms is ±20.5 samples).
    window_steps : int
        Feature steps per window, ``n_features(window_samples)`` (54).

    Notes
    -----
    The head is ``u[t] = relu(A f_H1[t] + max_{|l|<=k} B f_L1[t+l] + c)``
    (``A``, ``B``: ``H x C``; the max is per hidden unit, which is the same as
    ``max_l relu(A f_H1[t] + B f_L1[t+l] + c)`` because relu is monotonic),
    over the ``window_steps - 2 k`` steps whose lags stay inside the window,
    then max and mean over ``t`` into a 2-layer MLP that outputs the logit.
    Its cost per window is ``O(H T)``, independent of the number of lags,
    and the per-step projections are shared by all windows and all slides.
    """

    name = "factorized"
    joint = False
    #: head_projected takes the template units' best by its kernel (tests switch it off to compare)
    _split_head = True

    def __init__(
        self,
        sample_rate_hz: int = 2048,
        window_samples: int = 2048,
        stem_channels: int = 16,
        channels: int = 64,
        dilations: Sequence[int] = (2, 4, 8, 16, 32, 32),
        hidden: int = 32,
        max_lag_ms: float = 10.0,
        template_pairs: int = 0,
        template_taps: int = 1024,
        template_after: int = 100,
        per_template_gain: bool = False,
        diagonal_template_units: bool = False,
    ) -> None:
        super().__init__(sample_rate_hz, window_samples)
        c0, c = int(stem_channels), int(channels)
        dil = [int(d) for d in dilations]
        if min(c0, c, int(hidden)) < 1 or any(d < 1 for d in dil):
            raise ValueError(
                f"stem_channels={stem_channels}, channels={channels}, hidden={hidden}, "
                f"dilations={list(dilations)}: expected positive integers"
            )
        if not max_lag_ms >= 0:
            raise ValueError(f"max_lag_ms = {max_lag_ms!r}, expected >= 0 ms")
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c0, _STEM_KERNEL, stride=_STEM_STRIDE, bias=False),
            nn.BatchNorm1d(c0),
            nn.ELU(),
            nn.Conv1d(c0, c, _CONV_KERNEL, bias=False),
            nn.BatchNorm1d(c),
            nn.ELU(),
            nn.MaxPool1d(_POOL),
            nn.Conv1d(c, c, _CONV_KERNEL, bias=False),
            nn.BatchNorm1d(c),
            nn.ELU(),
            *[_DilatedValidBlock(c, d) for d in dil],
        )
        self.stride_samples = _STEM_STRIDE * _POOL
        rf = _STEM_KERNEL + (_CONV_KERNEL - 1) * _STEM_STRIDE + (_POOL - 1) * _STEM_STRIDE
        rf += (_CONV_KERNEL - 1) * self.stride_samples + sum(2 * d for d in dil) * self.stride_samples
        self.receptive_field_samples = rf
        self.lag_steps = math.ceil(float(max_lag_ms) * 1e-3 * self.sample_rate_hz / self.stride_samples)
        self.window_steps = self.n_features(self.window_samples)
        if self.window_steps <= 2 * self.lag_steps:
            raise ValueError(
                f"window_samples = {window_samples} gives {self.window_steps} feature steps, expected more than "
                f"2 * lag_steps = {2 * self.lag_steps} (receptive field {rf} samples)"
            )
        n_tp, n_taps, n_after = int(template_pairs), int(template_taps), int(template_after)
        if n_tp < 0 or (n_tp and not (1 <= n_taps <= rf and 0 <= n_after < n_taps)):
            raise ValueError(f"template_pairs = {template_pairs}, template_taps = {template_taps}, template_after = "
                             f"{template_after}: expected pairs >= 0, 1 <= taps <= the receptive field ({rf} "
                             "samples) and 0 <= after < taps")
        self.template_pairs, self.template_taps, self.template_after = n_tp, n_taps, n_after
        if diagonal_template_units and not n_tp:
            raise ValueError("diagonal_template_units needs a template branch (template_pairs > 0)")
        self.diagonal_template_units = bool(diagonal_template_units)
        #: parameter name -> factor on the learning rate (the optimiser's groups; see models.train.fit)
        self.lr_scales: dict[str, float] = {}
        if n_tp:
            self.templates = nn.Conv1d(1, 2 * n_tp, n_taps, stride=self.stride_samples, bias=False)
            self.lr_scales["templates.weight"] = _TEMPLATE_LR_SCALE
        h = int(hidden)
        # features: the encoder's c channels, then the template energies; hidden units: h, then one per template
        self.feature_channels = c + n_tp
        self.proj_h1 = nn.Conv1d(c + n_tp, h + n_tp, 1)
        self.proj_l1 = nn.Conv1d(c + n_tp, h + n_tp, 1, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * h, h), nn.ELU(), nn.Linear(h, 1))
        if n_tp:  # the logit adds template_gain x (the best template's statistic - 5)
            self.template_gain = nn.Parameter(torch.zeros((n_tp,) if per_template_gain else ()))
        self.hparams.update(
            stem_channels=c0, channels=c, dilations=dil, hidden=h, max_lag_ms=float(max_lag_ms)
        )
        if n_tp:  # checkpoints without the branch keep their hyper-parameters as they were
            self.hparams.update(template_pairs=n_tp, template_taps=n_taps, template_after=n_after)
            if per_template_gain:
                self.hparams.update(per_template_gain=True)
            if diagonal_template_units:
                self.hparams.update(diagonal_template_units=True)

    def set_templates(self, filters: np.ndarray | torch.Tensor) -> None:
        """Set the template branch's filters: ``(2 * template_pairs, template_taps)``, pair ``i`` is rows ``i`` and ``i + pairs``.

        Row ``r`` is correlated with the strain: feature ``j`` gets
        ``sum_n filters[r, n] x[j * stride + rf - taps + n]``.
        """
        if not self.template_pairs:
            raise ValueError("this network has no template branch (template_pairs = 0)")
        w = torch.as_tensor(np.asarray(filters, dtype=np.float32))
        want = (2 * self.template_pairs, self.template_taps)
        if tuple(w.shape) != want or not torch.isfinite(w).all():
            raise ValueError(f"template filters of shape {tuple(w.shape)}, expected finite {want}")
        with torch.no_grad():
            self.templates.weight.copy_(w[:, None, :])

    def template_features(self, x: torch.Tensor) -> torch.Tensor:
        """Template energies ``(B, P, T)`` from strain ``x`` ``(B, n)`` that starts ``rf - taps`` samples in."""
        return _energy(self.templates(x.unsqueeze(1)), self.template_pairs)

    def _capped(self, f: torch.Tensor) -> torch.Tensor:
        """Features ``(..., C, T)`` as the head reads them: template energies capped at ``_TEMPLATE_CAP``."""
        if not self.template_pairs:
            return f
        c = self.feature_channels - self.template_pairs
        if torch.is_grad_enabled() and f.requires_grad:  # training: autograd's way
            return torch.cat([f[..., :c, :], f[..., c:, :].clamp(max=_TEMPLATE_CAP)], dim=-2)
        out = torch.empty_like(f)  # the same values, each row written once
        out[..., :c, :] = f[..., :c, :]
        torch.clamp(f[..., c:, :], max=_TEMPLATE_CAP, out=out[..., c:, :])
        return out

    def template_track(self, f_h1: torch.Tensor, f_l1: torch.Tensor) -> torch.Tensor:
        """The best template's two-detector SNR squared at every step, uncapped: where a loud event's merger is.

        Parameters
        ----------
        f_h1, f_l1 : torch.Tensor, shape (C, T) or (P, T)
            Encoder features (or their last ``P`` channels, the template
            energies) of H1 and L1 over the same steps.

        Returns
        -------
        torch.Tensor, shape (T - 2 * lag_steps,)
            At centre step ``j + lag_steps``: ``max_k (E_H1[k, j] + max_{|l| <= lag} E_L1[k, j + l])``.
            That step's templates peak for an H1 merger at :meth:`template_merger_sample`.
        """
        if not self.template_pairs:
            raise ValueError("this network has no template branch (template_pairs = 0)")
        p, k = self.template_pairs, self.lag_steps
        e_h1, e_l1 = f_h1[-p:], f_l1[-p:]
        return (e_h1[:, k:e_h1.shape[-1] - k] + self.lag_pool(e_l1)).amax(dim=0)

    def template_merger_sample(self, step: int) -> int:
        """Sample (counted as feature steps are) at which feature ``step``'s templates put the merger."""
        return int(step) * self.stride_samples + self.receptive_field_samples - self.template_after

    @classmethod
    def with_template_branch(cls, model: "FactorizedNet", pairs: int, taps: int,
                             filters: np.ndarray | torch.Tensor, after: int = 100) -> "FactorizedNet":
        """``model`` (without a branch) grown by a template branch of ``filters``, its outputs unchanged.

        The encoder is ``model``'s; hidden unit ``h + k`` of the head reads template
        ``k``'s energy in H1 plus its lag-maximum in L1 (that template's two-detector
        SNR squared), and ``template_gain`` starts at zero.
        """
        if model.template_pairs:
            raise ValueError(f"the network already has a template branch ({model.template_pairs} pairs)")
        return cls._grown(model, filters, template_pairs=int(pairs), template_taps=int(taps),
                          template_after=int(after))

    @classmethod
    def with_more_templates(cls, model: "FactorizedNet", filters: np.ndarray | torch.Tensor) -> "FactorizedNet":
        """``model`` (with a template branch) grown by the filter pairs ``filters`` ``(2 * extra, taps)``.

        Everything ``model`` has is kept where it was: its filters are pairs
        ``0 .. P - 1``, its head units and their weights unchanged. The new pairs
        come after them, each with a new hidden unit that reads its energy in H1
        plus its lag-maximum in L1 (as :meth:`with_template_branch` sets them
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
        return cls._grown(model, w, template_pairs=p + w.shape[0] // 2)

    @classmethod
    def _grown(cls, model: "FactorizedNet", filters: np.ndarray | torch.Tensor, **hparams) -> "FactorizedNet":
        """``model`` with ``hparams["template_pairs"] - P`` new filter pairs after its ``P`` (0: a new branch).

        The encoder, the MLP and the head's existing weights are copied; new pair
        ``k``'s hidden unit reads its energy channel with weight 1 in both
        projections, so the unit is that template's two-detector SNR squared.
        """
        p = model.template_pairs
        new = cls(**{**model.hparams, **hparams})
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

    @classmethod
    def with_per_template_gain(cls, model: "FactorizedNet") -> "FactorizedNet":
        """``model`` (with a template branch and one shared gain) with one gain per template, each the shared one.

        Its outputs are unchanged when the shared gain is positive (a positive
        factor commutes with the maximum over templates).
        """
        if not model.template_pairs or model.template_gain.dim() > 0:
            raise ValueError("expected a network with a template branch and one shared template_gain")
        new = cls(**{**model.hparams, "per_template_gain": True})
        own = model.state_dict()
        with torch.no_grad():
            for k, v in new.state_dict().items():
                v.copy_(own[k].expand_as(v) if k == "template_gain" else own[k])
        new.lr_scales = dict(model.lr_scales)
        return new.train(model.training)

    @classmethod
    def with_diagonal_template_units(cls, model: "FactorizedNet") -> "FactorizedNet":
        """``model`` with :attr:`diagonal_template_units`: the projections' weights outside that structure set to zero.

        Each template unit keeps the weight on its own energy and its bias; the
        ``H`` units keep all theirs. What is dropped (template units reading
        other channels) is what training leaves of the zeros
        :meth:`with_template_branch` and :meth:`with_more_templates` start
        from: ~1e-3 per weight in v11 and v13. The logits move a little (v13,
        random windows: by 0.04 on average, at most ~0.2): score the result again.
        """
        if not model.template_pairs:
            raise ValueError("expected a network with a template branch")
        new = cls(**{**model.hparams, "diagonal_template_units": True})
        new.load_state_dict(model.state_dict())
        h, p, c = new.proj_h1.out_channels - new.template_pairs, new.template_pairs, new.hparams["channels"]
        keep = torch.zeros(h + p, c + p, dtype=torch.bool)
        keep[:h] = True
        keep[h + torch.arange(p), c + torch.arange(p)] = True
        with torch.no_grad():
            for proj in (new.proj_h1, new.proj_l1):
                proj.weight[:, :, 0].masked_fill_(~keep, 0.0)
        new.lr_scales = dict(model.lr_scales)
        return new.train(model.training)

    def packed_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` as a checkpoint stores it: with :attr:`diagonal_template_units` the projections' template rows
        as their diagonal (``proj_*.template_weight``), not as rows of zeros (605 pairs: 3.3 MB less)."""
        if not self.diagonal_template_units:
            return state
        out = dict(state)
        h, c = self.proj_h1.out_channels - self.template_pairs, self.hparams["channels"]
        for name in ("proj_h1", "proj_l1"):
            w = state[f"{name}.weight"]
            out[f"{name}.weight"] = w[:h].clone()
            out[f"{name}.template_weight"] = torch.diagonal(w[h:, c:, 0]).clone()
        return out

    def unpacked_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`packed_state` (a state without the packed keys is returned as it is)."""
        if not self.diagonal_template_units or "proj_h1.template_weight" not in state:
            return state
        out = dict(state)
        h, p, c = self.proj_h1.out_channels - self.template_pairs, self.template_pairs, self.hparams["channels"]
        for name in ("proj_h1", "proj_l1"):
            top, d = out.pop(f"{name}.weight"), out.pop(f"{name}.template_weight", None)
            if not (torch.is_tensor(top) and torch.is_tensor(d) and top.shape == (h, c + p, 1) and d.shape == (p,)):
                raise ValueError(f"{name}: packed weights of shapes {getattr(top, 'shape', None)} and "
                                 f"{getattr(d, 'shape', None)}, expected ({h}, {c + p}, 1) and ({p},)")
            w = torch.zeros((h + p, c + p, 1), dtype=top.dtype)
            w[:h] = top
            w[h + torch.arange(p), c + torch.arange(p), 0] = d
            out[f"{name}.weight"] = w
        return out

    def n_features(self, n_samples: int) -> int:
        """Feature steps the encoder yields for ``n_samples`` input samples (0 if shorter than the receptive field)."""
        if n_samples < self.receptive_field_samples:
            return 0
        return (int(n_samples) - self.receptive_field_samples) // self.stride_samples + 1

    # ------------------------------------------------------------------ encoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features of single-detector strain.

        Parameters
        ----------
        x : torch.Tensor, shape (B, N)
            Whitened strain of one detector (H1 and L1 share the encoder),
            ``N >= receptive_field_samples``.

        Returns
        -------
        torch.Tensor, shape (B, C, n_features(N))
            Feature ``j`` depends on samples ``[j * stride_samples, j * stride_samples + receptive_field_samples)``.
        """
        if x.dim() != 2 or x.shape[1] < self.receptive_field_samples:
            raise ValueError(
                f"encoder input has shape {tuple(x.shape)}, expected [batch, n_samples] with "
                f"n_samples >= {self.receptive_field_samples}"
            )
        f = self.encoder(x.unsqueeze(1))
        if self.template_pairs:
            f = torch.cat([f, self.template_features(x[:, self.receptive_field_samples - self.template_taps:])], 1)
        return f

    def encode_stream(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a long contiguous whitened stretch, one row per detector.

        Parameters
        ----------
        x : torch.Tensor, shape (n_ifos, L)
            Whitened H1 and L1 strain over the same samples.

        Returns
        -------
        torch.Tensor, shape (n_ifos, C, n_features(L))
            The window starting at sample ``s`` (``s % stride_samples == 0``)
            owns features ``s // stride_samples + arange(window_steps)``.
        """
        if x.dim() != 2 or x.shape[0] != self.n_ifos:
            raise ValueError(f"stream has shape {tuple(x.shape)}, expected [{self.n_ifos}, n_samples]")
        return self.encode(x)

    # --------------------------------------------------------------------- head
    def _pool_mlp(self, u: torch.Tensor) -> torch.Tensor:
        # u: [..., H, T'] -> logits [...]
        return self._mlp(torch.cat([u.amax(dim=-1), u.mean(dim=-1)], dim=-1)).squeeze(-1)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on pooled hidden units ``x [..., 2 (H + P)]`` (max then mean of every unit) -> ``[..., 1]``."""
        if not self.template_pairs:
            return self.mlp(x)
        h, p = self.mlp[0].out_features, self.template_pairs
        old = torch.cat([x[..., :h], x[..., h + p : 2 * h + p]], dim=-1)
        if self.template_gain.dim() > 0:  # one gain per template: the largest of their weighted statistics
            each = torch.sqrt(x[..., h : h + p] + _TEMPLATE_EPS) - _TEMPLATE_NOISE
            return self.mlp(old) + (self.template_gain * each).amax(dim=-1, keepdim=True)
        best = torch.sqrt(x[..., h : h + p].amax(dim=-1, keepdim=True) + _TEMPLATE_EPS)
        return self.mlp(old) + self.template_gain * (best - _TEMPLATE_NOISE)

    def head(self, f_h1: torch.Tensor, f_l1: torch.Tensor) -> torch.Tensor:
        """Coincidence logit of one window's H1 and L1 features.

        Parameters
        ----------
        f_h1, f_l1 : torch.Tensor, shape (B, C, T)
            Encoder features of the same window in H1 and L1 (``T >= window_steps``
            is not required, but ``T > 2 * lag_steps`` is).

        Returns
        -------
        torch.Tensor, shape (B,)
            Unbounded logits.
        """
        k = self.lag_steps
        if f_h1.shape != f_l1.shape or f_h1.dim() != 3 or f_h1.shape[-1] <= 2 * k:
            raise ValueError(
                f"head inputs have shapes {tuple(f_h1.shape)} and {tuple(f_l1.shape)}, expected equal "
                f"[batch, channels, T] with T > {2 * k}"
            )
        a = self._proj(self.proj_h1, self._capped(f_h1))[..., k : f_h1.shape[-1] - k]
        b = F.max_pool1d(self._proj(self.proj_l1, self._capped(f_l1)), 2 * k + 1, stride=1)
        return self._pool_mlp(torch.relu(a + b))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` of whitened windows ``[B, 2, N]``: ``head(encode(H1), encode(L1))``."""
        self._check_windows(windows)
        b = windows.shape[0]
        f = self.encode(windows.reshape(b * self.n_ifos, windows.shape[-1]))
        f = f.reshape(b, self.n_ifos, f.shape[1], f.shape[2])
        return self.head(f[:, 0], f[:, 1])

    def head_windows(
        self,
        feats: torch.Tensor,
        starts: Sequence[int] | np.ndarray | torch.Tensor,
        slide_steps: int | Sequence[int] | np.ndarray | torch.Tensor = 0,
        *,
        wrap: bool = False,
        max_elements: int = 1 << 22,
    ) -> torch.Tensor:
        """Score windows, and time slides of them, from cached stream features.

        Parameters
        ----------
        feats : torch.Tensor, shape (2, C, T_total)
            Output of :meth:`encode_stream` (row 0 H1, row 1 L1).
        starts : array of int, shape (n_windows,)
            First feature step of each window (stream sample ``s`` ↔ step
            ``s // stride_samples``). H1 uses steps ``start .. start + window_steps``.
        slide_steps : int or array of int, shape (K,)
            L1 shift in feature steps: the window pairs H1 steps ``start + j``
            with L1 steps ``start + slide + j``. Zero is the zero-lag search.
        wrap : bool
            Slide L1 circularly over the cached span instead of requiring the
            slid window inside it: the lag-pooled L1 sequence (steps
            ``lag_steps .. T_total - lag_steps``) is indexed modulo its length
            ``T_total - 2 * lag_steps``, so that slide is a full turn.
        max_elements : int
            Bound on the size of intermediate tensors (memory, not results).

        Returns
        -------
        torch.Tensor, shape (n_windows,) for an int ``slide_steps``, (K, n_windows) for an array
            Logits; equal to ``forward`` on the windows cut from the stream
            (L1 cut ``slide * stride_samples`` samples later), to float rounding.

        Raises
        ------
        ValueError
            When a window (or, without ``wrap``, its slid L1 part) leaves the stream.

        Notes
        -----
        Cost is ``O(K H span)`` with ``span`` the steps from the first window's
        start to the last window's end: overlapping windows share the
        coincidence layer, so scoring 16 windows/s costs about as much as one.
        """
        if feats.dim() != 3 or feats.shape[0] != self.n_ifos:
            raise ValueError(f"feats have shape {tuple(feats.shape)}, expected [{self.n_ifos}, channels, T_total]")
        dev = feats.device
        st = torch.as_tensor(np.asarray(starts, dtype=np.int64) if not torch.is_tensor(starts) else starts,
                             dtype=torch.long, device=dev).reshape(-1)
        scalar = np.ndim(slide_steps) == 0 if not torch.is_tensor(slide_steps) else slide_steps.dim() == 0
        sl = torch.as_tensor(np.asarray(slide_steps, dtype=np.int64) if not torch.is_tensor(slide_steps)
                             else slide_steps, dtype=torch.long, device=dev).reshape(-1)
        k, tw, total = self.lag_steps, self.window_steps, feats.shape[-1]
        n_w, n_s = st.numel(), sl.numel()
        if n_w == 0 or n_s == 0:
            out = feats.new_empty((n_s, n_w))
            return out[0] if scalar else out
        if int(st.min()) < 0 or int(st.max()) + tw > total:
            raise ValueError(
                f"window starts span steps [{int(st.min())}, {int(st.max())}], expected within "
                f"[0, {total - tw}] for {total} cached feature steps and {tw} steps per window"
            )
        if not wrap:
            lo, hi = int(st.min()) + int(sl.min()), int(st.max()) + int(sl.max())
            if lo < 0 or hi + tw > total:
                raise ValueError(
                    f"slid L1 windows span steps [{lo}, {hi + tw}), expected within [0, {total}]; "
                    "shorten the slides, extend the cached stream or pass wrap=True"
                )
        feats = self._capped(feats)
        a = self._proj(self.proj_h1, feats[0:1])[0]  # [H, total], with bias c
        bm = F.max_pool1d(self._proj(self.proj_l1, feats[1:2]), 2 * k + 1, stride=1)[0]  # [H, total-2k], centre j+k
        s0 = int(st.min())
        out = self.head_projected(a[:, s0 + k:], bm, st - s0, s0 + sl, wrap=wrap, max_elements=max_elements)
        return out[0] if scalar else out

    def project(self, f_h1: torch.Tensor, f_l1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's per-step projections of one stream's features.

        Parameters
        ----------
        f_h1, f_l1 : torch.Tensor, shape (C, T)
            Encoder features of H1 and L1 over the same steps.

        Returns
        -------
        a : torch.Tensor, shape (H, T)
            ``A f_H1 + c`` at every step.
        p : torch.Tensor, shape (H, T)
            ``B f_L1`` at every step; the head uses its running maximum over
            ``2 * lag_steps + 1`` steps (see :meth:`lag_pool`).

        Notes
        -----
        Plain matrix products rather than the 1x1 convolutions (same values
        to float rounding): their columns do not depend on how many steps are
        projected at once, so a stream gives the same projections whether it
        arrives block by block or many blocks at a time.
        """
        f_h1, f_l1 = self._capped(f_h1), self._capped(f_l1)
        if self.diagonal_template_units:
            return self._proj(self.proj_h1, f_h1), self._proj(self.proj_l1, f_l1)
        a = torch.addmm(self.proj_h1.bias[:, None], self.proj_h1.weight[:, :, 0], f_h1)
        return a, torch.mm(self.proj_l1.weight[:, :, 0], f_l1)

    def _proj(self, proj: nn.Conv1d, f: torch.Tensor) -> torch.Tensor:
        """``proj`` (1x1 convolution) of capped features ``f`` ``(..., C, T)`` -> ``(..., H + P, T)``.

        With :attr:`diagonal_template_units`, as two pieces: the ``H`` units (a
        matrix product per step), the ``P`` template units as weight times own
        energy plus bias.
        """
        if not self.diagonal_template_units:
            return proj(f)
        h, p = proj.out_channels - self.template_pairs, self.template_pairs
        c = f.shape[-2] - p
        w = proj.weight[:, :, 0]
        if torch.is_grad_enabled() and (f.requires_grad or w.requires_grad):  # training: autograd's way
            top = torch.matmul(w[:h], f)
            e = f[..., c:, :] * torch.diagonal(w[h:, c:])[:, None]
            if proj.bias is not None:
                top = top + proj.bias[:h, None]
                e = e + proj.bias[h:, None]
            return torch.cat([top, e], dim=-2)
        out = f.new_empty((*f.shape[:-2], h + p, f.shape[-1]))  # the same operations, written in place: no cat
        torch.matmul(w[:h], f, out=out[..., :h, :])
        torch.mul(f[..., c:, :], torch.diagonal(w[h:, c:])[:, None], out=out[..., h:, :])
        if proj.bias is not None:
            out.add_(proj.bias[:, None])
        return out

    def lag_pool(self, p: torch.Tensor) -> torch.Tensor:
        """``b[j] = max(p[j .. j + 2 lag_steps])``, the L1 term centred at step ``j + lag_steps``; shape (H, T - 2k)."""
        return F.max_pool1d(p[None], 2 * self.lag_steps + 1, stride=1)[0]

    def head_projected(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        starts: torch.Tensor,
        offsets: torch.Tensor,
        *,
        wrap: bool = False,
        grid: int | None = None,
        max_elements: int = 1 << 22,
        b_top: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> torch.Tensor:
        """Logits of windows and time slides from projected features (the cost of a time slide).

        Parameters
        ----------
        a : torch.Tensor, shape (H, n_a)
            H1 projections at the centre steps: window ``w`` uses
            ``a[:, starts[w] : starts[w] + window_steps - 2 * lag_steps]``.
        b : torch.Tensor, shape (H, n_b)
            Lag-pooled L1 projections (:meth:`lag_pool`): window ``w`` of slide
            ``r`` uses ``b[:, offsets[r] + starts[w] + j]`` for the same ``j``
            (indices modulo ``n_b`` when ``wrap``, for a circular buffer).
        starts : torch.Tensor of int, shape (n_windows,)
        offsets : torch.Tensor of int, shape (K,)
        grid : int, optional
            A step that divides every start (the daemon's window stride in
            steps). The head sums each window's steps in blocks of
            ``gcd(window steps, grid)``, so a window's logit does not depend on
            which other windows are scored with it: a block's single window
            alone and a backlog's windows together give the same bits. Without
            it the blocks are as long as the starts allow (one window alone:
            its whole span), which can differ in the last bit.
        b_top : (numpy.ndarray, numpy.ndarray), optional
            :func:`gwstream.kernels.coinc.top_templates` of ``b``'s template
            rows, kept by a caller whose ``b`` is a ring buffer (computed
            here when not given; used only by the CPU kernel path).

        Returns
        -------
        torch.Tensor, shape (K, n_windows)
            Logits; non-finite where any projection used is.
        """
        dev = a.device
        st = torch.as_tensor(starts, dtype=torch.long, device=dev).reshape(-1)
        sl = torch.as_tensor(offsets, dtype=torch.long, device=dev).reshape(-1)
        tp = self.window_steps - 2 * self.lag_steps
        n_w, n_s = st.numel(), sl.numel()
        if n_w == 0 or n_s == 0:
            return a.new_empty((n_s, n_w))
        n_b = b.shape[-1]
        # Windows share steps: compute u once per slide over the span the windows
        # cover, reduce it in blocks of g steps (g divides tp and every start
        # offset), then pool whole windows from the blocks.
        rel = st.cpu().numpy()
        if rel.min() < 0 or rel.max() + tp > a.shape[-1]:
            raise ValueError(f"window starts [{rel.min()}, {rel.max()}] need {rel.max() + tp} H1 steps, "
                             f"{a.shape[-1]} given")
        if grid is not None:
            if grid <= 0 or (rel % grid).any():
                raise ValueError(f"window starts must be multiples of grid = {grid} steps")
            g = math.gcd(tp, int(grid))
        else:
            g = math.gcd(tp, *[int(v) for v in np.unique(rel)])
        span = int(rel.max()) + tp
        nbw = tp // g  # blocks per window
        bidx = st // g
        a_span = a[:, :span]
        j = torch.arange(span, device=dev)
        if not wrap:
            lo, hi = int(sl.min()), int(sl.max()) + span
            if lo < 0 or hi > n_b:
                raise ValueError(f"slid L1 steps [{lo}, {hi}) leave the {n_b} given; pass wrap=True for a ring")
        hdim = a.shape[0]
        lo_all = (torch.remainder(sl, n_b) if wrap else sl).tolist()
        # With one shared template gain the logit reads the template units only through their largest value
        # over templates and steps: on the CPU a kernel forms that per slide and step without the units
        # (gwstream.kernels.coinc), and the units of the MLP go the general way below. Same bits.
        p = self.template_pairs
        split = self._split_head and bool(p) and self.template_gain.dim() == 0 and a.device.type == "cpu" \
            and a.dtype == b.dtype
        hu = hdim - p if split else hdim  # units pooled by max and mean
        chunk = max(1, int(max_elements) // max(1, hu * span))  # slides at a time through the units
        if split:  # every slide's best template at once (one parallel kernel call; the lists sorted once)
            best_all = self._best_template(a_span[hu:], b[hu:], lo_all, g, nbw, bidx, b_top)  # [K, n_w], in order
        outs = []
        for i0 in range(0, n_s, chunk):
            lo = lo_all[i0 : i0 + chunk]
            kc = len(lo)
            step = lo[1] - lo[0] if kc > 1 else 1
            inside = all(v + span <= n_b for v in lo)  # no slide wraps around the end of a ring buffer
            flip = False
            if inside and step and all(lo[i + 1] - lo[i] == step for i in range(kc - 1)):
                # evenly spaced slides (the daemon's): one strided view of b, read once by the add;
                # a view cannot step backwards, so decreasing offsets are read in reverse
                flip = step < 0
                u = b.as_strided((hu, kc, span), (b.stride(0), abs(step) * b.stride(1), b.stride(1)),
                                 b.storage_offset() + min(lo[0], lo[-1]) * b.stride(1))
                u = torch.add(u, a_span[:hu, None])
            elif inside:  # contiguous slices: a copy per slide, no gather
                u = torch.stack([b[:hu, v : v + span] for v in lo], dim=1).add_(a_span[:hu, None])  # [H, Kc, span]
            else:  # a slide wraps around the end of a ring buffer
                il = torch.remainder(sl[i0 : i0 + chunk, None] + j, n_b)
                u = b[:hu, il].add_(a_span[:hu, None])
            u = u.relu_()
            u = u.reshape(hu, -1, span // g, g)
            bmax = u.amax(dim=-1).transpose(0, 1)  # [Kc, H, nb]
            bsum = u.sum(dim=-1).transpose(0, 1)
            if nbw > 1:
                bmax = F.max_pool1d(bmax, nbw, stride=1)
                bsum = F.avg_pool1d(bsum, nbw, stride=1) * nbw
            pooled = torch.cat([bmax[..., bidx], bsum[..., bidx] / tp], dim=1)  # [Kc, 2H, n_w]
            if flip:
                pooled = pooled.flip(0)
            if not split:
                outs.append(self._mlp_rows(pooled.transpose(1, 2)))
                continue
            best = best_all[i0 : i0 + kc]
            logit = _by_fixed_rows(pooled.transpose(1, 2).reshape(-1, 2 * hu), self.mlp)[:, 0].reshape(kc, -1)
            outs.append(logit + self.template_gain * (torch.sqrt(best + _TEMPLATE_EPS) - _TEMPLATE_NOISE))
        return torch.cat(outs, dim=0)

    @staticmethod
    def _best_template(a: torch.Tensor, b: torch.Tensor, lo: list, g: int, nbw: int, bidx: torch.Tensor,
                       b_top: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
        """Largest template unit ``relu(a_k[t] + b_k[t + lo_s])`` of each window ``[K, n_w]`` (see head_projected)."""
        from gwstream.kernels.coinc import best_coincident, best_coincident_blocks

        a_np, b_np, lo_np = a.detach().numpy(), b.detach().numpy(), np.asarray(lo, dtype=np.int64)
        if b_top is None and len(lo) < _PRUNE_SLIDES:  # a few slides: every sum, no lists to sort over all of b
            span = a.shape[-1]
            m = torch.from_numpy(best_coincident(a_np, b_np, lo_np))
            m = m.reshape(len(lo), span // g, g).amax(dim=-1)  # [K, blocks]
        else:  # the best of every g steps, the same bits (pruned: most sums are never formed)
            m = torch.from_numpy(best_coincident_blocks(a_np, b_np, lo_np, g, b_top))  # [K, blocks]
        if nbw > 1:
            m = F.max_pool1d(m[:, None], nbw, stride=1)[:, 0]
        return torch.relu(m[:, bidx])

    def _mlp_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``mlp(x)`` over ``x [..., 2H]`` -> ``[...]``, in gemms of one fixed shape.

        A CPU gemm's rounding depends on how many rows it is given (small
        batches take other kernels), not on where a row sits in a batch of a
        given size. Running the MLP on chunks of exactly ``_MLP_ROWS`` rows (the
        last one zero-padded) makes a window's logit independent of how many
        windows and slides are scored with it: block by block, many blocks at
        once or a whole backlog give the same bits.
        """
        lead = x.shape[:-1]
        return _by_fixed_rows(x.reshape(-1, x.shape[-1]), self._mlp)[:, 0].reshape(lead)


class _BranchFFT:
    """The template branch's energies by FFT (:mod:`gwstream.kernels.correlate`), a fixed block of features at a time.

    Block ``b`` holds features ``[b B, (b + 1) B)`` (``B = block_samples / stride``)
    of the branch's own sample count and reads samples ``[b H, b H + L)``,
    ``H = block_samples``, ``L = H - stride + taps``, zero-padded to ``N``. Every
    block goes through the same steps of the same shapes (its FFT, the fold, one
    inverse FFT of ``(P, N / stride)``), so its features do not depend on the
    blocks computed with it. ~4x fewer seconds than the row products for v13's
    128 pairs of 1024 taps on this CPU; the features agree with them to float
    rounding (relative ~1e-6).
    """

    #: blocks transformed per pass (bounds the memory of a long backlog)
    CHUNK = 16

    def __init__(self, filters: torch.Tensor, stride: int, block_samples: int) -> None:
        import scipy.fft
        from gwstream.kernels.correlate import filter_spectra

        w = filters[:, 0, :].double().cpu().numpy()
        p, taps = w.shape[0] // 2, w.shape[1]
        if block_samples % stride:
            raise ValueError(f"block of {block_samples} samples: expected a multiple of the stride ({stride})")
        self.pairs, self.stride, self.hop = p, int(stride), int(block_samples)
        self.features = self.hop // self.stride
        self.reads = self.hop - self.stride + taps
        self.m = scipy.fft.next_fast_len(-(-self.reads // self.stride))
        self.nfft = self.stride * self.m
        self._spec = filter_spectra(w[:p] + 1j * w[p:], self.stride, self.nfft)
        self._typed: dict = {}

    def blocks(self, n: int) -> int:
        """Whole blocks in ``n`` samples."""
        return (n - self.reads) // self.hop + 1 if n >= self.reads else 0

    def __call__(self, buf: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """Energies ``(n_ifos, P, n_blocks B)`` of the whole blocks in ``buf`` ``(n_ifos, n)``, and samples consumed;
        written into ``out`` (any strides) if given."""
        from gwstream.kernels.correlate import energies, fold_product

        n_ifos, n = buf.shape
        nb = self.blocks(n)
        if out is None:
            out = buf.new_empty((n_ifos, self.pairs, nb * self.features))
        elif tuple(out.shape) != (n_ifos, self.pairs, nb * self.features):
            raise ValueError(f"out of shape {tuple(out.shape)}, expected {(n_ifos, self.pairs, nb * self.features)}")
        if nb == 0:
            return out, 0
        dt = buf.dtype
        if dt not in self._typed:
            npdt = torch.empty((), dtype=dt).numpy().dtype
            self._typed[dt] = tuple(np.ascontiguousarray(g, dtype=npdt) for g in self._spec)
        gr, gi = self._typed[dt]
        s, m, f = self.stride, self.m, self.features
        rows = buf.unfold(1, self.reads, self.hop)[:, :nb]  # (n_ifos, nb, reads), a view
        for i in range(n_ifos):
            for b0 in range(0, nb, self.CHUNK):
                c = min(self.CHUNK, nb - b0)
                x = torch.stack([torch.fft.fft(rows[i, b], n=self.nfft) for b in range(b0, b0 + c)])
                x = torch.view_as_real(x.reshape(c, s, m))
                y = torch.empty((c, self.pairs, m), dtype=x.dtype.to_complex())
                fold_product(x[..., 0].contiguous().numpy(), x[..., 1].contiguous().numpy(), gr, gi, y.numpy())
                for j in range(c):
                    energies(torch.fft.ifft(y[j], dim=-1).numpy(), out[i, :, (b0 + j) * f:(b0 + j + 1) * f].numpy())
        return out, nb * self.hop


class StreamEncoder:
    """The encoder of a :class:`FactorizedNet` run incrementally over a stream, each output computed once.

    :meth:`FactorizedNet.encode_stream` on a chunk recomputes the receptive
    field's worth of context (0.5 s of a 1-s block by default) in every layer.
    Here every layer keeps the tail of its input that its next outputs still
    need, so a chunk costs only its new samples. Batch normalisation is folded
    into the preceding convolution (inference), and activations run in place.
    The convolutions are oneDNN's (``F.conv1d``): a 1-s block costs ~20 % more
    than as per-tap matrix products, a backlog of 16 blocks ~40 % less. Their
    output samples can differ in the last bits with how long the input is
    (2,893 of 17.6 million features for 64 s fed 1 and 16 blocks at a time), so
    features agree across chunkings to float rounding, not always bit for bit.

    Outputs equal :meth:`FactorizedNet.encode_stream` over the concatenated
    chunks, to float rounding, whatever the chunking; feature ``j`` (counted
    from the first sample fed after :meth:`reset`) depends on samples
    ``[j * stride_samples, j * stride_samples + receptive_field_samples)``.

    The template branch, on the CPU, runs by FFT a block of ``block_samples``
    at a time (:class:`_BranchFFT`); its blocks end where the absolute sample
    count (``origin`` at :meth:`reset` plus the samples fed) reaches a multiple
    of ``block_samples``, so a stream fed in such aligned blocks (the daemon's
    1-s blocks) gets every feature of a block with that block, all by FFT. Fed
    off that grid, the features an unfinished FFT block already has come at
    once as row products (to float rounding the same), so none waits.

    Parameters
    ----------
    model : FactorizedNet
        Its weights are read once; later changes to them are not seen.
    block_samples : int, optional
        The template branch's FFT block (default: one second, ``model.sample_rate_hz``).
    fft : bool, optional
        Run the template branch by FFT (default: on the CPU) or as row products (default elsewhere).
    """

    def __init__(self, model: FactorizedNet, block_samples: int | None = None, fft: bool | None = None) -> None:
        self.model = model
        self.n_ifos = model.n_ifos
        with torch.no_grad():
            self._layers = self._fuse(list(model.encoder))
        # feature channels: the output width of the last layer that has weights
        self.channels = next(p[0].shape[0] for kind, _, _, p in reversed(self._layers) if kind != "pool")
        self._branch = model.templates.weight.detach().clone() if model.template_pairs else None
        self._branch_t = self._branch[:, 0, :].t().contiguous() if self._branch is not None else None
        self.block_samples = int(block_samples or model.sample_rate_hz)
        if fft is None:
            fft = self._branch is not None and self._branch.device.type == "cpu"
        self._fft = _BranchFFT(self._branch, model.stride_samples, self.block_samples) \
            if fft and self._branch is not None else None
        self.channels += model.template_pairs
        self.reset()

    @staticmethod
    def _fold(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight * scale[:, None, None]
        b = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            b = b + conv.bias * scale
        return w.detach().contiguous(), b.detach().clone()

    def _fuse(self, mods: list) -> list[tuple]:
        """(kind, span, stride, params) per spatial layer: conv+BN(+ELU) fused, pooling, residual blocks."""
        layers, i = [], 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, nn.Conv1d):
                if not (i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d)):
                    raise TypeError(f"encoder layer {i}: Conv1d without BatchNorm1d after it")
                w, b = self._fold(m, mods[i + 1])
                act = i + 2 < len(mods) and isinstance(mods[i + 2], nn.ELU)
                d, k, s = m.dilation[0], m.kernel_size[0], m.stride[0]
                layers.append(("conv", d * (k - 1) + 1, s, (w, b, s, d, act)))
                i += 3 if act else 2
            elif isinstance(m, nn.MaxPool1d):
                k, s = int(np.atleast_1d(m.kernel_size)[0]), int(np.atleast_1d(m.stride)[0])
                layers.append(("pool", k, s, (k, s)))
                i += 1
            elif isinstance(m, _DilatedValidBlock):
                w, b = self._fold(m.conv, m.bn)
                layers.append(("block", 2 * m.dilation + 1, 1, (w, b, m.dilation)))
                i += 1
            else:
                raise TypeError(f"encoder layer {i} ({type(m).__name__}) has no streaming form")
        return layers

    def reset(self, origin: int = 0) -> None:
        """Forget the stream: the next chunk starts feature 0, at absolute sample ``origin``."""
        self._tails: list[torch.Tensor | None] = [None] * len(self._layers)
        m = self.model
        # the branch's first filter starts rf - taps samples into the stream; features wait for both paths
        self._skip = m.receptive_field_samples - m.template_taps if self._branch is not None else 0
        self._branch_tail: torch.Tensor | None = None
        self._pending: list[torch.Tensor | None] = [None, None]
        self._drop = self._partial = 0
        if self._fft is not None:
            # feature j completes with absolute sample origin + j * stride + rf - 1; `_drop` features' worth of
            # zeros in front of the branch's stream make each FFT block's last feature the one completed by an
            # aligned block's end (the zeros reach only those features, which are dropped)
            fs, nf = m.stride_samples, self._fft.features
            self._drop = (nf - 1 + -(-(int(origin) + m.receptive_field_samples) // fs)) % nf
            self._branch_tail = torch.zeros((self.n_ifos, self._drop * fs), dtype=self._branch.dtype)

    @staticmethod
    def _apply(kind: str, p: tuple, x: torch.Tensor) -> torch.Tensor:
        if kind == "conv":
            w, b, s, d, act = p
            y = F.conv1d(x, w, b, stride=s, dilation=d)
            return F.elu(y, inplace=True) if act else y
        if kind == "pool":
            return F.max_pool1d(x, p[0], p[1])
        w, b, d = p
        y = F.elu(F.conv1d(x, w, b, dilation=d), inplace=True)
        return y.add_(x[..., d : x.shape[-1] - d])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features that the new samples ``x`` (shape ``(n_ifos, n)``) complete: ``(n_ifos, C, n_new)``."""
        if x.dim() != 2 or x.shape[0] != self.n_ifos:
            raise ValueError(f"stream chunk has shape {tuple(x.shape)}, expected [{self.n_ifos}, n_samples]")
        x = x.to(self._layers[0][3][0].dtype)
        y = self._main(x)
        if self._branch is None:
            return y
        # both paths complete feature j with sample j * stride + rf - 1; the pending buffers only
        # guard the pairing (each path's count per chunk is the same)
        z, full = self._template_path(x, lead=y.shape[1])
        pending = any(q is not None and q.shape[-1] for q in self._pending)
        if full is not None and not pending and y.shape[-1] == z.shape[-1]:
            # the usual case (aligned blocks, nothing pending): the energies are already in the output's rows
            full[:, : y.shape[1]] = y
            self._pending = [None, None]
            return full
        # (otherwise no copies but the one cat below)
        main = y if self._pending[0] is None or not self._pending[0].shape[-1] else \
            torch.cat([self._pending[0], y], dim=-1)
        branch = z if self._pending[1] is None or not self._pending[1].shape[-1] else \
            torch.cat([self._pending[1], z], dim=-1)
        n = min(main.shape[-1], branch.shape[-1])
        self._pending = [main[..., n:], branch[..., n:]]
        return torch.cat([main[..., :n], branch[..., :n]], dim=1)

    def _main(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unsqueeze(1)
        for i, (kind, span, stride, p) in enumerate(self._layers):
            tail = self._tails[i]
            buf = y if tail is None else torch.cat([tail, y], dim=-1)
            n = buf.shape[-1]
            n_out = (n - span) // stride + 1 if n >= span else 0
            self._tails[i] = buf[..., n_out * stride:].clone()
            if n_out == 0:
                return buf.new_empty((self.n_ifos, self.channels - self.model.template_pairs, 0))
            y = self._apply(kind, p, buf[..., : (n_out - 1) * stride + span])
        return y

    def _template_path(self, x: torch.Tensor, lead: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The branch's energies of the new samples ``x``, and, when they are all of one FFT pass, the tensor
        ``(n_ifos, lead + P, n)`` whose last ``P`` rows they are (``lead`` rows left for the caller), else None."""
        if self._skip:
            d = min(self._skip, x.shape[-1])
            x, self._skip = x[:, d:], self._skip - d
        buf = x if self._branch_tail is None else torch.cat([self._branch_tail.to(x.dtype), x], dim=-1)
        taps, stride = self._branch.shape[-1], self.model.stride_samples
        if self._fft is None:
            n_out = (buf.shape[-1] - taps) // stride + 1 if buf.shape[-1] >= taps else 0
            self._branch_tail = buf[:, n_out * stride:].clone()
            return self._row_energies(buf, 0, n_out), None
        fft = self._fft
        full = buf.new_empty((self.n_ifos, lead + fft.pairs, fft.blocks(buf.shape[-1]) * fft.features))
        e, used = self._fft(buf, full[:, lead:])
        whole = not self._partial and not self._drop
        rest = buf[:, used:]
        self._branch_tail = rest.clone()
        if used:  # the first block completed may have had features out already (below)
            e, self._partial = e[..., self._partial:], 0
        # features of the incomplete block that its samples so far complete: out now, as row products (a stream
        # fed in aligned blocks never has any), so no window waits for the rest of an FFT block
        n_done = (rest.shape[-1] - taps) // stride + 1 if rest.shape[-1] >= taps else 0
        if n_done > self._partial:
            e = torch.cat([e, self._row_energies(rest, self._partial, n_done)], dim=-1)
            self._partial = n_done
            whole = False
        d = min(self._drop, e.shape[-1])
        self._drop -= d
        return e[..., d:], (full if whole else None)

    def _row_energies(self, buf: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """Branch energies ``(n_ifos, P, stop - first)`` of features ``first .. stop - 1`` of ``buf``, as row products."""
        p, stride, taps = self.model.template_pairs, self.model.stride_samples, self._branch.shape[-1]
        n_out = stop - first
        if n_out <= 0:
            return buf.new_empty((self.n_ifos, p, 0))
        # products of one fixed shape (as _mlp_rows): a convolution's rounding depends on the input's length
        # on some CPUs, so the features would depend on how the stream was cut into chunks. _by_fixed_rows copies
        # the rows (taps / stride = 128 times the chunk's samples) a block at a time: all at once, the copy cost
        # as much as the products
        rows = buf[:, first * stride: (stop - 1) * stride + taps].unfold(1, taps, stride)  # (n_ifos, n_out, taps)
        z = torch.empty((self.n_ifos, n_out, 2 * p), dtype=buf.dtype, device=buf.device)
        for r, zr in zip(rows, z):
            _by_fixed_rows(r, lambda c: torch.mm(c, self._branch_t), out=zr)
        return _energy(z.transpose(1, 2), p)
