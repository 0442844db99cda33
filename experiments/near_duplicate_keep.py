"""Which copy of a near-duplicate group should a clean selection keep: the first, or the one
lowest in generative entropy? The ``+clean`` candidates keep the first copy. On the noisy pools
the junk copy is the first one about half the time (docs/results.md, Noise). ``+clean-gen``
keeps the copy lowest in generative entropy (``near_duplicate_keep="generative"``).

The rule was written before any screen of ``+clean-gen`` was read. It works on dev data only:
eval numbers are reported, never used. At each budget whose default is ``X+clean``,
``X+clean-gen`` replaces it when both of these hold:

(a) on every dataset × pool, the mean over seeds of its dev-probe accuracy minus ``X+clean``'s
    is shown above -0.5 points: a one-sided paired t test at 5%, the issue's non-inferiority
    margin;
(b) on every noisy pool, its mean junk share is no higher than ``X+clean``'s.

The screens are :mod:`rule_check`'s own, read from its cache (fresh seeds, every candidate).
For each X in typical, filter-random and coverage, and at each budget, dataset and pool, this
script reports:

* the paired dev and eval differences (``X+clean-gen`` minus ``X+clean``), with 95% CI, MDE and
  the non-inferiority p;
* the junk share and the near-duplicate junk kept by each;
* on the clean pools, the share of ``X+clean-gen``'s records that ``X+clean`` keeps too.

Output: docs/results/near_duplicate_keep.json by default.

Run: python experiments/near_duplicate_keep.py experiments/{sst2,trec,20ng}.toml --seeds 30-35
[--dataset-seeds 20ng=30-32] [--budgets ...] [--threads 1] [--output FILE]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rule_check import METHODS, budgets_of, check_own_output, screen_all_of, screen_arguments

from euds.cache import atomic_write_bytes
from euds.research.methods import choose
from euds.research.stats import mde, noninferiority, paired
from euds.selection import DEFAULT_CHOICE

ROOT = Path(__file__).resolve().parent.parent
BASES = ("typical+clean", "filter-random+clean", "coverage+clean")
MARGIN = 0.5
RULE = (
    "at each budget whose default is X+clean, X+clean-gen replaces it when (a) on every dataset "
    "x pool its mean dev-probe difference from X+clean is shown above -0.5 points (one-sided "
    "paired t test, 5%) and (b) on every noisy pool its mean junk share is no higher"
)


def cell(rows: list[dict[str, Any]], method: str, budget: float, pool: str) -> dict[int, Any]:
    return {
        r["seed"]: r
        for r in rows
        if r["method"] == method and r["budget"] == budget and r["pool"] == pool
    }


def compare(first: dict[int, Any], gen: dict[int, Any], key: str) -> dict[str, Any]:
    seeds = sorted(s for s in first if s in gen)
    d = np.array([100 * (gen[s][key] - first[s][key]) for s in seeds])
    d = d[np.isfinite(d)]
    return {"seeds": len(d), **difference(d)}


def difference(d: np.ndarray) -> dict[str, Any]:
    """Paired differences' mean, 95% CI, MDE and non-inferiority p at -MARGIN."""
    p = paired(d)
    return {
        "mean": p.mean,
        "ci": [p.lo, p.hi],
        "mde": mde(d),
        "noninferior_p": noninferiority(d, MARGIN),
    }


def start(
    doc: str, seeds: str, output: Path, methods: list[str] = METHODS
) -> tuple[Any, list[float], list[Any]]:
    """(arguments, budgets, screens) of a script that compares pairs of screened methods: its
    output checked to be its own before any work, then the screens of ``methods`` read or
    made."""
    ap = screen_arguments(doc, seeds, "0.01,0.02,0.05,0.1,0.16,0.3", output)
    args = ap.parse_args()
    check_own_output(args.output, "decisions")
    return args, budgets_of(args), screen_all_of(args, methods)


def differences(
    rows: list[dict[str, Any]], old: str, new: str, budget: float, pool: str
) -> tuple[dict[str, Any], dict[int, Any], dict[int, Any], dict[int, Any]]:
    """``new`` against ``old`` at one budget and pool (paired dev and eval differences, each's
    dev gain over random), and the rows of old, new and random by seed."""
    first, second = cell(rows, old, budget, pool), cell(rows, new, budget, pool)
    rnd = cell(rows, "random", budget, pool)
    out = {
        "dev": compare(first, second, "probe_dev"),
        "eval": compare(first, second, "probe_eval"),
        "dev_gain_over_random": {
            m: compare(rnd, by, "probe_dev")["mean"] for m, by in ((old, first), (new, second))
        },
    }
    return out, first, second, rnd


def line(c: dict[str, Any], old: str, new: str) -> str:
    """One cell, printed: its dev difference, and its junk (noisy) or overlap (clean)."""
    junk = c.get("junk_share")
    return (
        f"{c['dataset']:5} {c['pool']:5} {c['budget']:5.0%} {new:22} "
        f"dev {c['dev']['mean']:+.2f} [{c['dev']['ci'][0]:+.2f}, {c['dev']['ci'][1]:+.2f}] "
        f"p_ni {c['dev']['noninferior_p']:.3f}"
        + (
            f" junk {100 * junk[old]:.1f}% -> {100 * junk[new]:.1f}%"
            if junk
            else f" overlap {c.get('overlap_clean', float('nan')):.3f}"
        )
    )


def main() -> int:
    args, budgets, screened = start(
        __doc__, "30-35", ROOT / "docs/results/near_duplicate_keep.json"
    )
    cells: list[dict[str, Any]] = []
    for s in screened:
        pools = ("clean", "noisy") if s.config.noise else ("clean",)
        for kind in pools:
            overlap: dict[tuple[str, float], list[float]] = {}
            if kind == "clean":  # how many records the rule changes, per seed
                for seed in s.config.seeds:
                    pool = s.pool(kind, seed)
                    for base in BASES:
                        for b in budgets:
                            a = choose(base, b, pool, seed=seed)
                            g = choose(base + "-gen", b, pool, seed=seed)
                            share = float((a & g).sum() / max(int(g.sum()), 1))
                            overlap.setdefault((base, b), []).append(share)
            for base in BASES:
                for b in budgets:
                    diff, first, gen, rnd = differences(s.rows, base, base + "-gen", b, kind)
                    out: dict[str, Any] = {
                        "dataset": s.config.name,
                        "pool": kind,
                        "budget": b,
                        "base": base,
                        **diff,
                    }
                    if kind == "noisy":
                        for m, by in ((base, first), (base + "-gen", gen), ("random", rnd)):
                            out.setdefault("junk_share", {})[m] = float(
                                np.mean([r.get("junk_share", np.nan) for r in by.values()])
                            )
                            out.setdefault("near_duplicate_junk", {})[m] = float(
                                np.mean(
                                    [
                                        r.get("junk_kept", {}).get("near_duplicate", 0)
                                        for r in by.values()
                                    ]
                                )
                            )
                    if overlap:
                        out["overlap_clean"] = float(np.mean(overlap[(base, b)]))
                    cells.append(out)
    decisions = {}
    for b in budgets:
        base = dict(DEFAULT_CHOICE).get(b)
        if base not in BASES:
            continue
        mine = [c for c in cells if c["base"] == base and c["budget"] == b]
        noninferior = all(c["dev"]["noninferior_p"] < 0.05 for c in mine)
        less_junk = all(
            c["junk_share"][base + "-gen"] <= c["junk_share"][base]
            for c in mine
            if c["pool"] == "noisy"
        )
        decisions[str(b)] = {
            "incumbent": base,
            "challenger": base + "-gen",
            "noninferior_everywhere": noninferior,
            "junk_no_higher_everywhere": less_junk,
            "replaced": noninferior and less_junk,
        }
    result = {
        "rule": RULE,
        "seeds": {s.config.name: s.config.seeds for s in screened},
        "budgets": budgets,
        "decisions": decisions,
        "cells": cells,
    }
    atomic_write_bytes(args.output, json.dumps(result, indent=1).encode())
    for c in cells:
        print(line(c, c["base"], c["base"] + "-gen"))
    for b, d in decisions.items():
        print(b, d)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
