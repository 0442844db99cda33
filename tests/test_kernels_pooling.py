"""Parity of the fused mean-pool + L2-normalise kernel with numpy; its boundary checks."""

from __future__ import annotations

import numpy as np
import pytest

from euds import _core


def reference(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float64)[:, :, None]
    summed = (hidden.astype(np.float64) * m).sum(axis=1)
    count = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = summed / count
        return mean / np.linalg.norm(mean, axis=1, keepdims=True)


@pytest.mark.parametrize(("b", "t", "d"), [(1, 1, 1), (3, 7, 5), (17, 33, 384), (64, 2, 31)])
@pytest.mark.parametrize("mask_dtype", [np.int64, np.uint8, bool])
def test_matches_numpy(b, t, d, mask_dtype):
    rng = np.random.default_rng(b * t + d)
    hidden = rng.standard_normal((b, t, d)).astype(np.float32) * 5
    lengths = rng.integers(1, t + 1, b)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(mask_dtype)
    got = _core.mean_pool_normalize(hidden, mask)
    np.testing.assert_allclose(got, reference(hidden, mask), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_rows_without_tokens_or_direction_are_nan():
    hidden = np.ones((3, 4, 8), np.float32)
    hidden[2] = 0.0
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], np.int64)
    got = _core.mean_pool_normalize(hidden, mask)
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all() and np.isnan(got[2]).all()
    assert _core.mean_pool_normalize(
        np.zeros((0, 4, 8), np.float32), np.zeros((0, 4), np.int64)
    ).shape == (0, 8)


def test_masked_positions_are_not_read_into_the_mean():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((2, 5, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.int64)
    base = _core.mean_pool_normalize(hidden, mask)
    hidden[0, 3:] = 1e30
    hidden[1, 1:] = np.nan
    np.testing.assert_array_equal(_core.mean_pool_normalize(hidden, mask), base)


def test_out_argument_is_filled_in_place():
    hidden = np.ones((2, 3, 4), np.float32)
    mask = np.ones((2, 3), np.int64)
    out = np.zeros((2, 4), np.float32)
    assert _core.mean_pool_normalize(hidden, mask, out) is not None
    np.testing.assert_allclose(out, 0.5)


@pytest.mark.parametrize(
    ("hidden", "mask", "message"),
    [
        (
            np.ones((2, 3, 4), np.float64),
            np.ones((2, 3), np.int64),
            "hidden must have dtype float32",
        ),
        (np.ones((2, 3), np.float32), np.ones((2, 3), np.int64), "hidden must be 3-D"),
        (np.ones((2, 3, 4), np.float32), np.ones((2, 4), np.int64), "mask must have shape"),
        (np.ones((2, 3, 4), np.float32), np.ones((2, 3), np.float32), "mask must have dtype"),
        (np.ones((2, 3, 4), np.float32)[:, ::-1], np.ones((2, 3), np.int64), "C-contiguous"),
        ([[[1.0]]], np.ones((1, 1), np.int64), "numpy.ndarray"),
    ],
)
def test_boundary_checks(hidden, mask, message):
    with pytest.raises(ValueError, match=message):
        _core.mean_pool_normalize(hidden, mask)
