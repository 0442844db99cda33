"""What a score manifest may hold, checked field by field: a hand-damaged manifest, or one a
newer euds wrote, is one line naming the file and the field, never an internal error."""

from __future__ import annotations

import json
from typing import Any

from euds.scores.layout import CENTROIDS, FORMAT_VERSION, LATE, shard_names

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


def manifest_problem(manifest: Any) -> str | None:
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
