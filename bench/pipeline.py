"""All three signals end to end: euds's one-pass pipeline vs the plain way run in sequence.

euds: `euds score` with all three signals over the whole SST-2 train (67,349 sentences) and
20NG train (11,314 documents) — records/s and where the time goes per stage (an existing
complete score directory under --work is reused, so the long runs are done once).

The plain way, measured on the first --plain-sst2 / --plain-ng records: the transformers LM
(padded batches of 32 in input order, log_softmax), sentence-transformers, faiss k-means
(K = 16) and a Python Counter for information entropy, one after the other.

    python bench/pipeline.py [--work out/bench] [--plain-sst2 2000] [--plain-ng 300]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _common import DATA, ROOT, table, write_result
from euds import ScoreConfig, score
from euds.scores import ScoreDir
from generative import plain_scores  # the same plain LM loop as bench/generative.py


def plain_pipeline(texts: list[str]) -> dict[str, float]:
    """The straightforward way, stage by stage; returns seconds per stage."""
    import faiss
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForCausalLM

    from euds.models import lm_files, minilm_path
    from euds.tokenizer import TextTokenizer

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    tokens = TextTokenizer().encode(texts)
    seqs = [tokens.row(i).tolist() for i in range(len(texts))]
    seconds["tokenize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in seqs:
        if s:
            n = len(s)
            -sum(c / n * math.log(c / n) for c in Counter(s).values())
    seconds["information (Counter)"] = time.perf_counter() - t0

    lm = AutoModelForCausalLM.from_pretrained(str(lm_files().hf), dtype=torch.float32).eval()
    t0 = time.perf_counter()
    plain_scores(lm, tokens)
    seconds["generative (transformers)"] = time.perf_counter() - t0

    st = SentenceTransformer(str(minilm_path()), device="cpu")
    t0 = time.perf_counter()
    emb = st.encode(texts, batch_size=32, normalize_embeddings=True)
    seconds["embed (sentence-transformers)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    km = faiss.Kmeans(emb.shape[1], 16, niter=20, spherical=True, seed=1234)
    km.train(emb.astype(np.float32))
    sims, _ = km.index.search(emb.astype(np.float32), 16)
    z = sims / 0.05
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    -(q * np.log(q)).sum(axis=1)
    seconds["cluster + SE (faiss, numpy)"] = time.perf_counter() - t0
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=ROOT / "out" / "bench")
    p.add_argument("--plain-sst2", type=int, default=2000)
    p.add_argument("--plain-ng", type=int, default=300)
    p.add_argument("--skip-plain", action="store_true")
    args = p.parse_args()
    inputs = {
        "sst2": (DATA / "sst2" / "train.jsonl.gz", args.plain_sst2),
        "20ng": (DATA / "20newsgroups" / "train.jsonl.gz", args.plain_ng),
    }
    results: dict[str, dict] = {}
    for name, (path, n_plain) in inputs.items():
        folder = args.work / name / "scores"
        t0 = time.perf_counter()
        summary = score(path, folder, ScoreConfig(), progress=True)
        wall = time.perf_counter() - t0
        manifest = ScoreDir(folder).manifest()
        stages = manifest.get("stage_seconds") or summary.stage_seconds
        euds_seconds = manifest.get("wall_seconds") or wall
        if not summary.reused:
            manifest["stage_seconds"] = summary.stage_seconds
            manifest["wall_seconds"] = wall
            ScoreDir(folder).write_manifest(manifest)
        entry: dict = {
            "records": summary.records,
            "euds_seconds": euds_seconds,
            "euds_records_per_s": summary.records / euds_seconds,
            "euds_stage_seconds": stages,
        }
        if not args.skip_plain:
            from euds.io import RecordReader

            texts = [t for b in RecordReader(path, batch_size=n_plain) for t in b.texts][:n_plain]
            plain = plain_pipeline(texts)
            total = sum(plain.values())
            entry["plain"] = {
                "records": n_plain,
                "seconds": total,
                "records_per_s": n_plain / total,
                "stage_seconds": plain,
            }
            entry["speedup"] = entry["euds_records_per_s"] / entry["plain"]["records_per_s"]
        results[name] = entry
        rows = [
            ["euds (whole train set)", summary.records, euds_seconds, entry["euds_records_per_s"]]
        ]
        if "plain" in entry:
            rows.append(
                [
                    "plain, in sequence",
                    n_plain,
                    entry["plain"]["seconds"],
                    entry["plain"]["records_per_s"],
                ]
            )
        print(f"\n{name}")
        print(table(rows, ["pipeline", "records", "s", "records/s"]))
        if "speedup" in entry:
            print(f"speed-up: {entry['speedup']:.2f}x")
        print("euds stages (s): " + json.dumps({k: round(v, 1) for k, v in stages.items()}))
        if "plain" in entry:
            print(
                "plain stages (s): "
                + json.dumps({k: round(v, 1) for k, v in entry["plain"]["stage_seconds"].items()})
            )
    write_result("pipeline", {"datasets": results})


if __name__ == "__main__":
    main()
