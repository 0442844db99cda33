"""Parity of the selection kernels with numpy / brute-force references.

Covers ``nan_quantiles`` (against ``np.nanquantile``), ``interval_mask``, ``percentile_ranks``,
``mean_rank``, ``band_select`` (against a brute-force sort by (width, tie key, index)) and
``tie_key``, each through ``euds._core`` and the ``euds.kernels`` wrappers.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from euds import _core, kernels

sys.path.insert(0, str(Path(__file__).parent))
import reference as ref

SCORE_DTYPES = [np.float32, np.float64]
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def scores(rng: np.random.Generator, n: int, dtype=np.float64, nan=0.1, ties=False):
    """A score column: normal values (rounded to force ties if asked) with some NaN."""
    x = rng.standard_normal(n) * 2 + 3
    if ties:
        x = np.round(x, 1)
    x[rng.random(n) < nan] = np.nan
    return x.astype(dtype)


def quantile_grid(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([[0.0, 1.0, 0.5, 0.25, 0.75, 0.1, 0.9, 1e-12, 1 - 1e-12], rng.random(40)])


# ---------------------------------------------------------------------------------------------
# nan_quantiles


@pytest.mark.parametrize("dtype", SCORE_DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_nan_quantiles_parity(n, dtype):
    rng = np.random.default_rng(n)
    x = scores(rng, n, dtype, nan=0.2 if n > 3 else 0.0)
    q = quantile_grid(rng)
    got = _core.nan_quantiles(x, q)
    expected = np.nanquantile(x.astype(np.float64), q)
    assert got.dtype == np.float64 and got.shape == q.shape
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(got[[0, 1]], [np.nanmin(x), np.nanmax(x)])
    np.testing.assert_array_equal(kernels.nan_quantiles(x, q), got)


def test_nan_quantiles_with_ties():
    x = np.array([1.0, 1.0, 1.0, 2.0, 2.0, np.nan, 5.0])
    q = np.linspace(0, 1, 61)
    np.testing.assert_allclose(_core.nan_quantiles(x, q), np.nanquantile(x, q), rtol=1e-15)


def test_nan_quantiles_wrapper_accepts_scalars_and_lists():
    x = np.arange(11, dtype=np.float64)
    np.testing.assert_array_equal(kernels.nan_quantiles(x, 0.3), [3.0])
    np.testing.assert_array_equal(kernels.nan_quantiles(x, [0.1, 0.9]), [1.0, 9.0])


@pytest.mark.parametrize("dtype", SCORE_DTYPES)
def test_nan_quantiles_one_value_all_nan_empty(dtype):
    q = np.array([0.0, 0.3, 1.0])
    np.testing.assert_array_equal(
        _core.nan_quantiles(np.array([np.nan, 2.5, np.nan], dtype), q), [2.5] * 3
    )
    assert np.isnan(_core.nan_quantiles(np.full(4, np.nan, dtype), q)).all()
    assert np.isnan(_core.nan_quantiles(np.zeros(0, dtype), q)).all()
    assert _core.nan_quantiles(np.ones(3, dtype), np.zeros(0)).shape == (0,)


def test_nan_quantiles_infinite_values_match_numpy_where_numpy_is_defined():
    rng = np.random.default_rng(3)
    q = quantile_grid(rng)
    for _ in range(100):
        n = int(rng.integers(1, 12))
        x = rng.standard_normal(n)
        x[rng.random(n) < 0.25] = np.inf
        x[rng.random(n) < 0.25] = -np.inf
        x[rng.random(n) < 0.15] = np.nan
        got = _core.nan_quantiles(x, q)
        with np.errstate(invalid="ignore"):
            expected = np.nanquantile(x, q) if not np.isnan(x).all() else np.full(len(q), np.nan)
        defined = ~np.isnan(expected)
        np.testing.assert_array_equal(got[defined], expected[defined], err_msg=str(x))


def test_nan_quantiles_equal_infinite_neighbours():
    """No inf - inf between two equal infinite order statistics (numpy gives NaN here)."""
    x = np.array([np.inf, 1.0, np.inf, -np.inf, -np.inf])
    got = _core.nan_quantiles(x, np.array([0.0, 0.1, 0.2, 0.75, 0.9, 1.0]))
    np.testing.assert_array_equal(got, [-np.inf, -np.inf, -np.inf, np.inf, np.inf, np.inf])


def test_nan_quantiles_interpolation_toward_infinity():
    x = np.array([-np.inf, 1.0, 2.0, np.inf])
    q = np.array([0.0, 0.1, 1 / 3, 0.5, 0.9, 1.0])
    expected = [ref.exact_quantile(x, v) for v in q]
    assert expected[:2] == [-np.inf, -np.inf] and expected[-2:] == [np.inf, np.inf]
    np.testing.assert_array_equal(_core.nan_quantiles(x, q), expected)


@pytest.mark.parametrize("bad", [-0.1, 1.1, -1e-300, 1 + 1e-15, float("nan"), float("inf")])
def test_nan_quantiles_rejects_q_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"q\[1\] = .* is outside \[0, 1\]"):
        _core.nan_quantiles(np.arange(5.0), np.array([0.5, bad]))


@pytest.mark.parametrize(
    ("x", "q", "message"),
    [
        (np.arange(5), np.array([0.5]), "x must have dtype float32 or float64"),
        (np.arange(5.0).astype(np.float16), np.array([0.5]), "x must have dtype"),
        (np.arange(5.0)[None], np.array([0.5]), "x must be 1-D"),
        (np.arange(10.0)[::2], np.array([0.5]), "x must be C-contiguous"),
        ([1.0, 2.0], np.array([0.5]), "x must be a numpy.ndarray"),
        (np.arange(5.0), np.array([0.5], np.float32), "q must have dtype float64"),
        (np.arange(5.0), np.array([[0.5]]), "q must be 1-D"),
        (np.arange(5.0), [0.5], "q must be a numpy.ndarray"),
        (np.arange(5.0), 0.5, "q must be a numpy.ndarray"),
    ],
)
def test_nan_quantiles_rejects_bad_arguments(x, q, message):
    with pytest.raises(ValueError, match=message):
        _core.nan_quantiles(x, q)


# ---------------------------------------------------------------------------------------------
# interval_mask


@pytest.mark.parametrize("dtype", SCORE_DTYPES)
def test_interval_mask_parity(dtype):
    rng = np.random.default_rng(4)
    x = scores(rng, 1001, dtype, ties=True)
    x[:4] = [np.inf, -np.inf, np.nan, 0.0]
    x64 = x.astype(np.float64)
    lo, hi = np.nanquantile(x64, [0.2, 0.8])
    for a, b in [(lo, hi), (x64[5], x64[5]), (-np.inf, np.inf), (hi, lo), (2.0, 2.0)]:
        got = _core.interval_mask(x, a, b)
        assert got.dtype == np.bool_ and got.shape == x.shape
        np.testing.assert_array_equal(got, (x64 >= a) & (x64 <= b))
    assert _core.interval_mask(x, x64[5], x64[5])[5]  # both bounds inclusive
    np.testing.assert_array_equal(kernels.interval_mask(x, lo, hi), _core.interval_mask(x, lo, hi))


def test_interval_mask_nan_is_outside():
    x = np.array([np.nan, 1.0, np.inf, -np.inf])
    np.testing.assert_array_equal(_core.interval_mask(x, -np.inf, np.inf), [0, 1, 1, 1])
    assert not _core.interval_mask(x, np.nan, 5.0).any()
    assert not _core.interval_mask(x, 0.0, np.nan).any()


def test_interval_mask_compares_float32_exactly():
    x = np.array([0.1, 0.2], np.float32)  # float32(0.1) > 0.1, float32(0.2) > 0.2
    np.testing.assert_array_equal(_core.interval_mask(x, 0.1, 0.2), [1, 0])
    np.testing.assert_array_equal(_core.interval_mask(x, float(x[0]), float(x[1])), [1, 1])


def test_interval_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x must have dtype"):
        _core.interval_mask(np.arange(3), 0.0, 1.0)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        _core.interval_mask(np.arange(6.0)[::2], 0.0, 1.0)
    with pytest.raises(ValueError, match=r"x must be a numpy\.ndarray"):
        _core.interval_mask([1.0], 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# percentile_ranks and mean_rank


@pytest.mark.parametrize("dtype", SCORE_DTYPES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 100, 2001])
def test_percentile_ranks_parity(n, ties, dtype):
    rng = np.random.default_rng(n + 10 * ties)
    x = scores(rng, n, dtype, ties=ties)
    got = _core.percentile_ranks(x)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_array_equal(got, ref.percentile_ranks(x))
    valid = ~np.isnan(x)
    np.testing.assert_array_equal(np.isnan(got), ~valid)
    assert ((got[valid] > 0) & (got[valid] < 1)).all()
    if valid.any():
        np.testing.assert_allclose(np.mean(got[valid]), 0.5, rtol=1e-12)  # ranks sum to n^2/2
    np.testing.assert_array_equal(kernels.percentile_ranks(x), got)


def test_percentile_ranks_ties_are_averaged():
    x = np.array([3.0, 1.0, 1.0, np.nan, 2.0, np.inf, -np.inf, 0.0, -0.0])
    # 8 valid, average 0-based ranks: -inf 0 | 0, -0: 1.5 | 1, 1: 3.5 | 2: 5 | 3: 6 | inf: 7
    expected = np.array([6.5, 4.0, 4.0, np.nan, 5.5, 7.5, 0.5, 2.0, 2.0]) / 8
    np.testing.assert_array_equal(_core.percentile_ranks(x), expected)
    np.testing.assert_array_equal(_core.percentile_ranks(np.full(4, 7.0)), [0.5] * 4)
    assert np.isnan(_core.percentile_ranks(np.full(3, np.nan))).all()
    np.testing.assert_array_equal(_core.percentile_ranks(np.array([1.0])), [0.5])


@pytest.mark.parametrize("dtype", SCORE_DTYPES)
def test_percentile_ranks_are_symmetric(dtype):
    x = scores(np.random.default_rng(5), 501, dtype, ties=True)
    up, down = _core.percentile_ranks(x), _core.percentile_ranks(-x)
    np.testing.assert_allclose(up + down, np.where(np.isnan(x), np.nan, 1.0), rtol=1e-15)


@PROPERTY
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, 2.5, np.nan, np.inf, -np.inf]),
            st.floats(-1e6, 1e6, width=32),
        ),
        max_size=40,
    ),
    st.sampled_from(SCORE_DTYPES),
)
def test_percentile_ranks_property(values, dtype):
    x = np.array(values, dtype=dtype)
    np.testing.assert_array_equal(_core.percentile_ranks(x), ref.percentile_ranks(x))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_mean_rank_parity(k):
    rng = np.random.default_rng(k)
    n = 777
    ranks = np.stack([ref.percentile_ranks(scores(rng, n, ties=True, nan=0.05)) for _ in range(k)])
    got = _core.mean_rank(ranks)
    np.testing.assert_array_equal(got, ref.mean_rank(ranks))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ranks).any(axis=0))
    if k == 1:
        np.testing.assert_array_equal(got, _core.percentile_ranks(ranks[0]))
    np.testing.assert_array_equal(kernels.mean_rank(ranks), got)


def test_mean_rank_edges():
    assert _core.mean_rank(np.zeros((2, 0))).shape == (0,)
    ranks = np.array([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1]])  # all means 0.5: one tie
    np.testing.assert_array_equal(_core.mean_rank(ranks), [0.5, 0.5, 0.5])


# ---------------------------------------------------------------------------------------------
# band_select


def test_tie_key_is_splitmix64():
    for i in (0, 1, 2, 12345, 2**32, 2**63, 2**64 - 1):
        for seed in (0, 1, 42, 2**64 - 1):
            assert _core.tie_key(i, seed) == ref.tie_key(i, seed)
    assert _core.tie_key(5) == ref.tie_key(5, 0)


def rank_matrix(rng: np.random.Generator, k: int, n: int, ties: bool, nan: float = 0.05):
    return np.stack([ref.percentile_ranks(scores(rng, n, ties=ties, nan=nan)) for _ in range(k)])


def check_band_select(ranks, position, keep, seed):
    mask, width = _core.band_select(ranks, position, keep, seed)
    ref_mask, ref_width = ref.band_select(ranks, position, keep, seed, key=_core.tie_key)
    assert mask.dtype == np.bool_ and mask.shape == (ranks.shape[1],)
    assert int(mask.sum()) == keep
    np.testing.assert_array_equal(mask, ref_mask)
    assert width == ref_width
    w = ref.record_widths(ranks, position)
    assert not mask[np.isnan(w)].any()  # a NaN rank is never kept
    if keep:
        assert (w[mask] <= width).all()
        assert (w[~mask & ~np.isnan(w)] >= width).all()
    return mask, width


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("position", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_band_select_parity(k, position, ties):
    rng = np.random.default_rng(k * 10 + int(position * 10) + ties)
    ranks = rank_matrix(rng, k, 400, ties)
    n_valid = int((~np.isnan(ranks).any(axis=0)).sum())
    for keep in sorted({0, 1, 7, n_valid // 6, n_valid // 2, n_valid - 1, n_valid}):
        for seed in (0, 1, 2**64 - 1):
            check_band_select(ranks, position, keep, seed)
    mask, _ = kernels.band_select(ranks, position, n_valid, seed=3)
    np.testing.assert_array_equal(mask, ~np.isnan(ranks).any(axis=0))


def test_band_select_widths_by_position():
    u = np.array([[0.1, 0.3, 0.5, 0.7, 0.9]])
    # position 0: width = u; 1: width = 1 - u; 0.5: |u - 0.5| / 0.5
    mask, width = _core.band_select(u, 0.0, 2, 0)
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 0])
    assert width == pytest.approx(0.3)
    mask, width = _core.band_select(u, 1.0, 2, 0)
    np.testing.assert_array_equal(mask, [0, 0, 0, 1, 1])
    assert width == pytest.approx(0.3)
    mask, width = _core.band_select(u, 0.5, 1, 0)
    np.testing.assert_array_equal(mask, [0, 0, 1, 0, 0])
    assert width == 0.0
    mask, width = _core.band_select(u, 0.5, 3, 0)
    np.testing.assert_array_equal(mask, [0, 1, 1, 1, 0])
    assert width == pytest.approx(0.4)


def test_band_select_seeds_change_tied_records_only():
    """All records tied at two widths: the seed picks which tied ones are kept."""
    n = 200
    ranks = np.where(np.arange(n) % 2 == 0, 0.25, 0.75)[None].astype(np.float64)
    selections = set()
    for seed in range(8):
        mask, width = check_band_select(ranks, 0.5, 60, seed)
        assert mask.sum() == 60 and width == 0.5
        selections.add(mask.tobytes())
    assert len(selections) == 8  # every seed keeps a different subset
    mask_a, _ = _core.band_select(ranks, 0.5, 60, 5)
    mask_b, _ = _core.band_select(ranks, 0.5, 60, 5)
    np.testing.assert_array_equal(mask_a, mask_b)  # same seed, same selection
    # Records strictly inside the band are kept whatever the seed.
    ranks[0, :10] = 0.5
    for seed in range(4):
        mask, _ = check_band_select(ranks, 0.5, 60, seed)
        assert mask[:10].all()


def test_band_select_nan_never_kept():
    ranks = np.array([[0.5, np.nan, 0.4, 0.6], [0.5, 0.5, np.nan, 0.55]])
    mask, width = _core.band_select(ranks, 0.5, 2, 0)
    np.testing.assert_array_equal(mask, [1, 0, 0, 1])
    assert width == pytest.approx(0.2)
    with pytest.raises(ValueError, match="cannot keep 3 records: only 2"):
        _core.band_select(ranks, 0.5, 3, 0)


def test_band_select_keep_zero_and_empty():
    ranks = np.array([[0.2, 0.8]])
    mask, width = _core.band_select(ranks, 0.5, 0, 0)
    assert not mask.any() and width == 0.0
    mask, width = _core.band_select(np.zeros((2, 0)), 0.5, 0, 0)
    assert mask.shape == (0,) and width == 0.0


@PROPERTY
@given(
    st.integers(1, 3),
    st.integers(0, 30),
    st.sampled_from([0.0, 0.2, 0.5, 0.77, 1.0]),
    st.integers(0, 2**64 - 1),
    st.data(),
)
def test_band_select_property(k, n, position, seed, data):
    values = st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9, np.nan]) | st.floats(0.001, 0.999)
    ranks = np.array(
        data.draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=k, max_size=k)),
        dtype=np.float64,
    ).reshape(k, n)
    n_valid = int((~np.isnan(ranks).any(axis=0)).sum())
    keep = data.draw(st.integers(0, n_valid))
    check_band_select(ranks, position, keep, seed)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((np.full((1, 4), 0.5), 0.5, 5, 0), ValueError, "cannot keep 5 records: only 4"),
        ((np.full((1, 4), 0.5), 0.5, -1, 0), ValueError, "keep must be >= 0"),
        ((np.full((1, 4), 0.5), -0.1, 1, 0), ValueError, "position must lie in"),
        ((np.full((1, 4), 0.5), 1.5, 1, 0), ValueError, "position must lie in"),
        ((np.full((1, 4), 0.5), float("nan"), 1, 0), ValueError, "position must lie in"),
        (
            (np.full((1, 4), 0.5, np.float32), 0.5, 1, 0),
            ValueError,
            "ranks must have dtype float64",
        ),
        ((np.full(4, 0.5), 0.5, 1, 0), ValueError, "ranks must be 2-D"),
        ((np.full((4, 2), 0.5).T, 0.5, 1, 0), ValueError, "ranks must be C-contiguous"),
        ((np.zeros((0, 4)), 0.5, 0, 0), ValueError, "ranks must hold at least one column"),
        (([[0.5, 0.5]], 0.5, 1, 0), ValueError, "ranks must be a numpy.ndarray"),
    ],
)
def test_band_select_rejects_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        _core.band_select(*args)


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        (np.full((2, 3), 0.5, np.float32), "ranks must have dtype float64"),
        (np.full(3, 0.5), "ranks must be 2-D"),
        (np.full((3, 2), 0.5).T, "ranks must be C-contiguous"),
        (np.zeros((0, 3)), "ranks must hold at least one column"),
        ([[0.5]], "ranks must be a numpy.ndarray"),
    ],
)
def test_mean_rank_rejects_bad_arguments(ranks, message):
    with pytest.raises(ValueError, match=message):
        _core.mean_rank(ranks)


@pytest.mark.parametrize(
    "fn", [_core.percentile_ranks, lambda x: _core.nan_quantiles(x, np.ones(1))]
)
def test_score_columns_reject_bad_arguments(fn):
    with pytest.raises(ValueError, match="x must have dtype float32 or float64, got int64"):
        fn(np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="x must be 1-D"):
        fn(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        fn(np.zeros(6)[::3])
    with pytest.raises(ValueError, match=r"x must be a numpy\.ndarray"):
        fn((1.0, 2.0))


def test_byte_swapped_scores_are_rejected_or_read_correctly():
    x = scores(np.random.default_rng(6), 50)
    expected = _core.percentile_ranks(x)
    try:
        got = _core.percentile_ranks(x.astype(">f8"))
    except ValueError as err:
        assert "x" in str(err)
    else:
        np.testing.assert_array_equal(got, expected)


def test_reference_quantile_helper_is_sane():
    """The exact-infinity reference agrees with numpy on finite data."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(33)
    for q in quantile_grid(rng):
        assert math.isclose(
            ref.exact_quantile(x, q), float(np.quantile(x, q)), rel_tol=1e-13, abs_tol=1e-15
        )
