"""The experiment's statistics against scipy and hand-worked cases."""

import numpy as np
import pytest
from scipy import stats

from euds.research.stats import holm, paired, tost


def test_paired_matches_scipy_t_test_and_interval():
    d = np.array([1.2, -0.3, 2.5, 0.8, 1.9])
    got = paired(d)
    want = stats.ttest_1samp(d, 0.0)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert got.n == 5
    assert got.mean == pytest.approx(d.mean())
    assert got.p == pytest.approx(want.pvalue)
    assert (got.lo, got.hi) == pytest.approx((lo, hi))


def test_paired_edge_cases():
    assert np.isnan(paired([1.0]).p)
    flat = paired([0.5, 0.5, 0.5])
    assert (flat.lo, flat.hi, flat.p) == (0.5, 0.5, 0.0)
    assert paired([0.0, 0.0]).p == 1.0
    with pytest.raises(ValueError, match="1-D"):
        paired([[1.0, 2.0]])


def test_holm_by_hand():
    # sorted: .01 * 3 = .03; .03 * 2 = .06; .04 * 1 = .04 -> monotone: .06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.5, np.nan, 0.001])
    assert adjusted[0] == pytest.approx(0.5) and np.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.002)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8 * 2 caps at 1


def test_tost_agrees_with_the_90_percent_interval():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 2), size=int(rng.integers(3, 9)))
        inside = -1 < paired(d, level=0.90).lo and paired(d, level=0.90).hi < 1
        assert (tost(d, 1.0) < 0.05) == inside
    with pytest.raises(ValueError, match="margin"):
        tost([1.0, 2.0], 0.0)
