"""``euds bench INPUT``: what this machine does on your own data, per signal.

Reads the first ``limit`` records, then times each stage on them apart: tokenisation,
information entropy, generative entropy (records/s, tokens/s and model FLOP utilisation
against this machine's measured fp32 matmul rate) and semantic entropy (embedding, then
k-means + assignment). Each stage is run once after a small warm-up.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from euds.io import RecordReader
from euds.signals import SIGNALS
from euds.tokenizer import TextTokenizer


@dataclass
class BenchResult:
    records: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "stages": self.rows, "machine": self.machine}

    def table(self) -> str:
        header = ["stage", "seconds", "records/s", "tokens/s", "note"]
        cells = [header] + [
            [
                r["stage"],
                f"{r['seconds']:.3f}",
                f"{r['records_per_s']:,.1f}",
                f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "",
                r.get("note", ""),
            ]
            for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))) for c in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        extra = ", ".join(f"{k}: {v}" for k, v in self.machine.items())
        return f"{self.records} records\n" + "\n".join(lines) + f"\n{extra}"


def matmul_gflops(n: int = 1536) -> float:
    """fp32 matrix-product rate of numpy's BLAS here (best of 5), the MFU denominator."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def lm_flops_per_token(config: dict[str, Any]) -> float:
    """2 x the weights one token multiplies (projections, MLP, LM head)."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
    return 2.0 * (config["num_hidden_layers"] * (2 * h * h + 2 * h * kv + 3 * h * i) + h * v)


def bench_file(
    path: str | os.PathLike[str],
    *,
    limit: int = 1000,
    signals: tuple[str, ...] = SIGNALS,
    text_field: str = "text",
    id_field: str | None = "id",
    format: str | None = None,
    threads: int | None = None,
) -> BenchResult:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown signals {unknown}; choose from {SIGNALS}")
    texts: list[str | None] = []
    for batch in RecordReader(
        path, text_field=text_field, id_field=id_field, format=format, batch_size=min(limit, 4096)
    ):
        texts.extend(batch.texts)
        if len(texts) >= limit:
            break
    texts = texts[:limit]
    n = len(texts)
    result = BenchResult(records=n)
    peak = matmul_gflops()
    result.machine = {"fp32 matmul GFLOP/s (numpy)": round(peak, 1), "cpus": os.cpu_count()}

    tokenizer = TextTokenizer()
    t0 = time.perf_counter()
    tokens = tokenizer.encode(texts)
    seconds = time.perf_counter() - t0
    n_tokens = int(tokens.offsets[-1])
    result.rows.append(_row("tokenize (SmolLM2)", seconds, n, n_tokens))

    if "information" in signals:
        from euds.signals.information import InformationScorer

        scorer = InformationScorer()
        t0 = time.perf_counter()
        scorer.score(tokens)
        result.rows.append(_row("information", time.perf_counter() - t0, n, n_tokens))

    if "generative" in signals:
        from euds.signals.generative import GenerativeScorer

        gen = GenerativeScorer(threads=threads)
        gen.score(tokenizer.encode(texts[:8]))
        t0 = time.perf_counter()
        gen.score(tokens)
        seconds = time.perf_counter() - t0
        positions = int(tokens.n_tokens.sum())  # tokens scored, one prediction each
        config = json.loads((gen.files.hf / "config.json").read_text())
        mfu = positions / seconds * lm_flops_per_token(config) / (peak * 1e9)
        result.rows.append(
            _row("generative (SmolLM2-135M)", seconds, n, positions, f"MFU {mfu:.0%}")
        )

    if "semantic" in signals:
        from euds.signals.semantic import (
            DEFAULT_K,
            Embedder,
            fit_centroids,
            semantic_entropy,
            top_similarities,
        )

        embedder = Embedder(threads=threads)
        embedder.embed(texts[:8])
        t0 = time.perf_counter()
        emb = embedder.embed(texts)
        seconds = time.perf_counter() - t0
        pieces = sum(
            len(e.ids)
            for e in embedder.tokenizer.encode_batch_fast([t for t in texts if t and t.strip()])
        )
        result.rows.append(_row("embed (all-MiniLM-L6-v2)", seconds, n, pieces))
        k = min(DEFAULT_K, max(1, int((~np.isnan(emb[:, 0])).sum())))
        t0 = time.perf_counter()
        centroids = fit_centroids(emb, k)
        semantic_entropy(top_similarities(emb, centroids))
        result.rows.append(_row(f"k-means (K={k}) + assignment", time.perf_counter() - t0, n, 0))
    return result


def _row(stage: str, seconds: float, records: int, tokens: int, note: str = "") -> dict[str, Any]:
    seconds = max(seconds, 1e-9)
    return {
        "stage": stage,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "tokens_per_s": tokens / seconds if tokens else None,
        "note": note,
    }


__all__ = ["BenchResult", "bench_file", "lm_flops_per_token", "matmul_gflops"]
