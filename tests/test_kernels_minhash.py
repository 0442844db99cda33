"""Parity of the MinHash band-key kernel (``minhash_bands``) with a Python-int reference, and the
properties near-duplicate detection relies on: equal texts share every key, the chance of a
shared key follows ``1 - (1 - J**rows)**bands``, and the keys do not depend on the thread count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from euds import _core, kernels

sys.path.insert(0, str(Path(__file__).parent))
import reference as ref


def csr(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    chars = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return offsets, chars


def random_texts(rng: np.random.Generator, n: int) -> list[str]:
    alphabet = [*"abcde fghij", "é", "ß", "中", "\U0001f600", "\udcff"]
    return ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40)))) for _ in range(n)] + [
        "",
        "a",
        "abcd",
        "abcde",
        "abcdef",
    ]


@pytest.mark.parametrize(
    "shingle,bands,rows,seed", [(5, 20, 5, 0), (1, 3, 2, 7), (3, 1, 9, 2**64 - 1)]
)
def test_minhash_bands_matches_reference(shingle, bands, rows, seed):
    texts = random_texts(np.random.default_rng(shingle + bands), 60)
    offsets, chars = csr(texts)
    got = kernels.minhash_bands(offsets, chars, shingle=shingle, bands=bands, rows=rows, seed=seed)
    assert got.dtype == np.uint64 and got.shape == (len(texts), bands)
    np.testing.assert_array_equal(got, ref.minhash_bands(texts, shingle, bands, rows, seed))


def test_equal_texts_share_every_key_and_the_seed_changes_them():
    texts = ["the movie was great", "a different sentence", "the movie was great", ""]
    keys = kernels.minhash_bands(*csr(texts))
    np.testing.assert_array_equal(keys[0], keys[2])
    assert not np.isin(keys[1], keys[0]).any()
    assert (keys[3] == 0).all()
    assert not np.array_equal(kernels.minhash_bands(*csr(texts), seed=1)[0], keys[0])


def test_chance_of_a_shared_key_follows_the_banding_curve():
    # Texts of distinct symbols with a chosen overlap: shingle 1 makes the shingle sets the
    # symbol sets, so their Jaccard similarity is exact.
    rng = np.random.default_rng(0)
    bands, rows, pairs = 20, 5, 400
    for jaccard in (0.3, 0.5, 0.7):
        shared = round(100 * 2 * jaccard / (1 + jaccard))  # |A & B| / |A | B| = jaccard
        texts = []
        for p in range(pairs):
            base = 0x4E00 + p * 1000
            symbols = [chr(base + k) for k in rng.permutation(200)]
            texts += [
                "".join(symbols[:100]),
                "".join(symbols[:shared] + symbols[100 : 200 - shared]),
            ]
        keys = kernels.minhash_bands(*csr(texts), shingle=1, bands=bands, rows=rows)
        hit = (keys[0::2] == keys[1::2]).any(axis=1).mean()
        expected = 1 - (1 - jaccard**rows) ** bands
        assert abs(hit - expected) < 0.08, (jaccard, hit, expected)


def test_keys_do_not_depend_on_the_thread_count():
    texts = random_texts(np.random.default_rng(3), 3000)
    offsets, chars = csr(texts)
    before = _core.num_threads()
    try:
        _core.set_num_threads(1)
        one = kernels.minhash_bands(offsets, chars)
        _core.set_num_threads(4)
        four = kernels.minhash_bands(offsets, chars)
    finally:
        _core.set_num_threads(before)
    np.testing.assert_array_equal(one, four)


@pytest.mark.parametrize(
    "offsets,chars,kwargs,message",
    [
        (np.array([0, 2], np.int32), np.zeros(2, np.uint32), {}, "offsets"),
        (np.array([0, 2], np.int64), np.zeros(2, np.int32), {}, "chars"),
        (np.array([0, 3], np.int64), np.zeros(2, np.uint32), {}, "exceeds"),
        (np.array([0, 2, 1], np.int64), np.zeros(2, np.uint32), {}, "decrease"),
        (np.array([], np.int64), np.zeros(0, np.uint32), {}, "n_texts"),
        (np.array([0, 2], np.int64), np.zeros(2, np.uint32), {"rows": 0}, ">= 1"),
    ],
)
def test_bad_arguments_raise_value_error(offsets, chars, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kernels.minhash_bands(offsets, chars, **kwargs)
