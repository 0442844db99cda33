"""The duplicate rule (euds.duplicates): contained texts against a brute-force search, the suffix
array against sorted suffixes, and what containment leaves."""

import numpy as np
import pytest

from euds.duplicates import (
    contained_texts,
    fold_for_near_duplicates,
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
