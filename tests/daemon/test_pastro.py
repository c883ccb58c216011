"""p_astro (daemon/followup/pastro.py) on synthetic backgrounds and foregrounds made with numpy."""

import json
import math
import time

import numpy as np
import pytest
from gwstream.daemon.followup.pastro import (
    DEFAULT_SIGNAL_PATH,
    BackgroundDensity,
    PAstroModel,
    SignalModel,
    fgmc_counts,
    load_signal_model,
    model_for_search,
    p_astro,
)
from gwstream.daemon.stream.background import Background
from gwstream.daemon.units import NS

STRIDE = NS // 16
T_BG = 1.0e6  # s of background
N_BG = 1_000_000  # background triggers: statistic 1 + Exp(scale 0.5), rate 1 Hz
SCALE = 0.5
X_TH = 3.0  # threshold statistic
RHO_LO = 4.0  # signals: p(rho) ~ rho^-4 above RHO_LO, statistic rho - 2 + N(0, 0.3)


def signal_stats(rng, rho):
    return rho - 2.0 + rng.normal(0.0, 0.3, rho.size)


def make_signal(seed=0, n=4000):
    """The signal model from injections drawn uniform in SNR (weights rho^-4), as the calibration script does."""
    rng = np.random.default_rng(seed)
    rho = rng.uniform(RHO_LO, 60.0, n)
    return SignalModel.from_injections(signal_stats(rng, rho), rho, rho_lo=RHO_LO, bandwidth=0.3)


SIGNAL = make_signal()


def make_background(seed=0, n=N_BG, offset=1.0, livetime_s=T_BG, n_exact=100_000) -> Background:
    rng = np.random.default_rng(seed)
    bg = Background(stride_ns=STRIDE, n_exact=n_exact)
    bg.add(offset + rng.exponential(SCALE, n), live_windows=int(livetime_s * 16))
    return bg


def draw_signals(rng, n):
    rho = RHO_LO * rng.random(n) ** (-1.0 / 3.0)  # p(rho) ~ rho^-4 above RHO_LO
    return signal_stats(rng, rho)


def foreground(seed, t_fg, lam_s, offset=1.0):
    """Zero-lag stats of ``t_fg`` s: noise like the background (all of it, above and below X_TH) and signals."""
    rng = np.random.default_rng(seed)
    noise = offset + rng.exponential(SCALE, rng.poisson(N_BG / T_BG * t_fg))
    sig = draw_signals(rng, rng.poisson(lam_s))
    return np.concatenate([noise, sig]), noise, sig


@pytest.fixture(scope="module")
def background():
    return make_background()


def test_background_density_follows_the_counts(background):
    dens = BackgroundDensity.from_background(background, X_TH)
    for x in (X_TH, 4.0, 5.0, 6.0, 7.0):
        n = int(background.count_at_least(x))
        assert math.isclose(float(np.exp(dens.log_rate(x))) * T_BG, n, rel_tol=0.05 + 3 / math.sqrt(n)), x
    # the density is the exponential's: -dR/dx = R / SCALE
    xs = np.array([3.5, 4.5, 5.5, 6.5])
    assert np.allclose(dens.log_density(xs) - dens.log_rate(xs), -math.log(SCALE), atol=0.25)
    # beyond the loudest background value the fitted tail keeps it positive
    far_out = dens.log_density([30.0, 300.0])
    assert np.isfinite(far_out).all() and far_out[0] > far_out[1]
    assert 0.5 / SCALE < dens.tail_slope < 2.0 / SCALE


def test_p_astro_rises_with_the_statistic(background):
    all_fg, _, _ = foreground(1, 1.0e5, 100)
    model = PAstroModel.fit(background, all_fg, 1.0e5, threshold_stat=X_TH, signal=SIGNAL)
    xs = np.linspace(X_TH - 1.0, 40.0, 500)
    p = model.p_astro(xs)
    assert (np.diff(p) >= 0).all()
    assert p[0] < 0.05  # deep in the background
    assert model(30.0)["BBH"] > 0.999  # far above the loudest background value
    assert model(math.inf)["BBH"] == pytest.approx(1.0)
    d = model(12.0)
    assert set(d) == {"BBH", "Terrestrial"} and d["BBH"] + d["Terrestrial"] == pytest.approx(1.0)


def test_p_astro_is_the_two_component_formula(background):
    all_fg, _, _ = foreground(2, 1.0e5, 100)
    model = PAstroModel.fit(background, all_fg, 1.0e5, threshold_stat=X_TH, signal=SIGNAL)
    x = np.array([4.0, 6.0, 8.0, 9.5])
    f = np.exp(SIGNAL.log_density(x, X_TH))
    rb_b = np.exp(model.background.log_density(x))
    expected = model.signal_rate_hz * f / (model.signal_rate_hz * f + rb_b)
    assert np.allclose(model.p_astro(x), expected, rtol=1e-3, atol=1e-6)
    # one trigger goes through p-astro's own FGMC formula: the same number
    for v in x:
        assert model(float(v))["BBH"] == pytest.approx(float(model.p_astro(v)), rel=1e-9)


@pytest.mark.parametrize("seed,lam_s", [(3, 80), (4, 400)])
def test_the_fgmc_fit_recovers_the_signal_count(background, seed, lam_s):
    t_fg = 1.0e5
    all_fg, noise, sig = foreground(seed, t_fg, lam_s)
    n_sig = int((sig >= X_TH).sum())
    model = PAstroModel.fit(background, all_fg, t_fg, threshold_stat=X_TH, signal=SIGNAL)
    lam = model.meta["lambda_s"]
    assert abs(lam - n_sig) < 4.0 * math.sqrt(n_sig) + 5, (lam, n_sig)
    assert model.meta["lambda_b"] == pytest.approx(model.background_rate_hz * t_fg)
    # both counts free (EM): they still add up to the triggers above threshold and recover both components
    free = PAstroModel.fit(background, all_fg, t_fg, threshold_stat=X_TH, signal=SIGNAL, fit_background=True)
    n_noise = int((noise >= X_TH).sum())
    assert free.meta["lambda_s"] + free.meta["lambda_b"] == pytest.approx(n_sig + n_noise)
    assert abs(free.meta["lambda_s"] - n_sig) < 5.0 * math.sqrt(n_sig) + 5


def test_the_fitted_p_astro_is_calibrated(background):
    """Among the foreground's triggers above the threshold, the mean p_astro matches the signal fraction."""
    t_fg = 3.0e5
    all_fg, noise, sig = foreground(5, t_fg, 600)
    model = PAstroModel.fit(background, all_fg, t_fg, threshold_stat=X_TH, signal=SIGNAL)
    x = np.concatenate([noise[noise >= X_TH], sig[sig >= X_TH]])
    truth = np.concatenate([np.zeros((noise >= X_TH).sum()), np.ones((sig >= X_TH).sum())])
    p = model.p_astro(x)
    for lo, hi in ((0.0, 0.2), (0.2, 0.8), (0.8, 1.0)):
        sel = (p >= lo) & (p < hi) if hi < 1 else (p >= lo)
        n = int(sel.sum())
        assert n > 20
        assert abs(truth[sel].mean() - p[sel].mean()) < 3.0 * math.sqrt(p[sel].mean() * (1 - p[sel].mean()) / n) + 0.03


def test_fgmc_counts_without_triggers_is_the_jeffreys_prior():
    lam_s, lam_b = fgmc_counts([], [], 3.0)
    assert lam_s == pytest.approx(0.5, rel=1e-3) and lam_b == 3.0


def test_with_rate_scales_the_snr8_rate(background):
    model = PAstroModel.with_rate(background, threshold_stat=X_TH, signal=SIGNAL, rate_snr8_per_year=100.0)
    above = float(SIGNAL.survival(X_TH))
    assert above == pytest.approx((RHO_LO / 5.0) ** 3, abs=0.03)  # statistic >= 3 is rho >= 5
    assert model.signal_rate_hz == pytest.approx(100.0 * (8.0 / RHO_LO) ** 3 * above / (365.25 * 86400.0))
    assert model.meta["how"] == "configured rate"
    assert model(25.0)["BBH"] > 0.99


def test_round_trip_through_json(background, tmp_path):
    all_fg, _, _ = foreground(6, 1.0e5, 100)
    model = PAstroModel.fit(background, all_fg, 1.0e5, threshold_stat=X_TH, signal=SIGNAL)
    text = json.dumps(model.to_dict())
    assert len(text) < 100_000
    again = PAstroModel.from_dict(json.loads(text))
    xs = np.linspace(X_TH, 30.0, 97)
    assert np.array_equal(again.p_astro(xs), model.p_astro(xs))
    path = model.save(tmp_path / "pastro.json")
    assert np.array_equal(PAstroModel.load(path).p_astro(xs), model.p_astro(xs))
    assert SignalModel.from_dict(SIGNAL.to_dict()).to_dict() == SIGNAL.to_dict()


def test_per_alert_evaluation_is_fast(background):
    model = PAstroModel.with_rate(background, threshold_stat=X_TH, signal=SIGNAL)
    p_astro(model, 7.0)
    t0 = time.perf_counter()
    for x in np.linspace(X_TH, 20.0, 200):
        p_astro(model, float(x))
    assert (time.perf_counter() - t0) / 200 < 0.01


def test_bad_inputs_give_a_clear_value_error(background):
    with pytest.raises(ValueError, match="background triggers at or above threshold_stat"):
        BackgroundDensity.from_background(background, 40.0)
    with pytest.raises(ValueError, match="no live time"):
        BackgroundDensity.from_background(Background(stride_ns=STRIDE), X_TH)
    with pytest.raises(ValueError, match="foreground_livetime_s"):
        PAstroModel.fit(background, [4.0], 0.0, threshold_stat=X_TH, signal=SIGNAL)
    with pytest.raises(ValueError, match="finite"):
        PAstroModel.fit(background, [np.nan], 10.0, threshold_stat=X_TH, signal=SIGNAL)
    with pytest.raises(ValueError, match="threshold_stat"):
        PAstroModel.fit(background, [4.0], 10.0, threshold_stat="high", signal=SIGNAL)
    model = PAstroModel.with_rate(background, threshold_stat=X_TH, signal=SIGNAL)
    with pytest.raises(ValueError, match="stat"):
        model(float("nan"))
    with pytest.raises(ValueError, match="not a gwstream p_astro model"):
        PAstroModel.from_dict({"format": "something else"})
    with pytest.raises(ValueError, match="increase strictly"):
        SignalModel(x=[1.0, 0.5, 2.0], log_f=[0.0, 0.0, 0.0], tail_rho=10.0, tail_drho=1.0, rho_lo=4.0)
    with pytest.raises(ValueError, match="found injections"):
        SignalModel.from_injections([np.nan] * 50, np.full(50, 8.0), rho_lo=4.0)
    with pytest.raises(ValueError, match="rate_snr8_per_year"):
        PAstroModel.with_rate(background, threshold_stat=X_TH, signal=SIGNAL, rate_snr8_per_year=-1.0)


def test_injections_reweighted_to_rho_minus_4_give_its_statistic_distribution():
    # every signal is found: f integrates to 1, and P(stat >= x) = P(rho >= x + 2) = (4 / (x + 2))^3
    assert SIGNAL.found_fraction == pytest.approx(1.0, abs=1e-3)
    for x in (3.0, 6.0, 10.0, 20.0, 40.0):
        assert float(SIGNAL.survival(x)) == pytest.approx((RHO_LO / (x + 2.0)) ** 3, rel=0.15), x
    # beyond the loudest injection the fitted rho(stat) continues the power law
    assert SIGNAL.x[-1] < 100.0
    assert float(SIGNAL.survival(100.0)) == pytest.approx((RHO_LO / 102.0) ** 3, rel=0.15)
    assert np.isfinite(SIGNAL.log_density([5.0, 50.0, 500.0], X_TH)).all()
    # a missed injection lowers the found fraction, not the shape
    rng = np.random.default_rng(9)
    rho = rng.uniform(RHO_LO, 60.0, 4000)
    stat = np.where(rng.random(rho.size) < 0.25, np.nan, signal_stats(rng, rho))
    half = SignalModel.from_injections(stat, rho, rho_lo=RHO_LO, bandwidth=0.3)
    ess = half.meta["effective_sample_size"]  # the rho^-4 weights leave this many injections' worth
    assert half.found_fraction == pytest.approx(0.75, abs=3.0 * math.sqrt(0.75 * 0.25 / ess))
    assert float(half.log_density(8.0, X_TH)) == pytest.approx(float(SIGNAL.log_density(8.0, X_TH)), abs=0.1)


def test_the_shipped_signal_model_builds_a_search_model():
    assert DEFAULT_SIGNAL_PATH.is_file()
    signal = load_signal_model()
    x_th = float(signal.meta["threshold_stat"])
    bg = make_background(seed=8, n=50_000, offset=x_th - 2.0, livetime_s=2.0e5)
    model = model_for_search(bg)
    assert model.threshold_stat == pytest.approx(x_th)
    assert model(x_th + 60.0)["BBH"] > 0.99
    assert model(x_th)["BBH"] < 0.5
    bg.meta = {"model_sha256": "0" * 64}  # a background of another network
    with pytest.raises(ValueError, match="calibrated for model"):
        model_for_search(bg)
