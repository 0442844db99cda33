"""Streaming readers and writers for JSONL, JSONL.gz, CSV/TSV (optionally .gz) and Parquet.

Records are read in batches of bounded size and never all at once. Each record gets an id
(``id_field``, or its row number when the field is absent) and a text (``text_field``), or a
flag saying why it has none. A record is never skipped: bad records are flagged (or, with
``strict=True``, raise ``ValueError`` naming the file, line and id).

Record flags (also written to the score table's ``flags`` column):

``invalid_utf8``     the text (or the line) holds bytes that are not UTF-8, or lone surrogates
``invalid_json``     a JSONL line that does not parse
``not_an_object``    a JSONL line that is valid JSON but not an object
``malformed_row``    a CSV/TSV row with more or fewer fields than the header
``missing_text``     the text field is absent or null
``non_string_text``  the text field holds a number, list, ... instead of a string
``invalid_id``       the id field holds something other than a string or an integer (the row
                     number is used instead)
``duplicate_id``     the id was already seen earlier in the input (scores stay aligned by row)

Blank lines of a JSONL file are not records; they are counted in ``ReadStats.blank_lines``.
The selection writer re-reads the input the same way and copies kept records verbatim
(JSONL lines byte for byte), so the output keeps the input's format.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMATS = ("jsonl", "csv", "tsv", "parquet")
RECORD_ERRORS = (
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_text",
    "non_string_text",
    "malformed_row",
    "invalid_id",
    "duplicate_id",
)
DEFAULT_BATCH_SIZE = 4096
UTF8_BOM = b"\xef\xbb\xbf"

# csv fields can be large (20NG posts); the default limit of 128 KiB is too small.
csv.field_size_limit(1 << 30)


def detect_format(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """Returns (format, gzipped) from the file name: ``.jsonl[.gz]`` (or ``.ndjson``),
    ``.csv[.gz]``, ``.tsv[.gz]``, ``.parquet``/``.pq``."""
    name = Path(path).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl", gz
    if name.endswith(".csv"):
        return "csv", gz
    if name.endswith(".tsv"):
        return "tsv", gz
    if name.endswith((".parquet", ".pq")) and not gz:
        return "parquet", False
    raise ValueError(
        f"cannot tell the format of {path}: use a .jsonl, .jsonl.gz, .csv, .tsv (optionally .gz) "
        "or .parquet file name, or pass format="
    )


def resolve_format(
    path: str | os.PathLike[str], format: str | None, gzip: bool | None
) -> tuple[str, bool]:
    """(format, gzipped): given values win over what the file name says."""
    if format is None:
        fmt, gz = detect_format(path)
    elif format in FORMATS:
        fmt, gz = format, Path(path).name.lower().endswith(".gz")
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    return fmt, gz if gzip is None else gzip


def _open_binary(path: Path, gz: bool) -> IO[bytes]:
    return gzip.open(path, "rb") if gz else open(path, "rb")


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


class RecordReader:
    """Iterates over an input file in :class:`RecordBatch` es.

    ``format`` is detected from the name unless given (``jsonl``, ``csv``, ``tsv``,
    ``parquet``; ``gzip`` for the first three). With ``strict=True`` any record flag in
    :data:`RECORD_ERRORS` raises ``ValueError`` instead.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        text_field: str = "text",
        id_field: str | None = "id",
        format: str | None = None,
        gzip: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        strict: bool = False,
        skip: int = 0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"input file not found: {self.path}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(text_field, str) or not text_field:
            raise ValueError(f"text_field must be a non-empty string, got {text_field!r}")
        self.format, self.gzip = resolve_format(self.path, format, gzip)
        self.text_field = text_field
        self.id_field = id_field
        self.batch_size = batch_size
        self.strict = strict
        if not isinstance(skip, int) or skip < 0:
            raise ValueError(f"skip must be an int >= 0, got {skip!r}")
        self.skip = skip
        self.stats = ReadStats()
        self.bytes_total = self.path.stat().st_size
        self._raw: IO[bytes] | None = None
        self._parquet_rows_read = 0
        self._seed_ids: set[str] = set()
        self._seen_ids: set[str] = set()
        self._fields_seen: set[str] = set()
        self._text_field_seen = False

    def seed_ids(self, ids: Iterable[str]) -> None:
        """Ids already seen (the records a resumed run skips), for the duplicate-id check."""
        self._seed_ids.update(ids)

    def bytes_read(self) -> int:
        """How far into the input the reader has got: bytes of the file (compressed bytes for
        .gz), or rows for Parquet (then ``bytes_total`` counts rows too)."""
        if self.format == "parquet":
            return self._parquet_rows_read
        try:
            return self._raw.tell() if self._raw is not None and not self._raw.closed else 0
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[RecordBatch]:
        """Batches of records; with ``skip``, the first ``skip`` records are passed over (not
        parsed where the format allows) and rows keep their numbers in the whole file."""
        self.stats = ReadStats()
        self._seen_ids = set(self._seed_ids)
        self._fields_seen = set()
        self._text_field_seen = False
        batch = RecordBatch(start=self.skip, ids=[], texts=[], flags=[])
        checked = False
        for where, record in self._records():
            row = self.skip + self.stats.records
            self.stats.records += 1
            rid, text, flags = self._interpret(row, record)
            for f in flags:
                self.stats.flags[f] = self.stats.flags.get(f, 0) + 1
            if self.strict and flags:
                raise ValueError(f"{self.path}:{where}: record {rid!r}: {', '.join(flags)}")
            batch.ids.append(rid)
            batch.texts.append(text)
            batch.flags.append(flags)
            if len(batch) == self.batch_size:
                checked = checked or self._check_text_field(batch)
                yield batch
                batch = RecordBatch(start=row + 1, ids=[], texts=[], flags=[])
        if len(batch):
            if not checked:
                self._check_text_field(batch)
            yield batch

    def _check_text_field(self, batch: RecordBatch) -> bool:
        # A text field that no record of the first batch has is a wrong --text-field, not bad
        # data: say so instead of flagging every record.
        if not self._text_field_seen and self._fields_seen:
            raise ValueError(
                f"{self.path}: no record of the first {len(batch)} has the text field "
                f"{self.text_field!r}; fields seen: {sorted(self._fields_seen)}"
            )
        return True

    def _interpret(self, row: int, record: Any) -> tuple[str, str | None, list[str]]:
        if isinstance(record, dict):
            if len(self._fields_seen) < 256:
                self._fields_seen.update(record.keys())
            if self.text_field in record:
                self._text_field_seen = True
        rid, text, flags = interpret_record(record, row, self.text_field, self.id_field)
        return self._unique(rid, flags), text, flags

    def _unique(self, rid: str, flags: list[str]) -> str:
        if rid in self._seen_ids:
            flags.append("duplicate_id")
            flags.sort(key=flag_order)
        else:
            self._seen_ids.add(rid)
        return rid

    def _records(self) -> Iterator[tuple[str, Any]]:
        if self.format == "parquet":
            yield from self._parquet_records()
            return
        with open(self.path, "rb") as raw:
            self._raw = raw
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzip else raw
            if self.format == "jsonl":
                yield from self._jsonl_records(stream)
            else:
                yield from self._csv_records(stream)

    def _jsonl_records(self, stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
        lines = _jsonl_lines(stream, self.stats)
        for _ in itertools.islice(lines, self.skip):
            pass
        for line_no, raw in lines:
            yield f"line {line_no}", parse_jsonl_line(raw)

    def _csv_records(self, stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
        header, rows = _csv_rows(stream, self.format)
        self._fields_seen.update(header)
        for line_no, row in itertools.islice(rows, self.skip, None):
            if len(row) != len(header):
                yield f"line {line_no}", _Bad("malformed_row")
            else:
                yield f"line {line_no}", dict(zip(header, row, strict=True))

    def _parquet_records(self) -> Iterator[tuple[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        schema = pf.schema_arrow
        self._fields_seen.update(schema.names)
        if self.text_field not in schema.names:
            raise ValueError(f"{self.path}: no column {self.text_field!r}; columns: {schema.names}")
        text_type = schema.field(self.text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            raise ValueError(
                f"{self.path}: column {self.text_field!r} has type {text_type}, expected string"
            )
        columns = [self.text_field]
        if self.id_field and self.id_field in schema.names:
            columns.append(self.id_field)
        self.bytes_total = pf.metadata.num_rows  # progress counts rows for Parquet
        row = 0
        to_skip = self.skip
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=columns):
            first = min(to_skip, batch.num_rows)
            to_skip -= first
            for offset, record in enumerate(batch.slice(first).to_pylist(), start=first + 1):
                yield f"row {row + offset}", record
            row += batch.num_rows
            self._parquet_rows_read = row


def iter_jsonl_lines(
    path: Path, gz: bool, stats: ReadStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for every non-blank line: the records of a JSONL file."""
    with _open_binary(path, gz) as f:
        yield from _jsonl_lines(f, stats)


def _jsonl_lines(f: IO[bytes], stats: ReadStats | None) -> Iterator[tuple[int, bytes]]:
    for line_no, raw in enumerate(f, start=1):
        if line_no == 1 and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]  # a byte order mark is not part of the first record
        if not raw.strip():
            if stats is not None:
                stats.blank_lines += 1
            continue
        yield line_no, raw


def csv_dialect(fmt: str) -> dict[str, Any]:
    """RFC 4180 quoting for both CSV and TSV (as Python's excel-tab dialect and pandas read
    them): a quoted field may hold the delimiter, quotes and newlines."""
    return {"delimiter": "\t" if fmt == "tsv" else ","}


def iter_csv_rows(
    path: Path, gz: bool, fmt: str
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, fields) of a CSV/TSV file. Undecodable bytes
    are kept as lone surrogates (``surrogateescape``) so they round-trip when written back."""
    return _csv_rows(_open_binary(path, gz), fmt)


def _csv_rows(raw: IO[bytes], fmt: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, **csv_dialect(fmt))
    try:
        header = next(reader)
    except StopIteration:
        text.close()
        return [], iter(())

    def rows() -> Iterator[tuple[int, list[str]]]:
        with text:
            for row in reader:
                yield reader.line_num, row

    return header, rows()


@dataclass
class _Bad:
    """A row that could not be read as a record; ``flag`` says why."""

    flag: str


FLAG_ORDER = {name: k for k, name in enumerate((*RECORD_ERRORS, "empty_text"))}


def flag_order(flag: str) -> int:
    """Flags are always listed in one order, whoever adds them (reader, scorer, engine)."""
    return FLAG_ORDER.get(flag, len(FLAG_ORDER))


def parse_jsonl_line(raw: bytes) -> Any:
    """A JSONL line's value, or ``_Bad("invalid_json")``. Undecodable bytes are kept as lone
    surrogates (``surrogateescape``): the id stays readable and the text gets flagged."""
    try:
        return json.loads(raw.decode("utf-8", errors="surrogateescape"))
    except ValueError:
        return _Bad("invalid_json")


def interpret_record(
    record: Any, row: int, text_field: str, id_field: str | None
) -> tuple[str, str | None, list[str]]:
    """(id, text or None, flags) of one parsed record at row ``row``; the duplicate-id check
    is the caller's (it needs every id seen before)."""
    if isinstance(record, _Bad) or not isinstance(record, dict):
        return str(row), None, [record.flag if isinstance(record, _Bad) else "not_an_object"]
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
    return rid, text, flags


def read_batches(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[RecordBatch]:
    """Shorthand for ``iter(RecordReader(path, **kwargs))``."""
    return iter(RecordReader(path, **kwargs))


def write_selected(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    keep: np.ndarray,
    *,
    format: str | None = None,
    gzip: bool | None = None,
    gzip_output: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Copies the records of ``path`` with ``keep[row]`` true to ``out_path`` in the input's
    format, in input order, and returns how many were written.

    JSONL lines are copied byte for byte; CSV/TSV rows are re-quoted by the csv module
    (undecodable bytes round-trip); Parquet keeps the schema and its metadata. The file is
    written under a temporary name and renamed when complete. Raises ``ValueError`` when the
    input does not have ``len(keep)`` records (the scores belong to another file).
    """
    from euds.cache import atomic_path

    path, out_path = Path(path), Path(out_path)
    fmt, gz = resolve_format(path, format, gzip)
    out_gz = gz if gzip_output is None else gzip_output
    keep = np.asarray(keep, dtype=bool)
    n_rows = 0
    written = 0
    with atomic_path(out_path) as tmp:
        if fmt == "jsonl":
            with _open_out(tmp, out_gz) as out:
                for _, raw in iter_jsonl_lines(path, gz):
                    if n_rows < len(keep) and keep[n_rows]:
                        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                        written += 1
                    n_rows += 1
        elif fmt in ("csv", "tsv"):
            header, rows = iter_csv_rows(path, gz, fmt)
            with _open_out(tmp, out_gz) as out_bin:
                out = io.TextIOWrapper(
                    out_bin, encoding="utf-8", errors="surrogateescape", newline=""
                )
                writer = csv.writer(out, **csv_dialect(fmt))
                if header:
                    writer.writerow(header)
                for _, row in rows:
                    if n_rows < len(keep) and keep[n_rows]:
                        writer.writerow(row)
                        written += 1
                    n_rows += 1
                out.flush()
                out.detach()
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            with pq.ParquetWriter(tmp, pf.schema_arrow) as writer:
                for batch in pf.iter_batches(batch_size=batch_size):
                    part = keep[n_rows : n_rows + batch.num_rows]
                    if len(part) == batch.num_rows:
                        chosen = batch.filter(pa.array(part))
                        if chosen.num_rows:
                            writer.write_batch(chosen)
                        written += chosen.num_rows
                    n_rows += batch.num_rows
        else:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        if n_rows != len(keep):
            raise ValueError(
                f"{path} has {n_rows} records but the selection has {len(keep)}: the scores "
                "were computed on another file"
            )
    return written


@contextlib.contextmanager
def _open_out(path: Path, gz: bool) -> Iterator[IO[bytes]]:
    with open(path, "wb") as raw:
        if gz:
            # mtime=0: the same selection gives the same bytes, hence the same checksum.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                yield out
        else:
            yield raw
