"""Damaged texts (``--drop-damaged``) over every SST-2 train record and 20 Newsgroups training
post: euds (:func:`euds.damage.damaged_texts`: one regular expression for a text in pure ASCII,
ftfy's heuristic only for the rest) against the straightforward way (each character's Unicode
category, and ftfy's heuristic on every text), and what each finds.

    python bench/damage.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
import unicodedata

import numpy as np
from ftfy.badness import is_bad

from _common import DATA, table, write_result
from euds.damage import damaged_texts


def plain(texts: list[str]) -> np.ndarray:
    """The rule, checked plainly: every character's category, ftfy on every text."""
    out = [
        i
        for i, t in enumerate(texts)
        if "\ufffd" in t
        or any(unicodedata.category(c) == "Cc" and c not in "\t\n\x0b\x0c\r" for c in t)
        or is_bad(t)
    ]
    return np.array(out, dtype=np.int64)


def best_of(repeat: int, run) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows, result = [], {}
    for name, path in (
        ("SST-2 train", DATA / "sst2" / "train.jsonl.gz"),
        ("20NG train", DATA / "20newsgroups" / "train.jsonl.gz"),
    ):
        with gzip.open(path, "rt") as f:
            texts = [json.loads(line)["text"] for line in f]
        usable = np.ones(len(texts), dtype=bool)
        t_plain, want = best_of(args.repeat, lambda texts=texts: plain(texts))
        t_euds, (got, kinds) = best_of(
            args.repeat, lambda texts=texts, usable=usable: damaged_texts(texts, usable)
        )
        same = bool(np.array_equal(got, want))
        mb = sum(len(t.encode()) for t in texts) / 1e6
        rows.append([f"plain, {name} ({len(texts):,}, {mb:.1f} MB)", t_plain, len(want), "1"])
        rows.append([f"euds, {name}", t_euds, len(got), f"{t_plain / t_euds:.1f}x"])
        result[name] = {
            "records": len(texts),
            "megabytes": mb,
            "plain_s": t_plain,
            "euds_s": t_euds,
            "damaged": len(got),
            "by_kind": kinds,
            "same_result": same,
        }
        print(f"{name}: same rows found: {same}; by kind {kinds}")
    print(table(rows, ["what", "seconds", "damaged", "speed-up"]))
    write_result("damage", {"repeat": args.repeat, **result})


if __name__ == "__main__":
    main()
