"""Autogating in the conditioner: loud excursions are zeroed, their windows not analysed, and recorded."""

from __future__ import annotations

import numpy as np
from gwstream.daemon.io.wire import Block
from gwstream.daemon.stream.conditioning import Conditioner
from gwstream.daemon.units import NS

FS = 1024
GPS0 = 1_234_567_890 * NS
IFOS = ("H1", "L1")
SECONDS = 48
GLITCH_S = 30.3


def _stage(threshold=25.0, phase="minimum"):
    return Conditioner(IFOS, FS, FS, fftlength_s=2.0, psd_length_s=8.0, psd_refresh_s=4.0, window_s=1.0,
                       stride_s=0.125, phase=phase, psd_min_change=0.0, highpass_hz=15.0,
                       gate_threshold=threshold, gate_half_width_s=0.25, gate_taper_s=0.25)


def _data(glitch=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, FS * SECONDS)) * 1e-21
    if glitch:  # a loud sine-Gaussian blip (Q ~ 6 at 120 Hz) in H1 only
        t = np.arange(x.shape[1]) / FS - GLITCH_S
        tau = 6 / (np.sqrt(2) * np.pi * 120)
        x[0] += 3e-19 * np.exp(-(t / tau) ** 2) * np.sin(2 * np.pi * 120 * t)
    return x


def _run(stage, x, block_s=1):
    n = FS * block_s
    out = []
    for k in range(x.shape[1] // n):
        s = slice(k * n, (k + 1) * n)
        ok = np.ones(n, bool)
        out.append(stage.process(Block(GPS0 + k * block_s * NS, block_s * NS, IFOS, (FS, FS), (x[0, s], x[1, s]),
                                       (ok, ok), k)))
    return out


def _stream(conds):
    got = [c for c in conds if c.stream_start is not None and c.stream.shape[1]]
    start = got[0].stream_start
    x = np.concatenate([c.stream for c in got], axis=1)
    bad = np.concatenate([c.stream_bad for c in got], axis=1)
    return start, x, bad


def test_a_loud_blip_is_gated_in_its_detector_only_and_recorded():
    stage = _stage()
    conds = _run(stage, _data())
    gates = [g for c in conds for g in c.gates]
    assert len(gates) == 1
    ifo, t_ns, peak = gates[0]
    assert ifo == 0 and abs(t_ns / NS - (GPS0 / NS + GLITCH_S)) < 0.01 and peak > 25
    start, x, bad = _stream(conds)
    centre = round((t_ns - GPS0) * FS / NS) + round(GPS0 * FS / NS) - start
    zero = slice(centre - FS // 4, centre + FS // 4 + 1)
    assert np.all(x[0, zero] == 0) and np.abs(x[1, zero]).max() > 0
    assert np.abs(x[0]).max() < 25  # nothing above the threshold goes out
    # marked invalid from the taper's start to a filter length (1 s) after the taper's end, H1 only
    assert bad[0, centre - FS // 2: centre + FS // 2 + FS].all()
    assert not bad[0, centre + 2 * FS:].any() and not bad[0, centre - FS:centre - FS // 2 - 1].any()
    assert not bad[1, FS * 10:].any()
    # the windows touching it are not analysed in H1; L1's are
    gps = np.concatenate([c.gps_ns for c in conds])
    inv = np.concatenate([c.invalid_ifo for c in conds])
    near = np.abs(gps / NS + 0.5 - t_ns / NS) < 1.0
    assert inv[near, 0].all() and not inv[near, 1].any()
    far = np.abs(gps / NS + 0.5 - t_ns / NS) > 3.0
    assert not inv[far & (gps > GPS0 + 12 * NS), 0].any()


def test_gaussian_noise_is_never_gated_and_gating_only_delays_it():
    on = _stream(_run(_stage(), _data(glitch=False)))
    off = _stream(_run(_stage(threshold=0.0), _data(glitch=False)))
    assert on[0] == off[0]
    n = on[1].shape[1]
    assert off[1].shape[1] - n == FS // 2  # held back: half-width plus taper
    assert np.array_equal(on[1], off[1][:, :n]) and np.array_equal(on[2], off[2][:, :n])


def test_snapshot_restores_an_open_gate():
    x = _data()
    whole = _stream(_run(_stage(), x))
    stage = _stage()
    first = _run(stage, x[:, :FS * 31])  # the gate opened at 30.3 s and still reaches ahead
    state = stage.snapshot()
    other = _stage()
    other.restore(state)
    assert other.state_digest() == stage.state_digest()
    rest = []
    for k in range(31, SECONDS):
        s = slice(k * FS, (k + 1) * FS)
        ok = np.ones(FS, bool)
        rest.append(other.process(Block(GPS0 + k * NS, NS, IFOS, (FS, FS), (x[0, s], x[1, s]), (ok, ok), k)))
    joined = _stream(first + rest)
    assert np.array_equal(joined[1], whole[1]) and np.array_equal(joined[2], whole[2])
