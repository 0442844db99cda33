"""Bands over score columns: one signal's band, IGSE ``intersect`` (every signal's band at
once) and ``mean-rank`` (a band on the mean of the signals' percentile ranks), by budget at a
position or by intervals; and the quantile intervals that the tails filters use.

Budget: exactly ``keep`` records with a band at ``position`` (0 = the lowest entropies, 0.5 =
centred on the median, 1 = the highest), one number for every signal or one per signal. For
``intersect`` the bands of all signals widen together, each at its own position, until the
intersection holds the budget: a record enters at the largest of its signals' normalised
distances from their positions (``(p - u) / p`` below, ``(u - p) / (1 - p)`` above, u its
percentile rank). For ``mean-rank`` with one position for all, the band sits at that position
of the rank of the mean percentile rank; with positions that differ, the records kept are those
with the smallest *mean* of those normalised distances. Records tied at the last admitted width
are chosen by a hash of their row seeded with ``seed`` (the C++ kernel ``band_select``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from euds import _core

MEAN_RANK = "mean-rank"
BAND_METHODS = ("single", "intersect", MEAN_RANK)


def positions_of(position: float | Mapping[str, float], signals: list[str]) -> dict[str, float]:
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


def band_pick(
    values: dict[str, np.ndarray],
    method: str,
    positions: dict[str, float],
    keep_n: int,
    seed: int,
) -> tuple[np.ndarray, float, dict[str, dict[str, float]]]:
    """The ``keep_n`` records of one pool (NaN = not eligible) nearest the band's positions:
    (mask, band width, the band of each signal in quantiles and values)."""
    ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
    ps = np.array([positions[s] for s in values])
    at = float(ps[0])
    if not (ps == at).all():
        # centre() maps each position to 0.5, linearly on either side, so a mapped rank's
        # distance from 0.5 is the rank's normalised distance from its own position: one
        # band at 0.5 is every signal's band at its own position.
        ranks = np.stack([centre(r, p) for r, p in zip(ranks, ps, strict=True)])
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


def centre(ranks: np.ndarray, p: float) -> np.ndarray:
    """Percentile ranks mapped piecewise-linearly so that ``p`` lands on 0.5 (0 -> 0, 1 -> 1)."""
    below = 0.5 * ranks / p if p > 0 else np.zeros_like(ranks)
    above = 0.5 + 0.5 * (ranks - p) / (1.0 - p) if p < 1 else np.full_like(ranks, 0.5)
    return np.where(ranks < p, below, above)


def check_tails(tails: Any) -> tuple[float, float]:
    """A ``(lo, hi)`` pair of quantiles with ``0 <= lo < hi <= 1`` (numbers, not strings or
    bools), as floats."""
    try:
        lo, hi = tails
    except (TypeError, ValueError):
        raise ValueError(f"tails must be a (lo, hi) pair of quantiles, got {tails!r}") from None
    numbers = (int, float, np.integer, np.floating)
    if any(isinstance(q, bool) or not isinstance(q, numbers) for q in (lo, hi)) or not (
        0 <= lo < hi <= 1
    ):
        raise ValueError(f"tails must be quantiles with 0 <= lo < hi <= 1, got {tails!r}")
    return float(lo), float(hi)


def check_tail_rule(
    tails: Any, fences: Any, method: str, signals: Any, tailed: tuple[str, ...], default: Any
) -> tuple[tuple[float, float] | None, float | None]:
    """The checked junk filter of a selection: quantile ``tails``, Tukey's ``fences`` or
    neither, for the ``tailed`` methods only, with ``signals`` to apply it to; ``default``
    (tails) where neither is given."""
    for name, given in (("tails", tails), ("fences", fences)):
        if given is not None and method not in tailed:
            raise ValueError(f"{name}= is for the methods {tailed}, not {method!r}")
    if tails is not None and fences is not None:
        raise ValueError("give tails= (quantiles) or fences= (Tukey's k), not both")
    if tails is None and fences is None:
        tails = default
    if tails is not None:
        tails = check_tails(tails)
    if fences is not None:
        fences = check_fences(fences)
    if (tails is not None or fences is not None) and not signals:
        what = "tails" if fences is None else "fences"
        dropped = "tails" if fences is None else "outliers"
        raise ValueError(f"{what}= needs signals= to drop the {dropped} of (method {method!r})")
    return tails, fences


def tail_mask(
    values: Mapping[str, np.ndarray],
    usable: np.ndarray,
    tails: tuple[float, float] | None,
    fences: float | None,
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """The usable records inside every signal's tails or fences (all usable ones with
    neither), and each signal's interval."""
    eligible = usable.copy()
    intervals: dict[str, dict[str, float]] = {}
    if tails is None and fences is None:
        return eligible, intervals
    for name, v in values.items():
        masked = np.where(usable, v, np.nan)
        mask, intervals[name] = (
            fence_mask(masked, fences) if fences is not None else quantile_mask(masked, tails)
        )
        eligible &= mask
    return eligible, intervals


def check_fences(fences: Any) -> float:
    """Tukey's ``k``: a positive finite number."""
    if (
        isinstance(fences, bool)
        or not isinstance(fences, (int, float, np.integer, np.floating))
        or not 0 < float(fences) < math.inf
    ):
        raise ValueError(f"fences must be a positive number (Tukey's k, e.g. 1.5), got {fences!r}")
    return float(fences)


def fence_mask(v: np.ndarray, k: float) -> tuple[np.ndarray, dict[str, float]]:
    """The records inside Tukey's fences of ``v``'s non-NaN values, ``[Q1 - k * IQR,
    Q3 + k * IQR]``, and the fences. Unlike quantile tails, which always drop their share,
    fences drop only values far from the middle half: few where no record is unusual."""
    q1, q3 = _core.nan_quantiles(v, np.array([0.25, 0.75]))
    lo, hi = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    return _core.interval_mask(v, lo, hi), {
        "fence_k": k,
        "q1": float(q1),
        "q3": float(q3),
        "lo": float(lo),
        "hi": float(hi),
    }


def by_intervals(
    values: dict[str, np.ndarray],
    method: str,
    intervals: Mapping[str, tuple[float, float]],
    absolute: bool,
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """The records inside every signal's interval (``mean-rank``: inside the one interval on
    the mean rank): (mask, each interval in quantiles and values)."""
    n = len(next(iter(values.values())))
    checked: dict[str, tuple[float, float]] = {}
    for name, pair in intervals.items():
        try:
            lo, hi = (float(pair[0]), float(pair[1]))
        except (TypeError, ValueError, IndexError, KeyError):
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
    if method == MEAN_RANK:
        if set(checked) != {MEAN_RANK}:
            raise ValueError(
                f"method 'mean-rank' takes one interval named {MEAN_RANK!r}, got {sorted(checked)}"
            )
        ranks = np.stack([_core.percentile_ranks(v) for v in values.values()])
        combined = _core.mean_rank(ranks)
        keep, out[MEAN_RANK] = quantile_mask(combined, checked[MEAN_RANK], absolute)
    else:
        missing = [s for s in values if s not in checked]
        extra = [s for s in checked if s not in values]
        if missing or extra:
            raise ValueError(f"give one interval per signal: missing {missing}, unexpected {extra}")
        keep = np.ones(n, dtype=bool)
        for s, v in values.items():
            mask, out[s] = quantile_mask(v, checked[s], absolute)
            keep &= mask
    return keep, out


def quantile_mask(
    v: np.ndarray, interval: tuple[float, float], absolute: bool = False
) -> tuple[np.ndarray, dict[str, float]]:
    """The records inside ``interval`` (quantiles of ``v``'s non-NaN values, or values with
    ``absolute``), and the interval in quantiles and values."""
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
