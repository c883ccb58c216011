"""The factorized network's per-detector encoder, run incrementally over a stream.

:class:`StreamEncoder` runs the encoder of a
:class:`~gwstream.models.factorized.FactorizedNet` block by block, each output
computed once; what it carries from one chunk to the next is one
:class:`EncoderState` (per-layer input tails, features waiting for their pair,
the template branch's tail and counters), which :meth:`StreamEncoder.reset`
creates, every call advances, and :meth:`StreamEncoder.snapshot` /
:meth:`StreamEncoder.restore` copy out and back. The template branch runs by
FFT (:class:`BranchFFT`) or as row products of one fixed shape.

:class:`DilatedValidBlock` (the encoder's residual block) and
:func:`pair_energy` (a filter pair's energy) are shared with the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from gwstream.models.head import by_fixed_rows
from torch import nn

if TYPE_CHECKING:
    from gwstream.models.factorized import FactorizedNet

__all__ = ["StreamEncoder", "EncoderState", "BranchFFT", "DilatedValidBlock", "pair_energy"]


def pair_energy(z: torch.Tensor, pairs: int) -> torch.Tensor:
    """``z_c^2 + z_q^2`` of filter-pair outputs ``z`` ``(B, 2 * pairs, T)``: each template's SNR squared."""
    return z[:, :pairs] ** 2 + z[:, pairs:] ** 2


class DilatedValidBlock(nn.Module):
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


class BranchFFT:
    """The template branch's energies by FFT (:mod:`gwstream.kernels.correlate`), a fixed block of features at a time.

    Block ``b`` holds features ``[b B, (b + 1) B)`` (``B = block_samples / stride``)
    of the branch's own sample count and reads samples ``[b H, b H + L)``,
    ``H = block_samples``, ``L = H - stride + taps``, zero-padded to ``N``. Every
    block goes through the same steps of the same shapes (its FFT, the fold, one
    inverse FFT of ``(P, N / stride)``), so its features do not depend on the
    blocks computed with it. For long filters it is much cheaper than the row
    products; the features agree with them to float rounding, not bit for bit.

    Parameters
    ----------
    filters : torch.Tensor, shape (2 * P, 1, taps)
        The branch's filter pairs (pair ``i`` is rows ``i`` and ``i + P``).
    stride : int
        Input samples per feature step.
    block_samples : int
        Samples per FFT block, a multiple of ``stride``.
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


@dataclass
class EncoderState:
    """What a :class:`StreamEncoder` carries from one chunk to the next.

    Attributes
    ----------
    tails : list of torch.Tensor or None
        Per spatial layer, the tail of its input that its next outputs still
        need, ``(n_ifos, channels, n)`` (None before the first chunk).
    skip : int
        Samples the template branch still skips: its first filter starts
        ``receptive_field_samples - template_taps`` samples into the stream.
    branch_tail : torch.Tensor or None
        The template branch's unconsumed input ``(n_ifos, n)`` (with FFT, led
        by ``drop`` features' worth of zeros at a reset).
    pending : list of torch.Tensor or None
        ``[main, branch]``: features one path has produced and the other not
        yet (paired on the next call).
    drop : int
        Leading branch features still to drop (those the zeros reach).
    partial : int
        Features of the unfinished FFT block already given out as row products.
    """

    tails: list[torch.Tensor | None]
    skip: int = 0
    branch_tail: torch.Tensor | None = None
    pending: list[torch.Tensor | None] = field(default_factory=lambda: [None, None])
    drop: int = 0
    partial: int = 0

    def copy(self) -> EncoderState:
        """A copy whose tensors are clones: advancing either leaves the other as it was."""
        def clone(t):
            return None if t is None else t.clone()

        return dataclasses.replace(self, tails=[clone(t) for t in self.tails], branch_tail=clone(self.branch_tail),
                                   pending=[clone(t) for t in self.pending])


class StreamEncoder:
    """The encoder of a :class:`~gwstream.models.factorized.FactorizedNet` run incrementally, each output computed once.

    :meth:`FactorizedNet.encode_stream` on a chunk recomputes the receptive
    field's worth of context in every layer. Here every layer keeps the tail
    of its input that its next outputs still need (:class:`EncoderState`), so
    a chunk costs only its new samples. Batch normalisation is folded into the
    preceding convolution (inference), and activations run in place. The
    convolutions are oneDNN's (``F.conv1d``), whose output samples can differ
    in the last bits with how long the input is, so features agree across
    chunkings to float rounding, not always bit for bit.

    Outputs equal :meth:`FactorizedNet.encode_stream` over the concatenated
    chunks, to float rounding, whatever the chunking; feature ``j`` (counted
    from the first sample fed after :meth:`reset`) depends on samples
    ``[j * stride_samples, j * stride_samples + receptive_field_samples)``.

    The template branch, on the CPU, runs by FFT a block of ``block_samples``
    at a time (:class:`BranchFFT`); its blocks end where the absolute sample
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

    Attributes
    ----------
    state : EncoderState
        Everything carried between chunks; replaced by :meth:`reset` and
        :meth:`restore`, advanced in place by each call.
    channels : int
        Feature channels of the output (the model's ``feature_channels``).
    """

    def __init__(self, model: FactorizedNet, block_samples: int | None = None, fft: bool | None = None) -> None:
        self.n_ifos = model.n_ifos
        self.stride_samples = int(model.stride_samples)
        self.receptive_field_samples = int(model.receptive_field_samples)
        self.template_pairs = int(model.template_pairs)
        self.template_taps = int(model.template_taps)
        with torch.no_grad():
            self._layers = self._fuse(list(model.encoder))
        # feature channels: the output width of the last layer that has weights
        self.channels = next(p[0].shape[0] for kind, _, _, p in reversed(self._layers) if kind != "pool")
        self._branch = model.templates.weight.detach().clone() if self.template_pairs else None
        self._branch_t = self._branch[:, 0, :].t().contiguous() if self._branch is not None else None
        self.block_samples = int(block_samples or model.sample_rate_hz)
        if fft is None:
            fft = self._branch is not None and self._branch.device.type == "cpu"
        self._fft = BranchFFT(self._branch, self.stride_samples, self.block_samples) \
            if fft and self._branch is not None else None
        self.channels += self.template_pairs
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
            elif isinstance(m, DilatedValidBlock):
                w, b = self._fold(m.conv, m.bn)
                layers.append(("block", 2 * m.dilation + 1, 1, (w, b, m.dilation)))
                i += 1
            else:
                raise TypeError(f"encoder layer {i} ({type(m).__name__}) has no streaming form")
        return layers

    def reset(self, origin: int = 0) -> None:
        """Forget the stream: a new :attr:`state`; the next chunk starts feature 0, at absolute sample ``origin``."""
        # the branch's first filter starts rf - taps samples into the stream; features wait for both paths
        skip = self.receptive_field_samples - self.template_taps if self._branch is not None else 0
        state = EncoderState(tails=[None] * len(self._layers), skip=skip)
        if self._fft is not None:
            # feature j completes with absolute sample origin + j * stride + rf - 1; `drop` features' worth of
            # zeros in front of the branch's stream make each FFT block's last feature the one completed by an
            # aligned block's end (the zeros reach only those features, which are dropped)
            fs, nf = self.stride_samples, self._fft.features
            state.drop = (nf - 1 + -(-(int(origin) + self.receptive_field_samples) // fs)) % nf
            state.branch_tail = torch.zeros((self.n_ifos, state.drop * fs), dtype=self._branch.dtype)
        self.state = state

    def snapshot(self) -> EncoderState:
        """A copy of :attr:`state` (its tensors cloned), to :meth:`restore` later."""
        return self.state.copy()

    def restore(self, state: EncoderState) -> None:
        """Continue from ``state`` (a :meth:`snapshot` of this encoder, or of one of the same model), copied."""
        if len(state.tails) != len(self._layers):
            raise ValueError(f"encoder state of {len(state.tails)} layers, expected {len(self._layers)}")
        self.state = state.copy()

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
        st = self.state
        x = x.to(self._layers[0][3][0].dtype)
        y = self._main(x)
        if self._branch is None:
            return y
        # both paths complete feature j with sample j * stride + rf - 1; the pending buffers only
        # guard the pairing (each path's count per chunk is the same)
        z, full = self._template_path(x, lead=y.shape[1])
        pending = any(q is not None and q.shape[-1] for q in st.pending)
        if full is not None and not pending and y.shape[-1] == z.shape[-1]:
            # the usual case (aligned blocks, nothing pending): the energies are already in the output's rows
            full[:, : y.shape[1]] = y
            st.pending = [None, None]
            return full
        # (otherwise no copies but the one cat below)
        main = y if st.pending[0] is None or not st.pending[0].shape[-1] else \
            torch.cat([st.pending[0], y], dim=-1)
        branch = z if st.pending[1] is None or not st.pending[1].shape[-1] else \
            torch.cat([st.pending[1], z], dim=-1)
        n = min(main.shape[-1], branch.shape[-1])
        st.pending = [main[..., n:], branch[..., n:]]
        return torch.cat([main[..., :n], branch[..., :n]], dim=1)

    def _main(self, x: torch.Tensor) -> torch.Tensor:
        tails = self.state.tails
        y = x.unsqueeze(1)
        for i, (kind, span, stride, p) in enumerate(self._layers):
            tail = tails[i]
            buf = y if tail is None else torch.cat([tail, y], dim=-1)
            n = buf.shape[-1]
            n_out = (n - span) // stride + 1 if n >= span else 0
            tails[i] = buf[..., n_out * stride:].clone()
            if n_out == 0:
                return buf.new_empty((self.n_ifos, self.channels - self.template_pairs, 0))
            y = self._apply(kind, p, buf[..., : (n_out - 1) * stride + span])
        return y

    def _template_path(self, x: torch.Tensor, lead: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The branch's energies of the new samples ``x``, and, when they are all of one FFT pass, the tensor
        ``(n_ifos, lead + P, n)`` whose last ``P`` rows they are (``lead`` rows left for the caller), else None."""
        st = self.state
        if st.skip:
            d = min(st.skip, x.shape[-1])
            x, st.skip = x[:, d:], st.skip - d
        buf = x if st.branch_tail is None else torch.cat([st.branch_tail.to(x.dtype), x], dim=-1)
        taps, stride = self._branch.shape[-1], self.stride_samples
        if self._fft is None:
            n_out = (buf.shape[-1] - taps) // stride + 1 if buf.shape[-1] >= taps else 0
            st.branch_tail = buf[:, n_out * stride:].clone()
            return self._row_energies(buf, 0, n_out), None
        fft = self._fft
        full = buf.new_empty((self.n_ifos, lead + fft.pairs, fft.blocks(buf.shape[-1]) * fft.features))
        e, used = self._fft(buf, full[:, lead:])
        whole = not st.partial and not st.drop
        rest = buf[:, used:]
        st.branch_tail = rest.clone()
        if used:  # the first block completed may have had features out already (below)
            e, st.partial = e[..., st.partial:], 0
        # features of the incomplete block that its samples so far complete: out now, as row products (a stream
        # fed in aligned blocks never has any), so no window waits for the rest of an FFT block
        n_done = (rest.shape[-1] - taps) // stride + 1 if rest.shape[-1] >= taps else 0
        if n_done > st.partial:
            e = torch.cat([e, self._row_energies(rest, st.partial, n_done)], dim=-1)
            st.partial = n_done
            whole = False
        d = min(st.drop, e.shape[-1])
        st.drop -= d
        return e[..., d:], (full if whole else None)

    def _row_energies(self, buf: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """Branch energies ``(n_ifos, P, stop - first)`` of features ``first .. stop - 1`` of ``buf``, as row
        products."""
        p, stride, taps = self.template_pairs, self.stride_samples, self._branch.shape[-1]
        n_out = stop - first
        if n_out <= 0:
            return buf.new_empty((self.n_ifos, p, 0))
        # products of one fixed shape (as the head's MLP rows): a convolution's rounding depends on the input's
        # length on some CPUs, so the features would depend on how the stream was cut into chunks. by_fixed_rows
        # copies the rows (taps / stride times the chunk's samples) a block at a time: all at once, the copy would
        # cost as much as the products
        rows = buf[:, first * stride: (stop - 1) * stride + taps].unfold(1, taps, stride)  # (n_ifos, n_out, taps)
        z = torch.empty((self.n_ifos, n_out, 2 * p), dtype=buf.dtype, device=buf.device)
        for r, zr in zip(rows, z):
            by_fixed_rows(r, lambda c: torch.mm(c, self._branch_t), out=zr)
        return pair_energy(z.transpose(1, 2), p)
