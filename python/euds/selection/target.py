"""Target matching: how much each pool record looks like a sample of the texts a user cares
about (unlabelled), as a score column ``target`` (higher = more target-like) that
``method="target"`` keeps the top of.

* ``embedding`` (default): the mean cosine similarity of the record's stored embedding to its
  ``k`` nearest target embeddings (exact search, FAISS), as RDS+ (Ivison et al. 2025) ranks.
* ``ngram``: DSIR's importance weight (Xie et al. 2023): hashed unigram and bigram counts of the
  folded words, 10,000 buckets; ``sum_f c_f(x) (ln p_target(f) - ln p_pool(f))`` with add-one
  smoothing, the log likelihood ratio of the text under the two bag-of-n-gram models.
* ``both``: the mean of the two percentile ranks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from euds import _core

TARGET = "target"
TARGET_SCORES = ("embedding", "ngram", "both")
NEIGHBOURS = 10
BUCKETS = 10_000


def embedding_similarity(
    embeddings: np.ndarray, target: np.ndarray, k: int = NEIGHBOURS
) -> np.ndarray:
    """Mean cosine similarity of each row to its ``k`` nearest target rows (NaN rows stay NaN;
    target rows with NaN are left out)."""
    import faiss

    t = np.ascontiguousarray(target, dtype=np.float32)
    t = t[~np.isnan(t).any(axis=1)]
    if len(t) == 0:
        raise ValueError("the target sample has no text to compare with")
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(t.shape[1])
    index.add(t)
    out = np.full(len(embeddings), np.nan)
    k = min(k, len(t))
    for a in range(0, len(embeddings), 1 << 15):
        e = np.asarray(embeddings[a : a + (1 << 15)], dtype=np.float32)
        ok = ~np.isnan(e).any(axis=1)
        if ok.any():
            x = np.ascontiguousarray(e[ok])
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            sims, _ = index.search(x, k)
            out[a : a + len(e)][ok] = sims.mean(axis=1)
    return out


def _features(texts: Sequence[str | None], buckets: int) -> list[np.ndarray]:
    """Bucket ids of every folded word and word bigram of each text (None: none)."""
    from euds.duplicates import fold_for_near_duplicates

    memo: dict[str, int] = {}

    def word(w: str) -> int:
        h = memo.get(w)
        if h is None:
            h = memo[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest())
        return h

    out = []
    for text in texts:
        words = fold_for_near_duplicates(text).split() if text else []
        h = np.array([word(w) for w in words], dtype=np.uint64)
        bigrams = (h[:-1] * np.uint64(0x9E3779B97F4A7C15)) ^ h[1:] if len(h) > 1 else h[:0]
        out.append((np.concatenate([h, bigrams]) % np.uint64(buckets)).astype(np.int64))
    return out


def ngram_importance(
    texts: Sequence[str | None], target_texts: Sequence[str | None], buckets: int = BUCKETS
) -> np.ndarray:
    """DSIR's log importance weight of each text (NaN for a text without words)."""
    pool = _features(texts, buckets)
    goal = _features(target_texts, buckets)
    counts_pool = np.bincount(np.concatenate([*pool, np.zeros(0, np.int64)]), minlength=buckets)
    counts_goal = np.bincount(np.concatenate([*goal, np.zeros(0, np.int64)]), minlength=buckets)
    if counts_goal.sum() == 0:
        raise ValueError("the target sample has no words to compare with")
    log_ratio = np.log((counts_goal + 1) / (counts_goal.sum() + buckets)) - np.log(
        (counts_pool + 1) / (counts_pool.sum() + buckets)
    )
    return np.array([log_ratio[f].sum() if len(f) else np.nan for f in pool])


def target_column(
    kind: str,
    *,
    embeddings: np.ndarray | None = None,
    target_embeddings: np.ndarray | None = None,
    texts: Sequence[str | None] | None = None,
    target_texts: Sequence[str | None] | None = None,
) -> np.ndarray:
    """The ``target`` score column of a pool for ``kind`` in :data:`TARGET_SCORES`."""
    if kind not in TARGET_SCORES:
        raise ValueError(f"target score must be one of {TARGET_SCORES}, got {kind!r}")
    parts = []
    if kind in ("embedding", "both"):
        if embeddings is None or target_embeddings is None:
            raise ValueError(
                "the embedding target score needs the pool's and the target's embeddings"
            )
        parts.append(embedding_similarity(embeddings, target_embeddings))
    if kind in ("ngram", "both"):
        if texts is None or target_texts is None:
            raise ValueError("the ngram target score needs the pool's and the target's texts")
        parts.append(ngram_importance(texts, target_texts))
    if len(parts) == 1:
        return parts[0]
    return _core.mean_rank(np.stack([_core.percentile_ranks(p) for p in parts]))
