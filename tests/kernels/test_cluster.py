"""Clustering kernel: the loudest window of its neighbourhood, whole or streamed."""

import numpy as np
import pytest
from gwstream.kernels import cluster as kcl
from hypothesis import given, settings
from hypothesis import strategies as st


def brute(stats, valid, h):
    n = len(stats)
    out = np.zeros(n, bool)
    for i in range(n):
        if not valid[i]:
            continue
        left = all(not valid[j] or stats[j] < stats[i] for j in range(max(0, i - h), i))
        right = all(not valid[j] or stats[j] <= stats[i] for j in range(i + 1, min(n, i + h + 1)))
        out[i] = left and right
    return out


series = st.integers(0, 2**31).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(0, 120), st.integers(0, 9), st.floats(0.0, 0.5)))


@settings(max_examples=200, deadline=None)
@given(series)
def test_local_maxima_matches_brute_force(args):
    seed, n, h, p_bad = args
    rng = np.random.default_rng(seed)
    stats = np.round(rng.normal(size=n), 1)  # rounding makes ties frequent
    valid = rng.random(n) >= p_bad
    assert np.array_equal(kcl.local_maxima(stats, valid, h), brute(stats, valid, h))


@settings(max_examples=100, deadline=None)
@given(series, st.lists(st.integers(0, 40), min_size=1, max_size=12))
def test_stream_equals_whole(args, cuts):
    seed, n, h, p_bad = args
    rng = np.random.default_rng(seed)
    stats = np.round(rng.normal(size=(3, n)), 1)
    valid = rng.random((3, n)) >= p_bad
    whole = kcl.local_maxima(stats, valid, h)
    state = kcl.new_stream_state(3, h)
    got = np.zeros_like(whole)
    pos = 0
    edges = np.cumsum(cuts)
    bounds = [0, *[int(e) for e in edges if e < n], n]
    for a, b in zip(bounds[:-1], bounds[1:]):
        mask, off, state = kcl.local_maxima_stream(stats[:, a:b], valid[:, a:b], h, state)
        for c in range(mask.shape[1]):
            i = a + off + c
            if i >= 0:
                got[:, i] = mask[:, c]
            else:
                assert not mask[:, c].any()
        pos = b
    mask, off, state = kcl.local_maxima_stream(stats[:, pos:pos], valid[:, pos:pos], h, state, final=True)
    for c in range(mask.shape[1]):
        if pos + off + c >= 0:
            got[:, pos + off + c] = mask[:, c]
    assert np.array_equal(got, whole)


def test_one_trigger_per_isolated_peak():
    stats = np.zeros(100)
    stats[[10, 50, 53]] = [5.0, 4.0, 6.0]
    mask = kcl.local_maxima(stats, np.ones(100, bool), 8)
    assert 10 in np.nonzero(mask)[0] and 53 in np.nonzero(mask)[0] and 50 not in np.nonzero(mask)[0]


def test_ties_go_to_the_earliest_window():
    stats = np.array([1.0, 3.0, 3.0, 3.0, 1.0])
    assert np.nonzero(kcl.local_maxima(stats, np.ones(5, bool), 2))[0].tolist() == [1]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="valid has shape"):
        kcl.local_maxima(np.zeros(4), np.ones(5, bool), 1)
    with pytest.raises(ValueError, match="half_width"):
        kcl.local_maxima(np.zeros(4), np.ones(4, bool), -1)
    with pytest.raises(ValueError, match="NaN"):
        kcl.local_maxima(np.array([0.0, np.nan]), np.ones(2, bool), 1)
    with pytest.raises(ValueError, match="state has shape"):
        kcl.local_maxima_stream(np.zeros((2, 4)), np.ones((2, 4), bool), 2, kcl.new_stream_state(3, 2))
