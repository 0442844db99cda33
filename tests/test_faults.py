"""Fault injection: damaged shards and manifests, links, hard links and mounts, signals mid-run,
two writers at once, options that would fail after the pass. Each case is one class of data loss
or wrong result that euds must refuse in one line (exit 2) without deleting anything an earlier
run wrote. Scoring uses the information signal (fast) unless a case needs embeddings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import band_args
from euds.cli import main
from euds.output import RunLock, is_marked
from euds.scores import LOCK, MANIFEST, ScoreDir, read_scores

INFO = ("--signals", "information")


def cli(*args: object) -> int:
    return main(band_args([str(a) for a in args]))


def records(n: int, prefix: str = "record") -> list[dict]:
    return [
        {"id": f"r{k}", "text": f"{prefix} number {k} of a corpus, word {k % 7}"} for k in range(n)
    ]


def write_jsonl(path: Path, recs: list[dict], end: bytes = b"\n") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + end for r in recs))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def one_line_error(err: str, command: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"euds {command}: error:"), err
    assert "Traceback" not in err and "internal error" not in err


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", records(64))


def score(corpus: Path, out: Path, *extra: object) -> int:
    return cli("score", corpus, "-o", out, *INFO, "--batch-size", "16", "-q", *extra)


# -- damaged score directories: refused, never wiped -------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "delete", "replace"])
def test_a_rerun_over_a_damaged_complete_directory_keeps_everything(
    corpus, tmp_path, capsys, damage
):
    out = tmp_path / "scores"
    assert score(corpus, out) == 0  # one shard: the case that lost everything
    part = out / "part-00000.parquet"
    if damage == "truncate":
        part.write_bytes(part.read_bytes()[:100])
    elif damage == "delete":
        part.unlink()
    else:  # same size, other bytes
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    before = snapshot(out)
    capsys.readouterr()
    assert score(corpus, out) == 2
    err = capsys.readouterr().err
    one_line_error(err, "score")
    assert "part-00000.parquet" in err and "--overwrite" in err
    assert snapshot(out) == before  # the manifest and every other file are still there
    # --overwrite scores it again, as the message says.
    assert score(corpus, out, "--overwrite") == 0
    assert read_scores(out).num_rows == 64


def test_reclustering_over_a_damaged_shard_is_refused(tmp_path, embedder, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", records(64))
    out = tmp_path / "scores"
    base = ("--signals", "information,semantic", "--embedder", embedder.folder, "--k", "4")
    args = ("--batch-size", "16", "--shard-size", "32", "-q")
    assert cli("score", corpus, "-o", out, *base, *args) == 0
    emb = out / "emb-00001.npy"
    emb.write_bytes(emb.read_bytes()[:-64])
    before = snapshot(out)
    capsys.readouterr()
    changed = ("--signals", "information,semantic", "--embedder", embedder.folder, "--k", "3")
    assert cli("score", corpus, "-o", out, *changed, *args) == 2
    err = capsys.readouterr().err
    one_line_error(err, "score")
    assert "emb-00001.npy" in err
    assert snapshot(out) == before
    assert ScoreDir(out).manifest()["status"] == "complete"


def test_a_resume_refuses_a_damaged_listed_shard_and_deletes_only_the_killed_runs_claim(
    corpus, tmp_path, capsys
):
    out = tmp_path / "scores"
    assert score(corpus, out, "--shard-size", "16") == 0
    sd = ScoreDir(out)
    manifest = sd.manifest()
    # As if killed while writing shard 3: listed 0-2, claiming 3, whose part is there.
    manifest["status"] = "scoring"
    manifest["pass_complete"] = False
    manifest["shards"] = manifest["shards"][:3]
    manifest["writing"] = [3]
    manifest.pop("late_files", None)
    sd.write_manifest(manifest)
    (out / "emb-00003.npy").write_bytes(b"not listed, claimed: the killed run's")
    # A damaged listed shard: refused, nothing deleted.
    original = (out / "part-00001.parquet").read_bytes()
    (out / "part-00001.parquet").write_bytes(b"damaged")
    before = snapshot(out)
    assert score(corpus, out, "--shard-size", "16") == 2
    one_line_error(capsys.readouterr().err, "score")
    assert snapshot(out) == before
    shutil.copy(out / "part-00000.parquet", out / "part-00001.parquet")  # another shard's
    assert score(corpus, out, "--shard-size", "16") == 2  # refused by its sha256
    capsys.readouterr()
    # Restored, the resume removes only the killed run's claimed leftover and finishes.
    (out / "part-00001.parquet").write_bytes(original)
    assert score(corpus, out, "--shard-size", "16") == 0
    assert not (out / "emb-00003.npy").exists()
    assert read_scores(out).num_rows == 64


def test_complete_means_every_row(corpus, tmp_path, monkeypatch, capsys):
    """A pass that lists fewer rows than it read is never marked complete."""
    from euds.engines import local

    real = local._run_pass

    def drop_last_shard(reader, models, job, start_row, bar):
        real(reader, models, job, start_row, bar)
        job.run.manifest["shards"].pop()
        job.run.write()

    monkeypatch.setattr(local, "_run_pass", drop_last_shard)
    out = tmp_path / "scores"
    assert score(corpus, out, "--shard-size", "16") == 2
    err = capsys.readouterr().err
    assert "the shards hold 48 rows but the input has 64" in err
    assert ScoreDir(out).manifest()["status"] != "complete"


# -- manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.update(colour="blue"), "'colour'"),
        (lambda m: m.update(status=5), "'status'"),
        (lambda m: m["input"].update(size="big"), "input.'size'"),
        (lambda m: m["shards"][0].update(rows=-1), "'rows'"),
        (lambda m: m["shards"][0]["files"].update({"../thesis.txt": 3}), "thesis.txt"),
        (lambda m: m["config"].update(k="sixteen"), "config.'k'"),
        (lambda m: m["config"].update(newer_option=1), "config.'newer_option'"),
    ],
)
def test_a_hand_damaged_or_newer_manifest_is_one_line_naming_the_field(
    corpus, tmp_path, capsys, edit, field
):
    out = tmp_path / "scores"
    assert score(corpus, out) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    edit(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest))
    before = snapshot(out)
    capsys.readouterr()
    for command in (
        ("score", corpus, "-o", out, *INFO, "-q"),
        ("select", corpus, "--scores", out, "-o", tmp_path / "s.jsonl", "--budget", "0.5"),
        ("report", out, "-o", tmp_path / "r.html"),
    ):
        assert cli(*command) == 2
        err = capsys.readouterr().err
        one_line_error(err, command[0])
        assert str(out / MANIFEST) in err and field in err
    assert snapshot(out) == before


# -- the lock -------------------------------------------------------------------------------


def test_the_lock_never_follows_a_link(corpus, tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"years of work")
    out = tmp_path / "scores"
    out.mkdir()
    (out / LOCK).symlink_to(victim)
    assert score(corpus, out) == 2
    err = capsys.readouterr().err
    one_line_error(err, "score")
    assert "symbolic link" in err
    assert victim.read_bytes() == b"years of work"
    assert (out / LOCK).is_symlink()


def test_a_lock_file_found_there_is_not_truncated_or_removed(corpus, tmp_path):
    out = tmp_path / "scores"
    assert score(corpus, out) == 0
    (out / LOCK).write_bytes(b"12345\n")  # left by a run killed with SIGKILL
    assert score(corpus, out) == 0
    assert (out / LOCK).read_bytes() == b"12345\n"
    # A lock this run makes is removed at the end.
    (out / LOCK).unlink()
    assert score(corpus, out) == 0
    assert not (out / LOCK).exists()


def test_the_lock_refuses_a_folder_or_fifo(tmp_path):
    (tmp_path / "dir.lock").mkdir()
    with pytest.raises((ValueError, OSError)):
        RunLock(tmp_path / "dir.lock", "x").acquire()
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(ValueError, match="not a regular file"):
        RunLock(tmp_path / "fifo.lock", "x").acquire()


# -- outputs: never the inputs, never a file euds did not write --------------------------------


@pytest.fixture
def scored(corpus, tmp_path):
    out = tmp_path / "scores"
    assert score(corpus, out) == 0
    return corpus, out


def test_report_never_writes_over_its_inputs_or_the_scores(scored, tmp_path, capsys):
    corpus, scores = scored
    sel = tmp_path / "sel.jsonl"
    assert cli("select", corpus, "--scores", scores, "-o", sel, "--budget", "0.5", "-q") == 0
    manifest = sel.with_name(sel.name + ".manifest.json")
    link = tmp_path / "link.jsonl"
    link.symlink_to(corpus)
    hard = tmp_path / "hard.jsonl"
    os.link(corpus, hard)
    before = snapshot(tmp_path)
    for target in (corpus, link, hard, scores / MANIFEST, scores / "report.html", manifest):
        for extra in ((), ("--overwrite",)):
            assert cli("report", scores, "-o", target, "--selection", manifest, *extra) == 2
            one_line_error(capsys.readouterr().err, "report")
    assert snapshot(tmp_path) == before


def test_report_replaces_only_its_own_reports(scored, tmp_path, capsys):
    _, scores = scored
    mine = tmp_path / "mine.html"
    mine.write_bytes(b"<html>the user's own page</html>\n")
    assert cli("report", scores, "-o", mine) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert mine.read_bytes() == b"<html>the user's own page</html>\n"
    fresh = tmp_path / "report.html"
    assert cli("report", scores, "-o", fresh) == 0 and is_marked(fresh)
    assert cli("report", scores, "-o", fresh) == 0  # its own: the same command runs again
    fresh.write_bytes(fresh.read_bytes().replace(b"euds report", b"my notes"))
    assert cli("report", scores, "-o", fresh) == 2  # edited since: the user's now
    assert cli("report", scores, "-o", mine, "--overwrite") == 0 and is_marked(mine)


def test_run_replaces_only_a_report_it_wrote(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.html").write_bytes(b"mine")
    args = ("run", corpus, "-o", out, *INFO, "--budget", "0.5", "-q")
    assert cli(*args) == 2
    assert "report.html" in capsys.readouterr().err
    assert (out / "report.html").read_bytes() == b"mine"
    (out / "report.html").unlink()
    assert cli(*args) == 0 and cli(*args) == 0


def test_bench_json_is_guarded(corpus, tmp_path, capsys):
    theirs = tmp_path / "figures.json"
    theirs.write_text('{"mine": 1}')
    for target, extra in ((corpus, ("--overwrite",)), (theirs, ())):
        assert (
            cli(
                "bench",
                corpus,
                "--limit",
                "8",
                "--signals",
                "information",
                "--json",
                target,
                *extra,
            )
            == 2
        )
        one_line_error(capsys.readouterr().err, "bench")
    assert theirs.read_text() == '{"mine": 1}'


def test_select_refuses_outputs_reached_by_another_name(scored, tmp_path, capsys):
    corpus, scores = scored
    link = tmp_path / "out-link.jsonl"
    link.symlink_to(corpus)
    hard = tmp_path / "out-hard.jsonl"
    os.link(corpus, hard)
    scores_link = tmp_path / "scores-link"
    scores_link.symlink_to(scores)
    before = snapshot(tmp_path)
    for target in (link, hard, scores / "picked.jsonl", scores_link / "picked.jsonl"):
        assert (
            cli(
                "select", corpus, "--scores", scores, "-o", target, "--budget", "0.5", "--overwrite"
            )
            == 2
        )
        one_line_error(capsys.readouterr().err, "select")
    assert snapshot(tmp_path) == before


def test_a_second_mount_of_the_same_folder_is_the_same_folder(scored, tmp_path, capsys):
    corpus, scores = scored
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", str(scores), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"no bind mounts here: {done.stderr.decode().strip()}")
    try:
        before = snapshot(scores)
        assert (
            cli("select", corpus, "--scores", scores, "-o", mount / "x.jsonl", "--budget", "0.5")
            == 2
        )
        assert "score directory" in capsys.readouterr().err
        assert cli("report", scores, "-o", mount / MANIFEST, "--overwrite") == 2
        assert snapshot(scores) == before
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_scores_of_another_input_are_refused_by_their_records(scored, tmp_path, capsys):
    corpus, scores = scored
    # A score Parquet file of another corpus with as many records: a count check would pass.
    other = write_jsonl(tmp_path / "other.jsonl", records(64, prefix="another"))
    other_scores = tmp_path / "other-scores"
    assert score(other, other_scores) == 0
    table = tmp_path / "table.parquet"
    pq.write_table(read_scores(other_scores), table)
    assert (
        cli("select", corpus, "--scores", table, "-o", tmp_path / "x.jsonl", "--budget", "0.5") == 2
    )
    assert "its texts differ" in capsys.readouterr().err
    # The same ids and texts: accepted.
    pq.write_table(read_scores(scores), table)
    assert (
        cli(
            "select", corpus, "--scores", table, "-o", tmp_path / "y.jsonl", "--budget", "0.5", "-q"
        )
        == 0
    )


def test_report_selection_must_be_a_selection_of_this_input(scored, tmp_path, capsys, monkeypatch):
    corpus, scores = scored
    for wrong in (scores / MANIFEST, corpus):
        assert cli("report", scores, "-o", tmp_path / "r.html", "--selection", wrong) == 2
        one_line_error(capsys.readouterr().err, "report")
    other = write_jsonl(tmp_path / "other.jsonl", records(64, prefix="another"))
    other_scores = tmp_path / "other-scores"
    assert score(other, other_scores) == 0
    sel = tmp_path / "other-sel.jsonl"
    assert cli("select", other, "--scores", other_scores, "-o", sel, "--budget", "0.5", "-q") == 0
    manifest = sel.with_name(sel.name + ".manifest.json")
    assert cli("report", scores, "-o", tmp_path / "r.html", "--selection", manifest) == 2
    assert "another input" in capsys.readouterr().err
    # Paths in a manifest are the manifest's folder's: a run from elsewhere finds its files.
    mine = tmp_path / "sel" / "mine.jsonl"
    mine.parent.mkdir()
    monkeypatch.chdir(mine.parent)
    assert (
        cli("select", corpus, "--scores", scores, "-o", "mine.jsonl", "--budget", "0.5", "-q") == 0
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    manifest = mine.with_name("mine.jsonl.manifest.json")
    assert cli("report", scores, "-o", tmp_path / "r2.html", "--selection", manifest) == 0


# -- selections read back as the records they kept ------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("last_line_end", [True, False])
def test_a_selection_reads_back_in_the_inputs_line_ends(tmp_path, end, last_line_end):
    recs = records(40)
    data = b"".join(json.dumps(r).encode() + end for r in recs)
    if not last_line_end:
        data = data[: -len(end)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(data)
    scores = tmp_path / "scores"
    assert score(corpus, scores) == 0
    out = tmp_path / "kept.jsonl"
    # Keep the last record too (the one without its line end).
    assert (
        cli(
            "select",
            corpus,
            "--scores",
            scores,
            "-o",
            out,
            "--budget",
            "1.0",
            "--keep-duplicates",
            "-q",
        )
        == 0
    )
    assert b"\n" not in out.read_bytes() or end != b"\r"  # an old Mac file stays one
    # Scored again, the selection gives the records and scores it kept.
    again = tmp_path / "again"
    assert score(out, again) == 0
    kept = read_scores(scores)
    back = read_scores(again)
    assert back.column("id").to_pylist() == kept.column("id").to_pylist()
    np.testing.assert_array_equal(
        back.column("information").to_numpy(), kept.column("information").to_numpy()
    )


# -- every option checked before any work ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "match"),
    [
        (("--seed", "-1"), {}, "seed"),
        (("--seed", str(2**31)), {}, "seed"),
        (("--max-points-per-centroid", "0"), {}, "max_points_per_centroid"),
        (("--k", "4", "--m", "5"), {}, "m must be"),
        (("--temperature", "inf"), {}, "temperature"),
        (("--temperature", "nan"), {}, "temperature"),
        (("--batch-tokens", "64", "--max-tokens", "128"), {}, "batch_tokens"),
        ((), {"EUDS_NUM_THREADS": "lots"}, "EUDS_NUM_THREADS"),
        ((), {"EUDS_NUM_THREADS": "0"}, "EUDS_NUM_THREADS"),
    ],
)
def test_options_are_checked_before_the_pass(
    corpus, tmp_path, capsys, monkeypatch, args, env, match
):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "scores"
    t0 = time.perf_counter()
    assert (
        cli("score", corpus, "-o", out, "--signals", "information,generative,semantic", *args) == 2
    )
    err = capsys.readouterr().err
    one_line_error(err, "score")
    assert match in err
    assert not out.exists()  # nothing made, no model loaded
    assert time.perf_counter() - t0 < 30


def test_selection_options_are_checked_before_the_pass(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    for bad in (
        ("--seed", "-3"),
        ("--tails", "0.9:0.1"),
        ("--method", "typical", "--position", "2"),
    ):
        assert cli("run", corpus, "-o", out, *INFO, "--budget", "0.5", *bad) == 2
        one_line_error(capsys.readouterr().err, "run")
        assert not (out / "scores").exists()


# -- signals ----------------------------------------------------------------------------------


def test_sigterm_is_a_clean_shutdown(child_python, tmp_path):
    corpus = write_jsonl(tmp_path / "big.jsonl", records(20000))
    out = tmp_path / "scores"
    command = [
        child_python,
        "-m",
        "euds.cli",
        "score",
        str(corpus),
        "-o",
        str(out),
        *INFO,
        "--batch-size",
        "16",
        "--shard-size",
        "16",
        "-q",
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if len(json.loads((out / MANIFEST).read_text())["shards"]) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err.decode()
    assert b"terminated" in err and b"Traceback" not in err
    assert not (out / LOCK).exists()  # released (and removed: this run made it)
    manifest = ScoreDir(out).manifest()
    tokens = manifest["run_tokens"]
    for tmp in out.glob(".*.tmp"):  # any left is provably removable: it carries a run's token
        assert any(f".{t}." in tmp.name for t in tokens)
    # Started again, it resumes and ends with the scores an uninterrupted run gives.
    assert subprocess.run(command, capture_output=True).returncode == 0
    whole = tmp_path / "whole"
    assert (
        subprocess.run([*command[:6], str(whole), *command[7:]], capture_output=True).returncode
        == 0
    )
    a, b = read_scores(out), read_scores(whole)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_array_equal(
        a.column("information").to_numpy(), b.column("information").to_numpy()
    )


# -- two writers -----------------------------------------------------------------------------


def test_a_second_writer_of_the_same_selection_fails_at_once(
    child_python, scored, tmp_path, capsys
):
    corpus, scores = scored
    out = tmp_path / "kept.jsonl"
    with RunLock(out.with_name(f".{out.name}.euds.lock"), str(out)):
        assert cli("select", corpus, "--scores", scores, "-o", out, "--budget", "0.5") == 2
        assert "in use by another euds run" in capsys.readouterr().err
        assert not out.exists()
    # Two at once for real: the trio always comes from one run.
    command = [
        child_python,
        "-m",
        "euds.cli",
        "select",
        str(corpus),
        "--scores",
        str(scores),
        "-o",
        str(out),
        "-q",
        "--signals",
        "information",
    ]
    procs = [
        subprocess.Popen([*command, "--budget", budget], stderr=subprocess.PIPE)
        for budget in ("0.25", "0.75")
    ]
    codes = [p.wait(timeout=120) for p in procs]
    assert 0 in codes and set(codes) <= {0, 2}
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    from euds.cache import sha256_file

    assert manifest["output"]["sha256"] == sha256_file(out)
    decisions = out.with_name(out.name + ".decisions.parquet")
    assert manifest["decisions"]["sha256"] == sha256_file(decisions)
    kept = pq.read_table(decisions).column("kept").to_numpy().sum()
    assert kept == manifest["selection"]["counts"]["kept"] == len(out.read_bytes().splitlines())


# -- the Python API: one ValueError naming the argument ----------------------------------------


def test_the_api_names_a_bad_argument():
    from euds.api import Scorer
    from euds.config import ScoreConfig
    from euds.selection import select

    scorer = Scorer(("information",), config=ScoreConfig())
    with pytest.raises(ValueError, match="not one string"):
        next(scorer.score_batches("a whole text"))
    with pytest.raises(ValueError, match="wrap one string in a list"):
        scorer.score_texts("a whole text")
    with pytest.raises(ValueError, match="batch_size"):
        next(scorer.score_batches(["a"], batch_size=0))
    scores = {"information": np.arange(4.0)}
    with pytest.raises(ValueError, match="budget"):
        select(scores, budget=True)
    bad_keys = np.array([[1, 2], ["x", 3], None, [4, 5]], dtype=object)
    with pytest.raises(ValueError, match="near_keys"):
        select(
            {**scores, "near_keys": bad_keys},
            budget=0.5,
            signals=["information"],
            drop_near_duplicates=True,
        )
    with pytest.raises(ValueError, match="signals must be a list"):
        select(scores, budget=0.5, signals="information")
