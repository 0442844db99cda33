"""Information entropy over every SST-2 train record: euds kernel vs collections.Counter.

Tokenisation is timed apart (it is the same Rust tokenizer for both). Both sides start from
the token ids; euds is timed on its CSR arrays (kernel only) and also including the build of
those arrays from Python lists, the fair end-to-end comparison with the Counter loop.

    python bench/information.py [--input ../shared/data/sst2/train.jsonl.gz]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import time
from collections import Counter

import numpy as np

import euds
from _common import DATA, table, timeit, write_result
from euds import kernels
from euds.tokenizer import TextTokenizer


def counter_entropy(seqs: list[list[int]]) -> list[float]:
    """The plain way: a Counter per sample, entropy in Python."""
    out = []
    for s in seqs:
        n = len(s)
        if n == 0:
            out.append(math.nan)
            continue
        out.append(-sum(c / n * math.log(c / n) for c in Counter(s).values()))
    return out


def to_csr(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int32, count=int(offsets[-1]))
    return offsets, ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", default=str(DATA / "sst2" / "train.jsonl.gz"))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    with gzip.open(args.input, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    tok = TextTokenizer()
    t0 = time.perf_counter()
    batch = tok.encode(texts)
    tok_s = time.perf_counter() - t0
    n_tok = int(batch.offsets[-1])
    seqs = [batch.row(i).tolist() for i in range(len(batch))]

    counter = timeit(lambda: counter_entropy(seqs), repeat=max(2, args.repeat // 2))
    kernel = timeit(
        lambda: kernels.information_entropy(batch.offsets, batch.ids), repeat=args.repeat
    )
    with_csr = timeit(lambda: kernels.information_entropy(*to_csr(seqs)), repeat=args.repeat)
    euds.set_num_threads(1)
    kernel_1t = timeit(
        lambda: kernels.information_entropy(batch.offsets, batch.ids), repeat=args.repeat
    )
    euds.set_num_threads(0)

    ref = np.array(counter_entropy(seqs))
    got = kernels.information_entropy(batch.offsets, batch.ids)
    max_err = float(np.nanmax(np.abs(ref - got)))
    assert np.array_equal(np.isnan(ref), np.isnan(got))

    rows = [
        ["collections.Counter (Python)", counter["median_s"], len(seqs) / counter["median_s"], 1.0],
        [
            "euds kernel (CSR)",
            kernel["median_s"],
            len(seqs) / kernel["median_s"],
            counter["median_s"] / kernel["median_s"],
        ],
        [
            "euds kernel, 1 thread",
            kernel_1t["median_s"],
            len(seqs) / kernel_1t["median_s"],
            counter["median_s"] / kernel_1t["median_s"],
        ],
        [
            "euds incl. CSR build from lists",
            with_csr["median_s"],
            len(seqs) / with_csr["median_s"],
            counter["median_s"] / with_csr["median_s"],
        ],
    ]
    print(
        f"{len(seqs)} records, {n_tok} tokens (tokenisation excluded); max |diff| = {max_err:.2e}"
    )
    print(table(rows, ["method", "median s", "records/s", "speed-up vs Counter"]))
    print(
        f"tokenisation (Rust tokenizers, batched, incl. CSR): {tok_s:.2f} s = "
        f"{len(texts) / tok_s:,.0f} texts/s, {n_tok / tok_s:,.0f} tokens/s"
    )
    write_result(
        "information",
        {
            "input": args.input,
            "records": len(seqs),
            "tokens": n_tok,
            "counter": counter,
            "euds_kernel": kernel,
            "euds_kernel_1thread": kernel_1t,
            "euds_with_csr_build": with_csr,
            "speedup_kernel": counter["median_s"] / kernel["median_s"],
            "speedup_with_csr_build": counter["median_s"] / with_csr["median_s"],
            "max_abs_diff": max_err,
            "tokenisation": {
                "seconds": tok_s,
                "texts_per_s": len(texts) / tok_s,
                "tokens_per_s": n_tok / tok_s,
            },
        },
    )


if __name__ == "__main__":
    main()
