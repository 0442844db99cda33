"""Selection over score columns: bands (single signal, IGSE ``intersect`` and ``mean-rank``),
cluster- or group-stratified bands, filter-then-sample, one copy of exact duplicates and, on
request, of near duplicates.

Two ways to say what to keep (naming no signal and no method selects on
:data:`DEFAULT_SIGNALS`, the generative band, as ``euds experiment`` chose on dev data):

* **intervals**: per signal ``(lo, hi)`` in quantiles of the pool (default) or in absolute
  values (``absolute=True``). ``intersect`` keeps records inside every interval;
  ``mean-rank`` takes one interval, on the percentile rank of the mean of the signals'
  percentile ranks; ``single`` takes one signal.
* **budget**: keep exactly ``round(budget * n)`` records with a band at ``position`` (0 = the
  lowest entropies, 0.5 = centred on the median, 1 = the highest), one number for every signal
  or one per signal. For ``intersect`` the bands of all signals widen together, each at its
  own position, until the intersection holds the budget: a record enters at the largest of its
  signals' normalised distances from their positions (``(p - u) / p`` below, ``(u - p) /
  (1 - p)`` above, u its percentile rank). For ``mean-rank`` with one position for all, the
  band sits at that position of the rank of the mean percentile rank; with positions that
  differ, the records kept are those with the smallest *mean* of those normalised distances
  (the band starts at 0 of its rank): intersect bounds the worst signal, mean-rank lets one
  signal's distance be made up by the others. Records tied at the last admitted width
  (common: short texts share entropy values) are chosen by a hash of their row seeded with
  ``seed``, not by input order, so no part of the file is favoured.
* ``method="filter-random"`` (budget only): drop each signal's tails (outside the quantiles
  ``tails``, default 0.05-0.95; reason ``tail``), then draw the budget uniformly from the rest
  by the same seeded row hash (reason ``not_sampled`` for the others); ``position`` plays no
  part.

``stratify`` (budget only): one label per record (a k-means cluster, a source, a language...);
every stratum gets a quota in proportion to its eligible records (largest remainder; ties go to
the larger stratum, then to the stratum seen first in input order), and the band (or the draw)
is chosen inside each stratum on its own ranks, so small budgets keep every stratum.

Exact duplicates: where the scores have a ``text_hash`` column, later copies of a text (in input
order) are dropped before the band is chosen (reason ``duplicate_text``), so the kept records
are distinct texts and the budget (a share of all input records) stays exact;
``keep_duplicates=True`` keeps them all (identical texts have identical scores,
so a band then keeps all copies or none).

Near duplicates (``drop_near_duplicates=True``; needs the ``near_keys`` column of
:func:`euds.batch.near_duplicate_keys`): records sharing a MinHash band key are joined into
groups (transitively, as MinHash deduplication does); the first usable record of each group in
input order stays, the others are dropped before the band (reason ``near_duplicate_text``).

A record whose score is NaN in a used signal (empty text, unreadable record, ...) is never kept;
its reason is ``unscored``. Infinite scores raise ``ValueError`` naming the first such record,
unless ``on_nonfinite="drop"`` (reason ``nonfinite``). Every record is either kept or dropped
with a reason: kept + dropped = input.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from euds import _core
from euds.signals import SIGNALS

Method = Literal["single", "intersect", "mean-rank", "filter-random"]
METHODS: tuple[str, ...] = ("single", "intersect", "mean-rank", "filter-random")
# The signals, and the LM's NLL per token (nll) and in bits per byte (bpb; absent from score
# directories made before it existed: rescore them to select on it).
SELECTABLE = (*SIGNALS, "nll", "bpb")
# What a budget keeps when neither signals nor a method are named: the band of generative
# entropy, the candidate `euds experiment` chose on dev data (docs/results.md); every scored
# signal when it is absent, or when a method that combines signals is named.
DEFAULT_SIGNALS = ("generative",)
MEAN_RANK = "mean-rank"
FILTER_RANDOM = "filter-random"
DEFAULT_TAILS = (0.05, 0.95)
TEXT_HASH = "text_hash"
NEAR_KEYS = "near_keys"
CLUSTERS = "clusters"

REASON_KEPT = ""
REASON_OUTSIDE = "outside_interval"
REASON_UNSCORED = "unscored"
REASON_NONFINITE = "nonfinite"
REASON_DUPLICATE = "duplicate_text"
REASON_NEAR_DUPLICATE = "near_duplicate_text"
REASON_TAIL = "tail"
REASON_NOT_SAMPLED = "not_sampled"


@dataclass
class Selection:
    """The outcome of :func:`select`: ``keep[i]`` for every input record, and why not."""

    keep: np.ndarray  # bool [n]
    reason: np.ndarray  # object (str) [n]; "" for kept records
    method: str
    signals: list[str]
    budget: float | None
    position: float | dict[str, float] | None
    absolute: bool
    # Per signal (and "mean-rank"): {"q_lo", "q_hi"} in quantiles and {"lo", "hi"} in values.
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    band_width: float | None = None
    seed: int | None = None
    tails: tuple[float, float] | None = None
    # What was stratified on ("clusters", a field name, "labels") and each stratum's quota,
    # band width and intervals.
    stratify: str | None = None
    strata: list[dict[str, Any]] | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, Any]:
        reasons, n = np.unique(self.reason[~self.keep], return_counts=True)
        kept = int(self.keep.sum())
        return {
            "input": len(self.keep),
            "kept": kept,
            "dropped": len(self.keep) - kept,
            "dropped_by_reason": {str(r): int(c) for r, c in zip(reasons, n, strict=True)},
        }

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "signals": self.signals,
            "budget": self.budget,
            "position": self.position,
            "absolute": self.absolute,
            "band_width": self.band_width,
            "seed": self.seed,
            "tails": list(self.tails) if self.tails is not None else None,
            "intervals": self.intervals,
            "stratify": self.stratify,
            "strata": self.strata,
            "duplicates": self.duplicates,
            "counts": self.counts,
        }


def select(
    scores: Any,
    *,
    signals: Sequence[str] | None = None,
    method: Method | None = None,
    budget: float | None = None,
    position: float | Mapping[str, float] = 0.5,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    absolute: bool = False,
    on_nonfinite: Literal["raise", "drop"] = "raise",
    seed: int = 0,
    stratify: Any = None,
    tails: tuple[float, float] | None = None,
    keep_duplicates: bool = False,
    drop_near_duplicates: bool = False,
) -> Selection:
    """Selects records from score columns.

    ``scores``: a mapping of column name to array, a ``pyarrow.Table`` or a
    ``pandas.DataFrame`` holding the signal columns (and ``id``, used in error messages;
    ``text_hash``, for exact duplicates; ``near_keys``, for ``drop_near_duplicates``). Give
    exactly one of ``budget`` (a share in (0, 1]) and ``intervals``. ``position``: one number,
    or one per signal (a mapping naming every used signal; it names the signals when
    ``signals`` is not given). Neither ``signals`` nor ``method`` given:
    :data:`DEFAULT_SIGNALS` when scored, else every scored signal; a ``method`` alone uses
    every scored signal. ``stratify``: one label per record (None/NaN labels form their own
    stratum). ``tails``: the kept quantile range of each signal for
    ``method="filter-random"``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    columns = _columns(scores)
    n = _length(columns)
    if (budget is None) == (intervals is None):
        raise ValueError("give exactly one of budget= and intervals=")
    if intervals is not None and signals is None:
        # Per-signal intervals name their signals; a mean-rank interval uses every scored one.
        signals = [s for s in intervals if s != MEAN_RANK] or None
    if isinstance(position, Mapping) and signals is None:
        signals = list(position)
    if (
        signals is None
        and method is None
        and intervals is None
        and all(s in columns for s in DEFAULT_SIGNALS)
    ):
        signals = list(DEFAULT_SIGNALS)
    if signals is None:
        signals = [s for s in SIGNALS if s in columns]
    signals = list(signals)
    if not signals:
        raise ValueError(f"no signal columns to select on; columns: {sorted(columns)}")
    for s in signals:
        if s not in SELECTABLE:
            raise ValueError(f"unknown signal {s!r}; selectable: {SELECTABLE}")
        if s not in columns:
            rescore = " (scored before euds wrote it: score the input again into a new folder)"
            raise ValueError(
                f"the scores have no {s!r} column; columns: {sorted(columns)}"
                + (rescore if s == "bpb" else "")
            )
    if len(set(signals)) != len(signals):
        raise ValueError(f"signals repeat: {signals}")
    if method is None:
        method = "single" if len(signals) == 1 else "intersect"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "single" and len(signals) != 1:
        raise ValueError(f"method 'single' takes one signal, got {signals}")
    if on_nonfinite not in ("raise", "drop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'drop', got {on_nonfinite!r}")
    if budget is None and (method == FILTER_RANDOM or stratify is not None):
        raise ValueError(f"method {method!r} and stratify= need budget=, not intervals=")
    if tails is not None and method != FILTER_RANDOM:
        raise ValueError(f"tails= is for method {FILTER_RANDOM!r}, not {method!r}")
    positions = _positions(position, signals)
    if isinstance(stratify, str):
        raise ValueError(
            f"stratify={stratify!r} needs the score directory or the input: use select_file; "
            "select takes one label per record"
        )
    strata = _strata(stratify, n) if stratify is not None else None

    values = {s: _score_column(columns, s) for s in signals}
    reason = np.full(n, REASON_KEPT, dtype=object)
    usable = np.ones(n, dtype=bool)
    for s, v in values.items():
        nan = np.isnan(v)
        inf = np.isinf(v)
        if inf.any():
            if on_nonfinite == "raise":
                i = int(np.flatnonzero(inf)[0])
                ids = columns.get("id")
                who = f"record {ids[i]!r} (row {i})" if ids is not None else f"row {i}"
                raise ValueError(
                    f"{s} score of {who} is {v[i]}; {int(inf.sum())} records have infinite "
                    f"{s} scores: fix the scores or pass on_nonfinite='drop'"
                )
            reason[inf & usable] = REASON_NONFINITE
            usable &= ~inf
            values[s] = np.where(inf, np.nan, v)
        reason[nan & usable] = REASON_UNSCORED
        usable &= ~nan
    duplicates = _drop_duplicates(columns.get(TEXT_HASH), usable, reason, keep_duplicates)
    if drop_near_duplicates:
        duplicates["near"] = _drop_near_duplicates(columns.get(NEAR_KEYS), n, usable, reason)
    # Every used signal ranks the same pool: the records scorable on all of them.
    masked = {s: np.where(usable, v, np.nan) for s, v in values.items()}

    if budget is not None:
        sel = _by_budget(masked, n, method, budget, positions, seed, strata, tails, reason)
    else:
        assert intervals is not None
        sel = _by_intervals(masked, method, intervals, absolute)
        sel.position = None
    sel.signals = signals
    sel.duplicates = duplicates
    if strata is not None:
        sel.stratify = "labels"
    sel.reason = reason
    sel.reason[usable & ~sel.keep & (reason == REASON_KEPT)] = REASON_OUTSIDE
    return sel


def _positions(position: float | Mapping[str, float], signals: list[str]) -> dict[str, float]:
    """The band position of every used signal, checked."""
    if isinstance(position, Mapping):
        missing = [s for s in signals if s not in position]
        extra = [s for s in position if s not in signals]
        if missing or extra:
            raise ValueError(f"give one position per signal: missing {missing}, unexpected {extra}")
        out = {s: position[s] for s in signals}
    else:
        out = dict.fromkeys(signals, position)
    for s, p in out.items():
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1):
            raise ValueError(f"position must lie in [0, 1], got {p!r} for {s}")
    return {s: float(p) for s, p in out.items()}


def _drop_duplicates(
    hashes: Any, usable: np.ndarray, reason: np.ndarray, keep_duplicates: bool
) -> dict[str, Any]:
    """Marks every usable record whose text hash an earlier usable record has (reason
    ``duplicate_text``, no longer usable); returns the manifest's account of it."""
    if keep_duplicates:
        return {"policy": "keep-all", "detected": False, "dropped": 0}
    if hashes is None:
        return {
            "policy": "keep-first",
            "detected": False,
            "dropped": 0,
            "note": f"the scores have no {TEXT_HASH} column (scored before euds computed it): "
            "exact duplicates were not detected; rescore to detect them",
        }
    hashes = np.asarray(hashes, dtype=object)
    rows = np.flatnonzero(usable & np.array([isinstance(h, str) for h in hashes], dtype=bool))
    _, first = np.unique(hashes[rows].astype(str), return_index=True)
    later = np.ones(len(rows), dtype=bool)
    later[first] = False
    dup = rows[later]
    reason[dup] = REASON_DUPLICATE
    usable[dup] = False
    return {"policy": "keep-first", "detected": True, "dropped": len(dup)}


def _drop_near_duplicates(
    keys: Any, n: int, usable: np.ndarray, reason: np.ndarray
) -> dict[str, Any]:
    """Marks every usable record that shares a near-duplicate group with an earlier usable
    record (reason ``near_duplicate_text``, no longer usable); returns the manifest's account."""
    from euds.batch import NEAR_DUPLICATES

    if keys is None:
        raise ValueError(
            f"drop_near_duplicates needs the {NEAR_KEYS!r} column, which these scores lack "
            "(scored before euds computed it): score the input again (--overwrite)"
        )
    keys = near_key_matrix(keys, n)
    rows = np.flatnonzero(usable & keys.any(axis=1))
    root = near_duplicate_groups(keys[rows])
    later = root != np.arange(len(rows))
    dup = rows[later]
    reason[dup] = REASON_NEAR_DUPLICATE
    usable[dup] = False
    return {
        "policy": "keep-first",
        "dropped": len(dup),
        "groups": len(np.unique(root[later])),
        "minhash": dict(NEAR_DUPLICATES),
    }


def near_key_matrix(keys: Any, n: int) -> np.ndarray:
    """The ``near_keys`` column as a ``[n, bands]`` uint64 array (a missing row, in shards
    scored before the column existed, as zeros: it matches nothing). ``keys``: a 2-D array,
    one key array (or None) per row, or an Arrow (fixed-size) list column."""
    if hasattr(keys, "type"):  # pyarrow Array or ChunkedArray
        import pyarrow as pa

        keys = _arrow_to_numpy(pa.chunked_array([keys]) if isinstance(keys, pa.Array) else keys)
    if isinstance(keys, np.ndarray) and keys.ndim == 2 and keys.dtype == np.uint64:
        out = keys
    else:
        rows = [None if k is None else np.asarray(k, dtype=np.uint64) for k in keys]
        width = max((len(r) for r in rows if r is not None), default=0)
        out = np.zeros((len(rows), width), dtype=np.uint64)
        for i, r in enumerate(rows):
            if r is not None:
                out[i] = r
    if out.shape[0] != n:
        raise ValueError(f"{NEAR_KEYS} has {out.shape[0]} rows, the scores {n}")
    return out


def near_duplicate_groups(keys: np.ndarray) -> np.ndarray:
    """For ``keys [m, bands]``, the first row (lowest index) of each row's group, where rows
    sharing a key in any band are joined transitively (connected components, by label
    propagation: each band sets every row to the smallest label among the rows sharing its
    key, until nothing changes)."""
    m = len(keys)
    label = np.arange(m)
    if m == 0:
        return label
    bands = [
        np.unique(keys[:, j], return_inverse=True)[1].reshape(-1) for j in range(keys.shape[1])
    ]
    changed = True
    while changed:
        changed = False
        for inverse in bands:
            smallest = np.full(int(inverse.max()) + 1, m, dtype=np.int64)
            np.minimum.at(smallest, inverse, label)
            new = smallest[inverse]
            if (new < label).any():
                changed = True
                label = np.minimum(label, new)
        while True:  # pointer jumping: a label's own label is in the same group
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
    return label


def _strata(labels: Any, n: int) -> tuple[np.ndarray, list[Any]]:
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


def _by_budget(
    values: dict[str, np.ndarray],
    n: int,
    method: str,
    budget: float,
    positions: dict[str, float],
    seed: int,
    strata: tuple[np.ndarray, list[Any]] | None,
    tails: tuple[float, float] | None,
    reason: np.ndarray,
) -> Selection:
    if not (isinstance(budget, (int, float)) and 0 < budget <= 1):
        raise ValueError(f"budget must be a share in (0, 1], got {budget!r}")
    keep_n = round(budget * n)
    intervals: dict[str, dict[str, float]] = {}
    pool = values
    if method == FILTER_RANDOM:
        tails = _check_tails(DEFAULT_TAILS if tails is None else tails)
        survives = np.ones(n, dtype=bool)
        for s, v in values.items():
            mask, intervals[s] = _apply(v, tails, absolute=False)
            survives &= mask
        scored = ~np.isnan(np.stack(list(values.values()))).any(axis=0)
        reason[scored & ~survives] = REASON_TAIL
        # The draw needs no ranks: one constant column makes every survivor a tie, and the
        # kernel's seeded row hash breaks the ties.
        pool = {FILTER_RANDOM: np.where(survives, 0.5, np.nan)}
    eligible = ~np.isnan(np.stack(list(pool.values()))).any(axis=0)
    n_valid = int(eligible.sum())
    if keep_n > n_valid:
        if method == FILTER_RANDOM:
            what = f"survive the tails {tails[0]}:{tails[1]}; lower the budget or widen the tails"
        else:
            what = "have every score (and are not a later copy of a text); lower the budget"
        raise ValueError(
            f"budget {budget} asks for {keep_n} of {n} records but only {n_valid} {what}"
        )
    codes, names = strata if strata is not None else (np.zeros(n, dtype=np.int64), [None])
    sizes = np.bincount(codes[eligible], minlength=len(names))
    quotas = largest_remainder(sizes, keep_n)
    keep = np.zeros(n, dtype=bool)
    per_stratum = []
    for k, name in enumerate(names):
        rows = np.flatnonzero(codes == k) if strata is not None else np.arange(n)
        part = {s: v[rows] for s, v in pool.items()}
        chosen, width, band = _band(part, method, positions, int(quotas[k]), seed)
        keep[rows[chosen]] = True
        per_stratum.append(
            {
                "stratum": name,
                "records": len(rows),
                "eligible": int(sizes[k]),
                "quota": int(quotas[k]),
                "band_width": width,
                "intervals": band,
            }
        )
    if method == FILTER_RANDOM:
        reason[eligible & ~keep] = REASON_NOT_SAMPLED
    elif strata is None:
        intervals = per_stratum[0]["intervals"]
    for s, v in values.items():
        entry = intervals.setdefault(s, {})
        if method not in (FILTER_RANDOM, MEAN_RANK):
            entry["position"] = positions[s]
        kept = v[keep]
        if kept.size:
            entry.update(kept_min=float(np.min(kept)), kept_max=float(np.max(kept)))
    uniform = len(set(positions.values())) == 1
    return Selection(
        keep=keep,
        reason=np.empty(0, dtype=object),
        method=method,
        signals=[],
        budget=float(budget),
        position=None
        if method == FILTER_RANDOM
        else (next(iter(positions.values())) if uniform else positions),
        absolute=False,
        intervals=intervals,
        band_width=per_stratum[0]["band_width"] if strata is None else None,
        seed=seed,
        tails=tails,
        strata=per_stratum if strata is not None else None,
    )


def _band(
    values: dict[str, np.ndarray],
    method: str,
    positions: dict[str, float],
    keep_n: int,
    seed: int,
) -> tuple[np.ndarray, float | None, dict[str, dict[str, float]]]:
    """The ``keep_n`` records of one pool (NaN = not eligible) nearest the band's positions:
    (mask, band width, the band of each signal in quantiles and values). For filter-random's
    constant column the band is a seeded uniform draw (no width, no band)."""
    if method == FILTER_RANDOM:
        ranks = np.ascontiguousarray(next(iter(values.values()))[None, :])
        keep, _ = _core.band_select(ranks, 0.5, keep_n, seed)
        return keep, None, {}
    ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
    ps = np.array([positions[s] for s in values])
    at = float(ps[0])
    if not (ps == at).all():
        # _centre maps each position to 0.5, linearly on either side, so a mapped rank's
        # distance from 0.5 is the rank's normalised distance from its own position: one
        # band at 0.5 is every signal's band at its own position.
        ranks = np.stack([_centre(r, p) for r, p in zip(ranks, ps, strict=True)])
        at = 0.5
        if method == MEAN_RANK:
            # Folded around 0.5: each signal's normalised distance from its position; the
            # band starts at the smallest mean distance.
            ranks = np.abs(2.0 * ranks - 1.0)
            at = 0.0
    if method == MEAN_RANK:
        ranks = _core.mean_rank(ranks)[None, :]
    keep, width = _core.band_select(np.ascontiguousarray(ranks), at, keep_n, seed)
    band: dict[str, dict[str, float]] = {}
    if method == MEAN_RANK:
        band[MEAN_RANK] = {"q_lo": at * (1.0 - width), "q_hi": at * (1.0 - width) + width}
    else:
        for s, v in values.items():
            q_lo = positions[s] * (1.0 - width)
            q_hi = q_lo + width
            lo, hi = _core.nan_quantiles(v, np.array([q_lo, q_hi]))
            band[s] = {"q_lo": q_lo, "q_hi": q_hi, "lo": float(lo), "hi": float(hi)}
    return keep, float(width), band


def _centre(ranks: np.ndarray, p: float) -> np.ndarray:
    """Percentile ranks mapped piecewise-linearly so that ``p`` lands on 0.5 (0 -> 0, 1 -> 1)."""
    below = 0.5 * ranks / p if p > 0 else np.zeros_like(ranks)
    above = 0.5 + 0.5 * (ranks - p) / (1.0 - p) if p < 1 else np.full_like(ranks, 0.5)
    return np.where(ranks < p, below, above)


def _check_tails(tails: Any) -> tuple[float, float]:
    try:
        lo, hi = float(tails[0]), float(tails[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"tails must be a (lo, hi) pair of quantiles, got {tails!r}") from None
    if len(tails) != 2 or not 0 <= lo < hi <= 1:
        raise ValueError(f"tails must be quantiles with 0 <= lo < hi <= 1, got {tails!r}")
    return lo, hi


def _by_intervals(
    values: dict[str, np.ndarray],
    method: str,
    intervals: Mapping[str, tuple[float, float]],
    absolute: bool,
) -> Selection:
    n = len(next(iter(values.values())))
    checked: dict[str, tuple[float, float]] = {}
    for name, pair in intervals.items():
        try:
            lo, hi = (float(pair[0]), float(pair[1]))
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"interval for {name!r} must be a (lo, hi) pair, got {pair!r}"
            ) from None
        if not lo <= hi:
            raise ValueError(f"interval for {name!r} has lo > hi: {lo} > {hi}")
        if not absolute and not (0 <= lo and hi <= 1):
            raise ValueError(
                f"interval for {name!r} is in quantiles and must lie in [0, 1], got {pair!r} "
                "(pass absolute=True for score values)"
            )
        checked[name] = (lo, hi)
    out: dict[str, dict[str, float]] = {}
    if method == "mean-rank":
        if set(checked) != {MEAN_RANK}:
            raise ValueError(
                f"method 'mean-rank' takes one interval named {MEAN_RANK!r}, got {sorted(checked)}"
            )
        ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
        combined = _core.mean_rank(ranks)
        keep, out[MEAN_RANK] = _apply(combined, checked[MEAN_RANK], absolute)
    else:
        missing = [s for s in values if s not in checked]
        extra = [s for s in checked if s not in values]
        if missing or extra:
            raise ValueError(f"give one interval per signal: missing {missing}, unexpected {extra}")
        keep = np.ones(n, dtype=bool)
        for s, v in values.items():
            mask, out[s] = _apply(v, checked[s], absolute)
            keep &= mask
    return Selection(
        keep=keep,
        reason=np.empty(0, dtype=object),
        method=method,
        signals=[],
        budget=None,
        position=None,
        absolute=absolute,
        intervals=out,
    )


def _apply(
    v: np.ndarray, interval: tuple[float, float], absolute: bool
) -> tuple[np.ndarray, dict[str, float]]:
    lo, hi = interval
    if absolute:
        return _core.interval_mask(v, lo, hi), {"lo": lo, "hi": hi}
    vlo, vhi = _core.nan_quantiles(v, np.array([lo, hi]))
    return _core.interval_mask(v, vlo, vhi), {
        "q_lo": lo,
        "q_hi": hi,
        "lo": float(vlo),
        "hi": float(vhi),
    }


def _columns(scores: Any) -> dict[str, Any]:
    if isinstance(scores, Mapping):
        return dict(scores)
    try:
        import pyarrow as pa

        if isinstance(scores, pa.Table):
            return {name: _arrow_to_numpy(scores.column(name)) for name in scores.column_names}
    except ImportError:  # pragma: no cover
        pass
    if hasattr(scores, "columns") and hasattr(scores, "__getitem__"):  # pandas.DataFrame
        return {str(c): scores[c].to_numpy() for c in scores.columns}
    raise ValueError(
        f"scores must be a mapping of arrays, a pyarrow.Table or a pandas.DataFrame, got "
        f"{type(scores).__name__}"
    )


def _arrow_to_numpy(column: Any) -> np.ndarray:
    """A column as numpy; a fixed-size list column without nulls (``near_keys``) as 2-D."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
        width = column.type.list_size
        flat = (
            column.combine_chunks().flatten()
            if column.num_chunks
            else pa.array([], column.type.value_type)
        )
        return flat.to_numpy(zero_copy_only=False).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False)


def _length(columns: Mapping[str, Any]) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"score columns differ in length: {sorted(lengths)}")
    return lengths.pop()


def _score_column(columns: Mapping[str, Any], name: str) -> np.ndarray:
    v = np.asarray(columns[name])
    if v.ndim != 1:
        raise ValueError(f"score column {name!r} must be 1-D, got shape {v.shape}")
    if v.dtype.kind not in "fiu":
        raise ValueError(f"score column {name!r} must be numeric, got dtype {v.dtype}")
    return np.ascontiguousarray(v, dtype=np.float64)


@dataclass
class SelectionOutput:
    """What :func:`select_file` wrote."""

    selection: Selection
    output: Path
    manifest: Path
    decisions: Path
    written: int


def select_file(
    input_path: str | os.PathLike[str],
    scores: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    format: str | None = None,
    command: list[str] | None = None,
    writer: Any = None,
    overwrite: bool = False,
    **options: Any,
) -> SelectionOutput:
    """Selects from the scores of ``input_path`` and writes the kept records to
    ``output_path`` in the input's format (gzipped when the name ends in .gz), plus
    ``<output>.manifest.json`` and ``<output>.decisions.parquet`` (id, kept, reason per record).
    ``options`` are those of :func:`select`. The scores must belong to this input (checked by
    sha256 where the score directory recorded it, and by record count). ``writer`` replaces
    :func:`euds.io.write_selected` (the Ray engine filters on its workers).

    ``stratify`` may also be ``"clusters"`` (the k-means clusters of the semantic signal, from
    the score directory's embeddings) or the name of a field of the input's records
    (:func:`read_field`).

    The output never replaces the input. An existing output (or its manifest or decisions
    file) is replaced only with ``overwrite`` or when it is a selection this function wrote
    (its manifest's checksums match the files), so that the same command can run again."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    from euds._version import __version__
    from euds.cache import atomic_path, atomic_write_bytes, sha256_file
    from euds.io import write_selected
    from euds.provenance import now_iso, to_json
    from euds.scores import ScoreDir, read_scores

    input_path, scores, out = Path(input_path), Path(scores), Path(output_path)
    if not input_path.is_file():
        raise ValueError(f"input file not found: {input_path}")
    if not scores.exists():
        raise ValueError(f"{scores} not found: score the input first (`euds score`)")
    decisions_path = out.with_name(out.name + ".decisions.parquet")
    manifest_path = out.with_name(out.name + ".manifest.json")
    _check_outputs(input_path, scores, out, manifest_path, decisions_path, overwrite=overwrite)
    input_sha = sha256_file(input_path)
    score_meta: dict[str, Any] = {}
    if scores.is_dir():
        sd = ScoreDir(scores)
        score_meta = sd.manifest()
        if score_meta.get("status") != "complete":
            raise ValueError(f"{scores} is not complete: run `euds score` again to finish it")
        recorded = score_meta.get("input", {}).get("sha256")
        if recorded not in (None, input_sha):
            raise ValueError(
                f"{scores} was computed on another file (sha256 {recorded[:12]}…, {input_path} "
                f"has {input_sha[:12]}…): rescore it with `euds score`"
            )
    table = read_scores(scores)
    config = score_meta.get("config", {})
    stratify = options.pop("stratify", None)
    if isinstance(stratify, str):
        if stratify == CLUSTERS:
            if not scores.is_dir():
                raise ValueError(f"--stratify {CLUSTERS} needs a score directory, not {scores}")
            labels = ScoreDir(scores).cluster_labels()
        else:
            labels = read_field(input_path, stratify, format=format or config.get("format"))
        selection = select(table, stratify=labels, **options)
        selection.stratify = stratify
    else:
        selection = select(table, stratify=stratify, **options)
    written = (writer or write_selected)(
        input_path,
        out,
        selection.keep,
        format=format or config.get("format"),
        gzip_output=out.name.lower().endswith(".gz"),
        sha256=input_sha,  # the kept records come from the bytes that were checked
    )
    counts = selection.counts
    if written != counts["kept"] or counts["kept"] + counts["dropped"] != counts["input"]:
        raise RuntimeError(f"selection bookkeeping is off: wrote {written}, counts {counts}")
    decisions = pa.table(
        {
            "id": table.column("id"),
            "kept": pa.array(selection.keep),
            "reason": pa.array(selection.reason.astype(str)),
        }
    )
    with atomic_path(decisions_path) as tmp:
        pq.write_table(decisions, tmp)
    manifest = {
        "euds_version": __version__,
        "created": now_iso(),
        "command": command,
        "input": {"path": str(input_path), "sha256": input_sha, "records": counts["input"]},
        "scores": {
            "path": str(scores),
            "sha256": None if scores.is_dir() else sha256_file(scores),
            "manifest_sha256": sha256_file(scores / "_manifest.json") if scores.is_dir() else None,
            "config": config,
        },
        "selection": selection.summary(),
        "output": {"path": str(out), "sha256": sha256_file(out), "records": written},
        "decisions": {"path": str(decisions_path), "sha256": sha256_file(decisions_path)},
    }
    atomic_write_bytes(manifest_path, to_json(manifest))
    return SelectionOutput(selection, out, manifest_path, decisions_path, written)


def _check_outputs(
    input_path: Path,
    scores: Path,
    out: Path,
    manifest_path: Path,
    decisions_path: Path,
    *,
    overwrite: bool,
) -> None:
    """Refuses outputs that would replace the input, the scores, or files euds did not write."""
    import json

    from euds.cache import sha256_file

    for path in (out, manifest_path, decisions_path):
        for other, what in ((input_path, "the input"), (scores, "the scores")):
            if path.exists() and path.resolve() == other.resolve():
                raise ValueError(f"the output {path} would replace {what}: choose another -o")
        if path.is_dir():
            raise ValueError(f"the output {path} is a folder: give a file name")
    existing = [p for p in (out, manifest_path, decisions_path) if p.exists()]
    if not existing or overwrite:
        return
    try:  # a selection written here before: its manifest proves whose the files are
        previous = json.loads(manifest_path.read_bytes())
        ours = (
            sha256_file(out) == previous["output"]["sha256"]
            and sha256_file(decisions_path) == previous["decisions"]["sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        ours = False
    if not ours:
        raise ValueError(
            f"{existing[0]} exists and is not a selection euds wrote: choose another -o or "
            "pass --overwrite to replace it"
        )


def read_field(path: str | os.PathLike[str], name: str, *, format: str | None = None) -> np.ndarray:
    """The value of the field ``name`` of every record of an input, in input order, as euds's
    reader counts records (object array; None where a record lacks the field or cannot be
    read). A CSV/TSV or Parquet file without that column, or a JSONL file none of whose
    records has it, raises ``ValueError``."""
    from euds.io import iter_csv_rows, iter_jsonl_lines, parse_jsonl_line, resolve_format

    path = Path(path)
    fmt, gz = resolve_format(path, format, None)
    out: list[Any] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if name not in pq.read_schema(path).names:
            raise ValueError(f"{path} has no column {name!r} to stratify by")
        out = pq.read_table(path, columns=[name]).column(name).to_pylist()
    elif fmt in ("csv", "tsv"):
        header, rows = iter_csv_rows(path, gz, fmt)
        if name not in header:
            raise ValueError(f"{path} has no column {name!r} to stratify by; columns: {header}")
        at = header.index(name)
        out = [None if row is None or len(row) != len(header) else row[at] for _, row in rows]
    else:
        for _, raw in iter_jsonl_lines(path, gz):
            record = parse_jsonl_line(raw)
            out.append(record.get(name) if isinstance(record, dict) else None)
        if out and all(v is None for v in out):
            raise ValueError(f"no record of {path} has the field {name!r} to stratify by")
    values = np.empty(len(out), dtype=object)
    values[:] = out
    return values
