"""Typed entry points to the compiled kernels (``euds._core``).

These wrappers own the defaults, the documentation and the friendlier shapes (3-D logits,
boolean masks); the core itself checks dtype, shape and layout strictly and never copies: a
float64 array where float32 is needed raises ``ValueError`` naming the fix.

This module is the public face of the core, for users. euds's own modules (signals, select,
the driver) call ``euds._core`` directly on their hot paths: they pass arrays already in the
core's dtypes and layouts, so the wrappers' conversions would only cost time there.
"""

from __future__ import annotations

import operator

import numpy as np

from euds import _core
from euds._core import EudsError, UnigramCounts, build_info, num_threads

#: The largest thread count ``set_num_threads`` accepts. Far above any useful count (the
#: kernels are memory-bound well before), low enough that a typo cannot exhaust the process.
MAX_THREADS: int = _core.MAX_THREADS

__all__ = [
    "MAX_THREADS",
    "EudsError",
    "UnigramCounts",
    "band_select",
    "build_info",
    "cuda_available",
    "information_entropy",
    "interval_mask",
    "mean_rank",
    "minhash_bands",
    "nan_quantiles",
    "num_threads",
    "percentile_ranks",
    "segment_mean",
    "set_num_threads",
    "soft_assignment_entropy",
    "softmax_entropy",
]


def set_num_threads(n: int) -> None:
    """Sets the kernels' thread count (the calling thread included); ``0`` restores the default
    (``EUDS_NUM_THREADS``, else the machine's hardware threads, at most ``MAX_THREADS``).

    Raises ``ValueError`` for ``n < 0`` or ``n > MAX_THREADS`` (1024) and ``TypeError`` for a
    non-integer. Safe from any thread, also while kernels run: it never waits; a running kernel
    keeps its threads and the next one uses ``n``. A ``fork()``ed child inherits the count.
    """
    n = operator.index(n)
    if not 0 <= n <= MAX_THREADS:
        raise ValueError(
            f"set_num_threads: n must be 0 (the default) or 1 to {MAX_THREADS}, got {n}"
        )
    _core.set_num_threads(n)


def information_entropy(offsets: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-sample Shannon entropy (nats) of the token ids of each CSR row; NaN for empty rows.

    ``offsets``: int64 ``[n + 1]`` starting at 0; ``ids``: int32, uint32 or int64.
    """
    return _core.information_entropy(offsets, ids)


def softmax_entropy(
    logits: np.ndarray,
    targets: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    scale: float = 1.0,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Entropy of ``softmax(scale * row)`` and ``-ln p[target]`` for every row, in one pass.

    ``logits``: float32 or float16, ``[rows, V]`` or ``[B, T, V]`` (C order); ``targets`` and
    ``mask`` have the leading shape. Masked-out rows are not read and give NaN. Returns
    float32 ``(entropy, nll)`` shaped like the leading dimensions; ``nll`` is None without
    targets. ``device="cuda"`` runs the CUDA kernel (copying host arrays to the GPU).
    """
    logits = _as_array(logits, "logits")
    lead = logits.shape[:-1]
    if logits.ndim not in (2, 3):
        raise ValueError(f"logits must be [rows, V] or [B, T, V], got shape {logits.shape}")
    if logits.ndim == 3 and not logits.flags.c_contiguous:
        raise ValueError("logits must be C-contiguous; pass np.ascontiguousarray(logits)")
    flat = logits.reshape(-1, logits.shape[-1]) if logits.ndim == 3 else logits
    t = None if targets is None else _flat(_as_array(targets, "targets"), lead, "targets")
    m = None if mask is None else _flat(_as_array(mask, "mask"), lead, "mask")
    if device == "cpu":
        ent, nll = _core.row_softmax_entropy(flat, t, m, scale)
    elif device == "cuda":
        if not build_info()["cuda_compiled"]:
            raise EudsError("this build of euds has no CUDA kernels (EUDS_ENABLE_CUDA=OFF)")
        if t is not None and t.dtype != np.int64:
            raise ValueError(
                "targets must be int64 for device='cuda'; use targets.astype(np.int64)"
            )
        ent, nll = _core.cuda_row_softmax_entropy(flat, t, m, scale)
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return ent.reshape(lead), None if nll is None else nll.reshape(lead)


def soft_assignment_entropy(
    similarities: np.ndarray, temperature: float, *, device: str = "cpu"
) -> np.ndarray:
    """Semantic entropy from top-m similarities ``[n, m]``: the entropy of
    ``softmax(s / temperature)`` per row (float32 or float16 in, float32 out)."""
    if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    ent, _ = softmax_entropy(similarities, scale=1.0 / float(temperature), device=device)
    return ent


def segment_mean(
    values: np.ndarray, segment: np.ndarray, n_segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per segment id (rows with a negative id are skipped) and the count of
    rows in each; NaN where a segment has no row."""
    return _core.segment_mean(values, segment, n_segments)


def nan_quantiles(x: np.ndarray, q: np.ndarray | list[float] | float) -> np.ndarray:
    """Quantiles of the non-NaN values of a score column (numpy's "linear" method)."""
    return _core.nan_quantiles(x, np.atleast_1d(np.asarray(q, dtype=np.float64)))


def interval_mask(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo <= x <= hi`` as a bool array; NaN is outside."""
    return _core.interval_mask(x, float(lo), float(hi))


def percentile_ranks(x: np.ndarray) -> np.ndarray:
    """``(average rank + 0.5) / n_valid`` in (0, 1); NaN stays NaN."""
    return _core.percentile_ranks(x)


def mean_rank(ranks: np.ndarray) -> np.ndarray:
    """Percentile ranks of the mean over the rows of ``ranks [k, n]`` (NaN if any is NaN)."""
    return _core.mean_rank(ranks)


def band_select(
    ranks: np.ndarray, position: float, keep: int, *, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Keeps exactly ``keep`` records by widening a band at ``position`` on every rank column
    of ``ranks [k, n]`` together; returns the bool mask and the final band width. Ties at the
    last width are broken by a hash of the record index seeded with ``seed``."""
    return _core.band_select(ranks, float(position), int(keep), int(seed))


def minhash_bands(
    offsets: np.ndarray,
    chars: np.ndarray,
    *,
    shingle: int = 5,
    bands: int = 20,
    rows: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """MinHash band keys ``[n_texts, bands]`` (uint64) of texts given as code points in CSR
    form: text i is ``chars[offsets[i]:offsets[i + 1]]`` (``offsets`` int64, ``chars`` uint32,
    e.g. ``np.frombuffer(s.encode("utf-32-le"), np.uint32)``).

    Each text is cut into overlapping shingles of ``shingle`` code points (a shorter non-empty
    text is one shingle); its signature is the minimum over its shingles of ``bands * rows``
    multiply-shift hashes, and band j's key mixes minima ``j*rows`` to ``(j+1)*rows - 1``. Two
    texts of Jaccard similarity J (over their shingle sets) share at least one key with
    probability ``1 - (1 - J**rows)**bands``: with the defaults 0.47 at J = 0.5, 0.80 at 0.6,
    0.97 at 0.7, 0.05 at 0.3. An empty text gets keys of 0. The keys depend on the inputs and
    ``seed`` only, not on the machine or the thread count."""
    return _core.minhash_bands(offsets, chars, int(shingle), int(bands), int(rows), int(seed))


def cuda_available() -> bool:
    """True when the CUDA kernels were built and a CUDA device is visible."""
    return bool(build_info()["cuda_compiled"]) and _core.cuda_device_count() > 0


def _as_array(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    return x


def _flat(a: np.ndarray, lead: tuple[int, ...], name: str) -> np.ndarray:
    if a.shape != lead:
        raise ValueError(f"{name} must have shape {lead} (the logits' leading dims), got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    return a.reshape(-1)
