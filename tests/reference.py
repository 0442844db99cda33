"""Slow, obvious float64 numpy references for the compiled kernels (``euds._core``).

Every function here is written for clarity, not speed: per-row loops, ``collections.Counter``,
brute-force sorting. The tests compare the kernels against these on small inputs.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter

import numpy as np

MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# Row softmax entropy / NLL (generative and semantic entropy)


def row_softmax_entropy(
    logits: np.ndarray,
    targets: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Entropy of ``softmax(scale * row)`` and ``-ln p[target]`` per row, in float64.

    ``logits`` may be float16 or float32: its values are upcast exactly to float64 first. The
    kernel takes ``scale`` as a C ``float``, so it is rounded to float32 here as well. A row
    holding NaN or +inf gives NaN, -inf entries have zero probability, a row of only -inf (or
    no column at all) gives NaN, masked-out rows give NaN.
    """
    x = np.asarray(logits)
    rows = x.shape[0]
    s = float(np.float32(scale))
    entropy = np.full(rows, np.nan)
    nll = None if targets is None else np.full(rows, np.nan)
    for r in range(rows):
        if mask is not None and not mask[r]:
            continue
        h, lp = _row_entropy_logp(x[r].astype(np.float64) * s)
        entropy[r] = h
        if nll is not None and lp is not None:
            nll[r] = -lp[int(targets[r])]
    return entropy, nll


def _row_entropy_logp(z: np.ndarray) -> tuple[float, np.ndarray | None]:
    """(entropy, log-probabilities) of one row of scaled logits via log-sum-exp."""
    if z.size == 0 or np.isnan(z).any() or np.isposinf(z).any():
        return math.nan, None
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return math.nan, None
    m = finite.max()
    log_s = math.log(float(np.exp(finite - m).sum()))
    with np.errstate(invalid="ignore"):
        logp = (z - m) - log_s  # -inf stays -inf: probability 0
    p = np.exp(logp)
    contrib = np.where(p > 0.0, -p * np.where(p > 0.0, logp, 0.0), 0.0)
    return max(float(contrib.sum()), 0.0), logp


def segment_mean(
    values: np.ndarray, segment: np.ndarray, n_segments: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` (upcast to float64, summed in row order) per segment id."""
    total = [0.0] * n_segments
    count = [0] * n_segments
    for v, s in zip(values.tolist(), segment.tolist(), strict=True):
        if s < 0:
            continue
        if s >= n_segments:
            raise IndexError(f"segment {s} >= n_segments {n_segments}")
        total[s] += float(v)
        count[s] += 1
    mean = np.array([t / c if c else math.nan for t, c in zip(total, count, strict=True)])
    return mean.reshape(n_segments), np.array(count, dtype=np.int64).reshape(n_segments)


# ---------------------------------------------------------------------------------------------
# Information entropy (CSR token-id batches)


def csr_rows(offsets: np.ndarray, ids: np.ndarray) -> list[list[int]]:
    """The rows of a CSR batch as Python lists."""
    return [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def shannon_entropy(offsets: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-row Shannon entropy (nats) of the empirical id distribution; NaN for empty rows."""
    out = []
    for row in csr_rows(offsets, ids):
        n = len(row)
        if n == 0:
            out.append(math.nan)
            continue
        terms = [-(c / n) * math.log(c / n) for c in Counter(row).values()]
        out.append(math.fsum(terms))
    return np.array(out, dtype=np.float64)


def unigram_counts(rows: list[list[int]], vocab_size: int = 0) -> np.ndarray:
    """Unigram counts over rows of ids; length max(vocab_size, largest id + 1)."""
    counter: Counter[int] = Counter()
    for row in rows:
        counter.update(row)
    size = max([vocab_size, *(k + 1 for k in counter)])
    counts = np.zeros(size, dtype=np.uint64)
    for k, c in counter.items():
        counts[k] = c
    return counts


def self_information(
    counts: np.ndarray, offsets: np.ndarray, ids: np.ndarray, alpha: float
) -> np.ndarray:
    """Mean of -ln P(t) over each row with P(t) = (c_t + alpha) / (N + alpha V)."""
    total = float(sum(int(c) for c in counts))
    vocab = len(counts)
    out = []
    for row in csr_rows(offsets, ids):
        if not row:
            out.append(math.nan)
            continue
        terms = []
        for t in row:
            c = (float(counts[t]) if t < vocab else 0.0) + alpha
            terms.append(math.inf if c == 0.0 else -math.log(c / (total + alpha * vocab)))
        out.append(math.fsum(terms) / len(row))
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Selection


def percentile_ranks(x: np.ndarray) -> np.ndarray:
    """(average 0-based rank + 0.5) / n_valid over the non-NaN values; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(x))
    n = len(valid)
    values = sorted(x[valid].tolist())
    for i in valid:
        below = bisect.bisect_left(values, x[i])  # values strictly smaller
        equal = bisect.bisect_right(values, x[i]) - below  # ties (-0.0 == 0.0)
        avg_rank = below + (equal - 1) / 2.0
        out[i] = (avg_rank + 0.5) / n
    return out


def mean_rank(ranks: np.ndarray) -> np.ndarray:
    """Percentile ranks of the mean over the k rows of ranks [k, n] (summed in row order)."""
    acc = np.zeros(ranks.shape[1])
    for row in ranks:
        acc = acc + row
    return percentile_ranks(acc / ranks.shape[0])


def tie_key(i: int, seed: int) -> int:
    """splitmix64 of i and the seed, as documented for band_select's tie-break."""
    golden = 0x9E3779B97F4A7C15
    z = (i + seed * golden + golden) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def entry_width(u: float, p: float) -> float:
    """Band width at which percentile rank u enters the band at position p."""
    if u < p:
        return (p - u) / p
    if u > p:
        return (u - p) / (1.0 - p)
    return 0.0


def record_widths(ranks: np.ndarray, position: float) -> np.ndarray:
    """w_i = max_j entry_width(ranks[j, i]); NaN when any rank of record i is NaN."""
    k, n = ranks.shape
    w = np.zeros(n)
    for i in range(n):
        col = [float(ranks[j, i]) for j in range(k)]
        w[i] = (
            math.nan
            if any(math.isnan(u) for u in col)
            else max(entry_width(u, position) for u in col)
        )
    return w


def band_select(
    ranks: np.ndarray, position: float, keep: int, seed: int, key=tie_key
) -> tuple[np.ndarray, float]:
    """Brute force: sort the records without NaN by (w_i, tie_key(i, seed), i), keep the first
    ``keep``; returns the mask and the width of the last one kept (0 when keep == 0)."""
    w = record_widths(ranks, position)
    valid = [i for i in range(len(w)) if not math.isnan(w[i])]
    if keep > len(valid):
        raise ValueError(f"cannot keep {keep} of {len(valid)}")
    order = sorted(valid, key=lambda i: (w[i], key(i, seed), i))
    mask = np.zeros(len(w), dtype=bool)
    mask[order[:keep]] = True
    return mask, (float(w[order[keep - 1]]) if keep else 0.0)


def exact_quantile(x: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile of the non-NaN values, exact for infinite values: an exact
    order statistic is returned as is; interpolating toward an infinity gives that infinity."""
    v = np.sort(np.asarray(x, dtype=np.float64)[~np.isnan(x)])
    if v.size == 0:
        return math.nan
    h = (v.size - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, v.size - 1)
    frac = h - lo
    a, b = float(v[lo]), float(v[hi])
    if frac == 0.0 or a == b:
        return a
    if math.isinf(a) and math.isinf(b):
        return math.nan  # -inf (1 - f) + inf f is undefined
    if math.isinf(a) or math.isinf(b):
        return a if math.isinf(a) else b
    return a + (b - a) * frac


# ---------------------------------------------------------------------------------------------
# MinHash band keys (near duplicates)


def mix64(x: int) -> int:
    """splitmix64's output function of x + golden ratio, on Python ints."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def minhash_bands(
    texts: list[str], shingle: int, bands: int, rows: int, seed: int = 0
) -> np.ndarray:
    """Band keys per text, one shingle and one hash function at a time, on Python ints."""
    n_hashes = bands * rows
    a = [mix64(seed ^ (2 * p + 1)) | 1 for p in range(n_hashes)]
    c = [mix64(seed ^ (2 * p + 2)) for p in range(n_hashes)]
    out = np.zeros((len(texts), bands), dtype=np.uint64)
    for i, text in enumerate(texts):
        if not text:
            continue
        width = min(shingle, len(text))
        hashes = set()
        for s in range(len(text) - width + 1):
            h = mix64(seed)
            for ch in text[s : s + width]:
                h = mix64(h ^ ord(ch))
            hashes.add(h)
        minima = [min(((a[p] * h + c[p]) & MASK64) >> 32 for h in hashes) for p in range(n_hashes)]
        for j in range(bands):
            key = mix64((seed + j + 1) & MASK64)
            for r in range(rows):
                key = mix64(key ^ minima[j * rows + r])
            out[i, j] = key
    return out
