"""The embedding API: score texts inside your own preprocessing pipeline.

:class:`Scorer` loads the tokenizer and models once and scores batches of texts as they come
(an iterable of strings, Arrow tables, or a Hugging Face ``datasets.Dataset`` through
``map(batched=True)``). Semantic entropy needs the pool's centroids: pass those of an earlier
``euds score`` run (``SCORES_DIR/centroids.npy``) or fit them once with :meth:`Scorer.fit_semantic`
on a sample of your data. Information entropy is the per-sample variant here (the corpus
variant needs the whole pool first; use ``euds score``).

Scores come back as a dict of float64 arrays (plus ``n_tokens``, ``truncated`` and ``flags``),
in the order of the texts given; missing, empty or whitespace-only texts give NaN.

:func:`score_dataset` and :func:`select_dataset` are the one-call forms for a Hugging Face
dataset (``num_proc`` included: each worker process builds its own copy of the scorer).
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from euds.batch import Models, Stages, pass_schema, score_record_batch
from euds.config import ScoreConfig, SelectConfig
from euds.records import RecordBatch, RecordRules
from euds.scores import CENTROIDS, COLUMN_ORDER
from euds.selection import (
    NEAR_KEYS,
    SELECTABLE,
    TEXT_HASH,
    near_key_matrix,
    select,
    uses_default,
)
from euds.signals import SIGNALS
from euds.signals.semantic import assign

__all__ = ["Scorer", "score_dataset", "select_dataset"]

# The columns scoring adds (those of a score directory but the id).
SCORE_COLUMNS = tuple(c for c in COLUMN_ORDER if c != "id")


class Scorer:
    """Models loaded once; ``score_texts`` / ``score_batches`` / ``score_table`` per batch."""

    def __init__(
        self,
        signals: Sequence[str] = SIGNALS,
        *,
        config: ScoreConfig | None = None,
        centroids: np.ndarray | str | os.PathLike[str] | None = None,
    ) -> None:
        config = config or ScoreConfig()
        config.signals = tuple(signals)
        config.information_mode = "sample"
        config.check()
        self.config = config
        self.signals = config.signals
        models = Models(config)
        self._models = models
        self._schema = pass_schema(config.signals, config.information_mode)
        self.tokenizer = models.tokenizer
        self.information = models.information
        self.generative = models.generative
        self.embedder = models.embedder
        self.centroids: np.ndarray | None = None
        if self.embedder is not None and centroids is not None:
            self.set_centroids(centroids)

    # -- semantic centroids ----------------------------------------------------------------------

    def set_centroids(self, centroids: np.ndarray | str | os.PathLike[str]) -> None:
        """Centroids ``[K, 384]`` (or a path to a ``centroids.npy`` / score directory)."""
        if not isinstance(centroids, np.ndarray):
            path = Path(centroids)
            centroids = np.load(path / CENTROIDS if path.is_dir() else path)
        c = np.ascontiguousarray(centroids, dtype=np.float32)
        if c.ndim != 2 or (self.embedder is not None and c.shape[1] != self.embedder.dim):
            raise ValueError(
                f"centroids must be [K, {getattr(self.embedder, 'dim', '?')}], got {c.shape}"
            )
        self.centroids = c

    def fit_semantic(self, texts: Iterable[str | None]) -> np.ndarray:
        """Fits the centroids on these texts (a representative sample of the pool)."""
        from euds.signals.semantic import fit_centroids

        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be an iterable of texts, not one string")
        if self.embedder is None:
            raise ValueError("this scorer does not compute the semantic signal")
        emb = self.embedder.embed(list(texts))
        self.centroids = fit_centroids(
            emb,
            self.config.k,
            seed=self.config.seed,
            max_points_per_centroid=self.config.max_points_per_centroid,
        )
        return self.centroids

    # -- scoring ---------------------------------------------------------------------------------

    def score_texts(self, texts: Sequence[str | None]) -> dict[str, np.ndarray]:
        """Scores one batch of texts; keys: the signals (``generative`` adds ``nll`` and
        ``bpb``, :mod:`euds.signals.generative`), plus
        ``n_tokens``, ``truncated``, ``flags`` (as a score directory's: ``missing_text``
        for None, ``non_string_text``, ``invalid_utf8``, ``empty_text``), ``text_hash``
        (equal for exact duplicates, so that a selection keeps one copy) and ``near_keys``
        (per text an array of uint64 MinHash band keys: texts sharing one are near
        duplicates; an object column, so that the result makes a ``pandas.DataFrame``)."""
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__"):
            raise ValueError(
                f"texts must be a sequence of texts (a list), not {type(texts).__name__}"
                + (": wrap one string in a list" if isinstance(texts, str) else "")
            )
        if self.embedder is not None and self.centroids is None:
            raise ValueError(
                "semantic entropy needs centroids: pass centroids= (e.g. an earlier score "
                "directory) or call fit_semantic() on a sample first"
            )
        # Each text read as a record of a file would be: one rule for flags everywhere.
        records = RecordBatch(start=0, ids=[], texts=[], flags=[])
        rules = RecordRules("<texts>", "text", None)
        for k, text in enumerate(texts):
            rules.add(records, k, f"text {k}", {"text": text})
        batch, embeddings, _ = score_record_batch(self._models, records, self._schema, Stages({}))
        columns = {name: batch.column(name) for name in batch.schema.names}
        out: dict[str, np.ndarray] = {}
        for name in ("information", "generative", "nll", "bpb"):
            if name in columns:
                out[name] = columns[name].to_numpy(zero_copy_only=False)
        if embeddings is not None:
            out["semantic"] = assign(
                embeddings, self.centroids, self.config.m, self.config.temperature
            )
        out["n_tokens"] = columns["n_tokens"].to_numpy(zero_copy_only=False)
        out["truncated"] = columns["truncated"].to_numpy(zero_copy_only=False)
        out["flags"] = np.array(columns["flags"].to_pylist(), dtype=object)
        out["text_hash"] = np.array(columns["text_hash"].to_pylist(), dtype=object)
        keys = near_key_matrix(columns["near_keys"], len(records.texts))
        out["near_keys"] = np.empty(len(keys), dtype=object)
        for i, row in enumerate(keys):
            out["near_keys"][i] = row
        return out

    def score_batches(
        self, texts: Iterable[str | None], batch_size: int = 1024
    ) -> Iterator[dict[str, np.ndarray]]:
        """Scores any iterable of texts, yielding one result dict per ``batch_size`` texts."""
        if isinstance(texts, (str, bytes)):
            raise ValueError(
                "texts must be an iterable of texts, not one string: wrap it in a list"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        batch: list[str | None] = []
        for text in texts:
            batch.append(text)
            if len(batch) == batch_size:
                yield self.score_texts(batch)
                batch = []
        if batch:
            yield self.score_texts(batch)

    def score_table(self, table: Any, text_column: str = "text") -> Any:
        """A ``pyarrow.Table`` with the score columns appended."""
        import pyarrow as pa

        if text_column not in table.column_names:
            raise ValueError(f"no column {text_column!r}; columns: {table.column_names}")
        scores = self.score_texts(table.column(text_column).to_pylist())
        for name, values in scores.items():
            table = table.append_column(
                name, pa.array(values.tolist() if values.dtype == object else values)
            )
        return table

    def hf_map_function(
        self, text_column: str = "text"
    ) -> Callable[[dict[str, list]], dict[str, list]]:
        """A function for ``datasets.Dataset.map(fn, batched=True)`` adding the score columns
        (the one :func:`score_dataset` uses: picklable, so ``num_proc`` works too)."""
        return _DatasetScorer(self, text_column)


def worker_process_setup(signals: Sequence[str]) -> None:
    """Prepares a worker process (of ``datasets.map(num_proc=...)``, a datatrove executor...)
    to build its own :class:`Scorer`: FAISS, which the semantic signal calls, runs on one
    OpenMP thread there, because GNU OpenMP deadlocks in a ``fork()``ed child of a process
    that had used it (``fit_semantic`` does); the worker processes are the parallelism."""
    if "semantic" in signals:
        import faiss

        faiss.omp_set_num_threads(1)


# The scorer of each step or map function (by its token), per process: copies of one step carry
# the same token, so a worker loads the models once. Keyed by pid too: a fork()ed child must not
# use sessions whose threads the fork did not copy.
_PROCESS_SCORERS: dict[tuple[int, str], Scorer] = {}


def process_scorer(
    token: str,
    signals: Sequence[str],
    config: ScoreConfig,
    centroids: np.ndarray | None,
    *,
    worker: bool,
) -> Scorer:
    """The :class:`Scorer` that ``token`` names in this process, built on first use;
    ``worker``: a worker process (:func:`worker_process_setup` runs first)."""
    key = (os.getpid(), token)
    scorer = _PROCESS_SCORERS.get(key)
    if scorer is None:
        if worker:
            worker_process_setup(signals)
        scorer = Scorer(signals, config=copy.deepcopy(config))
        if centroids is not None:
            scorer.set_centroids(centroids)
        _PROCESS_SCORERS[key] = scorer
    return scorer


class _DatasetScorer:
    """The map function of :func:`score_dataset`: picklable, unlike the ONNX Runtime sessions
    of a :class:`Scorer`. In this process it uses the scorer it was given; unpickled in a
    worker process (``num_proc``) it builds a copy from the scorer's signals, configuration
    and centroids, once per process, rather than reuse sessions whose threads a ``fork()``
    did not copy."""

    def __init__(self, scorer: Scorer, text_column: str) -> None:
        self.token = uuid.uuid4().hex
        self.text_column = text_column
        self.signals = scorer.signals
        self.config = copy.deepcopy(scorer.config)
        self.centroids = scorer.centroids
        self.scorer: Scorer | None = scorer

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "scorer"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.scorer = None

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.text_column not in batch:
            raise ValueError(
                f"no column {self.text_column!r}; columns: {sorted(batch)}: pass text_column="
            )
        scorer = self.scorer or process_scorer(
            self.token, self.signals, self.config, self.centroids, worker=True
        )
        scores = scorer.score_texts(batch[self.text_column])
        return {name: values.tolist() for name, values in scores.items()}


def score_dataset(
    dataset: Any,
    scorer: Scorer,
    text_column: str = "text",
    batch_size: int = 1024,
    *,
    num_proc: int | None = None,
) -> Any:
    """Scores a Hugging Face ``datasets.Dataset`` through ``map(batched=True)``; returns the
    dataset with the score columns added (``load_from_cache_file=False``: models may change).
    ``num_proc``: worker processes, each loading its own copy of the models (worth it only
    when the dataset is much larger than what one loading costs, a few seconds)."""
    return dataset.map(
        _DatasetScorer(scorer, text_column),
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        load_from_cache_file=False,
        desc="euds scoring",
    )


def select_dataset(
    dataset: Any,
    scorer: Scorer,
    config: SelectConfig | None = None,
    *,
    text_column: str = "text",
    batch_size: int = 1024,
    num_proc: int | None = None,
    keep_scores: bool = True,
    return_selection: bool = False,
    **options: Any,
) -> Any:
    """Scores a Hugging Face ``datasets.Dataset`` (:func:`score_dataset`) and keeps the rows
    :func:`euds.selection.select` chooses: the same rules as ``euds select`` (exact budget, band
    position, ties broken by a seeded row hash, later copies of a text dropped, NaN scores
    never kept). ``config`` (or ``options``, its fields as keywords: ``budget=``,
    ``intervals=``, ``method=``, ``position=``, ``seed=`` ...) is a
    :class:`~euds.config.SelectConfig`; its ``stratify`` names a column of the dataset.
    Returns the kept rows in their input order, with the score columns unless
    ``keep_scores=False``; with ``return_selection=True``, also the
    :class:`~euds.selection.Selection` (``keep`` and ``reason`` for every row, ``counts``)."""
    if "scores" in options:
        raise ValueError("select_dataset scores the dataset itself: drop scores=")
    if config is None:
        config = SelectConfig(**options)
    elif options:
        raise ValueError(f"give config= or options, not both: {sorted(options)}")
    config.check()
    default = uses_default(
        config.method, config.signals, config.intervals, config.budget, config.position
    )
    if config.target is not None or config.method == "typical" or default:
        what = "the default selection (typicality)" if default else f"method {config.method!r}"
        raise ValueError(
            f"{what} needs stored embeddings or a target sample: name method= or signals= to "
            "select on the scores alone, or score the data into a score directory and use "
            "euds.select_file"
        )
    stratify = None
    if config.stratify is not None:
        if config.stratify not in dataset.column_names:
            raise ValueError(
                f"stratify={config.stratify!r} is not a column; columns: {dataset.column_names}"
            )
        stratify = dataset.select_columns([config.stratify]).to_dict()[config.stratify]
    scored = score_dataset(dataset, scorer, text_column, batch_size, num_proc=num_proc)
    added = [c for c in SCORE_COLUMNS if c in scored.column_names]
    # Only the columns select() reads: the scores, text_hash, near_keys, and an id for its messages;
    # as Arrow, in row order (an indices mapping included).
    wanted = [c for c in (*SELECTABLE, TEXT_HASH, NEAR_KEYS) if c in added]
    if "id" in scored.column_names:
        wanted.append("id")
    columns = scored.select_columns(wanted).with_format("arrow")[:]
    texts = dataset[text_column] if config.needs_texts() else None
    selection = select(columns, stratify=stratify, texts=texts, **config.select_options())
    kept = scored.select(np.flatnonzero(selection.keep))
    if not keep_scores:
        kept = kept.remove_columns(added)
    return (kept, selection) if return_selection else kept
