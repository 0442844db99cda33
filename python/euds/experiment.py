"""The selection experiment (``euds experiment CONFIG.toml ...``): does a method keep what a
model needs, and drop junk, better than random? And the automatic interval (``euds tune``).

Design (docs/results.md states it for a reader):

* **Data.** A seeded *superset* of the training file (after the config's ``preprocess``) is
  scored once with all three signals. Seed s draws its *pool* from the superset, so pools vary
  with the seed; the *noisy pool* of seed s adds ``noise`` junk (:mod:`euds.noise`, random
  labels) made from that pool, scored once for all seeds. Per-record columns (information,
  generative, text hash, embeddings) are the superset's; the semantic signal is recomputed on
  each pool (k-means on the pool's embeddings, then its soft assignment), as scoring that pool
  would. ``dev`` (the task's development set, or a split of train outside the superset) is for
  choosing; ``eval`` (the test set) is for reporting only.
* **Methods.** Baselines: ``random``, ``random+classes`` (class-stratified), ``random+clusters``
  (k-means-stratified) and, for each candidate, ``CANDIDATE~length`` (random, matching the
  candidate's counts in the pool's length deciles). Candidates (:data:`CANDIDATES`): each
  entropy alone, IGSE ``intersect`` and ``mean-rank``, cluster-stratified intersect,
  ``filter-random``. Searched: ``auto`` (the best of :data:`TUNE_GRID` on the dev probe) and its
  control ``best-of-25-random`` (the best of 25 random subsets by the same probe), at the
  :data:`CHOICE_BUDGETS` only. Near-duplicate removal: ``METHOD+dedup`` for random and every
  candidate (:data:`DEDUP`), screened apart and never chosen as the default. Seed s sets the
  pool, the random draws, every method's tie-break and the fine-tune seed.
* **Screening** (every method x budget x seed x pool): a linear probe, logistic regression on the
  frozen embeddings of the kept records, scored on dev and on eval (seconds each).
* **The default** (:func:`choose_default`): the candidate with the largest mean dev-probe gain
  over random across the datasets, their ``choice_pools``, seeds and budgets 10-30% — a rule
  fixed before any eval number is read; eval never chooses.
* **Confirmation**: fine-tunes (:mod:`euds.finetune`) for the config's ``confirm`` list, with
  ``default`` standing for the chosen candidate; every method at a budget trains the same
  number of optimiser updates (natural epochs with a ``min_steps`` floor), the count is
  reported; an item with ``steps = "full"`` trains its subsets as many steps as the whole pool
  (:data:`STEP_MATCHED`).
* Results are cached under the output folder by a hash of what decides them, so an interrupted
  run resumes and a finished one re-renders for free. Statistics: :mod:`euds.stats`; tables
  and plots: :mod:`euds.experiment_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_write_bytes, sha256_file
from euds.provenance import open_text

log = logging.getLogger("euds")

# Select arguments of each candidate method (``stratify: clusters`` = the pool's k-means).
ALL = ["information", "generative", "semantic"]
CANDIDATES: dict[str, dict[str, Any]] = {
    "information": {"signals": ["information"]},
    "generative": {"signals": ["generative"]},
    "semantic": {"signals": ["semantic"]},
    "intersect": {"signals": ALL, "method": "intersect"},
    "mean-rank": {"signals": ALL, "method": "mean-rank"},
    "intersect+clusters": {"signals": ALL, "method": "intersect", "stratify": "clusters"},
    "filter-random": {"signals": ALL, "method": "filter-random"},
    "filter-random+clusters": {"signals": ALL, "method": "filter-random", "stratify": "clusters"},
}
BASELINES = ("random", "random+classes", "random+clusters")
# Near-duplicate removal (``select(drop_near_duplicates=True)``) on top of a method, screened
# apart from the rest (its own cache) and never a candidate for the default: does it drop the
# near-duplicate junk, and what does it cost a clean pool? ``random+dedup`` draws uniformly
# from what removal leaves.
DEDUP = "+dedup"
# A confirm item with ``steps = "full"`` trains every subset for as many optimiser steps as the
# whole pool takes with natural epochs (whole epochs, so at least that many); its rows carry
# this suffix (``default@full-steps``) beside the natural-epoch ones.
STEP_MATCHED = "@full-steps"
LENGTH_MATCHED = "~length"
AUTO, BEST_RANDOM = "auto", "best-of-25-random"
DEFAULT = "default"
POOLS = ("clean", "noisy")
# The automatic interval's search: 5 methods x 5 positions, as its control draws 25 subsets.
TUNE_METHODS = ("intersect", "mean-rank", "information", "generative", "semantic")
TUNE_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_GRID = [(m, p) for m in TUNE_METHODS for p in TUNE_POSITIONS]
# Budgets over which the default is chosen: where a selection is meant to be used. The searched
# methods (50 probes per subset) run at these budgets only, to keep screening in minutes.
CHOICE_BUDGETS = (0.1, 0.16, 0.3)
# Bump when a change alters screening results, so cached ones are not reused.
SCREEN_VERSION = 1


@dataclass
class ExperimentConfig:
    name: str
    train: str
    eval: str
    output: str
    dev: str = ""  # "" = dev_size records of train outside the superset
    dev_size: int = 1000
    task: str = "classification"
    preprocess: str = ""  # a name in euds.preprocess.PREPROCESSORS
    superset: int = 0  # training records scored once (0: all)
    pool_size: int = 5000
    eval_size: int = 0  # 0: the whole evaluation file
    noise: float = 0.2  # junk share of the noisy pool
    budgets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.16, 0.3, 0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    probe_c: float = 1.0
    finetune: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    # Fine-tunes: [{methods = [...], budgets = [...], pools = [...], seeds = [...], steps = ...}]
    # (seeds: default all; steps: "natural" or "full", see STEP_MATCHED); "full" runs at 1.0.
    confirm: list[dict[str, Any]] = field(default_factory=list)
    # Pools whose dev probes choose the default. A pool added after the default was chosen (and
    # fine-tuned on) stays out, so adding evidence later cannot move the choice under the
    # finished confirm runs; the report still shows what the choice would be with every pool.
    choice_pools: list[str] = field(default_factory=lambda: list(POOLS))
    sample_seed: int = 1234

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        import tomllib

        raw = tomllib.loads(Path(path).read_text())
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
        from euds import preprocess

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
        known = {*CANDIDATES, *BASELINES, AUTO, BEST_RANDOM, DEFAULT, "full"}
        for item in self.confirm:
            bad = [m for m in item.get("methods", []) if m.split(LENGTH_MATCHED)[0] not in known]
            if bad:
                raise ValueError(f"unknown methods {bad} in confirm; choose from {sorted(known)}")
            if not set(item.get("seeds", self.seeds)) <= set(self.seeds):
                raise ValueError(f"confirm seeds must be among seeds {self.seeds}: {item}")
            if item.get("steps", "natural") not in ("natural", "full"):
                raise ValueError(f"confirm steps must be 'natural' or 'full', got {item}")
            pools = item.get("pools", ["clean"])
            if any(p not in POOLS for p in pools) or ("noisy" in pools and not self.noise):
                raise ValueError(
                    f"confirm pools must be among {POOLS} (noisy only with noise > 0), got {pools}"
                )


# -- data ----------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    # Unchanged files keep their mtime: their scores are found again on a rerun.
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


@dataclass
class Prepared:
    superset: list[dict[str, Any]]
    junk: list[dict[str, Any]]  # every seed's junk, id junk-SEED-I, with "junk" = its kind
    dev: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    paths: dict[str, Path]
    pool_size: int


def prepare_data(config: ExperimentConfig) -> Prepared:
    """Writes superset.jsonl, junk.jsonl, dev.jsonl and eval.jsonl under the output folder."""
    from euds import preprocess
    from euds.noise import noisy_pool

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    clean = preprocess.get(config.preprocess)

    def load(path: str) -> list[dict[str, Any]]:
        records = read_jsonl(Path(path))
        if clean is not None:
            records = [{**r, "text": clean(r["text"])} for r in records]
        # A post with nothing left after the clean-up carries no text to learn from.
        return [r for r in records if r["text"].strip()]

    train = load(config.train)
    rng = np.random.default_rng(config.sample_seed)
    order = rng.permutation(len(train))
    dev = load(config.dev) if config.dev else [train[i] for i in np.sort(order[-config.dev_size :])]
    if not config.dev:
        order = order[: -config.dev_size]
    n = min(config.superset or len(order), len(order))
    if n < config.pool_size:
        raise ValueError(
            f"{config.train} has {n} usable records, the pool needs {config.pool_size}"
        )
    superset = [train[i] for i in np.sort(order[:n])]
    evaluation = load(config.eval)
    if config.eval_size and config.eval_size < len(evaluation):
        keep = np.random.default_rng(config.sample_seed + 1).permutation(len(evaluation))
        evaluation = [evaluation[i] for i in np.sort(keep[: config.eval_size])]
    junk = []
    for seed in config.seeds:
        pool = [superset[i] for i in pool_rows(len(superset), config.pool_size, seed)]
        junk += [r for r in noisy_pool(pool, config.noise, seed=seed) if "junk" in r]
    paths = {k: out / f"{k}.jsonl" for k in ("superset", "junk", "dev", "eval")}
    for key, records in (
        ("superset", superset),
        ("junk", junk),
        ("dev", dev),
        ("eval", evaluation),
    ):
        _write_jsonl(paths[key], records)
    return Prepared(superset, junk, dev, evaluation, paths, config.pool_size)


def pool_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The superset rows of seed ``seed``'s pool (sorted)."""
    return np.sort(np.random.default_rng([seed, 17]).choice(n, size=size, replace=False))


# -- pools ---------------------------------------------------------------------------------------


@dataclass
class Pool:
    """One pool of one seed: its records, score columns, embeddings and k-means clusters."""

    kind: str  # clean | noisy
    seed: int
    records: list[dict[str, Any]]
    columns: dict[str, np.ndarray]
    embeddings: np.ndarray
    clusters: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([str(r["label"]) for r in self.records])

    @property
    def words(self) -> np.ndarray:
        return np.array([len(r["text"].split()) for r in self.records])

    @property
    def junk(self) -> np.ndarray:
        return np.array([r.get("junk") or "" for r in self.records], dtype=object)


@dataclass
class Scored:
    """Score columns and embeddings of a scored file, by row."""

    columns: dict[str, np.ndarray]
    embeddings: np.ndarray

    @classmethod
    def read(cls, path: Path) -> Scored:
        from euds.scores import ScoreDir

        sd = ScoreDir(path)
        table = sd.read(["id", "information", "generative", "n_tokens", "text_hash"])
        columns = {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
        emb = np.concatenate([np.asarray(sd.embeddings(s), dtype=np.float32) for s in sd.shards()])
        return cls(columns, emb)

    def rows(self, index: np.ndarray) -> Scored:
        return Scored({k: v[index] for k, v in self.columns.items()}, self.embeddings[index])


def make_pool(
    kind: str,
    seed: int,
    prepared: Prepared,
    superset: Scored,
    junk: Scored,
    score: dict[str, Any],
    noise: float,
) -> Pool:
    from euds.batch import near_duplicate_keys
    from euds.config import ScoreConfig
    from euds.noise import noisy_pool
    from euds.signals.semantic import assign, fit_centroids, nearest_centroid

    rows = pool_rows(len(prepared.superset), prepared.pool_size, seed)
    records = [prepared.superset[i] for i in rows]
    part = superset.rows(rows)
    if kind == "noisy":
        records = noisy_pool(records, noise, seed=seed)
        # Rows of [pool, then every seed's junk] in the noisy pool's order.
        junk_at = {r["id"]: len(rows) + i for i, r in enumerate(prepared.junk)}
        clean_at = iter(range(len(rows)))
        index = np.array([junk_at[r["id"]] if "junk" in r else next(clean_at) for r in records])
        both = Scored(
            {k: np.concatenate([v, junk.columns[k]]) for k, v in part.columns.items()},
            np.concatenate([part.embeddings, junk.embeddings]),
        )
        part = both.rows(index)
    config = ScoreConfig(**score)
    centroids = fit_centroids(
        part.embeddings,
        config.k,
        seed=config.seed,
        max_points_per_centroid=config.max_points_per_centroid,
    )
    columns = dict(part.columns)
    # From the texts with the pass's own function: score directories made before the column
    # existed lack it.
    columns["near_keys"] = near_duplicate_keys([r["text"] for r in records])
    columns["semantic"] = assign(part.embeddings, centroids, config.m, config.temperature)
    clusters = nearest_centroid(part.embeddings, centroids)
    return Pool(kind, seed, records, columns, part.embeddings, clusters)


# -- choosing subsets ----------------------------------------------------------------------------


def _stratified_random(strata: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    from euds.select import largest_remainder

    names, codes = np.unique(strata, return_inverse=True)
    quota = largest_remainder(np.bincount(codes, minlength=len(names)), count)
    keep = np.zeros(len(strata), dtype=bool)
    for c, q in enumerate(quota):
        members = np.flatnonzero(codes == c)
        keep[rng.choice(members, size=int(q), replace=False)] = True
    return keep


def _rng(seed: int, budget: float, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, round(budget * 10_000), salt])


def length_deciles(words: np.ndarray) -> np.ndarray:
    """Decile bin (0-9) of every record's length in the pool."""
    edges = np.quantile(words, np.linspace(0.1, 0.9, 9))
    return np.searchsorted(edges, words, side="right")


def length_matched(keep: np.ndarray, words: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random subset with ``keep``'s number of records in every length decile of the pool."""
    bins = length_deciles(words)
    out = np.zeros(len(keep), dtype=bool)
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        out[rng.choice(members, size=int(keep[members].sum()), replace=False)] = True
    return out


def choose(method: str, budget: float, pool: Pool, *, seed: int) -> np.ndarray:
    """The kept mask of a baseline or candidate method (not the searched ones)."""
    from euds.select import select

    n = len(pool.records)
    count = round(budget * n)
    if method == "random":
        keep = np.zeros(n, dtype=bool)
        keep[_rng(seed, budget, 0).choice(n, size=count, replace=False)] = True
        return keep
    if method == "random+classes":
        return _stratified_random(pool.labels, count, _rng(seed, budget, 1))
    if method == "random+clusters":
        return _stratified_random(pool.clusters, count, _rng(seed, budget, 2))
    if method.endswith(DEDUP):
        base = method[: -len(DEDUP)]
        spec = (
            {"signals": ALL, "method": "filter-random", "tails": (0.0, 1.0)}
            if base == "random"
            else dict(CANDIDATES[base])
        )
        if spec.get("stratify") == "clusters":
            spec["stratify"] = pool.clusters
        return select(
            pool.columns,
            budget=budget,
            seed=seed,
            on_nonfinite="drop",
            drop_near_duplicates=True,
            **spec,
        ).keep
    if method.endswith(LENGTH_MATCHED):
        base = choose(method[: -len(LENGTH_MATCHED)], budget, pool, seed=seed)
        return length_matched(base, pool.words, _rng(seed, budget, 3))
    if method in CANDIDATES:
        spec = dict(CANDIDATES[method])
        if spec.get("stratify") == "clusters":
            spec["stratify"] = pool.clusters
        return select(pool.columns, budget=budget, seed=seed, on_nonfinite="drop", **spec).keep
    raise ValueError(f"unknown method {method!r}")


def tuned_choice(method: str, position: float, budget: float, pool: Pool, seed: int) -> np.ndarray:
    from euds.select import select

    signals = [method] if method in ALL else [s for s in ALL if s in pool.columns]
    return select(
        pool.columns,
        signals=signals,
        method=None if len(signals) == 1 else method,
        budget=budget,
        position=position,
        seed=seed,
        on_nonfinite="drop",
    ).keep


# -- the probe -----------------------------------------------------------------------------------


@dataclass
class Probe:
    """Logistic regression on frozen embeddings; ``score`` gives accuracy on dev and eval."""

    dev_x: np.ndarray
    dev_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray
    c: float = 1.0

    def fit(self, x: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegression

        ok = ~np.isnan(x).any(axis=1)
        if len(set(y[ok])) < 2:
            return None
        return LogisticRegression(max_iter=500, C=self.c).fit(x[ok], y[ok])

    def score(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        model = self.fit(x, y)
        if model is None:
            return float("nan"), float("nan")
        return (
            float(np.mean(model.predict(self.dev_x) == self.dev_y)),
            float(np.mean(model.predict(self.eval_x) == self.eval_y)),
        )

    def dev_only(self, x: np.ndarray, y: np.ndarray) -> float:
        model = self.fit(x, y)
        return (
            float("nan")
            if model is None
            else float(np.mean(model.predict(self.dev_x) == self.dev_y))
        )


def subset_stats(keep: np.ndarray, pool: Pool) -> dict[str, Any]:
    """What a subset holds: size, median length, largest class share, clusters covered, junk."""
    labels, junk = pool.labels[keep], pool.junk[keep]
    _, class_counts = np.unique(labels, return_counts=True)
    stats: dict[str, Any] = {
        "records": int(keep.sum()),
        "median_words": float(np.median(pool.words[keep])) if keep.any() else float("nan"),
        "largest_class_share": float(class_counts.max() / keep.sum()) if keep.any() else 0.0,
        "clusters_covered": len(np.unique(pool.clusters[keep])),
    }
    if pool.kind == "noisy":
        hashes = pool.columns["text_hash"][keep]
        _, inverse, copies = np.unique(hashes.astype(str), return_inverse=True, return_counts=True)
        # An exact duplicate is junk only when another copy is kept too.
        is_junk = (junk != "") & ((junk != "exact_duplicate") | (copies[inverse] > 1))
        stats["junk_share"] = float(is_junk.mean()) if keep.any() else 0.0
        stats["junk_kept"] = {
            kind: int(((junk == kind) & is_junk).sum()) for kind in sorted(set(pool.junk) - {""})
        }
    return stats


def search(pool: Pool, budget: float, probe: Probe) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The automatic interval (the best of :data:`TUNE_GRID` by the dev probe) and its control
    (the best of as many random subsets by the same probe): kept mask and trials of each."""
    y = pool.labels
    trials = []
    for method, position in TUNE_GRID:
        keep = tuned_choice(method, position, budget, pool, pool.seed)
        dev = probe.dev_only(pool.embeddings[keep], y[keep])
        trials.append({"method": method, "position": position, "dev": dev})
    # Best probe; among equals prefer a centred band (the paper's default).
    best = max(trials, key=lambda t: (np.nan_to_num(t["dev"], nan=-1), -abs(t["position"] - 0.5)))
    draws = [
        choose("random", budget, pool, seed=pool.seed * 1000 + 1 + j) for j in range(len(TUNE_GRID))
    ]
    scores = [probe.dev_only(pool.embeddings[k], y[k]) for k in draws]
    return {
        AUTO: (
            tuned_choice(best["method"], best["position"], budget, pool, pool.seed),
            {"tuned": {"method": best["method"], "position": best["position"], "trials": trials}},
        ),
        BEST_RANDOM: (draws[int(np.nanargmax(scores))], {"trials": scores}),
    }


def screen_pool(
    pool: Pool, budgets: list[float], probe: Probe, methods: list[str], *, searched: bool = True
) -> list[dict[str, Any]]:
    """Probe results and subset statistics of every method at every budget on one pool, and
    with ``searched`` the searched methods at :data:`CHOICE_BUDGETS` and the whole pool."""
    y = pool.labels
    rows = []
    for budget in [*budgets, 1.0] if searched else budgets:
        if budget == 1.0:
            chosen = {"full": (np.ones(len(pool.records), dtype=bool), {})}
        else:
            chosen = {m: (choose(m, budget, pool, seed=pool.seed), {}) for m in methods}
            if searched and budget in CHOICE_BUDGETS:
                chosen.update(search(pool, budget, probe))
        for method, (keep, extra) in chosen.items():
            dev, test = probe.score(pool.embeddings[keep], y[keep])
            rows.append(
                {
                    "pool": pool.kind,
                    "seed": pool.seed,
                    "budget": budget,
                    "method": method,
                    "probe_dev": dev,
                    "probe_eval": test,
                    **subset_stats(keep, pool),
                    **extra,
                }
            )
    return rows


# -- running -------------------------------------------------------------------------------------


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
    rows: list[dict[str, Any]]
    seconds: dict[str, float]


def screen(config: ExperimentConfig) -> Screened:
    """Prepares and scores the data, then probes every method on every seed's pools."""
    from euds.pipeline import ScoreConfig, score
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

    probe = Probe(
        embed("dev"),
        np.array([str(r["label"]) for r in prepared.dev]),
        embed("eval"),
        np.array([str(r["label"]) for r in prepared.eval]),
        config.probe_c,
    )
    methods = [*BASELINES, *CANDIDATES, *(m + LENGTH_MATCHED for m in CANDIDATES)]
    dedup = [m + DEDUP for m in ("random", *CANDIDATES)]
    rows: list[dict[str, Any]] = []
    t = time.perf_counter()
    for seed in config.seeds:
        for kind in POOLS if config.noise else ("clean",):
            key = _key(
                SCREEN_VERSION,
                hashes,
                seed,
                kind,
                config.budgets,
                methods,
                config.probe_c,
                config.score,
                config.noise,
                config.pool_size,
            )
            pool: list[Pool] = []  # made once, when a cache misses

            def made(kind: str = kind, seed: int = seed, pool: list[Pool] = pool) -> Pool:
                if not pool:
                    pool.append(
                        make_pool(kind, seed, prepared, superset, junk, config.score, config.noise)
                    )
                return pool[0]

            rows += _cached(
                out / "screen" / f"{key}.json",
                lambda made=made: screen_pool(made(), config.budgets, probe, methods),
            )
            rows += _cached(
                out / "screen" / f"{_key(key, DEDUP, dedup)}.json",
                lambda made=made: screen_pool(made(), config.budgets, probe, dedup, searched=False),
            )
            log.info("%s: screened seed %d, %s pool", config.name, seed, kind)
    seconds["screen"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return Screened(config, prepared, superset, junk, rows, seconds)


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def choose_default(screened: list[Screened], *, every_pool: bool = False) -> dict[str, Any]:
    """The candidate with the largest mean dev-probe gain over random (paired by dataset, pool,
    seed and budget, budgets in :data:`CHOICE_BUDGETS`), over each config's ``choice_pools``.
    Dev only: eval plays no part. ``every_pool`` counts every screened pool instead (reported
    beside the choice, never used for it)."""
    gains: dict[str, list[float]] = {m: [] for m in CANDIDATES}
    for s in screened:
        pools = POOLS if every_pool else s.config.choice_pools
        by = {(r["pool"], r["seed"], r["budget"], r["method"]): r["probe_dev"] for r in s.rows}
        for (pool, seed, budget, method), dev in by.items():
            if method in gains and budget in CHOICE_BUDGETS and pool in pools:
                gains[method].append(dev - by[(pool, seed, budget, "random")])
    mean = {m: float(np.nanmean(g)) for m, g in gains.items() if g}
    best = max(mean, key=lambda m: mean[m])
    choice = {
        "method": best,
        "select": CANDIDATES[best],
        "rule": "largest mean dev-probe gain over random, budgets "
        + ", ".join(f"{b:.0%}" for b in CHOICE_BUDGETS),
        "mean_dev_gain": mean,
        "datasets": [s.config.name for s in screened],
        "pools": {s.config.name: list(s.config.choice_pools) for s in screened},
    }
    if not every_pool and any(set(s.config.choice_pools) != set(POOLS) for s in screened):
        every = choose_default(screened, every_pool=True)
        choice["every_pool"] = {"method": every["method"], "mean_dev_gain": every["mean_dev_gain"]}
    return choice


def confirm(s: Screened, default: str, item: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``confirm`` item's fine-tunes (cached by training set and settings), a row per run."""
    from euds.finetune import FinetuneConfig, finetune, planned_epochs

    config, out = s.config, Path(s.config.output)
    eval_hash = sha256_file(s.prepared.paths["eval"])
    matched = item.get("steps", "natural") == "full"
    runs = []
    for seed in item.get("seeds", config.seeds):
        for kind in item.get("pools", ["clean"]):
            pool = make_pool(kind, seed, s.prepared, s.superset, s.junk, config.score, config.noise)
            natural = {"task": "classification", **config.finetune, "seed": seed}
            epochs, per_epoch = planned_epochs(len(pool.records), FinetuneConfig(**natural))
            for method in item["methods"]:
                name = default if method == DEFAULT else method
                # The whole pool is the reference: it always trains its natural epochs.
                suffix = STEP_MATCHED if matched and name != "full" else ""
                for budget in [1.0] if name == "full" else item["budgets"]:
                    if name == "full":
                        keep = np.ones(len(pool.records), dtype=bool)
                    else:
                        keep = choose(name, budget, pool, seed=seed)
                    chosen = [r for r, k in zip(pool.records, keep, strict=True) if k]
                    ft = dict(natural)
                    if suffix:
                        ft["min_steps"] = epochs * per_epoch
                    ids = hashlib.sha256("\n".join(str(r["id"]) for r in chosen).encode())
                    cached = out / "runs" / f"{_key(eval_hash, ids.hexdigest(), ft)}.json"
                    if not cached.is_file():
                        train = cached.with_suffix(".train.jsonl")
                        train.parent.mkdir(parents=True, exist_ok=True)
                        _write_jsonl(
                            train, [{"text": r["text"], "label": r["label"]} for r in chosen]
                        )
                        log.info(
                            "fine-tune %s %s %s %.0f%% seed %d (%d records)",
                            config.name,
                            kind,
                            name + suffix,
                            100 * budget,
                            seed,
                            len(chosen),
                        )
                        finetune(
                            train, s.prepared.paths["eval"], FinetuneConfig(**ft), output=cached
                        )
                        train.unlink(missing_ok=True)
                    metrics = json.loads(cached.read_text())
                    runs.append(
                        {
                            "pool": kind,
                            "seed": seed,
                            "budget": budget,
                            "method": (method if method in (DEFAULT, "full") else name) + suffix,
                            "candidate": name + suffix,
                            "accuracy": metrics["accuracy"],
                            "macro_f1": metrics["macro_f1"],
                            "steps": metrics["train_steps"],
                            "seconds": metrics["wall_seconds"],
                            **subset_stats(keep, pool),
                        }
                    )
    return runs


def run_experiments(configs: list[ExperimentConfig]) -> list[dict[str, Any]]:
    """Screens every dataset, chooses the default from all of them, confirms, reports."""
    from euds.experiment_report import write_report

    screened = [screen(c) for c in configs]
    default = choose_default(screened)
    log.info("default (chosen on dev): %s", default["method"])
    # Item by item across the datasets: the configs list their fine-tunes by priority.
    runs: list[list[dict[str, Any]]] = [[] for _ in screened]
    for i in range(max(len(c.confirm) for c in configs)):
        for s, done in zip(screened, runs, strict=True):
            if i < len(s.config.confirm):
                t = time.perf_counter()
                done += confirm(s, default["method"], s.config.confirm[i])
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
            "default": default,
            "screen": s.rows,
            "finetune": done,
            "seconds": s.seconds,
        }
        out = Path(s.config.output)
        atomic_write_bytes(
            out / "summary.json", json.dumps(summary, indent=1, default=float).encode()
        )
        write_report(summary, out)
        summaries.append(summary)
    return summaries


# -- the automatic interval on a user's score directory (``euds tune``) --------------------------


def tune(
    scores,
    embeddings: np.ndarray,
    labels: list[Any],
    dev_embeddings: np.ndarray,
    dev_labels: list[Any],
    budget: float,
    seed: int = 0,
) -> dict[str, Any]:
    """The automatic interval: the method and band position of :data:`TUNE_GRID` whose subset
    gives the best linear probe (logistic regression on embeddings) on the dev split."""
    t0 = time.perf_counter()
    y = np.array([str(v) for v in labels])
    ok_dev = ~np.isnan(dev_embeddings).any(axis=1)
    probe = Probe(
        dev_embeddings[ok_dev],
        np.array([str(v) for v in dev_labels])[ok_dev],
        dev_embeddings[:0],
        y[:0],
    )
    pool = Pool("clean", seed, [], dict(_columns_of(scores)), embeddings, np.zeros(0, int))
    trials = []
    for method, position in TUNE_GRID:
        keep = tuned_choice(method, position, budget, pool, seed)
        accuracy = probe.dev_only(embeddings[keep], y[keep])
        if not np.isnan(accuracy):
            trials.append({"method": method, "position": position, "dev_accuracy": accuracy})
    if not trials:
        raise ValueError("no candidate subset has two classes: the budget is too small")
    # Best probe; among equals prefer a centred band (the paper's default).
    best = max(trials, key=lambda t: (t["dev_accuracy"], -abs(t["position"] - 0.5)))
    return {**best, "budget": budget, "trials": trials, "seconds": time.perf_counter() - t0}


def _columns_of(scores: Any) -> dict[str, np.ndarray]:
    from euds.select import _columns

    return _columns(scores)


def tune_score_dir(
    scores_dir: str | os.PathLike[str],
    pool_path: str | os.PathLike[str],
    dev_path: str | os.PathLike[str],
    budget: float,
    label_field: str = "label",
) -> dict[str, Any]:
    """:func:`tune` on a score directory of the pool (its kept embeddings) and a labelled dev
    split (embedded here with the directory's embedder): ``euds tune``."""
    from euds.scores import ScoreDir
    from euds.signals.semantic import Embedder

    sd = ScoreDir(Path(scores_dir))
    pool = read_jsonl(Path(pool_path))
    dev = read_jsonl(Path(dev_path))
    embeddings = np.concatenate(
        [np.asarray(sd.embeddings(s), dtype=np.float32) for s in sd.shards()]
    )
    if len(embeddings) != len(pool):
        raise ValueError(
            f"{scores_dir} scored {len(embeddings)} records, {pool_path} has {len(pool)}"
        )
    dev_emb = Embedder(sd.manifest()["config"].get("embedder")).embed([r["text"] for r in dev])
    return tune(
        sd.read(),
        embeddings,
        [r[label_field] for r in pool],
        dev_emb,
        [r[label_field] for r in dev],
        budget,
    )
