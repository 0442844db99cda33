"""The corruption generator: seeded, every kind in equal shares, junk that is what it says."""

import collections
import re

import pytest

from euds.duplicates import text_hashes
from euds.research.noise import _FOREIGN, KINDS, make_junk, noisy_pool

POOL = [
    "a gripping , beautifully shot film about loss",
    "the plot never quite comes together",
    "it 's a charming and often affecting journey",
    "one of the year 's most enjoyable releases",
    "nothing here is worth the price of admission",
]


def _sentences(text):
    return [s.strip() for s in re.findall(r".+?[.!?。？]", text)]


def test_same_seed_same_junk_other_seed_other_junk():
    assert make_junk(POOL, 40, seed=3) == make_junk(POOL, 40, seed=3)
    assert make_junk(POOL, 40, seed=3) != make_junk(POOL, 40, seed=4)


@pytest.mark.parametrize("n", [0, 7, 8, 41])
def test_kinds_in_equal_shares(n):
    counts = collections.Counter(j.kind for j in make_junk(POOL, n, seed=0))
    assert sum(counts.values()) == n
    assert set(counts) <= set(KINDS)
    if n:
        assert max(counts.values()) - min(counts[k] for k in KINDS) <= 1


def test_junk_is_what_it_says():
    pool_hashes = set(text_hashes(POOL))
    junk = make_junk(POOL, 800, seed=1)
    for j in junk:
        assert j.text.strip(), j
        in_pool = text_hashes([j.text])[0] in pool_hashes
        # exact duplicates are pool texts; nothing else is (near duplicates differ in hash)
        assert in_pool == (j.kind == "exact_duplicate"), j
        if j.kind == "mojibake":
            assert not j.text.isascii() or any(c in j.text for c in "#@$%^&*~|\\<>{}[]"), j
        if j.kind == "repetitive":
            words = j.text.split()
            assert len(words) >= 6 and len(set(words)) <= len(words) / 3, j
        if j.kind == "truncated":
            assert len(j.text) < max(map(len, POOL)), j
        if j.kind == "other_language":
            # whole sentences of one language's list
            assert any(
                all(part in sentences for part in _sentences(j.text))
                for sentences in _FOREIGN.values()
            ), j


def test_noisy_pool_adds_the_share_with_random_labels_and_keeps_the_clean_order():
    records = [{"id": str(i), "text": POOL[i % 5] + f" {i}", "label": i % 2} for i in range(400)]
    noisy = noisy_pool(records, 0.2, seed=5)
    junk = [r for r in noisy if "junk" in r]
    assert len(noisy) == 500 and len(junk) == 100
    assert [r for r in noisy if "junk" not in r] == records
    assert {r["label"] for r in junk} == {0, 1}
    assert len({r["id"] for r in noisy}) == 500
    assert noisy == noisy_pool(records, 0.2, seed=5)
    positions = [i for i, r in enumerate(noisy) if "junk" in r]
    assert positions != list(range(400, 500))  # spread through the pool, not appended
    with pytest.raises(ValueError, match="share"):
        noisy_pool(records, 1.0, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        make_junk(["", " "], 3, seed=0)
