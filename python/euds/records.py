"""The record contract: what a record of an input means, the same for every reader, engine and
the embedding API — its id and text (:func:`interpret_record`), its flags (:class:`RecordRules`),
the JSON-line parser (:func:`parse_jsonl_line`) and the order flags are listed in.

Record flags (also written to the score table's ``flags`` column), always listed in this order:

``invalid_utf8``     the text (or the line) holds bytes that are not UTF-8, or lone surrogates
``invalid_json``     a JSONL line that does not parse
``not_an_object``    a JSONL line that is valid JSON but not an object
``missing_text``     the text field is absent or null
``non_string_text``  the text field holds a number, list, ... instead of a string
``malformed_row``    a CSV/TSV row with more or fewer fields than the header (a blank line too),
                     or one the csv module cannot read: text after a closing quote, which is
                     what a stray quote gives when a later quote closes it; the lines it spans
                     are one record, numbered by the line it starts on
``invalid_id``       the id field holds something other than a string or an integer (the row
                     number is used instead)
``json_too_deep``    a JSONL line whose arrays/objects nest deeper than ``MAX_JSON_DEPTH`` (512):
                     no id or text. Python's parser runs out of stack somewhere near 1000
                     levels, depending on the caller; the fixed limit gives a line the same
                     flag wherever it is read
``duplicate_key``    a JSONL object repeats a key, at any depth: the last value is kept, as JSON
                     readers downstream will keep it, and the record is otherwise read as usual
``duplicate_id``     the id was already seen earlier in the input (scores stay aligned by row)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECORD_ERRORS = (
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_text",
    "non_string_text",
    "malformed_row",
    "invalid_id",
    "json_too_deep",
    "duplicate_key",
    "duplicate_id",
)
# Deeper JSON is flagged json_too_deep: a fixed limit well under the interpreter's recursion
# limit, so a line is read the same way wherever it is parsed (reader, Ray actor, test).
MAX_JSON_DEPTH = 512


def _is_valid_unicode(text: str) -> bool:
    """False when the text holds lone surrogates (undecodable bytes or bad \\u escapes)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class RecordBatch:
    """A batch of records: ``start`` is the row number of the first one in the input."""

    start: int
    ids: list[str]
    texts: list[str | None]
    flags: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ReadStats:
    records: int = 0
    blank_lines: int = 0
    flags: dict[str, int] = field(default_factory=dict)


class RecordRules:
    """The one interpretation of an input's records, for every engine: the id and text of each
    record (:func:`interpret_record`), its flags (a repeated id among the ids this object has
    seen gets ``duplicate_id``), ``strict`` mode, and the check that the text field exists.
    The local reader runs every record through one of these; a Ray actor runs its shard's."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        text_field: str,
        id_field: str | None,
        *,
        strict: bool = False,
        seen_ids: Iterable[str] = (),
    ) -> None:
        self.path = Path(path)
        self.text_field = text_field
        self.id_field = id_field
        self.strict = strict
        self.stats = ReadStats()
        self._seen_ids = set(seen_ids)
        self._fields_seen: set[str] = set()
        self._text_field_seen = False

    def fields_seen(self, names: Iterable[str]) -> None:
        """Column names of a file with a header (CSV, Parquet): seen whatever the records hold."""
        self._fields_seen.update(names)

    def add(self, batch: RecordBatch, row: int, where: str, record: Any) -> None:
        """Appends the record at ``row`` (``where``: "line N" / "row N", for messages)."""
        if isinstance(record, dict):
            if len(self._fields_seen) < 256:
                self._fields_seen.update(record.keys())
            if self.text_field in record:
                self._text_field_seen = True
        rid, text, flags = interpret_record(record, row, self.text_field, self.id_field)
        if rid in self._seen_ids:
            flags.append("duplicate_id")
            flags.sort(key=flag_order)
        else:
            self._seen_ids.add(rid)
        self.stats.records += 1
        for f in flags:
            self.stats.flags[f] = self.stats.flags.get(f, 0) + 1
        if self.strict and flags:
            raise ValueError(f"{self.path}:{where}: record {rid!r}: {', '.join(flags)}")
        batch.ids.append(rid)
        batch.texts.append(text)
        batch.flags.append(flags)

    def check_text_field(self, batch: RecordBatch) -> None:
        """Called on the input's first batch: a text field that none of its records has is a
        wrong ``text_field``, not bad data, so it is an error instead of a flag on each."""
        if not self._text_field_seen and self._fields_seen:
            raise ValueError(
                f"{self.path}: no record of the first {len(batch)} has the text field "
                f"{self.text_field!r}; fields seen: {sorted(self._fields_seen)}"
            )


@dataclass
class Bad:
    """A row that could not be read as a record; ``flag`` says why."""

    flag: str


class _RepeatedKeys(dict):
    """A JSON object whose line repeats a key: the last value of each is kept."""


class _RepeatedKey(Exception):
    pass


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey
    return obj


_DECODE_CHECKED = json.JSONDecoder(object_pairs_hook=_no_repeated_keys).decode
_DECODE_LAST_WINS = json.JSONDecoder().decode


# byte -> 1 for [ {, 2 for ] }, 3 for a quote, 4 for a backslash, 0 for the rest
_JSON_TABLE = bytes(
    {0x5B: 1, 0x7B: 1, 0x5D: 2, 0x7D: 2, 0x22: 3, 0x5C: 4}.get(b, 0) for b in range(256)
)


def _json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text; brackets in strings do not count.
    Vectorised (linear time): the lines that get here hold hundreds of brackets, maybe millions."""
    kind = np.frombuffer(raw.translate(_JSON_TABLE), dtype=np.uint8)
    where = np.flatnonzero(kind)
    kind = kind[where]
    quotes = where[kind == 3]
    backslashes = where[kind == 4]
    if len(quotes) and len(backslashes):
        # a quote right after an odd run of backslashes is escaped: not a string's end
        k = np.arange(len(backslashes))
        starts = np.diff(backslashes, prepend=-2) != 1
        run_length = k - np.maximum.accumulate(np.where(starts, k, 0)) + 1
        j = np.minimum(np.searchsorted(backslashes, quotes - 1), len(backslashes) - 1)
        before = np.where(backslashes[j] == quotes - 1, run_length[j], 0)
        quotes = quotes[before % 2 == 0]
    brackets = kind < 3
    steps = kind[brackets].view(np.int8)
    if len(quotes):
        # outside strings: an even number of (unescaped) quotes before it
        steps = steps[np.searchsorted(quotes, where[brackets]) % 2 == 0]
    # kind 1 (open) -> +1, kind 2 (close) -> -1
    return int(np.cumsum(3 - 2 * steps, dtype=np.int32).max(initial=0))


FLAG_ORDER = {name: k for k, name in enumerate((*RECORD_ERRORS, "empty_text"))}


def flag_order(flag: str) -> int:
    """Flags are always listed in one order, whoever adds them (reader, scorer, engine)."""
    return FLAG_ORDER.get(flag, len(FLAG_ORDER))


def parse_jsonl_line(raw: bytes) -> Any:
    """A JSONL line's value, or ``Bad(flag)`` (``invalid_json``, ``json_too_deep``). An object
    that repeats a key comes back as a ``dict`` subclass that :func:`interpret_record` flags
    ``duplicate_key``. Undecodable bytes are kept as lone surrogates (``surrogateescape``): the
    id stays readable and the text gets flagged. Never raises."""
    text = raw.decode("utf-8", errors="surrogateescape")
    try:
        return _depth_checked(raw, _DECODE_CHECKED(text))
    except _RepeatedKey:
        pass
    except RecursionError:  # deeper than the interpreter's stack allows: deeper than the limit
        return Bad("json_too_deep")
    except ValueError:
        return Bad("json_too_deep" if _too_deep(raw) else "invalid_json")
    # A repeated key (rare): parse again keeping the last value; what follows it may be invalid.
    try:
        value = _depth_checked(raw, _DECODE_LAST_WINS(text))
    except RecursionError:
        return Bad("json_too_deep")
    except ValueError:
        return Bad("json_too_deep" if _too_deep(raw) else "invalid_json")
    return _RepeatedKeys(value) if isinstance(value, dict) else value


def _depth_checked(raw: bytes, value: Any) -> Any:
    """``value``, or ``Bad("json_too_deep")`` when it nests deeper than MAX_JSON_DEPTH: the
    same line gets the same flag wherever it is parsed, whatever the stack depth there."""
    # Nesting deeper than the limit takes two bytes a level; a flat object (the usual record)
    # is one level: only what is left is counted.
    if len(raw) <= 2 * MAX_JSON_DEPTH or _is_flat(value) or not _too_deep(raw):
        return value
    return Bad("json_too_deep")


def _is_flat(value: Any) -> bool:
    if type(value) is not dict:
        return False
    for v in value.values():
        if type(v) is dict or type(v) is list:
            return False
    return True


def _too_deep(raw: bytes) -> bool:
    # Only a line with more brackets than the limit can be too deep; counting them is cheap.
    return (
        len(raw) > MAX_JSON_DEPTH
        and raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
        and _json_depth(raw) > MAX_JSON_DEPTH
    )


def interpret_record(
    record: Any, row: int, text_field: str, id_field: str | None
) -> tuple[str, str | None, list[str]]:
    """(id, text or None, flags) of one parsed record at row ``row``; the duplicate-id check
    is the caller's (it needs every id seen before)."""
    if isinstance(record, Bad) or not isinstance(record, dict):
        return str(row), None, [record.flag if isinstance(record, Bad) else "not_an_object"]
    flags: list[str] = []
    rid_value = record.get(id_field) if id_field else None
    if rid_value is None:
        rid = str(row)
    elif isinstance(rid_value, str):
        rid = rid_value
    elif isinstance(rid_value, (int, np.integer)) and not isinstance(rid_value, bool):
        rid = str(int(rid_value))
    else:
        flags.append("invalid_id")
        rid = str(row)
    if not _is_valid_unicode(rid):
        flags.append("invalid_utf8")
        rid = str(row)
    text = record.get(text_field)
    if text is None:
        flags.append("missing_text")
    elif not isinstance(text, str):
        flags.append("non_string_text")
        text = None
    elif not _is_valid_unicode(text):
        flags.append("invalid_utf8")
        text = None
    if type(record) is _RepeatedKeys:
        flags.append("duplicate_key")
    if len(flags) > 1:
        flags.sort(key=flag_order)
    return rid, text, flags
