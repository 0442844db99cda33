"""The duplicate rule, in one place: the keys the scoring pass stores for every record and the
groups a selection forms from them.

Three kinds, from the strictest:

* **exact** — :func:`text_hashes`: the same text after Unicode NFKC and whitespace folding (the
  ``text_hash`` column). A selection keeps the first usable copy (reason ``duplicate_text``).
* **near** — :func:`near_duplicate_keys`: MinHash band keys of the folded text
  (:func:`fold_for_near_duplicates`; the ``near_keys`` column, :data:`NEAR_DUPLICATES`).
  Records sharing a key are joined transitively (:func:`near_duplicate_groups`), as MinHash
  deduplication does; one usable record of each group stays (``near_duplicate_text`` for the
  rest): the first, or the one with the lowest value of a chosen score (:func:`near_duplicates`).
* **contained** — :func:`contained_texts`: a text whose folded word sequence occurs, as a
  contiguous run, inside a longer usable text of the pool is dropped in favour of the longer one
  (``contained_text``); of several texts with the same folded words the first stays. SST-2's
  training file is mostly phrases cut from its own sentences. Needs the texts, not the scores:
  found with a suffix array over the pool's word ids (:func:`suffix_array`), linear in the
  number of words apart from the sort.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

#: How near-duplicate keys are made (recorded in each selection's manifest; keys made with other
#: values match nothing, so a change here needs directories scored again): MinHash over
#: shingles of 5 code points of the folded text, 20 bands of 5 rows. A pair of Jaccard
#: similarity J shares a key with probability 1 - (1 - J**5)**20: 0.05 at J = 0.3, 0.47 at 0.5,
#: 0.80 at 0.6, 0.97 at 0.7 (short texts need the low threshold: one word dropped from a
#: ten-word sentence leaves J near 0.6).
NEAR_DUPLICATES: dict[str, int] = {"shingle": 5, "bands": 20, "rows": 5, "seed": 0}
_NOT_WORD = re.compile(r"[\W_]+")


# -- keys (made once per record by the scoring pass) ------------------------------------------


def text_hashes(texts: Sequence[str | None]) -> list[str | None]:
    """The ``text_hash`` column: 16 hex digits (64-bit BLAKE2b) of each text after Unicode NFKC
    normalisation and whitespace folding (runs of whitespace become one space, none at the
    ends), so that texts differing only in such form share a hash; None for a record without
    text. Case is kept: a change of case can change what a text says (or its label)."""
    return [
        None
        if text is None
        else hashlib.blake2b(
            " ".join(unicodedata.normalize("NFKC", text).split()).encode("utf-8"),
            digest_size=8,
        ).hexdigest()
        for text in texts
    ]


def fold_for_near_duplicates(text: str) -> str:
    """The text MinHash (and containment) sees: NFKC, case-folded, every run of characters
    other than letters and digits (punctuation, symbols, whitespace) one space, none at the
    ends. Texts that differ only in case, punctuation or spacing fold to the same string."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def near_duplicate_keys(texts: Sequence[str | None]) -> np.ndarray:
    """The ``near_keys`` column: ``[n, bands]`` uint64 MinHash band keys
    (:func:`euds.kernels.minhash_bands` with :data:`NEAR_DUPLICATES`) of each folded text.
    Texts sharing any key are near duplicates; a text that folds to nothing (or None) has keys
    of 0, which match nothing."""
    from euds import _core

    folded = ["" if t is None else fold_for_near_duplicates(t) for t in texts]
    offsets = np.zeros(len(folded) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in folded], out=offsets[1:])
    # Lone surrogates (undecodable input bytes kept by surrogateescape) are code points too.
    chars = np.frombuffer("".join(folded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    p = NEAR_DUPLICATES
    return _core.minhash_bands(offsets, chars, p["shingle"], p["bands"], p["rows"], p["seed"])


def near_keys_array(keys: np.ndarray) -> Any:
    """``[n, bands]`` keys as the pass column (an Arrow fixed-size list per record)."""
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(keys.reshape(-1)), keys.shape[1])


# -- groups (made by a selection) -------------------------------------------------------------


def exact_duplicates(hashes: Any, usable: np.ndarray) -> np.ndarray:
    """Rows of every usable record whose text hash an earlier usable record has."""
    hashes = np.asarray(hashes, dtype=object)
    rows = np.flatnonzero(usable & np.array([isinstance(h, str) for h in hashes], dtype=bool))
    _, first = np.unique(hashes[rows].astype(str), return_index=True)
    later = np.ones(len(rows), dtype=bool)
    later[first] = False
    return rows[later]


def near_duplicate_groups(keys: np.ndarray) -> np.ndarray:
    """For ``keys [m, bands]``, the first row (lowest index) of each row's group, where rows
    sharing a key in any band are joined transitively (connected components, by label
    propagation: each band sets every row to the smallest label among the rows sharing its
    key, until nothing changes)."""
    m = len(keys)
    label = np.arange(m)
    if m == 0:
        return label
    bands = [
        np.unique(keys[:, j], return_inverse=True)[1].reshape(-1) for j in range(keys.shape[1])
    ]
    changed = True
    while changed:
        changed = False
        for inverse in bands:
            smallest = np.full(int(inverse.max()) + 1, m, dtype=np.int64)
            np.minimum.at(smallest, inverse, label)
            new = smallest[inverse]
            if (new < label).any():
                changed = True
                label = np.minimum(label, new)
        while True:  # pointer jumping: a label's own label is in the same group
            jumped = label[label]
            if (jumped == label).all():
                break
            label = jumped
    return label


def near_duplicates(
    keys: np.ndarray,
    usable: np.ndarray,
    prefer: np.ndarray | None = None,
    *,
    keep_none: bool = False,
) -> tuple[np.ndarray, int]:
    """(rows of every usable record that loses its near-duplicate group, the number of groups
    that lost a record). Of each group of usable records one stays: the first, or, given
    ``prefer`` (one value per record), the one with the lowest value, the first among equal
    values; a value that is NaN or infinite comes after every finite one. With ``keep_none``,
    none stays: every member of a group of two or more usable records is lost.

    Why a choice: noise in a corpus is mostly a copy with an edit, and the first copy is the
    noisy one as often as not; the cleaner copy of a pair usually reads as more predictable
    (lower generative entropy or bits per byte: docs/results.md, Noise). Keeping none gives up
    the original with its copy when no score can tell them apart."""
    rows = np.flatnonzero(usable & keys.any(axis=1))
    root = near_duplicate_groups(keys[rows])
    if keep_none:
        members = np.bincount(root, minlength=len(rows))
        stays = members[root] == 1
    elif prefer is None:
        stays = root == np.arange(len(rows))
    else:
        value = np.asarray(prefer, dtype=np.float64)[rows]
        value = np.where(np.isfinite(value), value, np.inf)
        # Sorted by group, then value, then row: the first of each group's run stays.
        order = np.lexsort((np.arange(len(rows)), value, root))
        heads = np.ones(len(rows), dtype=bool)
        heads[1:] = root[order][1:] != root[order][:-1]
        stays = np.zeros(len(rows), dtype=bool)
        stays[order[heads]] = True
    return rows[~stays], len(np.unique(root[~stays]))


def copy_groups(hashes: Any, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the first of ``rows`` (a row index) in its group of copies, exact
    or near, whichever record each rule would keep: near-duplicate groups (as
    :func:`near_duplicate_groups`) for rows with keys; for rows whose text folds to nothing, the
    group of their text hash. Equal text hashes fold to equal texts, so the two never split a
    group."""
    rows = np.asarray(rows, dtype=np.int64)
    first = rows.copy()
    keyed = keys[rows].any(axis=1)
    near = rows[keyed]
    first[keyed] = near[near_duplicate_groups(keys[near])]
    hashes = np.asarray(hashes, dtype=object)
    hashed = np.array([isinstance(h, str) for h in hashes[rows]], dtype=bool)
    other = np.flatnonzero(~keyed & hashed)
    if len(other):
        _, at, inverse = np.unique(
            hashes[rows[other]].astype(str), return_index=True, return_inverse=True
        )
        first[other] = rows[other][at][inverse.reshape(-1)]
    return first


# -- containment ------------------------------------------------------------------------------


def word_ids(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """The folded words of every text as ids in CSR form ``(offsets [n + 1], ids)``; equal words
    get equal ids (None folds to no words)."""
    vocabulary: dict[str, int] = {}
    lengths = np.zeros(len(texts), dtype=np.int64)
    ids: list[int] = []
    for i, text in enumerate(texts):
        words = fold_for_near_duplicates(text).split() if text else []
        lengths[i] = len(words)
        ids.extend(vocabulary.setdefault(w, len(vocabulary)) for w in words)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, np.asarray(ids, dtype=np.int64)


def suffix_array(x: np.ndarray) -> np.ndarray:
    """The suffix array of a sequence of non-negative ints (prefix doubling: O(n log n) sorts,
    stopping as soon as every suffix has its own rank)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, rank = np.unique(x, return_inverse=True)
    rank = rank.reshape(-1).astype(np.int64)
    order = np.argsort(rank, kind="stable")
    h = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        second[: n - h] = rank[h:] if h < n else second[:0]
        order = np.lexsort((second, rank))
        r1, r2 = rank[order], second[order]
        step = np.concatenate(([0], ((r1[1:] != r1[:-1]) | (r2[1:] != r2[:-1])).cumsum()))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = step
        if step[-1] == n - 1 or h >= n:
            return order
        h *= 2


def contained_texts(texts: Sequence[str | None], usable: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of the usable texts whose folded word sequence occurs inside a longer usable text, or
    equals that of an earlier usable text, and how many of those have an equal earlier text.

    Texts with no words are never contained. Method: the word sequences of the distinct usable
    texts are joined, each followed by a separator of its own (so that no match crosses from one
    text into the next); a text's words occur inside another text exactly when the suffix that
    starts at the text shares its first ``len(text)`` words with another suffix, and such
    suffixes sit next to it in the suffix array, so each text is compared with its two
    neighbours there."""
    usable = np.asarray(usable, dtype=bool)
    if len(usable) != len(texts):
        raise ValueError(f"usable has {len(usable)} rows, texts {len(texts)}")
    rows = np.flatnonzero(usable)
    offsets, ids = word_ids([texts[i] for i in rows])
    lengths = np.diff(offsets)
    has_words = lengths > 0
    # Equal word sequences: the first stays, the rest are contained in it.
    keys = [ids[offsets[k] : offsets[k + 1]].tobytes() for k in range(len(rows))]
    first: dict[bytes, int] = {}
    equal = np.zeros(len(rows), dtype=bool)
    for k in np.flatnonzero(has_words):
        if first.setdefault(keys[k], k) != k:
            equal[k] = True
    distinct = np.flatnonzero(has_words & ~equal)
    contained = equal.copy()
    if len(distinct) > 1:
        vocabulary = int(ids.max()) + 1
        parts = []
        starts = np.zeros(len(distinct), dtype=np.int64)
        at = 0
        for j, k in enumerate(distinct):
            words = ids[offsets[k] : offsets[k + 1]]
            starts[j] = at
            parts.append(words)
            parts.append(np.array([vocabulary + j], dtype=np.int64))  # its own separator
            at += len(words) + 1
        joined = np.concatenate(parts)
        sa = suffix_array(joined)
        where = np.empty(len(sa), dtype=np.int64)
        where[sa] = np.arange(len(sa))
        size = lengths[distinct]
        # Pad so that a neighbour's window never runs off the end (-1 matches nothing).
        padded = np.concatenate([joined, np.full(int(size.max()), -1, dtype=np.int64)])
        run = np.repeat(np.arange(len(distinct)), size)
        step = np.arange(len(run)) - np.repeat(np.cumsum(size) - size, size)
        mine = padded[starts[run] + step]
        found = np.zeros(len(distinct), dtype=bool)
        for shift in (-1, 1):
            r = where[starts] + shift
            ok = (r >= 0) & (r < len(sa))
            other = np.where(ok, sa[np.clip(r, 0, len(sa) - 1)], len(joined))
            theirs = padded[np.minimum(other[run] + step, len(padded) - 1)]
            differ = np.bincount(run, weights=mine != theirs, minlength=len(distinct))
            found |= (differ == 0) & ok
        contained[distinct[found]] = True
    return rows[contained], int(equal.sum())


__all__ = [
    "NEAR_DUPLICATES",
    "contained_texts",
    "exact_duplicates",
    "fold_for_near_duplicates",
    "near_duplicate_groups",
    "near_duplicate_keys",
    "near_duplicates",
    "near_keys_array",
    "suffix_array",
    "text_hashes",
    "word_ids",
]
