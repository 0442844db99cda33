"""The one scoring driver: *what* happens in a scoring run, whatever the engine.

``score(INPUT, SCORES_DIR, config, engine)`` checks the configuration, opens the score directory
(:func:`euds.scores.open_for_scoring`: reuse, resume or replace it, under its lock), asks the
engine for the scoring pass over the shards not yet complete, marks repeated ids, computes the
columns that need the whole pool (semantic entropy, corpus-mode information entropy) with the
engine's ``map_shards`` for the per-shard part, checks that the input did not change, and
completes the manifest. An engine (:mod:`euds.engines.local`, :mod:`euds.engines.ray`) decides
only *where* the work runs; this module imports none of them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from euds._core import EudsError
from euds.batch import Stages, pass_schema
from euds.cache import sha256_file, sha256_file_cached
from euds.config import CLUSTERING, ScoreConfig
from euds.provenance import now_iso
from euds.scores import (
    CENTROIDS,
    LATE,
    ScoreDir,
    ScoreRun,
    ShardInfo,
    embedding_name,
    input_identity,
    open_for_scoring,
)

log = logging.getLogger("euds")


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


@dataclass
class Pass:
    """What an engine's scoring pass gets: the input, the open score directory, the
    configuration, the complete shards it keeps, and where to count time and records."""

    input_path: Path
    run: ScoreRun
    config: ScoreConfig
    done: list[ShardInfo]
    stages: Stages
    summary: ScoreSummary
    progress: bool
    records: int | None = None  # set by the engine's pass: every record of the input


class Engine(Protocol):
    """Where a scoring run's work happens."""

    # True when the pass itself flags every repeated id (it sees the ids in order);
    # otherwise the driver marks them after the pass (:func:`mark_duplicates`).
    marks_duplicate_ids: bool

    def check(self, input_path: Path, config: ScoreConfig) -> None:
        """Refuses what this engine cannot do (before the score directory is touched)."""

    def describe(self) -> dict[str, Any] | None:
        """What the manifest says of the engine (None: nothing, the local default)."""

    def run_pass(self, job: Pass) -> str | None:
        """Scores every shard not in ``job.done`` and lists it in the manifest (as it
        completes, claiming in ``writing`` what it may leave unlisted if killed), and sets
        ``job.records`` to the number of records of the input; returns the input's sha256 when
        the pass read every byte of it, else None."""

    def map_shards(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*a) for a in args]``, wherever the engine runs work."""

    def write_kept(
        self,
        input_path: Path,
        out_path: Path,
        keep: np.ndarray,
        *,
        format: str | None,
        gzip_output: bool,
        sha256: str | None,
        read_back: Any,
    ) -> int:
        """Writes the records of ``input_path`` with ``keep[row]`` to ``out_path`` in the
        input's format, as :func:`euds.output.write_selected` does (its checks included), and
        returns how many."""


def score_identity(input_path: Path, config: ScoreConfig) -> dict[str, Any]:
    """What a score directory must match to be reused or resumed, through JSON as the
    manifest stores it (tuples become lists)."""
    # The pass columns are checked against the shards, not compared as configuration: a
    # directory scored before a column existed is refused, or re-scored with --overwrite.
    columns = [f.name for f in pass_schema(config.signals, config.information_mode)]
    return json.loads(
        json.dumps(
            {"input": input_identity(input_path), "config": config.identity(), "columns": columns}
        )
    )


def score(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ScoreConfig | None,
    engine: Engine,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> ScoreSummary:
    """Scores every record of ``input_path`` into the score directory ``output_dir`` on
    ``engine``: reuses a complete directory made with the same input and configuration, resumes
    an incomplete one, and refuses one made otherwise unless ``overwrite``."""
    config = config or ScoreConfig()
    config.check()
    input_path = Path(input_path)
    if not input_path.is_file():
        raise ValueError(f"input file not found: {input_path}")
    _check_places(input_path, Path(output_dir))
    engine.check(input_path, config)
    t_start = time.perf_counter()
    identity = score_identity(input_path, config)
    with open_for_scoring(
        Path(output_dir), identity, overwrite=overwrite, reclusterable=CLUSTERING
    ) as run:
        summary = ScoreSummary(output=str(run.sd.path))
        stages = Stages(summary.stage_seconds)
        if run.manifest.get("status") == "complete":
            log.info("%s already holds these scores: nothing to do", run.sd.path)
            summary.reused = True
        else:
            _complete(Pass(input_path, run, config, [], stages, summary, progress), engine)
        summary.seconds = time.perf_counter() - t_start
        fill_counts(summary, run.sd)
        return summary


def _check_places(input_path: Path, output_dir: Path) -> None:
    """The input is never a file of the score directory, which is never inside another one
    (compared by file identity, links and mounts included)."""
    from euds.output import identity, is_score_directory

    mine = identity(input_path)
    if output_dir.is_dir() and any(identity(p) == mine for p in output_dir.iterdir()):
        raise ValueError(
            f"the input {input_path} is a file of the score directory {output_dir}: choose "
            "another output folder"
        )
    for ancestor in output_dir.resolve().parents:
        if is_score_directory(ancestor):
            raise ValueError(
                f"{output_dir} is inside the score directory {ancestor}, whose files euds keeps "
                "to itself: choose another output folder"
            )


def _complete(job: Pass, engine: Engine) -> None:
    input_path, run, config, stages, summary = (
        job.input_path,
        job.run,
        job.config,
        job.stages,
        job.summary,
    )
    sd, manifest = run.sd, run.manifest
    described = engine.describe()
    if described is not None:
        manifest["engine"] = described
    # Every listed shard was checked intact when the directory was opened; only what an
    # interrupted run claimed and did not finish is removed.
    job.done = done = sd.shards()
    sd.remove(sd.leftovers(manifest))
    summary.resumed_from = sum(s.rows for s in done)
    if summary.resumed_from:
        log.info(
            "resuming %s after %d records (%d complete shards)",
            sd.path,
            summary.resumed_from,
            len(done),
        )
    input_sha256 = None
    if not manifest.get("pass_complete"):  # else only the clustering parameters changed
        input_sha256 = engine.run_pass(job)
        shards = sd.shards()
        indices = [s.index for s in shards]
        if indices != list(range(len(shards))):
            raise EudsError(f"the pass left shards {indices}: not one run of 0..{len(shards) - 1}")
        manifest["writing"] = []
        if not engine.marks_duplicate_ids:
            stages.run("duplicates", mark_duplicates, run, shards)
        manifest["pass_complete"] = True  # once the duplicates are marked
        run.write()
    late_columns(run, config, stages, engine)
    check_rows(sd, manifest, job.records)
    check_input_unchanged(input_path, run)
    manifest["status"] = "complete"
    manifest["input"]["sha256"] = input_sha256 or stages.run("checksum", sha256_file, input_path)
    manifest["finished"] = now_iso()
    run.write()


def check_rows(sd: ScoreDir, manifest: dict[str, Any], records: int | None) -> None:
    """Before a directory is marked complete: its shards hold one row per input record (the
    count the pass read, when it ran), every shard file as many rows as the shard, and the late
    columns as many as the shards together."""
    import pyarrow.parquet as pq

    from euds.scores import LATE, part_name

    shards = sd.shards()
    total = sum(s.rows for s in shards)
    if records is not None and total != records:
        raise EudsError(f"{sd.path}: the shards hold {total} rows but the input has {records}")
    for shard in shards:
        part = pq.ParquetFile(sd.path / part_name(shard.index)).metadata.num_rows
        emb = embedding_name(shard.index)
        rows = [part] + ([len(np.load(sd.path / emb, mmap_mode="r"))] if emb in shard.files else [])
        if any(r != shard.rows for r in rows):
            raise EudsError(f"{sd.path}: shard {shard.index} has {rows} rows, not {shard.rows}")
    if (sd.path / LATE).is_file() and "late_files" in manifest:
        late = pq.ParquetFile(sd.path / LATE).metadata.num_rows
        if late != total:
            raise EudsError(f"{sd.path / LATE} has {late} rows, the shards {total}")


def check_input_unchanged(input_path: Path, run: ScoreRun) -> None:
    """Refuses to complete scores of an input that changed while it was scored."""
    now = input_identity(input_path)
    recorded = run.manifest["input"]
    if (now["size"], now["mtime_ns"]) != (recorded["size"], recorded["mtime_ns"]):
        raise EudsError(
            f"{input_path} changed while it was being scored; score it again (the scores "
            "of the records read so far are kept and resumed only if the input is restored)"
        )


# -- after the pass ----------------------------------------------------------------------------


def mark_duplicates(run: ScoreRun, shards: list[ShardInfo]) -> None:
    """Adds ``duplicate_id`` to every later occurrence of an id, as
    :class:`euds.records.RecordRules` does while reading, for an engine whose pass sees only part
    of the ids at a time. Rewrites only the shards it changes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from euds.records import flag_order
    from euds.scores import part_name

    sd, manifest = run.sd, run.manifest
    seen: set[str] = set()
    for shard in shards:
        columns = sd.read_part(shard, ["id", "flags"])  # the whole part only when it changes
        ids = columns.column("id").to_pylist()
        flags = columns.column("flags").to_pylist()
        hit = False
        for k, rid in enumerate(ids):
            if rid in seen:
                parts = [f for f in flags[k].split("|") if f]
                if "duplicate_id" not in parts:
                    flags[k] = "|".join(sorted([*parts, "duplicate_id"], key=flag_order))
                    hit = True
            else:
                seen.add(rid)
        if hit:
            # Claimed first: killed between the rename and the manifest, the new part must not
            # read as damage (ScoreDir.damage checks a claimed part by its rows).
            manifest["rewriting"] = shard.index
            run.write()
            table = sd.read_part(shard)
            table = table.set_column(
                table.column_names.index("flags"), "flags", pa.array(flags, pa.string())
            )
            name = part_name(shard.index)
            with sd.atomic(name) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            for entry in manifest["shards"]:
                if entry["index"] == shard.index:
                    entry["files"][name] = (sd.path / name).stat().st_size
                    entry.setdefault("sha256", {})[name] = sha256_file_cached(sd.path / name)
            manifest.pop("rewriting", None)
            run.write()


def late_columns(run: ScoreRun, config: ScoreConfig, stages: Stages, engine: Engine) -> None:
    """Columns that need the whole pool: semantic entropy, corpus-mode information entropy."""
    sd = run.sd
    shards = sd.shards()
    late: dict[str, np.ndarray] = {}
    if "semantic" in config.signals:
        late["semantic"] = stages.run("cluster", _semantic_column, run, shards, config, engine)
    if "information" in config.signals and config.information_mode == "corpus":
        late["information"] = stages.run("information", _corpus_information, sd, shards)
    if late:
        run.manifest.setdefault("late_files", {})[LATE] = sd.write_late(late)


def _semantic_column(
    run: ScoreRun, shards: list[ShardInfo], config: ScoreConfig, engine: Engine
) -> np.ndarray:
    from euds.signals.semantic import fit_centroids

    sd = run.sd
    sample = embedding_sample(sd, shards, config.max_points_per_centroid * config.k, config.seed)
    if len(sample) < config.k:
        raise ValueError(
            f"semantic entropy with k={config.k} needs at least {config.k} texts with an "
            f"embedding; the input has {len(sample)}"
        )
    centroids = fit_centroids(
        sample, config.k, seed=config.seed, max_points_per_centroid=config.max_points_per_centroid
    )
    run.manifest.setdefault("late_files", {})[CENTROIDS] = sd.write_centroids(centroids)
    parts = engine.map_shards(
        assign_file,
        [
            (str(sd.path / embedding_name(s.index)), centroids, config.m, config.temperature)
            for s in shards
        ],
    )
    run.manifest["semantic"] = semantic_record(config, len(sample))
    return np.concatenate(parts) if parts else np.zeros(0)


def assign_file(path: str, centroids: np.ndarray, m: int | None, temperature: float) -> np.ndarray:
    """Semantic entropy of the embeddings stored in ``path`` (one shard's)."""
    from euds.signals.semantic import assign

    return assign(np.load(path, mmap_mode="r"), centroids, m, temperature)


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


def embedding_sample(sd: ScoreDir, shards: list[ShardInfo], limit: int, seed: int) -> np.ndarray:
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


def _corpus_information(sd: ScoreDir, shards: list[ShardInfo]) -> np.ndarray:
    from euds import _core

    counts = _core.UnigramCounts()
    for shard in shards:
        counts.add(*sd.token_ids(shard))
    out = [counts.self_information(*sd.token_ids(shard)) for shard in shards]
    return np.concatenate(out) if out else np.zeros(0)


def fill_counts(summary: ScoreSummary, sd: ScoreDir) -> None:
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


__all__ = [
    "Engine",
    "Pass",
    "ScoreSummary",
    "late_columns",
    "mark_duplicates",
    "score",
    "score_identity",
]
