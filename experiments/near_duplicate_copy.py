"""Which copy of a near-duplicate pair should a selection keep? Measures whether a stored score
tells the corrupted copy from its original.

The near-duplicate rule (``euds.duplicates``) keeps the first usable record of each MinHash
group. On the noisy pools the junk is placed at random positions, so the first copy is the junk
copy about half the time: ``typical+clean`` keeps half of the near-duplicate junk that ``typical``
keeps (docs/results/*_results.md, junk per kind at 16%). This script makes pairs with the noise
generator itself (``make_junk`` of one original yields one copy of each kind, so the original is
known), scores both copies, and reports per dataset and per score how often the junk copy scores
higher, and how often the pair shares a MinHash key (is grouped at all). A score that is higher
for the junk copy in most pairs would keep the original if the rule kept the lowest-scoring
copy. The corruptions are this project's own generator: a rule chosen here is checked on it,
not on real near duplicates.

Run: python experiments/near_duplicate_copy.py [--datasets sst2,trec] [--pairs 200]
[--kinds near_duplicate,mojibake]. Updates those datasets' entries in
docs/results/near_duplicate_copy.json. 20NG's posts are long: the committed file has 50 of its pairs
(`--datasets 20ng --pairs 50`, 26 minutes beside other work), 200 of the others'.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from euds.api import Scorer
from euds.cache import atomic_write_bytes
from euds.research.noise import make_junk
from euds.research.pools import load_records

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "sst2": (DATA / "sst2" / "train.jsonl.gz", None),
    "20ng": (DATA / "20newsgroups" / "train.jsonl.gz", "newsgroups"),
    "trec": (DATA / "trec" / "train.jsonl.gz", None),
}
OUTPUT = ROOT / "docs" / "results" / "near_duplicate_copy.json"
SCORES = ("information", "generative", "nll", "bpb")


def originals(path: Path, cleaner: str | None, n: int, seed: int) -> list[str]:
    texts = [r["text"] for r in load_records(path, cleaner)]
    rng = np.random.default_rng(seed)
    return [texts[int(i)] for i in rng.choice(len(texts), size=n, replace=False)]


def copies(texts: list[str], kind: str, seed: int) -> list[str]:
    out = []
    for i, text in enumerate(texts):
        # One of each kind from this one text: its near duplicate's original is `text`.
        out.append(next(j.text for j in make_junk([text], 8, seed=seed + i) if j.kind == kind))
    return out


def wilson(k: int, n: int) -> list[float] | None:
    """The 95% Wilson interval of the share k / n (None for no pairs)."""
    if n == 0:
        return None
    z, p = 1.959964, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 3), round(float(centre + half), 3)]


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, object]:
    """The junk copies' scores ``a`` against their originals' ``b``."""
    pairs = zip(a["near_keys"], b["near_keys"], strict=True)
    grouped = np.array([bool(set(x.tolist()) & set(y.tolist())) for x, y in pairs])
    out: dict[str, object] = {"pairs": len(grouped), "grouped": round(float(grouped.mean()), 3)}
    for name in SCORES:
        diff = a[name] - b[name]
        higher, higher_grouped = int(np.sum(diff > 0)), int(np.sum(diff[grouped] > 0))
        out[name] = {
            "junk_higher": round(higher / len(diff), 3),
            "ci": wilson(higher, len(diff)),
            "ties": round(float(np.mean(diff == 0)), 3),
            "junk_higher_when_grouped": round(higher_grouped / max(1, int(grouped.sum())), 3),
            "ci_when_grouped": wilson(higher_grouped, int(grouped.sum())),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--kinds", default="near_duplicate,mojibake")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    scorer = Scorer(["information", "generative"])
    result = json.loads(args.output.read_text()) if args.output.exists() else {"datasets": {}}
    for name in args.datasets.split(","):
        path, cleaner = DATASETS[name]
        started = time.time()
        texts = originals(path, cleaner, args.pairs, args.seed)
        scored = scorer.score_texts(texts)
        per_kind: dict[str, object] = {"pairs": args.pairs, "seed": args.seed}
        for kind in args.kinds.split(","):
            per_kind[kind] = compare(scorer.score_texts(copies(texts, kind, args.seed)), scored)
            print(name, kind, json.dumps(per_kind[kind]), flush=True)
        per_kind["minutes"] = round((time.time() - started) / 60, 1)
        result["datasets"][name] = per_kind
        atomic_write_bytes(args.output, json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
