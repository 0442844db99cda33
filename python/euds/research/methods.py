"""The methods the experiment compares, by name, and how each picks a subset of a pool
(:func:`choose`): the one place their names live, for the runner and the report alike.

* **Baselines** (:data:`BASELINES`): ``random`` (uniform), ``random+classes`` (stratified by
  label), ``random+clusters`` (stratified by the pool's k-means clusters), and for each candidate
  ``X~length``: random, matching X's count in every length decile of the pool. Every random draw
  goes through :func:`random_rng`, one seeded generator per (seed, budget, kind of draw).
* **Candidates** (:data:`CANDIDATES`): :func:`euds.selection.select` settings — the entropy bands
  (each signal, IGSE ``intersect`` and ``mean-rank``, cluster-stratified intersect), filter-then-
  sample, coverage (CCS), typicality (TypiClust; ``atypical`` keeps the least typical), target
  matching against the dev split's texts (unlabelled), ``+clean`` variants that also drop
  near-duplicate and contained texts, and ``+clean-gen`` ones that keep of each near-duplicate
  group the copy lowest in generative entropy instead of the first (``+clean-none``: no copy);
  ``target+tails`` drops each signal's quantile tails before matching;
  ``-pool`` typicality fits its k-means on the whole pool (the rules' drops only masked),
  ``-distinct`` on the pool with each group of copies once, ``+clean-bpb`` also drops the tails
  of bits per byte, ``-damaged`` also drops texts with a broken encoding (:mod:`euds.damage`);
  ``typical+tails`` and ``typical+copies`` are ``typical+clean``'s two parts alone;
  ``+fences`` drops each signal's outliers (Tukey's fences, k = 1.5) instead of its quantile tails;
  ``typical+damaged`` drops damaged texts only. :data:`NEEDS_TARGET` are screened but never the
  default: a user has no target sample unless they bring one.
* ``full``: the whole pool; ``default``: the candidate the rule chose at that budget;
  ``@full-steps``: a fine-tune trained for as many steps as the whole pool (:data:`STEP_MATCHED`).
* What decides a method's screen, for its cache key (:func:`screen_settings`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from euds.selection.typical import START as TYPICAL_START
from euds.selection.typical import TYPICAL

ALL = ["information", "generative", "semantic"]
TAILS = (0.05, 0.95)
FENCES = 1.5  # Tukey's outlier rule, as he gave it
CLEAN = {"drop_near_duplicates": True, "drop_contained": True}
CLEAN_GEN = {**CLEAN, "near_duplicate_keep": "generative"}
CLEAN_NONE = {**CLEAN, "near_duplicate_keep": "none"}
DAMAGED = {"drop_damaged": True}
CANDIDATES: dict[str, dict[str, Any]] = {
    "information": {"signals": ["information"]},
    "generative": {"signals": ["generative"]},
    "semantic": {"signals": ["semantic"]},
    "intersect": {"signals": ALL, "method": "intersect"},
    "mean-rank": {"signals": ALL, "method": "mean-rank"},
    "intersect+clusters": {"signals": ALL, "method": "intersect", "stratify": "clusters"},
    "filter-random": {"signals": ALL, "method": "filter-random"},
    "filter-random+clusters": {"signals": ALL, "method": "filter-random", "stratify": "clusters"},
    "filter-random+clean": {"signals": ALL, "method": "filter-random", **CLEAN},
    "filter-random+clean-gen": {"signals": ALL, "method": "filter-random", **CLEAN_GEN},
    "coverage": {"method": "coverage"},
    "coverage+clusters": {"method": "coverage", "stratify": "clusters"},
    "coverage+clean": {"method": "coverage", **CLEAN},
    "coverage+clean-gen": {"method": "coverage", **CLEAN_GEN},
    "typical": {"method": "typical", "position": 0.0},
    "typical+clean": {"method": "typical", "signals": ALL, "tails": TAILS, **CLEAN},
    "typical+clean-gen": {"method": "typical", "signals": ALL, "tails": TAILS, **CLEAN_GEN},
    # typical+clean's two parts alone: what each costs (experiments/clean_cost.py --challenger).
    "typical+tails": {"method": "typical", "signals": ALL, "tails": TAILS},
    "typical+copies": {"method": "typical", **CLEAN},
    # Tukey's fences instead of the quantile tails: a junk filter that drops few clean records.
    "typical+fences": {"method": "typical", "signals": ALL, "fences": FENCES},
    "typical+fences+copies": {"method": "typical", "signals": ALL, "fences": FENCES, **CLEAN},
    # Fitted on the whole pool, the rules' drops only masked (euds.selection.typical).
    "typical+clean-pool": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN,
        "typical_fit": "pool",
    },
    "typical+clean-gen-pool": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_GEN,
        "typical_fit": "pool",
    },
    # The pool fit, each group of copies once and a mostly dropped cluster given to the fill.
    "typical+clean-distinct": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN,
        "typical_fit": "distinct",
    },
    "typical+clean-gen-distinct": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_GEN,
        "typical_fit": "distinct",
    },
    # A tail on bits per byte too: mojibake's is higher than its original's (docs/results.md).
    "typical+clean-bpb": {"method": "typical", "signals": [*ALL, "bpb"], "tails": TAILS, **CLEAN},
    "typical+clean-bpb-pool": {
        "method": "typical",
        "signals": [*ALL, "bpb"],
        "tails": TAILS,
        **CLEAN,
        "typical_fit": "pool",
    },
    "atypical": {"method": "typical", "position": 1.0},
    "target": {"method": "target"},
    "target+clusters": {"method": "target", "stratify": "clusters"},
    "target+clean": {"method": "target", **CLEAN},
    # Texts with a broken encoding dropped too (mojibake, U+FFFD, control characters).
    "typical+clean-damaged": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN,
        **DAMAGED,
    },
    "filter-random+clean-damaged": {
        "signals": ALL,
        "method": "filter-random",
        **CLEAN,
        **DAMAGED,
    },
    "typical+clean-gen-distinct-damaged": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_GEN,
        "typical_fit": "distinct",
        **DAMAGED,
    },
    # typical+clean with both of the two junk rules above: damaged texts, the cleaner copy.
    "typical+clean-gen-damaged": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_GEN,
        **DAMAGED,
    },
    # Junk rules that drop less of a clean pool than the quantile tails: damaged texts only
    # (exact copies go by default), or Tukey's fences with the copy rules, the cleaner copy and
    # damaged texts.
    "typical+damaged": {"method": "typical", **DAMAGED},
    "typical+fences-gen-damaged": {
        "method": "typical",
        "signals": ALL,
        "fences": FENCES,
        **CLEAN_GEN,
        **DAMAGED,
    },
    "target+clean-damaged": {"method": "target", **CLEAN, **DAMAGED},
    # Of each near-duplicate group the more predictable copy (junk's copies are noisier).
    "target+clean-gen-damaged": {"method": "target", **CLEAN_GEN, **DAMAGED},
    # No copy of a near-duplicate group at all: when no score tells the original from its
    # edited copy, neither stays.
    "typical+clean-none-damaged": {
        "method": "typical",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_NONE,
        **DAMAGED,
    },
    "target+clean-none-damaged": {"method": "target", **CLEAN_NONE, **DAMAGED},
    # And each signal's quantile tails: gibberish ranks near a short-text target sample but
    # sits in a tail of information or generative entropy (experiments/target_tails.py).
    "target+tails-clean-none-damaged": {
        "method": "target",
        "signals": ALL,
        "tails": TAILS,
        **CLEAN_NONE,
        **DAMAGED,
    },
}
NEEDS_TARGET = (
    "target",
    "target+clusters",
    "target+clean",
    "target+clean-damaged",
    "target+clean-gen-damaged",
    "target+clean-none-damaged",
    "target+tails-clean-none-damaged",
)
BASELINES = ("random", "random+classes", "random+clusters")
RANDOM = "random"
FULL = "full"
DEFAULT = "default"
LENGTH_MATCHED = "~length"
STEP_MATCHED = "@full-steps"
POOLS = ("clean", "noisy")
# Salts of the random draws: each kind of draw has its own stream.
_SALT = {"random": 0, "random+classes": 1, "random+clusters": 2, LENGTH_MATCHED: 3}


def screened() -> list[str]:
    """Every method the probe screens at every budget (the whole pool apart)."""
    return [*BASELINES, *CANDIDATES, *(m + LENGTH_MATCHED for m in CANDIDATES)]


def screen_settings(method: str) -> dict[str, Any] | None:
    """What decides a screened method's rows besides the pool (None: a baseline), as its screen
    cache's key holds it: its settings, and for those that run typicality the k-means start too,
    so that a new start screens them again, and only them."""
    settings = CANDIDATES.get(method.removesuffix(LENGTH_MATCHED))
    if settings is not None and settings.get("method") == TYPICAL:
        return {**settings, "typical_start": TYPICAL_START}
    return settings


def is_known(name: str) -> bool:
    """A name a confirm item may list."""
    base = name.removesuffix(LENGTH_MATCHED)
    return base in CANDIDATES or base in BASELINES or name in (DEFAULT, FULL)


def random_rng(seed: int, budget: float, kind: str) -> np.random.Generator:
    """The generator of one random draw: seed s, budget b and the kind of draw fix it."""
    return np.random.default_rng([seed, round(budget * 10_000), _SALT[kind]])


def stratified_random(strata: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` records drawn uniformly inside each stratum, quotas by largest remainder."""
    from euds.selection import largest_remainder

    names, codes = np.unique(strata, return_inverse=True)
    quota = largest_remainder(np.bincount(codes, minlength=len(names)), count)
    keep = np.zeros(len(strata), dtype=bool)
    for c, q in enumerate(quota):
        members = np.flatnonzero(codes == c)
        keep[rng.choice(members, size=int(q), replace=False)] = True
    return keep


def length_deciles(words: np.ndarray) -> np.ndarray:
    """Decile bin (0-9) of every record's length in the pool."""
    edges = np.quantile(words, np.linspace(0.1, 0.9, 9))
    return np.searchsorted(edges, words, side="right")


def length_matched(keep: np.ndarray, words: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random subset with ``keep``'s number of records in every length decile of the pool."""
    bins = length_deciles(words)
    out = np.zeros(len(keep), dtype=bool)
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        out[rng.choice(members, size=int(keep[members].sum()), replace=False)] = True
    return out


def choose(
    method: str, budget: float, pool: Any, *, seed: int, memo: dict[Any, Any] | None = None
) -> np.ndarray:
    """The kept mask of a baseline or candidate on ``pool`` (a
    :class:`~euds.research.pools.Pool`); ``memo`` keeps masks already made (a length-matched
    control needs its candidate's)."""
    if memo is not None:
        key = (method, budget, seed)
        if key not in memo:
            memo[key] = _choose(method, budget, pool, seed, memo)
        return memo[key]
    return _choose(method, budget, pool, seed, None)


def _choose(
    method: str, budget: float, pool: Any, seed: int, memo: dict[Any, Any] | None
) -> np.ndarray:
    from euds.selection import select

    n = len(pool.records)
    count = round(budget * n)
    if method == RANDOM:
        keep = np.zeros(n, dtype=bool)
        keep[random_rng(seed, budget, method).choice(n, size=count, replace=False)] = True
        return keep
    if method == "random+classes":
        return stratified_random(pool.labels, count, random_rng(seed, budget, method))
    if method == "random+clusters":
        return stratified_random(pool.clusters, count, random_rng(seed, budget, method))
    if method.endswith(LENGTH_MATCHED):
        base = choose(method.removesuffix(LENGTH_MATCHED), budget, pool, seed=seed, memo=memo)
        return length_matched(base, pool.words, random_rng(seed, budget, LENGTH_MATCHED))
    if method not in CANDIDATES:
        raise ValueError(f"unknown method {method!r}")
    spec = dict(CANDIDATES[method])
    if spec.get("stratify") == "clusters":
        spec["stratify"] = pool.clusters
    if spec.get("method") == "typical":
        spec["embeddings"] = pool.embeddings
    if spec.get("drop_contained") or spec.get("drop_damaged"):
        spec["texts"] = [r["text"] for r in pool.records]
    return select(pool.columns, budget=budget, seed=seed, on_nonfinite="drop", **spec).keep


def subset_stats(keep: np.ndarray, pool: Any) -> dict[str, Any]:
    """What a subset holds: size, median length, largest class share, clusters covered, junk."""
    labels, junk = pool.labels[keep], pool.junk[keep]
    _, class_counts = np.unique(labels, return_counts=True)
    stats: dict[str, Any] = {
        "records": int(keep.sum()),
        "median_words": float(np.median(pool.words[keep])) if keep.any() else float("nan"),
        "largest_class_share": float(class_counts.max() / keep.sum()) if keep.any() else 0.0,
        "classes_covered": len(class_counts),
        "clusters_covered": len(np.unique(pool.clusters[keep])),
    }
    if pool.kind == "noisy":
        hashes = pool.columns["text_hash"][keep]
        _, inverse, copies = np.unique(hashes.astype(str), return_inverse=True, return_counts=True)
        # An exact duplicate is junk only when another copy is kept too.
        is_junk = (junk != "") & ((junk != "exact_duplicate") | (copies[inverse] > 1))
        stats["junk_share"] = float(is_junk.mean()) if keep.any() else 0.0
        stats["junk_kept"] = {
            kind: int(((junk == kind) & is_junk).sum()) for kind in sorted(set(pool.junk) - {""})
        }
    return stats
