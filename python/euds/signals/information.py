"""Information entropy: Shannon entropy of a text's own token distribution (DESIGN.md).

``sample`` (default): IE(x) = -sum_w (c_w/n) ln(c_w/n) over the n content tokens of x.
``corpus``: mean self-information -(1/n) sum_i ln P(t_i) under the pool's unigram distribution,
which needs the counts of the whole pool first (two passes: count, then score).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from euds import _core
from euds.tokenizer import TokenBatch

Mode = Literal["sample", "corpus"]
MODES: tuple[str, ...] = ("sample", "corpus")


class InformationScorer:
    """Scores token batches with information entropy.

    For ``mode="corpus"`` call :meth:`count` on every batch of the pool first, then
    :meth:`score`; ``alpha`` adds that many pseudo-counts to every vocabulary entry (0: the
    plain unigram distribution, under which every scored token has been counted).
    """

    name = "information"

    def __init__(self, mode: Mode = "sample", *, vocab_size: int = 0, alpha: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"information mode must be one of {MODES}, got {mode!r}")
        if not (alpha >= 0 and np.isfinite(alpha)):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        self.mode = mode
        self.alpha = float(alpha)
        self.counts = _core.UnigramCounts(vocab_size) if mode == "corpus" else None

    @property
    def needs_counts(self) -> bool:
        return self.mode == "corpus"

    def count(self, batch: TokenBatch) -> None:
        if self.counts is None:
            raise ValueError("count() is only used by mode='corpus'")
        self.counts.add(batch.offsets, batch.ids)

    def score(self, batch: TokenBatch) -> np.ndarray:
        """float64 scores, NaN for texts without content tokens."""
        if self.counts is None:
            return _core.information_entropy(batch.offsets, batch.ids)
        if self.counts.total == 0:
            raise ValueError("mode='corpus' needs count() over the pool before score()")
        return self.counts.self_information(batch.offsets, batch.ids, self.alpha)
