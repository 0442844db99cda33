"""How budgets are shared and drawn (euds.selection.quotas): the vectorised tie key against the C++
one, water-filling against a one-record-at-a-time reference, seeded draws."""

import numpy as np
import pytest

from euds import _core
from euds.selection.quotas import draw, tie_keys, water_filling


def test_tie_keys_are_the_kernels():
    rows = np.array([0, 1, 2, 17, 2**40, 2**63 - 1], dtype=np.int64)
    for seed in (0, 1, 7, 2**64 - 1):
        want = [_core.tie_key(int(r), seed) for r in rows]
        assert tie_keys(rows, seed).tolist() == want


def water_filling_reference(sizes, total, seed):
    """One record at a time to the stratum with the smallest quota that still has room (ties
    among those at the level by the seeded hash of the stratum index)."""
    quota = [0] * len(sizes)
    keys = tie_keys(np.arange(len(sizes)), seed)
    for _ in range(total):
        room = [j for j in range(len(sizes)) if quota[j] < sizes[j]]
        level = min(quota[j] for j in room)
        at_level = [j for j in room if quota[j] == level]
        quota[min(at_level, key=lambda j: (keys[j], j))] += 1
    return quota


@pytest.mark.parametrize("seed", range(30))
def test_water_filling_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 30, size=int(rng.integers(1, 12)))
    total = int(rng.integers(0, sizes.sum() + 1))
    got = water_filling(sizes, total, seed)
    assert got.sum() == total and (got <= sizes).all()
    # The level: every stratum up to it is taken whole, the others are within one of each other.
    short = got[got < sizes]
    if len(short):
        level = short.min()
        assert (got[sizes <= level] == sizes[sizes <= level]).all()
        assert short.max() - level <= 1
    assert got.tolist() == water_filling_reference(sizes.tolist(), total, seed)


def test_water_filling_errors():
    with pytest.raises(ValueError, match="cannot share"):
        water_filling(np.array([1, 2]), 4, 0)


def test_draw_is_seeded_and_uniform():
    rows = np.arange(1000)
    a, b = draw(rows, 100, 3), draw(rows, 100, 3)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    assert not np.array_equal(np.sort(a), np.sort(draw(rows, 100, 4)))
    # A row's chance does not depend on the others drawn with it.
    assert set(draw(rows[::2], 50, 3)) <= set(rows[::2])
    counts = np.zeros(10)
    for seed in range(400):
        counts += np.bincount(draw(rows, 100, seed) // 100, minlength=10)
    assert counts.min() > 0.8 * counts.mean()
