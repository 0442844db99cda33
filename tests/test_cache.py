"""Atomic writes: durable (file fsynced before the rename, the folder after) and created with
the caller's umask, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from euds import cache
from euds.cache import atomic_dir, atomic_path, atomic_write_bytes


@pytest.fixture
def events(monkeypatch):
    """Records every fsync (as the path of the synced descriptor) and every rename, in order."""
    log: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        log.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


def _check_order(log: list[tuple[str, ...]], final: Path, synced_before: set[str]) -> None:
    """``synced_before`` (temporary paths) were fsynced before the rename onto ``final``,
    and the folder holding ``final`` after it."""
    renames = [i for i, e in enumerate(log) if e[0] == "replace" and e[2] == str(final)]
    assert len(renames) == 1, log
    at = renames[0]
    before = {e[1] for e in log[:at] if e[0] == "fsync"}
    after = {e[1] for e in log[at + 1 :] if e[0] == "fsync"}
    assert synced_before <= before, log
    assert str(final.parent) in after, log


def test_atomic_write_bytes_syncs_file_then_folder(tmp_path, events):
    target = tmp_path / "out" / "a.json"
    atomic_write_bytes(target, b"{}")
    (rename,) = [e for e in events if e[0] == "replace"]
    _check_order(events, target, {rename[1]})
    assert target.read_bytes() == b"{}"


def test_atomic_path_syncs_what_the_caller_wrote(tmp_path, events):
    target = tmp_path / "shard.parquet"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"rows")
        written = str(tmp)
    _check_order(events, target, {written})
    assert target.read_bytes() == b"rows"


def test_atomic_dir_syncs_its_files_and_folders(tmp_path, events):
    target = tmp_path / "models" / "lm"
    with atomic_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("{}")
        (tmp / "graph.onnx").write_bytes(b"graph")
        built = tmp
    synced = {str(built), str(built / "sub"), str(built / "sub" / "config.json")}
    _check_order(events, target, synced | {str(built / "graph.onnx")})
    assert (target / "sub" / "config.json").read_text() == "{}"


def test_atomic_dir_replacing_a_folder_syncs_too(tmp_path, events):
    target = tmp_path / "lm"
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert str(tmp_path) in {e[1] for e in events if e[0] == "fsync"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_honour_the_umask(tmp_path, umask):
    atomic_write_bytes(tmp_path / "a.bin", b"a")
    assert _mode(tmp_path / "a.bin") == 0o666 & ~umask
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"b")
    assert _mode(tmp_path / "b.bin") == 0o666 & ~umask
    with atomic_dir(tmp_path / "c") as tmp:
        (tmp / "f").write_bytes(b"c")
    assert _mode(tmp_path / "c") == 0o777 & ~umask
    assert _mode(tmp_path / "c" / "f") == 0o666 & ~umask


def test_umask_is_read_without_changing_it(umask, monkeypatch):
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real(m))
    assert cache.current_umask() == umask
    assert calls == []  # read from /proc/self/status, which is thread-safe


def test_umask_fallback_without_proc(umask, monkeypatch):
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path) == "/proc/self/status":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    assert cache.current_umask() == umask
    assert os.umask(umask) == umask  # restored
