"""The accuracy-vs-data experiment (``euds experiment CONFIG.toml``) and the automatic interval.

For one dataset: a seeded sample of the training set is the pool, scored once with all three
signals. For every budget and seed, a subset is chosen by each method — random, each single
entropy (a band centred on the median), IGSE intersect, IGSE mean-rank and the automatic
interval — and a model is fine-tuned on it and evaluated; ``full`` trains on the whole pool.
Each run's metrics are cached under ``runs/`` by a hash of everything that decides them, so an
interrupted experiment resumes and a finished one is re-aggregated for free. Output: a Markdown
table (mean ± std over seeds) and an SVG plot of the metric against the share of data kept
(rendered by :mod:`euds.experiment_report`).

Automatic interval (``tune``, beyond the paper): at a budget, try the methods and band
positions on a cheap proxy — a logistic regression on the MiniLM embeddings the semantic signal
already computed, trained on the candidate subset and scored on a small dev split carved from
the training data outside the pool — and keep the best. Classification only: QA has no label a
linear probe could predict from one embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_write_bytes, sha256_file
from euds.experiment_report import markdown_table, svg_plot
from euds.provenance import open_text

log = logging.getLogger("euds")

METHODS = (
    "full",
    "random",
    "information",
    "generative",
    "semantic",
    "intersect",
    "mean-rank",
    "auto",
)
TUNE_METHODS = ("intersect", "mean-rank", "information", "generative", "semantic")
TUNE_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class ExperimentConfig:
    name: str
    task: str  # classification | qa
    pool: str
    eval: str
    output: str
    pool_size: int = 0  # 0: the whole training file
    eval_size: int = 0  # 0: the whole evaluation file
    dev_size: int = 500  # for the automatic interval, from outside the pool
    budgets: list[float] = field(default_factory=lambda: [0.1, 0.16, 0.3, 0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    finetune: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    sample_seed: int = 1234

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        try:
            import tomllib
        except ImportError:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        raw = tomllib.loads(Path(path).read_text())
        base = Path(path).resolve().parent
        for key in ("pool", "eval", "output"):
            if key in raw and not Path(raw[key]).is_absolute():
                raw[key] = str((base / raw[key]).resolve())
        config = cls(**raw)
        config.check()
        return config

    def check(self) -> None:
        if self.task not in ("classification", "qa"):
            raise ValueError(f"task must be classification or qa, got {self.task!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"budgets must lie in (0, 1], got {self.budgets}")


# -- data preparation ------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    # Unchanged files keep their mtime: the pool's scores are found again on a rerun.
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


def _squad_records(path: Path) -> list[dict[str, Any]]:
    from euds.finetune import read_squad

    return read_squad(path)


def _write_squad(path: Path, examples: list[dict[str, Any]]) -> None:
    """Questions back into SQuAD v1.1 JSON (one paragraph per context, in order)."""
    paragraphs: dict[str, dict[str, Any]] = {}
    for e in examples:
        p = paragraphs.setdefault(e["context"], {"context": e["context"], "qas": []})
        p["qas"].append({"id": e["id"], "question": e["question"], "answers": e["answers"]})
    data = {"version": "1.1", "data": [{"title": "euds", "paragraphs": list(paragraphs.values())}]}
    atomic_write_bytes(path, json.dumps(data).encode())


@dataclass
class Prepared:
    """The pool (records in order), the scoring input, the eval file and the dev split."""

    records: list[dict[str, Any]]
    scoring_input: Path
    eval_path: Path
    dev: list[dict[str, Any]]


def prepare_data(config: ExperimentConfig) -> Prepared:
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.sample_seed)
    if config.task == "classification":
        everything = read_jsonl(Path(config.pool))
    else:
        everything = _squad_records(Path(config.pool))
    order = rng.permutation(len(everything))
    n_pool = len(everything) if not config.pool_size else min(config.pool_size, len(everything))
    pool_idx = np.sort(order[:n_pool])
    rest = order[n_pool:]
    dev_idx = (
        np.sort(rest[: config.dev_size]) if config.task == "classification" else np.zeros(0, int)
    )
    records = [everything[i] for i in pool_idx]
    dev = [everything[i] for i in dev_idx]
    scoring_input = out / "pool.jsonl"
    if config.task == "classification":
        _write_jsonl(scoring_input, records)
        eval_records = read_jsonl(Path(config.eval))
        if config.eval_size and config.eval_size < len(eval_records):
            keep = np.sort(
                np.random.default_rng(config.sample_seed + 1).permutation(len(eval_records))[
                    : config.eval_size
                ]
            )
            eval_records = [eval_records[i] for i in keep]
        eval_path = out / "eval.jsonl"
        _write_jsonl(eval_path, eval_records)
    else:
        # What is scored for a question: the question, then its paragraph.
        _write_jsonl(
            scoring_input,
            [{"id": e["id"], "text": e["question"] + "\n" + e["context"]} for e in records],
        )
        eval_path = Path(config.eval)
    return Prepared(records, scoring_input, eval_path, dev)


# -- selection per method ----------------------------------------------------------------------


def choose(
    method: str, budget: float, scores, *, seed: int, tuned: dict[str, Any] | None = None
) -> np.ndarray:
    """The kept mask of the pool for one method at one budget."""
    from euds.select import select

    n = scores.num_rows
    if method == "full":
        return np.ones(n, dtype=bool)
    if method == "random":
        keep = np.zeros(n, dtype=bool)
        keep[np.random.default_rng(seed).choice(n, size=round(budget * n), replace=False)] = True
        return keep
    if method in ("information", "generative", "semantic"):
        return select(scores, signals=[method], budget=budget, on_nonfinite="drop").keep
    if method in ("intersect", "mean-rank"):
        return select(scores, method=method, budget=budget, on_nonfinite="drop").keep
    if method == "auto":
        if tuned is None:
            raise ValueError("the auto method needs a tuned choice")
        signals = (
            [tuned["method"]]
            if tuned["method"] in ("information", "generative", "semantic")
            else None
        )
        return select(
            scores,
            signals=signals,
            method=None if signals else tuned["method"],
            budget=budget,
            position=tuned["position"],
            on_nonfinite="drop",
        ).keep
    raise ValueError(f"unknown method {method!r}")


def tune(
    scores,
    embeddings: np.ndarray,
    labels: list[Any],
    dev_embeddings: np.ndarray,
    dev_labels: list[Any],
    budget: float,
) -> dict[str, Any]:
    """The automatic interval: the method and band position whose subset gives the best
    linear probe (logistic regression on embeddings) on the dev split."""
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    y = np.array([str(v) for v in labels])
    y_dev = np.array([str(v) for v in dev_labels])
    ok_dev = ~np.isnan(dev_embeddings).any(axis=1)
    trials = []
    for method in TUNE_METHODS:
        for position in TUNE_POSITIONS:
            keep = choose(
                "auto", budget, scores, seed=0, tuned={"method": method, "position": position}
            )
            keep &= ~np.isnan(embeddings).any(axis=1)
            if len(set(y[keep])) < 2:
                continue
            probe = LogisticRegression(max_iter=300, C=1.0)
            probe.fit(embeddings[keep], y[keep])
            accuracy = float(np.mean(probe.predict(dev_embeddings[ok_dev]) == y_dev[ok_dev]))
            trials.append({"method": method, "position": position, "dev_accuracy": accuracy})
    if not trials:
        raise ValueError("no candidate subset has two classes: the budget is too small")
    # Best probe; among equals prefer a centred band (the paper's default).
    best = max(trials, key=lambda t: (t["dev_accuracy"], -abs(t["position"] - 0.5)))
    return {**best, "budget": budget, "trials": trials, "seconds": time.perf_counter() - t0}


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


# -- running -------------------------------------------------------------------------------------


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    from euds.finetune import FinetuneConfig, finetune
    from euds.pipeline import ScoreConfig, score
    from euds.scores import ScoreDir, read_scores

    out = Path(config.output)
    data = prepare_data(config)
    scores_dir = out / "scores"
    t0 = time.perf_counter()
    score(data.scoring_input, scores_dir, ScoreConfig(**config.score), progress=False)
    score_seconds = time.perf_counter() - t0
    scores = read_scores(scores_dir)
    ft_base = {"task": config.task, **config.finetune}
    pool_hash = sha256_file(data.scoring_input)
    eval_hash = sha256_file(data.eval_path)

    tuned: dict[float, dict[str, Any]] = {}
    if "auto" in config.methods:
        if config.task != "classification":
            log.info("auto-interval is classification-only; skipped for %s", config.name)
        else:
            from euds.signals.semantic import Embedder

            sd = ScoreDir(scores_dir)
            emb = np.concatenate(
                [np.asarray(sd.embeddings(s), dtype=np.float32) for s in sd.shards()]
            )
            labels = [r["label"] for r in data.records]
            dev_emb = Embedder(config.score.get("embedder")).embed([r["text"] for r in data.dev])
            dev_labels = [r["label"] for r in data.dev]
            for budget in config.budgets:
                tuned[budget] = tune(scores, emb, labels, dev_emb, dev_labels, budget)
                log.info(
                    "auto-interval at %.0f%%: %s at position %.2f (dev probe %.3f, %.1f s)",
                    100 * budget,
                    tuned[budget]["method"],
                    tuned[budget]["position"],
                    tuned[budget]["dev_accuracy"],
                    tuned[budget]["seconds"],
                )

    # Seed by seed, so that a run cut short has every method at the first seeds.
    jobs = [
        (method, budget, seed)
        for seed in config.seeds
        for budget in [1.0, *config.budgets]
        for method in config.methods
        if (method == "full") == (budget == 1.0) and (method != "auto" or tuned)
    ]
    runs = []
    for method, budget, seed in jobs:
        keep = choose(method, budget, scores, seed=seed, tuned=tuned.get(budget))
        chosen = [r for r, k in zip(data.records, keep, strict=True) if k]
        ft = {**ft_base, "seed": seed}
        key = hashlib.sha256(
            json.dumps(
                {
                    "pool": pool_hash,
                    "eval": eval_hash,
                    "ids": hashlib.sha256(
                        "\n".join(str(r["id"]) for r in chosen).encode()
                    ).hexdigest(),
                    "finetune": ft,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        cached = out / "runs" / f"{key}.json"
        if cached.is_file():
            metrics = json.loads(cached.read_text())
        else:
            train_path = (
                out
                / "runs"
                / f"{key}.train{'.jsonl' if config.task == 'classification' else '.json'}"
            )
            train_path.parent.mkdir(parents=True, exist_ok=True)
            if config.task == "classification":
                _write_jsonl(train_path, chosen)
            else:
                _write_squad(train_path, chosen)
            log.info(
                "fine-tune %s %s %.0f%% seed %d (%d records)",
                config.name,
                method,
                100 * budget,
                seed,
                len(chosen),
            )
            metrics = finetune(train_path, data.eval_path, FinetuneConfig(**ft), output=cached)
            train_path.unlink(missing_ok=True)
        runs.append(
            {
                "method": method,
                "budget": budget,
                "seed": seed,
                "records": len(chosen),
                **_headline(metrics),
            }
        )
    summary = {
        "name": config.name,
        "task": config.task,
        "pool": len(data.records),
        "methods": [m for m in METHODS if m in config.methods],
        "score_seconds": score_seconds,
        "tuned": {
            str(k): {kk: vv for kk, vv in v.items() if kk != "trials"} for k, v in tuned.items()
        },
        "runs": runs,
    }
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    (out / "results.md").write_text(markdown_table(summary))
    (out / "plot.svg").write_text(svg_plot(summary))
    return summary


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1") if "accuracy" in metrics else ("exact_match", "f1")
    return {k: metrics[k] for k in keys} | {"wall_seconds": metrics.get("wall_seconds")}
