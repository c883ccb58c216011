"""The three networks: interface, metadata, budgets, and the factorized stream path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gwstream.models import surgery
from gwstream.models.factorized import FactorizedNet, StreamEncoder
from gwstream.models.networks import MODEL_NAMES, build_model, count_parameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

# Stream features vs per-window features: the same float32 convolutions over a
# longer input can sum in another order (oneDNN blocking); logits ~0.1-1, so
# 1e-5 absolute is ~100 ulps and far below any indexing error (~0.01 or more).
STREAM_ATOL = 1e-5
# The template branch streams by FFT: its energies agree with the convolution's to float rounding of the block's
# whole energy (FFT rounding scales with the norm), so they are compared against their largest value
BRANCH_REL = 2e-6
# Parameter budget of the brief: small enough to ship (< 2 MB of float32).
MIN_PARAMS, MAX_PARAMS = 10_000, 500_000
N = 2048


def _model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A seeded network in eval mode, with non-trivial batch-norm statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = build_model(name, **kwargs)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.1, 0.1)
    return m.eval()


def _with_branch(seed: int, **kwargs) -> FactorizedNet:
    """A factorized network with a template branch of random filters (its head's weights random too)."""
    m = _model("factorized", seed=seed, template_pairs=4, template_taps=1024, **kwargs)
    m.set_templates(np.random.default_rng(seed).standard_normal((8, 1024)) / 32)
    return m


@pytest.fixture(scope="module", params=["plain", "template-branch"])
def fnet(request) -> FactorizedNet:
    """The factorized network, and the same with a template branch (every stream/slide test runs on both)."""
    return _model("factorized", seed=3) if request.param == "plain" else _with_branch(3)


@pytest.fixture(scope="module")
def stream() -> torch.Tensor:
    """Four seconds of unit-variance noise in two detectors (stands in for whitened strain)."""
    rng = np.random.default_rng(11)
    return torch.from_numpy(rng.standard_normal((2, 4 * N)).astype(np.float32))


@pytest.fixture(scope="module")
def feats(fnet, stream) -> torch.Tensor:
    with torch.inference_mode():
        return fnet.encode_stream(stream)


def _assert_stream_close(got: torch.Tensor, want: torch.Tensor, pairs: int) -> None:
    """StreamEncoder features against encode_stream's: the encoder's to STREAM_ATOL, the branch's to BRANCH_REL."""
    c = want.shape[1] - pairs
    torch.testing.assert_close(got[:, :c], want[:, :c], atol=STREAM_ATOL, rtol=0)
    if pairs:
        torch.testing.assert_close(got[:, c:], want[:, c:], atol=BRANCH_REL * float(want[:, c:].abs().max()), rtol=0)


def _cut(stream: torch.Tensor, step: int, starts, slide: int = 0) -> torch.Tensor:
    """Windows [B, 2, N] cut from the stream at feature steps ``starts``; L1 ``slide`` steps later."""
    h = [stream[0, s * step : s * step + N] for s in starts]
    l1 = [stream[1, (s + slide) * step : (s + slide) * step + N] for s in starts]
    return torch.stack([torch.stack(p) for p in zip(h, l1)])


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="baseline.*factorized.*resnet"):
        build_model("transformer")


def test_bad_hyperparameter_is_value_error():
    with pytest.raises(ValueError, match="resnet"):
        build_model("resnet", depth=50)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shape_dtype_and_metadata(name):
    m = _model(name)
    assert (m.name, m.sample_rate_hz, m.window_samples, m.n_ifos) == (name, 2048, 2048, 2)
    assert m.joint is (name != "factorized")
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 2, N)).astype(np.float32))
    with torch.inference_mode():
        y = m(x)
        y1 = m(x[:1])
    assert y.shape == (3,) and y.dtype == torch.float32 and y1.shape == (1,)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_hparams_rebuild_same_architecture(name):
    m = build_model(name)
    again = build_model(name, **m.hparams)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
    assert again.hparams == m.hparams


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_budget(name):
    assert MIN_PARAMS <= count_parameters(build_model(name)) <= MAX_PARAMS


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_window_shape_rejected(name):
    m = _model(name)
    with pytest.raises(ValueError, match=r"\[batch, 2, 2048\]"):
        m(torch.zeros(2, 2, N - 1))
    with pytest.raises(ValueError, match=r"\[batch, 2, 2048\]"):
        m(torch.zeros(2, 3, N))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_is_unbounded_logit(name):
    m = _model(name)
    squashers = (nn.Sigmoid, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Tanh, nn.Hardtanh)
    assert not any(isinstance(mod, squashers) for mod in m.modules())
    # The last layer is linear: scaling it scales the logit without saturating.
    last = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1]
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((8, 2, N)).astype(np.float32))
    with torch.inference_mode():
        y0 = m(x) - last.bias
        last.weight.mul_(1e4)
        y1 = m(x) - last.bias
    assert y1.abs().max() > 20
    torch.testing.assert_close(y1, y0 * 1e4, rtol=1e-4, atol=1e-3)


def test_factorized_geometry(fnet):
    assert fnet.stride_samples == 8
    assert fnet.lag_steps == 3  # ceil(10 ms * 2048 Hz / 8) = ceil(2.56)
    for n in (fnet.receptive_field_samples, N, N + 5, 3 * N + 8):
        with torch.inference_mode():
            f = fnet.encode(torch.zeros(1, n))
        assert f.shape == (1, fnet.feature_channels, fnet.n_features(n))
        assert fnet.feature_channels == fnet.hparams["channels"] + fnet.template_pairs
    assert fnet.n_features(N) == fnet.window_steps
    with pytest.raises(ValueError, match="n_samples >="):
        fnet.encode(torch.zeros(1, fnet.receptive_field_samples - 1))


def test_receptive_field_is_exact(fnet):
    """Feature j depends on samples [j*8, j*8 + rf) and on nothing else."""
    # float64: an edge sample moves a deep feature by ~1e-5, below float32 noise
    net = copy.deepcopy(fnet).double()
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.standard_normal((1, N)))
    j, rf, s = 40, net.receptive_field_samples, net.stride_samples
    with torch.inference_mode():
        base = net.encode(x)[0, :, j]
        for i, changes in ((j * s - 1, False), (j * s, True), (j * s + rf - 1, True), (j * s + rf, False)):
            y = x.clone()
            y[0, i] += 10.0
            moved = (net.encode(y)[0, :, j] - base).abs().max() > 1e-9
            assert bool(moved) is changes, f"sample {i}"


def test_forward_is_head_of_encodings(fnet):
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((4, 2, N)).astype(np.float32))
    with torch.inference_mode():
        split = fnet.head(fnet.encode(x[:, 0]), fnet.encode(x[:, 1]))
        torch.testing.assert_close(fnet(x), split, rtol=0, atol=1e-6)


def test_head_rejects_mismatched_features(fnet):
    with pytest.raises(ValueError, match="expected equal"):
        fnet.head(torch.zeros(1, 64, 50), torch.zeros(1, 64, 49))


def test_stream_windows_equal_forward(fnet, stream, feats):
    """16 windows/s cut from the stream score the same from cached features."""
    with torch.inference_mode():
        starts = np.arange(0, feats.shape[-1] - fnet.window_steps + 1, 16)  # 128-sample stride
        got = fnet.head_windows(feats, starts)
        want = fnet(_cut(stream, fnet.stride_samples, starts))
    assert got.shape == (len(starts),)
    torch.testing.assert_close(got, want, rtol=0, atol=STREAM_ATOL)


def test_slides_equal_forward_on_shifted_l1(fnet, stream, feats):
    slides = [-48, -16, 0, 3, 16, 112]
    with torch.inference_mode():
        starts = np.arange(48, feats.shape[-1] - fnet.window_steps - 112 + 1, 48)
        got = fnet.head_windows(feats, starts, slides)
        assert got.shape == (len(slides), len(starts))
        for i, s in enumerate(slides):
            want = fnet(_cut(stream, fnet.stride_samples, starts, slide=s))
            torch.testing.assert_close(got[i], want, rtol=0, atol=STREAM_ATOL)
        # A scalar slide gives the matching row.
        torch.testing.assert_close(fnet.head_windows(feats, starts, 16), got[slides.index(16)], rtol=0, atol=1e-6)


def test_evenly_spaced_slides_read_as_one_view_give_the_same_bits(fnet, feats):
    """Evenly spaced slides (the daemon's, increasing or decreasing) take a strided view of the L1
    projections instead of one copy per slide; the logits are those of the copying path. (Bit for bit
    when the slides come in the same order: the daemon's search gave identical triggers and FARs with
    either path; here the rows reach the final dense layer in another order, which may move the last bit.)"""
    even = [-48, -32, -16, 0, 16, 32]
    shuffled = [0, -48, 16, -32, 32, -16]  # not evenly spaced: the copying path
    with torch.inference_mode():
        starts = np.arange(48, feats.shape[-1] - fnet.window_steps - 48 + 1, 48)
        up = fnet.head_windows(feats, starts, even)
        down = fnet.head_windows(feats, starts, even[::-1])
        ref = fnet.head_windows(feats, starts, shuffled)
    order = [shuffled.index(v) for v in even]
    torch.testing.assert_close(up, ref[order], rtol=0, atol=1e-6)
    torch.testing.assert_close(down, ref[order[::-1]], rtol=0, atol=1e-6)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_irregular_starts_and_slides(fnet, stream, feats, data):
    """Any starts (not only a regular 16-step grid) and slides match explicit cuts."""
    with torch.inference_mode():
        last = feats.shape[-1] - fnet.window_steps
        slide = data.draw(st.integers(-20, 20))
        lo, hi = max(0, -slide), last - max(0, slide)
        starts = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=3))
        got = fnet.head_windows(feats, starts, slide)
        want = fnet(_cut(stream, fnet.stride_samples, starts, slide=slide))
    torch.testing.assert_close(got, want, rtol=0, atol=STREAM_ATOL)


def test_wrap_is_circular_and_bounds_checked(fnet, feats):
    with torch.inference_mode():
        last = feats.shape[-1] - fnet.window_steps
        starts = [0, 16, 32]
        with pytest.raises(ValueError, match="wrap=True"):
            fnet.head_windows(feats, starts, last)
        with pytest.raises(ValueError, match="window starts"):
            fnet.head_windows(feats, [last + 1])
        # Inside the stream, wrap changes nothing; a slide by the whole
        # (max-pooled) L1 length comes back to zero lag.
        inside = fnet.head_windows(feats, starts, 5)
        torch.testing.assert_close(fnet.head_windows(feats, starts, 5, wrap=True), inside, rtol=0, atol=1e-6)
        period = feats.shape[-1] - 2 * fnet.lag_steps
        torch.testing.assert_close(
            fnet.head_windows(feats, starts, [period], wrap=True)[0],
            fnet.head_windows(feats, starts, 0),
            rtol=0,
            atol=1e-6,
        )
        assert fnet.head_windows(feats, starts, last, wrap=True).shape == (3,)


@given(cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_stream_encoder_equals_encode_stream_whatever_the_chunking(fnet, stream, feats, cuts):
    """Each layer keeps only the context its next outputs need; batch norm is folded into the convolutions."""
    enc = StreamEncoder(fnet)
    bounds = np.unique(np.clip(np.cumsum(cuts), 0, stream.shape[1]))
    pieces, a = [], 0
    with torch.inference_mode():
        for b in [*bounds.tolist(), stream.shape[1]]:
            if b > a:
                pieces.append(enc(stream[:, a:b]))
                a = b
    got = torch.cat(pieces, dim=-1)
    assert got.shape == feats.shape
    _assert_stream_close(got, feats, fnet.template_pairs)


def test_stream_encoder_reset_starts_a_new_stream(fnet, stream, feats):
    enc = StreamEncoder(fnet)
    with torch.inference_mode():
        enc(torch.ones(2, 777))  # a stream that is then abandoned
        enc.reset()
        short = enc(stream[:, : fnet.receptive_field_samples - 1])
        rest = enc(stream[:, fnet.receptive_field_samples - 1:])
    assert short.shape == (2, feats.shape[1], 0)
    _assert_stream_close(rest, feats, fnet.template_pairs)
    with pytest.raises(ValueError, match=r"expected \[2, n_samples\]"):
        enc(torch.zeros(3, 100))


def test_template_branch_starts_as_the_network_without_it():
    """with_template_branch: the same outputs; each new hidden unit is its template's two-detector amplitude."""
    plain = _model("factorized", seed=4)
    filters = np.random.default_rng(0).standard_normal((6, 512)) / 22.6
    wide = surgery.with_template_branch(plain, 3, 512, filters).eval()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 2, N)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(wide(x), plain(x), rtol=0, atol=1e-6)
        f = wide.encode(x[:, 0])
        assert f.shape[1] == 64 + 3
        torch.testing.assert_close(f[:, :64], plain.encode(x[:, 0]), rtol=0, atol=0)
        energy = f[:, 64:]
        z = torch.nn.functional.conv1d(x[:, :1, wide.receptive_field_samples - 512:], wide.templates.weight, stride=8)
        torch.testing.assert_close(energy, (z[:, :3] ** 2 + z[:, 3:] ** 2).clamp(max=64), rtol=0, atol=1e-6)
        u = wide.proj_h1(f)[:, 32:]  # the new units read their template's energy
        torch.testing.assert_close(u, energy, rtol=0, atol=1e-6)
        # with a gain, the logit adds gain x (best template's network SNR - 5)
        with torch.no_grad():
            wide.template_gain.fill_(0.5)
        e = wide.encode(x.reshape(6, N)).reshape(3, 2, 67, -1)[:, :, 64:]
        e_l1 = torch.nn.functional.max_pool1d(e[:, 1], 7, stride=1)
        best = (e[:, 0, :, 3:-3] + e_l1).flatten(1).amax(1).sqrt()
        torch.testing.assert_close(wide(x), plain(x) + 0.5 * (best - 5.0), rtol=0, atol=1e-5)
    assert wide.hparams["template_pairs"] == 3 and "template_pairs" not in plain.hparams
    assert wide.lr_scales == {"templates.weight": 0.01}
    with pytest.raises(ValueError, match="already has a template branch"):
        surgery.with_template_branch(wide, 3, 512, filters)


def test_per_template_gain_starts_as_the_shared_gain():
    """with_per_template_gain keeps the outputs; then the logit adds max_k gain_k (sqrt(u_k) - 5), u_k the
    window's largest two-detector SNR^2 of template k; it survives a checkpoint's hyper-parameters."""
    filters = np.random.default_rng(6).standard_normal((8, 512)) / 22.6
    shared = surgery.with_template_branch(_model("factorized", seed=6), 4, 512, filters).eval()
    with torch.no_grad():
        shared.template_gain.fill_(0.8)
    per = surgery.with_per_template_gain(shared).eval()
    assert per.template_gain.shape == (4,) and per.hparams["per_template_gain"] is True
    assert "per_template_gain" not in shared.hparams and per.lr_scales == shared.lr_scales
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((3, 2, N)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(per(x), shared(x), rtol=0, atol=1e-6)
    gains = torch.tensor([0.5, 1.5, -0.2, 3.0])
    with torch.no_grad():
        per.template_gain.copy_(gains)
        shared.template_gain.zero_()
        e = per.capped(per.encode(x.reshape(6, N))).reshape(3, 2, per.feature_channels, -1)[:, :, 64:]
        e_l1 = torch.nn.functional.max_pool1d(e[:, 1], 7, stride=1)
        u = (e[:, 0, :, 3:-3] + e_l1).amax(-1)  # (3 windows, 4 templates)
        want = shared(x) + (gains * ((u + 1e-6).sqrt() - 5.0)).amax(-1)
        torch.testing.assert_close(per(x), want, rtol=0, atol=1e-5)
        again = FactorizedNet(**per.hparams)
        again.load_state_dict(per.state_dict())
        torch.testing.assert_close(again.eval()(x), per(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shared template_gain"):
        surgery.with_per_template_gain(per)
    with pytest.raises(ValueError, match="shared template_gain"):
        surgery.with_per_template_gain(_model("factorized", seed=1))


def test_template_pair_amplitude_is_phase_free():
    """A unit-norm filter pair and its quadrature give the overlap's amplitude at any phase of the signal."""
    import scipy.signal

    m = _model("factorized", seed=5, template_pairs=1, template_taps=256)
    t = np.arange(256) / 2048.0
    c = np.sin(2 * np.pi * (60 * t + 200 * t**2)) * np.hanning(256)
    q = np.imag(scipy.signal.hilbert(c))
    c, q = c / np.linalg.norm(c), q / np.linalg.norm(q)
    m.set_templates(np.stack([c, q]))
    rf = m.receptive_field_samples
    amps = []
    for phase in np.linspace(0, 2 * np.pi, 7):
        sig = 5.0 * (np.cos(phase) * c + np.sin(phase) * q)
        x = np.zeros((1, rf))
        x[0, rf - 256:] = sig
        with torch.no_grad():
            z = m.templates(torch.from_numpy(x[:, None, rf - 256:]).float())[0, :, 0]
        amps.append(float(torch.sqrt(z[0] ** 2 + z[1] ** 2)))
    assert np.allclose(amps, 5.0, rtol=0.02), amps
    # the feature is the energy; the head reads it capped at SNR 8 (64): SNR 5 gives 25, SNR 20 counts as 64
    for snr, want in ((5.0, 25.0), (20.0, 64.0)):
        x = np.zeros((1, rf))
        x[0, rf - 256:] = snr * c
        with torch.no_grad():
            e = m.template_features(torch.from_numpy(x[:, rf - 256:]).float())  # (1, 1, 1)
            head_view = m.capped(torch.cat([torch.zeros(1, m.feature_channels - 1, 1), e], 1))[0, -1, 0]
        assert float(e[0, 0, 0]) == pytest.approx(snr**2, rel=1e-3)
        assert float(head_view) == pytest.approx(want, rel=1e-3)


def test_template_branch_rejects_bad_geometry_and_filters():
    with pytest.raises(ValueError, match="template_taps"):
        build_model("factorized", template_pairs=2, template_taps=5000)
    with pytest.raises(ValueError, match="template_pairs"):
        build_model("factorized", template_pairs=-1)
    with pytest.raises(ValueError, match="template_after"):
        build_model("factorized", template_pairs=2, template_taps=128, template_after=128)
    m = build_model("factorized", template_pairs=2, template_taps=128)
    with pytest.raises(ValueError, match=r"expected finite \(4, 128\)"):
        m.set_templates(np.zeros((4, 127)))
    with pytest.raises(ValueError, match="finite"):
        m.set_templates(np.full((4, 128), np.nan))
    with pytest.raises(ValueError, match="no template branch"):
        build_model("factorized").set_templates(np.zeros((2, 128)))


def _fed(enc: StreamEncoder, stream: torch.Tensor, cuts) -> list[torch.Tensor]:
    """The encoder's outputs for ``stream`` cut after ``cuts`` samples (then the rest)."""
    bounds = [*np.cumsum(cuts).tolist(), stream.shape[1]]
    a, pieces = 0, []
    with torch.inference_mode():
        for b in bounds:
            if b > a:
                pieces.append(enc(stream[:, a:b]))
                a = b
    return pieces


@pytest.mark.parametrize("fft", [False, True])
def test_template_channels_do_not_depend_on_the_chunking_bit_for_bit(stream, fft):
    """As row products (one fixed shape) any chunking gives the same bits; by FFT, any chunking into whole
    FFT blocks does (each block transformed alone), and others agree to float rounding."""
    net = _with_branch(7)
    aligned = ([2048] * 3, [4096], [6144, 2048]) if fft else ([1000, 3000, 77], [2048] * 3, [5000, 13])
    outs = [torch.cat(_fed(StreamEncoder(net, fft=fft), stream, cuts), dim=-1)[:, 64:] for cuts in aligned]
    assert outs[0].shape[-1] > 100
    for o in outs[1:]:
        assert torch.equal(o, outs[0])
    if fft:
        for cuts in ([1000, 3000, 77], [5000, 13], [1] * 50):
            o = torch.cat(_fed(StreamEncoder(net, fft=True), stream, cuts), dim=-1)[:, 64:]
            torch.testing.assert_close(o, outs[0], rtol=0, atol=BRANCH_REL * float(outs[0].abs().max()))


def test_template_fft_blocks_end_with_aligned_blocks_whatever_the_origin(stream):
    """Fed in 1-s blocks, the FFT branch gives each block all the features its samples complete (what row
    products give), whatever absolute sample the stream started at; fed off that grid, the features of an
    unfinished FFT block come as row products at once, so nothing waits."""
    net = _with_branch(8)
    rows = _fed(StreamEncoder(net, fft=False), stream, [2048] * 3)
    assert [r.shape[-1] for r in rows][:2] == [(2048 - net.receptive_field_samples) // 8 + 1, 256]
    for origin in (0, -5 * 2048, 3 * 2048):  # origin + samples fed = 0 mod 2048 at the end of each 1-s block
        enc = StreamEncoder(net, fft=True)
        enc.reset(origin)
        for a, r in zip(range(0, stream.shape[1], 2048), rows):
            with torch.inference_mode():
                f = enc(stream[:, a:a + 2048])
            assert f.shape[-1] == r.shape[-1]
            assert enc.state.partial == 0  # every feature by FFT
    enc = StreamEncoder(net, fft=True)
    enc.reset(-1000)  # FFT blocks end 1000 samples into each 1-s block
    ffts = _fed(enc, stream, [2048] * 3)
    assert [f.shape[-1] for f in ffts] == [r.shape[-1] for r in rows]
    for f, r in zip(ffts, rows):
        torch.testing.assert_close(f[:, 64:], r[:, 64:], rtol=0, atol=BRANCH_REL * float(r[:, 64:].abs().max()))


@pytest.mark.parametrize("wrap", [False, True])
def test_head_projected_on_a_grid_scores_a_window_alone_as_in_company(wrap):
    """With ``grid`` the head sums a window's steps in blocks fixed by the grid, not by which windows come
    with it: a block's single window scored alone (the first block after the PSD warm-up) and the same window
    in a backlog give the same bits (a replay at full speed equals the search exactly)."""
    net = _model("factorized", seed=5)
    rng = np.random.default_rng(6)
    hdim, ws = net.proj_h1.out_channels, 16
    tp = net.window_steps - 2 * net.lag_steps
    a = torch.from_numpy(rng.standard_normal((hdim, 40 * ws + tp)).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal((hdim, 60 * ws + tp)).astype(np.float32))
    offsets = torch.arange(0, 20 * ws, ws)
    company = torch.arange(0, 40 * ws, ws)
    with torch.inference_mode():
        many = net.head_projected(a, b, company, offsets, wrap=wrap, grid=ws)
        for i in (0, 7, 39):
            alone = net.head_projected(a[:, i * ws:], b, torch.tensor([0]), offsets + i * ws, wrap=wrap, grid=ws)
            assert torch.equal(alone[:, 0], many[:, i])
        with pytest.raises(ValueError, match="multiples of grid = 16"):
            net.head_projected(a, b, torch.tensor([0, 8]), offsets, grid=ws)


def test_with_more_templates_keeps_the_network_and_adds_pairs():
    """Grown by pairs whose filters are zero, the network scores as before; real filters add their energies as
    new feature channels and their two-detector SNR^2 as new head units, the old pairs untouched."""
    net = _with_branch(8)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((3, 2, N)).astype(np.float32))
    with torch.no_grad():
        net.template_gain.fill_(0.7)
    same = surgery.with_more_templates(net, np.zeros((4, 1024))).eval()
    assert same.template_pairs == 6 and same.feature_channels == net.feature_channels + 2
    new = np.random.default_rng(3).standard_normal((4, 1024)) / 32
    grown = surgery.with_more_templates(net, new).eval()
    with torch.inference_mode():
        torch.testing.assert_close(same(x), net(x), rtol=0, atol=1e-6)
        f_old, f_new = net.encode(x[:, 0]), grown.encode(x[:, 0])
        torch.testing.assert_close(f_new[:, : net.feature_channels], f_old, rtol=0, atol=0)
        z = torch.nn.functional.conv1d(x[:, :1, net.receptive_field_samples - 1024:],
                                       torch.from_numpy(new.astype(np.float32))[:, None], stride=8)
        torch.testing.assert_close(f_new[:, net.feature_channels:], z[:, :2] ** 2 + z[:, 2:] ** 2, rtol=1e-5, atol=1e-5)
        u = grown.proj_h1(f_new)[:, -2:]  # the new units read their template's energy (capped in the head)
        torch.testing.assert_close(u, f_new[:, -2:], rtol=0, atol=1e-6)
    assert grown.hparams["template_pairs"] == 6
    with pytest.raises(ValueError, match="expected \\(2 \\* extra pairs, 1024\\)"):
        surgery.with_more_templates(net, np.zeros((3, 1024)))
    with pytest.raises(ValueError, match="no template branch"):
        surgery.with_more_templates(_model("factorized", seed=1), np.zeros((2, 1024)))


@pytest.mark.parametrize("slides", ["increasing", "decreasing", "irregular", "wrapping"])
def test_head_projected_takes_the_best_template_by_kernel_with_the_same_bits(slides):
    """With one shared gain the template units enter the logit only through their largest value: the kernel
    that forms it per slide and step (no units materialised) gives the general path's logits bit for bit,
    missing data (NaN) included."""
    net = _with_branch(9)
    with torch.no_grad():
        net.template_gain.fill_(1.1)
    rng = np.random.default_rng(10)
    hdim, ws = net.proj_h1.out_channels, 16
    tp = net.window_steps - 2 * net.lag_steps
    a = torch.from_numpy(rng.standard_normal((hdim, 30 * ws + tp)).astype(np.float32) * 4)
    b = torch.from_numpy(rng.standard_normal((hdim, 90 * ws)).astype(np.float32) * 4)
    a[-1, 40] = float("nan")  # a template unit
    b[2, 300] = float("nan")  # an MLP unit
    b[-2, 700] = float("nan")
    offsets = {"increasing": torch.arange(0, 40 * ws, ws), "decreasing": torch.arange(39 * ws, -1, -ws),
               "irregular": torch.tensor([0, 5, 300, 17, 44 * ws]),
               "wrapping": torch.arange(0, 40 * ws, ws) + 70 * ws}[slides]
    wrap = slides == "wrapping"
    starts = torch.arange(0, 30 * ws, ws)
    with torch.inference_mode():
        split = net.head_projected(a, b, starts, offsets, wrap=wrap, grid=ws)
        net.kernel_best_template = False
        general = net.head_projected(a, b, starts, offsets, wrap=wrap, grid=ws)
    assert split.isnan().any() and (~split.isnan()).any()
    assert torch.equal(split.isnan(), general.isnan())
    assert torch.equal(split.nan_to_num(), general.nan_to_num())


def test_diagonal_template_units_read_only_their_own_energy_and_stay_so_in_training(tmp_path):
    """with_diagonal_template_units keeps each template unit's weight on its own energy and its bias (the other
    template-row weights zeroed, never computed), the H units whole; the window and stream paths agree, a
    training step leaves the zeros at zero, growing keeps the structure, and a checkpoint round-trips it."""
    net = _with_branch(11)
    with torch.no_grad():
        net.template_gain.fill_(0.9)
        net.proj_h1.weight[8:, :16] += 0.01  # dense template rows, as training leaves them
    diag = surgery.with_diagonal_template_units(net).eval()
    c, p = net.hparams["channels"], 4
    h = net.proj_h1.out_channels - p
    for proj, old in ((diag.proj_h1, net.proj_h1), (diag.proj_l1, net.proj_l1)):
        w, w0 = proj.weight[:, :, 0], old.weight[:, :, 0]
        assert torch.equal(w[:h], w0[:h])
        assert torch.equal(torch.diagonal(w[h:, c:]), torch.diagonal(w0[h:, c:]))
        assert not w[h:, :c].any() and not (w[h:, c:] - torch.diag(torch.diagonal(w[h:, c:]))).any()
    x = torch.from_numpy(np.random.default_rng(12).standard_normal((2, 2, N)).astype(np.float32))
    dense_zeroed = copy.deepcopy(net)  # the same weights computed the dense way
    dense_zeroed.load_state_dict(diag.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(diag(x), dense_zeroed(x), rtol=0, atol=1e-5)
        stream = torch.from_numpy(np.random.default_rng(13).standard_normal((2, 3 * N)).astype(np.float32))
        f = diag.encode_stream(stream)
        starts = np.arange(0, f.shape[-1] - diag.window_steps + 1, 16)
        wins = torch.stack([stream[:, 8 * s:8 * s + N] for s in starts])
        torch.testing.assert_close(diag.head_windows(f, starts), diag(wins), rtol=0, atol=1e-4)
    diag.train()
    opt = torch.optim.AdamW(diag.parameters(), lr=1e-2, weight_decay=1e-2)
    diag(x).sum().backward()
    opt.step()
    assert not diag.proj_h1.weight[h:, :c].any() and not diag.proj_l1.weight[h:, :c].any()
    from gwstream.models.scorer import load_checkpoint, save_checkpoint

    save_checkpoint(diag.eval(), tmp_path / "diag.pt")
    stored = torch.load(tmp_path / "diag.pt", weights_only=True)["state_dict"]
    assert stored["proj_h1.weight"].shape == (h, c + p, 1) and stored["proj_l1.template_weight"].shape == (p,)
    back = load_checkpoint(tmp_path / "diag.pt")[0].eval()
    with torch.inference_mode():
        assert back.diagonal_template_units and torch.equal(back(x), diag(x))
    assert all(torch.equal(v, diag.state_dict()[k]) for k, v in back.state_dict().items())
    bad = torch.load(tmp_path / "diag.pt", weights_only=True)
    bad["state_dict"]["proj_l1.template_weight"] = torch.zeros(p + 1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: weights do not fit.*proj_l1: packed weights"):
        load_checkpoint(tmp_path / "bad.pt")
    grown = surgery.with_more_templates(diag, np.random.default_rng(3).standard_normal((4, 1024)) / 32)
    assert grown.diagonal_template_units and grown.hparams["diagonal_template_units"]
    with pytest.raises(ValueError, match="template branch"):
        surgery.with_diagonal_template_units(_model("factorized", seed=1))
