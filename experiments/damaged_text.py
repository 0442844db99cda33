"""The damaged-text rule (``drop_damaged``, :mod:`euds.damage`: mojibake, U+FFFD, control
characters) added to the cleaning, screened against the cleaning without it. The rules were
written in docs/results.md (Noise) before any of these screens was read. Dev data decide; eval
numbers are reported, never used.

Four pairs, challenger against incumbent (:data:`PAIRS`):

1. ``typical+clean`` → ``typical+clean-damaged`` (at 2, 5 and 10%) and
2. ``filter-random+clean`` → ``filter-random+clean-damaged`` (at 1%) decide, by
   :mod:`typical_variants`'s test at each budget whose default is the incumbent: (a) on every
   dataset × pool the mean dev-probe difference is shown above -0.5 points (one-sided paired t
   test, 5%; where the two subsets are the same in every seed the difference is 0 and counts as
   shown) and (b) on every noisy pool the mean junk share is no higher. A pass is provisional:
   the default's cleaning takes the rule only when the same test passes on fresh seeds.
3. ``typical+clean-gen-distinct`` → ``typical+clean-gen-distinct-damaged``, reported: the junk
   kept at 16% against the aim of 2%.
4. ``target+clean`` → ``target+clean-damaged``, reported: the junk kept against the aim of 1%.

Run: python experiments/damaged_text.py experiments/{sst2,trec,20ng}.toml --seeds 40-49
--dataset-seeds 20ng=40-44 [--budgets ...] [--threads 1] [--output FILE]
"""

from __future__ import annotations

from pathlib import Path

from near_duplicate_keep import MARGIN
from typical_variants import compare_pairs

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (
    ("typical+clean", "typical+clean-damaged"),
    ("filter-random+clean", "filter-random+clean-damaged"),
    ("typical+clean-gen-distinct", "typical+clean-gen-distinct-damaged"),
    ("target+clean", "target+clean-damaged"),
)
DECIDING = PAIRS[:2]
RULE = (
    "at each budget whose default is the incumbent of a deciding pair, its challenger passes "
    f"when (a) on every dataset x pool its mean dev-probe difference is shown above -{MARGIN} "
    "points (one-sided paired t test, 5%; identical subsets in every seed: a difference of 0, "
    "shown) and (b) on every noisy pool its mean junk share is no higher; a pass on these seeds "
    "is provisional until the same test passes on fresh seeds"
)


def main() -> int:
    return compare_pairs(__doc__, ROOT / "docs/results/damaged_text.json", PAIRS, DECIDING, RULE)


if __name__ == "__main__":
    raise SystemExit(main())
