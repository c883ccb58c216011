"""Hierarchical removal: loud zero-lag triggers are kept out of the time-slid background."""

import numpy as np
import pytest
from gwstream.daemon.stream.background import Background
from gwstream.daemon.stream.ranking import RankingStage

STRIDE = 62_500_000  # 1/16 s
SLIDE = 16  # windows per slide step (1 s)
K = 12


def make_stage(removal_stat=None, **kw):
    args = dict(stride_ns=STRIDE, cluster_window_s=0.75, merger_offset_ns=700_000_000, var_s=0.25, time_plateau=0.0,
                n_slides=K, meta={"model": "test"}, slide_windows=SLIDE, removal_stat=removal_stat,
                removal_windows=32)
    args.update(kw)
    return RankingStage(**args)


def network(a, b, cap=12.0):
    """A coincidence statistic: loud only when both detectors are, a little for one alone; saturates at ``cap``
    (as a network's output does)."""
    return np.minimum(np.minimum(a, b) + 0.2 * np.maximum(a, b), cap)


def slid_scores(h1, l1, ok1, ok2):
    """Rows: zero lag and K slides (H1 at i, L1 at i - k*SLIDE); column i needs L1 from K*SLIDE windows before,
    so the series start that much before the first column."""
    n = h1.size - K * SLIDE
    i = np.arange(K * SLIDE, h1.size)
    stats = np.stack([network(h1[i], l1[i - k * SLIDE]) for k in range(K + 1)])
    valid = np.stack([ok1[i] & ok2[i - k * SLIDE] for k in range(K + 1)])
    return stats, valid, n


def signals(seed, n, loud_at, loud=40.0, glitches=()):
    rng = np.random.default_rng(seed)
    h1 = np.round(rng.normal(size=n), 3)
    l1 = np.round(rng.normal(size=n), 3)
    shape = list(zip(range(-3, 4), (0.3, 0.6, 0.9, 1.0, 0.9, 0.6, 0.3)))
    for t in loud_at:  # a loud signal in both detectors, a few windows wide
        for d, a in shape:
            h1[t + d] += loud * a / 2
            l1[t + d] += loud * a / 2
    for ifo, t in glitches:  # a very loud glitch in one detector
        for d, a in shape:
            (h1 if ifo == "H1" else l1)[t + d] += 80 * a
    ok1 = rng.random(n) > 0.02
    ok2 = rng.random(n) > 0.02
    return h1, l1, ok1, ok2


def feed(stage, stats, valid, step=16):
    out = []
    for a in range(0, stats.shape[1], step):
        out += stage.add(a, stats[:, a:a + step], valid[:, a:a + step])
    return out + stage.flush()


def touches(peaks, n, half=32):
    """(K, n): slid pairs with H1's window or L1's slid window within ``half`` of a loud peak (grid = column)."""
    k = np.arange(1, K + 1)[:, None]
    i = np.arange(n)[None, :]
    out = np.zeros((K, n), dtype=bool)
    for p in peaks:
        out |= (np.abs(i - p) <= half) | (np.abs(i - k * SLIDE - p) <= half)
    return out


def test_loud_signals_poison_the_background_without_removal_and_not_with_it():
    h1, l1, ok1, ok2 = signals(1, 3000, loud_at=[K * SLIDE + 400, K * SLIDE + 560, K * SLIDE + 1500])
    stats, valid, n = slid_scores(h1, l1, ok1, ok2)
    plain = make_stage()
    got_plain = feed(plain, stats, valid)
    assert plain.background.loudest[0] >= 12  # slides pair one signal's H1 with another's L1
    removed = make_stage(removal_stat=11.5)
    got = feed(removed, stats, valid)
    # the zero-lag triggers are the same; only the background differs
    assert [(t.gps_ns, t.stat) for t in got] == [(t.gps_ns, t.stat) for t in got_plain]
    assert removed.background.loudest[0] < 8
    peaks = [t.window_gps_ns // STRIDE for t in got if t.stat >= 11.5]  # the zones' centres: the peak windows
    gone = touches(peaks, n)
    assert removed.background.live_windows == int((valid[1:] & ~gone).sum())
    assert removed.removed_windows == int((valid[1:] & gone).sum())
    assert removed.removed_zones == 3
    loud = [t for t in got if t.stat > 11.5]
    assert len(loud) == 3
    # each loud trigger is louder than everything left in the background: FAR at the floor, 1 / T
    assert all(t.saturated for t in loud)
    assert sum(t.saturated for t in got_plain if t.stat > 11.5) < 3


@pytest.mark.parametrize("ifo", ["H1", "L1"])
def test_a_glitch_in_one_detector_is_never_removed(ifo):
    h1, l1, ok1, ok2 = signals(5, 2000, loud_at=[], glitches=[(ifo, K * SLIDE + 700)])
    stats, valid, _ = slid_scores(h1, l1, ok1, ok2)
    stage = make_stage(removal_stat=11.5)
    got = feed(stage, stats, valid)
    loud = [t for t in got if t.stat >= 11.5]
    assert len(loud) == 1 and stage.removed_zones == 0 and stage.kept_candidates == 1
    # its slides are in the background: not louder than all of it
    assert stage.background.loudest[0] >= loud[0].stat
    final_far, saturated = stage.background.far(loud[0].stat)
    assert not saturated
    if ifo == "H1":  # H1's window met L1's past at once: the trigger's own FAR already counts them
        assert not loud[0].saturated


def test_removal_changes_nothing_without_a_loud_trigger():
    h1, l1, ok1, ok2 = signals(2, 2500, loud_at=[])
    stats, valid, _ = slid_scores(h1, l1, ok1, ok2)
    a, b = make_stage(), make_stage(removal_stat=50.0)
    got_a, got_b = feed(a, stats, valid), feed(b, stats, valid)
    # the same triggers with the same FARs: what waits for zones counts in a FAR as if it had been counted
    assert [(t.gps_ns, t.stat, t.far, t.saturated) for t in got_a] == [(t.gps_ns, t.stat, t.far, t.saturated)
                                                                       for t in got_b]
    assert np.array_equal(a.background.loudest, b.background.loudest)
    assert np.array_equal(a.background.counts, b.background.counts)
    assert a.background.live_windows == b.background.live_windows
    assert b.removed_zones == 0 and b.removed_windows == 0


@pytest.mark.parametrize("step", [1, 7, 16, 300])
def test_block_size_does_not_change_what_is_removed(step):
    h1, l1, ok1, ok2 = signals(3, 2200, loud_at=[K * SLIDE + 300, K * SLIDE + 1100])
    stats, valid, _ = slid_scores(h1, l1, ok1, ok2)
    ref = make_stage(removal_stat=11.5)
    feed(ref, stats, valid, step=16)
    other = make_stage(removal_stat=11.5)
    feed(other, stats, valid, step=step)
    assert np.array_equal(ref.background.loudest, other.background.loudest)
    assert ref.background.live_windows == other.background.live_windows
    assert ref.removed_windows == other.removed_windows


def test_state_file_keeps_zones_and_what_waits_for_them(tmp_path):
    h1, l1, ok1, ok2 = signals(4, 2400, loud_at=[K * SLIDE + 500, K * SLIDE + 900])
    stats, valid, _ = slid_scores(h1, l1, ok1, ok2)
    whole = make_stage(removal_stat=11.5)
    want = feed(whole, stats, valid)
    first = make_stage(removal_stat=11.5)
    got = []
    cut = 16 * 40  # after the first loud peak's check: its zone is open and slid clusters are still waiting
    for a in range(0, cut, 16):
        got += first.add(a, stats[:, a:a + 16], valid[:, a:a + 16])
    assert first.zones and first._pending_live
    path = first.save(tmp_path / "state.h5")
    second = make_stage(removal_stat=11.5)
    second.load(path)
    for a in range(cut, stats.shape[1], 16):
        got += second.add(a, stats[:, a:a + 16], valid[:, a:a + 16])
    got += second.flush()
    assert [(t.gps_ns, t.far) for t in got] == [(t.gps_ns, t.far) for t in want]
    assert np.array_equal(second.background.loudest, whole.background.loudest)
    assert second.background.live_windows == whole.background.live_windows


def test_stat_at_far_is_just_louder_than_the_allowed_count():
    bg = Background(STRIDE)
    bg.add(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), live_windows=16 * 86400 * 10)  # 10 days
    day = 1 / 86400
    assert bg.stat_at_far(day / 30) == np.nextafter(5.0, np.inf)  # 10 days cannot reach 1/30 days: above all
    s = bg.stat_at_far(0.3 * day)  # 3 allowed counts -> 2 louder allowed
    assert s == np.nextafter(3.0, np.inf)
    far, _ = bg.far(s)
    assert far <= 0.3 * day * (1 + 1e-9) and bg.far(3.0)[0] > 0.3 * day
    assert Background(STRIDE).stat_at_far(day) == np.inf
