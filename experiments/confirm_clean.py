"""Fine-tunes the committed default against random on the clean pools, without screening again.

`euds experiment` screens all three datasets before it fine-tunes, because the default is chosen
from all of them. Once the choice is committed (docs/results/default_choice.json), the clean-pool
fine-tunes need only each dataset's scored superset: this script scores that (not the junk),
builds the same seeded pools as the runner and trains the same ``confirm`` items into the same
cache (out/experiments/NAME/runs), so the full runner reuses every run. It writes
out/experiments/NAME/confirm_clean.json and prints each cell: default - random, points, with its
95% CI and minimum detectable effect. Interrupted, it resumes from the cache.

Run: python experiments/confirm_clean.py experiments/sst2.toml [--items 0,1] [--seeds 0-9]
[--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from euds.cache import atomic_write_bytes
from euds.research.experiment import ExperimentConfig, Screened, confirm
from euds.research.pools import Scored, prepare_data
from euds.research.stats import mde, paired

ROOT = Path(__file__).resolve().parent.parent
CHOICE = ROOT / "docs" / "results" / "default_choice.json"


def seeds_of(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    from euds import ScoreConfig, score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--items", default=None, help="confirm items by index, e.g. 0,1")
    parser.add_argument("--seeds", default=None, help="a range such as 0-9 (default: each item's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per fine-tune")
    args = parser.parse_args()
    # No junk: the clean pools are drawn from the superset by seed alone (pools.pool_rows).
    config = ExperimentConfig.from_toml(args.config)
    config = replace(config, noise=0.0, finetune={**config.finetune, "threads": args.threads})
    choice = json.loads(CHOICE.read_text())
    out = Path(config.output)
    prepared = prepare_data(config)
    t = time.perf_counter()
    score(
        prepared.paths["superset"],
        out / "scores" / "superset",
        ScoreConfig(**config.score),
        progress=False,
    )
    scoring = time.perf_counter() - t
    superset = Scored.read(out / "scores" / "superset")
    s = Screened(config, prepared, superset, superset.rows(np.zeros(0, int)), None, [], {})
    items = [int(i) for i in args.items.split(",")] if args.items else range(len(config.confirm))
    runs, cells = [], []
    for i in items:
        item = dict(config.confirm[i])
        if args.seeds:
            item["seeds"] = seeds_of(args.seeds)
        t = time.perf_counter()
        done = confirm(s, choice, item)
        runs += done
        for budget in item["budgets"]:
            by = {(r["method"], r["seed"]): r["accuracy"] for r in done if r["budget"] == budget}
            seeds = sorted({seed for _, seed in by})
            diff = 100 * np.array([by[("default", x)] - by[("random", x)] for x in seeds])
            ci = paired(diff)
            cell = {
                "dataset": config.name,
                "budget": budget,
                "candidate": next(r["candidate"] for r in done if r["method"] == "default"),
                "seeds": len(seeds),
                "default": 100 * float(np.mean([by[("default", x)] for x in seeds])),
                "random": 100 * float(np.mean([by[("random", x)] for x in seeds])),
                "difference": float(ci.mean),
                "low": float(ci.lo),
                "high": float(ci.hi),
                "mde": float(mde(diff)),
                "minutes": (time.perf_counter() - t) / 60,
            }
            cells.append(cell)
            print(json.dumps(cell), flush=True)
    atomic_write_bytes(
        out / "confirm_clean.json",
        json.dumps({"scoring_seconds": scoring, "cells": cells, "runs": runs}, indent=1).encode(),
    )


if __name__ == "__main__":
    main()
