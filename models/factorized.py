"""Factorized detector: a per-detector encoder and a light H1-L1 coincidence head.

The encoder turns one detector's whitened strain into a time-resolved feature
sequence; the head pairs H1 features at step ``t`` with L1 features at
``t + lag`` for ``|lag| <= lag_steps`` and pools them into one logit per
window. Because the encoder sees one detector at a time and uses only
unpadded ("valid") convolutions, it can run once over a long contiguous
stream (:meth:`FactorizedNet.encode_stream`) and every window, and every time
slide of L1 against H1, is scored from the cached features by the head alone
(:meth:`FactorizedNet.head_windows`).

The network is spread over a few modules; this one holds the network itself:

- :mod:`gwstream.models.encoder`: :class:`StreamEncoder`, the encoder run
  incrementally over a stream with an explicit state (re-exported here);
- :mod:`gwstream.models.head`: the coincidence head as plain functions;
- :mod:`gwstream.models.surgery`: new networks grown from a trained one (the
  ``with_*`` classmethods here call it).

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
from gwstream.models import head as head_fn
from gwstream.models.encoder import DilatedValidBlock, StreamEncoder, pair_energy
from gwstream.models.networks import GWNet
from torch import nn

__all__ = ["FactorizedNet", "StreamEncoder"]

_STEM_STRIDE = 4
_STEM_KERNEL = 32
_CONV_KERNEL = 8
_POOL = 2
_TEMPLATE_LR_SCALE = 0.01  # template filters (unit norm, taps ~0.03) move at 1 % of the learning rate


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
        small weights where these are zero (:meth:`with_diagonal_template_units`).

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
    kernel_best_template : bool
        Whether :meth:`head_projected` takes the template units' best by the
        kernel of :func:`gwstream.models.head.best_template` where it can
        (one shared gain, on the CPU); the same bits as the general path
        (tests switch it off to compare). A class attribute; set it on an
        instance to change one network.

    Notes
    -----
    The head is ``u[t] = relu(A f_H1[t] + max_{|l|<=k} B f_L1[t+l] + c)``
    (``A``, ``B``: ``H x C``; the max is per hidden unit, which is the same as
    ``max_l relu(A f_H1[t] + B f_L1[t+l] + c)`` because relu is monotonic),
    over the ``window_steps - 2 k`` steps whose lags stay inside the window,
    then max and mean over ``t`` into a 2-layer MLP that outputs the logit.
    Its cost per window is ``O(H T)``, independent of the number of lags,
    and the per-step projections are shared by all windows and all slides.

    A streaming scorer that keeps the projections in ring buffers (the
    daemon's :mod:`gwstream.daemon.stream.scoring`) reads only this public
    interface: the geometry (:attr:`stride_samples`,
    :attr:`receptive_field_samples`, :attr:`lag_steps`, :attr:`window_steps`,
    :attr:`centre_steps`, :attr:`projection_channels`, :attr:`template_pairs`,
    :meth:`uses_top_templates`), :class:`StreamEncoder` for the features,
    :meth:`project` and :meth:`lag_pool` for the rings, :meth:`head_projected`
    to score from them, and :meth:`template_track` and
    :meth:`template_merger_sample` to date a merger.
    """

    name = "factorized"
    joint = False
    kernel_best_template = True

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
            *[DilatedValidBlock(c, d) for d in dil],
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
        """Set the template branch's filters ``(2 * template_pairs, template_taps)``: pair ``i`` is rows ``i``
        and ``i + pairs``.

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
        return pair_energy(self.templates(x.unsqueeze(1)), self.template_pairs)

    def capped(self, f: torch.Tensor) -> torch.Tensor:
        """Features ``(..., C, T)`` as the head reads them: template energies capped at SNR 8
        (:data:`gwstream.models.head.TEMPLATE_CAP`)."""
        return head_fn.capped(f, self.template_pairs)

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
        return self.best_template_track(f_h1, f_l1)[0]

    def best_template_track(self, f_h1: torch.Tensor, f_l1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`template_track` and, at every step, which template gives it (the index ``k`` of the maximum):
        the template the alert's source properties and SNR series start from."""
        if not self.template_pairs:
            raise ValueError("this network has no template branch (template_pairs = 0)")
        p, k = self.template_pairs, self.lag_steps
        e_h1, e_l1 = f_h1[-p:], f_l1[-p:]
        best = (e_h1[:, k:e_h1.shape[-1] - k] + self.lag_pool(e_l1)).max(dim=0)
        return best.values, best.indices

    def template_merger_sample(self, step: int) -> int:
        """Sample (counted as feature steps are) at which feature ``step``'s templates put the merger."""
        return int(step) * self.stride_samples + self.receptive_field_samples - self.template_after

    def packed_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` as a checkpoint stores it: with :attr:`diagonal_template_units` the projections' template rows
        as their diagonal (``proj_*.template_weight``), not as rows of zeros (what makes a large bank's
        checkpoint small)."""
        if not self.diagonal_template_units:
            return state
        out = dict(state)
        h, c = self.projection_channels - self.template_pairs, self.hparams["channels"]
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
        h, p, c = self.projection_channels - self.template_pairs, self.template_pairs, self.hparams["channels"]
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

    # ------------------------------------------------------ streaming interface
    @property
    def projection_channels(self) -> int:
        """Rows ``H + P`` of :meth:`project`'s outputs: the head's hidden units, then one per template."""
        return self.proj_h1.out_channels

    @property
    def centre_steps(self) -> int:
        """Steps of a window whose lags stay inside it, ``window_steps - 2 * lag_steps``: the head reads these."""
        return self.window_steps - 2 * self.lag_steps

    @property
    def shared_template_gain(self) -> bool:
        """Whether the network has a template branch with one gain for all templates (not one per template)."""
        return bool(self.template_pairs) and self.template_gain.dim() == 0

    def uses_top_templates(self, device: torch.device | str) -> bool:
        """Whether :meth:`head_projected` on ``device`` reads the best template through
        :func:`gwstream.kernels.coinc.top_templates` lists (its ``b_top``), which a caller with a ring buffer of
        lag-pooled projections may keep beside the ring so that the slides never sort it again."""
        return self.kernel_best_template and self.shared_template_gain and torch.device(device).type == "cpu"

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
    def _gain(self) -> torch.Tensor | None:
        return self.template_gain if self.template_pairs else None

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
        tp, diag = self.template_pairs, self.diagonal_template_units
        a = head_fn.project_features(self.proj_h1, self.capped(f_h1), tp, diag)[..., k : f_h1.shape[-1] - k]
        b = F.max_pool1d(head_fn.project_features(self.proj_l1, self.capped(f_l1), tp, diag), 2 * k + 1, stride=1)
        return head_fn.pool_mlp(torch.relu(a + b), self.mlp, tp, self._gain())

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
        coincidence layer, so a window costs only the steps it adds to the span.
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
        tp, diag = self.template_pairs, self.diagonal_template_units
        feats = self.capped(feats)
        a = head_fn.project_features(self.proj_h1, feats[0:1], tp, diag)[0]  # [H, total], with bias c
        # [H, total-2k], centre j+k
        bm = F.max_pool1d(head_fn.project_features(self.proj_l1, feats[1:2], tp, diag), 2 * k + 1, stride=1)[0]
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
        a : torch.Tensor, shape (H + P, T)
            ``A f_H1 + c`` at every step (:attr:`projection_channels` rows).
        p : torch.Tensor, shape (H + P, T)
            ``B f_L1`` at every step; the head uses its running maximum over
            ``2 * lag_steps + 1`` steps (see :meth:`lag_pool`).

        Notes
        -----
        Plain matrix products rather than the 1x1 convolutions (same values
        to float rounding): their columns do not depend on how many steps are
        projected at once, so a stream gives the same projections whether it
        arrives block by block or many blocks at a time.
        """
        return head_fn.project(self.proj_h1, self.proj_l1, f_h1, f_l1, self.template_pairs,
                               self.diagonal_template_units)

    def lag_pool(self, p: torch.Tensor) -> torch.Tensor:
        """``b[j] = max(p[j .. j + 2 lag_steps])``, the L1 term centred at step ``j + lag_steps``;
        shape (H + P, T - 2k)."""
        return head_fn.lag_pool(p, self.lag_steps)

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

        :func:`gwstream.models.head.head_projected` with this network's parameters.

        ``a``, ``b``, ``starts``, ``offsets``, ``wrap``, ``grid``, ``max_elements``
        and ``b_top`` are as that function takes them (``a`` spans
        :attr:`centre_steps` per window, ``b`` is :meth:`lag_pool`'s output,
        ``b_top`` is given when :meth:`uses_top_templates`); returns the logits,
        shape ``(K, n_windows)``, non-finite where any projection used is.
        """
        return head_fn.head_projected(a, b, starts, offsets, mlp=self.mlp, template_pairs=self.template_pairs,
                                      template_gain=self._gain(), window_steps=self.window_steps,
                                      lag_steps=self.lag_steps, kernel_best_template=self.kernel_best_template,
                                      wrap=wrap, grid=grid, max_elements=max_elements, b_top=b_top)
