"""Scoring a file: read in batches, tokenise once, score, write the score table (Parquet).

The score table holds one row per input record, in input order, with the columns of
DESIGN.md (``id, information, generative, nll, semantic, n_tokens, truncated, flags``; signals
not computed are absent). It lives apart from the data, so re-selecting never rescores. Its
Parquet metadata (key ``euds``) records the input's checksum and the scoring configuration.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from euds._version import __version__
from euds.cache import atomic_path, sha256_file
from euds.io import DEFAULT_BATCH_SIZE, RecordBatch, RecordReader
from euds.signals import SIGNALS
from euds.signals.information import InformationScorer
from euds.tokenizer import DEFAULT_MAX_TOKENS, TextTokenizer, TokenBatch

log = logging.getLogger("euds")

METADATA_KEY = b"euds"


@dataclass
class ScoreConfig:
    signals: tuple[str, ...] = ("information",)
    information_mode: str = "sample"
    max_tokens: int = DEFAULT_MAX_TOKENS
    text_field: str = "text"
    id_field: str | None = "id"
    batch_size: int = DEFAULT_BATCH_SIZE
    strict: bool = False
    format: str | None = None
    tokenizer: str | None = None  # a tokenizer.json path; None = SmolLM2 from the GGUF

    def check(self) -> None:
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals:
            raise ValueError(f"signals must be a non-empty subset of {SIGNALS}, got {self.signals}")
        available = ("information",)
        missing = [s for s in self.signals if s not in available]
        if missing:
            raise ValueError(f"signal(s) {missing} are not available yet; available: {available}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 2:
            raise ValueError(f"max_tokens must be an int >= 2, got {self.max_tokens!r}")


@dataclass
class ScoreSummary:
    output: str
    records: int
    flags: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    unscored: int = 0
    seconds: float = 0.0
    tokenize_seconds: float = 0.0

    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def score_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: ScoreConfig | None = None,
) -> ScoreSummary:
    """Scores every record of ``input_path`` and writes the score table to ``output_path``.

    The table is written under a temporary name and renamed when complete: an interrupted run
    never leaves a partial table behind.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = config or ScoreConfig()
    config.check()
    t_start = time.perf_counter()
    reader = RecordReader(
        input_path,
        text_field=config.text_field,
        id_field=config.id_field,
        format=config.format,
        batch_size=config.batch_size,
        strict=config.strict,
    )
    tokenizer = TextTokenizer(config.tokenizer, max_tokens=config.max_tokens)
    scorer = InformationScorer(config.information_mode, vocab_size=tokenizer.vocab_size)
    summary = ScoreSummary(output=str(output_path), records=0)
    schema = score_schema(config.signals)

    with tempfile.TemporaryDirectory(prefix="euds-score-") as tmp:
        tokenized = _tokenize(
            reader, tokenizer, Path(tmp), spill=scorer.needs_counts, summary=summary
        )
        if scorer.needs_counts:
            # Pass 1 counted the pool while spilling ids to disk; pass 2 scores from the spill.
            spill = list(tokenized)
            for _, tokens in spill:
                scorer.count(tokens.load())
            batches: Iterator[tuple[RecordBatch, Any]] = iter(spill)
        else:
            batches = tokenized
        metadata = {
            "euds_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": asdict(config),
            "tokenizer": {"path": str(tokenizer.path), "sha256": sha256_file(tokenizer.path)},
        }
        with atomic_path(output_path) as tmp_out:
            with pq.ParquetWriter(tmp_out, schema) as writer:
                for records, tokens in batches:
                    tb = tokens.load() if isinstance(tokens, _SpilledBatch) else tokens
                    info = scorer.score(tb)
                    flags = record_flags(records, tb)
                    summary.records += len(records)
                    summary.truncated += int(tb.truncated.sum())
                    summary.unscored += int(np.isnan(info).sum())
                    writer.write_batch(
                        pa.record_batch(
                            [
                                pa.array(records.ids, pa.string()),
                                pa.array(info, pa.float64()),
                                pa.array(tb.n_tokens, pa.int32()),
                                pa.array(tb.truncated, pa.bool_()),
                                pa.array(flags, pa.string()),
                            ],
                            schema=schema,
                        )
                    )
                metadata["input"] = {
                    "path": str(Path(input_path).resolve()),
                    "size": os.path.getsize(input_path),
                    "sha256": sha256_file(input_path),
                    "format": reader.format,
                    "gzip": reader.gzip,
                    "records": reader.stats.records,
                    "blank_lines": reader.stats.blank_lines,
                    "flags": reader.stats.flags,
                }
                if scorer.counts is not None:
                    metadata["information_counts_total"] = int(scorer.counts.total)
                writer.add_key_value_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    summary.flags = dict(reader.stats.flags)
    summary.seconds = time.perf_counter() - t_start
    return summary


def score_schema(signals: Sequence[str]):
    import pyarrow as pa

    fields = [pa.field("id", pa.string())]
    if "information" in signals:
        fields.append(pa.field("information", pa.float64()))
    fields += [
        pa.field("n_tokens", pa.int32()),
        pa.field("truncated", pa.bool_()),
        pa.field("flags", pa.string()),
    ]
    return pa.schema(fields)


def record_flags(records: RecordBatch, tokens: TokenBatch) -> list[str]:
    """The ``flags`` column: reader flags, plus ``empty_text`` for a present but empty or
    whitespace-only text; several flags are joined with ``|``."""
    out = []
    for flags, text, n in zip(records.flags, records.texts, tokens.n_tokens, strict=True):
        if text is not None and n == 0:
            flags = [*flags, "empty_text"]
        out.append("|".join(flags))
    return out


def read_score_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(
            f"{path} is not an euds score table (no '{METADATA_KEY.decode()}' metadata)"
        )
    return json.loads(meta[METADATA_KEY])


# -- tokenising, with an optional spill to disk for two-pass signals ------------------------


@dataclass
class _SpilledBatch:
    """A TokenBatch saved to .npy files, loaded back (memory-mapped) on demand."""

    folder: Path
    index: int

    @classmethod
    def save(cls, folder: Path, index: int, tb: TokenBatch) -> _SpilledBatch:
        for name in ("offsets", "ids", "n_tokens", "truncated"):
            np.save(folder / f"{index}.{name}.npy", getattr(tb, name))
        return cls(folder, index)

    def load(self) -> TokenBatch:
        parts = {
            name: np.load(self.folder / f"{self.index}.{name}.npy", mmap_mode="r")
            for name in ("offsets", "ids", "n_tokens", "truncated")
        }
        return TokenBatch(
            offsets=np.ascontiguousarray(parts["offsets"]),
            ids=np.ascontiguousarray(parts["ids"]),
            n_tokens=np.ascontiguousarray(parts["n_tokens"]),
            truncated=np.ascontiguousarray(parts["truncated"]),
        )


def _tokenize(
    reader: RecordReader, tokenizer: TextTokenizer, tmp: Path, *, spill: bool, summary: ScoreSummary
) -> Iterator[tuple[RecordBatch, Any]]:
    for k, records in enumerate(reader):
        t0 = time.perf_counter()
        tokens = tokenizer.encode(records.texts)
        summary.tokenize_seconds += time.perf_counter() - t0
        if spill:
            # Only the ids are spilled; the record texts are dropped to keep memory flat.
            records = RecordBatch(
                records.start,
                records.ids,
                [None if t is None else "" for t in records.texts],
                records.flags,
            )
            yield records, _SpilledBatch.save(tmp, k, tokens)
        else:
            yield records, tokens
