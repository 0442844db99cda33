"""The cache folder for generated artefacts (tokenizer.json, ONNX exports), file checksums, and
atomic, durable writes.

Every file or folder euds writes for keeps goes through :func:`atomic_write_bytes`,
:func:`atomic_path` or :func:`atomic_dir`: it is built under a temporary name beside its final
one, fsynced, given the permissions the caller's umask asks for (``mkstemp`` and ``mkdtemp``
create 0600 / 0700), renamed into place, and the parent folder is fsynced so the rename itself
survives a power loss. Readers see the old version or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """``$EUDS_CACHE`` if set, else ``~/.cache/euds``; created on first use."""
    root = Path(os.environ.get("EUDS_CACHE") or Path.home() / ".cache" / "euds")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# (st_dev, st_ino, st_size, st_mtime_ns) -> sha256. Keyed by inode rather than path so that a
# hash taken while a file is built under its temporary name still holds after the rename
# (which keeps the inode and mtime); rewriting a file changes its mtime, replacing it its inode.
_SHA256_MEMO: dict[tuple[int, int, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


def sha256_file_cached(path: str | os.PathLike[str], *, refresh: bool = False) -> str:
    """:func:`sha256_file`, computed once per process for a file that has not changed since
    (same inode, size and mtime); ``refresh`` hashes again regardless."""
    before = os.stat(path)
    key = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns)
    if not refresh:
        with _SHA256_LOCK:
            known = _SHA256_MEMO.get(key)
        if known is not None:
            return known
    digest = sha256_file(path)
    after = os.stat(path)
    # Remember it only if the file did not change while it was read.
    if (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) == key:
        with _SHA256_LOCK:
            _SHA256_MEMO[key] = digest
    return digest


# -- permissions -------------------------------------------------------------------------------

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it in /proc (setting it
    to read it back races with other threads creating files meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~current_umask()


def _dir_mode() -> int:
    return 0o777 & ~current_umask()


# -- durability --------------------------------------------------------------------------------


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems (and /proc-like ones) cannot sync a folder; the data is still safe.
        if not (directory and e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)):
            raise
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_path(path, directory=True)


def _fsync_tree(root: Path) -> None:
    """Every file and folder under ``root``, deepest first, then ``root`` itself."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        base = Path(dirpath)
        for name in filenames:
            p = base / name
            if p.is_file() and not p.is_symlink():
                _fsync_path(p)
        for name in dirnames:
            p = base / name
            if not p.is_symlink():
                _fsync_dir(p)
    _fsync_dir(root)


# -- atomic writes -----------------------------------------------------------------------------


def _temp_prefix(path: Path, tag: str | None) -> str:
    """Temporary names are ``.NAME.[TAG.]RANDOM.tmp``; a run that tags its temporary files
    can later prove which leftovers are its own (see :mod:`euds.scores`)."""
    return f".{path.name}.{tag}." if tag else f".{path.name}."


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, tag: str | None = None
) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path, tag), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, tag: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` atomically, on
    any error it is removed, so no half-written file is ever left under the final name.
    The caller writes the temporary file itself (and closes it); it is fsynced here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path, tag), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # The writer may have replaced the file we made (a new inode): sync what is there now.
        if tmp.is_dir():  # a writer that makes a folder (a Parquet dataset)
            os.chmod(tmp, _dir_mode())
            _fsync_tree(tmp)
        else:
            os.chmod(tmp, _file_mode())
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: build it in a temporary sibling, sync everything
    in it, then rename. An existing folder is moved aside first and removed after, so the
    final name is missing only between two renames, not for a whole recursive delete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old: Path | None = None
    try:
        yield tmp
        os.chmod(tmp, _dir_mode())
        _fsync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            # Put the previous folder back if the new one did not make it into place.
            with contextlib.suppress(OSError):
                if not path.exists():
                    os.replace(old / path.name, path)
            shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
