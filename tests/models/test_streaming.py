"""The factorized network's public streaming interface: the encoder's explicit state and the head's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gwstream.models import surgery
from gwstream.models.encoder import EncoderState, StreamEncoder
from gwstream.models.factorized import FactorizedNet
from gwstream.models.networks import build_model
from torch import nn


def _net(seed: int, **kwargs) -> FactorizedNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = build_model("factorized", channels=16, stem_channels=8, hidden=8, **kwargs)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    if m.template_pairs:
        m.set_templates(np.random.default_rng(seed).standard_normal((2 * m.template_pairs, m.template_taps)) / 22)
    return m.eval()


@pytest.mark.parametrize("kw", [{}, {"template_pairs": 3, "template_taps": 512, "template_after": 40}],
                         ids=["plain", "template-branch"])
@pytest.mark.parametrize("fft", [False, True])
def test_encoder_resumes_from_a_snapshot_bit_for_bit(kw, fft):
    """A snapshot taken mid-stream, restored into a fresh encoder (or the same one after other input), continues
    with exactly the features the uninterrupted encoder gives; the snapshot is a copy, not a view."""
    net = _net(1, **kw)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 5 * 2048 + 300)).astype(np.float32))
    cuts = [0, 1500, 2048 * 2, 2048 * 3 + 77, x.shape[1]]
    with torch.inference_mode():
        ref = StreamEncoder(net, fft=fft)
        ref.reset(-1500)
        whole = [ref(x[:, a:b]) for a, b in zip(cuts, cuts[1:])]
        enc = StreamEncoder(net, fft=fft)
        enc.reset(-1500)
        for a, b in zip(cuts[:2], cuts[1:3]):
            enc(x[:, a:b])
        snap = enc.snapshot()
        assert isinstance(snap, EncoderState) and len(snap.tails) == len(enc.state.tails)
        enc(torch.ones(2, 999))  # the encoder moves on; the snapshot must not
        other = StreamEncoder(net, fft=fft)
        for e in (other, enc):
            e.restore(snap)
            rest = [e(x[:, a:b]) for a, b in zip(cuts[2:], cuts[3:])]
            for got, want in zip(rest, whole[2:]):
                assert torch.equal(got, want)
    with pytest.raises(ValueError, match="layers"):
        StreamEncoder(_net(1, dilations=(2, 4))).restore(snap)


def test_streaming_geometry_is_what_the_head_uses():
    """projection_channels, centre_steps and the top-template switch agree with the projections and the head."""
    plain, branch = _net(3), _net(3, template_pairs=2, template_taps=256, template_after=40)
    per = surgery.with_per_template_gain(branch)
    f = torch.randn(2, branch.feature_channels, 80)
    with torch.inference_mode():
        a, p = branch.project(f[0], f[1])
    assert a.shape == p.shape == (branch.projection_channels, 80) and branch.projection_channels == 8 + 2
    assert branch.lag_pool(p).shape == (branch.projection_channels, 80 - 2 * branch.lag_steps)
    assert plain.centre_steps == plain.window_steps - 2 * plain.lag_steps
    assert branch.shared_template_gain and not per.shared_template_gain and not plain.shared_template_gain
    assert branch.uses_top_templates("cpu") and not branch.uses_top_templates("meta")
    assert not per.uses_top_templates("cpu") and not plain.uses_top_templates("cpu")
    branch.kernel_best_template = False
    assert not branch.uses_top_templates("cpu") and FactorizedNet.kernel_best_template
