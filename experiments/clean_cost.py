"""What cleaning costs, and what it buys: ``typical+clean`` (each signal's 5%/95% tails, near
duplicates and contained texts dropped, then typicality) against plain ``typical``, the
product's default at 16% and 30%, at every budget of the rule check. Written down in
docs/results.md (Noise, the end) before any of these screens ran; no choice follows from it.

Clean pools on fresh seeds (``--fresh``, default 100-139: none has taken part in any choice),
screened from the rule check's scored superset (a clean pool needs no junk); noisy pools on
the seeds whose junk is scored (``--seeds``, default 40-49). Per dataset, pool and budget: the
paired difference typical+clean - typical in eval-probe accuracy (what a user gets) and in
dev-probe accuracy (what a rule would read), each with its 95% CI, MDE at 80% power and the
one-sided non-inferiority p at -0.5 points; each one's eval gain over random; and on noisy pools
the junk share each keeps.

``--challenger typical+tails`` or ``typical+copies`` measures one of typical+clean's two parts
alone, the same way (written to clean_cost_tails.json, clean_cost_copies.json);
``--baseline`` compares the challenger with another method than typical.

Run: python experiments/clean_cost.py experiments/sst2.toml experiments/trec.toml
[--seeds 40-49] [--dataset-seeds NAME=LO-HI] [--fresh 100-139] [--threads 1] [--output FILE]
[--challenger METHOD] [--baseline METHOD];
``--table`` prints --output's cells as docs/results.md shows them
(:func:`euds.research.report.pair_cells_table`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from near_duplicate_keep import cell, compare
from rule_check import (
    check_own_output,
    print_table,
    screen_all_of,
    screen_arguments,
    seeds_of,
)

from euds.cache import atomic_write_bytes
from euds.research.experiment import screen
from euds.research.methods import CANDIDATES, RANDOM
from euds.research.report import pair_cells_table

ROOT = Path(__file__).resolve().parent.parent
PLAIN, CLEAN = "typical", "typical+clean"
DEFAULT_OUTPUT = ROOT / "docs/results/clean_cost.json"  # clean_cost_PART.json for a part
BUDGETS = "0.01,0.02,0.05,0.1,0.16,0.3"  # the rule check's: its screen cache's key


def main() -> int:
    ap = screen_arguments(__doc__, "40-49", BUDGETS, DEFAULT_OUTPUT)
    ap.add_argument("--fresh", default="100-139")
    ap.add_argument(
        "--challenger",
        default=CLEAN,
        choices=[m for m in CANDIDATES if m.startswith(PLAIN + "+")],
        help="what is compared with typical (default typical+clean; typical+tails and "
        "typical+copies are its two parts)",
    )
    ap.add_argument(
        "--baseline",
        default=PLAIN,
        choices=[PLAIN, *(m for m in CANDIDATES if m.startswith(PLAIN + "+"))],
        help="what the challenger is compared with (default typical)",
    )
    ap.add_argument("--table", action="store_true", help="print --output's cells")
    args = ap.parse_args()
    if (args.challenger, args.baseline) != (CLEAN, PLAIN) and args.output == DEFAULT_OUTPUT:
        name = args.challenger.partition("+")[2]
        if args.baseline != PLAIN:
            name += "_vs_" + args.baseline.partition("+")[2]
        args.output = DEFAULT_OUTPUT.with_name(f"clean_cost_{name}.json")
    check_own_output(args.output, "cells")
    if args.table:
        return print_table(
            ap,
            args.output,
            lambda cells: pair_cells_table(cells, *_methods_of(args.output)),
        )
    baseline, challenger = args.baseline, args.challenger
    methods = [RANDOM, baseline, challenger]
    budgets = [float(b) for b in args.budgets.split(",")]
    fresh = fresh_seeds(ap, args)
    cells: list[dict[str, Any]] = []
    for s in screen_all_of(args, methods):
        scored = s.config.seeds
        # The same prepared data and scores; a fresh seed has its clean pool only.
        clean = screen(s.config, seeds=fresh, methods=methods).rows
        noisy = [r for r in s.rows if r["pool"] == "noisy"]
        for pool, rows, seeds in (("clean", clean, fresh), ("noisy", noisy, scored)):
            for budget in budgets:
                c: dict[str, Any] = {
                    "dataset": s.config.name,
                    "pool": pool,
                    "budget": budget,
                    "seeds": seeds,
                    **pair_stats(rows, baseline, challenger, budget, pool),
                }
                cells.append(c)
                e, junk = c["eval"], c.get("junk_share")
                print(
                    f"{c['dataset']:5} {pool:5} {budget:5.0%} eval {e['mean']:+.2f} "
                    f"[{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}] MDE {e['mde']:.2f} "
                    f"dev {c['dev']['mean']:+.2f} p_ni {c['dev']['noninferior_p']:.3f}"
                    + (
                        f" junk {100 * junk[baseline]:.1f}% -> {100 * junk[challenger]:.1f}%"
                        if junk
                        else ""
                    ),
                    flush=True,
                )
    out = {"methods": [baseline, challenger], "fresh": fresh, "cells": cells}
    atomic_write_bytes(args.output, json.dumps(out, indent=1).encode())
    print(args.output)
    return 0


def fresh_seeds(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """``--fresh``'s seeds (clean pools only), refused where they overlap the scored seeds
    (``--seeds``, ``--dataset-seeds``)."""
    fresh = seeds_of(args.fresh)
    scored = [args.seeds, *(a.partition("=")[2] for a in args.dataset_seeds)]
    if any(set(fresh) & set(seeds_of(text)) for text in scored):
        ap.error(f"--fresh {args.fresh} overlaps the scored seeds {scored}")
    return fresh


def pair_stats(
    rows: list[dict[str, Any]], old: str, new: str, budget: float, pool: str
) -> dict[str, Any]:
    """``new`` against ``old`` at one budget and pool: the paired eval and dev differences, each
    one's eval gain over random, and on a noisy pool the junk share each (and random) keeps."""
    first, second = cell(rows, old, budget, pool), cell(rows, new, budget, pool)
    rnd = cell(rows, RANDOM, budget, pool)
    stats: dict[str, Any] = {
        "eval": compare(first, second, "probe_eval"),
        "dev": compare(first, second, "probe_dev"),
        "eval_gain_over_random": {
            m: compare(rnd, by, "probe_eval") for m, by in ((old, first), (new, second))
        },
    }
    if pool == "noisy":
        stats["junk_share"] = {
            m: float(np.mean([r["junk_share"] for r in by.values()]))
            for m, by in ((RANDOM, rnd), (old, first), (new, second))
        }
    return stats


def _methods_of(output: Path) -> list[str]:
    """The baseline and the challenger a results file compared."""
    return json.loads(output.read_text())["methods"]


if __name__ == "__main__":
    raise SystemExit(main())
