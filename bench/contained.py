"""Contained texts over every SST-2 train record: euds (one suffix array over the pool's folded
words, numpy) against the straightforward way (for each text, a substring search of its folded
words in every longer text), and what each finds.

The straightforward way is quadratic: it is timed on a slice and compared with euds on the same
slice (a ratio from one run), then euds runs on all 67,349 records.

    python bench/contained.py [--slice 3000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np

from _common import DATA, table, write_result
from euds.duplicates import contained_texts, fold_for_near_duplicates


def plain(texts: list[str]) -> np.ndarray:
    """The rule, searched plainly: a text's folded words, space-delimited, inside a longer
    text's (or equal to an earlier one's)."""
    folded = [" " + fold_for_near_duplicates(t) + " " for t in texts]
    out = []
    for i, f in enumerate(folded):
        if f == "  ":
            continue
        for j, g in enumerate(folded):
            if j != i and ((len(g) > len(f) and f in g) or (g == f and j < i)):
                out.append(i)
                break
    return np.array(out, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slice", type=int, default=3000)
    args = parser.parse_args()
    with gzip.open(DATA / "sst2" / "train.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    part = texts[: args.slice]
    usable = np.ones(len(part), dtype=bool)

    t0 = time.perf_counter()
    want = plain(part)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    got, _ = contained_texts(part, usable)
    t_euds = time.perf_counter() - t0
    same = np.array_equal(np.sort(got), want)

    t0 = time.perf_counter()
    every, equal = contained_texts(texts, np.ones(len(texts), dtype=bool))
    t_all = time.perf_counter() - t0
    # The plain way's cost grows with the square of the records.
    projected = t_plain * (len(texts) / len(part)) ** 2

    rows = [
        [f"plain search, {len(part):,}", t_plain, len(want), "-"],
        [f"euds suffix array, {len(part):,}", t_euds, len(got), f"{t_plain / t_euds:.0f}x"],
        [
            f"euds suffix array, all {len(texts):,}",
            t_all,
            len(every),
            f"{projected / t_all:.0f}x (projected)",
        ],
    ]
    print(table(rows, ["what", "seconds", "contained", "speed-up"]))
    print(
        f"same rows found on the slice: {same}; all: {len(every):,} of {len(texts):,} "
        f"contained ({equal:,} equal to an earlier text)"
    )
    write_result(
        "contained",
        {
            "slice": len(part),
            "plain_s": t_plain,
            "euds_slice_s": t_euds,
            "same_result": bool(same),
            "euds_all_s": t_all,
            "records": len(texts),
            "contained": len(every),
            "equal_words": equal,
            "plain_all_projected_s": projected,
        },
    )


if __name__ == "__main__":
    main()
