"""Typicality with the coordinated k-means++ start (:func:`euds.selection.typical.plus_plus`:
the draws keyed by store position, so that a record that is not drawn can leave without moving
the others), and the pairs it lets be tested again. The rules were written in docs/results.md
(Noise, the coordinated start) before any of these screens was read. Dev data decide; eval
numbers are reported, never used.

Four pairs, challenger against incumbent (:data:`PAIRS`):

1. ``typical+clean`` → ``typical+clean-damaged`` decides at each budget whose default is the
   incumbent (2, 5, 10%), by :mod:`damaged_text`'s test: (a) on every dataset × pool the mean
   dev-probe difference is shown above -0.5 points (one-sided paired t test, 5%; identical
   subsets in every seed: a difference of 0, shown) and (b) on every noisy pool the mean junk
   share is no higher. A pass is provisional: the default's cleaning takes the rule only when
   the same test passes on fresh seeds. Also reported: the share of the challenger's records
   the incumbent keeps on the clean pools (how still typicality holds when a rule drops a few).
2. ``typical+clean-gen-distinct`` → ``typical+clean-gen-distinct-damaged``, reported: the junk
   kept at 16% against the aim of 2%.
3. ``target+clean-damaged`` → ``target+clean-gen-damaged``, reported: the junk kept against the
   aim of 1% (target matching runs no k-means; the pair is new).
4. ``typical+clean`` → ``typical+clean-gen`` (added after the three above were read, before any
   of its screens was) decides by the same test at the same budgets: the generative copy rule,
   which the positional start left untestable under the eligible fit.

Run: python experiments/coordinated_start.py experiments/{sst2,trec,20ng}.toml --seeds 40-49
--dataset-seeds 20ng=40-44 [--budgets ...] [--threads 1] [--output FILE]
"""

from __future__ import annotations

from pathlib import Path

from damaged_text import RULE
from typical_variants import compare_pairs

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (
    ("typical+clean", "typical+clean-damaged"),
    ("typical+clean-gen-distinct", "typical+clean-gen-distinct-damaged"),
    ("target+clean-damaged", "target+clean-gen-damaged"),
    ("typical+clean", "typical+clean-gen"),
)
DECIDING = (PAIRS[0], PAIRS[3])


def main() -> int:
    return compare_pairs(
        __doc__, ROOT / "docs/results/coordinated_start.json", PAIRS, DECIDING, RULE
    )


if __name__ == "__main__":
    raise SystemExit(main())
