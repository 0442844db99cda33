"""The distinct fit (``typical_fit="distinct"``), screened against ``typical+clean`` and the pool
fit: typicality's k-means fitted on the pool with each group of copies once, and a cluster the
rules mostly drop given to the fill, so that the clusters stay put when a rule changes without
the pool fit's extra junk. The rules were written in docs/results.md (Noise) before any of
these screens was read. Dev data decide; eval numbers are reported, never used.

Three pairs, challenger against incumbent (:data:`PAIRS`):

1. ``typical+clean`` → ``typical+clean-distinct`` decides, by :mod:`typical_variants`'s rule: at
   each budget whose default is ``typical+clean``, (a) on every dataset × pool the mean dev-probe
   difference is shown above -0.5 points (one-sided paired t test, 5%) and (b) on every noisy
   pool the mean junk share is no higher. A pass is provisional until fresh seeds.
2. ``typical+clean-pool`` → ``typical+clean-distinct``, reported: whether counting copies once
   and giving mostly dropped clusters to the fill takes back the pool fit's extra junk.
3. ``typical+clean-distinct`` → ``typical+clean-gen-distinct``, reported: whether the fit holds
   typicality still when the copy kept changes (median clean overlap above 80%), and the test of
   ``--near-duplicate-keep generative`` that such stillness allows.

Run: python experiments/distinct_fit.py experiments/{sst2,trec,20ng}.toml --seeds 40-49
--dataset-seeds 20ng=40-44 [--budgets ...] [--threads 1] [--output FILE]
"""

from __future__ import annotations

from pathlib import Path

from typical_variants import RULE, compare_pairs

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (
    ("typical+clean", "typical+clean-distinct"),
    ("typical+clean-pool", "typical+clean-distinct"),
    ("typical+clean-distinct", "typical+clean-gen-distinct"),
)
DECIDING = (("typical+clean", "typical+clean-distinct"),)


def main() -> int:
    return compare_pairs(
        __doc__,
        ROOT / "docs/results/distinct_fit.json",
        PAIRS,
        DECIDING,
        RULE.replace("DECIDING", "typical+clean-distinct"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
