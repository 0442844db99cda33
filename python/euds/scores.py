"""The score directory: score shards in Parquet, kept embeddings, late columns, a manifest.

Layout of ``SCORES_DIR``::

    _manifest.json        config, input identity, model hashes, library versions, shard list,
                          status ("scoring" until the pass and the late columns are done)
    part-00000.parquet    rows [0, shard_size): id, information, generative, nll, n_tokens,
                          truncated, flags (the signals scored in the pass)
    emb-00000.npy         float16 embeddings of those rows (semantic signal), kept so that
                          clustering or re-selection never re-embeds
    ids-00000.npz         content token ids of those rows (corpus-mode information only)
    late.parquet          columns computed after the pass over the whole pool, in row order:
                          ``semantic`` (and ``information`` in corpus mode)
    centroids.npy         the spherical k-means centroids behind ``semantic``

Every file is written under a temporary name and renamed when complete, and the manifest is
rewritten (atomically) after each shard: a killed run leaves complete shards and a manifest
that lists exactly them. :func:`read_scores` joins the parts and the late columns into one
table whose rows follow the input's order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_path, atomic_write_bytes

MANIFEST = "_manifest.json"
LATE = "late.parquet"
CENTROIDS = "centroids.npy"
FORMAT_VERSION = 1
COLUMN_ORDER = (
    "id",
    "information",
    "generative",
    "nll",
    "semantic",
    "n_tokens",
    "truncated",
    "flags",
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


@dataclass
class ScoreDir:
    """A score directory on disk (see the module docstring)."""

    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{self.path} is not a score directory (no {MANIFEST})") from None
        except ValueError as e:
            raise ValueError(f"{self.manifest_path} is damaged: {e}") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.manifest_path, json.dumps(manifest, indent=2, default=_json).encode()
        )

    def shards(self) -> list[ShardInfo]:
        return [ShardInfo(**s) for s in self.manifest().get("shards", [])]

    def complete(self) -> bool:
        return self.manifest().get("status") == "complete"

    def rows(self) -> int:
        return sum(s.rows for s in self.shards())

    def intact_shards(self) -> list[ShardInfo]:
        """The shards listed in the manifest whose files are all present with their sizes
        (a shard written but not yet listed, or listed but damaged, is not complete), by index."""
        good = [
            shard
            for shard in self.shards()
            if all(
                (self.path / name).is_file() and (self.path / name).stat().st_size == size
                for name, size in shard.files.items()
            )
        ]
        return sorted(good, key=lambda s: s.index)

    def verify_shards(self) -> list[ShardInfo]:
        """The intact shards 0, 1, ..., k-1: where a sequential run resumes (an engine that
        writes shards out of order may leave gaps; everything after the first is redone)."""
        prefix = []
        for shard in self.intact_shards():
            if shard.index != len(prefix):
                break
            prefix.append(shard)
        return prefix

    # -- writing ---------------------------------------------------------------------------------

    def write_shard(
        self,
        index: int,
        start: int,
        table: Any,
        embeddings: np.ndarray | None = None,
        token_ids: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ShardInfo:
        """Writes one shard's files atomically and returns its record for the manifest."""
        import pyarrow.parquet as pq

        files: dict[str, int] = {}
        name = part_name(index)
        with atomic_path(self.path / name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        files[name] = (self.path / name).stat().st_size
        if embeddings is not None:
            name = embedding_name(index)
            with atomic_path(self.path / name) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, embeddings.astype(np.float16))
            files[name] = (self.path / name).stat().st_size
        if token_ids is not None:
            name = ids_name(index)
            with atomic_path(self.path / name) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, offsets=token_ids[0], ids=token_ids[1])
            files[name] = (self.path / name).stat().st_size
        return ShardInfo(index=index, start=start, rows=table.num_rows, files=files)

    def write_late(self, columns: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v, pa.float64()) for k, v in columns.items()})
        with atomic_path(self.path / LATE) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    # -- reading ---------------------------------------------------------------------------------

    def embeddings(self, shard: ShardInfo) -> np.ndarray:
        return np.load(self.path / embedding_name(shard.index), mmap_mode="r")

    def token_ids(self, shard: ShardInfo) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.path / ids_name(shard.index)) as z:
            return z["offsets"], z["ids"]

    def read_part(self, shard: ShardInfo, columns: list[str] | None = None):
        import pyarrow.parquet as pq

        return pq.read_table(self.path / part_name(shard.index), columns=columns)

    def read(self, columns: list[str] | None = None):
        """All scores as one ``pyarrow.Table`` in input order (parts + late columns)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        shards = self.shards()
        if not shards:
            raise ValueError(f"{self.path} holds no scores yet")
        tables = [self.read_part(s) for s in shards]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        late_path = self.path / LATE
        if late_path.is_file():
            late = pq.read_table(late_path)
            if late.num_rows != table.num_rows:
                raise ValueError(
                    f"{late_path} has {late.num_rows} rows, the parts {table.num_rows}"
                )
            for name in late.column_names:
                if name in table.column_names:
                    table = table.set_column(
                        table.column_names.index(name), name, late.column(name)
                    )
                else:
                    table = table.append_column(name, late.column(name))
        order = [c for c in COLUMN_ORDER if c in table.column_names]
        order += [c for c in table.column_names if c not in order]
        table = table.select(order)
        if columns is not None:
            table = table.select(columns)
        return table


def read_scores(path: str | os.PathLike[str], columns: list[str] | None = None):
    """The score table of a score directory (or of a single score Parquet file)."""
    path = Path(path)
    if path.is_dir():
        return ScoreDir(path).read(columns)
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


def _json(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
