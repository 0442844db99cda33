"""The score directory: score shards in Parquet, kept embeddings, late columns, a manifest.

Layout of ``SCORES_DIR``::

    _manifest.json        config, input identity, model hashes, library versions, shard list,
                          status ("scoring" until the pass and the late columns are done)
    part-00000.parquet    rows [0, shard_size): id, information, generative, nll, bpb,
                          n_tokens, truncated, flags (the signals scored in the pass),
                          text_hash and near_keys (the exact- and near-duplicate keys of
                          :mod:`euds.duplicates`);
                          text_hash, near_keys and bpb are absent in directories scored
                          before they existed
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

This module also owns the directory's life cycle (:func:`open_for_scoring`), the same for
every engine: open, resume, reuse or replace a score directory, under an exclusive lock.
euds deletes only files it can prove it wrote: the files a valid manifest lists, the files of
the shards the manifest says a run was writing (``writing``), the late files, and temporary
files carrying the token of a run recorded in the manifest (``run_tokens``). It never deletes
a folder it did not create, and it refuses a non-empty folder that is not a score directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from euds._core import EudsError
from euds._version import __version__
from euds.cache import atomic_path, atomic_write_bytes, sha256_file
from euds.provenance import now_iso, to_json, versions

log = logging.getLogger("euds")

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


def shard_names(index: int) -> tuple[str, str, str]:
    """Every file name a shard may have (part, embeddings, token ids)."""
    return part_name(index), embedding_name(index), ids_name(index)


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
        problem = _manifest_problem(manifest)
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
        with self.atomic(name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        files[name] = (self.path / name).stat().st_size
        if embeddings is not None:
            name = embedding_name(index)
            with self.atomic(name) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, embeddings.astype(np.float16))
            files[name] = (self.path / name).stat().st_size
        if token_ids is not None:
            name = ids_name(index)
            with self.atomic(name) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, offsets=token_ids[0], ids=token_ids[1])
            files[name] = (self.path / name).stat().st_size
        return ShardInfo(index=index, start=start, rows=table.num_rows, files=files)

    def write_late(self, columns: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v, pa.float64()) for k, v in columns.items()})
        with self.atomic(LATE) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def write_centroids(self, centroids: np.ndarray) -> None:
        with self.atomic(CENTROIDS) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, centroids)

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
        tags = [f".{t}." for t in manifest.get("run_tokens", [])]
        present = set()
        for path in self.path.iterdir():
            temp = path.name.startswith(".") and path.name.endswith(".tmp")
            if (path.name in names or (temp and any(t in path.name for t in tags))) and (
                path.is_file() and not path.is_symlink()
            ):
                present.add(path.name)
        return present

    def drop_stale(self, manifest: dict[str, Any], keep: list[ShardInfo]) -> None:
        """Removes what earlier runs left beyond the shards in ``keep``: files of unlisted or
        damaged shards, late files, temporary files (only files euds can prove it wrote)."""
        kept = {name for s in keep for name in s.files}
        for name in sorted(self.own_files(manifest) - kept):
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
            table = table.select(columns)
        return table


def read_scores(path: str | os.PathLike[str], columns: list[str] | None = None):
    """The score table of a score directory (or of a single score Parquet file)."""
    path = Path(path)
    if path.is_dir():
        return ScoreDir(path).read(columns)
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns)


# -- life cycle ------------------------------------------------------------------------------------


def _manifest_problem(manifest: Any) -> str | None:
    """Why ``manifest`` is not a score manifest this version reads (None when it is)."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if manifest.get("format") != FORMAT_VERSION:
        return f"format {manifest.get('format')!r}, this euds reads format {FORMAT_VERSION}"
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(
        isinstance(s, dict)
        and {"index", "start", "rows", "files"} <= s.keys()
        and all(isinstance(s[k], int) for k in ("index", "start", "rows"))
        and isinstance(s["files"], dict)
        and all(isinstance(k, str) and "/" not in k for k in s["files"])
        for s in shards
    ):
        return "its shard list is damaged"
    for key in ("writing", "run_tokens"):
        if not isinstance(manifest.get(key, []), list):
            return f"{key!r} is not a list"
    if not all(isinstance(k, int) for k in manifest.get("writing", [])):
        return "'writing' is not a list of shard indices"
    if not isinstance(manifest.get("input", {}), dict) or not isinstance(
        manifest.get("config", {}), dict
    ):
        return "'input' or 'config' is not an object"
    return None


def input_identity(path: Path) -> dict[str, Any]:
    """Path, size and mtime of an input: how a score directory knows its input cheaply."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def same_input(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """The file a score directory was made from: same path and size, and the same mtime or,
    once a run has completed and recorded it, the same sha256 (a copied or touched file)."""
    if recorded.get("path") != current["path"] or recorded.get("size") != current["size"]:
        return False
    if recorded.get("mtime_ns") == current["mtime_ns"]:
        return True
    return recorded.get("sha256") is not None and sha256_file(current["path"]) == recorded["sha256"]


@dataclass
class ScoreRun:
    """A score directory opened for scoring by :func:`open_for_scoring`."""

    sd: ScoreDir
    manifest: dict[str, Any]
    created: bool  # this run made the folder

    def write(self) -> None:
        self.sd.write_manifest(self.manifest)


@contextlib.contextmanager
def open_for_scoring(
    path: str | os.PathLike[str],
    identity: dict[str, Any],
    *,
    overwrite: bool = False,
    reclusterable: frozenset[str] = frozenset(),
) -> Iterator[ScoreRun]:
    """Opens ``path`` for a scoring run of ``identity`` (``{"input": ..., "config": ...}``)
    and holds its lock until the block ends.

    The manifest it yields is the directory's own when it holds the same input and
    configuration (complete: reused; incomplete: resumed) or differs only in the
    ``reclusterable`` options once the pass is complete; otherwise a new one, replacing the
    old scores only when nothing was scored yet or with ``overwrite`` (and then deleting only
    the files euds wrote). A non-empty folder that is not a score directory is refused. If
    the block raises before a shard is complete, the files this run wrote are removed (and the
    folder, if this run made it), so that a corrected command starts afresh.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: a score directory is a folder")
    created = not path.exists()
    if created:
        path.mkdir(parents=True)
    else:
        _refuse_foreign(path)
    lock = _DirLock(path / LOCK)
    try:
        lock.acquire()
    except BaseException:
        if created:
            _remove_folder(path)
        raise
    sd = ScoreDir(path, token=secrets.token_hex(8))
    started = failed = False
    try:
        _refuse_foreign(path)  # again, now that no other run can change it
        manifest = _open_or_create(sd, identity, overwrite=overwrite, reclusterable=reclusterable)
        started = True
        yield ScoreRun(sd, manifest, created)
    except BaseException:
        failed = True
        raise
    finally:
        # A refused directory is left exactly as it was; a run that failed before its first
        # complete shard takes back what it wrote.
        cleared = not started and not sd.exists()
        if failed and started:
            with contextlib.suppress(Exception):
                cleared = _clear_if_nothing_scored(sd)
        lock.release()
        if cleared and created:
            _remove_folder(path)


def _refuse_foreign(path: Path) -> None:
    entries = [p.name for p in path.iterdir() if p.name != LOCK]
    if not entries:
        return
    if MANIFEST in entries:
        try:
            ScoreDir(path).manifest()
            return
        except ValueError as e:
            why = str(e)
    else:
        why = f"it has no {MANIFEST}"
    raise ValueError(
        f"{path} is not empty and not a score directory ({why}); euds deletes only files it "
        "wrote, so choose a new or empty output folder"
    )


def _open_or_create(
    sd: ScoreDir,
    identity: dict[str, Any],
    *,
    overwrite: bool,
    reclusterable: frozenset[str],
) -> dict[str, Any]:
    if sd.exists():
        manifest = sd.manifest()
        same = same_input(manifest.get("input", {}), identity["input"])
        config = manifest.get("config")
        missing = _missing_columns(sd, manifest, identity.get("columns", ())) if same else []
        if same and config == identity["config"] and not missing:
            if manifest.get("status") != "complete":
                _start(sd, manifest, identity)
            return manifest
        if (
            same
            and config == identity["config"]
            and missing
            and not overwrite
            and manifest.get("status") == "complete"
        ):
            # Still sound for everything it has; only the new columns are absent.
            log.warning(
                "%s was scored by an earlier euds, without %s: reusing it; --overwrite scores "
                "it again",
                sd.path,
                ", ".join(missing),
            )
            return manifest
        if (
            same
            and not missing
            and manifest.get("pass_complete")
            and _without(config, reclusterable) == _without(identity["config"], reclusterable)
        ):
            log.info("%s: new clustering parameters; re-clustering the kept embeddings", sd.path)
            manifest["config"] = identity["config"]
            manifest["status"] = "scoring"
            _start(sd, manifest, identity)
            return manifest
        # A directory without a single complete shard holds nothing to protect.
        nothing_scored = manifest.get("status") != "complete" and not manifest.get("shards")
        if not overwrite and not nothing_scored and missing:
            raise ValueError(
                f"{sd.path} was scored by an earlier euds, without the column(s) "
                f"{', '.join(missing)}; pass --overwrite to score it again, or choose a new "
                "output folder"
            )
        if not overwrite and not nothing_scored:
            raise ValueError(
                f"{sd.path} holds scores of another input or configuration; choose a new "
                "output folder or pass --overwrite"
            )
        own = sd.own_files(manifest)
        taken = sorted(
            p.name for p in sd.path.iterdir() if p.name not in own and _is_reserved_name(p.name)
        )
        if taken:
            raise ValueError(
                f"{sd.path} holds files that euds did not write under names a score directory "
                f"uses ({', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}); move them "
                "or choose another output folder"
            )
        sd.drop_stale(manifest, keep=[])
    manifest = {
        "format": FORMAT_VERSION,
        "euds_version": __version__,
        "created": now_iso(),
        "status": "scoring",
        "input": dict(identity["input"]),
        "config": identity["config"],
        "versions": versions(),
        "shards": [],
    }
    _start(sd, manifest, identity)
    return manifest


def _start(sd: ScoreDir, manifest: dict[str, Any], identity: dict[str, Any]) -> None:
    """Records this run (its temp-file token; the input's mtime when it was only touched)
    before it writes anything else."""
    manifest["input"]["mtime_ns"] = identity["input"]["mtime_ns"]
    manifest["run_tokens"] = [*manifest.get("run_tokens", []), sd.token]
    sd.write_manifest(manifest)


_SHARD_FILE = re.compile(r"(part-\d+\.parquet|emb-\d+\.npy|ids-\d+\.npz)")


def _is_reserved_name(name: str) -> bool:
    """A name a run may write (it would replace a file of that name)."""
    return name in (LATE, CENTROIDS) or _SHARD_FILE.fullmatch(name) is not None


def _missing_columns(sd: ScoreDir, manifest: dict[str, Any], expected: Any) -> list[str]:
    """The pass columns (``expected``) that the directory's first shard lacks: a directory
    scored by an earlier euds (before ``bpb`` or ``text_hash``) has fewer. Complete, it is
    reused with a warning (``--overwrite`` scores it again); unfinished, it cannot be resumed
    into shards of two layouts and is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = manifest.get("shards") or []
    if not expected or not shards:
        return []
    try:
        names = set(pq.read_schema(sd.path / part_name(int(shards[0]["index"]))).names)
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return []  # a damaged shard is the resume logic's business
    return [c for c in expected if c not in names]


def _without(config: Any, keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in keys} if isinstance(config, dict) else {}


def _clear_if_nothing_scored(sd: ScoreDir) -> bool:
    """After a failed run: when no shard is complete, removes every file euds wrote here
    (the manifest last) and returns True."""
    if not sd.exists():
        return True
    manifest = sd.manifest()
    if sd.intact_shards():
        return False
    sd.drop_stale(manifest, keep=[])
    sd.manifest_path.unlink(missing_ok=True)
    return True


def _remove_folder(path: Path) -> None:
    """Removes a folder this run made, only if it is empty again."""
    with contextlib.suppress(OSError):
        path.rmdir()


class _DirLock:
    """An exclusive ``flock`` on a score directory for a whole run; a second run fails at once
    with a message naming the holder's pid. The lock file is removed when the run ends, so a
    run checks, once it holds the lock, that its file is still the one at the path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.made = False

    def acquire(self) -> None:
        while True:
            try:  # a lock file this run made is removed at the end; one found there is kept
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                self.made = True
            except FileExistsError:
                fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                self.made = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise EudsError(
                        f"{self.path.parent} is in use by another euds run (pid {holder}); wait "
                        "for it to finish or choose another output folder"
                    ) from None
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it as we opened it: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        if self.made:
            self.path.unlink(missing_ok=True)
        else:
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None
