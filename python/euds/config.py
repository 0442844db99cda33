"""The scoring configuration: :class:`ScoreConfig`, everything that decides the scores.

Each field carries its command-line form in its metadata (``cli``: help, group, flag, choices),
so that ``euds score`` / ``euds run`` build their options from this one list
(:func:`euds.cli` reads :func:`dataclasses.fields`) and a new option is written once. Which
fields take part in a score directory's identity is decided here too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from euds.io import DEFAULT_BATCH_SIZE, FORMATS
from euds.kernels import MAX_THREADS  # for the kernels and ONNX Runtime alike
from euds.model_sources import content_key
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

# Option groups of ``euds score --help``.
SCORING, READING, INFORMATION, GENERATIVE, SEMANTIC = (
    "scoring",
    "reading",
    "information signal",
    "generative signal",
    "semantic signal",
)


def _option(default: Any, help: str, group: str = SCORING, **cli: Any) -> Any:
    """A field with its command-line form: ``flag`` (default ``--name-with-dashes``),
    ``choices``, ``type`` (default: the default's type), ``action``."""
    return field(default=default, metadata={"cli": {"help": help, "group": group, **cli}})


@dataclass
class ScoreConfig:
    """Everything that decides the scores (see ``euds score --help``)."""

    signals: tuple[str, ...] = _option(
        SIGNALS,
        f"comma-separated subset of {','.join(SIGNALS)} (default: all three)",
        type="signals",
    )
    # reading
    text_field: str = _option("text", "field holding the text (default: text)", READING)
    id_field: str | None = _option(
        "id", "field holding the record id; row numbers when absent", READING, type="optional"
    )
    format: str | None = _option(
        None, "input format (default: from the name)", READING, choices=FORMATS
    )
    strict: bool = _option(False, "fail on the first bad record instead of flagging it")
    batch_size: int = _option(DEFAULT_BATCH_SIZE, "records per batch")
    shard_size: int = _option(DEFAULT_SHARD_SIZE, "records per shard")
    # tokens
    max_tokens: int = _option(DEFAULT_MAX_TOKENS, "BOS + content tokens (up to the LM's limit)")
    # a tokenizer.json path; None = the scoring LM's (SmolLM2's from the GGUF by default)
    tokenizer: str | None = _option(
        None, "a tokenizer.json for the information signal (default: the scoring LM's)"
    )
    # information
    information_mode: str = _option(
        "sample", "per-text or pool unigrams", INFORMATION, choices=MODES
    )
    # generative
    # None = the SmolLM2 cache entry; a user's model is exported into the cache on first use
    model: str | None = _option(
        None,
        "the scoring LM: a Hugging Face causal-LM folder, a GGUF file or a folder "
        "`euds models prepare` made (default: SmolLM2)",
        GENERATIVE,
    )
    batch_tokens: int = _option(DEFAULT_BATCH_TOKENS, "positions per ONNX Runtime call", GENERATIVE)
    packing: bool = _option(
        True, "one text per row (padded)", GENERATIVE, flag="--no-packing", action="store_false"
    )
    pack_length: int = _option(DEFAULT_PACK_LENGTH, "positions per packed row", GENERATIVE)
    precision: str = _option("fp32", "LM weights and activations", GENERATIVE, choices=PRECISIONS)
    reduction: str = _option("kernel", "C++ kernel or in-graph", GENERATIVE, choices=REDUCTIONS)
    device: str = _option("cpu", "where the LM runs", GENERATIVE, choices=DEVICES)
    # from the common --threads option (0: the default)
    threads: int | None = field(default=None, metadata={"cli": None})
    # semantic
    # None = the all-MiniLM-L6-v2 cache entry
    embedder: str | None = _option(
        None,
        "a sentence-transformers folder or a folder `euds models prepare` made "
        "(default: all-MiniLM-L6-v2)",
        SEMANTIC,
    )
    embed_batch_tokens: int = _option(DEFAULT_EMBED_BATCH_TOKENS, "word pieces per call", SEMANTIC)
    pooling: str = _option("core", "mean pooling in C++ or in-graph", SEMANTIC, choices=POOLINGS)
    embed_precision: str = _option(
        "fp32", "embedder weights and activations", SEMANTIC, choices=EMBED_PRECISIONS
    )
    k: int = _option(DEFAULT_K, "k-means centroids", SEMANTIC)
    temperature: float = _option(DEFAULT_TEMPERATURE, "softmax temperature", SEMANTIC)
    m: int | None = _option(
        None, "nearest centroids per text (default: min(k, 32))", SEMANTIC, type=int
    )
    seed: int = _option(DEFAULT_SEED, "k-means seed", SEMANTIC)
    max_points_per_centroid: int = _option(
        DEFAULT_MAX_POINTS_PER_CENTROID,
        "k-means trains on at most this many points per centroid",
        SEMANTIC,
    )

    def check(self) -> None:
        self.signals = tuple(self.signals)
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals or len(set(self.signals)) != len(self.signals):
            raise ValueError(f"signals must be distinct names from {SIGNALS}, got {self.signals}")
        for name in ("batch_size", "shard_size", "max_tokens", "k", "batch_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.shard_size % self.batch_size:
            raise ValueError(
                f"shard_size ({self.shard_size}) must be a multiple of batch_size "
                f"({self.batch_size}) so that shards hold whole batches"
            )
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.threads is not None and not (
            isinstance(self.threads, int) and 0 <= self.threads <= MAX_THREADS
        ):
            raise ValueError(f"threads must be an int in [0, {MAX_THREADS}], got {self.threads!r}")

    def identity(self) -> dict[str, Any]:
        identity = {k: v for k, v in asdict(self).items() if k not in RUNTIME_ONLY}
        # A model named by path takes part by its content too (the default models are fixed
        # by the pinned packages).
        for name, role in (("model", "lm"), ("embedder", "embedder")):
            if identity[name] is not None:
                identity[f"{name}_content"] = content_key(identity[name], role)
        return identity


__all__ = ["CLUSTERING", "DEFAULT_SHARD_SIZE", "RUNTIME_ONLY", "ScoreConfig"]
