"""The rule fixed in docs/results.md (Noise, "What cleaning costs above 12.6%"), run on fresh
seeds of all three datasets: does a cleaning challenger replace plain ``typical``, the
default at 16% and 30%?

Written down and committed before any of its screens ran. Dev only: the rule never reads an
eval number (they are reported beside it). At each budget (16%, 30%) a challenger passes when

(a) on every dataset x pool its mean dev-probe difference from ``typical`` is shown above -0.5
    points (one-sided paired t test, 5%), and
(b) on every noisy pool its mean junk share is lower than ``typical``'s.

The challengers: ``typical+clean`` (the rule's own), ``typical+clean-gen-damaged`` (it also
drops damaged texts and keeps the cleaner copy of a near-duplicate group) and
``typical+fences+copies``. Of those that pass, the one keeping the least junk (mean over the
noisy pools) replaces ``typical``; none passing, ``typical`` stays.

Seeds none of which took part in any choice or measurement before: noisy and clean pools of
seeds 50-59 (``--seeds``; 20 Newsgroups 50-54, ``--dataset-seeds 20ng=50-54``, as its long
texts score slowest), and clean pools of seeds 200-229 (``--fresh``; a clean pool needs no
junk). Screens are cached under out/experiments/fresh_rule/NAME (``--folder``); its superset
is the rule check's (the same sampled records), so a copy of
out/experiments/rule_check/NAME/scores/superset there, with superset.jsonl linked to the rule
check's, saves scoring it again (the scores are the same either way).

Per dataset, pool, budget and challenger: the paired dev and eval differences from
``typical`` (95% CI, MDE, non-inferiority p), each method's eval gain over random, and on the
noisy pools each one's junk share. Output: docs/results/fresh_rule.json.

Run: python experiments/fresh_rule.py experiments/{trec,sst2,20ng}.toml --dataset-seeds
20ng=50-54 [--threads 1] [--screen-only]; ``--table`` prints the output's cells.

The same rule with other challengers (``--challengers A,B``) on other fresh seeds (``--seeds``,
``--dataset-seeds``, ``--fresh``), under its own ``--folder`` and ``--output``: its second run,
written down in docs/results.md before its screens ran, is

    python experiments/fresh_rule.py experiments/{trec,sst2,20ng}.toml --seeds 60-69
    --dataset-seeds 20ng=60-64 --fresh 230-259 --threads 1
    --challengers typical+damaged,typical+fences-gen-damaged
    --folder out/experiments/fresh_rule2 --output docs/results/fresh_rule2.json
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from clean_cost import fresh_seeds, pair_stats
from near_duplicate_keep import cell
from rule_check import (
    ROOT,
    check_own_output,
    print_table,
    screen_all_of,
    screen_arguments,
)

from euds.cache import atomic_write_bytes
from euds.research.experiment import screen
from euds.research.methods import CANDIDATES, RANDOM
from euds.research.report import challenger_cells_table

PLAIN = "typical"
CHALLENGERS = ("typical+clean", "typical+clean-gen-damaged", "typical+fences+copies")
ALPHA = 0.05  # the one-sided test of part (a); its margin, 0.5, is compare()'s
OUTPUT = ROOT / "docs" / "results" / "fresh_rule.json"
FOLDER = ROOT / "out" / "experiments" / "fresh_rule"
RULE = (
    "at 16% and 30%, a challenger passes when (a) on every dataset x pool its mean dev-probe "
    "difference from typical is shown above -0.5 points (one-sided paired t test, 5%) and (b) "
    "on every noisy pool it keeps less junk than typical; of those that pass, the one keeping "
    "the least junk (mean over the noisy pools) replaces typical"
)


def decide(
    cells: list[dict[str, Any]], budgets: list[float], challengers: tuple[str, ...] = CHALLENGERS
) -> dict[str, Any]:
    """The rule's decision per budget from the cells (dev and junk only)."""
    out = {}
    for budget in budgets:
        here = [c for c in cells if c["budget"] == budget]
        passed, why = {}, {}
        for m in challengers:
            mine = [c for c in here if c["challenger"] == m]
            a = [c for c in mine if not c["dev"]["noninferior_p"] < ALPHA]
            b = [
                c
                for c in mine
                if c["pool"] == "noisy" and not c["junk_share"][m] < c["junk_share"][PLAIN]
            ]
            why[m] = {
                "a_fails": [f"{c['dataset']} {c['pool']}" for c in a],
                "b_fails": [f"{c['dataset']} {c['pool']}" for c in b],
            }
            if mine and not a and not b:
                noisy = [c["junk_share"][m] for c in mine if c["pool"] == "noisy"]
                passed[m] = float(np.mean(noisy))
        chosen = min(passed, key=passed.get) if passed else PLAIN
        out[str(budget)] = {"chosen": chosen, "passed": passed, "checks": why}
    return out


def main() -> int:
    ap = screen_arguments(__doc__, "50-59", "0.16,0.3", OUTPUT, FOLDER)
    ap.add_argument("--fresh", default="200-229", help="seeds screened on clean pools only")
    ap.add_argument("--screen-only", action="store_true")
    ap.add_argument(
        "--challengers",
        default=",".join(CHALLENGERS),
        help="comma-separated candidates (default: the first run's three)",
    )
    ap.add_argument("--table", action="store_true", help="print the output's cells")
    args = ap.parse_args()
    check_own_output(args.output, "cells")
    if args.table:
        return print_table(ap, args.output, lambda cells: challenger_cells_table(cells, PLAIN))
    if not args.screen_only and len(set(args.configs)) < 3:
        ap.error("the rule reads all three datasets: give the three configs (or --screen-only)")
    challengers = tuple(args.challengers.split(","))
    if unknown := [m for m in challengers if m not in CANDIDATES or m == PLAIN]:
        ap.error(f"--challengers: {unknown} are not candidates other than {PLAIN}")
    fresh = fresh_seeds(ap, args)
    methods = [RANDOM, PLAIN, *challengers]
    budgets = [float(b) for b in args.budgets.split(",")]
    cells: list[dict[str, Any]] = []
    for s in screen_all_of(args, methods):
        clean = screen(s.config, seeds=fresh, methods=methods).rows
        rows = s.rows + clean
        for pool in ("clean", "noisy"):
            for budget in budgets:
                for m in challengers:
                    c: dict[str, Any] = {
                        "dataset": s.config.name,
                        "pool": pool,
                        "budget": budget,
                        "challenger": m,
                        "seeds": sorted(cell(rows, m, budget, pool)),
                        **pair_stats(rows, PLAIN, m, budget, pool),
                    }
                    cells.append(c)
        print(f"{s.config.name}: {len(rows)} rows", flush=True)
    if args.screen_only:
        return 0
    result = {
        "rule": RULE,
        "challengers": list(challengers),
        "fresh": fresh,
        "by_budget": decide(cells, budgets, challengers),
        "cells": cells,
    }
    atomic_write_bytes(args.output, json.dumps(result, indent=1).encode())
    _print(result)
    print(args.output)
    return 0


def _print(result: dict[str, Any]) -> None:
    for budget, d in result["by_budget"].items():
        print(f"{float(budget):.0%}: {d['chosen']} (passed: {d['passed']})")
        for m, why in d["checks"].items():
            print(f"  {m}: (a) fails on {why['a_fails']}; (b) fails on {why['b_fails']}")


if __name__ == "__main__":
    raise SystemExit(main())
