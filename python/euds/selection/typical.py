"""Typicality-based selection over the stored embeddings (TypiClust, Hacohen et al. 2022;
Sorscher et al. 2022): cluster the pool into as many clusters as the budget keeps and keep from
each cluster one member, its most typical (largest cosine similarity to the cluster's centroid)
at ``position`` 0, its least typical at 1, in between at positions between.

Clustering is FAISS spherical k-means (``niter`` 20, k-means++ starts, seeded and coordinated
by the records' store positions, :func:`plus_plus`). Up to
:data:`ONE_LEVEL_MAX` clusters it runs once over the pool; above, in two levels, so that 16% of
a million records stays minutes, not hours: ``ceil(sqrt(K))`` coarse clusters, then, inside
each, k-means into its share of the K clusters (largest remainder by size). A cluster may end
empty; then the budget is filled with the next member of the larger clusters (a member's
*depth* is its place in its cluster's order of nearness to the position), so the count is
always exact.

Which records the k-means sees (``fit``): ``"eligible"``, those that survived the rules before
the method (tails, copies), or ``"pool"``, every record with an embedding, the others only
masked out of the pick. Fitted on the pool, the clusters do not move when a rule changes which
records are eligible (a tail, which copy of a near duplicate stays), so two such selections
differ mostly where the rule differs (82-100% of the records shared on the experiment's pools,
against 10-54% fitted on the eligible). A cluster whose members are all masked gives its place
to the fill. The cost: a masked record's place goes to the nearest member left, often its own
near-duplicate copy, so the pool fit keeps more junk (docs/results.md, Noise).

``"distinct"`` is the pool fit with the two ways it keeps junk taken away. Copies count once:
the k-means sees the first record of each group of copies (exact or near,
:func:`euds.duplicates.copy_groups`, over every embedded record, so whichever copy a rule keeps
the fit is the same), and the copy a rule keeps stands in its group's place (its label and
similarity), so a pair no longer draws a centroid of its own. And a cluster most of whose
fitted groups the rules drop (junk's clusters, cut by the tails) gives its place to the fill;
its members left are kept only to fill. On the experiment's pools it keeps less junk than the
pool fit in 18 of 18 noisy cells, and no more than the eligible fit in 15 of 18, as still as
the pool fit (95% shared).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from euds.selection.quotas import largest_remainder, tie_keys

ONE_LEVEL_MAX = 256
NITER = 20
TYPICAL = "typical"  # the method's name
FITS = ("eligible", "pool", "distinct")
ALIVE_MIN = 0.5  # the share of a cluster's fitted groups the rules must leave ("distinct")
PLUS_PLUS_SAMPLE = 20_000
# How the k-means is started, in the manifest and in the research screens' cache keys.
START = "k-means++ coordinated by store position"
SAMPLE_STREAM = 1 << 40  # the samples' stream; plus_plus's steps are streams 0 .. k - 1
POINTS_PER_CENTROID = 256  # the k-means trains on at most this many rows a cluster


def check_typical_fit(typical_fit: Any, method: str | None) -> None:
    """``typical_fit`` is one of :data:`FITS`, and other than the default only for typical."""
    if typical_fit not in FITS:
        raise ValueError(f"typical_fit must be one of {FITS}, got {typical_fit!r}")
    if typical_fit != FITS[0] and method != TYPICAL:
        raise ValueError(
            f"typical_fit={typical_fit!r} is for method 'typical', not {method or 'a band'!r}"
        )


def plus_plus(x: np.ndarray, k: int, seed: int, keys: np.ndarray) -> np.ndarray:
    """k-means++ starting centroids (Arthur and Vassilvitskii 2007) of unit rows: the first
    uniform, each next drawn with probability in proportion to its squared distance from the
    nearest centroid so far; on at most :data:`PLUS_PLUS_SAMPLE` rows.

    The draws are coordinated by ``keys`` (each row's store position): step ``j`` gives every
    row an exponential variate from the seeded hash of its key and draws the row whose variate
    over its weight is smallest (an exponential race: row ``i`` wins with probability
    ``w_i / sum(w)``, k-means++ exactly), and the sample is the rows with the smallest hashes.
    So a row that is not drawn can leave or join without changing any draw. On 20,000 clustered
    vectors, one record fewer left 7-17% of a positional draw's subset in place and 79-84% of
    this one's (bench/typical.py); what is left moving is Lloyd's iterations and, above
    :data:`ONE_LEVEL_MAX`, the split of the clusters between the coarse ones."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) != len(x):
        raise ValueError(f"keys has {len(keys)} rows, x {len(x)}: one key per row")
    if len(x) > PLUS_PLUS_SAMPLE:
        at = _coordinated_sample(keys, PLUS_PLUS_SAMPLE, seed)
        x, keys = x[at], keys[at]
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    weights = np.ones(n)
    for j in range(k):
        # Step j's own stream, so that the races of two steps are independent.
        bits = tie_keys(keys, _stream_seed(seed, j)) >> np.uint64(11)
        uniform = (bits.astype(np.float64) + 0.5) * 2.0**-53
        w = weights if weights.sum() > 0 else np.ones(n)  # every row on a centre: uniform
        with np.errstate(divide="ignore"):
            at = int(np.argmin(np.where(w > 0, -np.log(uniform) / w, np.inf)))
        centres[j] = x[at]
        d2 = np.maximum(2.0 - 2.0 * (x @ x[at]), 0.0).astype(np.float64)
        weights = d2 if j == 0 else np.minimum(weights, d2)
    return centres


def _coordinated_sample(keys: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The places (sorted) of the ``size`` keys with the smallest seeded hashes: a uniform
    sample that a key outside it can leave or join without changing it. One stream for every
    sample, so that a smaller sample lies inside a larger one."""
    hashes = tie_keys(keys, _stream_seed(seed, SAMPLE_STREAM))
    return np.sort(np.lexsort((keys, hashes))[:size])


def _stream_seed(seed: int, stream: int) -> int:
    """A seed for the ``stream``-th independent draw of ``seed`` (a row hash of the stream)."""
    return int(tie_keys(np.array([stream]), seed)[0] >> np.uint64(2))


def kmeans_labels(
    x: np.ndarray, k: int, seed: int, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(label of every row, unit centroids ``[k, d]``) of spherical k-means on unit rows,
    started from :func:`plus_plus` with the rows' ``keys`` (from a random start, k-means
    readily merges two clear clusters and splits a third). Trained on at most
    :data:`POINTS_PER_CENTROID` rows a cluster, as FAISS would, but the sample is coordinated
    as the start is (the rows with the smallest hashes; FAISS's own draw is by position)."""
    import faiss

    n, d = x.shape
    if k >= n:  # every row its own cluster
        return np.arange(n, dtype=np.int64), x.copy()
    train, train_keys = x, keys
    if n > k * POINTS_PER_CENTROID:
        at = _coordinated_sample(keys, k * POINTS_PER_CENTROID, seed)
        train, train_keys = x[at], keys[at]
    km = faiss.Kmeans(
        d,
        k,
        niter=NITER,
        spherical=True,
        seed=seed,
        min_points_per_centroid=1,  # few points per cluster is the point here: no warning
        max_points_per_centroid=POINTS_PER_CENTROID,  # never reached: sampled above
        verbose=False,
    )
    km.train(train, init_centroids=plus_plus(train, k, seed, train_keys))
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64), centroids


def clusters(
    x: np.ndarray, k: int, seed: int, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(label of every row, its similarity to its centroid, what the manifest says) for ``k``
    clusters of the unit rows ``x`` (``keys``: their store positions, which coordinate the
    k-means++ draws): one level up to :data:`ONE_LEVEL_MAX`, else two."""
    if k <= ONE_LEVEL_MAX:
        labels, centroids = kmeans_labels(x, k, seed, keys)
        sims = np.einsum("ij,ij->i", x, centroids[labels])
        return labels, sims, {"scheme": "one-level", "clusters": k}
    coarse = min(math.ceil(math.sqrt(k)), len(x))
    top, _ = kmeans_labels(x, coarse, seed, keys)
    sizes = np.bincount(top, minlength=coarse)
    shares = largest_remainder(sizes, k)
    labels = np.full(len(x), -1, dtype=np.int64)
    sims = np.full(len(x), -np.inf, dtype=np.float32)
    next_label = 0
    for c in range(coarse):
        members = np.flatnonzero(top == c)
        if shares[c] == 0 or len(members) == 0:
            continue  # a tiny coarse cluster: its members wait for the fill
        sub, centroids = kmeans_labels(x[members], int(shares[c]), seed + c + 1, keys[members])
        labels[members] = sub + next_label
        sims[members] = np.einsum("ij,ij->i", x[members], centroids[sub])
        next_label += int(shares[c])
    return labels, sims, {"scheme": "two-level", "clusters": k, "coarse": coarse}


def typical_pick(
    embeddings: np.ndarray,
    rows: np.ndarray,
    keep_n: int,
    position: float,
    seed: int,
    eligible: np.ndarray | None = None,
    copy_of: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``keep_n`` of ``rows`` (whose unit embeddings are ``embeddings``): one per cluster of
    ``keep_n`` clusters, the member nearest ``position`` in its cluster's typicality order.
    Given ``eligible`` (bool per row), the clusters are fitted on every row and only the
    eligible ones may be kept (``fit="pool"``). Given ``copy_of`` too (per row, the position in
    ``rows`` of the first of its group of copies), only each group's first is fitted, and a
    cluster keeps a member only if at least :data:`ALIVE_MIN` of its groups have one eligible
    (``fit="distinct"``)."""
    rows = np.asarray(rows, dtype=np.int64)
    details: dict[str, Any] = {
        "clusters": keep_n,
        "position": position,
        "niter": NITER,
        "start": START,
    }
    if eligible is not None:
        eligible = np.asarray(eligible, dtype=bool)
        details.update(fit="pool", fitted=len(rows))
        candidates = rows[eligible]
    else:
        details["fit"] = "eligible"
        candidates = rows
    if copy_of is not None:
        if eligible is None:
            raise ValueError("copy_of (a distinct fit) needs eligible= (which rows may be kept)")
        copy_of = np.asarray(copy_of, dtype=np.int64)
        heads = np.flatnonzero(copy_of == np.arange(len(rows)))
        details.update(fit="distinct", fitted=len(heads))
    if keep_n == 0:
        return rows[:0], details
    if keep_n >= len(candidates):
        return candidates, {**details, "scheme": "all"}
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if copy_of is None:
        labels, sims, how = clusters(x, keep_n, seed, rows)
    else:
        labels, sims, how = clusters(x[heads], min(keep_n, len(heads)), seed, rows[heads])
        at = np.searchsorted(heads, copy_of)  # each row's group, as a place in heads
        labels, sims = labels[at], sims[at]
        # A group lives if a rule left one of its copies; a cluster, if most of its groups do.
        alive = np.bincount(at, weights=eligible, minlength=len(heads)) > 0
        k = int(labels.max()) + 2
        groups = np.bincount(labels[heads] + 1, minlength=k)
        share = np.bincount(labels[heads] + 1, weights=alive, minlength=k) / np.maximum(groups, 1)
        dead = share[labels + 1] < ALIVE_MIN
        details["given_to_fill"] = int(((share < ALIVE_MIN) & (groups > 0))[1:].sum())
        labels = np.where(dead, -1, labels)
    details.update(how)
    if eligible is not None:
        labels, sims = labels[eligible], sims[eligible]
    picked, filled = pick_members(labels, sims, candidates, keep_n, position, seed)
    details["filled"] = filled
    return picked, details


def pick_members(
    labels: np.ndarray,
    sims: np.ndarray,
    rows: np.ndarray,
    keep_n: int,
    position: float,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Given each row's cluster (-1: none) and its similarity to its centroid, ``keep_n`` rows
    (sorted) and how many came from the fill: first every cluster's member nearest ``position``
    in its typicality order (most typical = 0, least = 1, as a share of the cluster's size
    minus one), then, while the budget is not full, the next nearest of the larger clusters.
    Ties are broken by the seeded row hash."""
    hashes = tie_keys(rows, seed)
    # Typicality order inside each cluster (most typical first), as a share q in [0, 1].
    order = np.lexsort((hashes, -sims, labels))
    first = np.searchsorted(labels[order], labels[order], side="left")
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - first
    size = np.bincount(labels + 1)[labels + 1]
    q = np.where(size > 1, rank / np.maximum(size - 1, 1), 0.0)
    # Depth: the member's place in its cluster by nearness to the position.
    order = np.lexsort((hashes, np.abs(q - position), labels))
    first = np.searchsorted(labels[order], labels[order], side="left")
    depth = np.empty(len(rows), dtype=np.int64)
    depth[order] = np.arange(len(rows)) - first
    depth[labels < 0] = len(rows)  # outside every cluster: only to fill
    pick = np.lexsort((hashes, -size, depth))[:keep_n]
    return rows[np.sort(pick)], int((depth[pick] > 0).sum())
