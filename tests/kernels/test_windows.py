"""Sliding windows into a contiguous float32 batch."""

from __future__ import annotations

import numpy as np
import pytest
from gwstream.kernels import windows as kwin


@pytest.mark.parametrize("shape", [(5000,), (2, 5000)])
def test_slide_values_shape_and_layout(shape):
    rng = np.random.default_rng(30)
    x = rng.standard_normal(shape)
    b = kwin.slide(x, 2048, 128)
    nw = (5000 - 2048) // 128 + 1
    c = 1 if len(shape) == 1 else 2
    assert b.shape == (nw, c, 2048) and b.dtype == np.float32 and b.flags.c_contiguous
    x2 = np.atleast_2d(x)
    for k in (0, 7, nw - 1):
        np.testing.assert_array_equal(b[k], x2[:, k * 128:k * 128 + 2048].astype(np.float32))


def test_slide_into_preallocated_buffer_and_short_input():
    x = np.arange(2 * 300, dtype=np.float64).reshape(2, 300)
    out = np.full((10, 2, 100), np.nan, dtype=np.float32)
    b = kwin.slide(x, 100, 50, out=out)
    assert b.shape == (5, 2, 100) and np.shares_memory(b, out) and np.isnan(out[5:]).all()
    assert kwin.slide(x, 400, 50).shape == (0, 2, 400)
    with pytest.raises(ValueError, match="out has shape"):
        kwin.slide(x, 100, 50, out=np.empty((2, 2, 100), np.float32))
    with pytest.raises(ValueError, match="float32"):
        kwin.slide(x, 100, 50, out=np.empty((10, 2, 100)))
    with pytest.raises(ValueError, match="stride = 0"):
        kwin.slide(x, 100, 0)


def test_invalid_windows_flags_any_touching_window():
    valid = np.ones((2, 1000), bool)
    valid[1, 420] = False
    flags = kwin.invalid_windows(valid, 200, 100)
    starts = np.arange(flags.size) * 100
    np.testing.assert_array_equal(flags, (starts <= 420) & (starts + 200 > 420))
