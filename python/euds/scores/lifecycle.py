"""The score directory's life cycle (:func:`open_for_scoring`), the same for every engine:
open, resume, reuse, re-cluster or replace a score directory, under an exclusive lock, deleting
only what euds can prove it wrote and refusing damage instead of repairing it by deletion."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euds._core import EudsError
from euds._version import __version__
from euds.cache import sha256_file
from euds.output import RunLock
from euds.provenance import now_iso, versions
from euds.scores.directory import ScoreDir
from euds.scores.layout import FORMAT_VERSION, LOCK, MANIFEST, is_reserved_name, part_name

log = logging.getLogger("euds")


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
    read_only: bool = False  # complete and reused as it is, under a shared lock

    def write(self) -> None:
        if self.read_only:
            raise EudsError(f"{self.sd.path} was opened to be reused as it is, not written")
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

    The manifest it yields is the directory's own when it holds the same input and configuration
    (complete: reused, read-only, under a lock shared with other runs that reuse it; incomplete:
    resumed) or differs only in the ``reclusterable`` options once the pass is complete;
    otherwise a new one, replacing the old scores only when nothing was scored yet or with
    ``overwrite`` (and then deleting only the files euds wrote). A non-empty folder that is not
    a score directory is refused, and so is a directory whose recorded files are damaged (never
    repaired by deletion). If the block raises before a shard is complete in a manifest this run
    made, the files this run wrote are removed (and the folder, if this run made it), so that a
    corrected command starts afresh; a run that reused or resumed an earlier run's directory
    removes nothing of it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: a score directory is a folder")
    created = not path.exists()
    if created:
        path.mkdir(parents=True)
    else:
        _refuse_foreign(path)
        with RunLock(path / LOCK, str(path), shared=True):
            _refuse_foreign(path)  # again, now that no writer can change it
            sd = ScoreDir(path)
            manifest = _reusable(sd, identity, overwrite=overwrite)
            if manifest is not None:
                yield ScoreRun(sd, manifest, created=False, read_only=True)
                return
    lock = RunLock(path / LOCK, str(path))
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
        yield ScoreRun(sd, manifest, created, fresh, read_only=manifest.get("status") == "complete")
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
            # A damaged or newer manifest: say what is wrong with it, and touch nothing.
            raise ValueError(
                f"{path} is not a score directory euds can use: {e} (restore the manifest, or "
                "choose a new output folder; euds writes nothing here meanwhile)"
            ) from None
    why = f"it has no {MANIFEST}"
    raise ValueError(
        f"{path} is not empty and not a score directory ({why}); euds deletes only files it "
        "wrote, so choose a new or empty output folder"
    )


def _reusable(sd: ScoreDir, identity: dict[str, Any], *, overwrite: bool) -> dict[str, Any] | None:
    """The manifest of a complete, intact directory of this input and configuration, which a
    run reuses as it is (writing nothing); None for any other directory. One scored by an
    earlier euds, without some of the pass columns, is reused with a warning unless
    ``overwrite``."""
    if not sd.exists():
        return None
    manifest = sd.manifest()
    if (
        manifest.get("status") != "complete"
        or not same_input(manifest.get("input", {}), identity["input"])
        or manifest.get("config") != identity["config"]
    ):
        return None
    missing = _missing_columns(sd, manifest, identity.get("columns", ()))
    if (missing and overwrite) or sd.damage(manifest):
        return None  # scored again, or refused: a writer's decision
    if missing:  # still sound for everything it has
        log.warning(
            "%s was scored by an earlier euds, without %s: reusing it; --overwrite scores it again",
            sd.path,
            ", ".join(missing),
        )
    return manifest


def _open_or_create(
    sd: ScoreDir,
    identity: dict[str, Any],
    *,
    overwrite: bool,
    reclusterable: frozenset[str],
) -> tuple[dict[str, Any], bool]:
    """(the manifest this run goes on with, whether this run made it)."""
    reused = _reusable(sd, identity, overwrite=overwrite)
    if reused is not None:  # made reusable since the shared look: nothing to write
        return reused, False
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
            # Resumed or re-clustered (an intact complete one was reused above): every file it
            # lists must be as recorded. Damage is refused; with --overwrite the directory is
            # scored again instead.
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
            p.name for p in sd.path.iterdir() if p.name not in own and is_reserved_name(p.name)
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
