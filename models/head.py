"""The factorized network's coincidence head as plain functions of tensors and the network's parameters.

The head pairs H1 features at step ``t`` with L1 features at ``t + lag`` for
``|lag| <= lag_steps``: per-step projections (:func:`project`), the L1 term's
running maximum over lags (:func:`lag_pool`), ``relu`` of their sum pooled by
max and mean over each window's centre steps, and an MLP on the pooled units
(:func:`mlp_logit`). With a template branch, the template units enter the
logit through the *best-template statistic* (the square root of their largest
value), weighted by ``template_gain``.

:func:`head_projected` scores many windows and time slides from projected
features at once (the cost of a time slide); :func:`best_template` is its
kernel path for the best-template statistic. :class:`~gwstream.models.factorized.FactorizedNet`
holds the parameters and calls these functions.

Every product on the streaming path runs in blocks of one fixed shape
(:func:`by_fixed_rows`): a CPU gemm's rounding depends on how many rows it is
given, so this makes a window's logit independent of which other windows and
slides are scored with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP_ROWS", "PRUNE_SLIDES", "TEMPLATE_EPS", "TEMPLATE_NOISE", "TEMPLATE_CAP", "by_fixed_rows", "capped",
    "project_features", "project", "lag_pool", "mlp_logit", "pool_mlp", "mlp_rows", "head_projected",
    "best_template",
]

#: rows per gemm of the head's MLP on the streaming path (:func:`mlp_rows`)
MLP_ROWS = 256
#: slides from which the head's best template goes by the pruned kernel even without kept top lists
PRUNE_SLIDES = 16
#: keeps the best-template statistic's gradient finite at zero
TEMPLATE_EPS = 1e-6
#: about the best-template statistic of a noise window (the square root of the largest of the window's many
#: chi-squared values with 4 degrees of freedom): subtracted so that the statistic's weight leaves noise logits
#: in place
TEMPLATE_NOISE = 5.0
#: a template's SNR squared counts up to this (SNR 8) in one detector in the head: a louder single-detector signal
#: (an event slid against the other detector's noise, a glitch) counts as much as SNR 8 there, not more. The
#: encoder's features are not capped: FactorizedNet.template_track times loud events with them
TEMPLATE_CAP = 64.0


def by_fixed_rows(x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """``f`` over the rows of ``x [m, k]`` in blocks of exactly :data:`MLP_ROWS` rows (the last zero-padded):
    ``[m, ...]``.

    A CPU gemm's rounding depends on how many rows it is given (small batches take
    other kernels), not on where a row sits in a batch of a given size: one fixed
    shape makes each row's result independent of how many rows come with it.
    ``x`` may be a strided view (the template branch's unfolded strain): its rows
    are copied one block at a time into a buffer that stays in cache, never all
    at once. The results go to ``out`` when given.
    """
    m, k = x.shape
    block = x.new_zeros((MLP_ROWS, k))
    for r0 in range(0, max(m, 1), MLP_ROWS):
        n = min(MLP_ROWS, m - r0)
        block[:n] = x[r0:r0 + n]
        block[n:] = 0.0
        y = f(block)
        if out is None:
            out = y.new_empty((m, *y.shape[1:]))
        out[r0:r0 + n] = y[:n]
    return out


def capped(f: torch.Tensor, template_pairs: int) -> torch.Tensor:
    """Features ``(..., C, T)`` as the head reads them: the last ``template_pairs`` channels (template energies)
    capped at :data:`TEMPLATE_CAP`."""
    if not template_pairs:
        return f
    c = f.shape[-2] - template_pairs
    if torch.is_grad_enabled() and f.requires_grad:  # training: autograd's way
        return torch.cat([f[..., :c, :], f[..., c:, :].clamp(max=TEMPLATE_CAP)], dim=-2)
    out = torch.empty_like(f)  # the same values, each row written once
    out[..., :c, :] = f[..., :c, :]
    torch.clamp(f[..., c:, :], max=TEMPLATE_CAP, out=out[..., c:, :])
    return out


def project_features(proj: nn.Conv1d, f: torch.Tensor, template_pairs: int, diagonal: bool) -> torch.Tensor:
    """``proj`` (1x1 convolution) of capped features ``f`` ``(..., C, T)`` -> ``(..., H + P, T)``.

    With ``diagonal`` (the network's ``diagonal_template_units``), as two
    pieces: the ``H`` units (a matrix product per step), the ``P`` template
    units as weight times own energy plus bias.
    """
    if not diagonal:
        return proj(f)
    h, p = proj.out_channels - template_pairs, template_pairs
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


def project(proj_h1: nn.Conv1d, proj_l1: nn.Conv1d, f_h1: torch.Tensor, f_l1: torch.Tensor, template_pairs: int,
            diagonal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's per-step projections ``(A f_H1 + c, B f_L1)``, each ``(H + P, T)``, of features ``(C, T)``.

    Plain matrix products rather than the 1x1 convolutions (same values to
    float rounding): their columns do not depend on how many steps are
    projected at once, so a stream gives the same projections whether it
    arrives block by block or many blocks at a time.
    """
    f_h1, f_l1 = capped(f_h1, template_pairs), capped(f_l1, template_pairs)
    if diagonal:
        return (project_features(proj_h1, f_h1, template_pairs, diagonal),
                project_features(proj_l1, f_l1, template_pairs, diagonal))
    a = torch.addmm(proj_h1.bias[:, None], proj_h1.weight[:, :, 0], f_h1)
    return a, torch.mm(proj_l1.weight[:, :, 0], f_l1)


def lag_pool(p: torch.Tensor, lag_steps: int) -> torch.Tensor:
    """``b[j] = max(p[j .. j + 2 lag_steps])`` of ``p`` ``(H, T)``: the L1 term centred at step ``j + lag_steps``,
    shape ``(H, T - 2 lag_steps)``."""
    return F.max_pool1d(p[None], 2 * lag_steps + 1, stride=1)[0]


def mlp_logit(mlp: nn.Sequential, x: torch.Tensor, template_pairs: int,
              template_gain: torch.Tensor | None) -> torch.Tensor:
    """The logit ``[..., 1]`` of pooled hidden units ``x [..., 2 (H + P)]`` (max then mean of every unit).

    The ``H`` units' max and mean go through ``mlp``; with a template branch the
    logit adds ``template_gain * (best-template statistic - TEMPLATE_NOISE)``,
    or with one gain per template the largest of the templates' weighted
    statistics.
    """
    if not template_pairs:
        return mlp(x)
    h, p = mlp[0].out_features, template_pairs
    old = torch.cat([x[..., :h], x[..., h + p : 2 * h + p]], dim=-1)
    if template_gain.dim() > 0:  # one gain per template: the largest of their weighted statistics
        each = torch.sqrt(x[..., h : h + p] + TEMPLATE_EPS) - TEMPLATE_NOISE
        return mlp(old) + (template_gain * each).amax(dim=-1, keepdim=True)
    best = torch.sqrt(x[..., h : h + p].amax(dim=-1, keepdim=True) + TEMPLATE_EPS)
    return mlp(old) + template_gain * (best - TEMPLATE_NOISE)


def pool_mlp(u: torch.Tensor, mlp: nn.Sequential, template_pairs: int,
             template_gain: torch.Tensor | None) -> torch.Tensor:
    """Logits ``[...]`` of hidden units ``u [..., H + P, T']``: max and mean over steps into :func:`mlp_logit`."""
    return mlp_logit(mlp, torch.cat([u.amax(dim=-1), u.mean(dim=-1)], dim=-1), template_pairs,
                     template_gain).squeeze(-1)


def mlp_rows(x: torch.Tensor, mlp: nn.Sequential, template_pairs: int,
             template_gain: torch.Tensor | None) -> torch.Tensor:
    """:func:`mlp_logit` over ``x [..., 2 (H + P)]`` -> ``[...]``, in gemms of one fixed shape.

    A CPU gemm's rounding depends on how many rows it is given (small
    batches take other kernels), not on where a row sits in a batch of a
    given size. Running the MLP on chunks of exactly :data:`MLP_ROWS` rows (the
    last one zero-padded) makes a window's logit independent of how many
    windows and slides are scored with it: block by block, many blocks at
    once or a whole backlog give the same bits.
    """
    lead = x.shape[:-1]
    return by_fixed_rows(x.reshape(-1, x.shape[-1]),
                         lambda r: mlp_logit(mlp, r, template_pairs, template_gain))[:, 0].reshape(lead)


def head_projected(
    a: torch.Tensor,
    b: torch.Tensor,
    starts: torch.Tensor,
    offsets: torch.Tensor,
    *,
    mlp: nn.Sequential,
    template_pairs: int,
    template_gain: torch.Tensor | None,
    window_steps: int,
    lag_steps: int,
    kernel_best_template: bool = True,
    wrap: bool = False,
    grid: int | None = None,
    max_elements: int = 1 << 22,
    b_top: tuple[np.ndarray, np.ndarray] | None = None,
) -> torch.Tensor:
    """Logits of windows and time slides from projected features (the cost of a time slide).

    Parameters
    ----------
    a : torch.Tensor, shape (H + P, n_a)
        H1 projections at the centre steps: window ``w`` uses
        ``a[:, starts[w] : starts[w] + window_steps - 2 * lag_steps]``.
    b : torch.Tensor, shape (H + P, n_b)
        Lag-pooled L1 projections (:func:`lag_pool`): window ``w`` of slide
        ``r`` uses ``b[:, offsets[r] + starts[w] + j]`` for the same ``j``
        (indices modulo ``n_b`` when ``wrap``, for a circular buffer).
    starts : torch.Tensor of int, shape (n_windows,)
    offsets : torch.Tensor of int, shape (K,)
    mlp, template_pairs, template_gain, window_steps, lag_steps
        The network's (``template_gain`` None without a template branch).
    kernel_best_template : bool
        With one shared gain, on the CPU, take the template units' best by
        :func:`best_template` (same bits as the general path, much cheaper).
    wrap : bool
        Index ``b`` modulo ``n_b`` (a ring buffer).
    grid : int, optional
        A step that divides every start (the daemon's window stride in
        steps). The head sums each window's steps in blocks of
        ``gcd(window steps, grid)``, so a window's logit does not depend on
        which other windows are scored with it: a block's single window
        alone and a backlog's windows together give the same bits. Without
        it the blocks are as long as the starts allow (one window alone:
        its whole span), which can differ in the last bit.
    max_elements : int
        Bound on the size of intermediate tensors (memory, not results).
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
    tp = window_steps - 2 * lag_steps
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
    p = template_pairs
    split = kernel_best_template and bool(p) and template_gain.dim() == 0 and a.device.type == "cpu" \
        and a.dtype == b.dtype
    hu = hdim - p if split else hdim  # units pooled by max and mean
    chunk = max(1, int(max_elements) // max(1, hu * span))  # slides at a time through the units
    if split:  # every slide's best template at once (one parallel kernel call; the lists sorted once)
        best_all = best_template(a_span[hu:], b[hu:], lo_all, g, nbw, bidx, b_top)  # [K, n_w], in order
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
            outs.append(mlp_rows(pooled.transpose(1, 2), mlp, template_pairs, template_gain))
            continue
        best = best_all[i0 : i0 + kc]
        logit = by_fixed_rows(pooled.transpose(1, 2).reshape(-1, 2 * hu), mlp)[:, 0].reshape(kc, -1)
        outs.append(logit + template_gain * (torch.sqrt(best + TEMPLATE_EPS) - TEMPLATE_NOISE))
    return torch.cat(outs, dim=0)


def best_template(a: torch.Tensor, b: torch.Tensor, lo: list, g: int, nbw: int, bidx: torch.Tensor,
                  b_top: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Largest template unit ``relu(a_k[t] + b_k[t + lo_s])`` of each window ``[K, n_w]``.

    ``a``, ``b``: the template rows of :func:`head_projected`'s projections;
    ``lo``: each slide's offset into ``b``; ``g``: steps per block; ``nbw``:
    blocks per window; ``bidx``: each window's first block.
    """
    from gwstream.kernels.coinc import best_coincident, best_coincident_blocks

    a_np, b_np, lo_np = a.detach().numpy(), b.detach().numpy(), np.asarray(lo, dtype=np.int64)
    if b_top is None and len(lo) < PRUNE_SLIDES:  # a few slides: every sum, no lists to sort over all of b
        span = a.shape[-1]
        m = torch.from_numpy(best_coincident(a_np, b_np, lo_np))
        m = m.reshape(len(lo), span // g, g).amax(dim=-1)  # [K, blocks]
    else:  # the best of every g steps, the same bits (pruned: most sums are never formed)
        m = torch.from_numpy(best_coincident_blocks(a_np, b_np, lo_np, g, b_top))  # [K, blocks]
    if nbw > 1:
        m = F.max_pool1d(m[:, None], nbw, stride=1)[:, 0]
    return torch.relu(m[:, bidx])
