"""Coverage-centric selection (CCS, Zheng et al. 2023): cover a score's whole range instead of
one band of it. The score's range (after the junk tails are dropped) is cut into ``strata``
equal-width strata; the budget is shared by water-filling (a stratum smaller than its share is
taken whole, the others share what it leaves); inside each stratum the records are drawn
uniformly (the seeded row hash). With an uninformative score this is a uniform draw from what
survives the tails: it cannot lose badly to random."""

from __future__ import annotations

from typing import Any

import numpy as np

from euds import _core
from euds.selection.quotas import draw, water_filling

DEFAULT_STRATA = 50


def coverage_score(values: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """The score coverage stratifies: the one signal's values, or, for several, the percentile
    rank of the mean of their percentile ranks (as ``mean-rank``)."""
    if len(values) == 1:
        name, v = next(iter(values.items()))
        return v, name
    ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
    return _core.mean_rank(ranks), "mean-rank(" + ",".join(values) + ")"


def strata_of(score: np.ndarray, strata: int) -> tuple[np.ndarray, float, float]:
    """The equal-width stratum (0 .. strata - 1) of every score, and the range cut."""
    lo, hi = float(np.min(score)), float(np.max(score))
    if not hi > lo:
        return np.zeros(len(score), dtype=np.int64), lo, hi
    at = np.floor((score - lo) / (hi - lo) * strata).astype(np.int64)
    return np.minimum(at, strata - 1), lo, hi


def coverage_pick(
    score: np.ndarray, rows: np.ndarray, keep_n: int, strata: int, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """``keep_n`` of ``rows`` (whose finite scores are ``score``) spread over the score's range:
    the chosen rows and what the manifest says of the strata."""
    if not isinstance(strata, int) or isinstance(strata, bool) or strata < 1:
        raise ValueError(f"strata must be a positive int, got {strata!r}")
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return rows, {"strata": strata, "range": None, "sizes": [], "quotas": []}
    where, lo, hi = strata_of(score, strata)
    sizes = np.bincount(where, minlength=strata)
    quotas = water_filling(sizes, keep_n, seed)
    chosen = [draw(rows[where == j], int(q), seed) for j, q in enumerate(quotas) if q]
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return picked, {
        "strata": strata,
        "range": [lo, hi],
        "sizes": sizes.tolist(),
        "quotas": quotas.tolist(),
    }
