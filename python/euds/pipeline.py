"""The one-pass scoring run: read once, tokenise once, score every signal, write score shards.

``score(INPUT, SCORES_DIR, config)`` streams the input in batches. Each batch is tokenised
once for the LM (information and generative entropy share the ids) and once for the embedder;
the scores of ``shard_size`` records are written as a shard (see :mod:`euds.scores`) together
with their float16 embeddings. After the pass, the semantic signal clusters the kept embeddings
(a seeded sample trains the centroids, every record is then assigned) without re-reading the
input; corpus-mode information entropy is likewise computed from the kept token ids.

Memory stays flat: only the current batch and shard are in memory, plus the ids seen so far
(for the duplicate-id check) and, after the pass, one float per record per late column.

Resume: the manifest lists complete shards only. Started again with the same command, a
killed run keeps those shards, skips their records in the input (JSONL lines are not even
parsed) and goes on; shard boundaries and batch composition are fixed by the configuration,
so the result is identical to an uninterrupted run. A score directory made with another
input or configuration is refused (or replaced with ``overwrite=True``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds._core import EudsError
from euds.cache import sha256_file
from euds.io import DEFAULT_BATCH_SIZE, RecordBatch, RecordReader, flag_order
from euds.scores import ScoreDir, ScoreRun, input_identity, now_iso, open_for_scoring
from euds.signals import SIGNALS
from euds.signals.generative import DEFAULT_BATCH_TOKENS, DEFAULT_PACK_LENGTH
from euds.signals.information import InformationScorer
from euds.signals.semantic import (
    DEFAULT_EMBED_BATCH_TOKENS,
    DEFAULT_K,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
)
from euds.tokenizer import DEFAULT_MAX_TOKENS, TextTokenizer, TokenBatch

log = logging.getLogger("euds")

DEFAULT_SHARD_SIZE = 4096
# Options that only change how fast or how loudly a run goes; every other option takes part
# in the identity of a score directory (a resumed run must use the same values).
_RUNTIME_ONLY = {"threads", "device"}
# Used only after the pass, on the kept embeddings: changing them re-clusters, never re-embeds.
CLUSTERING = frozenset({"k", "temperature", "m", "seed", "max_points_per_centroid"})


@dataclass
class ScoreConfig:
    """Everything that decides the scores (see ``euds score --help``)."""

    signals: tuple[str, ...] = SIGNALS
    # reading
    text_field: str = "text"
    id_field: str | None = "id"
    format: str | None = None
    strict: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    shard_size: int = DEFAULT_SHARD_SIZE
    # tokens
    max_tokens: int = DEFAULT_MAX_TOKENS
    tokenizer: str | None = None  # a tokenizer.json path; None = SmolLM2 from the GGUF
    # information
    information_mode: str = "sample"
    # generative
    model: str | None = None  # a prepared LM folder; None = the SmolLM2 cache entry
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    packing: bool = True
    pack_length: int = DEFAULT_PACK_LENGTH
    precision: str = "fp32"
    reduction: str = "kernel"
    device: str = "cpu"
    threads: int | None = None
    # semantic
    embedder: str | None = None  # a prepared embedder folder; None = the cache entry
    embed_batch_tokens: int = DEFAULT_EMBED_BATCH_TOKENS
    pooling: str = "core"
    embed_precision: str = "fp32"
    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE
    m: int | None = None
    seed: int = DEFAULT_SEED
    max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID

    def check(self) -> None:
        self.signals = tuple(self.signals)
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals or len(set(self.signals)) != len(self.signals):
            raise ValueError(f"signals must be distinct names from {SIGNALS}, got {self.signals}")
        for name in ("batch_size", "shard_size", "max_tokens", "k", "batch_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.shard_size % self.batch_size:
            raise ValueError(
                f"shard_size ({self.shard_size}) must be a multiple of batch_size "
                f"({self.batch_size}) so that shards hold whole batches"
            )
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in _RUNTIME_ONLY}


@dataclass
class ScoreSummary:
    output: str
    records: int = 0
    scored_now: int = 0  # records scored by this call (the rest came from an earlier run)
    resumed_from: int = 0
    reused: bool = False
    flags: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    unscored: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    tokens: int = 0

    def records_per_second(self) -> float:
        return self.scored_now / self.seconds if self.seconds > 0 else float("nan")


class _Stages:
    """Wall time per stage of the pass (where the time goes)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.seconds = into

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def score(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ScoreConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> ScoreSummary:
    """Scores every record of ``input_path`` into the score directory ``output_dir``.

    Reuses a complete directory made with the same input and configuration, resumes an
    incomplete one, and refuses one made otherwise unless ``overwrite`` (see
    :func:`euds.scores.open_for_scoring` for what is deleted, and when).
    """
    config = config or ScoreConfig()
    config.check()
    input_path = Path(input_path)
    if not input_path.is_file():
        raise ValueError(f"input file not found: {input_path}")
    identity = score_identity(input_path, config)
    t_start = time.perf_counter()
    with open_for_scoring(
        output_dir, identity, overwrite=overwrite, reclusterable=CLUSTERING
    ) as run:
        summary = ScoreSummary(output=str(run.sd.path))
        stages = _Stages(summary.stage_seconds)
        return _score(input_path, run, config, summary, stages, progress, t_start)


def score_identity(input_path: Path, config: ScoreConfig) -> dict[str, Any]:
    """What a score directory must match to be reused or resumed, through JSON as the
    manifest stores it (tuples become lists)."""
    return json.loads(
        json.dumps({"input": input_identity(input_path), "config": config.identity()})
    )


def check_input_unchanged(input_path: Path, run: ScoreRun) -> None:
    """Refuses to complete scores of an input that changed while it was scored."""
    now = input_identity(input_path)
    recorded = run.manifest["input"]
    if (now["size"], now["mtime_ns"]) != (recorded["size"], recorded["mtime_ns"]):
        raise EudsError(
            f"{input_path} changed while it was being scored; score it again (the scores "
            "of the records read so far are kept and resumed only if the input is restored)"
        )


def _score(
    input_path: Path,
    run: ScoreRun,
    config: ScoreConfig,
    summary: ScoreSummary,
    stages: _Stages,
    progress: bool,
    t_start: float,
) -> ScoreSummary:
    sd, manifest = run.sd, run.manifest
    if manifest.get("status") == "complete":
        log.info("%s already holds these scores: nothing to do", sd.path)
        summary.reused = True
        _fill_counts(summary, sd)
        return summary
    done = sd.verify_shards()
    start_row = sum(s.rows for s in done)
    sd.drop_stale(manifest, done)
    manifest["shards"] = [asdict(s) for s in done]
    manifest["writing"] = [len(done)]
    run.write()
    summary.resumed_from = start_row
    if start_row:
        log.info("resuming %s after %d records (%d complete shards)", sd.path, start_row, len(done))

    input_sha256 = None
    if not manifest.get("pass_complete", False):
        reader = RecordReader(
            input_path,
            text_field=config.text_field,
            id_field=config.id_field,
            format=config.format,
            batch_size=config.batch_size,
            strict=config.strict,
            skip=start_row,
        )
        for shard in done:
            reader.seed_ids(sd.read_part(shard, ["id"]).column("id").to_pylist())
        scorers = Models(config)
        manifest.setdefault("models", scorers.identity)
        bar = _Progress(reader, enabled=progress)
        try:
            _run_pass(reader, scorers, run, config, len(done), start_row, stages, bar, summary)
        finally:
            bar.close()
        input_sha256 = getattr(reader, "sha256", None)  # TODO(io): reader hashes as it reads
        manifest["pass_complete"] = True
        manifest["writing"] = []
        run.write()

    _late_columns(sd, manifest, config, stages)
    check_input_unchanged(input_path, run)
    manifest["status"] = "complete"
    manifest["input"]["sha256"] = input_sha256 or stages.run("checksum", sha256_file, input_path)
    manifest["finished"] = now_iso()
    run.write()
    summary.seconds = time.perf_counter() - t_start
    _fill_counts(summary, sd)
    return summary


# -- the pass ----------------------------------------------------------------------------------


class Models:
    """The tokenizer and models of a configuration, loaded once; shared by the local engine,
    the Ray actors and the embedding API. ``identity`` describes them for manifests."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        wants = set(config.signals)
        self.tokenizer = TextTokenizer(config.tokenizer, max_tokens=config.max_tokens)
        self.information = (
            InformationScorer(config.information_mode, vocab_size=self.tokenizer.vocab_size)
            if "information" in wants
            else None
        )
        self.identity: dict[str, Any] = {
            "tokenizer": {
                "path": str(self.tokenizer.path),
                "sha256": sha256_file(self.tokenizer.path),
            }
        }
        self.generative = None
        if "generative" in wants:
            from euds.signals.generative import GenerativeScorer

            self.generative = GenerativeScorer(
                config.model,
                batch_tokens=config.batch_tokens,
                packing=config.packing,
                pack_length=config.pack_length,
                precision=config.precision,  # type: ignore[arg-type]
                reduction=config.reduction,  # type: ignore[arg-type]
                device=config.device,  # type: ignore[arg-type]
                threads=config.threads,
            )
            lm_manifest = self.generative.files.manifest()
            self.identity["lm"] = {
                "graph": str(self.generative.graph),
                "source_sha256": lm_manifest.get("source", {}).get("sha256"),
                "graph_sha256": lm_manifest.get("files", {})
                .get(self.generative.graph.name, {})
                .get("sha256"),
            }
        self.embedder = None
        if "semantic" in wants:
            from euds.signals.semantic import Embedder

            self.embedder = Embedder(
                config.embedder,
                batch_tokens=config.embed_batch_tokens,
                pooling=config.pooling,  # type: ignore[arg-type]
                precision=config.embed_precision,
                threads=config.threads,
            )
            self.identity["embedder"] = {
                "folder": str(self.embedder.files.folder),
                "source_sha256": self.embedder.files.manifest().get("source", {}).get("sha256"),
            }


def _run_pass(
    reader: RecordReader,
    scorers: Models,
    run: ScoreRun,
    config: ScoreConfig,
    next_index: int,
    start_row: int,
    stages: _Stages,
    bar: _Progress,
    summary: ScoreSummary,
) -> None:
    import pyarrow as pa

    sd, manifest = run.sd, run.manifest
    schema = pass_schema(config.signals, config.information_mode)
    buffer: list[pa.RecordBatch] = []
    emb_buffer: list[np.ndarray] = []
    ids_buffer: list[TokenBatch] = []
    shard_start = start_row
    corpus = scorers.information is not None and scorers.information.needs_counts

    def flush() -> None:
        nonlocal buffer, emb_buffer, ids_buffer, shard_start, next_index
        if not buffer:
            return
        table = pa.Table.from_batches(buffer, schema=schema)
        embeddings = np.concatenate(emb_buffer) if emb_buffer else None
        token_ids = _concat_csr(ids_buffer) if corpus else None
        info = stages.run(
            "write", sd.write_shard, next_index, shard_start, table, embeddings, token_ids
        )
        manifest["shards"].append(asdict(info))
        manifest["writing"] = [next_index + 1]  # the only shard this run may leave unlisted
        run.write()
        shard_start += table.num_rows
        next_index += 1
        buffer, emb_buffer, ids_buffer = [], [], []

    for records in _timed_iter(reader, stages, "read"):
        batch, embeddings, tokens = score_record_batch(scorers, records, schema, stages)
        buffer.append(batch)
        if embeddings is not None:
            emb_buffer.append(embeddings)
        if corpus:
            ids_buffer.append(tokens)
        summary.scored_now += len(records)
        summary.tokens += int(tokens.offsets[-1])
        bar.update(len(records), int(tokens.offsets[-1]))
        if sum(b.num_rows for b in buffer) >= config.shard_size:
            flush()
    flush()
    if reader.stats.records == 0 and start_row == 0:
        raise ValueError(f"{reader.path} holds no records")


def score_record_batch(models: Models, records, schema, stages: _Stages):
    """One batch of records through every signal of the pass -> (Arrow record batch of the
    pass columns, embeddings or None, tokens): the per-batch work of the local engine and of
    the Ray actors alike, so that both give the same numbers."""
    import pyarrow as pa

    tokens = stages.run("tokenize", models.tokenizer.encode, records.texts)
    columns: dict[str, Any] = {"id": pa.array(records.ids, pa.string())}
    if models.information is not None and not models.information.needs_counts:
        columns["information"] = pa.array(
            stages.run("information", models.information.score, tokens)
        )
    if models.generative is not None:
        ge, nll = stages.run("generative", models.generative.score, tokens)
        columns["generative"] = pa.array(ge, pa.float64())
        columns["nll"] = pa.array(nll, pa.float64())
    embeddings = (
        stages.run("embed", models.embedder.embed, records.texts)
        if models.embedder is not None
        else None
    )
    columns["n_tokens"] = pa.array(tokens.n_tokens, pa.int32())
    columns["truncated"] = pa.array(tokens.truncated, pa.bool_())
    columns["flags"] = pa.array(record_flags(records, tokens), pa.string())
    return pa.record_batch([columns[f.name] for f in schema], schema=schema), embeddings, tokens


def _late_columns(
    sd: ScoreDir, manifest: dict[str, Any], config: ScoreConfig, stages: _Stages
) -> None:
    """Columns that need the whole pool: semantic entropy, corpus-mode information entropy."""
    shards = sd.shards()
    late: dict[str, np.ndarray] = {}
    if "semantic" in config.signals:
        late["semantic"] = stages.run("cluster", _semantic_column, sd, shards, config, manifest)
    if "information" in config.signals and config.information_mode == "corpus":
        late["information"] = stages.run("information", _corpus_information, sd, shards)
    if late:
        sd.write_late(late)


def _semantic_column(
    sd: ScoreDir, shards, config: ScoreConfig, manifest: dict[str, Any]
) -> np.ndarray:
    from euds.signals.semantic import fit_centroids, semantic_entropy, top_similarities

    sample = _embedding_sample(sd, shards, config.max_points_per_centroid * config.k, config.seed)
    if len(sample) < config.k:
        raise ValueError(
            f"semantic entropy with k={config.k} needs at least {config.k} texts with an "
            f"embedding; the input has {len(sample)}"
        )
    centroids = fit_centroids(
        sample, config.k, seed=config.seed, max_points_per_centroid=config.max_points_per_centroid
    )
    sd.write_centroids(centroids)
    out = []
    for shard in shards:
        emb = np.asarray(sd.embeddings(shard), dtype=np.float32)
        out.append(semantic_entropy(top_similarities(emb, centroids, config.m), config.temperature))
    manifest["semantic"] = semantic_record(config, len(sample))
    return np.concatenate(out) if out else np.zeros(0)


def semantic_record(config: ScoreConfig, train_points: int) -> dict[str, Any]:
    """What the manifest says of the semantic signal's clustering."""
    return {
        "k": config.k,
        "m": config.m or min(config.k, 32),
        "temperature": config.temperature,
        "seed": config.seed,
        "train_points": train_points,
        "rule": "uniform sample without replacement, at most max_points_per_centroid * k points",
    }


def _embedding_sample(sd: ScoreDir, shards, limit: int, seed: int) -> np.ndarray:
    """A seeded uniform sample (without replacement) of at most ``limit`` non-NaN embeddings,
    read from the memory-mapped shards (the pool is never loaded whole)."""
    valid = []
    for shard in shards:
        emb = sd.embeddings(shard)
        valid.append(np.flatnonzero(~np.isnan(emb[:, 0])) + shard.start)
    rows = np.concatenate(valid) if valid else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = (
        np.sort(rng.choice(rows, size=min(limit, len(rows)), replace=False)) if len(rows) else rows
    )
    parts = []
    for shard in shards:
        local = chosen[(chosen >= shard.start) & (chosen < shard.start + shard.rows)] - shard.start
        if len(local):
            parts.append(np.asarray(sd.embeddings(shard)[local], dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def _corpus_information(sd: ScoreDir, shards) -> np.ndarray:
    from euds import _core

    counts = _core.UnigramCounts()
    for shard in shards:
        counts.add(*sd.token_ids(shard))
    out = [counts.self_information(*sd.token_ids(shard)) for shard in shards]
    return np.concatenate(out) if out else np.zeros(0)


def pass_schema(signals, information_mode: str = "sample"):
    """Columns of the shard parts (late columns are added by :meth:`ScoreDir.read`)."""
    import pyarrow as pa

    fields_ = [pa.field("id", pa.string())]
    if "information" in signals and information_mode == "sample":
        fields_.append(pa.field("information", pa.float64()))
    if "generative" in signals:
        fields_ += [pa.field("generative", pa.float64()), pa.field("nll", pa.float64())]
    fields_ += [
        pa.field("n_tokens", pa.int32()),
        pa.field("truncated", pa.bool_()),
        pa.field("flags", pa.string()),
    ]
    return pa.schema(fields_)


def record_flags(records: RecordBatch, tokens: TokenBatch) -> list[str]:
    """The ``flags`` column: reader flags, plus ``empty_text`` for a present but empty or
    whitespace-only text; several flags are joined with ``|``."""
    out = []
    for flags, text, n in zip(records.flags, records.texts, tokens.n_tokens, strict=True):
        if text is not None and n == 0:
            flags = [*flags, "empty_text"]
        out.append("|".join(sorted(flags, key=flag_order)))
    return out


# -- bookkeeping -------------------------------------------------------------------------------


def _fill_counts(summary: ScoreSummary, sd: ScoreDir) -> None:
    table = sd.read()
    summary.records = table.num_rows
    flags: dict[str, int] = {}
    for value in table.column("flags").to_pylist():
        for f in value.split("|") if value else ():
            flags[f] = flags.get(f, 0) + 1
    summary.flags = flags
    summary.truncated = int(np.asarray(table.column("truncated")).sum())
    for name in ("information", "generative", "semantic"):
        if name in table.column_names:
            summary.unscored[name] = int(
                np.isnan(np.asarray(table.column(name), dtype=float)).sum()
            )


def _concat_csr(batches: list[TokenBatch]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([b.ids for b in batches])
    lengths = np.concatenate([np.diff(b.offsets) for b in batches])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, ids


def _timed_iter(it, stages: _Stages, name: str) -> Iterator[Any]:
    iterator = iter(it)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            stages.seconds[name] = stages.seconds.get(name, 0.0) + time.perf_counter() - t0
        yield item


class _Progress:
    """Progress on stderr (tqdm): input consumed, records/s, tokens/s and the ETA."""

    def __init__(self, reader: RecordReader, *, enabled: bool) -> None:
        self.reader = reader
        self.bar = None
        self.records = 0
        self.tokens = 0
        self.t0 = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            unit = "rows" if reader.format == "parquet" else "B"
            self.bar = tqdm(
                total=reader.bytes_total,
                unit=unit,
                unit_scale=True,
                desc="scoring",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=1.0,
            )

    def update(self, records: int, tokens: int) -> None:
        self.records += records
        self.tokens += tokens
        if self.bar is None:
            return
        position = self.reader.bytes_read()
        self.bar.update(max(0, position - self.bar.n))
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(
            records=self.records,
            rec_s=f"{self.records / elapsed:.1f}",
            tok_s=f"{self.tokens / elapsed:.0f}",
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = [
    "Models",
    "ScoreConfig",
    "ScoreSummary",
    "pass_schema",
    "record_flags",
    "score",
    "score_record_batch",
]
