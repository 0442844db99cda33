"""euds inside a datatrove pipeline: a scoring step and a band filter.

* :class:`EudsScorer`, a ``PipelineStep``, scores the documents that pass through it in batches
  with :class:`euds.api.Scorer` and writes the scores into ``doc.metadata``. The models are
  loaded inside ``run()``, on the first batch, once per worker process (every task that process
  runs reuses them), so the step pickles as its settings alone and survives the executor's
  worker processes.
* :class:`EudsBandFilter`, a ``BaseFilter``, keeps the documents whose scores lie inside a band
  per signal, given in absolute values or in quantiles of the pool of an earlier ``euds score``
  run (:func:`band_values` turns those into values with :func:`euds.selection.select`, the rule
  ``euds select --interval`` uses). Dropped documents go to the filter's ``exclusion_writer``
  with ``metadata["filter_reason"]`` naming the signal.

Metadata written by :class:`EudsScorer` (keys start with ``prefix``, default ``euds_``):

=====================  ==========================================================================
``euds_information``   information entropy (per-text variant), nats; ``None`` when unscored
``euds_generative``    generative entropy under the LM, nats; ``None`` when unscored
``euds_nll``           the LM's mean negative log-likelihood, written with ``euds_generative``
``euds_bpb``           the same NLL in bits per UTF-8 byte, written with ``euds_generative``
``euds_semantic``      semantic entropy against the given centroids; ``None`` when unscored
``euds_n_tokens``      content tokens scored (after truncation to ``max_tokens - 1``)
``euds_truncated``     ``True`` when the text was longer than ``max_tokens - 1`` tokens
``euds_flags``         why a text has no scores (``empty_text``, ...; several joined by ``|``),
                       ``""`` when none
=====================  ==========================================================================

Only the signals computed are written (and, the same way, any other score column of
:data:`euds.selection.SELECTABLE` that :meth:`euds.api.Scorer.score_texts` returns). Semantic
entropy needs the pool's k-means centroids: pass ``centroids=`` (a score directory, its
``centroids.npy``, or an array ``[K, 384]``); without them the step scores information and
generative entropy only.

Datatrove stats: the step counts ``euds_scored`` (every signal finite), ``euds_unscored``
(a signal is NaN: the text is empty or whitespace-only), ``euds_flag_<flag>`` per flag,
``euds_truncated``, ``batches`` and its time per batch. The filter counts, as every datatrove
filter does, ``total``, ``forwarded``, ``dropped`` and ``dropped_<reason>``.
"""

from __future__ import annotations

import copy
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.writers.disk_base import DiskWriter
    from datatrove.utils.batching import batched
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"euds.integrations.datatrove needs datatrove ({e}): pip install 'euds[datatrove]'"
    ) from e

from euds.api import Scorer, process_scorer
from euds.config import ScoreConfig, SelectConfig
from euds.selection import MEAN_RANK, SELECTABLE, select
from euds.signals import SIGNALS

__all__ = ["DEFAULT_PREFIX", "EudsBandFilter", "EudsScorer", "band_values"]

DEFAULT_PREFIX = "euds_"


class EudsScorer(PipelineStep):
    """Scores documents with euds and writes the scores into ``doc.metadata``.

    ``signals``: a subset of ``information``, ``generative``, ``semantic`` (default: all three
    when ``centroids`` is given, else information and generative). ``config``: a
    :class:`euds.config.ScoreConfig` (models, ``max_tokens``, precision, ``k``, ``m``,
    ``temperature``...; default: the defaults of ``euds score``), copied. ``centroids``: for
    the semantic signal, a score directory (its ``centroids.npy``), a ``.npy`` file, or an
    array ``[K, 384]``; read here, so the workers need no access to it. ``batch_size``:
    documents per scoring call (default: the configuration's ``batch_size``, which makes the
    scores equal those of ``euds score`` with that configuration on the same documents in the
    same order). ``prefix``: of the metadata keys.
    """

    name = "euds scores"
    type = "📈 - SCORER"

    def __init__(
        self,
        signals: Sequence[str] | None = None,
        *,
        config: ScoreConfig | None = None,
        centroids: np.ndarray | str | os.PathLike[str] | None = None,
        batch_size: int | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__()
        self.centroids = _read_centroids(centroids) if centroids is not None else None
        if signals is None:
            signals = SIGNALS if self.centroids is not None else ("information", "generative")
        self.signals = tuple(signals)
        if "semantic" in self.signals and self.centroids is None:
            raise ValueError(
                "the semantic signal needs the pool's centroids: pass centroids= (a score "
                "directory, a centroids.npy or an array [K, 384]), or leave semantic out of "
                "signals="
            )
        self.config = copy.deepcopy(config) if config is not None else ScoreConfig()
        self.config.signals = self.signals
        self.config.check()  # a wrong setting fails here, not in every worker
        self.batch_size = self.config.batch_size if batch_size is None else batch_size
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool):
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {prefix!r}")
        self.prefix = prefix
        self.token = uuid.uuid4().hex
        self.origin_pid = os.getpid()

    def scorer(self) -> Scorer:
        """The :class:`euds.api.Scorer` of this step in this process, loaded on first use."""
        # The executor deep-copies or unpickles a step once per task; every copy shares the token.
        worker = os.getpid() != self.origin_pid
        return process_scorer(self.token, self.signals, self.config, self.centroids, worker=worker)

    def run(
        self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1
    ) -> DocumentsPipeline:
        if data is None:
            return
        for batch in batched(data, self.batch_size):
            scorer = self.scorer()  # inside the loop: an empty shard loads no model
            with self.track_time("batch"):
                scores = scorer.score_texts([doc.text for doc in batch])
            self.stat_update("batches")
            for row, doc in enumerate(batch):
                self._annotate(doc, scores, row)
                yield doc

    def _annotate(self, doc: Document, scores: dict[str, np.ndarray], row: int) -> None:
        finite = True
        for name in SELECTABLE:  # the score columns the scorer returns
            if name in scores:
                value = float(scores[name][row])
                finite &= math.isfinite(value)
                # None, not NaN: JSON has no NaN, and a JSONL round trip must not change it.
                doc.metadata[self.prefix + name] = value if math.isfinite(value) else None
        flags = str(scores["flags"][row])
        doc.metadata[self.prefix + "n_tokens"] = int(scores["n_tokens"][row])
        doc.metadata[self.prefix + "truncated"] = bool(scores["truncated"][row])
        doc.metadata[self.prefix + "flags"] = flags
        self.stat_update("euds_scored" if finite else "euds_unscored")
        for flag in filter(None, flags.split("|")):
            self.stat_update(f"euds_flag_{flag}")
        if scores["truncated"][row]:
            self.stat_update("euds_truncated")


class EudsBandFilter(BaseFilter):
    """Keeps the documents whose euds scores lie inside a band per signal.

    ``intervals``: ``{signal: (lo, hi)}`` for any of ``information``, ``generative``, ``bpb``,
    ``nll``, ``semantic``; a document is kept when every named score lies in ``[lo, hi]``
    (both ends included, as ``euds select``). The bands are quantiles of the pool scored in
    ``scores`` (a score directory or score Parquet file of ``euds score``, ideally made with
    the scoring step's configuration; see :func:`band_values`) unless ``absolute=True``, when
    they are score values and ``scores`` is not needed.

    A dropped document's ``metadata["filter_reason"]`` (and the stat ``dropped_<reason>``)
    names the first signal, in the order of ``intervals``, that it fails:
    ``<prefix><signal>_below`` / ``_above`` (outside the band), ``_unscored`` (the score is
    ``None`` or NaN: an empty text), ``_missing`` (no such metadata: the document did not pass
    an :class:`EudsScorer` computing that signal with this ``prefix``) or ``_invalid`` (the
    metadata is not a number). No document stops the run.
    """

    name = "euds band"

    def __init__(
        self,
        intervals: Mapping[str, tuple[float, float]],
        *,
        scores: str | os.PathLike[str] | None = None,
        absolute: bool = False,
        prefix: str = DEFAULT_PREFIX,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        super().__init__(exclusion_writer)
        if not isinstance(intervals, Mapping) or not intervals:
            raise ValueError(
                "intervals must be a non-empty mapping {signal: (lo, hi)}, e.g. "
                f"{{'information': (0.1, 0.9)}}; got {intervals!r}"
            )
        if absolute:
            if scores is not None:
                raise ValueError(
                    "absolute=True takes score values, not the quantiles of scores=: drop one"
                )
            self.bounds = _checked_values(intervals)
            self.bands: dict[str, dict[str, float]] = {
                s: {"lo": lo, "hi": hi} for s, (lo, hi) in self.bounds.items()
            }
        else:
            if scores is None:
                raise ValueError(
                    "intervals in quantiles need the pool's scores: pass scores=SCORES_DIR "
                    "(of `euds score`), or absolute=True for score values"
                )
            self.bands = _quantile_bands(intervals, scores)
            self.bounds = {s: (b["lo"], b["hi"]) for s, b in self.bands.items()}
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {prefix!r}")
        self.prefix = prefix

    @classmethod
    def from_config(
        cls,
        config: SelectConfig,
        *,
        scores: str | os.PathLike[str] | None = None,
        prefix: str = DEFAULT_PREFIX,
        exclusion_writer: DiskWriter | None = None,
    ) -> EudsBandFilter:
        """The filter of a :class:`~euds.config.SelectConfig` giving ``intervals`` (and
        ``absolute``), the options ``euds select --interval`` takes. A budget needs the whole
        pool at once, which a per-document filter never sees: use ``euds select`` for it."""
        config.check()
        if config.intervals is None:
            raise ValueError(
                "EudsBandFilter keeps a band per document: give the config intervals, not a "
                "budget (a budget needs the whole pool: euds select)"
            )
        return cls(
            config.intervals,
            scores=scores,
            absolute=config.absolute,
            prefix=prefix,
            exclusion_writer=exclusion_writer,
        )

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        for signal, (lo, hi) in self.bounds.items():
            key = self.prefix + signal
            if key not in doc.metadata:
                return False, f"{key}_missing"
            value = doc.metadata[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return False, f"{key}_unscored"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False, f"{key}_invalid"
            if value < lo:
                return False, f"{key}_below"
            if value > hi:
                return False, f"{key}_above"
        return True


def band_values(
    intervals: Mapping[str, tuple[float, float]], scores: str | os.PathLike[str]
) -> dict[str, tuple[float, float]]:
    """The score values ``(lo, hi)`` of quantile bands ``{signal: (q_lo, q_hi)}`` of the pool
    in ``scores`` (a score directory or a score Parquet file): the values ``euds select
    --interval SIGNAL=Q_LO:Q_HI`` uses on that pool (:func:`euds.selection.select` computes them:
    the quantiles of the scored records, later copies of a text left out)."""
    return {s: (b["lo"], b["hi"]) for s, b in _quantile_bands(intervals, scores).items()}


def _quantile_bands(
    intervals: Mapping[str, tuple[float, float]], scores: str | os.PathLike[str]
) -> dict[str, dict[str, float]]:
    from euds.scores import ScoreDir, read_scores

    _check_names(intervals)
    path = Path(scores)
    if not path.exists():
        raise ValueError(f"{path} not found: pass the score directory of `euds score`")
    if path.is_dir():
        manifest = ScoreDir(path).manifest()
        if manifest.get("status") != "complete":
            raise ValueError(f"{path} is not complete: run `euds score` again to finish it")
        mode = manifest.get("config", {}).get("information_mode")
        if "information" in intervals and mode == "corpus":
            # The scoring step computes the per-text variant; the corpus variant's quantiles
            # are on another scale.
            raise ValueError(
                f"{path} holds corpus-mode information entropy; the scoring step computes the "
                "per-text variant: rescore with --information-mode sample, or give absolute "
                "values"
            )
    selection = select(read_scores(path), intervals=dict(intervals))
    return {s: selection.intervals[s] for s in intervals}


def _check_names(intervals: Mapping[str, Any]) -> None:
    if MEAN_RANK in intervals:
        raise ValueError(
            f"{MEAN_RANK!r} ranks the whole pool, which a stream of documents does not have: "
            "give one interval per signal, or select from the score directory with "
            "`euds select --method mean-rank`"
        )
    unknown = [s for s in intervals if s not in SELECTABLE]
    if unknown:
        raise ValueError(f"unknown signals {unknown}; bands can be set on {SELECTABLE}")


def _checked_values(
    intervals: Mapping[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    _check_names(intervals)
    out = {}
    for name, pair in intervals.items():
        try:
            lo, hi = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"interval for {name!r} must be a (lo, hi) pair of numbers, got {pair!r}"
            ) from None
        if len(pair) != 2 or math.isnan(lo) or math.isnan(hi) or not lo <= hi:
            raise ValueError(f"interval for {name!r} must be (lo, hi) with lo <= hi, got {pair!r}")
        out[name] = (lo, hi)
    return out


def _read_centroids(centroids: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    """The centroids array: given, or read from a score directory or ``.npy`` file."""
    if not isinstance(centroids, np.ndarray):
        from euds.scores import CENTROIDS

        path = Path(centroids)
        file = path / CENTROIDS if path.is_dir() else path
        if not file.is_file():
            raise ValueError(
                f"no centroids at {file}: pass a score directory scored with the semantic "
                "signal, a centroids.npy file or an array [K, 384]"
            )
        centroids = np.load(file)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"centroids must be an array [K, dim], got shape {c.shape}")
    return c
