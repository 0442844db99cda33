"""The configurations: :class:`ScoreConfig`, everything that decides the scores, and
:class:`SelectConfig`, everything that decides a selection made from them.

Each field carries its command-line form in its metadata (``cli``: help, group, flag, choices),
so that ``euds score`` / ``euds select`` / ``euds run`` build their options from these lists
(:func:`euds.cli` reads :func:`dataclasses.fields`) and a new option is written once. Which
fields take part in a score directory's identity is decided here too; each ``check()`` runs
before any work starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from euds.io import DEFAULT_BATCH_SIZE, FORMATS
from euds.kernels import MAX_THREADS  # for the kernels and ONNX Runtime alike
from euds.model_sources import content_key
from euds.selection.bands import check_fences, check_tails
from euds.selection.copies import KEEP_FIRST, check_keep_has_groups
from euds.selection.coverage import DEFAULT_STRATA
from euds.selection.policy import NEAR_DUPLICATE_KEEP
from euds.selection.typical import FITS as TYPICAL_FITS
from euds.selection.typical import check_typical_fit
from euds.signals import SIGNALS
from euds.signals.generative import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_PACK_LENGTH,
    DEVICES,
    PRECISIONS,
    REDUCTIONS,
)
from euds.signals.information import MODES
from euds.signals.semantic import (
    DEFAULT_EMBED_BATCH_TOKENS,
    DEFAULT_K,
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    EMBED_PRECISIONS,
    POOLINGS,
)
from euds.tokenizer import DEFAULT_MAX_TOKENS

DEFAULT_SHARD_SIZE = 4096
# Options that only change how fast or how loudly a run goes; every other option takes part
# in the identity of a score directory (a resumed run must use the same values).
RUNTIME_ONLY = frozenset({"threads", "device"})
# Used only after the pass, on the kept embeddings: changing them re-clusters, never re-embeds.
CLUSTERING = frozenset({"k", "temperature", "m", "seed", "max_points_per_centroid"})

# The selection rules that read the records' texts.
TEXT_RULES = ("drop_contained", "drop_damaged")
# Option groups of ``euds score --help``.
SCORING, READING, INFORMATION, GENERATIVE, SEMANTIC = (
    "scoring",
    "reading",
    "information signal",
    "generative signal",
    "semantic signal",
)


def option(default: Any, help: str, group: str = SCORING, **cli: Any) -> Any:
    """A dataclass field with its command-line form (one helper for every configuration):
    ``flag`` (default ``--name-with-dashes``), ``choices``, ``type`` (default: the default's
    type), ``action``."""
    return field(default=default, metadata={"cli": {"help": help, "group": group, **cli}})


@dataclass
class ScoreConfig:
    """Everything that decides the scores (see ``euds score --help``)."""

    signals: tuple[str, ...] = option(
        SIGNALS,
        f"comma-separated subset of {','.join(SIGNALS)} (default: all three)",
        type="signals",
    )
    # reading
    text_field: str = option("text", "field holding the text (default: text)", READING)
    id_field: str | None = option(
        "id", "field holding the record id; row numbers when absent", READING, type="optional"
    )
    format: str | None = option(
        None, "input format (default: from the name)", READING, choices=FORMATS
    )
    strict: bool = option(False, "fail on the first bad record instead of flagging it")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "records per batch")
    shard_size: int = option(DEFAULT_SHARD_SIZE, "records per shard")
    # tokens
    max_tokens: int = option(DEFAULT_MAX_TOKENS, "BOS + content tokens (up to the LM's limit)")
    # a tokenizer.json path; None = the scoring LM's (SmolLM2's from the GGUF by default)
    tokenizer: str | None = option(
        None, "a tokenizer.json for the information signal (default: the scoring LM's)"
    )
    # information
    information_mode: str = option(
        "sample", "per-text or pool unigrams", INFORMATION, choices=MODES
    )
    # generative
    # None = the SmolLM2 cache entry; a user's model is exported into the cache on first use
    model: str | None = option(
        None,
        "the scoring LM: a Hugging Face causal-LM folder, a GGUF file or a folder "
        "`euds models prepare` made (default: SmolLM2)",
        GENERATIVE,
    )
    batch_tokens: int = option(DEFAULT_BATCH_TOKENS, "positions per ONNX Runtime call", GENERATIVE)
    packing: bool = option(
        True, "one text per row (padded)", GENERATIVE, flag="--no-packing", action="store_false"
    )
    pack_length: int = option(DEFAULT_PACK_LENGTH, "positions per packed row", GENERATIVE)
    precision: str = option("fp32", "LM weights and activations", GENERATIVE, choices=PRECISIONS)
    reduction: str = option("kernel", "C++ kernel or in-graph", GENERATIVE, choices=REDUCTIONS)
    device: str = option("cpu", "where the LM runs", GENERATIVE, choices=DEVICES)
    # from the common --threads option (0: the default)
    threads: int | None = field(default=None, metadata={"cli": None})
    # semantic
    # None = the all-MiniLM-L6-v2 cache entry
    embedder: str | None = option(
        None,
        "a sentence-transformers folder or a folder `euds models prepare` made "
        "(default: all-MiniLM-L6-v2)",
        SEMANTIC,
    )
    embed_batch_tokens: int = option(DEFAULT_EMBED_BATCH_TOKENS, "word pieces per call", SEMANTIC)
    pooling: str = option("core", "mean pooling in C++ or in-graph", SEMANTIC, choices=POOLINGS)
    embed_precision: str = option(
        "fp32", "embedder weights and activations", SEMANTIC, choices=EMBED_PRECISIONS
    )
    k: int = option(DEFAULT_K, "k-means centroids", SEMANTIC)
    temperature: float = option(DEFAULT_TEMPERATURE, "softmax temperature", SEMANTIC)
    m: int | None = option(
        None, "nearest centroids per text (default: min(k, 32))", SEMANTIC, type=int
    )
    seed: int = option(DEFAULT_SEED, "k-means seed", SEMANTIC)
    max_points_per_centroid: int = option(
        DEFAULT_MAX_POINTS_PER_CENTROID,
        "k-means trains on at most this many points per centroid",
        SEMANTIC,
    )

    def check(self) -> None:
        self.signals = tuple(self.signals)
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals or len(set(self.signals)) != len(self.signals):
            raise ValueError(f"signals must be distinct names from {SIGNALS}, got {self.signals}")
        for name in (
            "batch_size",
            "shard_size",
            "max_tokens",
            "k",
            "batch_tokens",
            "pack_length",
            "embed_batch_tokens",
            "max_points_per_centroid",
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**31:
            raise ValueError(f"seed (k-means) must be an int in [0, 2**31), got {self.seed!r}")
        if self.m is not None and (not _is_int(self.m) or not 1 <= self.m <= self.k):
            raise ValueError(f"m must be an int from 1 to k ({self.k}), got {self.m!r}")
        if self.pack_length < 2:
            raise ValueError(f"pack_length must be >= 2, got {self.pack_length}")
        # --batch-tokens bounds every ONNX Runtime call: one row (a packed row, or one text of
        # up to max_tokens positions) must fit in it.
        longest = max(self.max_tokens, self.pack_length if self.packing else 0)
        if self.batch_tokens < longest:
            raise ValueError(
                f"batch_tokens ({self.batch_tokens}) is below the longest row one ONNX Runtime "
                f"call can hold ({longest}: max_tokens"
                + (", pack_length" if self.packing else "")
                + "): raise --batch-tokens or lower --max-tokens"
            )
        if self.shard_size % self.batch_size:
            raise ValueError(
                f"shard_size ({self.shard_size}) must be a multiple of batch_size "
                f"({self.batch_size}) so that shards hold whole batches"
            )
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")
        if not (_finite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")
        if self.threads is not None and not (
            _is_int(self.threads) and 0 <= self.threads <= MAX_THREADS
        ):
            raise ValueError(f"threads must be an int in [0, {MAX_THREADS}], got {self.threads!r}")
        check_thread_variable()

    def identity(self) -> dict[str, Any]:
        identity = {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY}
        # A model named by path takes part by its content too (the default models are fixed
        # by the pinned packages).
        for name, role in (("model", "lm"), ("embedder", "embedder")):
            if identity[name] is not None:
                identity[f"{name}_content"] = content_key(identity[name], role)
        return identity


# Option groups of ``euds select --help``.
SELECTION, DUPLICATES, TARGETING = ("selection", "duplicates and damaged texts", "target matching")


@dataclass
class SelectConfig:
    """Everything that decides a selection (see ``euds select --help``); the options of
    :func:`euds.selection.select` plus what only a file job has (``stratify`` by name, a
    ``target`` sample file). Give exactly one of ``budget`` and ``intervals``."""

    budget: float | None = option(None, "share of records to keep, e.g. 0.16", SELECTION)
    # option's defaults are immutable (None, 0.5): a field() per instance is not needed.
    intervals: dict[str, tuple[float, float]] | None = option(  # noqa: RUF009
        None,
        "an interval per signal (quantiles unless --absolute); repeat for several",
        SELECTION,
        flag="--interval",
        type="interval",
        metavar="SIGNAL=LO:HI",
    )
    signals: tuple[str, ...] | None = option(
        None,
        "signals to select on, nll and bpb too (default: generative when it is scored and no "
        "--method is given, else all scored; coverage: its score; typical and target: the "
        "signals whose --tails are dropped first)",
        SELECTION,
        flag="--signals",
        run_flag="--select-signals",
        type="signals",
    )
    method: str | None = option(None, "how to select (see euds.selection)", SELECTION)
    position: float | dict[str, float] | None = option(  # noqa: RUF009
        None,
        "band position, 0 = lowest entropies (default 0.5); one number, or one per signal "
        "(e.g. information=0.7,generative=0.4); typical: 0 = most typical (the default)",
        SELECTION,
        type="position",
        metavar="P | SIGNAL=P,...",
    )
    absolute: bool = option(False, "--interval gives score values", SELECTION)
    on_nonfinite: str = option(
        "raise", "infinite scores: an error, or dropped", SELECTION, choices=("raise", "drop")
    )
    seed: int = option(
        0,
        "seed of the tie-break among equal scores and of every draw",
        SELECTION,
        flag="--seed",
        run_flag="--tie-seed",
    )
    stratify: str | None = option(
        None,
        "a quota per k-means cluster (clusters) or per value of an input field, in proportion "
        "to its size, the method inside each",
        SELECTION,
        metavar="clusters | FIELD",
    )
    tails: tuple[float, float] | None = option(
        None,
        "filter-random, coverage, typical, target: the quantiles of each signal kept before "
        "the method runs (default 0.05:0.95 for filter-random and coverage)",
        SELECTION,
        type="tails",
        metavar="LO:HI",
    )
    fences: float | None = option(
        None,
        "filter-random, coverage, typical, target: instead of --tails, drop each signal's "
        "outliers, outside Tukey's fences Q1 - K*IQR and Q3 + K*IQR (1.5 is Tukey's rule; "
        "they drop few records where none is unusual)",
        SELECTION,
        type="fences",
        metavar="K",
    )
    strata: int = option(
        DEFAULT_STRATA, "coverage: equal-width strata of the score's range", SELECTION
    )
    typical_fit: str = option(
        "eligible",
        "typical: the records its k-means is fitted on, those the rules left (eligible) or every "
        "record with an embedding, the rest only masked (pool: the clusters stay put when a rule "
        "changes); distinct: the pool with each group of copies once, and a cluster the rules "
        "mostly drop given to the fill",
        SELECTION,
        choices=TYPICAL_FITS,
    )
    keep_duplicates: bool = option(
        False, "keep every copy of an exact-duplicate text (default: the first)", DUPLICATES
    )
    drop_near_duplicates: bool = option(
        False,
        "keep only the first of each group of near-duplicate texts (MinHash over the folded "
        "text's 5-character shingles: a pair of Jaccard similarity 0.5 is found half the time, "
        "0.7 almost always)",
        DUPLICATES,
    )
    near_duplicate_keep: str = option(
        KEEP_FIRST,
        "which copy of a near-duplicate group stays: the first, the one lowest in a score "
        "(generative: the most predictable copy, most often the one without an edit), or none "
        "(the whole group goes)",
        DUPLICATES,
        choices=NEAR_DUPLICATE_KEEP,
    )
    drop_contained: bool = option(
        False,
        "drop a text whose folded words occur inside a longer text of the input",
        DUPLICATES,
    )
    drop_damaged: bool = option(
        False,
        "drop a text whose encoding is broken: mojibake (ftfy's badness heuristic), the "
        "replacement character U+FFFD or a control character other than whitespace",
        DUPLICATES,
    )
    target: str | None = option(
        None,
        "target: a file of unlabelled texts from the distribution wanted (any input format)",
        TARGETING,
        metavar="FILE",
    )
    target_field: str | None = option(
        None, "the target file's text field (default: the input's)", TARGETING
    )
    target_score: str = option(
        "embedding",
        "target similarity: embedding (k nearest target texts), ngram (DSIR) or both",
        TARGETING,
        choices=("embedding", "ngram", "both"),
    )

    def check(self) -> None:
        """Refuses what cannot work, before any file is read (``ValueError`` naming the option)."""
        from euds.selection import METHODS, TARGET, TARGET_SCORES

        if (self.budget is None) == (self.intervals is None):
            raise ValueError("give exactly one of budget (--budget) and intervals (--interval)")
        if self.budget is not None and (
            isinstance(self.budget, bool)
            or not isinstance(self.budget, (int, float))
            or not 0 < self.budget <= 1
        ):
            raise ValueError(f"budget must be a share in (0, 1], got {self.budget!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {self.seed!r}")
        if not _is_int(self.strata) or self.strata < 1:
            raise ValueError(f"strata must be a positive int, got {self.strata!r}")
        if self.on_nonfinite not in ("raise", "drop"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'drop', got {self.on_nonfinite!r}")
        if self.signals is not None:
            if isinstance(self.signals, str):
                raise ValueError(f"signals must be a list of names, got {self.signals!r}")
            self.signals = tuple(self.signals)
        if isinstance(self.position, Mapping):
            positions = list(self.position.values())
        else:
            positions = [] if self.position is None else [self.position]
        for p in positions:
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError(f"position must lie in [0, 1], got {self.position!r}")
        if self.tails is not None:
            self.tails = check_tails(self.tails)
        if self.fences is not None:
            check_fences(self.fences)
            if self.tails is not None:
                raise ValueError("give --tails (quantiles) or --fences (Tukey's k), not both")
        for name in (
            "absolute",
            "keep_duplicates",
            "drop_near_duplicates",
            "drop_contained",
            "drop_damaged",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.near_duplicate_keep not in NEAR_DUPLICATE_KEEP:
            raise ValueError(
                f"near_duplicate_keep must be one of {NEAR_DUPLICATE_KEEP}: "
                f"{self.near_duplicate_keep!r}"
            )
        spec = self.default_spec()
        check_typical_fit(self.typical_fit, spec.get("method", self.method))
        check_keep_has_groups(
            self.near_duplicate_keep,
            self.drop_near_duplicates or spec.get("drop_near_duplicates", False),
            self.budget if spec else None,
        )
        if self.target_score not in TARGET_SCORES:
            raise ValueError(f"target_score must be one of {TARGET_SCORES}: {self.target_score!r}")
        if (self.method == TARGET) != (self.target is not None):
            raise ValueError(
                "method target needs a target sample (--target FILE), and a target sample "
                "needs --method target"
            )
        if self.target is not None and not Path(self.target).is_file():
            raise ValueError(f"target file not found: {self.target}")

    def select_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`euds.selection.select` (stratify excluded: a file job
        turns its name into labels)."""
        skip = {"stratify", "target", "target_field", "target_score"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def default_spec(self) -> dict[str, Any]:
        """The default's settings at this budget when the default decides the selection (a
        budget, and no method, signals or intervals), else ``{}``."""
        from euds.selection import default_choice, uses_default

        if not uses_default(self.method, self.signals, self.intervals, self.budget, self.position):
            return {}
        assert self.budget is not None
        return default_choice(self.budget)[1]

    def needs_texts(self) -> bool:
        """Whether the selection reads the records' texts: to drop contained or damaged texts
        (asked for, or done by the default at this budget), or for a target's n-gram score."""
        spec = self.default_spec()
        return any(getattr(self, rule) or spec.get(rule, False) for rule in TEXT_RULES) or (
            self.target is not None and self.target_score != "embedding"
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.target is not None:
            out["target"] = os.fspath(self.target)
        return out


def check_thread_variable() -> None:
    """``EUDS_NUM_THREADS``, when set, must be an int from 1 to ``MAX_THREADS`` (the core would
    otherwise ignore or clamp it without a word)."""
    value = os.environ.get("EUDS_NUM_THREADS")
    if value is None:
        return
    try:
        n = int(value.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(
            f"EUDS_NUM_THREADS={value!r} must be an integer from 1 to {MAX_THREADS} (or unset)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "CLUSTERING",
    "DEFAULT_SHARD_SIZE",
    "RUNTIME_ONLY",
    "ScoreConfig",
    "SelectConfig",
]
