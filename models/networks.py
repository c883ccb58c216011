"""The detection networks behind one interface, and the registry that builds them.

Every network maps a batch of whitened two-detector windows to an unbounded
ranking statistic::

    forward(windows: Tensor[B, n_ifos, window_samples]) -> Tensor[B]   # logit

The output is a logit (larger = more signal-like), never a probability: no
sigmoid or softmax sits inside a network, because a saturated probability
cannot rank the loudest events. Train with ``BCEWithLogitsLoss``.

Each model carries its metadata as attributes: ``name``, ``sample_rate_hz``,
``window_samples``, ``n_ifos``, ``joint`` (True when one network sees both
detectors at once; False for the factorized model, whose time slides reuse
per-detector features) and ``hparams``, the keyword arguments that rebuild it
with :func:`build_model`.

Networks
--------
``baseline``
    The classic two-detector CNN of George & Huerta (2018) and Gabbard et al.
    (2018), adapted to 1-s windows at 2048 Hz (:class:`BaselineCNN`).
``resnet``
    A joint 1-D residual network over both detectors (:class:`ResNet1d`).
``factorized``
    A per-detector encoder plus a light coincidence head
    (:class:`gwstream.models.factorized.FactorizedNet`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GWNet", "BaselineCNN", "ResNet1d", "build_model", "MODEL_NAMES", "count_parameters"]

MODEL_NAMES = ("baseline", "resnet", "factorized")


class GWNet(nn.Module):
    """Common base: metadata attributes and the input check shared by all networks.

    Parameters
    ----------
    sample_rate_hz : int
        Sample rate of the whitened input, Hz.
    window_samples : int
        Samples per detector in one window (1 s at ``sample_rate_hz`` by default).
    """

    name: str = ""
    joint: bool = True
    n_ifos: int = 2

    def __init__(self, sample_rate_hz: int = 2048, window_samples: int = 2048) -> None:
        super().__init__()
        for label, v in (("sample_rate_hz", sample_rate_hz), ("window_samples", window_samples)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{label} = {v!r}, expected a positive integer")
        self.sample_rate_hz = int(sample_rate_hz)
        self.window_samples = int(window_samples)
        self.hparams: dict[str, Any] = {
            "sample_rate_hz": self.sample_rate_hz,
            "window_samples": self.window_samples,
        }

    def _check_windows(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_ifos or x.shape[2] != self.window_samples:
            raise ValueError(
                f"windows have shape {tuple(x.shape)}, expected "
                f"[batch, {self.n_ifos}, {self.window_samples}] (detectors H1, L1)"
            )


def _valid_len(n: int, kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """Output length of an unpadded convolution or pooling layer."""
    return (n - dilation * (kernel - 1) - 1) // stride + 1


class BaselineCNN(GWNet):
    """Two-detector CNN after George & Huerta (2018) and Gabbard et al. (2018).

    Six convolution layers with ``(1, k)`` kernels shared by both detectors
    (the detectors are the image's rows), each followed by batch norm and
    ELU, with ``(1, 4)`` max pooling after layers 2, 4 and 6; then flatten
    (the first place the detectors mix), dense 64, ELU, dropout 0.5 and one
    output logit.

    Parameters
    ----------
    sample_rate_hz, window_samples : int
        Input geometry (2048 Hz, 2048 samples).
    channels : list of int
        Filters of the six convolutions (Gabbard et al.: 8, 8, 16, 16, 32, 32).
    kernels : list of int
        Kernel lengths, samples. Gabbard et al. use 64, 32, 32, 16, 16, 16 at
        8192 Hz; at 2048 Hz the same lengths span 4x more time.
    dense : int
        Width of the dense layer.
    dropout : float
        Dropout probability before the output (training only).

    Notes
    -----
    Input: ``[B, 2, N]`` whitened strain; output: ``[B]`` logits.
    D. George and E. A. Huerta, Phys. Lett. B 778, 64 (2018);
    H. Gabbard et al., Phys. Rev. Lett. 120, 141103 (2018).
    """

    name = "baseline"
    joint = True

    def __init__(
        self,
        sample_rate_hz: int = 2048,
        window_samples: int = 2048,
        channels: list[int] | tuple[int, ...] = (8, 8, 16, 16, 32, 32),
        kernels: list[int] | tuple[int, ...] = (64, 32, 32, 16, 16, 16),
        dense: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(sample_rate_hz, window_samples)
        if len(channels) != 6 or len(kernels) != 6:
            raise ValueError(f"channels {list(channels)} and kernels {list(kernels)}: expected 6 values each")
        layers: list[nn.Module] = []
        c_in, n = 1, self.window_samples
        for i, (c, k) in enumerate(zip(channels, kernels)):
            layers += [nn.Conv2d(c_in, int(c), (1, int(k))), nn.BatchNorm2d(int(c)), nn.ELU()]
            n = _valid_len(n, int(k))
            if i % 2 == 1:
                layers.append(nn.MaxPool2d((1, 4)))
                n = _valid_len(n, 4, 4)
            c_in = int(c)
        if n < 1:
            raise ValueError(f"window_samples = {window_samples} is too short for kernels {list(kernels)}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c_in * self.n_ifos * n, int(dense)),
            nn.ELU(),
            nn.Dropout(float(dropout)),
            nn.Linear(int(dense), 1),
        )
        self.hparams.update(
            channels=[int(c) for c in channels],
            kernels=[int(k) for k in kernels],
            dense=int(dense),
            dropout=float(dropout),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` of whitened windows ``[B, 2, N]``."""
        self._check_windows(windows)
        return self.classifier(self.features(windows.unsqueeze(1))).squeeze(-1)


class _ResBlock(nn.Module):
    """Pre-activation-free basic block: conv-BN-ELU-conv-BN plus a (projected) skip, then ELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.act = nn.ELU()
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet1d(GWNet):
    """Joint 1-D residual network over both detectors.

    A strided stem (2 detector channels in) brings 2048 Hz down to 512 Hz, then
    one residual block per stage halves the rate and widens the channels
    (512 → 256 → 128 → 64 Hz); global max and mean pooling over time feed a
    small dense head.

    Parameters
    ----------
    sample_rate_hz, window_samples : int
        Input geometry (2048 Hz, 2048 samples).
    widths : list of int
        Channels of the stem and of each stage (stem width first).
    kernel : int
        Kernel length of the residual convolutions, samples at the stage rate.
    stem_kernel : int
        Kernel length of the stride-4 stem, samples at the input rate.

    Notes
    -----
    Input: ``[B, 2, N]`` whitened strain; output: ``[B]`` logits. Blocks follow
    K. He et al., "Deep residual learning for image recognition", CVPR 2016.
    """

    name = "resnet"
    joint = True

    def __init__(
        self,
        sample_rate_hz: int = 2048,
        window_samples: int = 2048,
        widths: list[int] | tuple[int, ...] = (16, 16, 32, 64, 64),
        kernel: int = 7,
        stem_kernel: int = 32,
    ) -> None:
        super().__init__(sample_rate_hz, window_samples)
        if len(widths) < 2:
            raise ValueError(f"widths = {list(widths)}, expected the stem width and at least one stage")
        w = [int(v) for v in widths]
        self.stem = nn.Sequential(
            nn.Conv1d(self.n_ifos, w[0], int(stem_kernel), stride=4, padding=int(stem_kernel) // 2, bias=False),
            nn.BatchNorm1d(w[0]),
            nn.ELU(),
        )
        self.stages = nn.Sequential(
            *[_ResBlock(w[i], w[i + 1], int(kernel), 1 if i == 0 else 2) for i in range(len(w) - 1)]
        )
        self.head = nn.Sequential(nn.Linear(2 * w[-1], 32), nn.ELU(), nn.Linear(32, 1))
        self.hparams.update(widths=w, kernel=int(kernel), stem_kernel=int(stem_kernel))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` of whitened windows ``[B, 2, N]``."""
        self._check_windows(windows)
        h = self.stages(self.stem(windows))
        pooled = torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)
        return self.head(pooled).squeeze(-1)


def _registry() -> dict[str, type[GWNet]]:
    # factorized.py builds on GWNet, so it is imported here, not at module top.
    from gwstream.models.factorized import FactorizedNet

    return {"baseline": BaselineCNN, "resnet": ResNet1d, "factorized": FactorizedNet}


def build_model(name: str, **kwargs: Any) -> GWNet:
    """Build a network by registry name.

    Parameters
    ----------
    name : str
        One of ``"baseline"``, ``"resnet"``, ``"factorized"``.
    **kwargs
        Hyper-parameters of that network (a model's ``hparams`` rebuilds it).

    Returns
    -------
    GWNet
        The network, freshly initialised, in training mode.

    Raises
    ------
    ValueError
        For an unknown name or hyper-parameters the network does not accept.
    """
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown model name {name!r}, expected one of {sorted(registry)}")
    try:
        return registry[name](**kwargs)
    except TypeError as exc:  # unexpected keyword
        raise ValueError(f"model {name!r} cannot be built from hyper-parameters {kwargs!r}: {exc}") from exc


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
