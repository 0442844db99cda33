"""Coverage-centric selection (select(method="coverage")): exact counts, the strata and their
water-filled quotas, the tails, composition with stratify, and the uninformative-score case."""

import numpy as np
import pytest

from euds.selection import select
from euds.selection.coverage import strata_of
from euds.selection.quotas import draw, largest_remainder, water_filling


def scores(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "id": np.array([f"r{i}" for i in range(n)], dtype=object),
        "information": rng.normal(size=n),
        # Skewed: most records in a few strata, a long thin tail.
        "generative": rng.gamma(1.2, size=n),
        "semantic": rng.normal(size=n),
    }


@pytest.mark.parametrize("budget", [0.01, 0.1, 0.5, 0.9])
def test_coverage_counts_and_reasons(budget):
    n = 2000
    s = scores(n, 0)
    sel = select(s, method="coverage", budget=budget, seed=2)
    kept = round(budget * n)
    assert sel.keep.sum() == kept and sel.signals == ["generative"]
    reasons = sel.counts["dropped_by_reason"]
    assert set(reasons) <= {"tail", "not_sampled"}
    assert reasons["tail"] == int((sel.reason == "tail").sum()) >= 0.09 * n
    # Tails first: nothing kept outside the 5-95% quantiles.
    lo, hi = np.quantile(s["generative"], [0.05, 0.95])
    assert s["generative"][sel.keep].min() >= lo and s["generative"][sel.keep].max() <= hi


def test_coverage_fills_strata_by_water_filling_with_a_uniform_draw_inside():
    n = 3000
    s = scores(n, 1)
    sel = select(s, method="coverage", budget=0.1, seed=5, strata=20)
    d = sel.details
    assert d["strata"] == 20 and d["score"] == "generative" and sum(d["quotas"]) == 300
    lo, hi = np.quantile(s["generative"], [0.05, 0.95])
    inside = np.flatnonzero((s["generative"] >= lo) & (s["generative"] <= hi))
    where, a, b = strata_of(s["generative"][inside], 20)
    assert d["range"] == [a, b]
    sizes = np.bincount(where, minlength=20)
    assert d["sizes"] == sizes.tolist()
    quotas = water_filling(sizes, 300, 5)
    assert d["quotas"] == quotas.tolist()
    # The thin strata are taken whole; the crowded ones share the rest evenly.
    assert all(q == z for q, z in zip(quotas, sizes, strict=True) if z < quotas.max())
    want = np.zeros(n, dtype=bool)
    for j in range(20):
        want[draw(inside[where == j], int(quotas[j]), 5)] = True
    np.testing.assert_array_equal(sel.keep, want)
    # Far more of the thin high-entropy tail than a band or random would keep.
    top = s["generative"] > np.quantile(s["generative"][inside], 0.75)
    assert sel.keep[top].sum() > 0.25 * 300


def test_coverage_with_an_uninformative_score_is_random_minus_tails():
    n = 1000
    s = {"generative": np.full(n, 2.0)}
    sel = select(s, method="coverage", budget=0.2, seed=9)
    np.testing.assert_array_equal(np.flatnonzero(sel.keep), np.sort(draw(np.arange(n), 200, 9)))
    plain = select(s, method="filter-random", budget=0.2, seed=9)
    assert plain.keep.sum() == sel.keep.sum() == 200


def test_coverage_with_several_signals_uses_their_mean_rank():
    s = scores(800, 2)
    sel = select(s, method="coverage", budget=0.25, signals=["information", "generative"])
    assert sel.details["score"] == "mean-rank(information,generative)"
    assert sel.keep.sum() == 200
    assert set(sel.intervals) == {"information", "generative"}  # each signal's tails


def test_coverage_inside_strata_and_options():
    n = 1200
    s = scores(n, 3)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    sel = select(s, method="coverage", budget=0.1, stratify=labels, strata=10)
    assert sel.keep.sum() == 120 and len(sel.strata) == 3
    eligible = [st["eligible"] for st in sel.strata]
    assert [st["quota"] for st in sel.strata] == largest_remainder(eligible, 120).tolist()
    assert all(st["coverage"]["strata"] == 10 for st in sel.strata)
    for st in sel.strata:
        assert sel.keep[labels == st["stratum"]].sum() == st["quota"]
    assert select(s, method="coverage", budget=0.1, seed=1).keep.tolist() == (
        select(s, method="coverage", budget=0.1, seed=1).keep.tolist()
    )
    with pytest.raises(ValueError, match="strata must be"):
        select(s, method="coverage", budget=0.1, strata=0)
    with pytest.raises(ValueError, match="needs budget"):
        select(s, method="coverage", intervals={"generative": (0.1, 0.9)})
    with pytest.raises(ValueError, match="survive the tails"):
        select(s, method="coverage", budget=0.95)
    wide = select(s, method="coverage", budget=0.95, tails=(0.0, 1.0))
    assert wide.keep.sum() == round(0.95 * n)
