"""The output guard: every file a euds command writes outside a score directory goes through here
(a score directory's own files are :mod:`euds.scores`'s, under the same rules).

Rules, whatever name, link or mount points at a file:

1. **Never the inputs, never a score directory.** An output that *is* a file the command reads,
   or that lies inside a score directory, is refused — compared by what the files are (device
   and inode, every link followed), not by how their paths are spelled. ``--overwrite`` never
   makes that allowed.
2. **Only what euds can prove it wrote is replaced.** An existing file is replaced only with
   ``--overwrite`` or when it carries euds's mark: a single-file output (a report, a JSON of
   figures, a Markdown page) ends with a line naming the sha256 of everything before it
   (:func:`write_marked`), which a file edited since, or written by anyone else, fails.
   Outputs in a data format that cannot carry a mark (kept records) are proven by the manifest
   beside them (:mod:`euds.subset`).
3. **Atomic.** Files are built under a temporary name, fsynced and renamed into place
   (:mod:`euds.cache`), so a reader sees the old file or the whole new one. Kept records
   (:func:`write_selected`) are copied from the input in its own format and line ends, and
   read back before they take their name.
4. **One writer at a time.** :class:`RunLock` holds an ``flock`` on a lock file opened
   without following links (a regular file only), made by this run or left as it was found;
   a second run fails at once naming the holder. Runs that only read (a complete score
   directory reused as it is) share the lock with each other, never with a writer.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from euds._core import EudsError
from euds.cache import atomic_write_bytes, sha256_file
from euds.io import DEFAULT_BATCH_SIZE

MARK_PREFIX = "euds-sha256:"
# The last line of a marked text file, in the file's own comment syntax.
_COMMENT = {
    ".html": ("<!-- ", " -->"),
    ".htm": ("<!-- ", " -->"),
    ".md": ("<!-- ", " -->"),
    ".svg": ("<!-- ", " -->"),
}
JSON_MARK_KEY = "written_by_euds"


def identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, links followed; None when nothing is there."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def is_score_directory(path: Path) -> bool:
    """A folder holding a score manifest (any format version: an older or newer euds's too)."""
    from euds.scores.layout import MANIFEST  # a leaf module: no import circle

    manifest = path / MANIFEST
    try:
        with open(manifest, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b'"shards"' in head and b'"format"' in head


@dataclass
class Protected:
    """What a command's outputs must never be: its input files (and every file of its score
    directories) and anything inside a score directory."""

    files: dict[tuple[int, int], Path] = field(default_factory=dict)
    dirs: dict[tuple[int, int], Path] = field(default_factory=dict)

    @classmethod
    def of(cls, inputs: Iterable[Any] = (), score_dirs: Iterable[Any] = ()) -> Protected:
        out = cls()
        for p in inputs:
            if p is None:
                continue
            ident = identity(p)
            if ident is not None:
                out.files[ident] = Path(p)
        for d in score_dirs:
            if d is None:
                continue
            d = Path(d)
            ident = identity(d)
            if ident is None:
                continue
            if d.is_dir():
                out.dirs[ident] = d
                for f in d.iterdir():
                    fi = identity(f)
                    if fi is not None:
                        out.files[fi] = f
            else:  # a single score file
                out.files[ident] = d
        return out

    def check(self, output: Path) -> None:
        """Refuses ``output`` when it is, or would be written inside, something protected."""
        output = Path(output)
        ident = identity(output)
        if ident is not None and ident in self.files:
            raise ValueError(
                f"the output {output} is {self.files[ident]}, which this command reads: choose "
                "another output (--overwrite does not change this)"
            )
        folder = output.parent if ident is None or not output.is_dir() else output
        for ancestor in [folder, *folder.parents]:
            here = identity(ancestor)
            if here is None:
                continue  # not made yet
            if here in self.dirs or is_score_directory(ancestor):
                where = self.dirs.get(here, ancestor)
                raise ValueError(
                    f"the output {output} would be written inside the score directory {where}, "
                    "whose files euds keeps to itself: choose another output (--overwrite does "
                    "not change this)"
                )
            if ancestor == ancestor.parent:
                break


def check_output(
    path: str | os.PathLike[str],
    protected: Protected,
    *,
    overwrite: bool,
    ours: Any = None,
) -> Path:
    """The checks before anything is written to ``path`` (rules 1 and 2); ``ours(path)`` says
    whether an existing file is provably euds's (default: it carries euds's mark)."""
    path = Path(path)
    protected.check(path)
    if path.is_dir():
        raise ValueError(f"the output {path} is a folder: give a file name")
    if os.path.lexists(path) and not overwrite:
        proven = (ours or is_marked)(path) if path.is_file() and not path.is_symlink() else False
        if not proven:
            what = (
                "a link"
                if path.is_symlink()
                else "a file euds did not write (or one changed since)"
            )
            raise ValueError(
                f"{path} exists and is {what}: choose another output or pass --overwrite to "
                "replace it"
            )
    return path


def claim_folder(path: str | os.PathLike[str], protected: Protected, mark: str) -> Path:
    """A folder a command keeps many files in (an experiment's): made here with the marker file
    ``mark`` in it, or one that holds that marker already (a run before made it); a non-empty
    folder without it is refused, and so is one inside a score directory."""
    path = Path(path)
    protected.check(path / mark)
    if path.is_dir() and not (path / mark).is_file() and any(path.iterdir()):
        raise ValueError(
            f"{path} is not empty and was not made by euds (no {mark} in it): choose a new or "
            "empty output folder"
        )
    path.mkdir(parents=True, exist_ok=True)
    if not (path / mark).is_file():
        atomic_write_bytes(path / mark, b"made by euds: its files here are euds's to replace\n")
    return path


# -- marks ------------------------------------------------------------------------------------


def _mark_line(path: Path, body: bytes) -> bytes:
    start, end = _COMMENT.get(path.suffix.lower(), ("# ", ""))
    return f"{start}{MARK_PREFIX}{hashlib.sha256(body).hexdigest()}{end}\n".encode()


def marked_bytes(path: Path, data: bytes) -> bytes:
    """``data`` as a marked output: text files end with a comment line naming the sha256 of
    what comes before it; a JSON object gets a ``written_by_euds`` key naming the sha256 of the
    object without it."""
    if path.suffix.lower() == ".json":
        value = json.loads(data)
        if not isinstance(value, dict):
            raise TypeError("a marked JSON output must be an object")
        value.pop(JSON_MARK_KEY, None)
        value[JSON_MARK_KEY] = {"sha256": _json_digest(value)}
        return json.dumps(value, indent=2).encode()
    if not data.endswith(b"\n"):
        data += b"\n"
    return data + _mark_line(path, data)


def _json_digest(value: dict[str, Any]) -> str:
    rest = {k: v for k, v in value.items() if k != JSON_MARK_KEY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def is_marked(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` carries euds's mark and is unchanged since it was written."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            return False
        return (
            isinstance(value, dict)
            and isinstance(value.get(JSON_MARK_KEY), dict)
            and value[JSON_MARK_KEY].get("sha256") == _json_digest(value)
        )
    body, sep, last = data.rstrip(b"\n").rpartition(b"\n")
    if not sep:
        return False
    return last + b"\n" == _mark_line(path, body + b"\n")


def write_marked(
    path: str | os.PathLike[str],
    data: bytes,
    protected: Protected | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Checks ``path`` (:func:`check_output`) and writes ``data`` to it atomically, marked."""
    path = check_output(path, protected or Protected(), overwrite=overwrite)
    atomic_write_bytes(path, marked_bytes(path, data))
    return path


# -- locks ------------------------------------------------------------------------------------


class RunLock:
    """An ``flock`` held for a whole run on the lock file ``path``: exclusive for a run that
    writes, ``shared`` among runs that only read. A run that cannot have it fails at once with
    a message naming the lock file's maker's pid (what ``busy`` says it holds).

    The lock file is opened without following links and must be a regular file: a link (to any
    file anywhere) or anything else is refused, never written through. A lock file this run
    made holds its pid and is removed at the end, when no other run holds it (a reader that
    cannot take it exclusively leaves it to the rest); one found there (a run killed before it
    could remove its own) is locked as it is and never truncated or written."""

    def __init__(self, path: str | os.PathLike[str], busy: str, *, shared: bool = False) -> None:
        self.path = Path(path)
        self.busy = busy
        self.shared = shared
        self.fd: int | None = None
        self.made = False

    def acquire(self) -> None:
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
        while True:
            try:  # a lock file this run made is removed at the end; one found there is kept
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
                self.made = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, flags | os.O_NONBLOCK)
                except OSError as e:
                    if e.errno == errno.ELOOP:
                        raise ValueError(
                            f"{self.path} is a symbolic link, not a euds lock file: remove it "
                            "(euds never writes through a link)"
                        ) from None
                    if e.errno == errno.ENOENT:
                        continue  # the holder removed it as we looked: try again
                    raise
                self.made = False
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ValueError(f"{self.path} is not a regular file: remove it")
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise EudsError(
                        f"{self.busy} is in use by another euds run (pid {holder}); wait for it "
                        "to finish or choose another output"
                    ) from None
                raise
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it as we opened it: take the new one
            self.made = False
        if self.made:
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        if self.made and self._alone():
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self.path, follow_symlinks=False)
                if st.st_ino == os.fstat(self.fd).st_ino:  # still ours: remove it
                    self.path.unlink()
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None

    def _alone(self) -> bool:
        """Whether this run holds the lock alone (a shared holder converts to exclusive)."""
        if not self.shared:
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """The lock of one output and its companions (``.NAME.euds.lock`` beside it), so that two
    runs writing the same selection end with all of its files from one of them."""
    lock = RunLock(output.with_name(f".{output.name}.euds.lock"), str(output))
    with lock:
        yield


# -- kept records ------------------------------------------------------------------------------


def write_selected(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    keep: np.ndarray,
    *,
    format: str | None = None,
    gzip: bool | None = None,
    gzip_output: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sha256: str | None = None,
    read_back: ReadBack | None = None,
) -> int:
    """Copies the records of ``path`` with ``keep[row]`` true to ``out_path`` in the input's
    format, in input order, and returns how many were written.

    JSONL lines are copied byte for byte; CSV/TSV rows are re-quoted by the csv module
    (undecodable bytes round-trip); Parquet keeps the schema and its metadata. The file is
    written under a temporary name and renamed when complete. Raises ``ValueError`` when the
    input does not have ``len(keep)`` records (the scores belong to another file),
    :class:`InputError` for a damaged input, one that changes while it is read, or, given
    ``sha256``, one whose bytes as read have another sha256. A last JSONL line without its
    line end gets the input's own (LF, CRLF, or CR for old Mac files), so the output reads back
    the same way. With ``read_back``, the written file is read again before it takes its
    name, and must give back exactly the kept records (:func:`check_read_back`).
    """
    from euds.cache import atomic_path
    from euds.io import (
        FORMATS,
        InputBytes,
        InputError,
        changed_error,
        csv_dialect,
        csv_rows,
        file_state,
        jsonl_lines,
        open_parquet,
        parquet_error,
        resolve_format,
    )

    path, out_path = Path(path), Path(out_path)
    fmt, gz = resolve_format(path, format, gzip)
    out_gz = gz if gzip_output is None else gzip_output
    keep = np.asarray(keep, dtype=bool)
    n_rows = 0
    written = 0
    state = file_state(path)
    with atomic_path(out_path) as tmp:
        if fmt == "jsonl":
            with InputBytes(path, gz, state) as src, open_output(tmp, out_gz) as out:
                ending = None
                for _, raw in jsonl_lines(src, None):
                    if ending is None:
                        ending = line_ending(raw)
                    if n_rows < len(keep) and keep[n_rows]:
                        copy_line(out, raw, ending)
                        written += 1
                    n_rows += 1
                actual = src.sha256()
        elif fmt in ("csv", "tsv"):
            with InputBytes(path, gz, state) as src, open_output(tmp, out_gz) as out_bin:
                header, rows = csv_rows(src, fmt)
                out = io.TextIOWrapper(
                    out_bin, encoding="utf-8", errors="surrogateescape", newline=""
                )
                writer = csv.writer(out, delimiter=csv_dialect(fmt)["delimiter"])
                if header:
                    writer.writerow(header)
                for line_no, row in rows:
                    if n_rows < len(keep) and keep[n_rows]:
                        if row is None:
                            raise InputError(
                                path, f"line {line_no}: the row is not valid CSV", line=line_no
                            )
                        writer.writerow(row)
                        written += 1
                    n_rows += 1
                out.flush()
                out.detach()
                actual = src.sha256()
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = open_parquet(path)
            try:
                with pq.ParquetWriter(tmp, pf.schema_arrow) as writer:
                    for batch in pf.iter_batches(batch_size=batch_size):
                        part = keep[n_rows : n_rows + batch.num_rows]
                        if len(part) == batch.num_rows:
                            chosen = batch.filter(pa.array(part))
                            if chosen.num_rows:
                                writer.write_batch(chosen)
                            written += chosen.num_rows
                        n_rows += batch.num_rows
            except pa.ArrowException as err:
                raise parquet_error(path, err, state, n_rows) from err
            actual = sha256_file(path)
        else:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        if file_state(path) != state:
            raise changed_error(path)
        if sha256 is not None and actual != sha256:
            raise InputError(
                path, f"has sha256 {actual[:12]}…, not {sha256[:12]}… as expected: another file"
            )
        if n_rows != len(keep):
            raise ValueError(
                f"{path} has {n_rows} records but the selection has {len(keep)}: the scores "
                "were computed on another file"
            )
        if read_back is not None:
            check_read_back(tmp, fmt, out_gz, read_back, written)
    return written


def line_ending(raw: bytes) -> bytes:
    """The line end of a line as read (LF when it has none: a file of one unterminated line)."""
    for end in (b"\r\n", b"\n", b"\r"):
        if raw.endswith(end):
            return end
    return b"\n"


def copy_line(out: IO[bytes], raw: bytes, ending: bytes = b"\n") -> None:
    """Writes a JSONL record's line as it was read; a last line without its end gets
    ``ending``, the input's own."""
    out.write(raw if raw.endswith((b"\n", b"\r")) else raw + ending)


@dataclass
class ReadBack:
    """What a written selection must read back as: its records' text hashes, in order, read
    with the input's text and id fields (None where the scores hold no hashes: count only)."""

    text_field: str
    id_field: str | None
    text_hashes: list[str | None] | None


def check_read_back(path: Path, fmt: str, gz: bool, expect: ReadBack, written: int) -> None:
    """Reads a written selection as euds reads an input and refuses it unless it gives back the
    ``written`` kept records with the expected texts (e.g. line ends the reader would split
    differently in the output than in the input)."""
    from euds.duplicates import text_hashes
    from euds.io import RecordReader

    seen: list[str | None] = []
    for batch in RecordReader(
        path, text_field=expect.text_field, id_field=expect.id_field, format=fmt, gzip=gz
    ):
        seen.extend(text_hashes(batch.texts) if expect.text_hashes is not None else batch.texts)
    if len(seen) != written or (expect.text_hashes is not None and seen != expect.text_hashes):
        raise EudsError(
            f"the selection written for {path.name} reads back as {len(seen)} records that "
            f"differ from the {written} kept (line ends or quoting the reader splits otherwise); "
            "nothing was written: please report it"
        )


@contextlib.contextmanager
def open_output(path: Path, gz: bool) -> Iterator[IO[bytes]]:
    """A selection's output file, gzipped reproducibly (mtime 0) when ``gz``."""
    with open(path, "wb") as raw:
        if gz:
            # mtime=0: the same selection gives the same bytes, hence the same checksum.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                yield out
        else:
            yield raw


__all__ = [
    "Protected",
    "ReadBack",
    "RunLock",
    "check_output",
    "claim_folder",
    "identity",
    "is_marked",
    "is_score_directory",
    "marked_bytes",
    "output_lock",
    "write_marked",
    "write_selected",
]
