""":func:`select`: which records of a scored pool to keep, and why each other one was dropped.

One pass of rules, the same for every method:

1. **usable**: a record whose score is NaN in a used signal (no text, unreadable record...) or
   that has no embedding where the method needs one is never kept (reason ``unscored``);
   infinite scores raise ``ValueError`` naming the record, unless ``on_nonfinite="drop"``
   (``nonfinite``).
2. **damaged texts** (``drop_damaged``, :mod:`euds.damage`): mojibake, U+FFFD, control characters
   (``damaged_text``); before the copy rules, so that a damaged copy gives way to its twin.
3. **duplicates** (:mod:`euds.selection.copies`, keys and groups from :mod:`euds.duplicates`):
   later copies of an exact-duplicate text (``duplicate_text``, unless ``keep_duplicates``);
   with ``drop_near_duplicates`` all but one of each near-duplicate group
   (``near_duplicate_text``): the first, or with ``near_duplicate_keep`` the one lowest in that
   score; with ``drop_contained`` every text found inside a longer one (``contained_text``).
   The budget stays a share of *all* input records.
4. **tails** (filter-random, coverage, typical, target): each signal's values outside the
   quantiles ``tails``, or outside Tukey's ``fences``, are dropped (``tail``): the junk filter.
5. **strata** (``stratify``: one label per record): every stratum gets a quota in proportion to
   its eligible records (largest remainder), and the method runs inside each stratum.
6. **the method** picks its quota: a band (``outside_interval`` for the rest), a uniform draw
   (filter-random, ``not_sampled``), coverage's strata (``not_sampled``), one typical member per
   cluster (``other_in_cluster``), the most target-like (``less_target_like``).

Every record is kept or dropped with exactly one reason: kept + dropped = input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from euds import _core
from euds.selection.bands import (
    BAND_METHODS,
    MEAN_RANK,
    band_pick,
    by_intervals,
    check_tail_rule,
    positions_of,
    tail_mask,
)
from euds.selection.columns import columns_of, length, score_column
from euds.selection.copies import (
    KEEP_FIRST,
    KEEP_NONE,
    NEAR_KEYS,
    check_copy_options,
    distinct_fit_groups,
    drop_copies,
    drop_damaged_texts,
)
from euds.selection.coverage import DEFAULT_STRATA, coverage_pick, coverage_score
from euds.selection.quotas import draw, largest_remainder, strata_codes
from euds.selection.target import TARGET
from euds.selection.typical import TYPICAL, check_typical_fit, typical_pick
from euds.signals import SIGNALS

Method = Literal[
    "single", "intersect", "mean-rank", "filter-random", "coverage", "typical", "target"
]
FILTER_RANDOM = "filter-random"
COVERAGE = "coverage"
METHODS: tuple[str, ...] = (*BAND_METHODS, FILTER_RANDOM, COVERAGE, TYPICAL, TARGET)
# Methods that take the tails filter, and those that default to DEFAULT_TAILS.
TAILED = (FILTER_RANDOM, COVERAGE, TYPICAL, TARGET)
DEFAULT_TAILED = (FILTER_RANDOM, COVERAGE)
# The signals, and the LM's NLL per token (nll) and in bits per byte (bpb; absent from score
# directories made before it existed: rescore them to select on it).
SELECTABLE = (*SIGNALS, "nll", "bpb")
# The signal coverage stratifies when none is named.
COVERAGE_SIGNALS = ("generative",)
DEFAULT_TAILS = (0.05, 0.95)
# What a budget keeps when neither a method nor signals are named (docs/results.md, "The
# default, as chosen"; each step chose on dev data only, by a rule fixed before any evaluation
# number was read): the largest worst-case dev-probe gain over random across SST-2, 20
# Newsgroups and TREC, clean and 20%-junk pools (default_choice.json); then an incumbent
# replaced only on a lead whose 95% interval is above 0, on fresh seeds (rule_check.json: 1%);
# then a challenger shown within 0.5 point on dev of every pool that keeps less junk on every
# noisy one (fresh_rule2.json: 16% and 30%). A budget between two screened ones takes the
# choice of the nearer on a log scale. research.methods.CANDIDATES names the same settings
# (checked by tests/selection/test_default.py).
DEFAULT_CHOICE: tuple[tuple[float, str], ...] = (
    (0.01, "filter-random+clean"),
    (0.02, "typical+clean"),
    (0.05, "typical+clean"),
    (0.1, "typical+clean"),
    (0.16, "typical+damaged"),
    (0.3, "typical+damaged"),
)
DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    # One typical member per cluster, after each scored signal's junk tails, near duplicates
    # and contained texts are dropped.
    "typical+clean": {
        "method": TYPICAL,
        "tails": DEFAULT_TAILS,
        "drop_near_duplicates": True,
        "drop_contained": True,
    },
    # One typical member per cluster, after texts with a broken encoding are dropped.
    "typical+damaged": {"method": TYPICAL, "drop_damaged": True},
    # A uniform draw after each scored signal's junk tails, near duplicates and contained texts.
    "filter-random+clean": {
        "method": FILTER_RANDOM,
        "drop_near_duplicates": True,
        "drop_contained": True,
    },
}
# Which copy of a near-duplicate group stays: the first, none (every member goes), or the
# lowest in one of these scores.
NEAR_DUPLICATE_KEEP = (KEEP_FIRST, KEEP_NONE, *SELECTABLE)

REASON_KEPT = ""
REASON_OUTSIDE = "outside_interval"
REASON_UNSCORED = "unscored"
REASON_NONFINITE = "nonfinite"
REASON_TAIL = "tail"
REASON_NOT_SAMPLED = "not_sampled"
REASON_OTHER_IN_CLUSTER = "other_in_cluster"
REASON_LESS_TARGET_LIKE = "less_target_like"
# Why an eligible record the method did not pick was dropped.
NOT_PICKED = {
    **dict.fromkeys(BAND_METHODS, REASON_OUTSIDE),
    FILTER_RANDOM: REASON_NOT_SAMPLED,
    COVERAGE: REASON_NOT_SAMPLED,
    TYPICAL: REASON_OTHER_IN_CLUSTER,
    TARGET: REASON_LESS_TARGET_LIKE,
}


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
    fences: float | None = None
    # What was stratified on ("clusters", a field name, "labels") and each stratum's quota,
    # band width and intervals.
    stratify: str | None = None
    strata: list[dict[str, Any]] | None = None
    duplicates: dict[str, Any] = field(default_factory=dict)
    # The damaged-text rule's account: asked for or not, and how many of each kind it dropped.
    damaged: dict[str, Any] = field(default_factory=dict)
    # What the method says of itself (coverage's strata, typical's clusters, the target...).
    details: dict[str, Any] = field(default_factory=dict)

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
            "fences": self.fences,
            "intervals": self.intervals,
            "stratify": self.stratify,
            "strata": self.strata,
            "duplicates": self.duplicates,
            "damaged": self.damaged,
            "details": self.details,
            "counts": self.counts,
        }


def select(
    scores: Any,
    *,
    signals: Sequence[str] | None = None,
    method: Method | None = None,
    budget: float | None = None,
    position: float | Mapping[str, float] | None = None,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    absolute: bool = False,
    on_nonfinite: Literal["raise", "drop"] = "raise",
    seed: int = 0,
    stratify: Any = None,
    tails: tuple[float, float] | None = None,
    fences: float | None = None,
    strata: int = DEFAULT_STRATA,
    keep_duplicates: bool = False,
    drop_near_duplicates: bool = False,
    near_duplicate_keep: str = KEEP_FIRST,
    drop_contained: bool = False,
    drop_damaged: bool = False,
    texts: Sequence[str | None] | None = None,
    embeddings: np.ndarray | None = None,
    typical_fit: Literal["eligible", "pool", "distinct"] = "eligible",
) -> Selection:
    """Selects records from score columns (see the module docstring for the rules).

    ``scores``: a mapping of column name to array, a ``pyarrow.Table`` or a
    ``pandas.DataFrame`` holding the signal columns (and ``id``, used in error messages;
    ``text_hash``, for exact duplicates; ``near_keys``, for ``drop_near_duplicates``;
    ``target``, for ``method="target"``). Give exactly one of ``budget`` (a share in (0, 1])
    and ``intervals`` (band methods only). ``position``: one number, or one per signal (a
    mapping naming every used signal; it names the signals when ``signals`` is not given);
    default 0.5, the band centred on the median; for ``typical``, 0 = most typical (the
    default), 1 = least. A budget with neither ``method`` nor ``signals``: the default
    (:func:`default_choice`: at 1.4% and below a filtered uniform draw, above it typicality, which
    needs ``embeddings``; it needs ``texts`` at every budget, for its text rules);
    ``intervals`` name their signals; a ``method`` alone uses every scored signal. ``signals``
    for coverage: the score stratified (default :data:`COVERAGE_SIGNALS`; several: their mean
    rank); for typical and target: only the signals whose ``tails`` are dropped first.
    ``fences``, instead of ``tails``: Tukey's k, dropping values below ``Q1 - k * IQR`` or above
    ``Q3 + k * IQR`` (1.5: his outlier rule). ``stratify``: one label per record (None/NaN
    labels form their own stratum). ``strata``: coverage's strata. ``near_duplicate_keep``:
    which copy of a near-duplicate group stays, ``"first"``, ``"none"`` (the whole group goes)
    or the one lowest in a score column (of :data:`SELECTABLE`; ``"generative"``: the most
    predictable, usually the unedited). ``drop_damaged``: drop texts with a broken encoding.
    ``texts`` (for ``drop_contained`` and ``drop_damaged``) and ``embeddings`` ``[n, d]``
    (for ``typical``) are per record, in the scores' order. ``typical_fit``: the records
    typicality's k-means is fitted on, ``"eligible"`` (those the rules left), ``"pool"``
    (every record with an embedding, the rest only masked) or ``"distinct"`` (the pool, each
    group of copies once; needs ``text_hash`` and ``near_keys``: :mod:`euds.selection.typical`).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    seed = int(seed)
    for name, flag in (
        ("absolute", absolute),
        ("keep_duplicates", keep_duplicates),
        ("drop_near_duplicates", drop_near_duplicates),
        ("drop_contained", drop_contained),
        ("drop_damaged", drop_damaged),
    ):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if near_duplicate_keep not in NEAR_DUPLICATE_KEEP:
        raise ValueError(
            f"near_duplicate_keep must be one of {NEAR_DUPLICATE_KEEP}, got {near_duplicate_keep!r}"
        )
    columns = columns_of(scores)
    n = length(columns)
    if (budget is None) == (intervals is None):
        raise ValueError("give exactly one of budget= and intervals=")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1
    ):
        raise ValueError(f"budget must be a share in (0, 1], got {budget!r}")
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if on_nonfinite not in ("raise", "drop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'drop', got {on_nonfinite!r}")
    default = None
    near_absent = False
    if uses_default(method, signals, intervals, budget, position):
        assert budget is not None
        default, spec = default_choice(float(budget))
        method = spec["method"]
        # The caller's tails or fences replace the default's tails.
        if (spec.get("tails") or fences is not None) and tails is None:
            tails = spec.get("tails") if fences is None else None
            signals = [s for s in SIGNALS if s in columns]
        # Near duplicates need the near_keys column (scores made before it existed lack it):
        # the default then goes without, and says so in the manifest.
        near_absent = spec.get("drop_near_duplicates", False) and NEAR_KEYS not in columns
        drop_near_duplicates = drop_near_duplicates or (
            spec.get("drop_near_duplicates", False) and not near_absent
        )
        drop_contained = drop_contained or spec.get("drop_contained", False)
        drop_damaged = drop_damaged or spec.get("drop_damaged", False)
        needs = [
            what
            for what, given, needed in (
                (
                    "embeddings= (the semantic signal's, one row per record)",
                    embeddings,
                    method == TYPICAL,
                ),
                ("texts=", texts, drop_contained or drop_damaged),
            )
            if needed and given is None
        ]
        if needs:
            raise ValueError(
                f"the default selection at budget {budget} ({default}: docs/selection.md) needs "
                f"{' and '.join(needs)}: pass them (select_file reads a score directory's), or "
                "name method= / signals="
            )
    signals = _signals(columns, signals, method, intervals, position)
    if method is None:
        method = "single" if len(signals) == 1 else "intersect"
    if method == "single" and len(signals) != 1:
        raise ValueError(f"method 'single' takes one signal, got {signals}")
    if method not in BAND_METHODS and budget is None:
        raise ValueError(f"method {method!r} needs budget=, not intervals=")
    if stratify is not None and budget is None:
        raise ValueError("stratify= needs budget=, not intervals=")
    tails, fences = check_tail_rule(
        tails, fences, method, signals, TAILED, DEFAULT_TAILS if method in DEFAULT_TAILED else None
    )
    check_typical_fit(typical_fit, method)
    if position is None:
        position = 0.0 if method == TYPICAL else 0.5
    positions = positions_of(position, signals) if method in BAND_METHODS else {}
    if method == TYPICAL and not (
        isinstance(position, (int, float)) and not isinstance(position, bool) and 0 <= position <= 1
    ):
        raise ValueError(f"position for typical must be a number in [0, 1], got {position!r}")
    if isinstance(stratify, str):
        raise ValueError(
            f"stratify={stratify!r} needs the score directory or the input: use select_file; "
            "select takes one label per record"
        )
    if not isinstance(strata, int) or isinstance(strata, bool) or strata < 1:
        raise ValueError(f"strata must be a positive int, got {strata!r}")
    population = strata_codes(stratify, n) if stratify is not None else None
    x = _embeddings(embeddings, n) if method == TYPICAL else None
    check_copy_options(
        columns,
        n,
        drop_near_duplicates=drop_near_duplicates,
        near_duplicate_keep=near_duplicate_keep,
        near_absent=near_absent,
        text_rules={"drop_contained": drop_contained, "drop_damaged": drop_damaged},
        texts=texts,
        default_budget=budget if default else None,
    )

    # 1. usable
    values = {s: score_column(columns, s) for s in signals}
    reason = np.full(n, REASON_KEPT, dtype=object)
    usable = np.ones(n, dtype=bool)
    for s, v in values.items():
        nan, inf = np.isnan(v), np.isinf(v)
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
    ranked: np.ndarray | None = None  # the column a top-k method keeps the top of
    if method == TARGET:
        if TARGET not in columns:
            raise ValueError(
                f"method 'target' needs a {TARGET!r} score column (euds.selection.target_column, "
                "or select_file with a target sample)"
            )
        ranked = score_column(columns, TARGET)
        bad = ~np.isfinite(ranked)
        reason[bad & usable] = REASON_UNSCORED
        usable &= ~bad
    fitted: np.ndarray | None = None  # the rows typicality's k-means sees, when not the eligible
    if x is not None:
        missing = np.isnan(x[:, 0]) if x.shape[1] else np.ones(n, dtype=bool)
        reason[missing & usable] = REASON_UNSCORED
        usable &= ~missing
        if typical_fit != "eligible":
            fitted = ~missing
    copies: np.ndarray | None = None  # for a distinct fit, the first row of each row's copies
    if typical_fit == "distinct" and fitted is not None:
        copies = distinct_fit_groups(columns, fitted)

    # 2. damaged texts
    damaged = drop_damaged_texts(drop_damaged, texts, usable, reason)

    # 3. duplicates
    duplicates = drop_copies(
        columns,
        usable,
        reason,
        keep_duplicates=keep_duplicates,
        drop_near_duplicates=drop_near_duplicates,
        near_duplicate_keep=near_duplicate_keep,
        drop_contained=drop_contained,
        texts=texts,
    )

    if budget is None:
        assert intervals is not None
        masked = {s: np.where(usable, v, np.nan) for s, v in values.items()}
        keep, bands = by_intervals(masked, method, intervals, absolute)
        sel = Selection(keep, reason, method, signals, None, None, absolute, intervals=bands)
    else:
        sel = _by_budget(
            method,
            values,
            usable,
            reason,
            float(budget),
            positions,
            position,
            seed,
            population,
            tails,
            fences,
            strata,
            x,
            ranked,
            fitted,
            copies,
        )
    sel.signals = signals
    sel.duplicates = duplicates
    sel.damaged = damaged
    if default is not None:
        sel.details["default"] = {"choice": default, "budget": float(budget), "rule": DEFAULT_RULE}
        if near_absent:
            sel.duplicates["near"] = {
                "detected": False,
                "note": f"the scores have no {NEAR_KEYS} column: near duplicates were not "
                "detected (score again to detect them)",
            }
    if population is not None:
        sel.stratify = "labels"
    sel.reason = reason
    sel.reason[usable & ~sel.keep & (reason == REASON_KEPT)] = REASON_OUTSIDE
    return sel


DEFAULT_RULE = (
    "at the nearest screened budget (log scale), the candidate chosen on dev data by rules "
    "fixed before any evaluation number was read (docs/results.md, The default, as chosen)"
)


def uses_default(method: Any, signals: Any, intervals: Any, budget: Any, position: Any) -> bool:
    """Whether a selection keeps the default: a budget, and no method, signals or intervals
    (a position per signal names the signals of a band)."""
    return (
        method is None
        and signals is None
        and intervals is None
        and budget is not None
        and not isinstance(position, Mapping)
    )


def default_choice(budget: float) -> tuple[str, dict[str, Any]]:
    """The default's name and settings at ``budget``: the choice at the screened budget nearest
    on a log scale (:data:`DEFAULT_CHOICE`)."""
    at = min(DEFAULT_CHOICE, key=lambda c: (abs(math.log(budget / c[0])), c[0]))
    return at[1], DEFAULT_SPECS[at[1]]


def _signals(
    columns: dict[str, Any],
    signals: Sequence[str] | None,
    method: str | None,
    intervals: Mapping[str, Any] | None,
    position: Any,
) -> list[str]:
    """The signals a selection uses, checked against the columns."""
    if intervals is not None and signals is None:
        # Per-signal intervals name their signals; a mean-rank interval uses every scored one.
        signals = [s for s in intervals if s != MEAN_RANK] or None
    if isinstance(position, Mapping) and signals is None:
        signals = list(position)
    if signals is None:
        if method in (TYPICAL, TARGET):
            signals = []
        elif method == COVERAGE and all(s in columns for s in COVERAGE_SIGNALS):
            signals = list(COVERAGE_SIGNALS)
        else:
            signals = [s for s in SIGNALS if s in columns]
    if isinstance(signals, str):
        raise ValueError(f"signals must be a list of names, got the string {signals!r}")
    signals = list(signals)
    if not signals and method not in (TYPICAL, TARGET):
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
    return signals


def _embeddings(embeddings: Any, n: int) -> np.ndarray:
    if embeddings is None:
        raise ValueError(
            "method 'typical' needs embeddings= ([n, d], one row per record; select_file reads "
            "a score directory's)"
        )
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) != n:
        raise ValueError(f"embeddings must be [n={n}, d], got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"embeddings must be floating point, got dtype {x.dtype}")
    return x


def _by_budget(
    method: str,
    values: dict[str, np.ndarray],
    usable: np.ndarray,
    reason: np.ndarray,
    budget: float,
    positions: dict[str, float],
    position: Any,
    seed: int,
    population: tuple[np.ndarray, list[Any]] | None,
    tails: tuple[float, float] | None,
    fences: float | None,
    strata: int,
    x: np.ndarray | None,
    ranked: np.ndarray | None,
    fitted: np.ndarray | None,
    copies: np.ndarray | None,
) -> Selection:
    n = len(usable)
    keep_n = round(budget * n)
    eligible, intervals = tail_mask(values, usable, tails, fences)
    reason[usable & ~eligible] = REASON_TAIL
    n_valid = int(eligible.sum())
    if keep_n > n_valid:
        if tails is not None:
            what = f"survive the tails {tails[0]}:{tails[1]}; lower the budget or widen the tails"
        elif fences is not None:
            what = f"lie inside the fences (k = {fences}); lower the budget or raise k"
        else:
            what = "have every score (and are not a later copy of another text); lower the budget"
        raise ValueError(
            f"budget {budget} asks for {keep_n} of {n} records but only {n_valid} {what}"
        )
    codes, names = population if population is not None else (np.zeros(n, np.int64), [None])
    sizes = np.bincount(codes[eligible], minlength=len(names))
    quotas = largest_remainder(sizes, keep_n)
    keep = np.zeros(n, dtype=bool)
    per_stratum = []
    for k, name in enumerate(names):
        rows = np.flatnonzero(codes == k) if population is not None else np.arange(n)
        quota = int(quotas[k])
        entry: dict[str, Any] = {
            "stratum": name,
            "records": len(rows),
            "eligible": int(sizes[k]),
            "quota": quota,
        }
        if method in BAND_METHODS:
            part = {s: np.where(eligible[rows], v[rows], np.nan) for s, v in values.items()}
            chosen, width, band = band_pick(part, method, positions, quota, seed)
            keep[rows[chosen]] = True
            entry.update(band_width=width, intervals=band)
        else:
            pool = rows[eligible[rows]]
            if method == FILTER_RANDOM:
                picked = draw(pool, quota, seed)
            elif method == COVERAGE:
                score, what = coverage_score({s: v[pool] for s, v in values.items()})
                picked, entry["coverage"] = coverage_pick(score, pool, quota, strata, seed)
                entry["coverage"]["score"] = what
            elif method == TYPICAL:
                assert x is not None
                if fitted is None:
                    picked, entry["typical"] = typical_pick(x[pool], pool, quota, position, seed)
                else:  # fitted on the stratum's every embedded row, the rest masked
                    fit = rows[fitted[rows]]
                    copy_of = None
                    if copies is not None:  # the stratum's first of each group of copies
                        _, first, inverse = np.unique(
                            copies[fit], return_index=True, return_inverse=True
                        )
                        copy_of = first[inverse.reshape(-1)]
                    picked, entry["typical"] = typical_pick(
                        x[fit], fit, quota, position, seed, eligible=eligible[fit], copy_of=copy_of
                    )
            else:  # target: the most target-like, ties by the seeded row hash
                assert ranked is not None
                at, _ = _core.band_select(
                    np.ascontiguousarray(_core.percentile_ranks(ranked[pool])[None, :]),
                    1.0,
                    quota,
                    seed,
                )
                picked = pool[at]
                if quota:
                    entry["target"] = {"kept_min": float(ranked[picked].min())}
            keep[picked] = True
        per_stratum.append(entry)
    reason[eligible & ~keep] = NOT_PICKED[method]
    if population is None and method in BAND_METHODS:
        intervals = per_stratum[0]["intervals"]
    for s, v in values.items():
        entry = intervals.setdefault(s, {})
        if method in BAND_METHODS and method != MEAN_RANK:
            entry["position"] = positions[s]
        kept = v[keep]
        if kept.size:
            entry.update(kept_min=float(np.min(kept)), kept_max=float(np.max(kept)))
    uniform = len(set(positions.values())) <= 1
    if method in BAND_METHODS:
        shown_position: Any = next(iter(positions.values())) if uniform else positions
    elif method == TYPICAL:
        shown_position = float(position)
    else:
        shown_position = None
    details: dict[str, Any] = {}
    if population is None:
        details = {k: v for k, v in per_stratum[0].items() if k in (COVERAGE, TYPICAL, TARGET)}
        details = next(iter(details.values()), {})
    return Selection(
        keep=keep,
        reason=reason,
        method=method,
        signals=[],
        budget=budget,
        position=shown_position,
        absolute=False,
        intervals=intervals,
        band_width=per_stratum[0].get("band_width") if population is None else None,
        seed=seed,
        tails=tails,
        fences=fences,
        strata=per_stratum if population is not None else None,
        details=details,
    )
