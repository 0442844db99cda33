"""The per-batch scorer, the same for every engine and for the embedding API.

:class:`Models` loads a configuration's tokenizer and models once; :func:`score_record_batch`
sends one batch of records through every signal of the pass and returns the pass columns
(:func:`pass_schema`) with the flags of :func:`record_flags` and the duplicate keys of
:mod:`euds.duplicates` (``text_hash``, ``near_keys``). The local
engine, the Ray actors
and :class:`euds.api.Scorer` all score through here, so they give the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from euds.cache import sha256_file
from euds.config import ScoreConfig
from euds.duplicates import NEAR_DUPLICATES, near_duplicate_keys, near_keys_array, text_hashes
from euds.records import RecordBatch, flag_order
from euds.signals.generative import bits_per_byte
from euds.signals.information import InformationScorer
from euds.tokenizer import TextTokenizer, TokenBatch


class Stages:
    """Wall time per stage of the pass (where the time goes)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.seconds = into

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


class Models:
    """The tokenizer and models of a configuration, loaded once; shared by the local engine,
    the Ray actors and the embedding API. ``identity`` describes them for manifests."""

    def __init__(self, config: ScoreConfig) -> None:
        self.config = config
        wants = set(config.signals)
        # The pass's tokenizer is the scoring LM's (the information signal counts the LM's
        # tokens) unless --tokenizer names another; a named one is loaded first, so that a
        # wrong path fails before any model is prepared.
        named = (
            TextTokenizer(config.tokenizer, max_tokens=config.max_tokens)
            if config.tokenizer is not None
            else None
        )
        lm = None
        if "generative" in wants or config.model is not None:
            from euds.models import lm_files_for

            lm = lm_files_for(config.model)
        self.tokenizer = named or TextTokenizer(
            str(lm.tokenizer) if config.model is not None and lm is not None else None,
            max_tokens=config.max_tokens,
        )
        tokenizer_sha = sha256_file(self.tokenizer.path)
        self.information = (
            InformationScorer(config.information_mode, vocab_size=self.tokenizer.vocab_size)
            if "information" in wants
            else None
        )
        self.identity: dict[str, Any] = {
            "tokenizer": {"path": str(self.tokenizer.path), "sha256": tokenizer_sha}
        }
        self.generative = None
        if "generative" in wants and lm is not None:
            from euds.signals.generative import GenerativeScorer

            if config.tokenizer is not None and tokenizer_sha != sha256_file(lm.tokenizer):
                raise ValueError(
                    f"--tokenizer {config.tokenizer} is not the scoring LM's tokenizer "
                    f"({lm.tokenizer}): the LM reads only its own tokens; drop --tokenizer, or "
                    "score the information signal alone with it"
                )
            limit = lm.max_positions
            if limit is not None and config.max_tokens > limit:
                raise ValueError(
                    f"max_tokens {config.max_tokens} exceeds the scoring LM's limit of {limit} "
                    "positions (its config.json)"
                )
            self.generative = GenerativeScorer(
                lm,
                batch_tokens=config.batch_tokens,
                packing=config.packing,
                pack_length=config.pack_length,
                precision=config.precision,  # type: ignore[arg-type]
                reduction=config.reduction,  # type: ignore[arg-type]
                device=config.device,  # type: ignore[arg-type]
                threads=config.threads,
            )
            lm_manifest = lm.manifest()
            source = lm_manifest.get("source", {})
            self.identity["lm"] = {
                "model": lm_manifest.get("model"),
                # as the caller named it; the entry may have been built from another copy
                "source": config.model or source.get("path"),
                "graph": str(self.generative.graph),
                "source_sha256": source.get("sha256"),
                "graph_sha256": lm_manifest.get("files", {})
                .get(self.generative.graph.name, {})
                .get("sha256"),
                "bos_id": self.generative.bos_id,
                "packing": self.generative.packing,
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
            embedder_manifest = self.embedder.files.manifest()
            self.identity["embedder"] = {
                "model": embedder_manifest.get("model"),
                "source": config.embedder or embedder_manifest.get("source", {}).get("path"),
                "folder": str(self.embedder.files.folder),
                "source_sha256": embedder_manifest.get("source", {}).get("sha256"),
                "pooling": self.embedder.mode,
                "max_seq_length": self.embedder.max_seq_length,
            }


def score_record_batch(models: Models, records, schema, stages: Stages):
    """One batch of records through every signal of the pass -> (Arrow record batch of the
    pass columns, embeddings or None, tokens): the per-batch work of the local engine and of
    the Ray actors alike, so that both give the same numbers."""
    import pyarrow as pa

    # Byte counts need the tokenizer's offsets (slower to track): only bpb uses them.
    count_bytes = models.generative is not None
    tokens = stages.run("tokenize", models.tokenizer.encode, records.texts, count_bytes)
    columns: dict[str, Any] = {"id": pa.array(records.ids, pa.string())}
    if models.information is not None and not models.information.needs_counts:
        columns["information"] = pa.array(
            stages.run("information", models.information.score, tokens)
        )
    if models.generative is not None:
        ge, nll = stages.run("generative", models.generative.score, tokens)
        columns["generative"] = pa.array(ge, pa.float64())
        columns["nll"] = pa.array(nll, pa.float64())
        columns["bpb"] = pa.array(bits_per_byte(nll, tokens.n_tokens, tokens.n_bytes), pa.float64())
    embeddings = (
        stages.run("embed", models.embedder.embed, records.texts)
        if models.embedder is not None
        else None
    )
    columns["n_tokens"] = pa.array(tokens.n_tokens, pa.int32())
    columns["truncated"] = pa.array(tokens.truncated, pa.bool_())
    columns["flags"] = pa.array(record_flags(records, tokens), pa.string())
    columns["text_hash"] = pa.array(text_hashes(records.texts), pa.string())
    columns["near_keys"] = near_keys_array(
        stages.run("near_duplicates", near_duplicate_keys, records.texts)
    )
    return pa.record_batch([columns[f.name] for f in schema], schema=schema), embeddings, tokens


def pass_schema(signals, information_mode: str = "sample"):
    """Columns of the shard parts (late columns are added by :meth:`ScoreDir.read`)."""
    import pyarrow as pa

    fields_ = [pa.field("id", pa.string())]
    if "information" in signals and information_mode == "sample":
        fields_.append(pa.field("information", pa.float64()))
    if "generative" in signals:
        fields_ += [
            pa.field("generative", pa.float64()),
            pa.field("nll", pa.float64()),
            pa.field("bpb", pa.float64()),  # NLL in bits per UTF-8 byte (signals.generative)
        ]
    fields_ += [
        pa.field("n_tokens", pa.int32()),
        pa.field("truncated", pa.bool_()),
        pa.field("flags", pa.string()),
        pa.field("text_hash", pa.string()),
        pa.field("near_keys", pa.list_(pa.uint64(), NEAR_DUPLICATES["bands"])),
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


def concat_csr(batches: list[TokenBatch]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([b.ids for b in batches])
    lengths = np.concatenate([np.diff(b.offsets) for b in batches])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, ids


def timed_iter(it, stages: Stages, name: str) -> Iterator[Any]:
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


__all__ = [
    "Models",
    "Stages",
    "concat_csr",
    "pass_schema",
    "record_flags",
    "score_record_batch",
    "timed_iter",
]
