"""Interval selection (euds.selection): budgets, positions, intervals, IGSE intersect and mean-rank,
checked against plain numpy and brute-force references, on real and synthetic scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from euds.selection import select as euds_select


def select(scores, **options):
    """:func:`euds.selection.select` with the band these tests exercise named: a budget alone
    keeps the default (typicality, docs/selection.md), so where a call names no method, signals,
    intervals or per-signal positions, it bands generative when scored, else every scored
    signal."""
    from euds.selection.columns import columns_of

    if not any(k in options for k in ("method", "signals", "intervals")) and not isinstance(
        options.get("position"), dict
    ):
        try:
            cols = columns_of(scores)
        except ValueError:
            cols = {}
        names = ("information", "generative", "semantic")
        banded = ["generative"] if "generative" in cols else [s for s in names if s in cols]
        if banded:
            options["signals"] = banded
    return euds_select(scores, **options)


# -- references ------------------------------------------------------------------------------


def pct_ranks(x: np.ndarray) -> np.ndarray:
    """(average 0-based rank + 0.5) / n_valid; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    valid = np.flatnonzero(~np.isnan(x))
    v = x[valid]
    order = np.argsort(v, kind="stable")
    sv = v[order]
    # average rank of each distinct value
    _, first, counts = np.unique(sv, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(avg, counts)
    out[valid] = (ranks + 0.5) / len(v)
    return out


def entry_widths(ranks: np.ndarray, p: float) -> np.ndarray:
    """Width at which each record enters the common band (max over the signals)."""
    below = np.where(ranks < p, (p - ranks) / np.where(p > 0, p, 1), 0.0)
    above = np.where(ranks > p, (ranks - p) / np.where(p < 1, 1 - p, 1), 0.0)
    return np.max(np.maximum(below, above), axis=0)


def in_band(ranks: np.ndarray, p: float, w: float, eps: float = 1e-12) -> np.ndarray:
    lo = p * (1 - w)
    hi = lo + w
    return np.all((ranks >= lo - eps) & (ranks <= hi + eps), axis=0)


def smallest_common_band(ranks: np.ndarray, p: float, keep: int) -> tuple[float, np.ndarray]:
    """Brute force: try every candidate width in increasing order, return the first whose
    common band (every signal inside [p(1-w), p(1-w)+w]) holds at least ``keep`` records."""
    candidates = np.unique(entry_widths(ranks, p))
    for w in candidates:
        inside = in_band(ranks, p, w)
        if inside.sum() >= keep:
            return float(w), inside
    raise AssertionError("no band holds the budget")


def synthetic(n: int, seed: int, rho: float = 0.6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n)
    c = rng.gamma(2.0, size=n)
    return {
        "id": np.array([f"r{i}" for i in range(n)], dtype=object),
        "information": a,
        "generative": b,
        "semantic": c,
    }


@pytest.fixture(scope="module")
def sst2_scores(data_dir, tmp_path_factory):
    """Real information scores of the full SST-2 train set (67,349 records)."""
    from euds import ScoreConfig, score
    from euds.scores import read_scores

    out = tmp_path_factory.mktemp("sst2_scores") / "train"
    score(
        data_dir / "sst2" / "train.jsonl.gz",
        out,
        ScoreConfig(signals=("information",)),
        progress=False,
    )
    table = read_scores(out)
    assert table.num_rows == 67_349
    # The band tests compare with references over the whole pool: without text_hash no copy of
    # a repeated text is dropped first (duplicates: tests/test_select_methods.py).
    return table.drop_columns(["text_hash"])


# -- budgets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0.0, 0.5, 1.0, 0.25])
@pytest.mark.parametrize("budget", [0.16, 0.01, 0.5, 0.84, 1.0])
def test_budget_exact_on_real_scores(sst2_scores, budget, position):
    n = sst2_scores.num_rows
    sel = select(sst2_scores, budget=budget, position=position)
    assert sel.method == "single" and sel.signals == ["information"]
    assert int(sel.keep.sum()) == round(budget * n)
    counts = sel.counts
    assert counts["input"] == n
    assert counts["kept"] + counts["dropped"] == n
    assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
    assert set(counts["dropped_by_reason"]) <= {"outside_interval"}
    assert (sel.reason[sel.keep] == "").all() and (sel.reason[~sel.keep] != "").all()
    v = sst2_scores.column("information").to_numpy()
    if budget < 1:
        kept, dropped = v[sel.keep], v[~sel.keep]
        if position == 0:
            assert kept.max() <= dropped.min()
        elif position == 1:
            assert kept.min() >= dropped.max()
        else:
            # everything strictly inside the kept value range is kept
            inside = (v > kept.min()) & (v < kept.max())
            assert sel.keep[inside].all()


def test_budget_016_of_sst2(sst2_scores):
    sel = select(sst2_scores, budget=0.16)
    assert int(sel.keep.sum()) == round(0.16 * 67_349) == 10_776
    info = sel.intervals["information"]
    assert 0 < info["q_lo"] < 0.5 < info["q_hi"] < 1
    assert info["q_hi"] - info["q_lo"] == pytest.approx(sel.band_width)
    # centred on the median: the band is symmetric in quantiles
    assert info["q_lo"] + info["q_hi"] == pytest.approx(1.0)
    v = sst2_scores.column("information").to_numpy()
    assert info["kept_min"] == v[sel.keep].min() and info["kept_max"] == v[sel.keep].max()
    assert info["kept_min"] <= np.median(v) <= info["kept_max"]


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
@pytest.mark.parametrize("budget", [0.001, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_budget_exact_synthetic(n, budget):
    scores = synthetic(n, seed=n)
    for method in ("intersect", "mean-rank"):
        for position in (0.0, 0.5, 1.0):
            sel = select(scores, budget=budget, method=method, position=position)
            assert int(sel.keep.sum()) == round(budget * n)
            assert sel.counts["kept"] + sel.counts["dropped"] == n


@pytest.mark.parametrize("position", [0.0, 0.5, 1.0])
def test_position_on_distinct_values(position):
    n = 1000
    v = np.random.default_rng(3).permutation(n).astype(float)
    sel = select({"information": v}, budget=0.1, position=position)
    kept = np.sort(v[sel.keep])
    if position == 0:
        np.testing.assert_array_equal(kept, np.arange(100))
    elif position == 1:
        np.testing.assert_array_equal(kept, np.arange(900, 1000))
    else:
        np.testing.assert_array_equal(kept, np.arange(450, 550))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("position", [0.0, 0.3, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("budget", [0.02, 0.16, 0.5, 0.9, 1.0])
def test_intersect_equals_smallest_common_band(seed, position, budget):
    n = 400
    scores = synthetic(n, seed)
    sigs = ["information", "generative"]
    keep_n = round(budget * n)
    sel = select(scores, signals=sigs, budget=budget, position=position, seed=seed)
    assert sel.method == "intersect"
    ranks = np.stack([pct_ranks(scores[s]) for s in sigs])
    w, inside = smallest_common_band(ranks, position, keep_n)
    strictly = entry_widths(ranks, position) < w
    assert int(sel.keep.sum()) == keep_n
    assert not (sel.keep & ~inside).any(), "kept a record outside the smallest common band"
    assert not (strictly & ~sel.keep).any(), "dropped a record inside a narrower band"
    assert sel.band_width == pytest.approx(w, abs=1e-12)
    q_lo, q_hi = sel.intervals["information"]["q_lo"], sel.intervals["information"]["q_hi"]
    assert q_lo == pytest.approx(position * (1 - w), abs=1e-12)
    assert q_hi - q_lo == pytest.approx(w, abs=1e-12)
    assert sel.intervals["generative"]["q_lo"] == q_lo


def test_intersect_three_signals_and_mean_rank_budget():
    n = 600
    scores = synthetic(n, 11)
    sigs = ["information", "generative", "semantic"]
    ranks = np.stack([pct_ranks(scores[s]) for s in sigs])
    for position in (0.0, 0.5, 1.0):
        keep_n = round(0.2 * n)
        sel = select(scores, budget=0.2, position=position, method="intersect")
        assert sel.signals == sigs and sel.method == "intersect"
        w, inside = smallest_common_band(ranks, position, keep_n)
        assert not (sel.keep & ~inside).any()
        assert not ((entry_widths(ranks, position) < w) & ~sel.keep).any()
        # mean-rank: one band on the rank of the mean rank
        mr = select(scores, budget=0.2, position=position, method="mean-rank")
        combined = pct_ranks(ranks.mean(axis=0))[None, :]
        w, inside = smallest_common_band(combined, position, keep_n)
        assert int(mr.keep.sum()) == keep_n
        assert not (mr.keep & ~inside).any()
        assert not ((entry_widths(combined, position) < w) & ~mr.keep).any()
        assert set(mr.intervals) == {"mean-rank", *sigs}


# -- intervals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.1, 0.9), (0.0, 1.0), (0.25, 0.5), (0.3, 0.3), (0.0, 0.0), (0.999, 1.0)]
)
def test_quantile_interval_matches_numpy(sst2_scores, lo, hi):
    v = sst2_scores.column("information").to_numpy()
    sel = select(sst2_scores, intervals={"information": (lo, hi)})
    qlo, qhi = np.quantile(v, [lo, hi])
    np.testing.assert_array_equal(sel.keep, (v >= qlo) & (v <= qhi))
    assert sel.intervals["information"] == {"q_lo": lo, "q_hi": hi, "lo": qlo, "hi": qhi}
    assert sel.budget is None and sel.position is None
    assert sel.counts["kept"] + sel.counts["dropped"] == len(v)


@pytest.mark.parametrize(("lo", "hi"), [(0.05, 0.95), (0.2, 0.4), (0.5, 0.5)])
def test_quantile_interval_with_nan_matches_numpy(lo, hi):
    scores = synthetic(5000, 5)
    v = scores["information"].copy()
    v[::7] = np.nan
    g = scores["generative"].copy()
    g[3::11] = np.nan
    sel = select(
        {"information": v, "generative": g},
        intervals={"information": (lo, hi), "generative": (0.1, 0.8)},
    )
    usable = ~np.isnan(v) & ~np.isnan(g)
    vu, gu = np.where(usable, v, np.nan), np.where(usable, g, np.nan)
    a, b = np.nanquantile(vu, [lo, hi])
    c, d = np.nanquantile(gu, [0.1, 0.8])
    expected = (vu >= a) & (vu <= b) & (gu >= c) & (gu <= d)
    np.testing.assert_array_equal(sel.keep, expected)
    assert (sel.reason[~usable] == "unscored").all()
    assert sel.counts["dropped_by_reason"]["unscored"] == int((~usable).sum())


def test_absolute_interval_matches_numpy(sst2_scores):
    v = sst2_scores.column("information").to_numpy()
    for lo, hi in [(1.5, 2.5), (2.0794415416798357, 2.0794415416798357), (-1.0, 0.0), (9, 10)]:
        sel = select(sst2_scores, intervals={"information": (lo, hi)}, absolute=True)
        np.testing.assert_array_equal(sel.keep, (v >= lo) & (v <= hi))
        assert sel.intervals["information"] == {"lo": lo, "hi": hi}
        assert sel.absolute
    # absolute values outside [0, 1] are fine, quantiles are not
    with pytest.raises(ValueError, match="quantiles"):
        select(sst2_scores, intervals={"information": (1.5, 2.5)})


def test_mean_rank_interval_matches_numpy():
    scores = synthetic(3000, 9)
    sigs = ["information", "generative", "semantic"]
    sel = select(scores, signals=sigs, method="mean-rank", intervals={"mean-rank": (0.2, 0.7)})
    combined = pct_ranks(np.mean([pct_ranks(scores[s]) for s in sigs], axis=0))
    lo, hi = np.quantile(combined, [0.2, 0.7])
    np.testing.assert_array_equal(sel.keep, (combined >= lo) & (combined <= hi))
    absolute = select(
        scores, signals=sigs, method="mean-rank", absolute=True, intervals={"mean-rank": (0.2, 0.7)}
    )
    np.testing.assert_array_equal(absolute.keep, (combined >= 0.2) & (combined <= 0.7))


def test_mean_rank_interval_defaults_to_scored_signals():
    scores = synthetic(500, 2)
    sel = select(scores, method="mean-rank", intervals={"mean-rank": (0.2, 0.8)})
    assert sel.signals == ["information", "generative", "semantic"]


# -- unscorable and non-finite scores ----------------------------------------------------------


def test_nan_scores_are_unscored():
    scores = synthetic(1000, 4)
    v = scores["information"]
    v[:50] = np.nan
    v[500:530] = np.nan
    sel = select({"id": scores["id"], "information": v}, budget=0.5)
    assert int(sel.keep.sum()) == 500
    assert not sel.keep[np.isnan(v)].any()
    assert (sel.reason[np.isnan(v)] == "unscored").all()
    assert sel.counts["dropped_by_reason"] == {"unscored": 80, "outside_interval": 420}
    # a budget beyond the scorable share is an error; exactly the share is fine
    with pytest.raises(ValueError, match="only 920 have every score"):
        select({"information": v}, budget=0.921)
    assert int(select({"information": v}, budget=0.92).keep.sum()) == 920


def test_nan_in_one_signal_removes_the_record_from_every_pool():
    scores = synthetic(300, 8)
    scores["generative"][:30] = np.nan
    sel = select(scores, signals=["information", "generative"], budget=0.5)
    assert not sel.keep[:30].any()
    assert (sel.reason[:30] == "unscored").all()
    with pytest.raises(ValueError, match="lower the budget"):
        select(scores, signals=["information", "generative"], budget=0.95)
    # the other signal alone can use every record
    assert int(select(scores, signals=["information"], budget=0.95).keep.sum()) == 285


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_scores(bad):
    scores = synthetic(200, 6)
    scores["generative"][17] = bad
    scores["generative"][40] = bad
    scores["information"][3] = np.nan
    with pytest.raises(ValueError, match=r"record 'r17' \(row 17\).*2 records have infinite"):
        select(scores, signals=["information", "generative"], budget=0.5)
    with pytest.raises(ValueError, match=r"row 17"):
        select({"generative": scores["generative"]}, intervals={"generative": (0, 1)})
    for kwargs in ({"budget": 0.5}, {"intervals": {"information": (0, 1), "generative": (0, 1)}}):
        sel = select(scores, signals=["information", "generative"], on_nonfinite="drop", **kwargs)
        assert list(sel.reason[[3, 17, 40]]) == ["unscored", "nonfinite", "nonfinite"]
        assert not sel.keep[[3, 17, 40]].any()
        counts = sel.counts
        assert counts["dropped_by_reason"]["nonfinite"] == 2
        assert counts["dropped_by_reason"]["unscored"] == 1
        assert counts["kept"] + counts["dropped"] == 200
    sel = select(scores, signals=["information", "generative"], on_nonfinite="drop", budget=0.5)
    assert int(sel.keep.sum()) == 100
    # the infinite records do not shift the others' ranks
    clean = {k: np.delete(v, [3, 17, 40]) for k, v in scores.items()}
    ref = select(clean, signals=["information", "generative"], budget=100 / 197)
    kept_ids = set(scores["id"][sel.keep])
    assert kept_ids == set(clean["id"][ref.keep])


def test_kept_plus_dropped_in_every_case():
    scores = synthetic(777, 12)
    scores["information"][::13] = np.nan
    scores["semantic"][5::17] = np.inf
    cases = [
        {"budget": 0.3},
        {"budget": 0.3, "method": "mean-rank"},
        {"budget": 0.1, "position": 0.0},
        {"intervals": {"information": (0.1, 0.9), "generative": (0, 1), "semantic": (0.2, 1)}},
        {
            "intervals": {"mean-rank": (0.3, 0.6)},
            "method": "mean-rank",
            "signals": ["information", "generative", "semantic"],
        },
        {
            "intervals": {"information": (-1, 1), "generative": (-2, 0), "semantic": (0, 9)},
            "absolute": True,
        },
    ]
    for kwargs in cases:
        sel = select(scores, on_nonfinite="drop", **kwargs)
        counts = sel.counts
        assert counts["input"] == 777
        assert counts["kept"] + counts["dropped"] == 777 == len(sel.reason)
        assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
        assert (sel.reason[sel.keep] == "").all()
        assert set(sel.reason[~sel.keep]) <= {"unscored", "nonfinite", "outside_interval"}
        summary = sel.summary()
        assert summary["counts"] == counts and summary["method"] == sel.method


# -- input types -------------------------------------------------------------------------------


def test_inputs_dict_table_and_lists_agree():
    scores = synthetic(500, 21)
    table = pa.table({k: pa.array(list(v)) for k, v in scores.items()})
    as_lists = {k: list(v) for k, v in scores.items()}
    for kwargs in ({"budget": 0.16}, {"intervals": {"information": (0.2, 0.6)}}):
        a = select(scores, signals=["information"], **kwargs)
        b = select(table, signals=["information"], **kwargs)
        c = select(as_lists, signals=["information"], **kwargs)
        np.testing.assert_array_equal(a.keep, b.keep)
        np.testing.assert_array_equal(a.keep, c.keep)


def test_table_with_nulls_and_chunks():
    v = pa.chunked_array([[1.0, None, 3.0], [4.0, 5.0, None, 7.0]])
    table = pa.table({"id": pa.array(list("abcdefg")), "information": v})
    sel = select(table, intervals={"information": (0, 1)})
    assert list(sel.reason) == ["", "unscored", "", "", "", "unscored", ""]


def test_pandas_dataframe():
    pd = pytest.importorskip("pandas")
    scores = synthetic(400, 22)
    df = pd.DataFrame(scores)
    a = select(scores, budget=0.2)
    b = select(df, budget=0.2)
    np.testing.assert_array_equal(a.keep, b.keep)
    scores["generative"][7] = np.inf  # a signal the default selects on
    with pytest.raises(ValueError, match="'r7'"):
        select(pd.DataFrame(scores), budget=0.2)


def test_bad_arguments():
    scores = synthetic(100, 1)
    cases = [
        ({}, "exactly one of"),
        ({"budget": 0.1, "intervals": {"information": (0, 1)}}, "exactly one of"),
        ({"budget": 0.0}, "budget must be a share"),
        ({"budget": 1.5}, "budget must be a share"),
        ({"budget": float("nan")}, "budget must be a share"),
        ({"budget": 0.1, "position": 1.5}, "position must lie"),
        ({"budget": 0.1, "position": -0.1}, "position must lie"),
        ({"budget": 0.1, "signals": ["perplexity"]}, "unknown signal"),
        ({"budget": 0.1, "signals": ["nll"]}, "no 'nll' column"),
        ({"budget": 0.1, "signals": ["information", "information"]}, "repeat"),
        ({"budget": 0.1, "method": "single"}, "takes one signal"),
        ({"budget": 0.1, "method": "union"}, "method must be one of"),
        ({"budget": 0.1, "on_nonfinite": "ignore"}, "on_nonfinite"),
        ({"intervals": {"information": (0.9, 0.1)}}, "lo > hi"),
        ({"intervals": {"information": (0.1,)}}, "pair"),
        ({"intervals": {"information": ("a", "b")}}, "pair"),
        ({"intervals": {"information": (-0.1, 0.5)}}, "quantiles"),
        (
            {"intervals": {"information": (0, 1)}, "signals": ["information", "generative"]},
            "missing",
        ),
        (
            {
                "intervals": {"information": (0, 1)},
                "method": "mean-rank",
                "signals": ["information", "generative"],
            },
            "one interval named 'mean-rank'",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            select(scores, **kwargs)
    with pytest.raises(ValueError, match="differ in length"):
        select({"information": np.zeros(3), "generative": np.zeros(4)}, budget=0.5)
    with pytest.raises(ValueError, match="must be numeric"):
        select({"information": np.array(["a", "b"])}, budget=0.5)
    with pytest.raises(ValueError, match="no signal columns"):
        select({"id": np.array(["a"])}, budget=0.5, method="intersect")
    with pytest.raises(ValueError, match="mapping of arrays"):
        select([1.0, 2.0], budget=0.5)


def test_integer_score_columns():
    v = np.arange(100, dtype=np.int32)
    sel = select({"information": v}, budget=0.1, position=0.0)
    assert sorted(v[sel.keep]) == list(range(10))


# -- determinism and ties ----------------------------------------------------------------------


def test_same_call_same_mask(sst2_scores):
    a = select(sst2_scores, budget=0.16)
    b = select(sst2_scores, budget=0.16)
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(a.reason, b.reason)
    assert a.summary() == b.summary()


def _tie_structure(v: np.ndarray, keep: np.ndarray, position: float):
    w = entry_widths(pct_ranks(v)[None, :], position)
    w_star = w[keep].max()
    return w, w_star


@pytest.mark.parametrize("position", [0.0, 0.5, 1.0])
def test_seed_changes_tied_choices_only(sst2_scores, position):
    v = sst2_scores.column("information").to_numpy()
    masks = [select(sst2_scores, budget=0.16, position=position, seed=s).keep for s in range(3)]
    w, w_star = _tie_structure(v, masks[0], position)
    assert len({m.tobytes() for m in masks}) == 3  # the real scores are full of ties
    for m in masks:
        assert int(m.sum()) == 10_776
        assert m[w < w_star - 1e-12].all()  # strictly inside: kept whatever the seed
        assert not m[w > w_star + 1e-12].any()  # strictly outside: never kept
        differ = m != masks[0]
        assert np.allclose(w[differ], w_star)


def test_ties_are_not_broken_by_input_order():
    n = 4000
    sel = select({"information": np.ones(n)}, budget=0.1)
    idx = np.flatnonzero(sel.keep)
    assert len(idx) == 400
    assert not np.array_equal(idx, np.arange(400))
    quarters = np.bincount(idx * 4 // n, minlength=4)
    assert (quarters > 60).all(), quarters


def test_ties_at_the_boundary_with_discrete_scores():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 8, size=2000).astype(float)
    a = select({"information": v}, budget=0.25, position=0.0, seed=1)
    b = select({"information": v}, budget=0.25, position=0.0, seed=2)
    assert int(a.keep.sum()) == int(b.keep.sum()) == 500
    boundary = v[a.keep].max()
    assert boundary == v[b.keep].max()
    assert (a.keep[v < boundary]).all() and (b.keep[v < boundary]).all()
    assert not a.keep[v > boundary].any()
    differ = a.keep != b.keep
    assert differ.any() and (v[differ] == boundary).all()


def test_bpb_is_selectable_and_scores_without_it_select_as_before():
    scores = synthetic(400, 31)
    with_bpb = dict(scores, bpb=np.random.default_rng(31).gamma(3.0, size=400))
    with_bpb["bpb"][[4, 9]] = np.nan  # records without an NLL
    sel = select(with_bpb, budget=0.25, signals=["bpb"])
    assert sel.signals == ["bpb"] and sel.keep.sum() == 100
    assert not sel.keep[[4, 9]].any() and set(sel.reason[[4, 9]]) == {"unscored"}
    ranks = pct_ranks(with_bpb["bpb"])
    assert (np.abs(ranks[sel.keep] - 0.5) < 0.13).all()  # a quarter of the pool around the median
    # bpb is never a default signal: the same selection with or without the column.
    np.testing.assert_array_equal(
        select(with_bpb, budget=0.25).keep, select(scores, budget=0.25).keep
    )
    with pytest.raises(ValueError, match="no 'bpb' column"):
        select(scores, budget=0.25, signals=["bpb"])
