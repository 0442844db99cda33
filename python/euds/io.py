"""Bytes in: streaming readers for JSONL, JSONL.gz, CSV/TSV (optionally .gz) and Parquet.

Records are read in batches of bounded size and never all at once; what a record means (its
id, its text, its flags) is :mod:`euds.records`'s, the same for every reader and engine. A
record is never skipped: bad records are flagged (or, with ``strict=True``, raise
``ValueError`` naming the file, line and id).

A bad file raises one :class:`InputError` (a ``ValueError``: the CLI prints it on one line and
exits with 2) whose message starts with the file's path; ``line`` and ``offset`` (bytes into the
file; compressed bytes for .gz) say where, when known:

* a damaged .gz: truncated, corrupt deflate data, a CRC or length error, not gzip at all, an
  empty file, bytes other than zeros after the last member. The message names the compressed
  byte reading stopped at (the damage lies in the chunk read just before it: 8 KiB on Python
  3.11, 128 KiB from 3.12) and the last line read whole;
* a CSV/TSV file that ends inside a quoted field (an unterminated quote would swallow every line
  after it): the line its row starts on. A CSV/TSV header that repeats the text or id column;
* a Parquet file pyarrow cannot open or read; a text or id column whose name appears more than
  once (other repeated columns are read as usual and kept by the writer);
* an input whose size or mtime_ns changes (or that disappears) while it is read: checked before
  every batch and at the end ("INPUT: changed while it was being read ...; score it again").

Line endings: JSONL lines end at LF (CRLF works the same). A file whose first 64 KiB hold a CR
but no LF has classic Mac line endings: its lines end at CR, LF or CRLF. The writer copies each
line with its own line ending. Blank lines of a JSONL file are not records; they are counted in
``ReadStats.blank_lines``. A UTF-8 byte order mark before the first line is dropped.

CSV/TSV are read with RFC 4180 quoting, strictly (a quote closes a field only before a delimiter
or a line end). A Parquet text column may be ``string``, ``large_string``, ``string_view`` or
dictionary-encoded strings.

Input identity: a pass that reads the whole file sets ``RecordReader.sha256``, the hex sha256
of the file's bytes as that pass read them (the compressed bytes for .gz; the bytes of records
passed over by ``skip`` too), so the checksum and the records come from the same bytes. Parquet
is read by pyarrow, not sequentially: its file is hashed by a second, sequential read at the end
of the pass, before the final size/mtime check. ``file_size`` and ``file_mtime_ns`` are the
file's, unchanged through the pass.

The kept-records writer (:func:`euds.output.write_selected`) re-reads the input through the
same pieces (:class:`InputBytes`, :func:`jsonl_lines`, :func:`csv_rows`), so its errors and
checks are these.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from euds.cache import sha256_file
from euds.records import (
    Bad,
    ReadStats,
    RecordBatch,
    RecordRules,
    parse_jsonl_line,
)

FORMATS = ("jsonl", "csv", "tsv", "parquet")
DEFAULT_BATCH_SIZE = 4096
UTF8_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 1 << 16  # how much of a JSONL file decides its line endings
_READ_CHUNK = 1 << 16
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)

# csv fields can be large (20NG posts); the default limit of 128 KiB is too small.
csv.field_size_limit(1 << 30)


class InputError(ValueError):
    """A bad input file (not a bad record). ``str()`` names the file; ``line`` (1-based) and
    ``offset`` (bytes into the file; compressed bytes for .gz) say where, when known."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        # all four in args, so that the error pickles (Ray sends it between processes)
        super().__init__(path, message, line, offset)
        self.path = Path(path)
        self.message = message
        self.line = line
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


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


# -- raw bytes: hashed as read, damage reported where it is --------------------------------------


def file_state(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1  # gone: not the file a pass started with
    return st.st_size, st.st_mtime_ns


def changed_error(path: Path) -> InputError:
    return InputError(path, "changed while it was being read (size or mtime); score it again")


class _HashingReader(io.RawIOBase):
    """A raw file that hashes and counts the bytes read through it. Closing it leaves the file
    open (whoever opened it closes it), so the rest can still be hashed after a wrapper such as
    a TextIOWrapper closed it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        if n:
            self._h.update(memoryview(b)[:n])
            self.pos += n
        return n

    def tell(self) -> int:
        return self.pos

    def drain(self) -> str:
        """Reads (and hashes) what is left of the file; returns the file's sha256."""
        while block := self._f.read(_READ_CHUNK):
            self._h.update(block)
            self.pos += len(block)
        return self._h.hexdigest()


class InputBytes:
    """One pass over the bytes of a JSONL/CSV/TSV file, decompressed when ``gz``."""

    def __init__(self, path: Path, gz: bool, state: tuple[int, int] | None = None) -> None:
        self.path = path
        self.state = file_state(path) if state is None else state
        if gz and self.state[0] == 0:
            # GzipFile reads an empty file as empty data; gzip holds at least one member (a
            # download or copy that never started)
            raise InputError(
                path, "not gzip data: the file is empty (compressed byte 0 of 0)", line=0, offset=0
            )
        self.file = open(path, "rb", buffering=0)
        self.raw = _HashingReader(self.file)
        # GzipFile reads its file object in chunks (8 KiB; 128 KiB from Python 3.12), so the
        # offset reported for a damaged stream is near the damage; the BufferedReader around it
        # splits lines in C (GzipFile's own readline is Python).
        self.stream: IO[bytes] = io.BufferedReader(
            gzip.GzipFile(fileobj=self.raw, mode="rb") if gz else self.raw,
            buffer_size=_READ_CHUNK,
        )

    def __enter__(self) -> InputBytes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stream.close()
        self.file.close()

    def sha256(self) -> str:
        """The file's sha256, once the stream has been read to its end (bytes after the last
        gzip member, which GzipFile skips only when they are zeros, are hashed too)."""
        return self.raw.drain()

    def check_unchanged(self) -> None:
        if file_state(self.path) != self.state:
            raise changed_error(self.path)

    def damaged(self, err: BaseException, line: int) -> InputError:
        """The error for a damaged gzip stream; ``line``: the last line read whole."""
        self.check_unchanged()  # a file still being written is not damaged
        size = self.state[0]
        after = f"after line {line}" if line else "before its first line"
        return InputError(
            self.path,
            f"damaged gzip data ({err}): reading stopped at compressed byte {self.raw.pos} of "
            f"{size}, {after}",
            line=line,
            offset=self.raw.pos,
        )


# -- records -------------------------------------------------------------------------------------


class RecordReader:
    """Iterates over an input file in :class:`RecordBatch` es.

    ``format`` is detected from the name unless given (``jsonl``, ``csv``, ``tsv``,
    ``parquet``; ``gzip`` for the first three). With ``strict=True`` any record flag in
    :data:`RECORD_ERRORS` raises ``ValueError`` instead. A bad file raises :class:`InputError`.

    After a complete pass, ``sha256`` is the hex sha256 of the file the pass read (``None``
    before, and after a pass that stopped early), and ``file_size`` / ``file_mtime_ns`` are what
    the file's size and mtime were, unchanged, during the whole pass.
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
        self.sha256: str | None = None
        self.file_size: int | None = None
        self.file_mtime_ns: int | None = None
        self._state = (0, 0)
        self._pass_sha256: str | None = None
        self._raw: _HashingReader | None = None
        self._parquet_rows_read = 0
        self._seed_ids: set[str] = set()
        self._rules = self._new_rules()

    def seed_ids(self, ids: Iterable[str]) -> None:
        """Ids already seen (the records a resumed run skips), for the duplicate-id check."""
        self._seed_ids.update(ids)

    def bytes_read(self) -> int:
        """How far into the input the reader has got: bytes of the file (compressed bytes for
        .gz), or rows for Parquet (then ``bytes_total`` counts rows too)."""
        if self.format == "parquet":
            return self._parquet_rows_read
        return self._raw.pos if self._raw is not None else 0

    def _new_rules(self) -> RecordRules:
        return RecordRules(
            self.path, self.text_field, self.id_field, strict=self.strict, seen_ids=self._seed_ids
        )

    def __iter__(self) -> Iterator[RecordBatch]:
        """Batches of records; with ``skip``, the first ``skip`` records are passed over (not
        parsed where the format allows) and rows keep their numbers in the whole file."""
        self._rules = rules = self._new_rules()
        self.stats = rules.stats
        self.sha256 = self.file_size = self.file_mtime_ns = None
        self._state = file_state(self.path)
        batch = RecordBatch(start=self.skip, ids=[], texts=[], flags=[])
        # A resumed pass (skip) had its first batch checked by the pass that started it.
        checked = self.skip > 0
        self._pass_sha256 = None
        for where, record in self._records():
            row = self.skip + self.stats.records
            rules.add(batch, row, where, record)
            if len(batch) == self.batch_size:
                self._check_unchanged()
                if not checked:
                    rules.check_text_field(batch)
                    checked = True
                yield batch
                batch = RecordBatch(start=row + 1, ids=[], texts=[], flags=[])
        # The whole file has been read: the hash is of the bytes the records came from.
        self._check_unchanged()
        self.sha256 = self._pass_sha256
        self.file_size, self.file_mtime_ns = self._state
        if len(batch):
            if not checked:
                rules.check_text_field(batch)
            yield batch

    def _check_unchanged(self) -> None:
        if file_state(self.path) != self._state:
            raise changed_error(self.path)

    def _records(self) -> Iterator[tuple[str, Any]]:
        """(where, parsed record) for each record; ``_pass_sha256`` once all are read."""
        if self.format == "parquet":
            yield from self._parquet_records()
            self._pass_sha256 = sha256_file(self.path)
            return
        with InputBytes(self.path, self.gzip, self._state) as src:
            self._raw = src.raw
            if self.format == "jsonl":
                yield from self._jsonl_records(src)
            else:
                yield from self._csv_records(src)
            self._pass_sha256 = src.sha256()

    def _jsonl_records(self, src: InputBytes) -> Iterator[tuple[str, Any]]:
        lines = jsonl_lines(src, self.stats)
        for _ in itertools.islice(lines, self.skip):
            pass
        for line_no, raw in lines:
            yield f"line {line_no}", parse_jsonl_line(raw)

    def _csv_records(self, src: InputBytes) -> Iterator[tuple[str, Any]]:
        header, rows = csv_rows(src, self.format)
        self._rules.fields_seen(header)
        for name in (self.text_field, self.id_field):
            if name and header.count(name) > 1:
                raise InputError(
                    src.path,
                    f"line 1: column {name!r} appears {header.count(name)} times in the header",
                    line=1,
                )
        for line_no, row in itertools.islice(rows, self.skip, None):
            if row is None or len(row) != len(header):
                yield f"line {line_no}", Bad("malformed_row")
            else:
                yield f"line {line_no}", dict(zip(header, row, strict=True))

    def _parquet_records(self) -> Iterator[tuple[str, Any]]:
        import pyarrow as pa

        pf = open_parquet(self.path)
        self._rules.fields_seen(pf.schema_arrow.names)
        columns = parquet_record_columns(self.path, pf.schema_arrow, self.text_field, self.id_field)
        self.bytes_total = pf.metadata.num_rows  # progress counts rows for Parquet
        row = 0
        to_skip = self.skip
        batches = pf.iter_batches(batch_size=self.batch_size, columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except pa.ArrowException as err:
                raise parquet_error(self.path, err, self._state, row) from err
            if batch is None:
                break
            first = min(to_skip, batch.num_rows)
            to_skip -= first
            for offset, record in enumerate(batch.slice(first).to_pylist(), start=first + 1):
                yield f"row {row + offset}", record
            row += batch.num_rows
            self._parquet_rows_read = row


def parquet_record_columns(
    path: Path, schema: Any, text_field: str, id_field: str | None
) -> list[str]:
    """The columns that make a Parquet file's records (text, and id when present), checked:
    the text column exists once and holds strings, the id column is not repeated."""
    import pyarrow as pa

    names = schema.names
    if text_field not in names:
        raise ValueError(f"{path}: no column {text_field!r}; columns: {names}")
    for name in (text_field, id_field):
        # pyarrow would pick one of them without a word
        if name and names.count(name) > 1:
            raise InputError(
                path,
                f"column {name!r} appears {names.count(name)} times; rename the copies or "
                "choose another field",
            )
    text_type = schema.field(text_field).type
    if not _is_text_type(pa, text_type):
        raise ValueError(f"{path}: column {text_field!r} has type {text_type}, expected string")
    return [text_field] + ([id_field] if id_field and id_field in names else [])


def _is_text_type(pa: Any, t: Any) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type  # to_pylist() decodes it
    string_view = getattr(pa.types, "is_string_view", lambda _: False)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or string_view(t)


def open_parquet(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(path, f"not a readable Parquet file: {err}") from err


def parquet_error(path: Path, err: Exception, state: tuple[int, int], row: int) -> InputError:
    if file_state(path) != state:
        return changed_error(path)
    return InputError(path, f"damaged Parquet data after row {row}: {err}", line=row)


# -- JSONL ---------------------------------------------------------------------------------------


def iter_jsonl_lines(
    path: Path, gz: bool, stats: ReadStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for every non-blank line: the records of a JSONL file."""
    with InputBytes(Path(path), gz) as src:
        yield from jsonl_lines(src, stats)


def jsonl_lines(src: InputBytes, stats: ReadStats | None) -> Iterator[tuple[int, bytes]]:
    line_no = 0
    try:
        for line_no, raw in enumerate(_lines(src.stream), start=1):
            if line_no == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]  # a byte order mark is not part of the first record
            if not raw.strip():
                if stats is not None:
                    stats.blank_lines += 1
                continue
            yield line_no, raw
    except _GZIP_ERRORS as err:
        # line_no is the last line read whole: the error came while reading the next one
        raise src.damaged(err, line_no) from err


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    """The lines of a JSONL stream, line endings kept: they end at LF (CRLF too), or, when the
    first 64 KiB hold a CR but no LF (classic Mac files), at CR, LF or CRLF."""
    head = f.readline(_SNIFF_BYTES)
    if head and not head.endswith(b"\n"):
        if head.endswith(b"\r"):
            head += f.read(1)  # a CRLF split by the sniffing limit?
        if b"\r" in (head[:-2] if head.endswith(b"\r\n") else head):
            return _split_any_line_end(head, f)
        if not head.endswith(b"\n"):
            head += f.readline()  # the rest of a first line longer than 64 KiB
    # not a generator: lines come straight from the C line iterator
    return itertools.chain((head,) if head else (), f)


def _split_any_line_end(head: bytes, f: IO[bytes]) -> Iterator[bytes]:
    pending = [head]  # the last, maybe unfinished, line; joined once a line end comes
    while chunk := f.read(_READ_CHUNK):
        if b"\r" not in chunk and b"\n" not in chunk:
            pending.append(chunk)
            continue
        # a CR at the end of the pending line may pair with an LF at the start of the chunk
        lines = (b"".join(pending) + chunk).splitlines(keepends=True)
        pending = [lines.pop()]
        yield from lines
    yield from b"".join(pending).splitlines(keepends=True)


# -- CSV / TSV -----------------------------------------------------------------------------------


def csv_dialect(fmt: str) -> dict[str, Any]:
    """RFC 4180 quoting for both CSV and TSV (as Python's excel-tab dialect and pandas read
    them): a quoted field may hold the delimiter, quotes and newlines. ``strict``: a quote
    closes a field only before a delimiter or a line end, and the file must not end inside a
    quoted field, so a stray quote cannot silently swallow the lines after it."""
    return {"delimiter": "\t" if fmt == "tsv" else ",", "strict": True}


def iter_csv_rows(
    path: Path, gz: bool, fmt: str
) -> tuple[list[str], Iterator[tuple[int, list[str] | None]]]:
    """The header and an iterator of (line number, fields) of a CSV/TSV file; fields are
    ``None`` for a row the csv module cannot read. Undecodable bytes are kept as lone surrogates
    (``surrogateescape``) so they round-trip when written back."""
    src = InputBytes(Path(path), gz)
    try:
        header, rows = csv_rows(src, fmt)
    except BaseException:
        src.close()
        raise

    def closing() -> Iterator[tuple[int, list[str] | None]]:
        with src:
            yield from rows

    return header, closing()


def csv_rows(src: InputBytes, fmt: str) -> tuple[list[str], Iterator[tuple[int, list[str] | None]]]:
    text = io.TextIOWrapper(src.stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, **csv_dialect(fmt))
    rows = _csv_row_iter(src, reader)
    first = next(rows, None)
    if first is None:
        return [], rows
    if first[1] is None:
        raise InputError(src.path, "line 1: the header is not valid CSV", line=1)
    return first[1], rows


def _csv_row_iter(src: InputBytes, reader: Any) -> Iterator[tuple[int, list[str] | None]]:
    """(line the row starts on, fields or None) for each row. (The TextIOWrapper closes the
    stream when it goes; the hash of the rest is read from the file itself.)"""
    end = 0  # the last line read
    try:
        while True:
            try:
                for row in reader:
                    start = end + 1
                    end = reader.line_num
                    yield start, row
                return
            except csv.Error as err:
                start, end = end + 1, reader.line_num
                if "unexpected end of data" in str(err):
                    raise InputError(
                        src.path,
                        f"line {start}: a quoted field in the row that starts on line {start} "
                        f"is never closed: the file ends inside it (line {end}), so every line "
                        "after the quote would be one field",
                        line=start,
                    ) from None
            yield start, None  # the csv module goes on at the next line
    except _GZIP_ERRORS as err:
        raise src.damaged(err, end) from err


# -- whole inputs ---------------------------------------------------------------------------------


def read_batches(path: str | os.PathLike[str], **kwargs: Any) -> Iterator[RecordBatch]:
    """Shorthand for ``iter(RecordReader(path, **kwargs))``."""
    return iter(RecordReader(path, **kwargs))


def read_texts(path: str | os.PathLike[str], **kwargs: Any) -> list[str | None]:
    """The text of every record of an input, in input order, as the scoring pass reads it
    (None where a record has none); ``kwargs`` are :class:`RecordReader`'s."""
    texts: list[str | None] = []
    for batch in RecordReader(path, **kwargs):
        texts.extend(batch.texts)
    return texts


def read_field(path: str | os.PathLike[str], name: str, *, format: str | None = None) -> np.ndarray:
    """The value of the field ``name`` of every record of an input, in input order, as euds's
    reader counts records (object array; None where a record lacks the field or cannot be
    read). A CSV/TSV or Parquet file without that column, or a JSONL file none of whose
    records has it, raises ``ValueError``."""
    path = Path(path)
    fmt, gz = resolve_format(path, format, None)
    out: list[Any] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if name not in pq.read_schema(path).names:
            raise ValueError(f"{path} has no column {name!r} to stratify by")
        out = pq.read_table(path, columns=[name]).column(name).to_pylist()
    elif fmt in ("csv", "tsv"):
        header, rows = iter_csv_rows(path, gz, fmt)
        if name not in header:
            raise ValueError(f"{path} has no column {name!r} to stratify by; columns: {header}")
        at = header.index(name)
        out = [None if row is None or len(row) != len(header) else row[at] for _, row in rows]
    else:
        for _, raw in iter_jsonl_lines(path, gz):
            record = parse_jsonl_line(raw)
            out.append(record.get(name) if isinstance(record, dict) else None)
        if out and all(v is None for v in out):
            raise ValueError(f"no record of {path} has the field {name!r} to stratify by")
    values = np.empty(len(out), dtype=object)
    values[:] = out
    return values
