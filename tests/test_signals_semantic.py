"""Semantic entropy: embeddings vs sentence-transformers, SE vs numpy, clustering, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from euds.signals.semantic import (
    Embedder,
    fit_centroids,
    nearest_centroid,
    semantic_entropy,
    top_similarities,
)

# Every test here uses the exported embedder.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files():
    """The exported embedder's files (prepared once in the cache)."""
    from euds.models import embedder_files

    return embedder_files()


@pytest.fixture(scope="module")
def embedder(files):
    return Embedder(files)


@pytest.fixture(scope="module")
def sst2_texts(sst2_records):
    return [r["text"] for r in sst2_records[:200]]


def test_embeddings_match_sentence_transformers(embedder, sst2_texts):
    """DESIGN: cosine >= 0.9999 against sentence-transformers (fp32) on 200 SST-2 sentences."""
    st = pytest.importorskip("sentence_transformers")
    from euds.models import minilm_path

    model = st.SentenceTransformer(str(minilm_path()), device="cpu")
    ref = model.encode(sst2_texts, normalize_embeddings=True, convert_to_numpy=True)
    got = embedder.embed(sst2_texts)
    cosine = np.sum(got * ref, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_long_texts_are_cut_at_256_word_pieces_like_sentence_transformers(embedder, ng_posts):
    st = pytest.importorskip("sentence_transformers")
    from euds.models import minilm_path

    long_posts = [p for p in ng_posts if len(p) > 3000][:10]
    model = st.SentenceTransformer(str(minilm_path()), device="cpu")
    assert model.max_seq_length == 256
    ref = model.encode(long_posts, normalize_embeddings=True)
    got = embedder.embed(long_posts)
    assert np.sum(got * ref, axis=1).min() >= 0.9999


def test_graph_pooling_equals_core_pooling(files, sst2_texts):
    a = Embedder(files, pooling="core").embed(sst2_texts[:60])
    b = Embedder(files, pooling="graph").embed(sst2_texts[:60])
    np.testing.assert_allclose(a, b, atol=2e-6)


@pytest.mark.parametrize(("precision", "min_cosine"), [("int8-block", 0.995), ("int8", 0.9)])
def test_quantised_encoders_stay_close_to_fp32(files, sst2_texts, precision, min_cosine):
    a = Embedder(files).embed(sst2_texts[:80])
    b = Embedder(files, precision=precision).embed(sst2_texts[:80])
    assert np.sum(a * b, axis=1).min() >= min_cosine
    with pytest.raises(ValueError, match="pooling"):
        Embedder(files, precision=precision, pooling="graph")


def test_batch_budget_does_not_change_embeddings(files, sst2_texts):
    a = Embedder(files, batch_tokens=8192).embed(sst2_texts[:50])
    # The smallest budget allowed: one text of the word-piece limit per call at most.
    b = Embedder(files, batch_tokens=256).embed(sst2_texts[:50])
    np.testing.assert_allclose(a, b, atol=2e-6)
    with pytest.raises(ValueError, match="word-piece limit"):
        Embedder(files, batch_tokens=255)


def test_missing_and_empty_texts_give_nan_rows(embedder):
    out = embedder.embed(["a fine film", "", "   ", None, "another one"])
    nan_rows = np.isnan(out).all(axis=1)
    assert nan_rows.tolist() == [False, True, True, True, False]
    assert np.isfinite(out[[0, 4]]).all()
    assert embedder.embed([]).shape == (0, 384)


def numpy_se(emb: np.ndarray, centroids: np.ndarray, m: int, tau: float) -> np.ndarray:
    """The definition, plainly: all similarities, keep the m largest, softmax, entropy."""
    sims = emb.astype(np.float64) @ centroids.astype(np.float64).T
    top = -np.sort(-sims, axis=1)[:, :m] / tau
    top -= top.max(axis=1, keepdims=True)
    q = np.exp(top) / np.exp(top).sum(axis=1, keepdims=True)
    return -(q * np.log(q)).sum(axis=1)


@pytest.mark.parametrize(
    ("k", "m", "tau"), [(16, 16, 0.05), (40, 32, 0.05), (8, 3, 0.2), (5, 1, 0.05)]
)
def test_se_matches_numpy_on_fixed_centroids(k, m, tau):
    rng = np.random.default_rng(k)
    emb = rng.standard_normal((500, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centroids = rng.standard_normal((k, 384)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    got = semantic_entropy(top_similarities(emb, centroids, m), tau)
    np.testing.assert_allclose(got, numpy_se(emb, centroids, m, tau), atol=1e-5)


def test_clustering_is_seeded(embedder, sst2_texts):
    emb = embedder.embed(sst2_texts)
    a = fit_centroids(emb, 8, seed=7)
    b = fit_centroids(emb, 8, seed=7)
    c = fit_centroids(emb, 8, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    se_a = semantic_entropy(top_similarities(emb, a))
    se_b = semantic_entropy(top_similarities(emb, b))
    assert np.array_equal(se_a, se_b)


def test_nan_embeddings_are_skipped_by_clustering_and_stay_nan():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((100, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[::10] = np.nan
    centroids = fit_centroids(emb, 4)
    se = semantic_entropy(top_similarities(emb, centroids))
    assert np.isnan(se[::10]).all() and np.isfinite(np.delete(se, np.s_[::10])).all()


def test_nearest_centroid_matches_a_loop():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((300, 8)).astype(np.float16)  # stored embeddings are float16
    emb[::7] = np.nan
    centroids = rng.standard_normal((5, 8)).astype(np.float32)
    centroids[3] = centroids[1]  # a tie: the lower index wins
    expected = []
    for row in emb.astype(np.float32):
        if np.isnan(row).any():
            expected.append(-1)
            continue
        sims = [float(np.dot(row, c)) for c in centroids]
        expected.append(sims.index(max(sims)))
    labels = nearest_centroid(emb, centroids)
    assert labels.dtype == np.int64 and labels.tolist() == expected
    assert 3 not in labels and (labels == -1).sum() == len(emb[::7])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e, c: fit_centroids(e, 0), "k must"),
        (lambda e, c: fit_centroids(e[:3], 4), "at least 4"),
        (lambda e, c: fit_centroids(e[0], 4), "2-D"),
        (lambda e, c: top_similarities(e, c, 99), "m must"),
        (lambda e, c: top_similarities(e[:, :5], c), "embeddings must"),
        (lambda e, c: nearest_centroid(e[:, :5], c), "embeddings must"),
        (lambda e, c: semantic_entropy(top_similarities(e, c), 0.0), "temperature"),
        (lambda e, c: Embedder(batch_tokens=0), "batch_tokens"),
        (lambda e, c: Embedder(pooling="max"), "pooling"),
    ],
)
def test_bad_arguments_are_value_errors(call, message):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((20, 8)).astype(np.float32)
    cents = emb[:4] / np.linalg.norm(emb[:4], axis=1, keepdims=True)
    with pytest.raises(ValueError, match=message):
        call(emb, cents)


# -- a user's own sentence encoder ---------------------------------------------------------------


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False), ("max", True)])
def test_own_sentence_encoder_matches_sentence_transformers(
    tmp_path, training_texts, sst2_texts, ng_posts, pooling, normalize
):
    """A tiny random BERT saved by sentence-transformers with each pooling: cosine >= 0.9999
    with sentence-transformers, long posts cut at the folder's own 64 word pieces."""
    st = pytest.importorskip("sentence_transformers")
    from model_factories import make_tiny_sentence_encoder

    folder = make_tiny_sentence_encoder(
        tmp_path / "st", training_texts, pooling=pooling, normalize=normalize
    )
    texts = sst2_texts[:40] + ng_posts[:6]
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    ours = Embedder(str(folder))
    assert (ours.mode, ours.max_seq_length, ours.files.info()["normalize"]) == (
        pooling,
        64,
        normalize,
    )
    for got in (ours.embed(texts), Embedder(str(folder), pooling="graph").embed(texts)):
        cosine = np.sum(got * ref, axis=1) / np.linalg.norm(ref, axis=1)
        assert cosine.min() >= 0.9999, (pooling, cosine.min())
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_as_a_users_folder_matches_sentence_transformers(sst2_texts):
    st = pytest.importorskip("sentence_transformers")
    from euds.models import minilm_path

    ours = Embedder(str(minilm_path()))
    assert ours.files.info()["pooling"] == "mean" and ours.max_seq_length == 256
    model = st.SentenceTransformer(str(minilm_path()), device="cpu")
    ref = model.encode(sst2_texts[:100], normalize_embeddings=True, convert_to_numpy=True)
    assert np.sum(ours.embed(sst2_texts[:100]) * ref, axis=1).min() >= 0.9999
