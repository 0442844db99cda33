"""Fine-tunes the committed default against random on the clean pools, without screening again.

`euds experiment` screens all three datasets before it fine-tunes, because the default is chosen
from all of them. Once the choice is committed (docs/results/default_choice.json), the clean-pool
fine-tunes need only each dataset's scored superset: this script scores that (not the junk),
builds the same seeded pools as the runner and trains the same ``confirm`` items into the same
cache (out/experiments/NAME/runs), so the full runner reuses every run. With ``--probe`` it first
runs the runner's linear probe on the same pools (the random, the default's candidates and the
whole pool at every budget and seed of the config), which checks the figures copied into
docs/results.md and measures subset against whole. It writes out/experiments/NAME/
confirm_clean.json and prints each cell: a paired difference in points with its 95% CI and
minimum detectable effect. Interrupted, it resumes from the cache.

Run: python experiments/confirm_clean.py experiments/sst2.toml [--probe] [--items 0,1]
[--seeds 0-9] [--threads 1] [--reverse] [--cached-only]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rule_check import seeds_of

from euds.cache import atomic_write_bytes
from euds.research.experiment import ExperimentConfig, Screened, _cached, confirm, screen_pool
from euds.research.methods import FULL, RANDOM
from euds.research.pools import Scored, prepare_data
from euds.research.stats import mde, paired

ROOT = Path(__file__).resolve().parent.parent
CHOICE = ROOT / "docs" / "results" / "default_choice.json"


def cell(name: str, budget: float, diff: np.ndarray, **extra: object) -> dict[str, object]:
    ci = paired(diff)
    out = {"cell": name, "budget": budget, "seeds": len(diff), "difference": float(ci.mean)}
    out.update(low=float(ci.lo), high=float(ci.hi), mde=float(mde(diff)), **extra)
    print(json.dumps(out), flush=True)
    return out


def probe_cells(s: Screened, choice: dict, out: Path) -> list[dict[str, object]]:
    """The runner's probe on the clean pools: default - random and default - whole pool."""
    from euds.signals.semantic import Embedder
    from euds.tuning import Probe

    config, prepared = s.config, s.prepared
    embedder = Embedder(config.score.get("embedder"))
    texts = {k: [r["text"] for r in getattr(prepared, k)] for k in ("dev", "eval")}
    labels = {k: np.array([str(r["label"]) for r in getattr(prepared, k)]) for k in texts}
    vectors = {k: embedder.embed(v) for k, v in texts.items()}
    probe = Probe(vectors["dev"], labels["dev"], vectors["eval"], labels["eval"], config.probe_c)
    candidates = sorted({choice["by_budget"][str(b)] for b in config.budgets})
    rows = []
    for seed in config.seeds:
        rows += _cached(
            out / "confirm_probe" / f"{seed}.json",
            lambda seed=seed: screen_pool(
                s.pool("clean", seed), config.budgets, probe, [RANDOM, *candidates]
            ),
        )
    by = {(r["seed"], r["budget"], r["method"]): r["probe_eval"] for r in rows}
    cells = []
    for budget in config.budgets:
        name = choice["by_budget"][str(budget)]
        d = np.array([by[(x, budget, name)] for x in config.seeds])
        r = np.array([by[(x, budget, RANDOM)] for x in config.seeds])
        w = np.array([by[(x, 1.0, FULL)] for x in config.seeds])
        cells.append(cell("probe default - random", budget, 100 * (d - r), candidate=name))
        cells.append(cell("probe default - whole", budget, 100 * (d - w), candidate=name))
        cells.append(cell("probe random - whole", budget, 100 * (r - w)))
    return cells


def main() -> None:
    from euds import ScoreConfig, score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--probe", action="store_true", help="the linear probe first")
    parser.add_argument("--items", default=None, help='confirm items, e.g. 0,1 ("": none)')
    parser.add_argument("--seeds", default=None, help="a range such as 0-9 (default: each item's)")
    parser.add_argument(
        "--cached-only", action="store_true", help="report the cached fine-tunes, train none"
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="seeds from the last (a second process meets the first)",
    )
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
    cells = probe_cells(s, choice, out) if args.probe else []
    every = range(len(config.confirm))
    items = [int(i) for i in args.items.split(",") if i] if args.items is not None else every
    runs = []
    for i in items:
        item = dict(config.confirm[i])
        if args.seeds:
            item["seeds"] = seeds_of(args.seeds)
        t = time.perf_counter()
        done = confirm(s, choice, item, train=not args.cached_only, reverse=args.reverse)
        if not done:
            continue
        runs += done
        for budget in item["budgets"]:
            by = {(r["method"], r["seed"]): r["accuracy"] for r in done if r["budget"] == budget}
            # Seeds with both runs cached (all of them unless --cached-only met a partial item).
            seeds = sorted({x for _, x in by if ("default", x) in by and ("random", x) in by})
            if len(seeds) < 2:  # no interval from one pair
                continue
            diff = 100 * np.array([by[("default", x)] - by[("random", x)] for x in seeds])
            cells.append(
                cell(
                    "fine-tuned default - random",
                    budget,
                    diff,
                    candidate=next(r["candidate"] for r in done if r["method"] == "default"),
                    default=100 * float(np.mean([by[("default", x)] for x in seeds])),
                    random=100 * float(np.mean([by[("random", x)] for x in seeds])),
                    minutes=(time.perf_counter() - t) / 60,
                )
            )
    atomic_write_bytes(
        out / "confirm_clean.json",
        json.dumps({"scoring_seconds": scoring, "cells": cells, "runs": runs}, indent=1).encode(),
    )


if __name__ == "__main__":
    main()
