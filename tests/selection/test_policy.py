"""Selection methods beside the single band (euds.selection): a band position per signal,
stratified quotas (clusters, input fields, labels), filter-then-sample, and one copy of
exact-duplicate texts; through the API, `euds select` and `euds run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import band_args, jsonl_bytes, read_jsonl_gz
from euds.cli import main
from euds.duplicates import (
    fold_for_near_duplicates,
    near_duplicate_keys,
    near_duplicates,
    text_hashes,
)
from euds.io import read_field
from euds.scores import ScoreDir, read_scores
from euds.selection import largest_remainder, near_duplicate_groups
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


INFO = ("--signals", "information")


def synthetic(n: int, seed: int) -> dict[str, np.ndarray]:
    """Three independent, tie-free signals."""
    rng = np.random.default_rng(seed)
    return {
        "id": np.array([f"r{i}" for i in range(n)], dtype=object),
        "information": rng.normal(size=n),
        "generative": rng.normal(size=n),
        "semantic": rng.gamma(2.0, size=n),
    }


def ranks(v: np.ndarray) -> np.ndarray:
    """Percentile ranks of tie-free values: (0-based rank + 0.5) / n."""
    out = np.empty(len(v))
    out[np.argsort(v)] = (np.arange(len(v)) + 0.5) / len(v)
    return out


def entry_width(u: np.ndarray, p: float) -> np.ndarray:
    """Width at which a rank enters a band at position p."""
    below = (p - u) / p if p > 0 else np.zeros_like(u)
    above = (u - p) / (1 - p) if p < 1 else np.zeros_like(u)
    return np.where(u < p, below, np.where(u > p, above, 0.0))


def check_counts(sel, n: int, kept: int) -> None:
    counts = sel.counts
    assert counts["input"] == n and counts["kept"] == kept == int(sel.keep.sum())
    assert counts["kept"] + counts["dropped"] == n
    assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
    assert (sel.reason[sel.keep] == "").all() and (sel.reason[~sel.keep] != "").all()


# -- a band position per signal ----------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.01, 0.1, 0.37, 1.0])
def test_per_signal_positions_match_the_smallest_common_band(budget):
    n = 3000
    scores = synthetic(n, 1)
    positions = {"information": 0.7, "generative": 0.4, "semantic": 0.0}
    sel = select(scores, budget=budget, position=positions)
    check_counts(sel, n, round(budget * n))
    assert sel.method == "intersect" and sel.position == positions
    # Brute force: every record's entry width is its widest signal's, each at its position.
    w = np.max([entry_width(ranks(scores[s]), p) for s, p in positions.items()], axis=0)
    w_star = np.sort(w)[round(budget * n) - 1]
    assert sel.band_width == pytest.approx(w_star, abs=1e-12)
    assert sel.keep[w < w_star - 1e-9].all() and not sel.keep[w > w_star + 1e-9].any()
    for s, p in positions.items():
        band = sel.intervals[s]
        assert band["position"] == p
        assert band["q_lo"] == pytest.approx(p * (1 - sel.band_width))
        assert band["q_hi"] - band["q_lo"] == pytest.approx(sel.band_width)
        assert band["lo"] <= band["hi"] and band["kept_min"] <= band["kept_max"]


def test_per_signal_positions_move_each_band_its_way():
    scores = synthetic(4000, 2)
    sel = select(scores, budget=0.1, position={"information": 0.9, "generative": 0.1})
    assert sel.signals == ["information", "generative"]
    r_info, r_gen = ranks(scores["information"]), ranks(scores["generative"])
    assert np.median(r_info[sel.keep]) > 0.75 and np.median(r_gen[sel.keep]) < 0.25
    assert sel.intervals["information"]["q_lo"] > sel.intervals["generative"]["q_hi"]
    low = select(scores, budget=0.1, position={"information": 0.2, "generative": 0.1})
    assert np.median(r_info[low.keep]) < np.median(r_info[sel.keep])


def test_one_position_for_all_is_the_plain_band():
    scores = synthetic(2000, 3)
    for method in ("intersect", "mean-rank"):
        a = select(scores, budget=0.2, position=0.3, method=method)
        b = select(scores, budget=0.2, position=dict.fromkeys(SIGNALS3, 0.3), method=method)
        np.testing.assert_array_equal(a.keep, b.keep)
        assert a.position == b.position == 0.3


SIGNALS3 = ("information", "generative", "semantic")


@pytest.mark.parametrize("budget", [0.05, 0.3, 1.0])
def test_mean_rank_with_per_signal_positions(budget):
    n = 3000
    scores = synthetic(n, 4)
    positions = {"information": 0.8, "generative": 0.2, "semantic": 0.5}
    sel = select(scores, budget=budget, position=positions, method="mean-rank")
    check_counts(sel, n, round(budget * n))
    assert sel.position == positions
    # The smallest mean distances from the positions: a band from 0 of their rank.
    assert sel.intervals["mean-rank"]["q_lo"] == 0.0
    assert sel.intervals["mean-rank"]["q_hi"] == sel.band_width
    u = np.stack([ranks(scores[s]) for s in positions])
    d = np.mean([entry_width(r, p) for r, p in zip(u, positions.values(), strict=True)], axis=0)
    d_star = np.sort(d)[round(budget * n) - 1]
    assert sel.keep[d < d_star - 1e-9].all() and not sel.keep[d > d_star + 1e-9].any()
    if budget < 1:
        keep = sel.keep
        assert np.median(ranks(scores["information"])[keep]) > 0.6
        assert np.median(ranks(scores["generative"])[keep]) < 0.4


def test_bad_positions():
    scores = synthetic(100, 5)
    cases = [
        ({"position": {"information": 0.5}, "signals": ["information", "generative"]}, "missing"),
        ({"position": {"information": 0.5, "nll": 0.5}, "signals": ["information"]}, "unexpected"),
        ({"position": {"information": 1.5}}, "position must lie"),
        ({"position": {"information": "a"}}, "position must lie"),
        ({"position": True}, "position must lie"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            select(scores, budget=0.1, **kwargs)


# -- stratified selection ------------------------------------------------------------------------


def test_largest_remainder():
    assert largest_remainder(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]
    assert largest_remainder(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]  # first in order
    assert largest_remainder(np.array([1, 3]), 2).tolist() == [0, 2]  # larger stratum first
    assert largest_remainder(np.array([0, 4]), 3).tolist() == [0, 3]
    assert largest_remainder(np.array([0, 0]), 0).tolist() == [0, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 50, size=rng.integers(1, 12))
        total = int(rng.integers(0, sizes.sum() + 1))
        q = largest_remainder(sizes, total)
        exact = sizes * total / max(sizes.sum(), 1)
        assert q.sum() == total and (q <= sizes).all()
        assert (np.abs(q - exact) < 1).all()
    with pytest.raises(ValueError, match="cannot share"):
        largest_remainder(np.array([1, 2]), 4)


@pytest.mark.parametrize("budget", [0.003, 0.05, 0.5, 1.0])
def test_stratified_quotas_and_bands(budget):
    n = 2000
    scores = synthetic(n, 6)
    labels = np.array(["a"] * 1000 + ["b"] * 600 + ["c"] * 390 + ["d"] * 10, dtype=object)
    np.random.default_rng(1).shuffle(labels)
    sel = select(scores, signals=["information"], budget=budget, position=0.0, stratify=labels)
    keep_n = round(budget * n)
    check_counts(sel, n, keep_n)
    quotas = largest_remainder(np.array([1000, 600, 390, 10]), keep_n)
    names = [s["stratum"] for s in sel.strata]
    assert sorted(names) == ["a", "b", "c", "d"]
    for stratum in sel.strata:
        label = stratum["stratum"]
        rows = labels == label
        assert stratum["quota"] == quotas["abcd".index(label)] == int(sel.keep[rows].sum())
        assert stratum["eligible"] == stratum["records"] == int(rows.sum())
        v = scores["information"][rows]
        kept = sel.keep[rows]
        if 0 < kept.sum() < rows.sum():  # position 0: each stratum's own lowest
            assert v[kept].max() < v[~kept].min()
    assert sum(s["quota"] for s in sel.strata) == keep_n
    assert sel.stratify == "labels" and sel.band_width is None


def test_small_budget_keeps_every_stratum():
    n = 1000
    scores = synthetic(n, 7)
    labels = np.repeat(np.arange(10), 100)
    shifted = scores["information"] + labels * 10.0  # a global band takes one or two strata
    sel = select({"information": shifted}, budget=0.02, stratify=labels)
    assert [int(sel.keep[labels == k].sum()) for k in range(10)] == [2] * 10
    plain = select({"information": shifted}, budget=0.02)
    assert len(np.unique(labels[plain.keep])) <= 2  # the strata around the median


def test_stratify_missing_labels_and_unscored_records():
    n = 400
    scores = synthetic(n, 8)
    scores["information"][:40] = np.nan
    labels = np.array([None if i % 4 == 0 else ("x" if i % 2 else 7) for i in range(n)], object)
    labels[5] = float("nan")
    sel = select(scores, signals=["information"], budget=0.25, stratify=labels)
    check_counts(sel, n, 100)
    by_name = {s["stratum"]: s for s in sel.strata}
    assert set(by_name) == {None, "x", 7}
    assert by_name[None]["records"] == 101  # None and NaN labels: one stratum
    assert sum(s["eligible"] for s in sel.strata) == n - 40
    assert sel.counts["dropped_by_reason"]["unscored"] == 40
    with pytest.raises(ValueError, match="one label per record"):
        select(scores, budget=0.1, stratify=labels[:-1])
    with pytest.raises(ValueError, match="select_file"):
        select(scores, budget=0.1, stratify="clusters")
    with pytest.raises(ValueError, match="needs budget"):
        select(scores, intervals={"information": (0.1, 0.9)}, stratify=labels)


def test_stratified_is_deterministic():
    scores = {"information": np.round(np.random.default_rng(9).normal(size=3000), 1)}  # ties
    labels = np.arange(3000) % 7
    a = select(scores, budget=0.1, stratify=labels, seed=3)
    b = select(scores, budget=0.1, stratify=labels, seed=3)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert a.summary() == b.summary()


# -- filter then sample --------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.001, 0.1, 0.5, 0.7])
def test_filter_random_counts_and_tails(budget):
    n = 5000
    scores = synthetic(n, 10)
    sel = select(scores, budget=budget, method="filter-random", seed=1)
    check_counts(sel, n, round(budget * n))
    assert sel.tails == (0.05, 0.95) and sel.position is None
    survives = np.ones(n, dtype=bool)
    for s in SIGNALS3:
        band = sel.intervals[s]
        assert (band["q_lo"], band["q_hi"]) == (0.05, 0.95)
        lo, hi = np.quantile(scores[s], [0.05, 0.95])
        assert band["lo"] == pytest.approx(lo) and band["hi"] == pytest.approx(hi)
        survives &= (scores[s] >= lo) & (scores[s] <= hi)
    assert not sel.keep[~survives].any()
    reasons = sel.counts["dropped_by_reason"]
    assert reasons["tail"] == int((~survives).sum())
    assert reasons.get("not_sampled", 0) == int(survives.sum()) - round(budget * n)


def fences_reference(v: np.ndarray, k: float) -> np.ndarray:
    """Tukey's fences the slow way: numpy's quartiles of the non-NaN values."""
    q1, q3 = np.nanquantile(v, [0.25, 0.75])
    return (v >= q1 - k * (q3 - q1)) & (v <= q3 + k * (q3 - q1))


@pytest.mark.parametrize("k", [0.5, 1.5, 3.0])
def test_fences_drop_each_signals_outliers(k):
    n = 4000
    scores = synthetic(n, 13)
    # Junk far from the middle half of two signals, and one NaN score (unscored, not a tail).
    scores["information"][:40] += 12.0
    scores["generative"][40:60] -= 12.0
    scores["semantic"][60] = np.nan
    sel = select(scores, budget=0.5, method="filter-random", fences=k, seed=3)
    usable = ~np.isnan(scores["semantic"])
    inside = usable.copy()
    for s in SIGNALS3:
        v = np.where(usable, scores[s], np.nan)
        inside &= fences_reference(v, k)
        band = sel.intervals[s]
        q1, q3 = np.nanquantile(v, [0.25, 0.75])
        assert band["fence_k"] == k and band["q1"] == pytest.approx(q1)
        assert band["lo"] == pytest.approx(q1 - k * (q3 - q1))
    check_counts(sel, n, 2000)
    assert sel.fences == k and sel.tails is None and sel.summary()["fences"] == k
    np.testing.assert_array_equal(sel.reason == "tail", usable & ~inside)
    assert not sel.keep[:60].any()  # every planted outlier is outside its fences
    assert sel.reason[60] == "unscored"
    # Unlike 5%/95% tails, which drop a tenth of every signal, k = 1.5 drops under 1% of a
    # normal one's clean records (0.7% in theory).
    if k == 1.5:
        for s in ("information", "generative"):
            assert (~fences_reference(scores[s][61:], k)).mean() < 0.012


def test_fences_options_and_errors():
    scores = synthetic(1000, 14)
    typical = select(
        scores,
        budget=0.1,
        method="typical",
        signals=["information"],
        fences=1.5,
        embeddings=np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32),
    )
    check_counts(typical, 1000, 100)
    inside = fences_reference(scores["information"], 1.5)
    np.testing.assert_array_equal(typical.reason == "tail", ~inside)
    with pytest.raises(ValueError, match="not both"):
        select(scores, budget=0.1, method="filter-random", fences=1.5, tails=(0.1, 0.9))
    for bad in (0, -1.0, float("nan"), float("inf"), True, "1.5"):
        with pytest.raises(ValueError, match="fences must"):
            select(scores, budget=0.1, method="filter-random", fences=bad)
    with pytest.raises(ValueError, match="fences= is for"):
        select(scores, budget=0.1, method="intersect", fences=1.5)
    x = np.zeros((1000, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="fences= needs signals= to drop the outliers"):
        euds_select(scores, budget=0.1, method="typical", fences=1.5, embeddings=x)
    with pytest.raises(ValueError, match="inside the fences"):
        select(scores, budget=0.999, method="filter-random", fences=0.1)
    # With the default (a budget alone), fences replace its tails on every scored signal.
    texts = [f"text {i}" for i in range(1000)]
    default = euds_select(scores, budget=0.01, fences=1.5, texts=texts)
    assert default.details["default"]["choice"] == "filter-random+clean"
    assert default.fences == 1.5 and default.tails is None
    inside = np.logical_and.reduce([fences_reference(scores[s], 1.5) for s in SIGNALS3])
    np.testing.assert_array_equal(default.reason == "tail", ~inside)


def test_filter_random_is_seeded_and_uniform():
    n = 20000
    scores = synthetic(n, 11)
    a = select(scores, budget=0.3, method="filter-random", seed=1)
    b = select(scores, budget=0.3, method="filter-random", seed=1)
    c = select(scores, budget=0.3, method="filter-random", seed=2)
    np.testing.assert_array_equal(a.keep, b.keep)
    assert (a.keep != c.keep).any()
    # Uniform over the survivors: no part of the file nor of the ranks is favoured.
    survivors = a.reason != "tail"
    first_half = np.arange(n) < n // 2
    share = a.keep[survivors & first_half].mean() / a.keep[survivors & ~first_half].mean()
    assert 0.9 < share < 1.1
    r = ranks(scores["information"])[a.keep]
    assert 0.45 < np.median(r) < 0.55


def test_filter_random_options_and_errors():
    from euds.config import SelectConfig

    n = 1000
    scores = synthetic(n, 12)
    sel = select(
        scores, signals=["information"], budget=0.5, method="filter-random", tails=(0.2, 1)
    )
    check_counts(sel, n, 500)
    assert sel.counts["dropped_by_reason"]["tail"] == 200
    with pytest.raises(ValueError, match="survive the tails"):
        select(scores, budget=0.85, method="filter-random")
    for bad in [(0.5, 0.2), (-0.1, 0.9), (0.1,), "ab", ("0.1", "0.9"), (False, True), 0.1]:
        with pytest.raises(ValueError, match="tails must"):
            select(scores, budget=0.1, method="filter-random", tails=bad)
        with pytest.raises(ValueError, match="tails must"):
            SelectConfig(budget=0.1, method="filter-random", tails=bad).check()
    with pytest.raises(ValueError, match="tails= is for"):
        select(scores, budget=0.1, tails=(0.1, 0.9))
    with pytest.raises(ValueError, match="needs budget"):
        select(scores, intervals={"information": (0.1, 0.9)}, method="filter-random")
    strat = select(scores, budget=0.1, method="filter-random", stratify=np.arange(n) % 3)
    check_counts(strat, n, 100)
    assert [s["quota"] for s in strat.strata] == largest_remainder(
        np.array([s["eligible"] for s in strat.strata]), 100
    ).tolist()


# -- exact duplicates --------------------------------------------------------------------------


def test_text_hash_normalises_form_not_case():
    a, b, c, d = text_hashes(["Ｆｕｌｌ  width\ttext ", "Full width text", "full width text", None])
    assert a == b != c and d is None
    assert len(a) == 16 and int(a, 16) >= 0


def test_duplicates_kept_once_before_the_band():
    n = 300
    rng = np.random.default_rng(13)
    base = rng.normal(size=200)
    copies = rng.integers(0, 200, size=100)  # 100 later copies of earlier texts
    info = np.concatenate([base, base[copies]])
    hashes = np.array([f"{i:016x}" for i in np.concatenate([np.arange(200), copies])], object)
    hashes[7] = None  # a record without text (its hash is None) is never a duplicate
    scores = {"information": info, "text_hash": hashes}
    sel = select(scores, budget=0.5)
    check_counts(sel, n, 150)
    assert sel.counts["dropped_by_reason"]["duplicate_text"] == 100
    assert (sel.reason[200:] == "duplicate_text").all() and not sel.keep[200:].any()
    assert sel.duplicates == {"policy": "keep-first", "detected": True, "dropped": 100}
    # The band is chosen among the distinct texts.
    only = select({"information": base}, budget=150 / 200)
    np.testing.assert_array_equal(sel.keep[:200], only.keep)
    everything = select(scores, budget=0.5, keep_duplicates=True)
    check_counts(everything, n, 150)
    assert "duplicate_text" not in everything.counts["dropped_by_reason"]
    assert everything.duplicates["policy"] == "keep-all"
    # Identical texts, identical scores: the band keeps all copies or none (ties aside).
    for i, k in enumerate(copies):
        if everything.keep[200 + i] != everything.keep[k]:
            assert info[k] in (
                everything.intervals["information"]["kept_min"],
                everything.intervals["information"]["kept_max"],
            )
    with pytest.raises(ValueError, match="not a later copy"):
        select(scores, budget=0.9)


def test_duplicates_first_eligible_copy_is_the_candidate():
    info = np.array([np.nan, 1.0, 2.0, 1.0, 3.0])
    hashes = np.array(["h", "h", "g", "g", None], dtype=object)
    sel = select({"information": info, "text_hash": hashes}, budget=0.4)
    assert sel.reason.tolist()[:4] == ["unscored", sel.reason[1], sel.reason[2], "duplicate_text"]
    assert sel.counts["dropped_by_reason"]["duplicate_text"] == 1
    no_hashes = select({"information": info}, budget=0.4)
    assert no_hashes.duplicates["detected"] is False and "text_hash" in no_hashes.duplicates["note"]


# -- near duplicates ---------------------------------------------------------------------------

BASE_TEXTS = [
    "the film is a charming and often affecting journey through the lives of two friends",
    "an utterly predictable plot with wooden acting and a script that never takes off",
    "a gorgeous visual feast , but the story underneath is thin and forgettable",
    "one of the most original comedies of the year , sharp and warm at once",
]


def copy_columns(texts: list[str], **signals: np.ndarray) -> dict[str, np.ndarray]:
    """Score columns for ``texts``: the given signals and the copy rules' keys."""
    return {
        **signals,
        "text_hash": np.array(text_hashes(texts), dtype=object),
        "near_keys": near_duplicate_keys(texts),
    }


def test_fold_for_near_duplicates_ignores_case_punctuation_and_spacing():
    assert fold_for_near_duplicates("  The FILM -- is, well… GREAT!! ") == "the film is well great"
    assert fold_for_near_duplicates("Ｆｕｌｌ_width") == "full width"
    assert fold_for_near_duplicates("?!") == ""


def test_near_duplicate_keys_find_small_edits_not_other_texts():
    edited = [
        BASE_TEXTS[0].upper(),  # case only: folds to the same text
        BASE_TEXTS[1] + " !!",  # punctuation only
        BASE_TEXTS[2].replace(" thin", ""),  # a word dropped
        BASE_TEXTS[3].replace("sharp", "sharp sharp"),  # a word doubled
    ]
    keys = near_duplicate_keys([*BASE_TEXTS, *edited, None, "!!"])
    assert keys.shape == (10, 20) and keys.dtype == np.uint64
    for i in range(4):
        assert (keys[i] == keys[4 + i]).any(), edited[i]
        for j in range(4):
            if j != i:
                assert not (keys[i] == keys[4 + j]).any()
    np.testing.assert_array_equal(keys[0], keys[4])  # same folded text, every key
    assert not keys[8].any() and not keys[9].any()  # nothing to hash: keys of 0


def brute_force_groups(keys: np.ndarray) -> np.ndarray:
    m = len(keys)
    parent = list(range(m))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(m):
        for b in range(a + 1, m):
            if (keys[a] == keys[b]).any():
                ra, rb = find(a), find(b)
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(m)])


@pytest.mark.parametrize("seed", range(6))
def test_near_duplicate_groups_match_a_brute_force_union_find(seed):
    rng = np.random.default_rng(seed)
    m, bands = int(rng.integers(1, 120)), int(rng.integers(1, 6))
    # Few distinct keys per band: long chains and merged groups.
    keys = rng.integers(0, int(rng.integers(2, 3 * m + 3)), size=(m, bands)).astype(np.uint64)
    np.testing.assert_array_equal(near_duplicate_groups(keys), brute_force_groups(keys))


def test_near_duplicates_dropped_first_kept_before_the_band():
    rng = np.random.default_rng(5)
    texts = [*BASE_TEXTS, BASE_TEXTS[0].upper(), BASE_TEXTS[2].replace(" thin", ""), BASE_TEXTS[1]]
    texts += [" ".join(rng.choice(list("abcdefghij"), size=12)) for _ in range(13)]
    n = len(texts)  # 20
    scores = copy_columns(texts, information=rng.normal(size=n))
    sel = select(scores, budget=0.5, drop_near_duplicates=True)
    check_counts(sel, n, 10)
    assert sel.reason[6] == "duplicate_text"  # exact copies go first
    assert sel.reason[4] == sel.reason[5] == "near_duplicate_text"
    assert sel.duplicates["near"]["dropped"] == 2 and sel.duplicates["near"]["groups"] == 2
    assert sel.duplicates["near"]["minhash"]["bands"] == 20
    plain = select(scores, budget=0.5)
    assert "near_duplicate_text" not in plain.counts["dropped_by_reason"]
    assert "near" not in plain.duplicates
    # An unscored first copy is no candidate: the next copy stands for the group.
    scores["information"][0] = np.nan
    sel = select(scores, budget=0.5, drop_near_duplicates=True)
    assert sel.reason[0] == "unscored" and sel.reason[4] != "near_duplicate_text"
    del scores["near_keys"]
    with pytest.raises(ValueError, match="near_keys"):
        select(scores, budget=0.5, drop_near_duplicates=True)


def test_near_duplicate_keep_chooses_the_lowest_copy():
    rng = np.random.default_rng(6)
    texts = [BASE_TEXTS[0], BASE_TEXTS[1], BASE_TEXTS[0].replace("charming", "charmnig")]
    texts += [BASE_TEXTS[1].replace("wooden", "woooden"), *BASE_TEXTS[2:]]
    texts += [" ".join(rng.choice(list("abcdefghij"), size=12)) for _ in range(14)]
    n = len(texts)  # 20
    generative = rng.normal(size=n)
    generative[[0, 2]] = [3.0, 1.0]  # the edited copy is the lower: it stays
    generative[[1, 3]] = [1.0, 3.0]  # here the original is: the first copy stays
    scores = copy_columns(texts, information=rng.normal(size=n), generative=generative)

    def keeping(keep):
        return select(
            scores,
            budget=0.5,
            signals=["information"],
            drop_near_duplicates=True,
            near_duplicate_keep=keep,
        )

    sel = keeping("generative")
    check_counts(sel, n, 10)
    assert sel.reason[0] == sel.reason[3] == "near_duplicate_text"
    assert sel.reason[2] != "near_duplicate_text" and sel.reason[1] != "near_duplicate_text"
    near = sel.duplicates["near"]
    assert near["policy"] == "keep-lowest-generative" and near["dropped"] == 2
    first = select(scores, budget=0.5, signals=["information"], drop_near_duplicates=True)
    assert first.duplicates["near"]["policy"] == "keep-first"
    assert first.reason[2] == first.reason[3] == "near_duplicate_text"
    # Keeping none: both copies of both pairs go, whatever their scores; nothing else does.
    none = keeping("none")
    check_counts(none, n, 10)
    assert np.flatnonzero(none.reason == "near_duplicate_text").tolist() == [0, 1, 2, 3]
    assert none.duplicates["near"]["policy"] == "keep-none"
    assert none.duplicates["near"]["dropped"] == 4 and none.duplicates["near"]["groups"] == 2
    with pytest.raises(ValueError, match="needs drop_near_duplicates"):
        select(scores, budget=0.5, signals=["information"], near_duplicate_keep="none")
    with pytest.raises(ValueError, match="needs drop_near_duplicates"):
        select(scores, budget=0.5, signals=["information"], near_duplicate_keep="generative")
    with pytest.raises(ValueError, match="near_duplicate_keep must be one of"):
        select(scores, budget=0.5, drop_near_duplicates=True, near_duplicate_keep="lowest")
    with pytest.raises(ValueError, match="'bpb' score column"):
        select(scores, budget=0.5, drop_near_duplicates=True, near_duplicate_keep="bpb")


def test_near_duplicate_keep_is_checked_before_any_file_is_read():
    from euds.config import SelectConfig

    # The default below 12.6% drops near duplicates, so a copy can be chosen; at 16% it drops
    # none, and a band drops none unless asked.
    SelectConfig(budget=0.05, near_duplicate_keep="generative").check()
    with pytest.raises(ValueError, match=r"default selection at budget 0\.16 drops none"):
        SelectConfig(budget=0.16, near_duplicate_keep="generative").check()
    with pytest.raises(ValueError, match="needs drop_near_duplicates"):
        SelectConfig(budget=0.05, signals=("generative",), near_duplicate_keep="bpb").check()
    SelectConfig(
        budget=0.05, signals=("generative",), near_duplicate_keep="bpb", drop_near_duplicates=True
    ).check()
    with pytest.raises(ValueError, match="near_duplicate_keep must be one of"):
        SelectConfig(budget=0.05, near_duplicate_keep="last").check()


# -- files and the command line ------------------------------------------------------------------


def cli(*args: str | os.PathLike[str]) -> int:
    return main(band_args([str(a) for a in args]))


@pytest.fixture(scope="module")
def dup_input(data_dir, tmp_path_factory):
    """600 SST-2 records, the last 100 repeating earlier texts (whitespace changed for some)."""
    records = read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 500)
    rng = np.random.default_rng(0)
    for k, j in enumerate(rng.integers(0, 500, size=100)):
        text = records[j]["text"]
        records.append(
            {"id": f"dup{k}", "text": text + "  " if k % 2 else text, "label": records[j]["label"]}
        )
    path = tmp_path_factory.mktemp("dup") / "dup.jsonl"
    path.write_bytes(jsonl_bytes(records))
    return path, records


@pytest.fixture(scope="module")
def dup_scored(dup_input, tmp_path_factory):
    path, _ = dup_input
    scores = tmp_path_factory.mktemp("dup_scores") / "S"
    assert cli("score", path, "-o", scores, *INFO, "-q") == 0
    return path, scores


def manifest_of(out: Path) -> dict:
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    assert counts["kept"] + counts["dropped"] == counts["input"] == manifest["input"]["records"]
    assert manifest["output"]["records"] == counts["kept"]
    return manifest


def output_ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in out.read_bytes().splitlines()]


def test_cli_duplicates(dup_input, dup_scored, tmp_path):
    path, scores = dup_scored
    records = dup_input[1]
    assert "text_hash" in read_scores(scores).column_names
    out = tmp_path / "a.jsonl"
    assert cli("select", path, "--scores", scores, "-o", out, "--budget", "0.5") == 0
    sel = manifest_of(out)["selection"]
    n_distinct = len({" ".join(r["text"].split()) for r in records})
    dropped = sel["counts"]["dropped_by_reason"]["duplicate_text"]
    assert dropped == 600 - n_distinct and sel["duplicates"]["detected"]
    assert sel["counts"]["kept"] == 300
    texts = [" ".join(r["text"].split()) for r in records if r["id"] in set(output_ids(out))]
    assert len(texts) == len(set(texts)) == 300
    out2 = tmp_path / "b.jsonl"
    args = ("--budget", "0.5", "--keep-duplicates")
    assert cli("select", path, "--scores", scores, "-o", out2, *args) == 0
    sel2 = manifest_of(out2)["selection"]
    assert "duplicate_text" not in sel2["counts"]["dropped_by_reason"]
    assert sel2["counts"]["kept"] == 300 and sel2["duplicates"]["policy"] == "keep-all"


def test_cli_near_duplicates(data_dir, tmp_path):
    records = read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 300)
    records = [r for r in records if len(r["text"].split()) >= 8]
    # No near duplicates of their own: every group is one record and the copy made of it.
    texts = [r["text"] for r in records]
    own = near_duplicates(near_duplicate_keys(texts), np.ones(len(texts), dtype=bool))[0]
    records = [r for i, r in enumerate(records) if i not in set(own.tolist())][:100]
    rng = np.random.default_rng(1)
    source = {}  # near copy -> the record it copies
    before, after = [], []  # half the copies come first in the file, as noise may
    for k, j in enumerate(rng.choice(len(records), size=20, replace=False)):
        words = records[j]["text"].split()
        words.insert(int(rng.integers(len(words))), "really")
        (before if k < 10 else after).append(
            {"id": f"near{k}", "text": " ".join(words).upper(), "label": 0}
        )
        source[f"near{k}"] = records[j]["id"]
    records = [*before, *records, *after]
    order = {r["id"]: i for i, r in enumerate(records)}
    path = tmp_path / "near.jsonl"
    path.write_bytes(jsonl_bytes(records))
    scores = tmp_path / "S"
    assert cli("score", path, "-o", scores, *INFO, "-q") == 0
    assert read_scores(scores).schema.field("near_keys").type.list_size == 20
    out = tmp_path / "kept.jsonl"
    args = ("--budget", "0.5", "--drop-near-duplicates")
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    sel = manifest_of(out)["selection"]
    near = sel["counts"]["dropped_by_reason"]["near_duplicate_text"]
    assert near == sel["duplicates"]["near"]["dropped"] >= 18  # MinHash: (nearly) all found
    assert sel["counts"]["kept"] == 60
    decisions = pq.read_table(out.with_name(out.name + ".decisions.parquet")).to_pylist()
    dropped = {d["id"] for d in decisions if d["reason"] == "near_duplicate_text"}
    pairs = [(c, o) for c, o in source.items() if c in dropped or o in dropped]
    assert len(pairs) == near
    for pair in pairs:  # the later copy in the file is the one dropped
        assert max(pair, key=order.get) in dropped and min(pair, key=order.get) not in dropped
    assert {o for _, o in pairs} & dropped  # an original behind its copy lost
    # --near-duplicate-keep: the copy lower in information entropy stays instead.
    low = tmp_path / "low.jsonl"
    keep = ("--near-duplicate-keep", "information")
    assert cli("select", path, "--scores", scores, "-o", low, *args, *keep) == 0
    sel = manifest_of(low)["selection"]
    assert sel["duplicates"]["near"]["policy"] == "keep-lowest-information"
    assert sel["counts"]["dropped_by_reason"]["near_duplicate_text"] == near
    table = read_scores(scores)
    info = dict(
        zip(table.column("id").to_pylist(), table.column("information").to_pylist(), strict=True)
    )
    decisions = pq.read_table(low.with_name(low.name + ".decisions.parquet")).to_pylist()
    dropped = {d["id"] for d in decisions if d["reason"] == "near_duplicate_text"}
    pairs = [(c, o) for c, o in source.items() if c in dropped or o in dropped]
    assert len(pairs) == near
    for copy, original in pairs:
        lower = copy if info[copy] < info[original] else original
        assert lower not in dropped and {copy, original} - {lower} <= dropped
    # The edit (upper case, a word more) raises the entropy: every original stays now.
    assert not {o for _, o in pairs} & dropped
    # Without --drop-near-duplicates there is no group to choose in: refused before any read.
    plain = ("--budget", "0.5", *INFO, *keep)
    assert cli("select", path, "--scores", scores, "-o", tmp_path / "x.jsonl", *plain) == 2


def test_old_score_directory_without_text_hash(dup_scored, tmp_path):
    path, scores = dup_scored
    old = tmp_path / "old"
    old.mkdir()
    sd = ScoreDir(scores)
    manifest = sd.manifest()
    for shard in manifest["shards"]:
        shard.pop("sha256", None)  # an earlier euds recorded sizes only
        for name in shard["files"]:
            if name.startswith("part-"):
                table = pq.read_table(scores / name).drop_columns(["text_hash"])
                pq.write_table(table, old / name)
                shard["files"][name] = (old / name).stat().st_size
            else:
                (old / name).write_bytes((scores / name).read_bytes())
    for extra in ("late.parquet", "centroids.npy"):
        if (scores / extra).exists():
            (old / extra).write_bytes((scores / extra).read_bytes())
    (old / "_manifest.json").write_text(json.dumps(manifest))
    assert "text_hash" not in read_scores(old).column_names
    out = tmp_path / "old.jsonl"
    assert cli("select", path, "--scores", old, "-o", out, "--budget", "0.5") == 0
    sel = manifest_of(out)["selection"]
    assert sel["counts"]["kept"] == 300
    assert "duplicate_text" not in sel["counts"]["dropped_by_reason"]
    assert sel["duplicates"]["detected"] is False and "text_hash" in sel["duplicates"]["note"]


def test_cli_filter_random(dup_scored, tmp_path):
    path, scores = dup_scored
    kept = []
    for seed in (1, 1, 2):
        out = tmp_path / f"fr{len(kept)}.jsonl"
        args = ("--method", "filter-random", "--budget", "0.2", "--seed", seed)
        assert cli("select", path, "--scores", scores, "-o", out, *args, "--tails", "0.1:0.9") == 0
        sel = manifest_of(out)["selection"]
        assert sel["counts"]["kept"] == 120 and sel["tails"] == [0.1, 0.9]
        assert sel["method"] == "filter-random" and "tail" in sel["counts"]["dropped_by_reason"]
        kept.append(output_ids(out))
    assert kept[0] == kept[1] != kept[2]
    out = tmp_path / "bad.jsonl"
    assert (
        cli("select", path, "--scores", scores, "-o", out, "--budget", "0.1", "--tails", "x") == 2
    )
    out = tmp_path / "fences.jsonl"
    args = ("--method", "filter-random", "--budget", "0.2", "--fences", "1.5")
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    sel = manifest_of(out)["selection"]
    assert sel["counts"]["kept"] == 120 and sel["fences"] == 1.5 and sel["tails"] is None
    assert all(band["fence_k"] == 1.5 for band in sel["intervals"].values())
    for bad in (("--fences", "x"), ("--fences", "0"), ("--fences", "1.5", "--tails", "0.1:0.9")):
        out = tmp_path / "bad-fences.jsonl"
        assert cli("select", path, "--scores", scores, "-o", out, "--budget", "0.1", *bad) == 2
        assert not out.exists()


def test_cli_stratify_field(dup_input, dup_scored, tmp_path):
    path, scores = dup_scored
    records = dup_input[1]
    out = tmp_path / "s.jsonl"
    args = ("--budget", "0.01", "--stratify", "label", "--keep-duplicates")
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    sel = manifest_of(out)["selection"]
    assert sel["stratify"] == "label" and sel["counts"]["kept"] == 6
    sizes = {0: 0, 1: 0}
    for r in records:
        sizes[r["label"]] += 1
    quotas = largest_remainder(np.array([sizes[s["stratum"]] for s in sel["strata"]]), 6)
    assert [s["quota"] for s in sel["strata"]] == quotas.tolist()
    labels = {r["id"]: r["label"] for r in records}
    got = [labels[i] for i in output_ids(out)]
    assert [got.count(s["stratum"]) for s in sel["strata"]] == quotas.tolist()
    bad = tmp_path / "bad.jsonl"
    assert (
        cli("select", path, "--scores", scores, "-o", bad, "--budget", "0.1", "--stratify", "nope")
        == 2
    )


def test_read_field_in_every_format(sst2_files, sst2_records):
    want = [r["label"] for r in sst2_records]
    for fmt, path in sst2_files.items():
        got = read_field(path, "label").tolist()
        if fmt.startswith(("csv", "tsv")):
            got = [int(v) for v in got]  # CSV fields are strings
        assert got == want, fmt
        with pytest.raises(ValueError, match="stratify by"):
            read_field(path, "nope")


def test_cli_run_with_new_options(dup_input, tmp_path):
    path, _ = dup_input
    out = tmp_path / "run"
    args = ("--budget", "0.1", "--method", "filter-random", "--tie-seed", "3", "-q")
    assert cli("run", path, "-o", out, *INFO, *args) == 0
    sel = manifest_of(out / "selected.jsonl")["selection"]
    assert sel["counts"]["kept"] == 60 and sel["seed"] == 3
    assert sel["counts"]["dropped_by_reason"]["duplicate_text"] > 0


@pytest.fixture(scope="module")
def semantic_scored(dup_input, embedder, tmp_path_factory):
    """The duplicate-laden input scored with information and semantic (K = 4)."""
    from euds import ScoreConfig, score

    path, _ = dup_input
    scores = tmp_path_factory.mktemp("sem_scores") / "S"
    config = ScoreConfig(
        signals=("information", "semantic"),
        embedder=str(embedder.folder),
        batch_size=32,
        shard_size=128,
        k=4,
    )
    score(path, scores, config, progress=False)
    return path, scores


def test_cluster_labels_are_the_nearest_centroids(semantic_scored):
    _, scores = semantic_scored
    sd = ScoreDir(scores)
    labels = sd.cluster_labels()
    emb = np.concatenate([np.asarray(sd.embeddings(s), np.float32) for s in sd.shards()])
    assert labels.shape == (600,) and set(np.unique(labels)) <= set(range(4))
    np.testing.assert_array_equal(labels, np.argmax(emb @ sd.centroids().T, axis=1))


def test_cli_stratify_clusters_and_per_signal_positions(semantic_scored, tmp_path):
    path, scores = semantic_scored
    labels = ScoreDir(scores).cluster_labels()
    out = tmp_path / "c.jsonl"
    args = ("--budget", "0.02", "--stratify", "clusters", "--keep-duplicates")
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    sel = manifest_of(out)["selection"]
    assert sel["stratify"] == "clusters" and sel["counts"]["kept"] == 12
    sizes = np.bincount(labels, minlength=4)
    order = [s["stratum"] for s in sel["strata"]]
    quotas = largest_remainder(sizes[order], 12)
    assert [s["quota"] for s in sel["strata"]] == quotas.tolist()
    assert all(q > 0 for q in quotas)  # a small budget still covers every cluster
    ids = np.array(read_scores(scores).column("id").to_pylist())
    kept = np.isin(ids, output_ids(out))
    assert [int(kept[labels == c].sum()) for c in order] == quotas.tolist()

    out2 = tmp_path / "p.jsonl"
    pos = "information=0.7,semantic=0.3"
    assert (
        cli("select", path, "--scores", scores, "-o", out2, "--budget", "0.2", "--position", pos)
        == 0
    )
    sel2 = manifest_of(out2)["selection"]
    assert sel2["position"] == {"information": 0.7, "semantic": 0.3}
    info, sem = sel2["intervals"]["information"], sel2["intervals"]["semantic"]
    assert info["position"] == 0.7 and sem["position"] == 0.3
    assert info["q_lo"] > sem["q_lo"] and "lo" in info and "hi" in sem
    assert sel2["counts"]["kept"] == 120
    for bad in ("information=x", "information=0.7,information=0.2", "0.7,0.3"):
        assert (
            cli(
                "select",
                path,
                "--scores",
                scores,
                "-o",
                tmp_path / "x.jsonl",
                "--budget",
                "0.2",
                "--position",
                bad,
            )
            == 2
        )
    out3 = tmp_path / "single.jsonl"
    assert (
        cli("select", path, "--scores", scores, "-o", out3, "--budget", "0.2", "--position", "0.5")
        == 0
    )
    assert manifest_of(out3)["selection"]["position"] == 0.5


def test_typical_fit_is_checked_before_any_file_is_read(tmp_path, capsys):
    from euds.cli import main
    from euds.config import SelectConfig

    # The default is typicality from 2% up (a pool fit applies) and a uniform draw at 1%.
    SelectConfig(budget=0.05, typical_fit="pool").check()
    SelectConfig(method="typical", budget=0.01, typical_fit="pool").check()
    with pytest.raises(ValueError, match="is for method 'typical', not 'filter-random'"):
        SelectConfig(budget=0.01, typical_fit="pool").check()
    with pytest.raises(ValueError, match="typical_fit must be one of"):
        SelectConfig(budget=0.05, typical_fit="all").check()
    # On the command line: one line, exit 2, before the (absent) input is opened.
    out = tmp_path / "o.jsonl"
    args = ["select", str(tmp_path / "none.jsonl"), "--scores", str(tmp_path / "s"), "-o", str(out)]
    assert main([*args, "--budget", "0.01", "--typical-fit", "pool"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "typical_fit='pool' is for method 'typical'" in err[0]
    assert not out.exists()


# -- damaged texts ------------------------------------------------------------------------------


def test_damaged_texts_dropped_before_the_copy_rules():
    """drop_damaged drops what euds.damage finds, with its own reason and account; it comes
    before the copy rules, so a damaged first copy gives way to its sound near twin."""
    rng = np.random.default_rng(8)
    sound = "an engrossing , beautifully acted story of love and loss in a small café"
    texts = [sound.replace("é", "Ã©") + " ,", sound, "a\x00b c d e f g", "plain \ufffd text"]
    texts += [" ".join(rng.choice(list("abcdefghij"), size=12)) for _ in range(16)]
    n = len(texts)  # 20
    scores = copy_columns(texts, information=rng.normal(size=n))
    opts = {"budget": 0.5, "method": "filter-random", "tails": (0, 1), "texts": texts}
    plain = select(scores, drop_near_duplicates=True, **opts)
    assert plain.reason[1] == "near_duplicate_text"  # the first copy, the damaged one, stays
    assert plain.damaged == {"policy": "keep", "dropped": 0}
    sel = select(scores, drop_near_duplicates=True, drop_damaged=True, **opts)
    check_counts(sel, n, 10)
    assert [sel.reason[i] for i in (0, 2, 3)] == ["damaged_text"] * 3
    assert sel.reason[1] != "near_duplicate_text"  # the sound twin is no copy now
    assert sel.damaged == {
        "policy": "drop",
        "dropped": 3,
        "by_kind": {"replacement_character": 1, "control_character": 1, "mojibake": 1},
    }
    assert sel.summary()["damaged"] == sel.damaged
    assert sel.counts["dropped_by_reason"]["damaged_text"] == 3
    # An unusable record is not looked at: its reason stays its own.
    scores["information"][2] = np.nan
    sel = select(scores, drop_damaged=True, **opts)
    assert sel.reason[2] == "unscored" and sel.damaged["dropped"] == 2
    with pytest.raises(ValueError, match=r"drop_damaged needs texts= \(one per record, 20\)"):
        select(scores, drop_damaged=True, budget=0.5, method="filter-random")
    with pytest.raises(ValueError, match="drop_damaged must be True or False"):
        select(scores, drop_damaged="yes", **opts)


def test_needs_texts_follows_the_rules_and_the_default():
    from euds.config import SelectConfig

    assert SelectConfig(budget=0.05).needs_texts()  # the default drops contained texts there
    assert SelectConfig(budget=0.16).needs_texts()  # the default drops damaged texts there
    assert not SelectConfig(budget=0.16, method="typical").needs_texts()
    assert not SelectConfig(budget=0.16, method="filter-random").needs_texts()
    assert SelectConfig(budget=0.16, method="filter-random", drop_damaged=True).needs_texts()
    assert SelectConfig(budget=0.16, method="typical", drop_contained=True).needs_texts()
    with pytest.raises(ValueError, match="drop_damaged must be True or False"):
        SelectConfig(budget=0.1, drop_damaged=1).check()


def test_cli_drop_damaged(data_dir, tmp_path):
    """--drop-damaged end to end on real records and their broken copies: the manifest counts
    each kind, the decisions name them, none lands in the output, kept + dropped = input."""
    from euds.damage import damage_of

    records = read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 300)
    rng = np.random.default_rng(2)
    broken = []
    for k, j in enumerate(rng.choice(len(records), size=30, replace=False)):
        text = records[j]["text"].replace("'", "’") + " — a naïve café"
        text = [
            text.encode("utf-8").decode("cp1252", errors="replace"),
            text[:5] + "\x1b[0m" + text[5:],
            text.replace(" ", " \ufffd", 1),
        ][k % 3]
        broken.append({"id": f"broken{k}", "text": text, "label": records[j]["label"]})
    records = [*records[:150], *broken, *records[150:]]
    want = {r["id"]: damage_of(r["text"]) for r in records if damage_of(r["text"])}
    assert set(want) == {r["id"] for r in broken}
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(jsonl_bytes(records))
    scores = tmp_path / "S"
    assert cli("score", path, "-o", scores, *INFO, "-q") == 0
    out = tmp_path / "kept.jsonl"
    args = ("--budget", "0.5", "--method", "filter-random", "--drop-damaged", *INFO)
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    sel = manifest_of(out)["selection"]
    assert sel["damaged"]["dropped"] == 30 == sel["counts"]["dropped_by_reason"]["damaged_text"]
    kinds = [want[r["id"]] for r in broken]
    assert sel["damaged"]["by_kind"] == {k: kinds.count(k) for k in sel["damaged"]["by_kind"]}
    assert sel["counts"]["kept"] == 165
    decisions = pq.read_table(out.with_name(out.name + ".decisions.parquet")).to_pylist()
    assert {d["id"] for d in decisions if d["reason"] == "damaged_text"} == set(want)
    assert not set(output_ids(out)) & set(want)
