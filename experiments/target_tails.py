"""Target matching with each signal's quantile tails dropped as well as no near-duplicate copy
kept, screened against keeping no copy alone, on fresh seeds. The test was written in
docs/results.md (Noise, the end) before any of these screens was read. Nothing here chooses the
default; eval numbers are reported.

One pair, incumbent → challenger (:data:`PAIRS`): ``target+clean-none-damaged`` →
``target+tails-clean-none-damaged``. The target aim (target matching with a clean in-domain
sample keeps ≤ 1% junk) is met when the challenger's mean junk share is at most 1% on every
noisy pool at every budget (:func:`keep_none.target_aim`).

Per budget, dataset and pool: the paired dev and eval differences (95% CI, MDE,
non-inferiority p), the challenger's difference from random, the junk share and junk per kind
on noisy pools and, on clean pools, the share of the challenger's records the incumbent keeps.

Run: python experiments/target_tails.py experiments/{sst2,trec,20ng}.toml --seeds 85-89
--folder out/experiments/target_tails_85_89 [--threads 1] [--output FILE]
"""

from __future__ import annotations

from pathlib import Path

from keep_none import target_aim
from typical_variants import compare_pairs

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (("target+clean-none-damaged", "target+tails-clean-none-damaged"),)
RULE = (
    "reported only, nothing decides the default; the target aim is met when "
    "target+tails-clean-none-damaged keeps at most 1% junk (mean share over the seeds) on "
    "every noisy pool at every budget"
)


def main() -> int:
    return compare_pairs(
        __doc__,
        ROOT / "docs/results/target_tails.json",
        PAIRS,
        (),
        RULE,
        aims=lambda cells: {"target": target_aim(cells, PAIRS[0])},
    )


if __name__ == "__main__":
    raise SystemExit(main())
