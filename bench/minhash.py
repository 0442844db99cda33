"""Near-duplicate keys over every SST-2 train record: euds (fold + C++ MinHash kernel) vs
datasketch (``MinHash.update_batch`` per text, then its band keys), with the same shingles and
the same 20 bands x 5 rows.

Both start from the folded texts (:func:`euds.duplicates.fold_for_near_duplicates`, timed
apart). Besides the time, the two are compared on what they find: the share of near duplicates
made by euds's corruption generator (one or two word edits, :mod:`euds.research.noise`) that
share a key with their original, and the share of unrelated pairs that do.

    python bench/minhash.py [--input ../shared/data/sst2/train.jsonl.gz]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np

import euds
from _common import DATA, table, timeit, write_result
from euds import kernels
from euds.duplicates import NEAR_DUPLICATES, fold_for_near_duplicates


def csr(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    chars = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return offsets, chars


def euds_keys(folded: list[str]) -> np.ndarray:
    p = NEAR_DUPLICATES
    return kernels.minhash_bands(
        *csr(folded), shingle=p["shingle"], bands=p["bands"], rows=p["rows"], seed=p["seed"]
    )


def datasketch_keys(folded: list[str]) -> list[list[bytes]]:
    """The plain way: one datasketch MinHash per text over its 5-character shingles, then each
    band's slice of the signature as its key (as MinHashLSH does)."""
    from datasketch import MinHash

    p = NEAR_DUPLICATES
    k, bands, rows = p["shingle"], p["bands"], p["rows"]
    out = []
    for text in folded:
        m = MinHash(num_perm=bands * rows, seed=1)
        if text:
            width = min(k, len(text))
            m.update_batch([text[s : s + width].encode() for s in range(len(text) - width + 1)])
        hv = m.hashvalues
        out.append([hv[j * rows : (j + 1) * rows].tobytes() for j in range(bands)])
    return out


def shares(keys, pairs: list[tuple[int, int]]) -> float:
    """Share of the (i, j) pairs that share at least one band key."""
    if isinstance(keys, np.ndarray):
        return float(np.mean([(keys[i] == keys[j]).any() for i, j in pairs]))
    return float(
        np.mean([any(a == b for a, b in zip(keys[i], keys[j], strict=True)) for i, j in pairs])
    )


def main() -> None:
    from euds.research.noise import _near

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", default=str(DATA / "sst2" / "train.jsonl.gz"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    with gzip.open(args.input, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    t0 = time.perf_counter()
    folded = [fold_for_near_duplicates(t) for t in texts]
    fold_s = time.perf_counter() - t0

    kernel = timeit(lambda: euds_keys(folded), repeat=args.repeat)
    euds.set_num_threads(1)
    kernel_1t = timeit(lambda: euds_keys(folded), repeat=args.repeat)
    euds.set_num_threads(0)
    plain = timeit(lambda: datasketch_keys(folded), repeat=1, warmup=0)

    # What each finds: near duplicates of 2,000 sentences of 8+ words, and 20,000 random pairs.
    rng = np.random.default_rng(0)
    long = [t for t in texts if len(t.split()) >= 8]
    originals = [long[int(i)] for i in rng.choice(len(long), size=2000, replace=False)]
    edited = [_near([t], [], rng) for t in originals]
    both = [fold_for_near_duplicates(t) for t in originals + edited]
    near_pairs = [(i, 2000 + i) for i in range(2000)]
    random_pairs = [
        tuple(int(x) for x in rng.choice(len(texts), 2, replace=False)) for _ in range(20000)
    ]
    found = {"euds": shares(euds_keys(both), near_pairs)}
    false = {"euds": shares(euds_keys(folded), random_pairs)}
    found["datasketch"] = shares(datasketch_keys(both), near_pairs)
    false["datasketch"] = shares(datasketch_keys(folded), random_pairs)

    n = len(texts)
    rows = [
        ["datasketch MinHash per text (Python)", plain["median_s"], n / plain["median_s"], 1.0],
        [
            "euds kernel, 2 threads",
            kernel["median_s"],
            n / kernel["median_s"],
            plain["median_s"] / kernel["median_s"],
        ],
        [
            "euds kernel, 1 thread",
            kernel_1t["median_s"],
            n / kernel_1t["median_s"],
            plain["median_s"] / kernel_1t["median_s"],
        ],
    ]
    print(f"{n} records; folding (NFKC, casefold, punctuation): {fold_s:.2f} s")
    print(table(rows, ["method", "median s", "records/s", "speed-up vs datasketch"]))
    for name in ("euds", "datasketch"):
        print(
            f"{name}: near duplicates found {found[name]:.3f}, "
            f"random pairs sharing a key {false[name]:.5f}"
        )
    write_result(
        "minhash",
        {
            "input": args.input,
            "records": n,
            "params": NEAR_DUPLICATES,
            "fold_seconds": fold_s,
            "datasketch": plain,
            "euds_kernel": kernel,
            "euds_kernel_1thread": kernel_1t,
            "speedup_kernel": plain["median_s"] / kernel["median_s"],
            "near_duplicates_found": found,
            "random_pairs_sharing_a_key": false,
        },
    )


if __name__ == "__main__":
    main()
