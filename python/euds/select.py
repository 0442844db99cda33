"""Interval selection over score columns: single signal, IGSE ``intersect`` and ``mean-rank``.

Two ways to say what to keep:

* **intervals**: per signal ``(lo, hi)`` in quantiles of the pool (default) or in absolute
  values (``absolute=True``). ``intersect`` keeps records inside every interval;
  ``mean-rank`` takes one interval, on the percentile rank of the mean of the signals'
  percentile ranks; ``single`` takes one signal.
* **budget**: keep exactly ``round(budget * n)`` records with a band at ``position`` (0 = the
  lowest entropies, 0.5 = centred on the median, 1 = the highest). For ``intersect`` the bands
  of all signals widen together until the intersection holds the budget. Records tied at the
  last admitted width (common: short texts share entropy values) are chosen by a hash of
  their row seeded with ``seed``, not by input order, so no part of the file is favoured.

A record whose score is NaN in a used signal (empty text, unreadable record, ...) is never kept;
its reason is ``unscored``. Infinite scores raise ``ValueError`` naming the first such record,
unless ``on_nonfinite="drop"`` (reason ``nonfinite``). Every record is either kept or dropped
with a reason: kept + dropped = input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from euds import _core
from euds.signals import SIGNALS

Method = Literal["single", "intersect", "mean-rank"]
METHODS: tuple[str, ...] = ("single", "intersect", "mean-rank")
SELECTABLE = (*SIGNALS, "nll")
MEAN_RANK = "mean-rank"

REASON_KEPT = ""
REASON_OUTSIDE = "outside_interval"
REASON_UNSCORED = "unscored"
REASON_NONFINITE = "nonfinite"


@dataclass
class Selection:
    """The outcome of :func:`select`: ``keep[i]`` for every input record, and why not."""

    keep: np.ndarray  # bool [n]
    reason: np.ndarray  # object (str) [n]; "" for kept records
    method: str
    signals: list[str]
    budget: float | None
    position: float | None
    absolute: bool
    # Per signal (and "mean-rank"): {"q_lo", "q_hi"} in quantiles and {"lo", "hi"} in values.
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    band_width: float | None = None
    seed: int | None = None

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
            "intervals": self.intervals,
            "counts": self.counts,
        }


def select(
    scores: Any,
    *,
    signals: Sequence[str] | None = None,
    method: Method | None = None,
    budget: float | None = None,
    position: float = 0.5,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    absolute: bool = False,
    on_nonfinite: Literal["raise", "drop"] = "raise",
    seed: int = 0,
) -> Selection:
    """Selects records from score columns.

    ``scores``: a mapping of column name to array, a ``pyarrow.Table`` or a
    ``pandas.DataFrame`` holding the signal columns (and ``id``, used in error messages).
    Give exactly one of ``budget`` (a share in (0, 1]) and ``intervals``.
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
    if signals is None:
        signals = [s for s in SIGNALS if s in columns]
    signals = list(signals)
    if not signals:
        raise ValueError(f"no signal columns to select on; columns: {sorted(columns)}")
    for s in signals:
        if s not in SELECTABLE:
            raise ValueError(f"unknown signal {s!r}; selectable: {SELECTABLE}")
        if s not in columns:
            raise ValueError(f"the scores have no {s!r} column; columns: {sorted(columns)}")
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
    # Every used signal ranks the same pool: the records scorable on all of them.
    masked = {s: np.where(usable, v, np.nan) for s, v in values.items()}

    if budget is not None:
        sel = _by_budget(masked, n, method, budget, position, seed)
    else:
        assert intervals is not None
        sel = _by_intervals(masked, method, intervals, absolute)
        sel.position = None
    sel.signals = signals
    sel.reason = reason
    sel.reason[usable & ~sel.keep] = REASON_OUTSIDE
    return sel


def _by_budget(
    values: dict[str, np.ndarray], n: int, method: str, budget: float, position: float, seed: int
) -> Selection:
    if not (isinstance(budget, (int, float)) and 0 < budget <= 1):
        raise ValueError(f"budget must be a share in (0, 1], got {budget!r}")
    if not (isinstance(position, (int, float)) and 0 <= position <= 1):
        raise ValueError(f"position must lie in [0, 1], got {position!r}")
    keep_n = round(budget * n)
    ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
    if method == "mean-rank":
        ranks = _core.mean_rank(ranks)[None, :]
    n_valid = int((~np.isnan(ranks).any(axis=0)).sum())
    if keep_n > n_valid:
        raise ValueError(
            f"budget {budget} asks for {keep_n} of {n} records but only {n_valid} have every "
            "score; lower the budget"
        )
    keep, width = _core.band_select(np.ascontiguousarray(ranks), float(position), keep_n, seed)
    q_lo = position * (1.0 - width)
    q_hi = q_lo + width
    intervals: dict[str, dict[str, float]] = {}
    if method == "mean-rank":
        intervals[MEAN_RANK] = {"q_lo": q_lo, "q_hi": q_hi}
    for s, v in values.items():
        entry: dict[str, float] = {}
        if method != "mean-rank":
            lo, hi = _core.nan_quantiles(v, np.array([q_lo, q_hi]))
            entry.update(q_lo=q_lo, q_hi=q_hi, lo=float(lo), hi=float(hi))
        kept = v[keep]
        if kept.size:
            entry.update(kept_min=float(np.min(kept)), kept_max=float(np.max(kept)))
        intervals[s] = entry
    return Selection(
        keep=keep,
        reason=np.empty(0, dtype=object),
        method=method,
        signals=[],
        budget=float(budget),
        position=float(position),
        absolute=False,
        intervals=intervals,
        band_width=float(width),
        seed=seed,
    )


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
            return {
                name: scores.column(name).to_numpy(zero_copy_only=False)
                for name in scores.column_names
            }
    except ImportError:  # pragma: no cover
        pass
    if hasattr(scores, "columns") and hasattr(scores, "__getitem__"):  # pandas.DataFrame
        return {str(c): scores[c].to_numpy() for c in scores.columns}
    raise ValueError(
        f"scores must be a mapping of arrays, a pyarrow.Table or a pandas.DataFrame, got "
        f"{type(scores).__name__}"
    )


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
    selection = select(table, **options)
    config = score_meta.get("config", {})
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
