"""Generative entropy: euds (ONNX Runtime + C++ kernel) vs the plain transformers way.

On the first 2,000 SST-2 train sentences and the first 300 20NG train documents:

(a) plain: the transformers PyTorch model, padded batches of 32 in input order,
    torch.log_softmax entropy and NLL (also (a') the same sorted by length);
(b) euds: packed rows, fp32, fused C++ reduction (the default), and its variants: padded
    length-bucketed batches, in-graph reduction, int8 weights (with Spearman vs fp32).

Scores are compared (max |diff| vs plain, tolerance 2e-3). Model FLOP utilisation = scored
tokens/s (one prediction each) x FLOPs per token / this machine's measured fp32 matmul rate.

    python bench/generative.py [--sst2 2000] [--ng 300] [--skip-plain]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time

import numpy as np

from _common import DATA, spearman, table, write_result
from euds.bench import lm_flops_per_token, matmul_gflops
from euds.models import lm_files
from euds.signals.generative import GenerativeScorer
from euds.tokenizer import TextTokenizer, TokenBatch


def load_texts(path, limit: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in itertools.islice(f, limit)]


def plain_scores(model, tokens: TokenBatch, *, batch: int = 32, sort: bool = False):
    """The straightforward way: padded batches of `batch` texts, log_softmax over the vocab."""
    import torch

    n = len(tokens)
    order = np.argsort(tokens.n_tokens, kind="stable") if sort else np.arange(n)
    ge = np.full(n, np.nan)
    nll = np.full(n, np.nan)
    positions = 0
    with torch.no_grad():
        for start in range(0, n, batch):
            idx = [int(i) for i in order[start : start + batch] if tokens.n_tokens[i] > 0]
            if not idx:
                continue
            seqs = [[0, *tokens.row(i).tolist()] for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), 2, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            positions += ids.numel()
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
            ent = -(logp.exp() * logp).sum(-1)[:, :-1]
            tok_nll = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
            valid = mask[:, 1:].bool()
            for r, i in enumerate(idx):
                ge[i] = float(ent[r][valid[r]].mean())
                nll[i] = float(tok_nll[r][valid[r]].mean())
    return ge, nll, positions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sst2", type=int, default=2000)
    p.add_argument("--ng", type=int, default=300)
    p.add_argument("--skip-plain", action="store_true", help="only the euds variants")
    args = p.parse_args()

    files = lm_files()
    config = json.loads((files.hf / "config.json").read_text())
    fpt = lm_flops_per_token(config)
    peak = matmul_gflops()
    tokenizer = TextTokenizer()
    datasets = {
        "sst2": load_texts(DATA / "sst2" / "train.jsonl.gz", args.sst2),
        "20ng": load_texts(DATA / "20newsgroups" / "train.jsonl.gz", args.ng),
    }
    model = None
    if not args.skip_plain:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(files.hf), dtype=torch.float32).eval()

    variants = {
        "euds packed fp32 (default)": {},
        "euds padded fp32": {"packing": False},
        "euds packed, in-graph reduction": {"reduction": "graph"},
        "euds packed int8-block": {"precision": "int8-block"},
        "euds packed int8 (dynamic)": {"precision": "int8"},
    }
    results: dict[str, dict] = {}
    for name, texts in datasets.items():
        tokens = tokenizer.encode(texts)
        useful = int(tokens.n_tokens.sum())  # tokens scored: one prediction each
        rows: dict[str, dict] = {}
        scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if model is not None:
            plain_runs = [("plain (transformers, batches of 32, input order)", False)]
            if name == "sst2":
                plain_runs.append(("plain, sorted by length", True))
            for label, sort in plain_runs:
                t0 = time.perf_counter()
                ge, nll, positions = plain_scores(model, tokens, sort=sort)
                seconds = time.perf_counter() - t0
                rows[label] = {"seconds": seconds, "positions": positions}
                scores[label] = (ge, nll)
        for label, options in variants.items():
            scorer = GenerativeScorer(files, **options)
            scorer.score(tokenizer.encode(texts[:8]))  # warm-up
            t0 = time.perf_counter()
            scores[label] = scorer.score(tokens)
            rows[label] = {"seconds": time.perf_counter() - t0}
        plain_key = next((k for k in rows if k.startswith("plain (")), None)
        fp32 = scores["euds packed fp32 (default)"]
        for label, row in rows.items():
            row["records_per_s"] = len(texts) / row["seconds"]
            row["useful_tokens_per_s"] = useful / row["seconds"]
            row["mfu"] = row["useful_tokens_per_s"] * fpt / (peak * 1e9)
            if plain_key:
                row["speedup_vs_plain"] = rows[plain_key]["seconds"] / row["seconds"]
                ref = scores[plain_key]
                row["max_abs_ge_vs_plain"] = float(np.nanmax(np.abs(scores[label][0] - ref[0])))
                row["max_abs_nll_vs_plain"] = float(np.nanmax(np.abs(scores[label][1] - ref[1])))
            row["spearman_ge_vs_fp32"] = spearman(scores[label][0], fp32[0])
            row["spearman_nll_vs_fp32"] = spearman(scores[label][1], fp32[1])
        results[name] = {"records": len(texts), "useful_tokens": useful, "runs": rows}
        print(f"\n{name}: {len(texts)} records, {useful} scored tokens")
        print(
            table(
                [
                    [
                        label,
                        r["seconds"],
                        r["records_per_s"],
                        r.get("speedup_vs_plain", float("nan")),
                        r["mfu"],
                        r.get("max_abs_ge_vs_plain", float("nan")),
                        r["spearman_ge_vs_fp32"],
                    ]
                    for label, r in rows.items()
                ],
                [
                    "method",
                    "s",
                    "records/s",
                    "x plain",
                    "MFU",
                    "max|dGE| vs plain",
                    "Spearman GE vs fp32",
                ],
            )
        )
    print(f"\nfp32 matmul rate: {peak:.0f} GFLOP/s; {fpt / 1e6:.0f} MFLOP per token")
    write_result(
        "generative",
        {"matmul_gflops": peak, "flops_per_token": fpt, "datasets": results},
    )


if __name__ == "__main__":
    main()
