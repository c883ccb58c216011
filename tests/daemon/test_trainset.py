"""Training windows: whitened like the daemon, signals at the SNR asked for, deterministic, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gwstream.daemon.config import InjectionConfig
from gwstream.daemon.train.training import HardNegativePicker, curriculum
from gwstream.daemon.train.trainset import NoisePool, WaveformBank, WindowMaker, make_validation_set


@pytest.fixture(scope="module")
def maker(tmp_path_factory):
    cfg = InjectionConfig(approximant="IMRPhenomD", spin="aligned", mass1_msun=(20.0, 40.0),
                          mass2_msun=(15.0, 30.0))
    bank = WaveformBank.generate(cfg, 8, seed=1, workers=1, cache=tmp_path_factory.mktemp("banks"))
    return WindowMaker(bank, NoisePool(seed=0, n_variants=3), stretch_s=32)


def test_bank_is_cached_and_merger_is_loudest(maker, tmp_path):
    bank = maker.bank
    assert bank.hp.shape == (8, int(3.0 * 2048)) and bank.hp.dtype == np.float32
    loudest = np.argmax(np.abs(bank.hp) + np.abs(bank.hc), axis=1)
    assert np.all(np.abs(loudest - bank.merger_index) < 0.05 * 2048)


def test_noise_windows_are_white(maker):
    rng = np.random.default_rng(0)
    white, taps = maker.pool.stretch((5,), 32, rng)
    assert white.shape[0] == 2 and taps.shape == (2, 2048)
    assert abs(float(white.std()) - 1.0) < 0.05
    assert abs(float(white.mean())) < 0.02


def test_whitened_signal_snr_matches_pycbc_optimal_snr(maker):
    """sum(whitened signal^2) is the optimal SNR^2 against the (estimated) PSD the filter was built from."""
    from gwstream.kernels import psd as kpsd
    from gwstream.kernels import whiten as kwh
    from pycbc.filter import sigma
    from pycbc.types import FrequencySeries, TimeSeries

    rng = np.random.default_rng(3)
    pool = maker.pool
    x = pool._noise(pool.psds[0], 64 * 2048, rng)
    f, p = kpsd.welch(x, 2048, 4.0, 0.5, "median")
    taps = np.stack([kwh.design_fir(2048, f, p, 1.0, 20.0, "linear")] * 2)
    # the plus polarisation alone, whitened by direct convolution with the taps
    hp = np.zeros(16 * 2048)
    hp[: maker.bank.hp.shape[1]] = maker.bank.hp[0]
    la = kwh.lookahead_samples(2048, "linear")
    white = np.convolve(hp, taps[0])[la:la + hp.size]
    psd = FrequencySeries(np.interp(np.fft.rfftfreq(hp.size, 1 / 2048), f, p), delta_f=1 / 16)
    rho_pycbc = float(sigma(TimeSeries(hp, delta_t=1 / 2048), psd, low_frequency_cutoff=20.0))
    assert np.sqrt((white ** 2).sum()) == pytest.approx(rho_pycbc, rel=0.03)


def test_epoch_is_deterministic_and_labelled(maker):
    a = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20)
    b = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x, y, snr = a
    assert x.shape == (40, 2, 2048) and x.dtype == np.float32
    assert y.sum() == 20 and np.all((snr[y == 1] >= 8) & (snr[y == 1] <= 12)) and np.all(snr[y == 0] == 0)
    c = maker.epoch((1, 3), 40, (8.0, 12.0), 0.5, windows_per_stretch=20)
    assert not np.array_equal(a[0], c[0])


def test_loud_fraction_draws_loud_coincident_signals(maker):
    x, y, snr = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, loud_fraction=0.5,
                            loud_snr_range=(20.0, 60.0))
    sig = snr[y == 1]
    loud = sig > 12
    assert 0 < loud.sum() < sig.size and np.all((sig[loud] >= 20) & (sig[loud] <= 60))
    assert np.all((sig[~loud] >= 8) & (sig[~loud] <= 12))


def test_signal_windows_carry_the_signal(maker):
    rng = np.random.default_rng(4)
    white, taps = maker.pool.stretch((9,), 32, rng)
    x, y, _ = maker.from_stretch(white, taps, rng, 8, 4, snrs=np.full(4, 40.0))
    energy = (x.astype(np.float64) ** 2).sum(axis=(1, 2))
    assert energy[:4].min() > energy[4:].max()


def test_validation_set_bins(maker):
    x, y, snr = make_validation_set(maker, 7, 50, snrs=(6.0, 12.0), n_per_snr=10)
    assert (y == 0).sum() == 50 and (snr == 6.0).sum() == 10 and (snr == 12.0).sum() == 10


def test_curriculum():
    assert curriculum(0, (10, 30), (5, 20), 4) == (10, 30)
    assert curriculum(2, (10, 30), (5, 20), 4) == (7.5, 25)
    assert curriculum(9, (10, 30), (5, 20), 4) == (5, 20)


def test_fit_resume_is_identical(maker, tmp_path):
    """Two epochs straight, or one epoch, stop, resume: the same weights."""
    from gwstream.models.networks import build_model
    from gwstream.models.train import fit

    torch.set_num_threads(1)
    val = make_validation_set(maker, 7, 30, snrs=(10.0,), n_per_snr=10)

    def make_epoch(e):
        return maker.epoch((0, e), 32, (10.0, 20.0), windows_per_stretch=16)

    class Killed(Exception):
        pass

    def run(out, epochs, kill_after=None):
        torch.manual_seed(0)
        model = build_model("factorized")

        def on_epoch(entry):
            if entry["epoch"] == kill_after:
                raise Killed

        try:
            fit(model, make_epoch, val, epochs=epochs, batch_size=16, seed=0, out_dir=out, progress=False,
                on_epoch=on_epoch)
        except Killed:
            pass
        return torch.load(out / "checkpoint.pt", weights_only=True)

    straight = run(tmp_path / "a", 2)
    killed = run(tmp_path / "b", 2, kill_after=1)
    assert killed["epoch"] == 0  # the checkpoint of the first epoch survived the "crash"
    resumed = run(tmp_path / "b", 2)
    assert resumed["epoch"] == 1
    for k in straight["state_dict"]:
        torch.testing.assert_close(straight["state_dict"][k], resumed["state_dict"][k], rtol=0, atol=0)


def test_fit_leaves_the_best_or_the_last_epoch(maker, tmp_path, monkeypatch):
    """select="best" leaves the weights of best_state.pt, select="last" those of the last epoch."""
    import gwstream.models.train as train_mod
    from gwstream.models.networks import build_model
    from gwstream.models.train import fit

    torch.set_num_threads(1)
    # the held-out TPR falls epoch by epoch, so the best epoch (1) is not the last (2)
    real, calls = train_mod.summarize, []

    def falling(*a, **kw):
        out = real(*a, **kw)
        calls.append(1)
        out["tpr"]["0.001"]["all"] = out["tpr"]["0.001"]["8"] = 1.0 / len(calls)
        return out

    monkeypatch.setattr(train_mod, "summarize", falling)
    val = make_validation_set(maker, 7, 30, snrs=(10.0,), n_per_snr=10)

    def make_epoch(e):
        return maker.epoch((0, e), 32, (10.0, 20.0), windows_per_stretch=16)

    left = {}
    for select in ("best", "last"):
        calls.clear()
        torch.manual_seed(0)
        model = build_model("factorized")
        out = tmp_path / select
        fit(model, make_epoch, val, epochs=2, batch_size=16, seed=0, out_dir=out, progress=False, select=select)
        assert torch.load(out / "best_state.pt", weights_only=True)["epoch"] == 1
        want = torch.load(out / ("best_state.pt" if select == "best" else "checkpoint.pt"), weights_only=True)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, want["state_dict"][k], rtol=0, atol=0)
        left[select] = model.state_dict()
    assert any(not torch.equal(left["best"][k], left["last"][k]) for k in left["best"])
    with pytest.raises(ValueError, match="select"):
        fit(build_model("factorized"), make_epoch, val, epochs=1, batch_size=16, out_dir=tmp_path / "x",
            progress=False, select="worst")


def test_fit_gives_template_filters_their_own_learning_rate(maker, tmp_path):
    """lr_scales: the template filters form a group at 1 % of the learning rate, without weight decay."""
    from gwstream.models.networks import build_model
    from gwstream.models.train import fit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("factorized", template_pairs=2, template_taps=512)
    model.set_templates(np.random.default_rng(0).standard_normal((4, 512)) / 22.6)
    before = model.templates.weight.detach().clone()
    val = make_validation_set(maker, 7, 30, snrs=(10.0,), n_per_snr=10)
    fit(model, lambda e: maker.epoch((0, e), 32, (10.0, 20.0), windows_per_stretch=16), val, epochs=2,
        batch_size=16, lr=1e-3, weight_decay=0.1, seed=0, out_dir=tmp_path, progress=False)
    groups = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 0.1
    assert groups[1]["initial_lr"] == pytest.approx(1e-5) and groups[0]["initial_lr"] == pytest.approx(1e-3)
    moved = (model.templates.weight.detach() - before).abs().max().item()
    assert 0 < moved <= 4 * 2e-5  # Adam moves a weight by about lr per step: 4 steps at <= 1e-5
    model.lr_scales = {"nope.weight": 0.5}
    with pytest.raises(ValueError, match="nope.weight"):
        fit(model, lambda e: None, val, epochs=1, out_dir=tmp_path / "x", progress=False)


def test_template_filters_are_unit_norm_quadrature_pairs():
    from gwstream.daemon.config import Config
    from gwstream.daemon.train.training import template_filters

    cfg = Config()
    w = template_filters(cfg, 3, 1024)
    assert w.shape == (6, 1024) and w.dtype == np.float32 and np.all(np.isfinite(w))
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)
    for i in range(3):  # a cut and its Hilbert transform: nearly orthogonal, the merger near the end
        assert abs(float(w[i] @ w[i + 3])) < 0.05
        assert np.argmax(np.abs(w[i])) > 1024 - 200
    assert abs(float(w[0] @ w[2])) < 0.9  # light and heavy templates differ


def test_template_filters_cut_given_templates_as_the_ladder_does():
    """``params`` (a placed bank's): the same cut, whitening and quadratures; aligned spins change the template."""
    from gwstream.daemon.config import Config
    from gwstream.daemon.train.training import template_filters

    cfg = Config()
    ladder = template_filters(cfg, 2, 512)
    mc = np.geomspace(7.0 * 2 ** -0.2, 50.0 * 2 ** -0.2, 2)  # the ladder's equal-mass and q = 2 masses
    m1 = np.array([mc[0] * 2 ** 0.2, min(50.0, mc[1] * 3 ** 1.2 / 2 ** 0.6 * 2 / 3)])
    m2 = np.array([mc[0] * 2 ** 0.2, max(7.0, mc[1] * 3 ** 1.2 / 2 ** 0.6 / 3)])
    given = template_filters(cfg, 2, 512, {"mass1": m1, "mass2": m2})
    np.testing.assert_allclose(given, ladder, rtol=0, atol=1e-5)
    spun = template_filters(cfg, 2, 512, {"mass1": m1, "mass2": m2, "spin1z": np.array([0.8, 0.0]),
                                          "spin2z": np.array([0.8, 0.0])})
    assert abs(float(spun[0] @ ladder[0])) < 0.99 and np.allclose(spun[1], ladder[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        template_filters(cfg, 3, 512, {"mass1": m1, "mass2": m2})


def test_minimum_phase_pool_whitens_causally_like_the_daemon(maker):
    """phase="minimum": white noise, no look-ahead, and the whitened signal is the causal filter's output."""
    from gwstream.kernels import whiten as kwh

    pool = NoisePool(seed=0, n_variants=3, phase="minimum")
    assert pool.lookahead == 0
    rng = np.random.default_rng(0)
    white, taps = pool.stretch((5,), 32, rng)
    assert abs(float(white.std()) - 1.0) < 0.05
    assert taps.shape == (2, 2048)
    # minimum phase: the energy comes first (a linear-phase filter centres it at tap 1023)
    assert ((taps[:, :256] ** 2).sum(axis=1) > 0.9 * (taps ** 2).sum(axis=1)).all()
    mp = WindowMaker(maker.bank, pool, stretch_s=32)
    lin = maker.whitened_signals(np.array([0]), taps, np.random.default_rng(1))
    causal = mp.whitened_signals(np.array([0]), taps, np.random.default_rng(1))
    # the same filter: min-phase output = linear-phase alignment delayed by the linear look-ahead
    la = kwh.lookahead_samples(2048, "linear")
    np.testing.assert_allclose(causal[..., la:], lin[..., :-la], atol=1e-9 * np.abs(causal).max())
    x, y, _ = mp.from_stretch(white, taps, rng, 8, 4, snrs=np.full(4, 40.0))
    energy = (x.astype(np.float64) ** 2).sum(axis=(1, 2))
    assert energy[:4].min() > energy[4:].max()


def test_hard_negative_picker_returns_the_highest_scoring_noise_windows(maker):
    """The picks are the top of every (H1 start, L1 slide) window scanned, scored as forward() scores them."""
    from gwstream.models.networks import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("factorized")
    model.train()
    rng = np.random.default_rng(11)
    white, _ = maker.pool.stretch((12,), 32, rng)
    picker = HardNegativePicker(model, 2048, slides=4, span_s=8)
    picks = picker(white, 3)
    assert model.training  # left as it was
    assert len(picks) == 3
    h1 = np.array([p[0] for p in picks])
    l1 = np.array([p[1] for p in picks])
    assert np.all(np.abs(h1[:, None] - h1[None, :])[~np.eye(3, dtype=bool)] > 2048)
    assert np.all(np.abs(l1[:, None] - l1[None, :])[~np.eye(3, dtype=bool)] > 2048)
    assert np.all((l1 - h1) % 2048 == 0) and np.all((l1 - h1 >= 0) & (l1 - h1 <= 3 * 2048))

    def forward(pairs):
        x = np.stack([np.stack([white[0, a:a + 2048], white[1, b:b + 2048]]) for a, b in pairs]).astype(np.float32)
        model.eval()
        with torch.inference_mode():
            out = model(torch.from_numpy(x)).numpy()
        model.train()
        return out

    np.testing.assert_allclose(forward(picks), picker.scores, atol=1e-3)
    # brute force over a grid of the scanned windows: none beats the first pick
    starts = np.arange(0, 8 * 2048 - 2048 + 1, 8 * 37)
    grid = [(s, s + k * 2048) for k in range(4) for s in starts]
    assert forward(grid).max() <= picker.scores[0] + 1e-3
    assert "3 windows" in picker.summary() and picker.summary() == "none"


def test_hard_negative_picker_never_repeats_a_window_when_asked_for_more_than_the_scan_holds(maker):
    """Window starts in 8 s of H1 more than a window length apart: at most 7. A request for 12 gets those only."""
    from gwstream.models.networks import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("factorized")
    rng = np.random.default_rng(12)
    white, _ = maker.pool.stretch((13,), 32, rng)
    picker = HardNegativePicker(model, 2048, slides=4, span_s=8)
    picks = picker(white, 12)
    assert 1 <= len(picks) <= 7
    assert np.all(np.isfinite(picker.scores)) and len(picker.scores) == len(picks)
    h1 = np.array([p[0] for p in picks])
    l1 = np.array([p[1] for p in picks])
    off = ~np.eye(len(picks), dtype=bool)
    assert np.all(np.abs(h1[:, None] - h1[None, :])[off] > 2048)
    assert np.all(np.abs(l1[:, None] - l1[None, :])[off] > 2048)
    assert f"{12 - len(picks)} more asked for" in picker.summary()


def test_epoch_keeps_plain_noise_where_the_picker_found_too_few(maker):
    def picker(white, k):
        return [(0, 2048 * 3)]  # one pick of the k asked for

    x, y, snr = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, hard_fraction=0.2,
                            hard_picker=picker)
    assert x.shape == (40, 2, 2048) and y.sum() == 20 and np.all(np.isfinite(x))
    assert np.all(x.std(axis=-1) > 0.5)  # every row is whitened data, none left empty


def test_epoch_places_hard_negatives_as_labelled_noise(maker):
    plain = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20)
    same = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, hard_fraction=0.2)
    for u, v in zip(plain, same):  # no picker: a plain epoch
        np.testing.assert_array_equal(u, v)
    calls = []

    def picker(white, k):
        calls.append((white.copy(), k))
        return [(2048 * j, 2048 * (j + 3)) for j in range(k)]

    x, y, snr = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, hard_fraction=0.2,
                            hard_picker=picker)
    assert [k for _, k in calls] == [4, 4] and y.sum() == 20
    for white, k in calls:
        for j in range(k):
            want = np.stack([white[0, 2048 * j:2048 * (j + 1)], white[1, 2048 * (j + 3):2048 * (j + 4)]])
            rows = np.flatnonzero([np.array_equal(r, want.astype(np.float32)) for r in x])
            assert rows.size == 1 and y[rows[0]] == 0 and snr[rows[0]] == 0


def test_validation_info_describes_each_signal_without_changing_the_windows(maker):
    from gwstream.daemon.train.trainset import validation_chunks

    plain = list(validation_chunks(maker, 5, 40, snrs=(8.0, 12.0), n_per_snr=20))
    rich = list(validation_chunks(maker, 5, 40, snrs=(8.0, 12.0), n_per_snr=20, with_info=True))
    assert len(plain) == len(rich)
    for a, b in zip(plain, rich):
        assert all(np.array_equal(u, v) for u, v in zip(a, b[:4]))
        x, y, snr, _, info = b
        sig = y == 1
        assert info["ifo_snr"].shape == (x.shape[0], 2) and np.all(np.isnan(info["ifo_snr"][~sig]))
        assert np.all(info["bank_index"][~sig] == -1) and np.all(info["bank_index"][sig] >= 0)
        # each detector's SNR adds up (in quadrature) to the network SNR asked for; the window holds part of it
        assert np.allclose(np.sqrt((info["ifo_snr"][sig] ** 2).sum(axis=1)), snr[sig], rtol=1e-6)
        assert np.all(info["window_snr"][sig] <= snr[sig] * (1 + 1e-6))
        assert np.all(info["window_snr"][sig] > 0.5 * snr[sig])
        lo, hi = maker.span
        assert np.all((info["merger_sample"][sig] >= lo) & (info["merger_sample"][sig] <= hi))


def test_glitch_windows_are_labelled_noise_at_the_snr_drawn(maker):
    """A glitch window holds the whitened glitch in one detector (or both) on top of the noise, its energy
    inside the window at most the drawn SNR squared; blips of SNR 50-60 always show; labels stay 0."""
    from gwstream.daemon.config import GlitchConfig

    blips = GlitchConfig(blip_rate_per_hour=1.0, snr=(50.0, 60.0), blip_q=(4.0, 8.0), blip_f0_hz=(60.0, 200.0))
    rng = np.random.default_rng(3)
    white, taps = maker.pool.stretch((11,), 32, rng)
    plain_rng, glitch_rng = np.random.default_rng(5), np.random.default_rng(5)
    plain = maker.from_stretch(white, taps, plain_rng, 16, 4, (8.0, 12.0))
    x, y, snr = maker.from_stretch(white, taps, glitch_rng, 16, 4, (8.0, 12.0), n_glitch=8, glitches=blips,
                                   glitch_both_fraction=0.5)
    np.testing.assert_array_equal(y, plain[1])
    np.testing.assert_array_equal(x[:4], plain[0][:4])  # no glitch under the signals (fraction 0)
    np.testing.assert_array_equal(x[12:], plain[0][12:])  # plain noise left alone
    extra = np.sqrt(np.clip((x[4:12].astype(np.float64) ** 2 - plain[0][4:12].astype(np.float64) ** 2).sum(-1),
                            0, None))
    hit = extra.max(axis=1)
    assert np.all(y[4:12] == 0) and np.all(snr[4:12] == 0)
    assert np.all(hit > 10) and np.all(hit < 70)  # part of a blip of SNR 50-60 always lies in the window
    assert 0 < (extra.min(axis=1) > 10).sum() < 8  # both detectors in some windows, not all


def test_lined_up_glitch_pairs_arrive_within_the_coincidence_window(maker):
    """glitch_coincident_fraction = 1 puts each pair's second glitch within COINCIDENT_DT_S of the first (a slide's
    most signal-like pairs); at 0 the pairs are independent, most of them far apart."""
    from gwstream.daemon.config import GlitchConfig
    from gwstream.daemon.train.trainset import COINCIDENT_DT_S

    blips = GlitchConfig(blip_rate_per_hour=1.0, snr=(80.0, 90.0), blip_q=(3.0, 4.0), blip_f0_hz=(100.0, 150.0))
    white, taps = maker.pool.stretch((12,), 32, np.random.default_rng(4))
    quiet = np.zeros_like(white)

    def offsets(fraction: float) -> np.ndarray:
        x, _, _ = maker.from_stretch(quiet, taps, np.random.default_rng(6), 24, 0, n_glitch=24, glitches=blips,
                                     glitch_both_fraction=1.0, glitch_coincident_fraction=fraction)
        a = np.abs(x.astype(np.float64))
        inside = (a.max(axis=2) > 1.0).all(axis=1)  # both peaks in the window (a centre may lie outside it)
        return np.abs(np.diff(a.argmax(axis=2), axis=1)[:, 0])[inside] / maker.rate

    lined, free = offsets(1.0), offsets(0.0)
    assert lined.size >= 12 and free.size >= 6
    assert np.all(lined <= COINCIDENT_DT_S + 0.005)
    assert np.mean(free > 0.1) > 0.5


def test_epoch_with_glitches_keeps_every_label_and_the_plain_draws_without_them(maker):
    from gwstream.daemon.config import GlitchConfig

    g = GlitchConfig(blip_rate_per_hour=2.0, scatter_rate_per_hour=1.0, loud_rate_per_hour=1.0,
                     loud_snr=(200.0, 400.0))
    plain = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20)
    none = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, glitches=g)
    for u, v in zip(plain, none):
        np.testing.assert_array_equal(u, v)
    x, y, snr = maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, glitch_fraction=0.3,
                            glitches=g, glitch_signal_fraction=0.5)
    assert y.sum() == 20 and np.all(np.isfinite(x))
    loudest = np.abs(x).max(axis=(1, 2))
    assert (loudest[y == 0] > 8).sum() >= 3  # the glitch windows show
    with pytest.raises(ValueError, match="GlitchConfig"):
        maker.epoch((1, 2), 40, (8.0, 12.0), 0.5, windows_per_stretch=20, glitch_fraction=0.3)


def test_glitch_fraction_leaves_room_for_plain_noise():
    import dataclasses

    from gwstream.daemon.config import Config, GlitchConfig
    from gwstream.daemon.errors import ConfigError

    t = Config().train
    with pytest.raises(ConfigError, match="glitch_fraction"):
        dataclasses.replace(t, signal_fraction=0.5, single_ifo_fraction=0.2, glitch_fraction=0.3).check("train.")
    with pytest.raises(ConfigError, match="glitches.blip_rate_per_hour"):
        dataclasses.replace(t, glitch_fraction=0.1, glitches=GlitchConfig()).check("train.")
    dataclasses.replace(t, glitch_fraction=0.1).check("train.")
