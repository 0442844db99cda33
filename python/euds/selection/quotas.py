"""How a budget is shared and drawn: one label per record into strata, integer quotas in
proportion to stratum sizes (largest remainder) or level across strata (water-filling), and a
seeded uniform order of rows (the tie-break hash of the C++ band kernel, vectorised)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def tie_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """``euds._core.tie_key(row, seed)`` for every row: splitmix64 of ``row + seed * golden``
    (uint64). Sorting rows by it is a seeded uniform shuffle that does not depend on which
    other rows take part."""
    x = np.asarray(rows, dtype=np.uint64) + np.uint64((int(seed) * _GOLDEN) & _MASK)
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def draw(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` of ``rows``, uniformly at random by the seeded row hash (the rows with the
    smallest keys; ties, which need equal 64-bit keys, by row)."""
    rows = np.asarray(rows, dtype=np.int64)
    if count >= len(rows):
        return rows
    keys = tie_keys(rows, seed)
    return rows[np.lexsort((rows, keys))[:count]]


def strata_codes(labels: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """(stratum index of every record, the strata's labels) in order of first appearance;
    None or NaN labels form one stratum labelled None."""
    labels = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"stratify needs one label per record ({n}), got shape {np.shape(labels)}")
    index: dict[Any, int] = {}
    names: list[Any] = []
    codes = np.empty(n, dtype=np.int64)
    for i, value in enumerate(labels.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            key, name = None, None
        elif isinstance(value, (str, int, float, bool)):
            key, name = (type(value).__name__, value), value
        else:  # lists, dicts: compared by their JSON
            name = json.dumps(value, sort_keys=True, default=str)
            key = ("json", name)
        code = index.get(key)
        if code is None:
            code = index[key] = len(names)
            names.append(name)
        codes[i] = code
    return codes, names


def largest_remainder(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas in proportion to ``sizes`` that sum to ``total`` (<= sum of sizes):
    each gets the floor of its share, and the rest go one each to the largest remainders, ties
    to the larger size, then to the earlier index. Exact integer arithmetic."""
    sizes = np.asarray(sizes, dtype=np.int64)
    whole = int(sizes.sum())
    if not 0 <= total <= whole:
        raise ValueError(f"cannot share {total} among strata of {whole} records")
    if whole == 0:
        return np.zeros_like(sizes)
    quota = sizes * total // whole
    remainder = sizes * total - quota * whole
    order = np.lexsort((np.arange(len(sizes)), -sizes, -remainder))
    quota[order[: total - int(quota.sum())]] += 1
    return quota


def water_filling(sizes: np.ndarray, total: int, seed: int) -> np.ndarray:
    """Integer quotas ``min(size, L)`` at the highest level L whose sum stays within ``total``;
    the few records left over go one each to strata larger than L, in the seeded hash order of
    the stratum index. A stratum smaller than its share is taken whole and the others share
    what it leaves (coverage-centric selection's budget rule)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if not 0 <= total <= int(sizes.sum()):
        raise ValueError(f"cannot share {total} among strata of {int(sizes.sum())} records")
    if total == 0 or len(sizes) == 0:
        return np.zeros_like(sizes)
    # The largest L with sum(min(sizes, L)) <= total, by bisection on [0, max size].
    lo, hi = 0, int(sizes.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(sizes, lo)
    left = total - int(quota.sum())
    if left:
        room = np.flatnonzero(sizes > lo)
        quota[draw(room, left, seed)] += 1
    return quota


__all__ = ["draw", "largest_remainder", "strata_codes", "tie_keys", "water_filling"]
