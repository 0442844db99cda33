"""Target matching (euds.selection.target): the embedding similarity against brute force, DSIR's
importance weight against a loop reference, and select(method="target")."""

import hashlib
import itertools
from collections import Counter

import numpy as np
import pytest

from euds.duplicates import fold_for_near_duplicates
from euds.selection import select, target_column
from euds.selection.target import embedding_similarity, ngram_importance


def unit(rng, n, d=8):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_embedding_similarity_is_the_mean_of_the_k_nearest():
    rng = np.random.default_rng(0)
    pool, goal = unit(rng, 50), unit(rng, 30)
    pool[3] = np.nan
    got = embedding_similarity(pool, goal, k=4)
    sims = pool @ goal.T
    want = np.sort(sims, axis=1)[:, -4:].mean(axis=1)
    assert np.isnan(got[3])
    np.testing.assert_allclose(np.delete(got, 3), np.delete(want, 3), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no text"):
        embedding_similarity(pool, np.full((2, 8), np.nan))


def ngram_reference(texts, goal, buckets):
    def features(text):
        words = fold_for_near_duplicates(text).split() if text else []
        h = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest()) for w in words]
        grams = h + [((a * 0x9E3779B97F4A7C15) % 2**64) ^ b for a, b in itertools.pairwise(h)]
        return [g % buckets for g in grams]

    pool_counts, goal_counts = Counter(), Counter()
    for t in texts:
        pool_counts.update(features(t))
    for t in goal:
        goal_counts.update(features(t))
    n_pool, n_goal = sum(pool_counts.values()), sum(goal_counts.values())
    out = []
    for t in texts:
        f = features(t)
        out.append(
            sum(
                np.log((goal_counts[b] + 1) / (n_goal + buckets))
                - np.log((pool_counts[b] + 1) / (n_pool + buckets))
                for b in f
            )
            if f
            else np.nan
        )
    return np.array(out)


def test_ngram_importance_matches_the_reference():
    texts = ["the film is great", "Das Wetter ist schön", "", None, "great film, great cast"]
    goal = ["a great film", "the cast is great"]
    got = ngram_importance(texts, goal, buckets=97)
    np.testing.assert_allclose(got, ngram_reference(texts, goal, 97), rtol=1e-12, equal_nan=True)
    assert got[0] > got[1] and got[4] > got[1]  # in-domain English above German
    with pytest.raises(ValueError, match="no words"):
        ngram_importance(texts, ["!!"])


def test_select_target_keeps_the_most_target_like():
    rng = np.random.default_rng(1)
    n = 300
    t = rng.normal(size=n)
    t[7] = np.nan
    s = {"target": t, "information": rng.normal(size=n)}
    sel = select(s, method="target", budget=0.1, seed=3)
    assert sel.keep.sum() == 30 and sel.reason[7] == "unscored"
    assert t[sel.keep].min() >= np.nanmax(t[~sel.keep & ~np.isnan(t)])
    assert set(sel.counts["dropped_by_reason"]) == {"less_target_like", "unscored"}
    assert sel.details["kept_min"] == pytest.approx(t[sel.keep].min())
    halves = select(s, method="target", budget=0.2, stratify=np.arange(n) % 2)
    assert halves.keep[::2].sum() == halves.keep[1::2].sum() == 30
    with pytest.raises(ValueError, match="'target' score column"):
        select({"information": t}, method="target", budget=0.1)


def test_target_column_both_is_the_mean_rank():
    rng = np.random.default_rng(2)
    pool, goal = unit(rng, 20), unit(rng, 5)
    texts = [f"w{i % 4} w{i % 3}" for i in range(20)]
    both = target_column(
        "both", embeddings=pool, target_embeddings=goal, texts=texts, target_texts=["w1 w2"]
    )
    assert both.shape == (20,) and np.all((both > 0) & (both < 1))
    with pytest.raises(ValueError, match="one of"):
        target_column("cosine", embeddings=pool, target_embeddings=goal)
    with pytest.raises(ValueError, match="texts"):
        target_column("ngram", embeddings=pool, target_embeddings=goal)
