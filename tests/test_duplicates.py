"""The duplicate rule (euds.duplicates): contained texts against a brute-force search, the suffix
array against sorted suffixes, what containment leaves, and which copy of a near-duplicate group
stays, against a pair-by-pair reference."""

import numpy as np
import pytest

from euds.duplicates import (
    contained_texts,
    copy_groups,
    fold_for_near_duplicates,
    near_duplicates,
    suffix_array,
    word_ids,
)


def brute_force_contained(texts, usable):
    """Every usable text whose folded words occur inside a longer usable text, or equal those of
    an earlier usable text (the rule, checked pair by pair)."""
    words = [tuple(fold_for_near_duplicates(t).split()) if t else () for t in texts]
    out = []
    for i, w in enumerate(words):
        if not usable[i] or not w:
            continue
        for j, v in enumerate(words):
            if j == i or not usable[j]:
                continue
            inside = len(v) > len(w) and any(
                v[k : k + len(w)] == w for k in range(len(v) - len(w) + 1)
            )
            if inside or (v == w and j < i):
                out.append(i)
                break
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("seed", range(40))
def test_contained_texts_match_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    n, vocabulary = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    texts = [
        None
        if rng.random() < 0.1
        else " ".join(f"W{x}," for x in rng.integers(0, vocabulary, size=int(rng.integers(0, 7))))
        for _ in range(n)
    ]
    usable = rng.random(n) > 0.2
    got, _ = contained_texts(texts, usable)
    np.testing.assert_array_equal(np.sort(got), brute_force_contained(texts, usable))


def test_contained_keeps_the_longer_and_the_first_of_equals():
    texts = [
        "A gripping, funny film.",  # 0: contains 1 and 3
        "funny film",  # 1
        "the funny film is long",  # 2: contains 1 too
        "FUNNY   film!",  # 3: the same words as 1, later
        "film funny",  # 4: other order: not contained
        "",  # 5: no words: never contained
        "gripping",  # 6: unusable below, so nothing is dropped for it
    ]
    usable = np.array([True, True, True, True, True, True, False])
    rows, equal = contained_texts(texts, usable)
    assert rows.tolist() == [1, 3] and equal == 1
    # A container that is not usable does not count: 1 stays when 0 and 2 are gone.
    rows, _ = contained_texts(texts, np.array([False, True, False, True, True, True, True]))
    assert rows.tolist() == [3]
    with pytest.raises(ValueError, match="usable"):
        contained_texts(texts, usable[:-1])


@pytest.mark.parametrize("seed", range(20))
def test_suffix_array_sorts_the_suffixes(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, int(rng.integers(1, 5)), size=int(rng.integers(0, 60)))
    want = sorted(range(len(x)), key=lambda i: x[i:].tolist())
    np.testing.assert_array_equal(suffix_array(x), np.array(want, dtype=np.int64))


def test_word_ids_are_shared_between_texts():
    offsets, ids = word_ids(["The film", None, "film, the FILM"])
    assert offsets.tolist() == [0, 2, 2, 5]
    assert ids.tolist() == [0, 1, 1, 0, 1]


def test_sst2_train_is_mostly_contained_phrases(data_dir):
    from conftest import read_jsonl_gz

    texts = [r["text"] for r in read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 3000)]
    rows, _ = contained_texts(texts, np.ones(len(texts), dtype=bool))
    # Phrases cut from the same sentences: many are inside another text of even a 3,000 slice
    # (of the whole file, 60,492 of 67,349: bench/contained.py).
    assert 0.1 < len(rows) / len(texts) < 0.95
    folded = [fold_for_near_duplicates(t) for t in texts]
    for i in rows[:50]:
        assert any(
            j != i and f" {folded[i]} " in f" {folded[j]} " and len(folded[j]) >= len(folded[i])
            for j in range(len(texts))
        )


def reference_near_duplicates(keys, usable, prefer, keep_none=False):
    """Which usable records lose their near-duplicate group, the slow way: groups by a union of
    every pair sharing a key, then within each group the copy that stays compared one by one
    (the lowest finite value of ``prefer``, the first among equals; no preference: the first);
    with ``keep_none``, every member of a group of two or more."""
    rows = [i for i in range(len(keys)) if usable[i] and keys[i].any()]
    group = {i: i for i in rows}

    def find(i):
        while group[i] != i:
            i = group[i]
        return i

    for a in rows:
        for b in rows:
            if a < b and (keys[a] == keys[b]).any():
                group[max(find(a), find(b))] = min(find(a), find(b))

    def rank(i):
        if prefer is None or not np.isfinite(prefer[i]):
            return (1, i)
        return (0, float(prefer[i]), i)

    stays = {}
    for i in rows:
        g = find(i)
        if g not in stays or rank(i) < rank(stays[g]):
            stays[g] = i
    lost = [i for i in rows if stays[find(i)] != i]
    if keep_none:
        lost = [i for i in rows if sum(find(j) == find(i) for j in rows) > 1]
    return np.array(lost, dtype=np.int64), len({find(i) for i in lost})


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("preference", ["first", "lowest", "none"])
def test_near_duplicates_match_a_pair_by_pair_reference(seed, preference):
    rng = np.random.default_rng(seed)
    n, bands = int(rng.integers(1, 80)), int(rng.integers(1, 5))
    keys = rng.integers(0, int(rng.integers(2, 2 * n + 3)), size=(n, bands)).astype(np.uint64)
    keys[rng.random(n) < 0.1] = 0  # no text: matches nothing
    usable = rng.random(n) < 0.85
    prefer = None
    if preference == "lowest":
        # Few distinct values (ties) and some NaN and infinite ones.
        prefer = rng.integers(0, 4, size=n).astype(np.float64)
        prefer[rng.random(n) < 0.1] = np.nan
        prefer[rng.random(n) < 0.05] = np.inf
        prefer[rng.random(n) < 0.05] = -np.inf
    keep_none = preference == "none"
    rows, groups = near_duplicates(keys, usable, prefer, keep_none=keep_none)
    want_rows, want_groups = reference_near_duplicates(keys, usable, prefer, keep_none)
    np.testing.assert_array_equal(rows, want_rows)
    assert groups == want_groups


def test_near_duplicates_keep_the_lowest_copy_not_the_first():
    keys = np.array([[1, 9], [2, 8], [1, 7], [3, 8], [4, 6]], dtype=np.uint64)  # {0,2}, {1,3}, {4}
    usable = np.ones(5, dtype=bool)
    prefer = np.array([2.0, np.nan, 1.0, 5.0, 0.0])
    rows, groups = near_duplicates(keys, usable, prefer)
    # Row 2 is lower than row 0; row 1 has no value, so row 3 stays; row 4 is alone.
    assert rows.tolist() == [0, 1] and groups == 2
    rows, groups = near_duplicates(keys, usable)
    assert rows.tolist() == [2, 3] and groups == 2
    # Keeping none: both members of each pair go, the lone record stays.
    assert near_duplicates(keys, usable, keep_none=True)[0].tolist() == [0, 1, 2, 3]
    # An unusable copy never stays, however low; nor does it make a group.
    usable[2] = False
    assert near_duplicates(keys, usable, prefer)[0].tolist() == [1]
    assert near_duplicates(keys, usable, keep_none=True)[0].tolist() == [1, 3]


@pytest.mark.parametrize("seed", range(8))
def test_copy_groups_match_a_slow_union_find(seed):
    """copy_groups: near groups (shared nonzero key, transitively) and, for texts that fold to
    nothing (zero keys), text-hash groups; each row's group named by its first row."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50))
    keys = rng.integers(1, 6, size=(n, 3)).astype(np.uint64) * (rng.random((n, 3)) < 0.3)
    keys = np.where(keys == 0, rng.integers(100, 2**40, size=(n, 3)), keys).astype(np.uint64)
    keys[rng.random(n) < 0.3] = 0
    hashes = np.array([rng.choice(["a", "b", None, f"u{i}"]) for i in range(n)], dtype=object)
    rows = np.sort(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False))
    parent = {int(r): int(r) for r in rows}

    def root(r):
        while parent[r] != r:
            r = parent[r]
        return r

    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            ka, kb = keys[a].any(), keys[b].any()
            near = ka and kb and (keys[a] == keys[b]).any()
            same = not ka and not kb and hashes[a] is not None and hashes[a] == hashes[b]
            if near or same:
                ra, rb = root(int(a)), root(int(b))
                parent[max(ra, rb)] = min(ra, rb)
    want = [root(int(r)) for r in rows]
    np.testing.assert_array_equal(copy_groups(hashes, keys, rows), want)
