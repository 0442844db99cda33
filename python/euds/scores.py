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

from euds._version import __version__
from euds.cache import atomic_path, atomic_write_bytes, sha256_file, sha256_file_cached
from euds.output import ExclusiveLock
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
    # file name -> sha256 (absent in directories made before euds recorded it)
    sha256: dict[str, str] = field(default_factory=dict)


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


_INT, _STR, _BOOL, _DICT, _LIST = "an integer", "a string", "true or false", "an object", "a list"
# Every field a score manifest may hold, and what it must be. A field not listed here is one a
# newer euds wrote (or a hand edit): refused, never guessed at.
_TOP: dict[str, str] = {
    "format": _INT,
    "euds_version": _STR,
    "created": _STR,
    "finished": _STR,
    "status": _STR,
    "input": _DICT,
    "config": _DICT,
    "versions": _DICT,
    "shards": _LIST,
    "writing": _LIST,
    "run_tokens": _LIST,
    "pass_complete": _BOOL,
    "models": _DICT,
    "engine": _DICT,
    "semantic": _DICT,
    "late_files": _DICT,
    "rewriting": _INT,
}
_INPUT = {"path": _STR, "size": _INT, "mtime_ns": _INT, "sha256": _STR}
_SHARD = {"index": _INT, "start": _INT, "rows": _INT, "files": _DICT, "sha256": _DICT}


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, {_STR: str, _BOOL: bool, _DICT: dict, _LIST: list}[kind])


def _fields_problem(value: dict[str, Any], schema: dict[str, str], where: str) -> str | None:
    for key, item in value.items():
        if key not in schema:
            return f"field {where}{key!r} is unknown to this euds (written by a newer one?)"
        if item is None and key in ("sha256", "finished"):
            continue
        if not _is(item, schema[key]):
            return f"field {where}{key!r} must be {schema[key]}, not {json.dumps(item)[:40]}"
    return None


def _manifest_problem(manifest: Any) -> str | None:
    """Why ``manifest`` is not a score manifest this version reads (None when it is), naming
    the field."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if manifest.get("format") != FORMAT_VERSION:
        return f"format {manifest.get('format')!r}, this euds reads format {FORMAT_VERSION}"
    problem = _fields_problem(manifest, _TOP, "")
    if problem:
        return problem
    if manifest.get("status", "scoring") not in ("scoring", "complete"):
        return f"field 'status' must be 'scoring' or 'complete', not {manifest['status']!r}"
    problem = _fields_problem(manifest.get("input", {}), _INPUT, "input.")
    if problem:
        return problem
    for k, shard in enumerate(manifest.get("shards", [])):
        where = f"shards[{k}]."
        if not isinstance(shard, dict):
            return f"field shards[{k}] must be an object"
        problem = _fields_problem(shard, _SHARD, where)
        if problem:
            return problem
        if not {"index", "start", "rows", "files"} <= shard.keys():
            return f"field shards[{k}] lacks one of index, start, rows, files"
        allowed = set(shard_names(shard["index"]))
        for name, size in shard["files"].items():
            if name not in allowed:
                return f"field {where}files names {name!r}, not a file of shard {shard['index']}"
            if not _is(size, _INT):
                return f"field {where}files[{name!r}] must be a size in bytes"
        for name, digest in shard.get("sha256", {}).items():
            if name not in shard["files"] or not (isinstance(digest, str) and len(digest) == 64):
                return f"field {where}sha256[{name!r}] must be the sha256 of a listed file"
    for key, kind in (("writing", _INT), ("run_tokens", _STR)):
        if not all(_is(v, kind) for v in manifest.get(key, [])):
            what = "shard indices" if kind == _INT else "tokens"
            return f"field {key!r} must be a list of {what}"
    for name, entry in manifest.get("late_files", {}).items():
        if name not in (LATE, CENTROIDS) or not (
            isinstance(entry, dict)
            and _is(entry.get("size"), _INT)
            and isinstance(entry.get("sha256"), str)
        ):
            return f"field late_files[{name!r}] must be a late file's size and sha256"
    return _config_problem(manifest.get("config", {}))


def _config_problem(config: dict[str, Any]) -> str | None:
    """Whether a manifest's ``config`` holds what :meth:`ScoreConfig.identity` writes."""
    from dataclasses import fields

    from euds.config import RUNTIME_ONLY, ScoreConfig

    known = {f.name: f for f in fields(ScoreConfig) if f.name not in RUNTIME_ONLY}
    for key, value in config.items():
        if key in ("model_content", "embedder_content"):
            continue
        f = known.get(key)
        if f is None:
            return f"field config.{key!r} is unknown to this euds (written by a newer one?)"
        default = f.default
        if value is None and "None" in str(f.type):  # an optional field
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            return f"field config.{key!r} has the wrong type: {json.dumps(value)[:40]}"
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
    fresh: bool = False  # this run made the manifest: nothing in it is an earlier run's

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
    the files euds wrote). A non-empty folder that is not a score directory is refused, and
    so is a directory whose recorded files are damaged (never repaired by deletion). If the
    block raises before a shard is complete in a manifest this run made, the files this run
    wrote are removed (and the folder, if this run made it), so that a corrected command starts
    afresh; a run that reused or resumed an earlier run's directory removes nothing of it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: a score directory is a folder")
    created = not path.exists()
    if created:
        path.mkdir(parents=True)
    else:
        _refuse_foreign(path)
    lock = ExclusiveLock(path / LOCK, str(path))
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
        manifest, fresh = _open_or_create(
            sd, identity, overwrite=overwrite, reclusterable=reclusterable
        )
        started = True
        yield ScoreRun(sd, manifest, created, fresh)
    except BaseException:
        failed = True
        raise
    finally:
        # A refused directory is left exactly as it was; a run that made its manifest and
        # failed before its first complete shard takes back what it wrote. Nothing an earlier
        # run wrote is ever removed here.
        cleared = not started and not sd.exists()
        if failed and started and fresh:
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
) -> tuple[dict[str, Any], bool]:
    """(the manifest this run goes on with, whether this run made it)."""
    if sd.exists():
        manifest = sd.manifest()
        same = same_input(manifest.get("input", {}), identity["input"])
        config = manifest.get("config")
        same_config = config == identity["config"]
        missing = _missing_columns(sd, manifest, identity.get("columns", ())) if same else []
        complete = manifest.get("status") == "complete"
        recluster = (
            same
            and not same_config
            and not missing
            and manifest.get("pass_complete")
            and _without(config, reclusterable) == _without(identity["config"], reclusterable)
        )
        old_columns = same and same_config and missing and complete and not overwrite
        if (same and same_config and not missing) or old_columns or recluster:
            # Reused, resumed or re-clustered: every file it lists must be as recorded. Damage
            # is refused; with --overwrite the directory is scored again instead.
            problem = sd.damage(manifest)
            if problem and not overwrite:
                sd.check_intact(manifest)
            if not problem:
                if recluster:
                    log.info(
                        "%s: new clustering parameters; re-clustering the kept embeddings",
                        sd.path,
                    )
                    manifest["config"] = identity["config"]
                    manifest["status"] = "scoring"
                    _start(sd, manifest, identity)
                elif old_columns:  # still sound for everything it has
                    log.warning(
                        "%s was scored by an earlier euds, without %s: reusing it; --overwrite "
                        "scores it again",
                        sd.path,
                        ", ".join(missing),
                    )
                elif not complete:
                    _start(sd, manifest, identity)
                return manifest, False
        # A directory without a single complete shard holds nothing to protect.
        nothing_scored = not complete and not manifest.get("shards")
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
        sd.remove(own)
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
    return manifest, True


def _start(sd: ScoreDir, manifest: dict[str, Any], identity: dict[str, Any]) -> None:
    """Records this run (its temp-file token; the input's mtime when it was only touched)
    before it writes anything else."""
    manifest["input"]["mtime_ns"] = identity["input"]["mtime_ns"]
    manifest["run_tokens"] = [*manifest.get("run_tokens", []), sd.token]
    # The late files are written again before this run completes: until then no record of
    # them stands (a run killed meanwhile leaves files no record describes, not a mismatch).
    manifest.pop("late_files", None)
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
    """After a failed run whose manifest this run made: when no shard is listed complete,
    removes every file this run wrote here (the manifest last) and returns True."""
    if not sd.exists():
        return True
    manifest = sd.manifest()
    if manifest.get("shards"):
        return False
    sd.remove(sd.own_files(manifest))
    sd.manifest_path.unlink(missing_ok=True)
    return True


def _remove_folder(path: Path) -> None:
    """Removes a folder this run made, only if it is empty again."""
    with contextlib.suppress(OSError):
        path.rmdir()
