"""Steps 2 and 3 of a selection, the rules on the texts themselves: which damaged texts it drops
(:func:`drop_damaged_texts`, the rule is :mod:`euds.damage`'s) and which copies of a text
(:func:`drop_copies`), with the checks of their options (:func:`check_copy_options`) and the
manifest's account of them. The keys and groups of copies are :mod:`euds.duplicates`'s; this
module applies them to the usable records of one selection.

* damaged texts (``drop_damaged``): mojibake, U+FFFD, control characters (``damaged_text``);
* exact copies: all but the first usable one (``duplicate_text``), unless ``keep_duplicates``;
* near duplicates (``drop_near_duplicates``): all but one of each group
  (``near_duplicate_text``), the first or the one lowest in the ``near_duplicate_keep`` score,
  or, with ``near_duplicate_keep="none"``, every member of a group;
* contained texts (``drop_contained``): each text found inside a longer one
  (``contained_text``).

It also gives typicality's distinct fit its groups of copies (:func:`distinct_fit_groups`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from euds.damage import damaged_texts
from euds.duplicates import (
    NEAR_DUPLICATES,
    contained_texts,
    copy_groups,
    exact_duplicates,
    near_duplicates,
)
from euds.selection.columns import near_key_matrix, score_column

TEXT_HASH = "text_hash"
NEAR_KEYS = "near_keys"
# Which copy of a near-duplicate group stays: the first, none, or the lowest in a named score.
KEEP_FIRST = "first"
KEEP_NONE = "none"
# The choices that read no score column (any other names one).
NO_SCORE = (KEEP_FIRST, KEEP_NONE)
REASON_DUPLICATE = "duplicate_text"
REASON_NEAR_DUPLICATE = "near_duplicate_text"
REASON_CONTAINED = "contained_text"
REASON_DAMAGED = "damaged_text"


def check_keep_has_groups(
    near_duplicate_keep: str, drops_near: bool, default_budget: float | None
) -> None:
    """A copy to choose needs near-duplicate groups: ``near_duplicate_keep`` other than the
    first copy (a score, or none) is refused unless the selection drops near duplicates
    (``drops_near``: asked for, or the default's choice at ``default_budget`` does)."""
    if near_duplicate_keep != KEEP_FIRST and not drops_near:
        raise ValueError(
            f"near_duplicate_keep={near_duplicate_keep!r} (--near-duplicate-keep) says which "
            "copy of a near-duplicate group stays, if any: it needs drop_near_duplicates=True "
            "(--drop-near-duplicates)"
            + (
                f"; the default selection at budget {default_budget} drops none"
                if default_budget is not None
                else ""
            )
        )


def check_copy_options(
    columns: Mapping[str, Any],
    n: int,
    *,
    drop_near_duplicates: bool,
    near_duplicate_keep: str,
    near_absent: bool,
    text_rules: Mapping[str, bool],
    texts: Sequence[str | None] | None,
    default_budget: float | None,
) -> None:
    """Refuses options that cannot work on these columns (``ValueError`` naming the fix).
    ``near_absent``: the default wanted near duplicates dropped but the scores lack their
    keys; ``text_rules``: the rules that read ``texts`` (name: asked for);
    ``default_budget``: the budget when the default decides the method, else None."""
    for name, wanted in text_rules.items():
        if wanted and (texts is None or len(texts) != n):
            raise ValueError(
                f"{name} needs texts= (one per record, {n}); "
                f"got {None if texts is None else len(texts)}"
            )
    if near_duplicate_keep != KEEP_FIRST:
        if near_absent:
            raise ValueError(
                f"near_duplicate_keep={near_duplicate_keep!r} needs the {NEAR_KEYS!r} column, "
                "which these scores lack (scored before euds computed it): score the input again "
                "(--overwrite)"
            )
        check_keep_has_groups(near_duplicate_keep, drop_near_duplicates, default_budget)
        if near_duplicate_keep not in NO_SCORE and near_duplicate_keep not in columns:
            raise ValueError(
                f"near_duplicate_keep={near_duplicate_keep!r} needs the {near_duplicate_keep!r} "
                f"score column, which these scores lack: score it, or keep the first copy"
            )


def drop_damaged_texts(
    drop: bool, texts: Sequence[str | None] | None, usable: np.ndarray, reason: np.ndarray
) -> dict[str, Any]:
    """With ``drop``, marks the usable records whose text is damaged dropped (``usable`` cleared,
    ``reason`` set, in place); returns the manifest's account (how many of each kind)."""
    if not drop:
        return {"policy": "keep", "dropped": 0}
    assert texts is not None
    rows, kinds = damaged_texts(texts, usable)
    reason[rows] = REASON_DAMAGED
    usable[rows] = False
    return {"policy": "drop", "dropped": len(rows), "by_kind": kinds}


def drop_copies(
    columns: Mapping[str, Any],
    usable: np.ndarray,
    reason: np.ndarray,
    *,
    keep_duplicates: bool,
    drop_near_duplicates: bool,
    near_duplicate_keep: str,
    drop_contained: bool,
    texts: Sequence[str | None] | None,
) -> dict[str, Any]:
    """Marks the copies dropped (``usable`` cleared, ``reason`` set, in place); returns the
    manifest's account of each rule."""
    n = len(usable)
    duplicates = _exact(columns.get(TEXT_HASH), usable, reason, keep_duplicates)
    if drop_near_duplicates:
        keys = columns.get(NEAR_KEYS)
        if keys is None:
            raise ValueError(
                f"drop_near_duplicates needs the {NEAR_KEYS!r} column, which these scores lack "
                "(scored before euds computed it): score the input again (--overwrite)"
            )
        keep_none = near_duplicate_keep == KEEP_NONE
        prefer = (
            None if near_duplicate_keep in NO_SCORE else score_column(columns, near_duplicate_keep)
        )
        dup, groups = near_duplicates(near_key_matrix(keys, n), usable, prefer, keep_none=keep_none)
        reason[dup] = REASON_NEAR_DUPLICATE
        usable[dup] = False
        policy = "keep-first" if prefer is None else f"keep-lowest-{near_duplicate_keep}"
        duplicates["near"] = {
            "policy": "keep-none" if keep_none else policy,
            "dropped": len(dup),
            "groups": groups,
            "minhash": dict(NEAR_DUPLICATES),
        }
    if drop_contained:
        assert texts is not None
        dup, equal = contained_texts(texts, usable)
        reason[dup] = REASON_CONTAINED
        usable[dup] = False
        duplicates["contained"] = {
            "policy": "keep-longer",
            "dropped": len(dup),
            "equal_words": equal,
            "rule": "folded word sequence inside a longer usable text, or equal to an earlier one",
        }
    return duplicates


def _exact(
    hashes: Any, usable: np.ndarray, reason: np.ndarray, keep_duplicates: bool
) -> dict[str, Any]:
    """Drops later copies of exact-duplicate texts; returns the manifest's account of it."""
    if keep_duplicates:
        return {"policy": "keep-all", "detected": False, "dropped": 0}
    if hashes is None:
        return {
            "policy": "keep-first",
            "detected": False,
            "dropped": 0,
            "note": f"the scores have no {TEXT_HASH} column (scored before euds computed it): "
            "exact duplicates were not detected; rescore to detect them",
        }
    dup = exact_duplicates(hashes, usable)
    reason[dup] = REASON_DUPLICATE
    usable[dup] = False
    return {"policy": "keep-first", "detected": True, "dropped": len(dup)}


def distinct_fit_groups(columns: Mapping[str, Any], fitted: np.ndarray) -> np.ndarray:
    """For ``typical_fit="distinct"``: per record, the first fitted record of its group of
    copies (exact or near, over every fitted record, whichever copy a rule keeps); -1 where not
    fitted. Needs the ``text_hash`` and ``near_keys`` columns."""
    lacking = [c for c in (TEXT_HASH, NEAR_KEYS) if columns.get(c) is None]
    if lacking:
        raise ValueError(
            f"typical_fit='distinct' counts copies once: it needs the {' and '.join(lacking)} "
            "column(s), which these scores lack (scored before euds computed them): score the "
            "input again (--overwrite), or use typical_fit='pool'"
        )
    n = len(fitted)
    rows = np.flatnonzero(fitted)
    copies = np.full(n, -1, dtype=np.int64)
    copies[rows] = copy_groups(columns[TEXT_HASH], near_key_matrix(columns[NEAR_KEYS], n), rows)
    return copies
