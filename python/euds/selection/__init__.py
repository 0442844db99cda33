"""Selection policy: which records of a scored pool to keep — arrays in, a mask and a reason per
record out (:func:`select`). Files are :mod:`euds.subset`'s business.

Methods (``method=``):

* bands (:mod:`euds.selection.bands`): ``single`` (one signal's band), ``intersect`` (IGSE: every
  signal's band at once) and ``mean-rank``, by budget at a ``position`` or by ``intervals``;
* ``filter-random``: drop each signal's junk tails, draw the budget uniformly from the rest;
* ``coverage`` (:mod:`euds.selection.coverage`): drop the tails, cover a score's range with
  equal-width strata filled by water-filling, uniform inside each;
* ``typical`` (:mod:`euds.selection.typical`): one member per cluster of the stored embeddings,
  as many clusters as the budget keeps, its most typical at ``position`` 0;
* ``target`` (:mod:`euds.selection.target`): the most similar to a sample of the texts wanted.

Any of them with ``stratify`` (a quota per cluster or group), after the rules on the texts
(:mod:`euds.selection.copies` applies :mod:`euds.damage`'s damaged texts and
:mod:`euds.duplicates`'s exact, near and contained copies).
The rules every method shares are in :mod:`euds.selection.policy`.
"""

from euds.duplicates import near_duplicate_groups
from euds.selection.bands import MEAN_RANK
from euds.selection.columns import near_key_matrix
from euds.selection.copies import (
    NEAR_KEYS,
    REASON_CONTAINED,
    REASON_DAMAGED,
    REASON_DUPLICATE,
    REASON_NEAR_DUPLICATE,
    TEXT_HASH,
)
from euds.selection.coverage import DEFAULT_STRATA
from euds.selection.policy import (
    COVERAGE,
    DEFAULT_CHOICE,
    DEFAULT_SPECS,
    DEFAULT_TAILS,
    FILTER_RANDOM,
    METHODS,
    NEAR_DUPLICATE_KEEP,
    REASON_KEPT,
    REASON_LESS_TARGET_LIKE,
    REASON_NONFINITE,
    REASON_NOT_SAMPLED,
    REASON_OTHER_IN_CLUSTER,
    REASON_OUTSIDE,
    REASON_TAIL,
    REASON_UNSCORED,
    SELECTABLE,
    TYPICAL,
    Method,
    Selection,
    default_choice,
    select,
    uses_default,
)
from euds.selection.quotas import largest_remainder, water_filling
from euds.selection.target import TARGET, TARGET_SCORES, target_column

__all__ = [
    "COVERAGE",
    "DEFAULT_CHOICE",
    "DEFAULT_SPECS",
    "DEFAULT_STRATA",
    "DEFAULT_TAILS",
    "FILTER_RANDOM",
    "MEAN_RANK",
    "METHODS",
    "NEAR_DUPLICATE_KEEP",
    "NEAR_KEYS",
    "REASON_CONTAINED",
    "REASON_DAMAGED",
    "REASON_DUPLICATE",
    "REASON_KEPT",
    "REASON_LESS_TARGET_LIKE",
    "REASON_NEAR_DUPLICATE",
    "REASON_NONFINITE",
    "REASON_NOT_SAMPLED",
    "REASON_OTHER_IN_CLUSTER",
    "REASON_OUTSIDE",
    "REASON_TAIL",
    "REASON_UNSCORED",
    "SELECTABLE",
    "TARGET",
    "TARGET_SCORES",
    "TEXT_HASH",
    "TYPICAL",
    "Method",
    "Selection",
    "default_choice",
    "largest_remainder",
    "near_duplicate_groups",
    "near_key_matrix",
    "select",
    "target_column",
    "uses_default",
    "water_filling",
]
