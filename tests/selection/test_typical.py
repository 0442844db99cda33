"""Typicality-based selection (select(method="typical")): one member per cluster, the member's
place set by the position, exact counts when clusters end empty, the two-level scheme, and the
pick against a loop reference."""

import numpy as np
import pytest

from euds.selection import select
from euds.selection import typical as typical_module
from euds.selection.quotas import tie_keys
from euds.selection.typical import pick_members


def blobs(k, per, d=16, spread=0.05, seed=0):
    """k well-separated unit-norm blobs of ``per`` points; the first point of each is its centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = []
    for c in centres:
        pts = c + spread * rng.normal(size=(per, d)) * np.linspace(0, 1, per)[:, None]
        x.append(pts / np.linalg.norm(pts, axis=1, keepdims=True))
    return np.concatenate(x).astype(np.float32), np.repeat(np.arange(k), per)


def test_one_typical_member_per_blob():
    x, blob = blobs(8, 50)
    n = len(x)
    sel = select({"information": np.zeros(n)}, method="typical", budget=8 / n, embeddings=x)
    assert sel.keep.sum() == 8 and sel.signals == []
    assert sorted(blob[sel.keep]) == list(range(8))  # one per blob
    assert sel.details["clusters"] == 8 and sel.details["scheme"] == "one-level"
    assert sel.counts["dropped_by_reason"] == {"other_in_cluster": n - 8}
    # Most typical: near the blob's centre (its first points); least typical: its far edge.
    assert (np.flatnonzero(sel.keep) % 50 < 10).all()
    far = select({"g": np.zeros(n)}, method="typical", budget=8 / n, embeddings=x, position=1.0)
    assert (np.flatnonzero(far.keep) % 50 > 30).all()
    assert far.position == 1.0


def pick_reference(labels, sims, rows, keep_n, position, seed):
    """The rule of pick_members, written as loops."""
    hashes = tie_keys(rows, seed)
    members = {}
    for i, c in enumerate(labels):
        members.setdefault(int(c), []).append(i)
    depth = {}
    for c, idx in members.items():
        if c < 0:
            for i in idx:
                depth[i] = len(rows)
            continue
        by_typicality = sorted(idx, key=lambda i: (-sims[i], hashes[i]))
        q = {i: (r / (len(idx) - 1) if len(idx) > 1 else 0.0) for r, i in enumerate(by_typicality)}
        by_nearness = sorted(idx, key=lambda i: (abs(q[i] - position), hashes[i]))
        for d, i in enumerate(by_nearness):
            depth[i] = d
    size = {i: len(members[int(labels[i])]) for i in range(len(rows))}
    order = sorted(range(len(rows)), key=lambda i: (depth[i], -size[i], hashes[i]))
    return np.sort(rows[order[:keep_n]])


@pytest.mark.parametrize("seed", range(25))
def test_pick_members_matches_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    labels = rng.integers(-1, int(rng.integers(1, 8)), size=n)
    sims = rng.choice([0.1, 0.5, 0.9], size=n) if seed % 2 else rng.random(n)  # ties too
    rows = np.sort(rng.choice(1000, size=n, replace=False))
    keep_n = int(rng.integers(0, n + 1))
    position = float(rng.choice([0.0, 0.3, 0.5, 1.0]))
    got, _ = pick_members(labels, sims, rows, keep_n, position, seed)
    np.testing.assert_array_equal(got, pick_reference(labels, sims, rows, keep_n, position, seed))


def test_empty_clusters_are_filled_to_the_exact_count():
    labels = np.array([0, 0, 0, 0, 2, 2])  # cluster 1 is empty
    sims = np.array([0.9, 0.8, 0.7, 0.6, 0.9, 0.5])
    rows = np.arange(6)
    got, filled = pick_members(labels, sims, rows, 3, 0.0, 0)
    assert got.tolist() == [0, 1, 4] and filled == 1  # the fill comes from the larger cluster


def test_two_level_scheme_counts_and_coverage(monkeypatch):
    monkeypatch.setattr(typical_module, "ONE_LEVEL_MAX", 4)
    x, blob = blobs(30, 20, seed=3)
    n = len(x)
    sel = select({"g": np.zeros(n)}, method="typical", budget=30 / n, embeddings=x, seed=1)
    assert sel.keep.sum() == 30
    assert sel.details["scheme"] == "two-level" and sel.details["coarse"] == 6
    assert len(np.unique(blob[sel.keep])) >= 27  # nearly one per blob, through two levels
    again = select({"g": np.zeros(n)}, method="typical", budget=30 / n, embeddings=x, seed=1)
    np.testing.assert_array_equal(sel.keep, again.keep)


def test_typical_options_and_errors():
    x, _ = blobs(4, 25)
    n = len(x)
    s = {"information": np.arange(n, dtype=float), "text_hash": np.array(["h"] * 2 + [None] * 98)}
    x[5] = np.nan  # no text: no embedding
    sel = select(s, method="typical", budget=0.1, embeddings=x)
    assert (
        sel.keep.sum() == 10 and sel.reason[5] == "unscored" and sel.reason[1] == "duplicate_text"
    )
    # Tails on named signals first; a quota per stratum, typical inside each.
    tailed = select(
        s, method="typical", budget=0.1, embeddings=x, signals=["information"], tails=(0.1, 0.9)
    )
    assert tailed.keep.sum() == 10 and not tailed.keep[:9].any()
    halves = select(s, method="typical", budget=0.2, embeddings=x, stratify=np.arange(n) < 50)
    assert halves.keep[:50].sum() == halves.keep[50:].sum() == 10
    with pytest.raises(ValueError, match="embeddings="):
        select(s, method="typical", budget=0.1)
    with pytest.raises(ValueError, match=r"embeddings must be \[n=100"):
        select(s, method="typical", budget=0.1, embeddings=x[:10])
    with pytest.raises(ValueError, match="position for typical"):
        select(s, method="typical", budget=0.1, embeddings=x, position={"information": 0.2})
    with pytest.raises(ValueError, match="tails= needs signals="):
        select(s, method="typical", budget=0.1, embeddings=x, tails=(0.1, 0.9))


def pool_fit_reference(x, eligible, keep_n, position, seed):
    """typical_fit="pool" as its definition reads: k-means on every embedded row, then the
    loop reference of the pick over the eligible rows only."""
    fit = np.flatnonzero(~np.isnan(x[:, 0]))
    unit = x[fit] / np.linalg.norm(x[fit], axis=1, keepdims=True)
    labels, sims, _ = typical_module.clusters(unit, keep_n, seed)
    mask = eligible[fit]
    return pick_reference(labels[mask], sims[mask], fit[mask], keep_n, position, seed)


@pytest.mark.parametrize("seed", range(6))
def test_pool_fit_matches_its_reference(seed):
    rng = np.random.default_rng(seed)
    x, _ = blobs(6, 30, seed=seed)
    n = len(x)
    x[rng.choice(n, size=5, replace=False)] = np.nan  # no embedding: outside the fit
    info = rng.random(n)
    position = float(rng.choice([0.0, 0.4, 1.0]))
    keep_n = int(rng.integers(3, 40))
    sel = select(
        {"information": info},
        method="typical",
        budget=keep_n / n,
        embeddings=x,
        signals=["information"],
        tails=(0.1, 0.9),
        position=position,
        seed=seed,
        typical_fit="pool",
    )
    eligible = (sel.reason == "") | (sel.reason == "other_in_cluster")
    want = pool_fit_reference(x, eligible, keep_n, position, seed)
    np.testing.assert_array_equal(np.flatnonzero(sel.keep), want)
    assert sel.details["fit"] == "pool" and sel.details["fitted"] == n - 5


def test_pool_fit_keeps_the_clusters_when_a_rule_changes():
    x, blob = blobs(8, 50)
    n = len(x)
    info = np.arange(n, dtype=float)  # the low tail is blob 0's first (most typical) points
    common = {"method": "typical", "budget": 8 / n, "embeddings": x, "typical_fit": "pool"}
    whole = select({"information": info}, **common)
    tailed = select({"information": info}, signals=["information"], tails=(0.05, 1.0), **common)
    assert sorted(blob[tailed.keep]) == list(range(8))
    moved = np.flatnonzero(whole.keep != tailed.keep)
    assert set(blob[moved]) == {0}  # only the masked blob's pick changed
    assert not tailed.keep[:20].any() and tailed.reason[0] == "tail"


def test_typical_fit_errors():
    x, _ = blobs(4, 25)
    s = {"information": np.arange(100, dtype=float)}
    with pytest.raises(ValueError, match="typical_fit must be one of"):
        select(s, method="typical", budget=0.1, embeddings=x, typical_fit="all")
    with pytest.raises(ValueError, match="is for method 'typical', not 'filter-random'"):
        select(s, method="filter-random", budget=0.1, typical_fit="pool")
    with pytest.raises(ValueError, match="not 'single'"):
        select(s, signals=["information"], budget=0.1, typical_fit="pool")
    # The default at 16% is typicality: the fit applies to it.
    sel = select(s, budget=0.16, embeddings=x, typical_fit="pool")
    assert sel.details["fit"] == "pool" and sel.keep.sum() == 16
