"""Typicality-based selection over the stored embeddings (TypiClust, Hacohen et al. 2022;
Sorscher et al. 2022): cluster the pool into as many clusters as the budget keeps and keep from
each cluster one member, its most typical (largest cosine similarity to the cluster's centroid)
at ``position`` 0, its least typical at 1, in between at positions between.

Clustering is FAISS spherical k-means (``niter`` 20, seeded). Up to :data:`ONE_LEVEL_MAX`
clusters it runs once over the pool; above, in two levels, so that 16% of a million records
stays minutes, not hours: ``ceil(sqrt(K))`` coarse clusters, then, inside each, k-means into
its share of the K clusters (largest remainder by size). A cluster may end empty; then the
budget is filled with the next member of the larger clusters (a member's *depth* is its place
in its cluster's order of nearness to the position), so the count is always exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from euds.select.quotas import largest_remainder, tie_keys

ONE_LEVEL_MAX = 256
NITER = 20


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(label of every row, unit centroids ``[k, d]``) of spherical k-means on unit rows."""
    import faiss

    n, d = x.shape
    if k >= n:  # every row its own cluster
        return np.arange(n, dtype=np.int64), x.copy()
    km = faiss.Kmeans(
        d,
        k,
        niter=NITER,
        spherical=True,
        seed=seed,
        min_points_per_centroid=1,  # few points per cluster is the point here: no warning
        max_points_per_centroid=256,
        verbose=False,
    )
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64), centroids


def clusters(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(label of every row, its similarity to its centroid, what the manifest says) for ``k``
    clusters of the unit rows ``x``: one level up to :data:`ONE_LEVEL_MAX`, else two."""
    if k <= ONE_LEVEL_MAX:
        labels, centroids = kmeans_labels(x, k, seed)
        sims = np.einsum("ij,ij->i", x, centroids[labels])
        return labels, sims, {"scheme": "one-level", "clusters": k}
    coarse = min(math.ceil(math.sqrt(k)), len(x))
    top, _ = kmeans_labels(x, coarse, seed)
    sizes = np.bincount(top, minlength=coarse)
    shares = largest_remainder(sizes, k)
    labels = np.full(len(x), -1, dtype=np.int64)
    sims = np.full(len(x), -np.inf, dtype=np.float32)
    next_label = 0
    for c in range(coarse):
        members = np.flatnonzero(top == c)
        if shares[c] == 0 or len(members) == 0:
            continue  # a tiny coarse cluster: its members wait for the fill
        sub, centroids = kmeans_labels(x[members], int(shares[c]), seed + c + 1)
        labels[members] = sub + next_label
        sims[members] = np.einsum("ij,ij->i", x[members], centroids[sub])
        next_label += int(shares[c])
    return labels, sims, {"scheme": "two-level", "clusters": k, "coarse": coarse}


def typical_pick(
    embeddings: np.ndarray, rows: np.ndarray, keep_n: int, position: float, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """``keep_n`` of ``rows`` (whose unit embeddings are ``embeddings``): one per cluster of
    ``keep_n`` clusters, the member nearest ``position`` in its cluster's typicality order."""
    rows = np.asarray(rows, dtype=np.int64)
    details: dict[str, Any] = {"clusters": keep_n, "position": position, "niter": NITER}
    if keep_n == 0:
        return rows[:0], details
    if keep_n >= len(rows):
        return rows, {**details, "scheme": "all"}
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels, sims, how = clusters(x, keep_n, seed)
    details.update(how)
    hashes = tie_keys(rows, seed)
    # Typicality order inside each cluster (most typical first), as a share q in [0, 1].
    order = np.lexsort((hashes, -sims, labels))
    first = np.searchsorted(labels[order], labels[order], side="left")
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - first
    size = np.bincount(labels + 1)[labels + 1]
    q = np.where(size > 1, rank / np.maximum(size - 1, 1), 0.0)
    # Depth: the member's place in its cluster by nearness to the position.
    near = np.abs(q - position)
    order = np.lexsort((hashes, near, labels))
    first = np.searchsorted(labels[order], labels[order], side="left")
    depth = np.empty(len(rows), dtype=np.int64)
    depth[order] = np.arange(len(rows)) - first
    depth[labels < 0] = len(rows)  # outside every cluster: only to fill
    pick = np.lexsort((hashes, -size, depth))[:keep_n]
    details["filled"] = int((depth[pick] > 0).sum())
    return rows[np.sort(pick)], details
