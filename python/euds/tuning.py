"""The automatic interval (``euds tune``): given a small labelled dev set, choose where the band
sits at a budget by a cheap proxy, a linear probe on the embeddings the semantic signal already
stored.

:data:`TUNE_GRID` holds 5 methods x 5 band positions. Each candidate subset of the pool is fitted
by :class:`Probe` (logistic regression on the frozen embeddings of the kept records) and scored
on the dev set; the best wins, and among equals the band nearest the centre (the paper's
default). A subset with fewer than two classes cannot be fitted and is left out. The research
harness (:mod:`euds.research`) measures the subsets with the same :class:`Probe`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TUNE_METHODS = ("intersect", "mean-rank", "information", "generative", "semantic")
TUNE_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_GRID = [(m, p) for m in TUNE_METHODS for p in TUNE_POSITIONS]
ALL = ("information", "generative", "semantic")


@dataclass
class Probe:
    """Logistic regression on frozen embeddings; ``score`` gives accuracy on dev and eval.
    Rows with a NaN embedding (records without text) take no part in fitting."""

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
        """(dev accuracy, eval accuracy); NaN for a subset with fewer than two classes."""
        model = self.fit(x, y)
        if model is None:
            return float("nan"), float("nan")
        return (
            float(np.mean(model.predict(self.dev_x) == self.dev_y)),
            float(np.mean(model.predict(self.eval_x) == self.eval_y))
            if len(self.eval_y)
            else float("nan"),
        )


def tuned_choice(
    columns: dict[str, Any], method: str, position: float, budget: float, seed: int
) -> np.ndarray:
    """The kept mask of one grid point."""
    from euds.selection import select

    signals = [method] if method in ALL else [s for s in ALL if s in columns]
    return select(
        columns,
        signals=signals,
        method=None if len(signals) == 1 else method,  # type: ignore[arg-type]
        budget=budget,
        position=position,
        seed=seed,
        on_nonfinite="drop",
    ).keep


def tune(
    scores: Any,
    embeddings: np.ndarray,
    labels: Any,
    dev_embeddings: np.ndarray,
    dev_labels: Any,
    budget: float,
    seed: int = 0,
) -> dict[str, Any]:
    """The method and band position of :data:`TUNE_GRID` whose subset gives the best linear
    probe on the dev split; ``trials`` lists every grid point that could be fitted."""
    from euds.selection.columns import columns_of

    t0 = time.perf_counter()
    columns = columns_of(scores)
    y = np.array([str(v) for v in labels])
    if len(y) != len(embeddings):
        raise ValueError(f"{len(y)} labels for {len(embeddings)} embeddings")
    ok_dev = ~np.isnan(dev_embeddings).any(axis=1)
    dev_y = np.array([str(v) for v in dev_labels])[ok_dev]
    probe = Probe(dev_embeddings[ok_dev], dev_y, dev_embeddings[:0], dev_y[:0])
    trials = []
    for method, position in TUNE_GRID:
        keep = tuned_choice(columns, method, position, budget, seed)
        accuracy, _ = probe.score(embeddings[keep], y[keep])
        if not np.isnan(accuracy):
            trials.append({"method": method, "position": position, "dev_accuracy": accuracy})
    if not trials:
        raise ValueError("no candidate subset has two classes: the budget is too small")
    best = max(trials, key=lambda t: (t["dev_accuracy"], -abs(t["position"] - 0.5)))
    return {**best, "budget": budget, "trials": trials, "seconds": time.perf_counter() - t0}


def tune_score_dir(
    scores_dir: str | os.PathLike[str],
    pool_path: str | os.PathLike[str],
    dev_path: str | os.PathLike[str],
    budget: float,
    label_field: str = "label",
) -> dict[str, Any]:
    """:func:`tune` on a score directory of the pool (its stored embeddings; the pool's labels
    read by the reader that scored it) and a labelled dev split (embedded with the directory's
    embedder): ``euds tune``."""
    from euds.cache import sha256_file
    from euds.io import read_field, read_texts
    from euds.scores import ScoreDir
    from euds.signals.semantic import Embedder

    sd = ScoreDir(Path(scores_dir))
    manifest = sd.manifest()
    config = manifest.get("config", {})
    if manifest.get("status") != "complete":
        raise ValueError(f"{scores_dir} is not complete: run `euds score` again to finish it")
    sd.check_intact(manifest)
    recorded = manifest.get("input", {}).get("sha256")
    if recorded != sha256_file(pool_path):  # the labels must be those of the scored records
        raise ValueError(
            f"{pool_path} is not the input {scores_dir} scored (its sha256 differs): give the "
            "scored file as --pool"
        )
    embeddings = sd.embedding_matrix()
    labels = read_field(pool_path, label_field, format=config.get("format"))
    if len(labels) != len(embeddings):
        raise ValueError(
            f"{scores_dir} scored {len(embeddings)} records, {pool_path} has {len(labels)}"
        )
    dev_labels = read_field(dev_path, label_field)
    dev_texts = read_texts(dev_path, text_field=config.get("text_field", "text"), id_field=None)
    dev_embeddings = Embedder(
        config.get("embedder"),
        pooling=config.get("pooling", "core"),
        precision=config.get("embed_precision", "fp32"),
    ).embed(dev_texts)
    known = np.array([v is not None for v in labels])
    if not known.all():
        raise ValueError(
            f"{pool_path}: {int((~known).sum())} records have no {label_field!r}; tune needs a "
            "labelled pool"
        )
    return tune(sd.read(), embeddings, labels, dev_embeddings, dev_labels, budget)


__all__ = ["TUNE_GRID", "Probe", "tune", "tune_score_dir", "tuned_choice"]
