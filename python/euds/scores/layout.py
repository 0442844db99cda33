"""What a score directory's files are called, and what each shard record says (see
:mod:`euds.scores` for the layout)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MANIFEST = "_manifest.json"
LATE = "late.parquet"
CENTROIDS = "centroids.npy"
LOCK = ".euds.lock"
FORMAT_VERSION = 1
COLUMN_ORDER = (
    "id",
    "information",
    "generative",
    "nll",
    "bpb",
    "semantic",
    "n_tokens",
    "truncated",
    "flags",
    "text_hash",
    "near_keys",
)


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def embedding_name(index: int) -> str:
    return f"emb-{index:05d}.npy"


def ids_name(index: int) -> str:
    return f"ids-{index:05d}.npz"


@dataclass
class ShardInfo:
    index: int
    start: int
    rows: int
    files: dict[str, int] = field(default_factory=dict)  # file name -> size in bytes
    # file name -> sha256 (absent in directories made before euds recorded it)
    sha256: dict[str, str] = field(default_factory=dict)


def shard_names(index: int) -> tuple[str, str, str]:
    """Every file name a shard may have (part, embeddings, token ids)."""
    return part_name(index), embedding_name(index), ids_name(index)


_SHARD_FILE = re.compile(r"(part-\d+\.parquet|emb-\d+\.npy|ids-\d+\.npz)")


def is_reserved_name(name: str) -> bool:
    """A name a run may write (it would replace a file of that name)."""
    return name in (LATE, CENTROIDS) or _SHARD_FILE.fullmatch(name) is not None
