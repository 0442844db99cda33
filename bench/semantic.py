"""Semantic entropy: embedding throughput vs sentence-transformers, clustering + assignment time.

On the first 2,000 SST-2 train sentences and the first 300 20NG train documents:
embeddings/s of (a) sentence-transformers (PyTorch, its default batch of 32, which sorts by
length) and (b) euds (ONNX Runtime, length-bucketed batches by a word-piece budget, pooling in
C++ or in the graph), at equal results (cosine between the two). Then k-means (K = 16) +
top-m assignment + entropy for 100,000 embeddings.

    python bench/semantic.py [--sst2 2000] [--ng 300] [--skip-plain]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time

import numpy as np

from _common import DATA, spearman, table, write_result
from euds.models import embedder_files, minilm_path
from euds.signals.semantic import Embedder, fit_centroids, semantic_entropy, top_similarities


def load_texts(path, limit: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in itertools.islice(f, limit)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sst2", type=int, default=2000)
    p.add_argument("--ng", type=int, default=300)
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--skip-plain", action="store_true")
    args = p.parse_args()

    files = embedder_files()
    datasets = {
        "sst2": load_texts(DATA / "sst2" / "train.jsonl.gz", args.sst2),
        "20ng": load_texts(DATA / "20newsgroups" / "train.jsonl.gz", args.ng),
    }
    st_model = None
    if not args.skip_plain:
        from sentence_transformers import SentenceTransformer

        st_model = SentenceTransformer(str(minilm_path()), device="cpu")
    variants = {
        "euds, pooling in C++ (default)": {"pooling": "core"},
        "euds, pooling in graph": {"pooling": "graph"},
        "euds int8-block": {"precision": "int8-block"},
        "euds int8 (dynamic)": {"precision": "int8"},
    }
    fp32 = "euds, pooling in C++ (default)"
    results: dict[str, dict] = {}
    for name, texts in datasets.items():
        rows: dict[str, dict] = {}
        embs: dict[str, np.ndarray] = {}
        if st_model is not None:
            st_model.encode(texts[:8])
            t0 = time.perf_counter()
            embs["sentence-transformers"] = st_model.encode(
                texts, batch_size=32, normalize_embeddings=True
            )
            rows["sentence-transformers"] = {"seconds": time.perf_counter() - t0}
        for label, options in variants.items():
            embedder = Embedder(files, **options)
            embedder.embed(texts[:8])
            t0 = time.perf_counter()
            embs[label] = embedder.embed(texts)
            rows[label] = {"seconds": time.perf_counter() - t0}
        # Quality of the quantised encoders: cosine with fp32 and the rank correlation of SE
        # under the same centroids (fitted on the fp32 embeddings).
        centroids = fit_centroids(embs[fp32], 16)
        se_fp32 = semantic_entropy(top_similarities(embs[fp32], centroids))
        for label, row in rows.items():
            row["embeddings_per_s"] = len(texts) / row["seconds"]
            if "sentence-transformers" in rows:
                row["speedup_vs_st"] = rows["sentence-transformers"]["seconds"] / row["seconds"]
                cos = np.sum(embs[label] * embs["sentence-transformers"], axis=1)
                row["min_cosine_vs_st"] = float(np.min(cos))
            row["min_cosine_vs_fp32"] = float(np.min(np.sum(embs[label] * embs[fp32], axis=1)))
            se = semantic_entropy(top_similarities(embs[label], centroids))
            row["spearman_se_vs_fp32"] = spearman(se, se_fp32)
        results[name] = {"records": len(texts), "runs": rows}
        print(f"\n{name}: {len(texts)} texts")
        print(
            table(
                [
                    [
                        k,
                        r["seconds"],
                        r["embeddings_per_s"],
                        r.get("speedup_vs_st", float("nan")),
                        r.get("min_cosine_vs_st", float("nan")),
                        r["spearman_se_vs_fp32"],
                    ]
                    for k, r in rows.items()
                ],
                [
                    "method",
                    "s",
                    "embeddings/s",
                    "x sentence-transformers",
                    "min cosine vs ST",
                    "Spearman SE vs fp32",
                ],
            )
        )

    # Clustering and assignment at 100k points: real SST-2 embeddings, repeated with a little
    # noise up to the size asked for.
    base = Embedder(files).embed(datasets["sst2"])
    base = base[~np.isnan(base[:, 0])]
    rng = np.random.default_rng(0)
    reps = -(-args.points // len(base))
    pool = np.concatenate(
        [base + rng.normal(0, 0.02, base.shape).astype(np.float32) for _ in range(reps)]
    )[: args.points]
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    t0 = time.perf_counter()
    centroids = fit_centroids(pool, 16)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    sims = top_similarities(pool, centroids)
    t_assign = time.perf_counter() - t0
    t0 = time.perf_counter()
    se = semantic_entropy(sims)
    t_entropy = time.perf_counter() - t0
    cluster = {
        "points": len(pool),
        "k": 16,
        "fit_s": t_fit,
        "assign_s": t_assign,
        "entropy_s": t_entropy,
        "total_s": t_fit + t_assign + t_entropy,
        "se_mean": float(se.mean()),
    }
    print(
        f"\nk-means K=16 on {len(pool):,} embeddings (trained on <= 256*K sampled points): "
        f"fit {t_fit:.2f} s, top-16 search {t_assign:.2f} s, entropy {t_entropy * 1e3:.1f} ms"
    )
    write_result("semantic", {"datasets": results, "clustering": cluster})


if __name__ == "__main__":
    main()
