"""A score directory on disk: its manifest, its shards and late files, whether they are as
recorded, and reading them back as one table (:func:`read_scores`)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_path, atomic_write_bytes, sha256_file_cached
from euds.provenance import to_json
from euds.scores.layout import (
    CENTROIDS,
    COLUMN_ORDER,
    LATE,
    MANIFEST,
    ShardInfo,
    embedding_name,
    ids_name,
    part_name,
    shard_names,
)
from euds.scores.manifest import manifest_problem


@dataclass
class ScoreDir:
    """A score directory on disk (see the module docstring). ``token`` tags the temporary
    files of the run writing it, so that a later run can prove they were euds's."""

    path: Path
    token: str | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)  # a str path from a caller works too

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        """The manifest, checked to be a euds score manifest (``ValueError`` otherwise)."""
        try:
            manifest = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise ValueError(f"{self.path} is not a score directory (no {MANIFEST})") from None
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{self.manifest_path} is damaged: {e}") from None
        except IsADirectoryError:
            raise ValueError(f"{self.manifest_path} is a folder, not a manifest") from None
        problem = manifest_problem(manifest)
        if problem:
            raise ValueError(f"{self.manifest_path} is not a euds score manifest: {problem}")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.manifest_path,
            to_json(manifest),
            tag=self.token,
        )

    def shards(self) -> list[ShardInfo]:
        return [ShardInfo(**s) for s in self.manifest().get("shards", [])]

    def complete(self) -> bool:
        return self.manifest().get("status") == "complete"

    def damage(self, manifest: dict[str, Any] | None = None) -> str | None:
        """Why the files the manifest lists (every shard's, and the late files once written)
        are not as it recorded them — the first missing file, or one whose size or sha256
        differs — or None when all are intact."""
        manifest = self.manifest() if manifest is None else manifest
        recorded: list[tuple[str, int | None, str | None]] = []
        for entry in manifest.get("shards", []):
            shard = ShardInfo(**entry)
            for n, size in shard.files.items():
                if shard.index == manifest.get("rewriting") and n == part_name(shard.index):
                    recorded.append((n, None, None))  # being rewritten: checked by its rows
                else:
                    recorded.append((n, size, shard.sha256.get(n)))
        for name, entry in manifest.get("late_files", {}).items():
            recorded.append((name, entry["size"], entry.get("sha256")))
        for name, size, digest in recorded:
            path = self.path / name
            if not path.is_file() or path.is_symlink():
                return f"{path} is missing"
            if size is None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                try:
                    pq.ParquetFile(path)
                except (pa.ArrowException, OSError):
                    return f"{path} is not a readable Parquet file"
                continue
            actual = path.stat().st_size
            if actual != size:
                return f"{path} has {actual} bytes, the manifest recorded {size}"
            if digest is not None and sha256_file_cached(path) != digest:
                return f"{path} has another sha256 than the manifest recorded"
        return None

    def check_intact(self, manifest: dict[str, Any]) -> None:
        """Refuses a directory whose recorded files are damaged, in one line naming the file:
        euds never repairs damage by deleting what an earlier run wrote."""
        problem = self.damage(manifest)
        if problem:
            raise ValueError(
                f"{problem}: the score directory is damaged; `--overwrite` scores it again "
                "(or restore the file)"
            )

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
        digests: dict[str, str] = {}

        def record(name: str) -> None:
            files[name] = (self.path / name).stat().st_size
            digests[name] = sha256_file_cached(self.path / name)

        name = part_name(index)
        with self.atomic(name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        record(name)
        if embeddings is not None:
            name = embedding_name(index)
            with self.atomic(name) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, embeddings.astype(np.float16))
            record(name)
        if token_ids is not None:
            name = ids_name(index)
            with self.atomic(name) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, offsets=token_ids[0], ids=token_ids[1])
            record(name)
        return ShardInfo(index=index, start=start, rows=table.num_rows, files=files, sha256=digests)

    def write_late(self, columns: dict[str, np.ndarray]) -> dict[str, Any]:
        """Writes ``late.parquet``; returns its record for the manifest's ``late_files``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v, pa.float64()) for k, v in columns.items()})
        with self.atomic(LATE) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return self._file_record(LATE)

    def write_centroids(self, centroids: np.ndarray) -> dict[str, Any]:
        """Writes ``centroids.npy``; returns its record for the manifest's ``late_files``."""
        with self.atomic(CENTROIDS) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, centroids)
        return self._file_record(CENTROIDS)

    def _file_record(self, name: str) -> dict[str, Any]:
        path = self.path / name
        return {"size": path.stat().st_size, "sha256": sha256_file_cached(path)}

    def atomic(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """A temporary path for the file ``name``, tagged with this run's token."""
        return atomic_path(self.path / name, tag=self.token)

    # -- what euds wrote here --------------------------------------------------------------------

    def own_files(self, manifest: dict[str, Any]) -> set[str]:
        """The names of the files present that euds can prove it wrote (see the module
        docstring); the manifest and the lock file are not among them."""
        names = {name for s in manifest.get("shards", []) for name in s["files"]}
        for index in manifest.get("writing", []):
            names.update(shard_names(index))
        if manifest.get("pass_complete"):  # late files are written only after the pass
            names.update((LATE, CENTROIDS))
        return {n for n in self._present(names, manifest)}

    def leftovers(self, manifest: dict[str, Any]) -> set[str]:
        """What an interrupted run left that a resumed run may remove: the files of the shards
        the manifest says a run was writing (``writing``) that it does not list as complete, and
        temporary files tagged with a run token it records. Never a listed file."""
        listed = {name for s in manifest.get("shards", []) for name in s["files"]}
        names = {n for index in manifest.get("writing", []) for n in shard_names(index)}
        return self._present(names - listed, manifest, with_listed=False)

    def _present(
        self, names: set[str], manifest: dict[str, Any], *, with_listed: bool = True
    ) -> set[str]:
        """The regular files here named in ``names`` or carrying a recorded run's temp tag."""
        tags = [f".{t}." for t in manifest.get("run_tokens", [])]
        listed = {name for s in manifest.get("shards", []) for name in s["files"]}
        present = set()
        for path in self.path.iterdir():
            temp = path.name.startswith(".") and path.name.endswith(".tmp")
            if not (path.name in names or (temp and any(t in path.name for t in tags))):
                continue
            if not with_listed and path.name in listed:
                continue
            if path.is_file() and not path.is_symlink():
                present.add(path.name)
        return present

    def remove(self, names: set[str]) -> None:
        for name in sorted(names):
            (self.path / name).unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------------

    def centroids(self) -> np.ndarray:
        return np.load(self.path / CENTROIDS)

    def embeddings(self, shard: ShardInfo) -> np.ndarray:
        return np.load(self.path / embedding_name(shard.index), mmap_mode="r")

    def cluster_labels(self) -> np.ndarray:
        """The k-means cluster of every record, in input order: the index of the centroid
        nearest (largest inner product, the lowest index on a tie) to its stored embedding,
        -1 for a record without one (no text). Computed from ``emb-*.npy`` and
        ``centroids.npy``, so a directory scored with the semantic signal needs no rescoring."""
        if not (self.path / CENTROIDS).is_file():
            raise ValueError(
                f"{self.path} has no k-means centroids: score with the semantic signal to "
                "stratify by cluster"
            )
        from euds.signals.semantic import nearest_centroid

        centroids = self.centroids()
        labels = []
        for shard in self.shards():
            if embedding_name(shard.index) not in shard.files:
                raise ValueError(f"{self.path}: shard {shard.index} kept no embeddings")
            labels.append(nearest_centroid(self.embeddings(shard), centroids))
        return np.concatenate(labels)

    def has_embeddings(self) -> bool:
        """Whether every shard kept its embeddings (the semantic signal was scored)."""
        shards = self.shards()
        return bool(shards) and all(embedding_name(s.index) in s.files for s in shards)

    def embedding_matrix(self) -> np.ndarray:
        """Every record's stored embedding, in input order, as float32 ``[n, d]`` (NaN rows for
        records without text)."""
        parts = []
        for shard in self.shards():
            if embedding_name(shard.index) not in shard.files:
                raise ValueError(
                    f"{self.path} kept no embeddings (shard {shard.index}): score with the "
                    "semantic signal to select by embeddings"
                )
            parts.append(np.asarray(self.embeddings(shard), dtype=np.float32))
        if not parts:
            raise ValueError(f"{self.path} holds no scores yet")
        return np.concatenate(parts)

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
        # A run resumed across versions may mix shards with and without text_hash: the
        # missing column reads as nulls (duplicates not detected there).
        table = (
            pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        )
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
            lacking = [c for c in columns if c not in table.column_names]
            if lacking:
                raise ValueError(
                    f"{self.path} has no {', '.join(lacking)} column: scored by an earlier euds "
                    "or without that signal; score the input again (--overwrite)"
                )
            table = table.select(columns)
        return table


def read_scores(path: str | os.PathLike[str], columns: list[str] | None = None):
    """The score table of a score directory (or of a single score Parquet file)."""
    path = Path(path)
    if path.is_dir():
        return ScoreDir(path).read(columns)
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)
