"""The local engine: the scoring pass in this process, with threads (the default engine).

The pass streams the input in batches through :func:`euds.batch.score_record_batch` and writes
a shard every ``shard_size`` records, listing it in the manifest as it completes; a resumed
pass skips the records of the complete shards (JSONL lines are not even parsed). Shard
boundaries and batch composition follow from the configuration, so a resumed run ends with
the scores of an uninterrupted one. Memory stays flat: only the current batch and shard are
held, plus the ids seen so far (for the duplicate-id check).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from euds.batch import Models, concat_csr, pass_schema, score_record_batch, timed_iter
from euds.config import ScoreConfig
from euds.engines.driver import Pass
from euds.io import RecordReader
from euds.tokenizer import TokenBatch


class LocalEngine:
    """Scores in this process: one pass, batch after batch (see the module docstring)."""

    marks_duplicate_ids = True  # the reader sees every id in order

    def check(self, input_path: Path, config: ScoreConfig) -> None:
        return None

    def describe(self) -> dict[str, Any] | None:
        return None

    def map_shards(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [fn(*a) for a in args]

    def write_kept(self, input_path: Path, out_path: Path, keep: np.ndarray, **how: Any) -> int:
        from euds.output import write_selected

        return write_selected(input_path, out_path, keep, **how)

    def run_pass(self, job: Pass) -> str | None:
        run, config, done = job.run, job.config, job.done
        if [s.index for s in done] != list(range(len(done))):
            raise ValueError(
                f"{run.sd.path} holds shards {[s.index for s in done]} of a run on another "
                "engine: resume it with that engine, or pass --overwrite to score it again"
            )
        start_row = sum(s.rows for s in done)
        run.manifest["writing"] = [len(done)]
        run.write()
        reader = RecordReader(
            job.input_path,
            text_field=config.text_field,
            id_field=config.id_field,
            format=config.format,
            batch_size=config.batch_size,
            strict=config.strict,
            skip=start_row,
        )
        for shard in done:
            reader.seed_ids(run.sd.read_part(shard, ["id"]).column("id").to_pylist())
        models = Models(config)
        run.manifest.setdefault("models", models.identity)
        bar = _Progress(reader, enabled=job.progress)
        try:
            _run_pass(reader, models, job, start_row, bar)
        finally:
            bar.close()
        job.records = start_row + reader.stats.records
        return reader.sha256  # of every byte the pass read: the whole file


def _run_pass(
    reader: RecordReader, models: Models, job: Pass, start_row: int, bar: _Progress
) -> None:
    import pyarrow as pa

    run, config, stages, summary = job.run, job.config, job.stages, job.summary
    sd, manifest = run.sd, run.manifest
    next_index = len(job.done)
    schema = pass_schema(config.signals, config.information_mode)
    buffer: list[pa.RecordBatch] = []
    emb_buffer: list[np.ndarray] = []
    ids_buffer: list[TokenBatch] = []
    shard_start = start_row
    corpus = models.information is not None and models.information.needs_counts

    def flush() -> None:
        nonlocal buffer, emb_buffer, ids_buffer, shard_start, next_index
        if not buffer:
            return
        table = pa.Table.from_batches(buffer, schema=schema)
        embeddings = np.concatenate(emb_buffer) if emb_buffer else None
        token_ids = concat_csr(ids_buffer) if corpus else None
        info = stages.run(
            "write", sd.write_shard, next_index, shard_start, table, embeddings, token_ids
        )
        manifest["shards"].append(asdict(info))
        manifest["writing"] = [next_index + 1]  # the only shard this run may leave unlisted
        run.write()
        shard_start += table.num_rows
        next_index += 1
        buffer, emb_buffer, ids_buffer = [], [], []

    for records in timed_iter(reader, stages, "read"):
        batch, embeddings, tokens = score_record_batch(models, records, schema, stages)
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


__all__ = ["LocalEngine"]
