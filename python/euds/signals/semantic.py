"""Semantic entropy: how evenly a text's embedding sits between the pool's clusters (DESIGN.md).

e(x) = L2-normalised mean-pooled all-MiniLM-L6-v2 embedding (text cut at 256 word pieces);
spherical k-means over the pool (FAISS, K centroids); s_k = <e(x), mu_k> for the m = min(K, 32)
nearest centroids; q = softmax(s / tau); SE(x) = -sum_k q_k ln q_k.

This is an entropy of a soft cluster assignment, not Kuhn et al.'s semantic entropy (which
clusters several sampled generations of an LM by meaning): no generation is involved here.

Pieces: :class:`Embedder` (ONNX Runtime, length-bucketed batches by a token budget, pooling and
normalisation in the C++ core or in the graph), :func:`fit_centroids` (FAISS spherical k-means,
trained on a seeded sample of at most ``max_points_per_centroid * K`` points),
:func:`top_similarities` (exact inner-product search for the m nearest centroids) and
:func:`semantic_entropy` (the C++ soft-assignment kernel).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

from euds import _core
from euds.models import EmbedderFiles, embedder_files_for
from euds.runtime import onnx_session

DEFAULT_K = 16
DEFAULT_TEMPERATURE = 0.07  # the study in docs/semantic.md
DEFAULT_SEED = 1234
MAX_M = 32
DEFAULT_MAX_POINTS_PER_CENTROID = 256
DEFAULT_EMBED_BATCH_TOKENS = 8192
POOLINGS: tuple[str, ...] = ("core", "graph")
EMBED_PRECISIONS: tuple[str, ...] = ("fp32", "int8-block", "int8")


class Embedder:
    """Texts -> L2-normalised float32 sentence embeddings ``[n, dim]`` (NaN rows for texts that
    are missing, empty or whitespace-only), in input order.

    ``files``: a prepared :class:`~euds.models.EmbedderFiles` or its folder, or a
    sentence-transformers folder (exported on first use; pooling — mean, cls or max — and the
    word-piece limit read from its config); default: all-MiniLM-L6-v2. Embeddings are always
    L2-normalised (spherical k-means needs unit vectors): for a model without a Normalize
    module they have the direction of sentence-transformers' output (cosine 1).

    ``pooling="core"`` runs the encoder graph (token states out) and pools in C++;
    ``pooling="graph"`` runs optimum's sentence-transformers export, which pools and
    normalises inside ONNX Runtime. ``precision``: ``fp32`` (default; cosine >= 0.9999 with
    sentence-transformers), ``int8-block`` (1.25x faster, min cosine 0.998 with fp32 on
    SST-2) or ``int8`` (dynamic: 2x faster, min cosine 0.96) — see bench/README.md.
    """

    def __init__(
        self,
        files: EmbedderFiles | str | os.PathLike[str] | None = None,
        *,
        batch_tokens: int = DEFAULT_EMBED_BATCH_TOKENS,
        pooling: Literal["core", "graph"] = "core",
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        if not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if precision not in EMBED_PRECISIONS:
            raise ValueError(f"precision must be one of {EMBED_PRECISIONS}, got {precision!r}")
        if precision != "fp32" and pooling != "core":
            raise ValueError("the quantised encoders pool in the core: use pooling='core'")
        self.files = embedder_files_for(files)
        info = self.files.info()
        if pooling == "graph" and not self.files.has_pooled:
            raise ValueError(
                f"{self.files.folder} has no in-graph pooling export "
                f"({info.get('pooled_graph_error', 'not built')}): use pooling='core'"
            )
        self.batch_tokens = batch_tokens
        self.pooling = pooling
        self.mode = str(info["pooling"])  # how token states become one vector
        self.max_seq_length = int(info["max_seq_length"])
        if batch_tokens < self.max_seq_length:
            # The bound holds for every call only if one text of the word-piece limit fits.
            raise ValueError(
                f"embed_batch_tokens ({batch_tokens}) is below the embedder's word-piece limit "
                f"({self.max_seq_length}), the longest row of a call: raise --embed-batch-tokens"
            )
        self.tokenizer = Tokenizer.from_file(str(self.files.tokenizer))
        self.tokenizer.no_padding()
        # The embedder's own limit (sentence_bert_config.json's max_seq_length).
        self.tokenizer.enable_truncation(self.max_seq_length)
        if precision != "fp32":
            graph = self.files.variant(precision)
        else:
            graph = self.files.encoder if pooling == "core" else self.files.pooled
        self.precision = precision
        self.session = onnx_session(graph, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.files.config()["hidden_size"])

    def embed(self, texts: list[str | None]) -> np.ndarray:
        n = len(texts)
        out = np.full((n, self.dim), np.nan, dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t is not None and t.strip()]
        if not todo:
            return out
        encodings = self.tokenizer.encode_batch_fast([texts[i] for i in todo])  # type: ignore[misc]
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(todo))
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            stop = start + max(1, self.batch_tokens // width)
            chosen = order[start:stop]
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            for r, j in enumerate(chosen):
                e = encodings[j].ids
                ids[r, : len(e)] = e
                mask[r, : len(e)] = 1
            out[[todo[j] for j in chosen]] = self._run(ids, mask)
            start = stop
        return out

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        if self.pooling == "graph":
            (emb,) = self.session.run(["sentence_embedding"], feed)
            # A model without a Normalize module pools unnormalised: SE needs unit vectors.
            return _normalize(np.asarray(emb, dtype=np.float32))
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        hidden = np.ascontiguousarray(hidden, dtype=np.float32)
        if self.mode == "mean":
            return _core.mean_pool_normalize(hidden, mask)
        if self.mode == "cls":
            return _normalize(hidden[:, 0].copy())
        # max: over the text's own tokens (sentence-transformers sets padding to -1e9 first)
        return _normalize(np.where(mask[:, :, None] > 0, hidden, -np.inf).max(axis=1))


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32), as sentence-transformers' Normalize does."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def fit_centroids(
    embeddings: np.ndarray,
    k: int = DEFAULT_K,
    *,
    seed: int = DEFAULT_SEED,
    niter: int = 20,
    max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID,
    gpu: bool | None = None,
) -> np.ndarray:
    """Spherical k-means centroids ``[k, d]`` (unit norm) of the non-NaN rows of ``embeddings``.

    Training sample: FAISS draws at most ``max_points_per_centroid * k`` rows with the seeded
    generator (all rows when the pool is smaller), so the cost stays bounded on large pools and
    the same seed gives the same centroids. ``gpu``: None = use GPU FAISS when it is there.
    """
    import faiss

    x = _valid_rows(embeddings)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if len(x) < k:
        raise ValueError(f"k-means with k={k} needs at least {k} embedded texts, got {len(x)}")
    use_gpu = _faiss_gpu() if gpu is None else gpu
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        spherical=True,
        seed=seed,
        max_points_per_centroid=max_points_per_centroid,
        gpu=use_gpu,
        verbose=False,
    )
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids


def top_similarities(
    embeddings: np.ndarray, centroids: np.ndarray, m: int | None = None
) -> np.ndarray:
    """``[n, m]`` inner products with the m nearest centroids (exact search, largest first);
    NaN rows stay NaN. m defaults to min(K, 32)."""
    import faiss

    k, d = centroids.shape
    m = min(k, MAX_M) if m is None else m
    if not 1 <= m <= k:
        raise ValueError(f"m must lie in [1, K={k}], got {m}")
    if embeddings.ndim != 2 or embeddings.shape[1] != d:
        raise ValueError(f"embeddings must be [n, {d}], got shape {embeddings.shape}")
    out = np.full((len(embeddings), m), np.nan, dtype=np.float32)
    ok = ~np.isnan(embeddings).any(axis=1)
    if ok.any():
        index = faiss.IndexFlatIP(d)
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        sims, _ = index.search(np.ascontiguousarray(embeddings[ok], dtype=np.float32), m)
        out[ok] = sims
    return out


def nearest_centroid(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The hard k-means cluster of each row: the index of the centroid with the largest inner
    product (the lowest index on a tie), int64; -1 for a NaN row (a record without text).
    Works through ``embeddings`` (an mmap is fine) in bounded float32 blocks."""
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"embeddings must be [n, {centroids.shape[1]}], got shape {embeddings.shape}"
        )
    out = np.full(len(embeddings), -1, dtype=np.int64)
    for a in range(0, len(embeddings), 1 << 16):
        e = np.asarray(embeddings[a : a + (1 << 16)], dtype=np.float32)
        ok = ~np.isnan(e).any(axis=1)
        out[a : a + len(e)][ok] = np.argmax(e[ok] @ centroids.T, axis=1)
    return out


def semantic_entropy(
    similarities: np.ndarray, temperature: float = DEFAULT_TEMPERATURE
) -> np.ndarray:
    """SE per row of top-m similarities: the entropy of softmax(s / temperature), float64."""
    sims = np.ascontiguousarray(similarities, dtype=np.float32)
    if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    ent, _ = _core.row_softmax_entropy(sims, None, None, 1.0 / float(temperature))
    return ent.astype(np.float64)


def assign(
    embeddings: np.ndarray,
    centroids: np.ndarray,
    m: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
) -> np.ndarray:
    """SE of each embedding against the pool's centroids: the entropy of its soft assignment
    to the m nearest (NaN rows give NaN)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    return semantic_entropy(top_similarities(emb, centroids, m), temperature)


def _valid_rows(embeddings: np.ndarray) -> np.ndarray:
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
        raise ValueError("embeddings must be a 2-D numpy array [n, d]")
    x = embeddings[~np.isnan(embeddings).any(axis=1)]
    return np.ascontiguousarray(x, dtype=np.float32)


def _faiss_gpu() -> bool:
    try:
        import faiss

        return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    except ImportError:  # pragma: no cover
        return False
