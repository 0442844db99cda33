"""Runs the default's choosing rule on fresh seeds: does a new run keep the product's default?

Two runs of the maximin rule on seeds 0-19 chose differently at 1%, 16% and 30% by less than
0.2 point (docs/results/default_choice.json, rerun_choice.json). The stable rule
(:func:`euds.research.experiment.choose_default` with an incumbent) keeps the product's default
at a budget unless the maximin winner's worst-case dev lead over it has a 95% bootstrap
interval above 0. This script screens *new* pools (seeds 20-29 by default: new pools of the
same data, new junk; ten, not twenty, because the junk is made and scored per seed and twenty
seeds' junk took longer than a session leaves on 2 cores; ``--dataset-seeds 20ng=20-24``
gives one dataset fewer, as 20NG's long texts score slowest) with random and every eligible
candidate (no length-matched controls, which the rule does not read), applies the rule, and
writes out/experiments/rule_check/rule_check.json (or ``--output``): the choice, every
candidate's worst-case dev gain and each challenge with its interval. Dev only: it never reads
an eval number. Cached per seed, pool and method; interrupted, it resumes.

Run: python experiments/rule_check.py experiments/{sst2,20ng,trec}.toml [--seeds 20-29]
[--dataset-seeds NAME=LO-HI ...] [--budgets 0.01,0.16,0.3] [--threads 1] [--screen-only]
(``--screen-only``: screen these configs and stop, so that processes can share the datasets;
the run without it reads the cached screens of all three.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from euds.cache import atomic_write_bytes
from euds.research.experiment import (
    ExperimentConfig,
    Screened,
    challenge,
    choose_default,
    dev_gain_seeds,
    screen,
)
from euds.research.methods import CANDIDATES, NEEDS_TARGET, RANDOM
from euds.selection import DEFAULT_CHOICE

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "experiments" / "rule_check"
RERUN = ROOT / "docs" / "results" / "rerun_choice.json"


def seeds_of(text: str) -> list[int]:
    """The seeds of ``LO-HI`` or ``N``, or of several of them joined by commas."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds


def check_own_output(path: Path, key: str) -> None:
    """Refuses, before any work, to replace a file that is not this script family's own JSON
    (an object with ``key``): a data file named by mistake survives."""
    if not path.exists():
        return
    try:
        own = key in json.loads(path.read_text())
    except (ValueError, TypeError, UnicodeDecodeError):
        own = False
    if not own:
        print(
            f"{path} exists and is not this script's output (no {key!r}): not replaced",
            file=sys.stderr,
        )
        raise SystemExit(2)


def print_table(
    ap: argparse.ArgumentParser, output: Path, render: Callable[[list[Any]], str]
) -> int:
    """``--table``: prints ``output``'s cells as ``render`` writes them (docs/results.md's
    table of that script), or refuses a missing file by name."""
    if not output.is_file():
        ap.error(f"--table: {output} does not exist")
    print(render(json.loads(output.read_text())["cells"]))
    return 0


# What the rule reads: random and every candidate a user can have (no length-matched controls).
METHODS = [RANDOM, *(m for m in CANDIDATES if m not in NEEDS_TARGET)]


def screen_all(
    configs: list[str],
    dataset_seeds: dict[str, list[int]],
    seeds: list[int],
    budgets: list[float],
    threads: int,
    methods: list[str] = METHODS,
    folder: Path = OUT,
) -> list[Screened]:
    """Screens ``methods`` (default :data:`METHODS`) on each config's pools of its seeds
    (``dataset_seeds`` by name, else ``seeds``) at ``budgets``, cached under ``folder``/NAME
    (default out/experiments/rule_check/NAME)."""
    screened = []
    for path in configs:
        config = ExperimentConfig.from_toml(path)
        config.seeds = dataset_seeds.get(config.name) or seeds
        config.budgets, config.confirm = budgets, []
        config.output = str(folder / config.name)
        if threads:
            config.score = {**config.score, "threads": threads}
        config.check()
        screened.append(screen(config, methods=methods))
        print(f"{config.name}: screened seeds {config.seeds} at {budgets}", flush=True)
    return screened


def screen_arguments(
    doc: str, seeds: str, budgets: str, output: Path, folder: Path = OUT
) -> argparse.ArgumentParser:
    """The options of a script that screens with :func:`screen_all` (with these defaults)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    # Optional here so that --table (of the scripts that have it) needs none; screening does.
    ap.add_argument("configs", nargs="*", help="experiments/NAME.toml, one or more")
    ap.add_argument("--seeds", default=seeds)
    ap.add_argument("--dataset-seeds", action="append", default=[], metavar="NAME=LO-HI")
    ap.add_argument("--budgets", default=budgets)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--output", type=Path, default=output)
    ap.add_argument("--folder", type=Path, default=folder, help="where the screens are cached")
    return ap


def screen_all_of(args: argparse.Namespace, methods: list[str] = METHODS) -> list[Screened]:
    """:func:`screen_all` of ``methods`` with the options of :func:`screen_arguments`; no
    config is one line and exit 2."""
    if not args.configs:
        print("give one or more experiment configs (experiments/NAME.toml)", file=sys.stderr)
        raise SystemExit(2)
    dataset_seeds = {
        name: seeds_of(text) for name, _, text in (a.partition("=") for a in args.dataset_seeds)
    }
    return screen_all(
        args.configs,
        dataset_seeds,
        seeds_of(args.seeds),
        budgets_of(args),
        args.threads,
        methods,
        args.folder,
    )


def budgets_of(args: argparse.Namespace) -> list[float]:
    return [float(b) for b in args.budgets.split(",")]


def main() -> int:
    ap = screen_arguments(__doc__, "20-29", "0.01,0.16,0.3", OUT / "rule_check.json")
    ap.add_argument("--screen-only", action="store_true")
    ap.add_argument("--methods", help="with --screen-only: only these (comma-separated)")
    args = ap.parse_args()
    if args.methods and not args.screen_only:
        ap.error("--methods is for --screen-only: the rule reads every candidate")
    budgets = budgets_of(args)
    if not args.screen_only:
        check_own_output(args.output, "by_budget")
    screened = screen_all_of(args, args.methods.split(",") if args.methods else METHODS)
    if args.screen_only:
        return 0
    incumbent = dict(DEFAULT_CHOICE)
    choice = choose_default(screened, incumbent=incumbent)
    # The earlier re-run's choices, challenged on these seeds too (reported, not a rule step).
    gain_seeds = dev_gain_seeds(screened)
    rerun = json.loads(RERUN.read_text())["by_budget"]
    rerun_challenges = {
        str(b): challenge(gain_seeds, b, incumbent[b], rerun[str(b)])
        for b in budgets
        if rerun.get(str(b)) not in (None, incumbent[b])
    }
    result = {
        "seeds": {s.config.name: s.config.seeds for s in screened},
        "budgets": budgets,
        "incumbent": {str(b): incumbent[b] for b in budgets},
        "by_budget": choice["by_budget"],
        "rule": choice["rule"],
        "challenges": choice["challenges"],
        "rerun_challenges": rerun_challenges,
        "worst_dev_gain": choice["worst_dev_gain"],
        "dev_gains": choice["dev_gains"],
        "datasets": choice["datasets"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.output, json.dumps(result, indent=1).encode())
    for b in budgets:
        w = choice["worst_dev_gain"].get(str(b), {})
        top = sorted(w, key=w.get, reverse=True)[:3]
        print(
            f"{b:.0%}: keeps {choice['by_budget'].get(str(b))} (incumbent {incumbent[b]}, "
            f"worst {w.get(incumbent[b], float('nan')):+.2f}); top: "
            + ", ".join(f"{m} {w[m]:+.2f}" for m in top)
        )
        for name, tests in (("winner", choice["challenges"]), ("rerun", rerun_challenges)):
            t = tests.get(str(b))
            if t:
                print(
                    f"  {name} {t['challenger']}: lead {t['lead']:+.2f} "
                    f"[{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}] replaced={t['replaced']}"
                )
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
