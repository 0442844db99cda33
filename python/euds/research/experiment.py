"""The selection experiment (``euds experiment CONFIG.toml ...``): does a method keep what a
model needs, and drop junk, better than random — by enough to be seen?

Design (docs/results.md states it for a reader):

* **Data** (:mod:`euds.research.pools`): seed s draws its pool from a superset scored once; its
  noisy pool adds 20% junk. ``dev`` (the task's development set, or a split of train outside
  the superset) is for choosing; ``eval`` (the test set) is for reporting only.
* **Methods** (:mod:`euds.research.methods`): the baselines, every candidate and each candidate's
  length-matched random. Seed s sets the pool, the random draws, every method's tie-break and
  the fine-tune seed, so pools, subsets and seeds vary together.
* **Screening** (every method x budget x seed x pool): a linear probe, logistic regression on the
  frozen embeddings of the kept records, scored on dev and on eval (a fraction of a second each).
* **The default** (:func:`choose_default`): per budget, the candidate whose *worst* dataset x
  pool mean dev-probe gain over random is largest (maximin), kept from the budget below while
  it stays within :data:`HYSTERESIS` points of the best — a rule fixed before any eval number
  was read; eval never chooses; candidates that need a target sample are not eligible. Given an
  *incumbent* (the product's current default), that winner replaces it at a budget only if its
  worst-case lead has a 95% bootstrap interval (over seeds) above 0: a re-run on new seeds
  must not switch the default on noise.
* **Confirmation**: fine-tunes (:mod:`euds.research.finetune`) for the config's ``confirm``
  list, ``default`` standing for the candidate chosen at each budget; every method at a budget
  trains the same number of optimiser updates (natural epochs with a ``min_steps`` floor), the
  count is reported; an item with ``steps = "full"`` trains its subsets as many steps as the
  whole pool (:data:`~euds.research.methods.STEP_MATCHED`).
* Results are cached under the output folder by a hash of what decides them, so an interrupted
  run resumes and a finished one re-renders for free. Statistics: :mod:`euds.research.stats`;
  tables and plots: :mod:`euds.research.report` (one dataset), :mod:`euds.research.overview`
  (across datasets).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_write_bytes, sha256_file
from euds.research.methods import (
    CANDIDATES,
    DEFAULT,
    FULL,
    NEEDS_TARGET,
    POOLS,
    RANDOM,
    STEP_MATCHED,
    choose,
    is_known,
    screen_settings,
    screened,
    subset_stats,
)
from euds.research.pools import Prepared, Scored, make_pool, pool_kinds, prepare_data, write_jsonl
from euds.tuning import Probe

log = logging.getLogger("euds")

# Bump when a change alters screening results, so cached ones are not reused.
SCREEN_VERSION = 3
# Points of worst-case dev gain within which the default stays the candidate chosen at the
# budget below (fewer switches between budgets; a switch must be worth it).
HYSTERESIS = 0.25
# The incumbent's defence (:func:`challenge`): bootstrap resamples of the seeds, and the
# generator seed that makes the interval reproducible.
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 20261203


@dataclass
class ExperimentConfig:
    name: str
    train: str
    eval: str
    output: str
    dev: str = ""  # "" = dev_size records of train outside the superset
    dev_size: int = 1000
    task: str = "classification"
    preprocess: str = ""  # a name in euds.research.preprocess.PREPROCESSORS
    superset: int = 0  # training records scored once (0: all)
    pool_size: int = 5000
    eval_size: int = 0  # 0: the whole evaluation file
    noise: float = 0.2  # junk share of the noisy pool
    budgets: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.16, 0.3])
    seeds: list[int] = field(default_factory=lambda: list(range(20)))
    probe_c: float = 1.0
    finetune: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    # Fine-tunes: [{methods = [...], budgets = [...], pools = [...], seeds = [...], steps = ...}]
    # (seeds: default all; steps: "natural" or "full", see STEP_MATCHED); "full" runs at 1.0.
    confirm: list[dict[str, Any]] = field(default_factory=list)
    # Pools whose dev probes choose the default.
    choice_pools: list[str] = field(default_factory=lambda: list(POOLS))
    sample_seed: int = 1234

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        import tomllib

        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{path}: {e}") from None
        base = Path(path).resolve().parent
        for key in ("train", "eval", "dev", "output"):
            if raw.get(key) and not Path(raw[key]).is_absolute():
                raw[key] = str((base / raw[key]).resolve())
        try:
            config = cls(**raw)
        except TypeError as e:
            raise ValueError(f"{path}: {e}") from None
        config.check()
        return config

    def check(self) -> None:
        from euds.research import preprocess

        if self.task != "classification":
            raise ValueError(
                f"task must be classification (the probe needs labels), got {self.task!r}"
            )
        preprocess.get(self.preprocess)
        if any(not 0 < b < 1 for b in self.budgets):
            raise ValueError(f"budgets must lie in (0, 1), got {self.budgets}")
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must lie in [0, 1), got {self.noise}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if self.superset and self.superset < self.pool_size:
            raise ValueError(f"superset ({self.superset}) must hold the pool ({self.pool_size})")
        if not self.choice_pools or not set(self.choice_pools) <= set(POOLS):
            raise ValueError(f"choice_pools must be among {POOLS}, got {self.choice_pools}")
        for item in self.confirm:
            bad = [m for m in item.get("methods", []) if not is_known(m)]
            if bad:
                raise ValueError(f"unknown methods {bad} in confirm")
            if not set(item.get("seeds", self.seeds)) <= set(self.seeds):
                raise ValueError(f"confirm seeds must be among seeds {self.seeds}: {item}")
            if item.get("steps", "natural") not in ("natural", "full"):
                raise ValueError(f"confirm steps must be 'natural' or 'full', got {item}")
            if not set(item.get("budgets", [])) <= set(self.budgets):
                raise ValueError(f"confirm budgets must be among budgets {self.budgets}: {item}")
            pools = item.get("pools", ["clean"])
            if any(p not in POOLS for p in pools) or ("noisy" in pools and not self.noise):
                raise ValueError(
                    f"confirm pools must be among {POOLS} (noisy only with noise > 0), got {pools}"
                )


# -- screening -----------------------------------------------------------------------------------


def screen_pool(
    pool: Any, budgets: list[float], probe: Probe, methods: list[str]
) -> list[dict[str, Any]]:
    """Probe results and subset statistics of every method at every budget on one pool, and
    of the whole pool."""
    y = pool.labels
    rows = []
    memo: dict[Any, Any] = {}
    for budget in [*budgets, 1.0]:
        for method in [FULL] if budget == 1.0 else methods:
            row: dict[str, Any] = {
                "pool": pool.kind,
                "seed": pool.seed,
                "budget": budget,
                "method": method,
            }
            try:
                keep = (
                    np.ones(len(pool.records), dtype=bool)
                    if method == FULL
                    else choose(method, budget, pool, seed=pool.seed, memo=memo)
                )
            except ValueError as e:  # the method cannot fill this budget on this pool
                rows.append(
                    {
                        **row,
                        "probe_dev": float("nan"),
                        "probe_eval": float("nan"),
                        "records": 0,
                        "infeasible": str(e),
                    }
                )
                continue
            dev, test = probe.score(pool.embeddings[keep], y[keep])
            rows.append({**row, "probe_dev": dev, "probe_eval": test, **subset_stats(keep, pool)})
    return rows


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(path: Path, make) -> Any:
    if path.is_file():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(value, indent=1, default=float).encode())
    return value


@dataclass
class Screened:
    """One dataset after scoring and screening: what the confirmation and the report need."""

    config: ExperimentConfig
    prepared: Prepared
    superset: Scored
    junk: Scored
    target: np.ndarray  # the dev split's embeddings: target matching's sample
    rows: list[dict[str, Any]]
    seconds: dict[str, float]

    def pool(self, kind: str, seed: int) -> Any:
        c = self.config
        return make_pool(
            kind, seed, self.prepared, self.superset, self.junk, c.score, c.noise, self.target
        )


def screen(
    config: ExperimentConfig, seeds: list[int] | None = None, methods: list[str] | None = None
) -> Screened:
    """Prepares and scores the data, then probes every method (or only ``methods``, a subset
    of :func:`~euds.research.methods.screened`) on the pools of ``seeds`` (default: all of
    ``config.seeds``). What is prepared and scored never depends on ``seeds``: the junk is
    built for every configured seed (runs of a few seeds and of all share one junk file, its
    scores and the per-seed screens), and any other seed has its clean pool only."""
    from euds import ScoreConfig, score
    from euds.signals.semantic import Embedder

    out = Path(config.output)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare_data(config)
    for name in ("superset", "junk") if prepared.junk else ("superset",):
        t = time.perf_counter()
        score(
            prepared.paths[name], out / "scores" / name, ScoreConfig(**config.score), progress=False
        )
        seconds[f"score_{name}"] = time.perf_counter() - t
    superset = Scored.read(out / "scores" / "superset")
    junk = (
        Scored.read(out / "scores" / "junk") if prepared.junk else superset.rows(np.zeros(0, int))
    )
    embedder = Embedder(config.score.get("embedder"))
    hashes = {k: sha256_file(p) for k, p in prepared.paths.items()}

    def embed(name: str) -> np.ndarray:
        path = out / f"{name}.{hashes[name][:16]}.npy"
        if not path.is_file():
            atomic_write_bytes(
                path, _npy(embedder.embed([r["text"] for r in getattr(prepared, name)]))
            )
        return np.load(path)

    dev_embeddings = embed("dev")
    probe = Probe(
        dev_embeddings,
        np.array([str(r["label"]) for r in prepared.dev]),
        embed("eval"),
        np.array([str(r["label"]) for r in prepared.eval]),
        config.probe_c,
    )
    if methods is None:
        methods = screened()
    elif not set(methods) <= set(screened()):
        raise ValueError(f"unknown methods {sorted(set(methods) - set(screened()))}")
    s = Screened(config, prepared, superset, junk, dev_embeddings, [], seconds)
    t = time.perf_counter()
    same = (config.budgets, config.probe_c, config.score, config.noise, config.pool_size)
    for seed in config.seeds if seeds is None else seeds:
        for kind in pool_kinds(config.noise, config.seeds, seed):
            key = (SCREEN_VERSION, hashes, seed, kind, *same)
            s.rows += _screen_cached(s, probe, methods, key, seed, kind)
            log.info("%s: screened seed %d, %s pool", config.name, seed, kind)
    seconds["screen"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return s


def _screen_cached(
    s: Screened, probe: Probe, methods: list[str], key: tuple, seed: int, kind: str
) -> list[dict[str, Any]]:
    """One pool's rows in :func:`screen_pool`'s order, cached per method under ``key`` and its
    own settings (None: a baseline), so that a changed candidate screens only itself."""
    folder = Path(s.config.output) / "screen"
    settings = {m: screen_settings(m) for m in (*methods, FULL)}
    paths = {m: folder / f"{_key(*key, m, v)}.json" for m, v in settings.items()}
    rows = {m: json.loads(p.read_text()) for m, p in paths.items() if p.is_file()}
    missing = [m for m in (*methods, FULL) if m not in rows]
    if missing:
        picked = [m for m in missing if m != FULL]
        fresh = screen_pool(s.pool(kind, seed), s.config.budgets, probe, picked)
        folder.mkdir(parents=True, exist_ok=True)
        for m in missing:
            rows[m] = [r for r in fresh if r["method"] == m]
            atomic_write_bytes(paths[m], json.dumps(rows[m], indent=1, default=float).encode())
    by_budget = [r for b in s.config.budgets for m in methods for r in rows[m] if r["budget"] == b]
    return by_budget + rows[FULL]


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# -- the default ---------------------------------------------------------------------------------


def dev_gain_seeds(screened: list[Screened]) -> dict[str, dict[float, dict[str, np.ndarray]]]:
    """Dev-probe gain over random, in points, per candidate, budget and dataset:pool cell, one
    value per seed of that dataset's ``config.seeds`` (paired by seed; NaN where either side
    could not be fitted or was not screened)."""
    out: dict[str, dict[float, dict[str, np.ndarray]]] = {m: {} for m in CANDIDATES}
    for s in screened:
        pools = s.config.choice_pools if s.config.noise else ["clean"]
        by = {(r["pool"], r["seed"], r["budget"], r["method"]): r["probe_dev"] for r in s.rows}
        for pool in pools:
            for budget in s.config.budgets:
                for m in CANDIDATES:
                    d = np.array(
                        [
                            by.get((pool, seed, budget, m), np.nan)
                            - by.get((pool, seed, budget, RANDOM), np.nan)
                            for seed in s.config.seeds
                        ],
                        dtype=float,
                    )
                    if not np.isnan(d).all():
                        out[m].setdefault(budget, {})[f"{s.config.name}:{pool}"] = 100.0 * d
    return out


def dev_gains(screened: list[Screened]) -> dict[str, dict[float, dict[str, float]]]:
    """Mean dev-probe gain over random, in points, per candidate, budget and dataset:pool cell
    (paired by seed; a seed where either side could not be fitted is left out)."""
    return {
        m: {b: {cell: float(np.nanmean(d)) for cell, d in g.items()} for b, g in by.items()}
        for m, by in dev_gain_seeds(screened).items()
    }


def challenge(
    gain_seeds: dict[str, dict[float, dict[str, np.ndarray]]],
    budget: float,
    incumbent: str,
    challenger: str,
    *,
    resamples: int = BOOTSTRAP,
) -> dict[str, Any]:
    """The challenger's worst-case lead over the incumbent at ``budget`` (worst cell of each,
    in points) and its 95% percentile-bootstrap interval: each resample draws every dataset's
    seeds with replacement (a dataset's clean and noisy pools share the draw, as they share
    the seed) and takes both worst cases again."""
    cells = sorted(gain_seeds[incumbent][budget])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    by_dataset: dict[str, int] = {}
    for cell in cells:
        by_dataset.setdefault(cell.split(":")[0], len(gain_seeds[incumbent][budget][cell]))
    draws = {d: rng.integers(0, n, size=(resamples, n)) for d, n in by_dataset.items()}

    def worst(m: str, take: Any) -> Any:
        return np.min(
            [
                np.nanmean(take(gain_seeds[m][budget][cell], cell.split(":")[0]), axis=-1)
                for cell in cells
            ],
            axis=0,
        )

    lead = float(worst(challenger, lambda d, _: d) - worst(incumbent, lambda d, _: d))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of NaNs only
        boot = worst(challenger, lambda d, ds: d[draws[ds]]) - worst(
            incumbent, lambda d, ds: d[draws[ds]]
        )
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {
        "incumbent": incumbent,
        "challenger": challenger,
        "lead": lead,
        "ci": [float(lo), float(hi)],
        "replaced": bool(lo > 0),
    }


def choose_default(
    screened: list[Screened], incumbent: dict[float, str] | None = None
) -> dict[str, Any]:
    """The default at each screened budget, by a rule fixed before any eval number was read:

    1. for each candidate (those needing a target sample excluded) and budget, its *worst*
       mean dev-probe gain over random across the datasets' ``choice_pools`` (a candidate
       missing a cell is not eligible at that budget);
    2. at each budget the candidate with the largest worst gain (maximin) wins;
    3. walking the budgets upwards, the candidate chosen at the budget below is kept while its
       worst gain is within :data:`HYSTERESIS` points of the winner's;
    4. with an ``incumbent`` (budget -> candidate, the product's current default), that winner
       replaces the incumbent at a budget only if its worst-case lead has a 95% bootstrap
       interval above 0 (:func:`challenge`); otherwise the incumbent stays.

    Dev only: eval plays no part."""
    gain_seeds = dev_gain_seeds(screened)
    gains = dev_gains(screened)
    budgets = sorted({b for s in screened for b in s.config.budgets})
    cells = {
        f"{s.config.name}:{p}"
        for s in screened
        for p in (s.config.choice_pools if s.config.noise else ["clean"])
    }
    worst: dict[float, dict[str, float]] = {}
    by_budget: dict[float, str] = {}
    challenges: dict[str, dict[str, Any]] = {}
    previous: str | None = None
    for b in budgets:
        worst[b] = {
            m: min(g[b].values())
            for m, g in gains.items()
            if m not in NEEDS_TARGET and b in g and set(g[b]) >= cells
        }
        if not worst[b]:
            continue
        best = max(worst[b], key=lambda m: worst[b][m])
        if previous in worst[b] and worst[b][previous] >= worst[b][best] - HYSTERESIS:
            best = previous
        held = (incumbent or {}).get(b)
        if held in worst[b] and held != best:
            test = challenges[str(b)] = challenge(gain_seeds, b, held, best)
            best = best if test["replaced"] else held
        by_budget[b] = previous = best
    rule = (
        "per budget, the largest worst-case (dataset x pool) mean dev-probe gain over "
        f"random; the budget below's choice kept while within {HYSTERESIS} points"
    )
    if incumbent:
        rule += (
            "; the incumbent default replaced only where that winner's worst-case lead has a "
            "95% bootstrap interval over seeds above 0"
        )
    return {
        "by_budget": {str(b): m for b, m in by_budget.items()},
        "select": {m: CANDIDATES[m] for m in set(by_budget.values())},
        "rule": rule,
        "worst_dev_gain": {str(b): w for b, w in worst.items()},
        "challenges": challenges,
        "dev_gains": {m: {str(b): c for b, c in g.items()} for m, g in gains.items()},
        "datasets": [s.config.name for s in screened],
        "pools": {s.config.name: list(s.config.choice_pools) for s in screened},
    }


def default_at(choice: dict[str, Any], budget: float) -> str:
    """The candidate the default stands for at ``budget`` (a screened budget)."""
    try:
        return choice["by_budget"][str(budget)]
    except KeyError:
        raise ValueError(f"no default was chosen at budget {budget}") from None


# -- confirmation --------------------------------------------------------------------------------


def confirm(
    s: Screened,
    choice: dict[str, Any],
    item: dict[str, Any],
    *,
    train: bool = True,
    reverse: bool = False,
    seeds: list[int] | None = None,
) -> list[dict[str, Any]]:
    """One ``confirm`` item's fine-tunes (cached by training set and settings), a row per run.
    ``seeds`` limits the item's seeds to these (default: the item's own);
    ``train=False`` collects the cached runs only; ``reverse`` walks the seeds from the last,
    so that a second process on the same item meets the first in the middle (a run is locked
    while it trains: the other waits for it instead of training it twice)."""
    from euds.research.finetune import FinetuneConfig, planned_epochs

    config, out = s.config, Path(s.config.output)
    eval_hash = sha256_file(s.prepared.paths["eval"])
    matched = item.get("steps", "natural") == "full"
    runs = []
    own = item.get("seeds", config.seeds)
    chosen_seeds = [x for x in own if seeds is None or x in seeds]
    for seed in reversed(chosen_seeds) if reverse else chosen_seeds:
        for kind in item.get("pools", ["clean"]):
            pool = s.pool(kind, seed)
            natural = {"task": "classification", **config.finetune, "seed": seed}
            epochs, per_epoch = planned_epochs(len(pool.records), FinetuneConfig(**natural))
            for method in item["methods"]:
                # The whole pool is the reference: it always trains its natural epochs.
                suffix = STEP_MATCHED if matched and method != FULL else ""
                for budget in [1.0] if method == FULL else item["budgets"]:
                    name = default_at(choice, budget) if method == DEFAULT else method
                    if name == FULL:
                        keep = np.ones(len(pool.records), dtype=bool)
                    else:
                        keep = choose(name, budget, pool, seed=seed)
                    chosen = [r for r, k in zip(pool.records, keep, strict=True) if k]
                    ft = dict(natural)
                    if suffix:
                        ft["min_steps"] = epochs * per_epoch
                    ids = hashlib.sha256("\n".join(str(r["id"]) for r in chosen).encode())
                    cached = out / "runs" / f"{_key(eval_hash, ids.hexdigest(), ft)}.json"
                    if not cached.is_file() and not train:
                        continue
                    if not cached.is_file():
                        with _run_lock(cached):
                            if not cached.is_file():  # another process may have trained it
                                log.info(
                                    "fine-tune %s %s %s %.0f%% seed %d (%d records)",
                                    config.name,
                                    kind,
                                    name + suffix,
                                    100 * budget,
                                    seed,
                                    len(chosen),
                                )
                                _train(s, chosen, FinetuneConfig(**ft), cached)
                    metrics = json.loads(cached.read_text())
                    runs.append(
                        {
                            "pool": kind,
                            "seed": seed,
                            "budget": budget,
                            "method": method + suffix,
                            "candidate": name + suffix,
                            "accuracy": metrics["accuracy"],
                            "macro_f1": metrics["macro_f1"],
                            "steps": metrics["train_steps"],
                            "seconds": metrics["wall_seconds"],
                            **subset_stats(keep, pool),
                        }
                    )
    return runs


def _train(s: Screened, chosen: list[dict[str, Any]], config: Any, cached: Path) -> None:
    from euds.research.finetune import finetune

    train = cached.with_suffix(".train.jsonl")
    train.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(train, [{"text": r["text"], "label": r["label"]} for r in chosen])
    finetune(train, s.prepared.paths["eval"], config, output=cached)
    train.unlink(missing_ok=True)


@contextlib.contextmanager
def _run_lock(cached: Path) -> Iterator[None]:
    """Holds the lock of one fine-tune, waiting while another process holds it."""
    from euds._core import EudsError
    from euds.output import RunLock

    cached.parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock(cached.with_suffix(".lock"), str(cached))
    while True:
        try:
            lock.acquire()
            break
        except EudsError:  # trained by another process right now
            time.sleep(5)
    try:
        yield
    finally:
        lock.release()


def run_experiments(
    configs: list[ExperimentConfig],
    *,
    seeds: list[int] | None = None,
    finetune_only: set[str] | None = None,
    reverse: bool = False,
) -> list[dict[str, Any]]:
    """Screens every dataset, chooses the default from all of them, confirms, reports.
    ``seeds``: run only these of the configs' seeds (the data and the caches stay those of
    all of them, so a later run with more seeds adds only the new ones);
    ``finetune_only``: train only these datasets' fine-tunes (the others report the runs
    already cached), so that processes can share the work; ``reverse``: see :func:`confirm`."""
    from euds.research.overview import overview
    from euds.research.report import write_results

    if seeds is not None:
        for c in configs:
            if not set(seeds) <= set(c.seeds):
                raise ValueError(f"seeds {seeds} must be among {c.name}'s seeds {c.seeds}")
    from euds.selection import DEFAULT_CHOICE

    screened = [screen(c, seeds) for c in configs]
    # The product's current default is the incumbent: a run changes it only on evidence.
    choice = choose_default(screened, incumbent=dict(DEFAULT_CHOICE))
    log.info("default (chosen on dev): %s", choice["by_budget"])
    # Item by item across the datasets: the configs list their fine-tunes by priority.
    runs: list[list[dict[str, Any]]] = [[] for _ in screened]
    for i in range(max((len(c.confirm) for c in configs), default=0)):
        for s, done in zip(screened, runs, strict=True):
            if i < len(s.config.confirm):
                t = time.perf_counter()
                train = finetune_only is None or s.config.name in finetune_only
                item = s.config.confirm[i]
                done += confirm(s, choice, item, train=train, reverse=reverse, seeds=seeds)
                s.seconds["finetune"] = s.seconds.get("finetune", 0.0) + time.perf_counter() - t
    summaries = []
    for s, done in zip(screened, runs, strict=True):
        summary = {
            "name": s.config.name,
            "output": s.config.output,
            "config": asdict(s.config),
            "pool": s.config.pool_size,
            "superset": len(s.prepared.superset),
            "dev": len(s.prepared.dev),
            "eval": len(s.prepared.eval),
            "default": choice,
            "screen": s.rows,
            "finetune": done,
            "seconds": s.seconds,
        }
        out = Path(s.config.output)
        atomic_write_bytes(
            out / "summary.json", json.dumps(summary, indent=1, default=float).encode()
        )
        # What the product's default table (euds.selection.DEFAULT_CHOICE) must match.
        kept = ("by_budget", "rule", "worst_dev_gain", "challenges", "datasets", "pools")
        atomic_write_bytes(
            out / "default_choice.json",
            json.dumps({k: choice[k] for k in kept}, indent=1, default=float).encode(),
        )
        write_results(summary, out)
        summaries.append(summary)
    # The tables across datasets, beside each dataset's own (docs/results.md shows them).
    text = overview(summaries).encode()
    for summary in summaries:
        atomic_write_bytes(Path(summary["output"]) / "overview.md", text)
    return summaries
