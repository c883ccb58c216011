"""The streaming conditioning stage: statuses, timing, gaps, gating, equality with the offline kernels."""

from __future__ import annotations

import numpy as np
import pytest
from gwstream.daemon.config import Config, config_from_dict
from gwstream.daemon.io.wire import Block
from gwstream.daemon.stream.conditioning import Conditioner, Status
from gwstream.daemon.units import NS
from gwstream.kernels import resample as kres
from gwstream.kernels import whiten as kwh

FS_IN = 4096
FS = 1024
GPS0 = 1_234_567_890 * NS
IFOS = ("H1", "L1")


def _stage(**kw):
    args = dict(fftlength_s=2.0, psd_length_s=8.0, psd_refresh_s=4.0, window_s=1.0, stride_s=0.125, phase="linear",
                psd_min_change=0.0)
    args.update(kw)
    return Conditioner(IFOS, FS_IN, FS, **args)


def _data(seconds, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, FS_IN * seconds)) * 1e-21


def _blocks(x, valid=None, gps0=GPS0, skip=()):
    n = x.shape[1] // FS_IN
    valid = np.ones(x.shape, bool) if valid is None else valid
    for k in range(n):
        if k in skip:
            continue
        s = slice(k * FS_IN, (k + 1) * FS_IN)
        yield Block(gps0 + k * NS, NS, IFOS, (FS_IN, FS_IN), (x[0, s], x[1, s]), (valid[0, s], valid[1, s]), k)


def test_from_config_and_costs_worked_out_once():
    c = Conditioner.from_config(Config())
    assert c.factor == 8 and c.window == 2048 and c.stride == 128
    assert c.phase == "minimum" and c.lookahead_s == pytest.approx(34 / 2048)  # resampler only: causal FIR
    linear = Conditioner.from_config(config_from_dict({"whiten": {"phase": "linear"}}))
    assert linear.lookahead_s == pytest.approx((34 + 1023) / 2048)  # + half the 1-s whitening FIR
    assert c.warmup_s > 64.0 and 0 < c.refill_s < c.warmup_s
    cfg = config_from_dict({"data": {"input_rate_hz": 0}})
    with pytest.raises(ValueError, match="input_rate_hz = 0"):
        Conditioner.from_config(cfg)
    assert Conditioner.from_config(cfg, input_rate_hz=4096).factor == 2


def test_warms_up_then_ok_within_warmup_s_with_grid_aligned_windows():
    c = _stage()
    results = [c.process(b) for b in _blocks(_data(30))]
    statuses = [r.status for r in results]
    first_ok = statuses.index(Status.OK)
    assert all(s is Status.WARMING_UP for s in statuses[:first_ok])
    assert all(s is Status.OK for s in statuses[first_ok:])
    assert first_ok + 1 <= c.warmup_s  # blocks are 1 s
    ok = [r for r in results if r.status is Status.OK]
    gps = np.concatenate([r.gps_ns for r in ok])
    assert np.all(np.diff(gps) == NS // 8) and np.all(gps % (NS // 8) == 0)
    r = ok[-1]
    assert r.windows.shape == (8, 2, FS) and r.windows.dtype == np.float32 and r.windows.flags.c_contiguous
    assert not r.invalid.any()
    # windows end no later than the data received minus the look-ahead
    assert r.gps_ns[-1] + NS <= r.block_gps_ns + NS - c.lookahead_s * NS + 1


def test_whitened_windows_have_unit_variance():
    # 31 median-averaged segments: the PSD's own noise inflates the variance by ~2 % (1/S_hat bias)
    c = _stage(psd_length_s=32.0)
    # windows are a view of the stage's buffer, valid until the next call: copy what is kept
    res = [(r.status, r.windows[:, :, ::8].copy()) for r in map(c.process, _blocks(_data(40, seed=1)))]
    w = np.concatenate([win for s, win in res if s is Status.OK])
    assert np.std(w) == pytest.approx(1.0, abs=0.05) and abs(np.mean(w)) < 0.05


def test_stage_equals_offline_kernels(tol_stage=1e-5):
    x = _data(30, seed=2)
    c = _stage(psd_refresh_s=1e6)  # one PSD, so the filter is fixed after warm-up
    res = [(r, r.windows.copy()) for r in map(c.process, _blocks(x))]
    freqs, psd = c.psd
    an = kres.decimate(x, 4)
    taps = kwh.design_fir(FS, freqs, psd)
    wh, _ = kwh.convolve_stream(np.concatenate([an, np.zeros((2, 600))], axis=1), taps, kwh.new_history(FS, 2))
    wh = wh[:, kwh.lookahead_samples(FS):]  # aligned with an
    ok = [(r, w) for r, w in res if r.status is Status.OK][1:]
    assert len(ok) > 10
    for r, windows in ok:
        for k in range(r.n_windows):
            i = (r.gps_ns[k] - GPS0) * FS // NS
            np.testing.assert_allclose(windows[k], wh[:, i:i + FS], rtol=0, atol=tol_stage)


def test_window_views_hold_the_copied_windows_values():
    """copy_windows=False (a factorized model's search) gives views with the values the copies hold."""
    x = _data(30, seed=3)
    copied = [(r.gps_ns, r.windows.copy(), r.invalid_ifo) for r in map(_stage().process, _blocks(x))]
    viewed = list(map(_stage(copy_windows=False).process, _blocks(x)))
    assert sum(r.n_windows for r in viewed) > 100
    for (gps, win, inv), r in zip(copied, viewed):
        assert r.windows.shape == win.shape and (r.n_windows == 0 or not r.windows.flags.writeable)
        np.testing.assert_array_equal(gps, r.gps_ns)
        np.testing.assert_array_equal(inv, r.invalid_ifo)
        np.testing.assert_array_equal(win, r.windows.astype(np.float32))


def test_gap_restarts_filters_and_short_gap_keeps_psd():
    c = _stage()
    res = [c.process(b) for b in _blocks(_data(40, seed=3), skip=(25, 26))]
    st = [r.status for r in res]
    i_gap = st.index(Status.GAP)
    assert res[i_gap].block_gps_ns == GPS0 + 27 * NS
    assert c.psd is not None  # 2-s gap < psd_length_s: PSD kept
    after = res[i_gap + 1:]
    first_ok = next(k for k, r in enumerate(after) if r.status is Status.OK)
    assert all(r.status is Status.WARMING_UP for r in after[:first_ok])
    assert first_ok + 1 <= c.refill_s + 1
    # no window starts inside the gap
    all_gps = np.concatenate([r.gps_ns for r in res[i_gap:]])
    assert all_gps.size == 0 or all_gps.min() >= GPS0 + 27 * NS


def test_long_gap_drops_psd_and_needs_full_warmup():
    c = _stage()
    x = _data(20, seed=4)
    for b in _blocks(x):
        c.process(b)
    assert c.psd is not None
    res = [c.process(b) for b in _blocks(x, gps0=GPS0 + 100 * NS)]
    assert res[0].status is Status.GAP and all(r.status is Status.WARMING_UP for r in res[1:7])


def test_gated_samples_flag_windows_and_stay_out_of_the_psd():
    x = _data(30, seed=5)
    valid = np.ones(x.shape, bool)
    g0 = 20 * FS_IN + 1000
    valid[1, g0:g0 + 100] = False
    x[1, g0:g0 + 100] = 0.0
    c = _stage()
    res = [c.process(b) for b in _blocks(x, valid)]
    inv_gps = np.concatenate([r.gps_ns[r.invalid] for r in res if r.status is Status.OK])
    t_gate = GPS0 + g0 * NS // FS_IN
    assert inv_gps.size > 0
    # flagged windows touch the gate (widened by the filters' spans)
    assert np.all(inv_gps <= t_gate + 100 * NS // FS_IN + NS) and np.all(inv_gps + NS >= t_gate - NS)
    per_ifo = np.concatenate([r.invalid_ifo[r.invalid] for r in res if r.status is Status.OK])
    assert per_ifo[:, 1].all() and not per_ifo[:, 0].any()


def test_psd_jump_is_rejected_and_reported():
    x = _data(40, seed=6)
    x[:, 20 * FS_IN:] *= 3.0
    c = _stage(psd_max_change=0.2)
    res = [c.process(b) for b in _blocks(x)]
    assert any(r.psd_update.rejected for r in res)


def test_snapshot_restore_continues_identically():
    x = _data(30, seed=7)
    blocks = list(_blocks(x))
    a = _stage()
    for b in blocks[:15]:
        a.process(b)
    snap = a.snapshot()
    b_ = _stage()
    b_.restore(snap)
    for b in blocks[15:]:
        ra = a.process(b)
        wa = ra.windows.copy()
        rb = b_.process(b)
        assert ra.status == rb.status
        np.testing.assert_array_equal(wa, rb.windows)
        np.testing.assert_array_equal(ra.gps_ns, rb.gps_ns)
    with pytest.raises(ValueError, match="snapshot geometry"):
        _stage(stride_s=0.25).restore(snap)


def test_bad_blocks_raise_with_the_value():
    c = _stage()
    blocks = list(_blocks(_data(3)))
    c.process(blocks[1])
    with pytest.raises(ValueError, match="before the end of the previous block"):
        c.process(blocks[0])
    bad = Block(GPS0, NS, IFOS, (2048, 2048), blocks[0].data, blocks[0].valid, 0)
    with pytest.raises(ValueError, match="at 2048 Hz, expected 4096 Hz"):
        c.process(bad)
    with pytest.raises(ValueError, match="ifos"):
        c.process(Block(GPS0, NS, ("L1", "H1"), (4096, 4096), blocks[0].data, blocks[0].valid, 0))
