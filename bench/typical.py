"""Typicality selection at a 16% budget: euds's two-level clustering against the straightforward
one-level k-means with as many clusters as the budget keeps, on clustered unit embeddings
(384-d, like all-MiniLM-L6-v2's), and how the two cover the pool.

Both run FAISS spherical k-means (20 iterations, k-means++ starts); one-level is what euds
does up to 256 clusters. Coverage: the share of the pool's true blobs that hold a kept record,
and the mean cosine of every record (a sample of 20,000 for a million) to its nearest kept
record. Then the cost of ``typical_fit="pool"``: with a quarter of the pool masked (as the
default's tails and copy rules drop), the k-means fitted on every record against on the
eligible three quarters; and of ``typical_fit="distinct"``, with 5% of the rows copies of others
(sharing a MinHash key), its copy groups found (:func:`euds.duplicates.copy_groups`, 20 bands)
and the k-means fitted on one row per group. Then the k-means++ start: euds's coordinated draws
and training sample (keyed by store position) against positional ones (``numpy``'s ``choice``
over the list of fitted rows, as euds and FAISS drew until 2026-12-05), in time and in the
share of the subset that stays when one record that was not kept leaves the pool, at 16% (two
levels) and 1% (one). Then euds alone on a million records (the straightforward way would take
hours there).

    python bench/typical.py [--sizes 20000,50000] [--million]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import table, write_result
from euds.duplicates import copy_groups
from euds.selection import typical


def blobs(n: int, k: int, d: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, k, size=n)
    x = centres[label] + 0.08 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, label


def coverage(
    x: np.ndarray, label: np.ndarray, kept: np.ndarray, sample: int = 20_000
) -> tuple[float, float]:
    """Blobs covered, and the mean cosine to the nearest kept record over every record (a
    seeded sample of ``sample`` above that: an exact search of all against all kept would cost
    more than the selection)."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x[kept]))
    rows = np.arange(len(x))
    if len(x) > sample:
        rows = np.sort(np.random.default_rng(1).choice(len(x), size=sample, replace=False))
    sims = index.search(np.ascontiguousarray(x[rows]), 1)[0][:, 0]
    return len(np.unique(label[kept])) / len(np.unique(label)), float(sims.mean())


def run(x: np.ndarray, keep: int, one_level: bool) -> tuple[float, np.ndarray]:
    saved = typical.ONE_LEVEL_MAX
    typical.ONE_LEVEL_MAX = keep if one_level else saved
    try:
        t0 = time.perf_counter()
        kept, _ = typical.typical_pick(x, np.arange(len(x)), keep, 0.0, 0)
        return time.perf_counter() - t0, kept
    finally:
        typical.ONE_LEVEL_MAX = saved


def fits(x: np.ndarray, keep: int, masked: float = 0.25, copied: float = 0.05) -> dict[str, float]:
    """Seconds of the eligible fit (k-means on the eligible rows), the pool fit (on every row,
    the rest masked) and the distinct fit (copy groups found, then one row per group), with a
    seeded ``masked`` share of the rows not eligible and a ``copied`` share copies of others."""
    rng = np.random.default_rng(2)
    n = len(x)
    eligible = rng.random(n) >= masked
    rows = np.arange(n)
    keys = rng.integers(1, 2**63, size=(n, 20), dtype=np.uint64)
    copies = rng.choice(n, size=round(copied * n), replace=False)
    keys[copies, 0] = keys[rng.integers(0, n, size=len(copies)), 0]
    hashes = np.array([f"h{i}" for i in rows], dtype=object)
    t0 = time.perf_counter()
    typical.typical_pick(x[eligible], rows[eligible], keep, 0.0, 0)
    t1 = time.perf_counter()
    typical.typical_pick(x, rows, keep, 0.0, 0, eligible=eligible)
    t2 = time.perf_counter()
    groups = copy_groups(hashes, keys, rows)
    typical.typical_pick(x, rows, keep, 0.0, 0, eligible=eligible, copy_of=groups)
    t3 = time.perf_counter()
    return {
        "masked": masked,
        "copied": copied,
        "eligible_fit_s": t1 - t0,
        "pool_fit_s": t2 - t1,
        "distinct_fit_s": t3 - t2,
    }


def positional_plus_plus(x: np.ndarray, k: int, seed: int, keys: np.ndarray) -> np.ndarray:
    """The straightforward k-means++ start: each draw a position in the list of rows (a row
    that leaves shifts every later draw); ``keys`` unused. The same sample size as euds's."""
    rng = np.random.default_rng([seed, 23])
    if len(x) > typical.PLUS_PLUS_SAMPLE:
        x = x[np.sort(rng.choice(len(x), size=typical.PLUS_PLUS_SAMPLE, replace=False))]
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    d2 = np.full(n, 1.0)
    for j in range(k):
        at = (
            int(rng.integers(n)) if j == 0 or d2.sum() <= 0 else int(rng.choice(n, p=d2 / d2.sum()))
        )
        centres[j] = x[at]
        nearest = np.maximum(2.0 - 2.0 * (x @ x[at]), 0.0)
        d2 = nearest if j == 0 else np.minimum(d2, nearest)
    return centres


def positional_sample(keys: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The straightforward training sample (FAISS's way): ``size`` positions drawn at random,
    so a row that leaves shifts the draw; ``keys`` unused but for their count."""
    return np.sort(np.random.default_rng(seed).choice(len(keys), size=size, replace=False))


def starts(x: np.ndarray, budget: float, trials: int = 3) -> dict[str, dict[str, float]]:
    """Per start: seconds of a selection (best of ``trials``) and the mean share of its subset
    kept again when one record it did not keep leaves the pool (``trials`` seeds)."""
    n = len(x)
    keep = round(budget * n)
    rows = np.arange(n)
    out = {}
    draws = (
        ("positional", positional_plus_plus, positional_sample),
        ("coordinated", typical.plus_plus, typical._coordinated_sample),
    )
    for name, start, sample in draws:
        saved = typical.plus_plus, typical._coordinated_sample
        typical.plus_plus, typical._coordinated_sample = start, sample
        try:
            seconds, shared = [], []
            for seed in range(trials):
                t0 = time.perf_counter()
                kept, _ = typical.typical_pick(x, rows, keep, 0.0, seed)
                seconds.append(time.perf_counter() - t0)
                gone = np.setdiff1d(rows, kept)[seed * 97 % (n - keep)]
                left = np.delete(rows, gone)
                again, _ = typical.typical_pick(x[left], left, keep, 0.0, seed)
                shared.append(len(np.intersect1d(kept, again)) / keep)
        finally:
            typical.plus_plus, typical._coordinated_sample = saved
        out[name] = {"seconds": min(seconds), "shared": float(np.mean(shared))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,50000")
    parser.add_argument("--million", action="store_true")
    args = parser.parse_args()
    rows, results = [], []
    for n in [int(v) for v in args.sizes.split(",")]:
        x, label = blobs(n, n // 20)
        keep = round(0.16 * n)
        t_one, kept_one = run(x, keep, one_level=True)
        t_two, kept_two = run(x, keep, one_level=False)
        cov_one, cov_two = coverage(x, label, kept_one), coverage(x, label, kept_two)
        rows.append([f"{n:,}: one level", t_one, cov_one[0], cov_one[1], "-"])
        rows.append([f"{n:,}: two levels", t_two, cov_two[0], cov_two[1], f"{t_one / t_two:.1f}x"])
        fit = fits(x, keep)
        rows.append([f"{n:,}: eligible fit, 25% masked", fit["eligible_fit_s"], "", "", ""])
        ratio = fit["pool_fit_s"] / fit["eligible_fit_s"]
        rows.append(
            [f"{n:,}: pool fit, 25% masked", fit["pool_fit_s"], "", "", f"{ratio:.2f}x time"]
        )
        ratio = fit["distinct_fit_s"] / fit["eligible_fit_s"]
        rows.append(
            [f"{n:,}: distinct fit, 5% copies", fit["distinct_fit_s"], "", "", f"{ratio:.2f}x time"]
        )
        results.append(
            {
                "records": n,
                "kept": keep,
                "one_level_s": t_one,
                "two_level_s": t_two,
                "blobs_covered": [cov_one[0], cov_two[0]],
                "mean_nearest_kept_cosine": [cov_one[1], cov_two[1]],
                "fits": fit,
            }
        )
    start_rows = {}
    for budget in (0.16, 0.01):
        n = int(args.sizes.split(",")[0])
        x, _ = blobs(n, n // 20)
        start_rows[str(budget)] = found = starts(x, budget)
        for name, r in found.items():
            stays = f"{r['shared']:.1%} stays"
            rows.append([f"{n:,} at {budget:.0%}: {name} start", r["seconds"], "", "", stays])
    million = None
    if args.million:
        x, label = blobs(1_000_000, 50_000)
        keep = 160_000
        t_two, kept_two = run(x, keep, one_level=False)
        cov = coverage(x, label, kept_two)
        rows.append(["1,000,000: two levels", t_two, cov[0], cov[1], ""])
        million = {"records": 1_000_000, "kept": keep, "two_level_s": t_two, "coverage": cov}
    print(
        table(
            rows,
            [
                "pool",
                "seconds",
                "blobs covered",
                "mean cos to nearest kept",
                "speed-up or share staying",
            ],
        )
    )
    write_result(
        "typical", {"budget": 0.16, "sizes": results, "starts": start_rows, "million": million}
    )


if __name__ == "__main__":
    main()
