"""The search on data with a glitch: FARs from its own slides, gates in the live time (the shipped model)."""

from __future__ import annotations

import numpy as np
import pytest
from gwstream.daemon.config import SimulateConfig, config_from_dict
from gwstream.daemon.io.wire import Block
from gwstream.daemon.proc.preflight import load_scorer
from gwstream.daemon.sim.simulate import Simulator
from gwstream.daemon.stream.pipeline import SearchStage
from gwstream.daemon.units import NS

FS = 2048
SECONDS = 200
GPS0 = 1_000_000_000
BLIP_S = 150.3


@pytest.fixture(scope="module")
def noise():
    return Simulator(SimulateConfig(), seed=7, duration_s=SECONDS, injections=False).chunk(0, SECONDS)


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(config_from_dict({"model": {"threads": 2}}), None)


_RUNS: dict = {}


def search(noise, scorer, *, ifo=None, amplitude=0.0, gate=0.0):
    """Search the noise with a sine-Gaussian blip (Q 8 at 150 Hz) in one detector; 20 slides, no initial
    background (each run once per module)."""
    key = (ifo, amplitude, gate)
    if key not in _RUNS:
        _RUNS[key] = _search(noise, scorer, ifo, amplitude, gate)
    return _RUNS[key]


def _search(noise, scorer, ifo, amplitude, gate):
    x = {k: v.copy() for k, v in noise.items()}
    if ifo:
        t = np.arange(SECONDS * FS) / FS - BLIP_S
        tau = 8 / (np.sqrt(2) * np.pi * 150)
        x[ifo] += amplitude * np.exp(-(t / tau) ** 2) * np.sin(2 * np.pi * 150 * t)
    cfg = config_from_dict({"ranking": {"background_init": "none"}, "whiten": {"gate_threshold": gate}})
    stage = SearchStage(cfg, scorer, n_slides=20)
    triggers = []
    ok = np.ones(FS, bool)
    for k in range(SECONDS):
        s = slice(k * FS, (k + 1) * FS)
        triggers += stage.process(Block((GPS0 + k) * NS, NS, ("H1", "L1"), (FS, FS), (x["H1"][s], x["L1"][s]),
                                        (ok, ok), k))
    return stage, triggers + stage.finish()


@pytest.mark.parametrize("amplitude", [5e-21])
def test_a_blip_in_h1_is_never_louder_than_its_own_slides(noise, scorer, amplitude):
    stage, triggers = search(noise, scorer, ifo="H1", amplitude=amplitude)
    on_blip = [t for t in triggers if abs(t.gps_ns / NS - GPS0 - BLIP_S) < 1.0]
    assert all(not t.saturated and t.far > 1 / stage.background.livetime_s for t in on_blip)
    if amplitude < 1e-20:  # a moderate blip makes a trigger (the loudest ones the network rejects outright)
        assert on_blip and max(t.stat for t in on_blip) == max(t.stat for t in triggers)


def test_a_blip_in_l1_ends_up_in_the_background(noise, scorer):
    # L1's window meets H1's later windows in the slides: once they are in, the blip is not louder than them
    stage, triggers = search(noise, scorer, ifo="L1", amplitude=5e-21)
    on_blip = [t for t in triggers if abs(t.gps_ns / NS - GPS0 - BLIP_S) < 1.0]
    assert on_blip
    _, saturated = stage.background.far(max(t.stat for t in on_blip))
    assert not saturated


def test_a_gate_is_recorded_and_its_windows_are_not_live(noise, scorer):
    plain, _ = search(noise, scorer, ifo="L1", amplitude=2e-19)
    gated, triggers = search(noise, scorer, ifo="L1", amplitude=2e-19, gate=25.0)
    assert len(gated.gates) == 1
    ifo, t, peak = gated.gates[0]
    assert ifo == "L1" and abs(t - GPS0 - BLIP_S) < 0.01 and peak > 25
    assert gated.counters["gates"] == 1 and not plain.gates
    # not analysed: 1-s windows touching the gate (+-0.5 s with its taper) or the filter's 1-s reach after it,
    # and the last 0.5 s of data, held back for a gate that never comes
    stride = gated.cfg.windows.stride_s
    lost = plain.ranking.foreground_live_windows - gated.ranking.foreground_live_windows
    assert lost == round((0.5 + 0.5 + 1.0 + gated.cfg.windows.window_s) / stride) + round(0.5 / stride)
    assert not any(abs(tr.gps_ns / NS - GPS0 - BLIP_S) < 1.0 for tr in triggers)


def test_gate_threshold_is_part_of_a_backgrounds_identity(tmp_path):
    """A gated search does not count an ungated background as its own (nor the reverse); a background written
    before the threshold was recorded reads as ungated; hierarchical removal still takes an ungated reference."""
    import json

    import h5py
    from gwstream.daemon.stream.background import Background, BackgroundMismatch
    from gwstream.daemon.stream.identity import search_meta
    from gwstream.daemon.stream.pipeline import removal_stat

    def cfg(gate, **ranking):
        return config_from_dict({"whiten": {"gate_threshold": gate}, "ranking": ranking})

    ungated = Background(NS // 16, search_meta(cfg(0.0), "abc"))
    ungated.add(np.linspace(0.0, 8.0, 50), live_windows=10 ** 7, n_slides=1)
    with pytest.raises(BackgroundMismatch, match="whiten.gate_threshold = 10.0") as err:
        Background(NS // 16, search_meta(cfg(10.0), "abc")).check_compatible(ungated)
    assert err.value.setting == "whiten.gate_threshold"
    Background(NS // 16, search_meta(cfg(0.0), "abc")).check_compatible(ungated)

    old = tmp_path / "old.h5"  # as written before: no gate_threshold in its whiten table
    ungated.save(old)
    with h5py.File(old, "r+") as fh:
        meta = json.loads(fh["background"].attrs["meta_json"])
        del meta["whiten"]["gate_threshold"]
        fh["background"].attrs["meta_json"] = json.dumps(meta)
    assert Background.load(old).meta["whiten"]["gate_threshold"] == 0.0
    with pytest.raises(BackgroundMismatch, match="gate_threshold"):
        Background(NS // 16, search_meta(cfg(10.0), "abc")).check_compatible(Background.load(old))

    gated = cfg(10.0, removal_background=str(old))
    meta = search_meta(gated, "abc")
    assert removal_stat(gated, NS // 16, meta, n_slides=10) == pytest.approx(Background.load(old).stat_at_far(
        1.0 / (gated.ranking.removal_ifar_days * 86400.0)))
