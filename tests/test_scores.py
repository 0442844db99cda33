"""The score directory's life cycle (euds.scores): euds deletes only files it can prove it
wrote, refuses folders that are not score directories, locks a directory for a whole run,
and takes back what a failed run wrote. Scoring uses the information signal only (fast)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import band_args, same_table
from euds import EudsError, ScoreConfig, score
from euds.cli import main
from euds.engines.driver import score_identity
from euds.output import RunLock
from euds.scores import LOCK, MANIFEST, ScoreDir, open_for_scoring, read_scores

INFO = ScoreConfig(signals=("information",), batch_size=16, shard_size=32)


def _records(n: int = 100) -> bytes:
    return b"".join(
        json.dumps({"id": f"r{k}", "text": f"record number {k} of a small corpus"}).encode() + b"\n"
        for k in range(n)
    )


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(_records())
    return path


def _user_files(folder: Path) -> dict[str, bytes]:
    """A user's folder with files named like euds's own (and one in a subfolder)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "thesis.txt": b"years of work",
        "part-00000.parquet": b"a user's parquet",
        "emb-00000.npy": b"a user's array",
        "ids-00000.npz": b"a user's archive",
        "late.parquet": b"late",
        "centroids.npy": b"centroids",
        ".draft.tmp": b"an editor's temp file",
        "sub/notes.md": b"notes",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def _unchanged(folder: Path, files: dict[str, bytes]) -> bool:
    return all((folder / name).read_bytes() == data for name, data in files.items())


def cli(*args) -> int:
    return main(band_args([str(a) for a in args]))


# -- never delete what euds did not write ----------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_score_directory_is_refused(tmp_path, corpus, capsys, overwrite):
    out = tmp_path / "mine"
    files = _user_files(out)
    flag = ["--overwrite"] if overwrite else []
    assert cli("score", corpus, "-o", out, "--signals", "information", "-q", *flag) == 2
    err = capsys.readouterr().err
    assert "not a score directory" in err and str(out) in err and "Traceback" not in err
    assert _unchanged(out, files)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        {name.split("/")[0] for name in files}
    )  # not even a lock file is left behind


@pytest.mark.parametrize(
    "manifest",
    [b'{"format": 1, "status": "scoring", "shards": []}', b"[1, 2, 3]", b"{}", b"not json"],
)
def test_a_stray_manifest_never_costs_the_users_files(tmp_path, corpus, capsys, manifest):
    out = tmp_path / "mine"
    files = _user_files(out)
    (out / MANIFEST).write_bytes(manifest)
    code = cli("score", corpus, "-o", out, "--signals", "information", "-q")
    assert _unchanged(out, files) and (out / MANIFEST).read_bytes() == manifest
    assert code == 2
    err = capsys.readouterr().err
    if manifest.startswith(b'{"format": 1'):
        # a euds manifest with nothing scored, but beside files it does not list that a run
        # would replace
        assert "did not write under names a score directory uses" in err
        for name in ("part-00000.parquet", "thesis.txt"):
            (out / name).unlink()
        files = {k: v for k, v in files.items() if k not in ("part-00000.parquet", "thesis.txt")}
        for name in ("emb-00000.npy", "ids-00000.npz", "late.parquet", "centroids.npy"):
            (out / name).rename(out / f"{name}.mine")
            files[f"{name}.mine"] = files.pop(name)
        assert cli("score", corpus, "-o", out, "--signals", "information", "-q") == 0
        assert _unchanged(out, files) and ScoreDir(out).complete()
    else:
        assert "not a score directory" in err


def test_a_failed_first_run_then_the_corrected_command_keep_the_users_files(
    tmp_path, corpus, capsys
):
    """The reported path: a run with --overwrite and a mistyped --text-field fails in a folder
    that holds the user's thesis; the corrected command without --overwrite deleted it."""
    out = tmp_path / "work"
    files = _user_files(out)
    args = ("score", corpus, "-o", out, "--signals", "information", "-q")
    assert cli(*args, "--overwrite", "--text-field", "txet") == 2
    assert cli(*args) == 2  # still not a score directory: refused, not emptied
    capsys.readouterr()
    assert _unchanged(out, files)


def test_a_failed_run_takes_back_only_what_it_wrote(tmp_path, corpus):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="fields seen"):
        score(corpus, empty, ScoreConfig(signals=("information",), text_field="txet"))
    assert empty.is_dir() and not list(empty.iterdir())  # the user's folder stays, empty
    new = tmp_path / "a" / "b"
    with pytest.raises(ValueError, match="fields seen"):
        score(corpus, new, ScoreConfig(signals=("information",), text_field="txet"))
    assert not new.exists() and (tmp_path / "a").is_dir()  # only the folder it made goes


def test_overwrite_deletes_only_the_files_the_manifest_lists(tmp_path, corpus):
    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    old_parts = sorted(p.name for p in out.glob("part-*"))
    assert len(old_parts) == 4
    (out / "README.txt").write_text("a note the user keeps beside the scores")
    (out / "part-00099.parquet").write_bytes(b"not listed anywhere")
    other = ScoreConfig(signals=("information",), batch_size=50, shard_size=50)
    with pytest.raises(ValueError, match="another input or configuration"):
        score(corpus, out, other, progress=False)
    # a file under a name a run may write, that no manifest lists: refused, even to --overwrite
    with pytest.raises(ValueError, match=r"did not write .*part-00099\.parquet"):
        score(corpus, out, other, overwrite=True, progress=False)
    assert sorted(p.name for p in out.glob("part-*")) == [*old_parts, "part-00099.parquet"]
    (out / "part-00099.parquet").rename(out / "mine.parquet")
    score(corpus, out, other, overwrite=True, progress=False)
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert (out / "README.txt").exists() and (out / "mine.parquet").exists()
    assert read_scores(out).num_rows == 100
    # A column the scores lack is one line naming the directory and the fix, not a KeyError.
    assert read_scores(out, ["id", "information"]).num_columns == 2
    with pytest.raises(ValueError, match=r"has no no_such_signal column: .* again \(--overwrite\)"):
        read_scores(out, ["id", "no_such_signal"])


def test_a_killed_run_leaves_files_a_later_run_can_prove_are_its_own(tmp_path, corpus):
    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    sd = ScoreDir(out)
    manifest = sd.manifest()
    token = manifest["run_tokens"][-1]
    # As if killed after writing shard 2 but before listing it, with a temp file of shard 3.
    manifest.update(status="scoring", pass_complete=False, writing=[2])
    manifest["shards"] = manifest["shards"][:2]
    sd.write_manifest(manifest)
    (out / f".part-00003.parquet.{token}.abc.tmp").write_bytes(b"half")
    assert score(corpus, out, INFO, progress=False).resumed_from == 64
    assert not list(out.glob(".*.tmp"))
    tokens = ScoreDir(out).manifest()["run_tokens"]
    assert tokens[:-1] == manifest["run_tokens"] and tokens[-1] != token
    assert read_scores(out).num_rows == 100


# -- one run at a time -----------------------------------------------------------------------------


def test_a_second_run_on_a_locked_directory_fails_at_once_naming_the_holder(tmp_path, corpus):
    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK}
    identity = score_identity(corpus, INFO)
    with open_for_scoring(out, identity):
        assert (out / LOCK).read_text().strip() == str(os.getpid())
        other = ScoreConfig(signals=("information",), batch_size=50, shard_size=50)
        t0 = time.perf_counter()
        with pytest.raises(EudsError, match=f"in use by another euds run \\(pid {os.getpid()}\\)"):
            score(corpus, out, other, overwrite=True, progress=False)
        assert time.perf_counter() - t0 < 30  # fails at once, does not wait
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK} == before
    assert score(corpus, out, INFO, progress=False).reused  # the lock is released


def test_runs_that_reuse_a_complete_directory_share_it_and_never_write(tmp_path, corpus):
    """Two runs that only reuse complete scores (two experiments on one dataset) both go on;
    a writer meanwhile is refused at once, and the reused directory is never written."""
    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK}
    identity = score_identity(corpus, INFO)
    with open_for_scoring(out, identity) as run:
        assert run.read_only
        with pytest.raises(EudsError, match="reused as it is"):
            run.write()
        assert score(corpus, out, INFO, progress=False).reused  # a second reader goes on
        other = ScoreConfig(signals=("information",), batch_size=50, shard_size=50)
        with pytest.raises(EudsError, match="in use by another euds run"):
            score(corpus, out, other, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK} == before
    assert not (out / LOCK).exists()  # the reader that made it removed it, alone at the end


def test_a_reader_is_refused_while_a_writer_holds_the_directory(tmp_path, corpus):
    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    with RunLock(out / LOCK, str(out)):  # a writer (exclusive)
        with pytest.raises(EudsError, match="in use by another euds run"):
            score(corpus, out, INFO, progress=False)
    assert score(corpus, out, INFO, progress=False).reused


def test_a_shared_lock_file_stays_while_another_reader_holds_it(tmp_path):
    path = tmp_path / "x.lock"
    first, second = RunLock(path, "x", shared=True), RunLock(path, "x", shared=True)
    first.acquire()
    second.acquire()
    assert first.made and not second.made
    first.release()  # the maker leaves: the other reader still holds the file
    assert path.exists()
    with pytest.raises(EudsError, match="in use"):
        RunLock(path, "x").acquire()  # a writer waits for the last reader
    second.release()
    with RunLock(path, "x"):  # free again
        pass


def test_two_processes_never_share_a_score_directory(child_python, tmp_path, corpus):
    """A real second `euds score` with another configuration while the first runs (held
    still with SIGSTOP once it has the lock, so the second surely meets it running)."""
    big = tmp_path / "big.jsonl"
    big.write_bytes(_records(20000))
    out = tmp_path / "scores"
    base = [child_python, "-m", "euds.cli", "score", str(big), "-o", str(out), "-q"]
    first = subprocess.Popen(
        [*base, "--signals", "information", "--batch-size", "16", "--shard-size", "32"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / MANIFEST).exists():
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        listed = ScoreDir(out).manifest()["shards"]
        second = subprocess.run(
            [*base, "--signals", "information", "--max-tokens", "8", "--overwrite"],
            capture_output=True,
            timeout=120,
        )
        assert ScoreDir(out).manifest()["shards"] == listed  # the first run's work is intact
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=600)
    assert second.returncode == 2
    assert f"in use by another euds run (pid {first.pid})".encode() in second.stderr
    assert first.returncode == 0, err.decode()
    assert ScoreDir(out).complete() and read_scores(out).num_rows == 20000


# -- manifests and inputs --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["score", "select", "report"])
def test_a_manifest_that_is_not_an_object_is_one_clear_line(tmp_path, corpus, capsys, command):
    out = tmp_path / "scores"
    out.mkdir()
    (out / MANIFEST).write_text("[]")
    args = {
        "score": ("score", corpus, "-o", out, "--signals", "information"),
        "select": ("select", corpus, "--scores", out, "-o", tmp_path / "s.jsonl", "--budget", 0.5),
        "report": ("report", out, "-o", tmp_path / "r.html"),
    }[command]
    assert cli(*args, "-q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(out) in err
    assert "not a" in err


def test_an_input_changed_while_it_is_scored_is_not_completed(tmp_path, corpus, monkeypatch):
    from euds.engines import driver

    late_columns = driver.late_columns

    def edit_then_late_columns(*args):
        with open(corpus, "ab") as f:
            f.write(b'{"id": "new", "text": "appended while scoring"}\n')
        return late_columns(*args)

    monkeypatch.setattr(driver, "late_columns", edit_then_late_columns)
    with pytest.raises(EudsError, match="changed while it was being scored"):
        score(corpus, tmp_path / "scores", INFO, progress=False)
    assert not ScoreDir(tmp_path / "scores").complete()


# -- the same result through resume, whatever the input --------------------------------------

_hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_line = st.one_of(
    st.builds(
        lambda i, t: json.dumps({"id": i, "text": t}, ensure_ascii=False).encode(),
        st.one_of(st.integers(0, 30), st.text(max_size=4)),
        st.text(max_size=40),
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ")),
    st.just(b'{"id": 1, "text": "caf\xe9"}'),
    st.just(b"   "),
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(_line, min_size=1, max_size=60), cut=st.integers(0, 10))
def test_any_jsonl_scores_the_same_through_resume_and_selects_every_record(
    tmp_path_factory, lines, cut
):
    from euds.io import RecordReader
    from euds.subset import select_file

    folder = tmp_path_factory.mktemp("prop")
    path = folder / "in.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    records = sum(len(b) for b in RecordReader(path))
    config = ScoreConfig(signals=("information",), batch_size=4, shard_size=8)
    try:
        fresh = read_scores(score(path, folder / "a", config, progress=False).output)
    except ValueError as e:  # only a corpus without a single text field may be refused
        assert "text field" in str(e) or "holds no records" in str(e)
        return
    assert fresh.num_rows == records
    out = folder / "b"
    score(path, out, config, progress=False)
    sd = ScoreDir(out)
    manifest = sd.manifest()
    keep = min(cut, len(manifest["shards"]))
    manifest.update(status="scoring", pass_complete=False, writing=[keep])
    manifest["shards"] = manifest["shards"][:keep]
    sd.write_manifest(manifest)
    score(path, out, config, progress=False)
    assert same_table(read_scores(out), fresh)
    scored = int(np.isfinite(fresh.column("information").to_numpy(zero_copy_only=False)).sum())
    if scored == 0:
        return
    chosen = select_file(
        path,
        out,
        folder / "sel.jsonl",
        budget=scored / records / 2,
        signals=["information"],
        keep_duplicates=True,
    )
    counts = chosen.selection.counts
    assert counts["kept"] + counts["dropped"] == counts["input"] == records
    assert len((folder / "sel.jsonl").read_bytes().splitlines()) == counts["kept"]


def test_score_dir_takes_a_str_path(tmp_path):
    from euds.scores import ScoreDir

    sd = ScoreDir(str(tmp_path))
    assert sd.path == tmp_path and not sd.exists()


def test_a_directory_scored_before_a_column_existed_is_reused_with_a_warning_or_rescored(
    tmp_path, corpus, caplog
):
    """A directory from an earlier euds (here: its shards lack text_hash, as before exact
    duplicates were marked): complete, it is reused with a warning and --overwrite scores it
    again; unfinished, it is refused (its shards would have two layouts)."""
    import logging

    import pyarrow.parquet as pq

    out = tmp_path / "scores"
    score(corpus, out, INFO, progress=False)
    sd = ScoreDir(out)

    def drop_text_hash(status: str) -> None:
        manifest = sd.manifest()
        for shard in manifest["shards"]:
            part = out / f"part-{shard['index']:05d}.parquet"
            table = pq.read_table(part)
            if "text_hash" in table.column_names:
                pq.write_table(table.drop(["text_hash"]), part)
            shard["files"][part.name] = part.stat().st_size
            shard.pop("sha256", None)  # an earlier euds recorded sizes only
        manifest["status"] = status
        sd.write_manifest(manifest)

    drop_text_hash("complete")
    with caplog.at_level(logging.WARNING, logger="euds"):
        assert score(corpus, out, INFO, progress=False).reused
    assert "earlier euds, without text_hash" in caplog.text
    again = score(corpus, out, INFO, overwrite=True, progress=False)
    assert not again.reused
    assert "text_hash" in pq.read_schema(out / "part-00000.parquet").names
    assert score(corpus, out, INFO, progress=False).reused
    drop_text_hash("scoring")
    with pytest.raises(ValueError, match=r"earlier euds, without the column\(s\) text_hash"):
        score(corpus, out, INFO, progress=False)
