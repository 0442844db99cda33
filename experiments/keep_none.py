"""No copy of a near-duplicate group kept (``near_duplicate_keep="none"``), screened against
keeping the more predictable copy (``"generative"``), on fresh seeds. The test was written in
docs/results.md (Noise, the end) before any of these screens was read. Nothing here chooses the
default; eval numbers are reported.

Two pairs, incumbent → challenger (:data:`PAIRS`):

1. ``target+clean-gen-damaged`` → ``target+clean-none-damaged``: the aim that target matching
   with a clean in-domain sample keeps ≤ 1% junk. It is met when the challenger's mean junk share
   is at most 1% on every noisy pool at every budget (:func:`target_aim`).
2. ``typical+clean-gen-damaged`` → ``typical+clean-none-damaged``, reported: its junk at 16%
   against the 2% aim (which asks it of the default; this is not the default).

Per pair, budget, dataset and pool: the paired dev and eval differences (95% CI, MDE,
non-inferiority p), the challenger's difference from random, the junk share and junk per kind
on noisy pools and, on clean pools, the share of the challenger's records the incumbent keeps.

Run: python experiments/keep_none.py experiments/{sst2,trec,20ng}.toml --seeds 80-84
--folder out/experiments/keep_none_80_84 [--threads 1] [--output FILE]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typical_variants import compare_pairs

ROOT = Path(__file__).resolve().parent.parent
PAIRS = (
    ("target+clean-gen-damaged", "target+clean-none-damaged"),
    ("typical+clean-gen-damaged", "typical+clean-none-damaged"),
)
TARGET_AIM = 0.01  # the issue's: target matching keeps at most 1% junk
RULE = (
    "reported only, nothing decides the default; the target aim is met when "
    "target+clean-none-damaged keeps at most 1% junk (mean share over the seeds) on every noisy "
    "pool at every budget"
)


def target_aim(cells: list[dict[str, Any]], pair: tuple[str, str] = PAIRS[0]) -> dict[str, Any]:
    """The target aim on these cells: ``pair``'s challenger's junk share on each noisy pool and
    budget, the largest of them, and whether it is at most :data:`TARGET_AIM`."""
    old, new = pair
    shares = {
        f"{c['dataset']} {c['budget']:g}": c["junk_share"][new]
        for c in cells
        if (c["incumbent"], c["challenger"]) == (old, new) and c["pool"] == "noisy"
    }
    worst = max(shares.values())
    return {
        "method": new,
        "limit": TARGET_AIM,
        "junk_share": shares,
        "largest": worst,
        "met": worst <= TARGET_AIM,
    }


def main() -> int:
    return compare_pairs(
        __doc__,
        ROOT / "docs/results/keep_none.json",
        PAIRS,
        (),
        RULE,
        aims=lambda cells: {"target": target_aim(cells)},
    )


if __name__ == "__main__":
    raise SystemExit(main())
