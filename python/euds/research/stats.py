"""The statistics of the experiment's claims: paired differences with a t interval, Holm's
correction over a family of comparisons, TOST equivalence, one-sided non-inferiority, and the
minimum detectable effect (what a cell could have seen).

A claim "method beats random" is about the per-seed paired differences ``d_s = acc(method, s)
- acc(random, s)``: seed s fixes the pool, the random subset and the fine-tune seed alike, so
the pairing removes what the two share. Student's t with n - 1 degrees of freedom (scipy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Paired:
    """Mean of paired differences, its two-sided ``level`` t interval and p-value (H0: 0)."""

    n: int
    mean: float
    lo: float
    hi: float
    p: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired(differences: Any, level: float = 0.95) -> Paired:
    """The t interval and two-sided p of the mean of ``differences`` (NaN with fewer than 2;
    with zero spread, the interval is the mean and p is 0, or 1 for a mean of 0)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"differences must be 1-D, got shape {d.shape}")
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else float("nan")
        return Paired(n, mean, float("nan"), float("nan"), float("nan"))
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / np.sqrt(n)
    if se == 0:
        return Paired(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return Paired(n, mean, mean - half, mean + half, p)


def holm(p_values: Any) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def tost(differences: Any, margin: float) -> float:
    """p of the two one-sided t tests that the mean difference lies within ``(-margin,
    margin)``: equivalence is shown at level a when p < a (the (1 - 2a) interval is inside)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    n = len(d)
    if n < 2:
        return float("nan")
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / np.sqrt(n)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    p_low = float(stats.t.sf((mean + margin) / se, n - 1))  # H0: mean <= -margin
    p_high = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= margin
    return max(p_low, p_high)


def mde(differences: Any, level: float = 0.95, power: float = 0.8) -> float:
    """The minimum detectable effect of a paired t test on these differences: the true mean
    difference it finds with probability ``power`` at two-sided ``level``, given their spread
    and number, ``(t_{1-a/2} + t_power) * sd / sqrt(n)`` (NaN with fewer than 2)."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2:
        return float("nan")
    t_a = float(stats.t.ppf(0.5 + level / 2, n - 1))
    t_b = float(stats.t.ppf(power, n - 1))
    return (t_a + t_b) * float(d.std(ddof=1)) / float(np.sqrt(n))


def noninferiority(differences: Any, margin: float) -> float:
    """One-sided p of the t test that the mean difference is above ``-margin`` (H0: mean <=
    -margin): non-inferiority is shown at level a when p < a."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    n = len(d)
    if n < 2:
        return float("nan")
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / np.sqrt(n)
    if se == 0:
        return 0.0 if mean > -margin else 1.0
    return float(stats.t.sf((mean + margin) / se, n - 1))
