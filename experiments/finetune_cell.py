"""Fine-tunes one budget's default against random on the rule check's pools: the cells of
docs/results.md's aims that the main experiment left unrun (20NG at 10%, TREC) or had too few
seeds to see (SST-2 at 2%). ``--method NAME`` fine-tunes that candidate instead of the default
(a recipe README names, say), as a cell of its own.

The pools are :mod:`rule_check`'s (its scored superset, a pool of the config's size drawn anew
per seed; ``--pool noisy`` adds that seed's scored junk), the settings the config's
``[finetune]``, the evaluation its eval split; the default is the product's
(``euds.selection.DEFAULT_CHOICE``) at that budget. Only random is screened (from rule_check's
cache for ``--screen-seeds``): the runs need the pools, not every candidate's probe, so nothing
is scored again, and the clean pools of other seeds need no junk. Each run is cached (and
locked while it trains), so the script resumes, and a second process with ``--reverse`` meets
the first in the middle. Writes, per dataset, pool, budget and seeds: each seed's accuracy,
and the paired difference default − random (95% CI, MDE at 80% power, one-sided
non-inferiority p at -0.5 points) once every seed has run; for ``--method`` (a candidate other
than the default), also its paired difference from the default where the default's runs of
those pools are cached.

Run: python experiments/finetune_cell.py experiments/20ng.toml --budget 0.1 --seeds 40-49
--screen-seeds 40-44 [--pool noisy] [--method NAME] [--threads 1] [--reverse] [--output FILE]
[--folder DIR];
and
``python experiments/finetune_cell.py --table`` prints the finished cells as docs/results.md
shows them (:func:`euds.research.report.finetune_cells_table`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from near_duplicate_keep import difference
from rule_check import OUT, check_own_output, print_table, screen_all, seeds_of

from euds.cache import atomic_write_bytes
from euds.research.experiment import confirm
from euds.research.methods import CANDIDATES, POOLS, RANDOM
from euds.research.report import finetune_cells_table
from euds.selection import DEFAULT_CHOICE

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = [0.01, 0.02, 0.05, 0.1, 0.16, 0.3]  # the rule check's: its screen cache's key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?")
    ap.add_argument("--budget", type=float)
    ap.add_argument("--seeds")
    ap.add_argument("--screen-seeds")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--pool", choices=POOLS, default="clean")
    ap.add_argument("--reverse", action="store_true")
    ap.add_argument(
        "--method", choices=sorted(CANDIDATES), help="this candidate instead of the default"
    )
    ap.add_argument("--output", type=Path, default=ROOT / "docs/results/finetune_cell.json")
    ap.add_argument("--table", action="store_true", help="print --output's finished cells")
    ap.add_argument(
        "--folder",
        type=Path,
        default=OUT,
        help="where the pools are scored and screened (default: the rule check's); another "
        "folder for screen seeds whose junk the rule check did not score",
    )
    args = ap.parse_args()
    check_own_output(args.output, "cells")
    if args.table:
        return print_table(ap, args.output, finetune_cells_table)
    if None in (args.config, args.budget, args.seeds, args.screen_seeds):
        ap.error("config, --budget, --seeds and --screen-seeds are required (or --table)")
    if args.budget not in dict(DEFAULT_CHOICE):
        ap.error(f"--budget must be one of the default's budgets {sorted(dict(DEFAULT_CHOICE))}")
    seeds = seeds_of(args.seeds)
    if args.pool == "noisy" and not set(seeds) <= set(seeds_of(args.screen_seeds)):
        ap.error("--pool noisy: --seeds must lie within --screen-seeds (their junk is scored)")
    [s] = screen_all(
        [args.config],
        {},
        seeds_of(args.screen_seeds),
        BUDGETS,
        args.threads,
        [RANDOM],
        args.folder,
    )
    if args.threads:
        s.config.finetune = {**s.config.finetune, "threads": args.threads}
    default = args.method or dict(DEFAULT_CHOICE)[args.budget]
    choice = {"by_budget": {str(args.budget): default}}
    item = {
        "methods": ["default", "random"],
        "budgets": [args.budget],
        "seeds": seeds,
        "pools": [args.pool],
    }
    runs = confirm(s, choice, item, reverse=args.reverse)
    by = {(r["method"], r["seed"]): r for r in runs}
    done = [x for x in seeds if ("default", x) in by and ("random", x) in by]
    d = np.array([100 * (by["default", x]["accuracy"] - by["random", x]["accuracy"]) for x in done])
    cell: dict[str, Any] = {
        "dataset": s.config.name,
        "pool": args.pool,
        "budget": args.budget,
        "default": default,
        "named": args.method is not None,  # a candidate named by --method, not the default
        "planned_seeds": seeds,
        "seeds": done,
        "steps": sorted({r["steps"] for r in runs}),
        "runs": runs,
    }
    if args.folder.resolve() != OUT.resolve():
        cell["folder"] = os.path.relpath(args.folder.resolve(), ROOT)
    if len(done) == len(seeds):
        cell["difference"] = difference(d)
        own = dict(DEFAULT_CHOICE)[args.budget]
        if args.method not in (None, own):
            # against the product's default on the same pools, where its runs are cached
            item_default = {**item, "methods": ["default"]}
            theirs = {
                r["seed"]: r["accuracy"]
                for r in confirm(
                    s, {"by_budget": {str(args.budget): own}}, item_default, train=False
                )
            }
            if set(done) <= set(theirs):
                cell["versus_default"] = {
                    "default": own,
                    **difference(
                        np.array([100 * (by["default", x]["accuracy"] - theirs[x]) for x in done])
                    ),
                }
    cells = []
    if args.output.exists():
        cells = [
            c
            for c in json.loads(args.output.read_text())["cells"]
            if (c["dataset"], c["pool"], c["budget"], c["planned_seeds"], c["default"])
            != (cell["dataset"], args.pool, args.budget, seeds, default)
        ]
    atomic_write_bytes(args.output, json.dumps({"cells": [*cells, cell]}, indent=1).encode())
    print(json.dumps({k: v for k, v in cell.items() if k != "runs"}, indent=1))
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
