"""The ``euds`` command line, in-process through ``euds.cli.main`` and once through the
installed entry point: score (score directories), select (budget, intervals), manifests,
decisions, errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import band_args
from euds.cache import sha256_file
from euds.cli import main
from euds.io import RecordReader
from euds.scores import ScoreDir, read_scores

SCORE_COLUMNS = ["id", "information", "n_tokens", "truncated", "flags", "text_hash", "near_keys"]
INFO = ("--signals", "information")  # the fast signal; the others need exported models


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lines_of(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.splitlines(keepends=True)


def run(*args: str | os.PathLike[str]) -> int:
    return main(band_args([str(a) for a in args]))


def select_cli(inp, scores, out, *args: str | os.PathLike[str]) -> int:
    """``euds select INP --scores SCORES -o OUT ARGS...`` in-process."""
    return run("select", inp, "--scores", scores, "-o", out, *args)


def score_cli(inp, scores, *args: str | os.PathLike[str]) -> int:
    """``euds score INP -o SCORES --signals information -q ARGS...`` in-process."""
    return run("score", inp, "-o", scores, *INFO, "-q", *args)


def sample_entropy(ids: np.ndarray) -> float:
    if len(ids) == 0:
        return float("nan")
    _, c = np.unique(ids, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def scored(sst2_train_2000, tmp_path_factory):
    """(input, score directory) of the 2,000-record SST-2 slice, scored once."""
    scores = tmp_path_factory.mktemp("cli_scores") / "X"
    assert score_cli(sst2_train_2000, scores) == 0
    return sst2_train_2000, scores


def check_scores_manifest(scores: Path, inp: Path, n: int) -> dict:
    """Checks a finished score directory's manifest against its input; returns it."""
    manifest = ScoreDir(scores).manifest()
    assert manifest["status"] == "complete"
    assert manifest["input"]["sha256"] == sha256(inp)
    assert manifest["input"]["path"] == str(inp.resolve())
    assert manifest["input"]["size"] == inp.stat().st_size
    assert manifest["input"]["mtime_ns"] == inp.stat().st_mtime_ns
    shards = manifest["shards"]
    assert [s["index"] for s in shards] == list(range(len(shards)))
    assert [s["start"] for s in shards] == [
        sum(s["rows"] for s in shards[:k]) for k in range(len(shards))
    ]
    assert sum(s["rows"] for s in shards) == n
    for shard in shards:
        for name, size in shard["files"].items():
            assert (scores / name).stat().st_size == size, name
    return manifest


def check_selection(inp: Path, scores: Path, out: Path, n_input: int, **read_kwargs) -> dict:
    """Checks the files of a finished `euds select`; returns the manifest."""
    manifest_path = out.with_name(out.name + ".manifest.json")
    decisions_path = out.with_name(out.name + ".decisions.parquet")
    manifest = json.loads(manifest_path.read_text())
    counts = manifest["selection"]["counts"]
    assert counts["input"] == n_input == manifest["input"]["records"]
    assert counts["kept"] + counts["dropped"] == counts["input"]
    assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
    assert manifest["output"]["records"] == counts["kept"]
    # checksums
    assert manifest["input"]["sha256"] == sha256(inp)
    # Paths are relative to the manifest's folder, wherever it is read from.
    assert (manifest_path.parent / manifest["scores"]["path"]).resolve() == scores.resolve()
    assert (manifest_path.parent / manifest["input"]["path"]).resolve() == inp.resolve()
    if scores.is_dir():
        assert manifest["scores"]["sha256"] is None
        assert manifest["scores"]["manifest_sha256"] == sha256(scores / "_manifest.json")
        assert manifest["scores"]["config"] == ScoreDir(scores).manifest()["config"]
    else:
        assert manifest["scores"]["sha256"] == sha256(scores)
        assert manifest["scores"]["manifest_sha256"] is None
    assert manifest["output"]["sha256"] == sha256(out)
    assert manifest["decisions"]["sha256"] == sha256(decisions_path)
    assert manifest_path.parent / manifest["output"]["path"] == out
    assert manifest_path.parent / manifest["decisions"]["path"] == decisions_path
    # decisions: one row per input record, aligned with the score table
    decisions = pq.read_table(decisions_path)
    assert decisions.column_names == ["id", "kept", "reason"]
    assert decisions.num_rows == n_input
    assert decisions.column("id").to_pylist() == read_scores(scores).column("id").to_pylist()
    kept = np.array(decisions.column("kept").to_pylist())
    reason = decisions.column("reason").to_pylist()
    assert int(kept.sum()) == counts["kept"]
    assert all((r == "") == k for r, k in zip(reason, kept, strict=True))
    # the output holds exactly the kept records, in input order
    if inp.name.endswith((".jsonl", ".jsonl.gz")):
        inp_lines = lines_of(inp)
        assert len(inp_lines) == n_input
        assert lines_of(out) == [ln for ln, k in zip(inp_lines, kept, strict=True) if k]
    out_ids = [i for b in RecordReader(out, **read_kwargs) for i in b.ids]
    all_ids = decisions.column("id").to_pylist()
    assert out_ids == [i for i, k in zip(all_ids, kept, strict=True) if k]
    return manifest


# -- score -------------------------------------------------------------------------------------


def test_score_table(scored, tokenizer):
    inp, scores = scored
    table = read_scores(scores)
    assert table.column_names == SCORE_COLUMNS
    assert table.num_rows == 2000
    assert ScoreDir(scores).read().equals(table)
    records = [r for line in lines_of(inp) for r in [json.loads(line)]]
    assert table.column("id").to_pylist() == [r["id"] for r in records]
    # information = Shannon entropy of the content token ids, recomputed with numpy
    batch = tokenizer.encode([r["text"] for r in records])
    expected = np.array([sample_entropy(batch.row(i)) for i in range(len(records))])
    got = table.column("information").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(table.column("n_tokens").to_numpy(), batch.n_tokens)
    assert table.column("truncated").to_pylist() == batch.truncated.tolist()
    assert set(table.column("flags").to_pylist()) == {""}
    # the score directory: one shard of the pass columns, nothing for the other signals
    assert sorted(p.name for p in scores.iterdir()) == ["_manifest.json", "part-00000.parquet"]
    manifest = check_scores_manifest(scores, inp, 2000)
    assert manifest["config"]["signals"] == ["information"]
    assert manifest["models"]["tokenizer"]["sha256"] == sha256(tokenizer.path)
    assert set(manifest["models"]) == {"tokenizer"}


def test_score_information_mode_corpus(sst2_train_2000, tmp_path, tokenizer):
    scores = tmp_path / "corpus"
    args = ["--information-mode", "corpus"]
    # shards of 600 records: the pool is counted across shards
    assert (
        score_cli(sst2_train_2000, scores, *args, "--batch-size", "300", "--shard-size", "600") == 0
    )
    texts = [json.loads(line)["text"] for line in lines_of(sst2_train_2000)]
    batch = tokenizer.encode(texts)
    counts = np.bincount(batch.ids, minlength=tokenizer.vocab_size).astype(float)
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.zeros_like(counts))
    expected = np.array([-logp[batch.row(i)].mean() for i in range(len(texts))])
    table = read_scores(scores)
    assert table.column_names == SCORE_COLUMNS
    got = table.column("information").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    manifest = check_scores_manifest(scores, sst2_train_2000, 2000)
    assert manifest["config"]["information_mode"] == "corpus"
    assert [s["rows"] for s in manifest["shards"]] == [600, 600, 600, 200]
    # the counts come from the kept content token ids: exactly the tokenizer's, in row order
    sd = ScoreDir(scores)
    offsets, ids = zip(*(sd.token_ids(s) for s in sd.shards()), strict=True)
    assert sum(len(x) for x in ids) == int(batch.n_tokens.sum())
    np.testing.assert_array_equal(np.concatenate(ids), batch.ids)
    lengths = np.concatenate([np.diff(o) for o in offsets])
    np.testing.assert_array_equal(lengths, batch.n_tokens)
    # information is a late column (computed over the whole pool), not a pass column
    assert "information" not in pq.read_schema(scores / "part-00000.parquet").names
    assert pq.read_table(scores / "late.parquet").column_names == ["information"]
    # the same scores whatever the batch and shard size
    again = tmp_path / "corpus2"
    assert score_cli(sst2_train_2000, again, *args, "--batch-size", "4096") == 0
    np.testing.assert_array_equal(read_scores(again).column("information").to_numpy(), got)
    # and the selection on them works
    out = tmp_path / "corpus_out.jsonl.gz"
    assert select_cli(sst2_train_2000, scores, out, "--budget", "0.2", "-q") == 0
    assert check_selection(sst2_train_2000, scores, out, 2000)["output"]["records"] == 400


def test_score_max_tokens_and_batch_size(sst2_train_2000, tmp_path, scored):
    a, b = tmp_path / "a", tmp_path / "b"
    assert score_cli(sst2_train_2000, a, "--max-tokens", "8") == 0
    assert score_cli(sst2_train_2000, b, "--batch-size", "7", "--shard-size", "700") == 0
    ta, tb = read_scores(a), read_scores(b)
    assert ta.column("n_tokens").to_numpy().max() == 7
    assert any(ta.column("truncated").to_pylist())
    assert ScoreDir(a).manifest()["config"]["max_tokens"] == 8
    assert [s["rows"] for s in ScoreDir(b).manifest()["shards"]] == [700, 700, 600]
    ref = read_scores(scored[1])
    assert tb.equals(ref)  # neither batch nor shard size changes any score
    assert not ta.equals(ref)


def test_score_reuses_refuses_and_overwrites(sst2_files, tmp_path, capsys):
    inp = sst2_files["jsonl"]
    scores = tmp_path / "s"
    assert score_cli(inp, scores) == 0
    manifest = ScoreDir(scores).manifest()
    part = (scores / "part-00000.parquet").read_bytes()
    capsys.readouterr()
    # the same command again: a complete directory is reused, not rescored
    assert run("score", inp, "-o", scores, *INFO) == 0
    assert "200 records already scored" in capsys.readouterr().err
    assert ScoreDir(scores).manifest() == manifest
    assert (scores / "part-00000.parquet").read_bytes() == part
    # another configuration: refused, and the scores are left as they were
    assert score_cli(inp, scores, "--max-tokens", "8") == 2
    err = capsys.readouterr().err
    assert err.startswith("euds score: error:") and "--overwrite" in err
    assert ScoreDir(scores).manifest() == manifest
    # another input: refused too
    assert score_cli(sst2_files["jsonl.gz"], scores) == 2
    assert "another input" in capsys.readouterr().err
    assert ScoreDir(scores).manifest() == manifest
    # --overwrite replaces them
    assert score_cli(inp, scores, "--max-tokens", "8", "--overwrite") == 0
    assert ScoreDir(scores).manifest()["config"]["max_tokens"] == 8
    assert read_scores(scores).column("n_tokens").to_numpy().max() == 7
    # a folder that is not a score directory is never overwritten without --overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert score_cli(inp, other) == 2
    assert "not a score directory" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--signals", "perplexity"], "signals must be"),
        (["--signals", ""], "signals must be"),
        (["--signals", "information,information"], "signals must be"),
        (["--max-tokens", "1"], "max_tokens"),
        (["--batch-size", "0"], "batch_size"),
        (["--shard-size", "0"], "shard_size"),
        (["--batch-size", "300"], "multiple of batch_size"),
        (["--tokenizer", "/no/such/tokenizer.json"], "tokenizer file not found"),
    ],
)
def test_score_argument_errors(sst2_train_2000, tmp_path, capsys, args, message):
    out = tmp_path / "s"
    assert run("score", sst2_train_2000, "-o", out, "-q", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("euds score: error:") and message in err
    assert not out.exists()


def test_failed_score_leaves_no_directory(sst2_train_2000, tmp_path, capsys):
    out = tmp_path / "s"
    assert score_cli(sst2_train_2000, out, "--tokenizer", "/no/such/tokenizer.json") == 2
    assert "tokenizer file not found" in capsys.readouterr().err
    assert not out.exists()
    # and the corrected command works in the same place
    assert score_cli(sst2_train_2000, out) == 0, capsys.readouterr().err
    assert ScoreDir(out).complete()


def test_score_missing_input(tmp_path, capsys):
    assert run("score", tmp_path / "nope.jsonl", "-o", tmp_path / "s") == 2
    assert "input file not found" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# -- select ------------------------------------------------------------------------------------


def test_select_budget(scored, tmp_path):
    inp, scores = scored
    out = tmp_path / "OUT.jsonl.gz"
    assert select_cli(inp, scores, out, "--budget", "0.16", "-q") == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    manifest = check_selection(inp, scores, out, 2000)
    assert manifest["selection"]["counts"]["kept"] == 320
    sel = manifest["selection"]
    assert sel["method"] == "single" and sel["signals"] == ["information"]
    assert sel["budget"] == 0.16 and sel["position"] == 0.5 and sel["seed"] == 0
    assert manifest["scores"]["config"]["signals"] == ["information"]
    assert set(manifest["selection"]["counts"]["dropped_by_reason"]) == {"outside_interval"}
    # the same command again gives the same bytes (gzip without a timestamp)
    out2 = tmp_path / "again" / "OUT.jsonl.gz"
    assert select_cli(inp, scores, out2, "--budget", "0.16", "-q") == 0
    assert out2.read_bytes() == out.read_bytes()
    dec = out.with_name(out.name + ".decisions.parquet")
    dec2 = out2.with_name(out2.name + ".decisions.parquet")
    assert pq.read_table(dec).equals(pq.read_table(dec2))


@pytest.mark.parametrize("position", ["0", "1"])
def test_select_position(scored, tmp_path, position):
    inp, scores = scored
    out = tmp_path / "pos.jsonl.gz"
    assert select_cli(inp, scores, out, "--budget", "0.1", "--position", position, "-q") == 0
    check_selection(inp, scores, out, 2000)
    v = read_scores(scores).column("information").to_numpy()
    kept = pq.read_table(out.with_name(out.name + ".decisions.parquet")).column("kept")
    kept = np.array(kept.to_pylist())
    if position == "0":
        assert v[kept].max() <= v[~kept].min()
    else:
        assert v[kept].min() >= v[~kept].max()


def test_select_seed(scored, tmp_path):
    inp, scores = scored
    masks = []
    for seed in ("0", "1"):
        out = tmp_path / f"seed{seed}.jsonl.gz"
        assert select_cli(inp, scores, out, "--budget", "0.16", "--seed", seed, "-q") == 0
        dec = pq.read_table(out.with_name(out.name + ".decisions.parquet"))
        masks.append(np.array(dec.column("kept").to_pylist()))
    assert masks[0].sum() == masks[1].sum() == 320
    assert (masks[0] != masks[1]).any()
    # --tie-seed and --select-signals are the long names of --seed and --signals
    out = tmp_path / "long.jsonl.gz"
    long_names = ("--tie-seed", "1", "--select-signals", "information")
    assert select_cli(inp, scores, out, "--budget", "0.16", *long_names, "-q") == 0
    assert out.read_bytes() == (tmp_path / "seed1.jsonl.gz").read_bytes()
    manifest = check_selection(inp, scores, out, 2000)
    assert manifest["selection"]["seed"] == 1 and manifest["selection"]["signals"] == [
        "information"
    ]


def test_select_interval_quantiles(scored, tmp_path):
    inp, scores = scored
    out = tmp_path / "interval.jsonl.gz"
    assert select_cli(inp, scores, out, "--interval", "information=0.1:0.9", "-q") == 0
    manifest = check_selection(inp, scores, out, 2000)
    v = read_scores(scores).column("information").to_numpy()
    lo, hi = np.quantile(v, [0.1, 0.9])
    expected = (v >= lo) & (v <= hi)
    dec = pq.read_table(out.with_name(out.name + ".decisions.parquet"))
    np.testing.assert_array_equal(np.array(dec.column("kept").to_pylist()), expected)
    interval = manifest["selection"]["intervals"]["information"]
    assert interval == {"q_lo": 0.1, "q_hi": 0.9, "lo": lo, "hi": hi}
    assert manifest["selection"]["budget"] is None


def test_select_interval_absolute(scored, tmp_path):
    inp, scores = scored
    out = tmp_path / "abs.jsonl.gz"
    assert (
        select_cli(inp, scores, out, "--absolute", "--interval", " information = 1.5 : 2.5 ", "-q")
        == 0
    )
    v = read_scores(scores).column("information").to_numpy()
    expected = (v >= 1.5) & (v <= 2.5)
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["selection"]["counts"]["kept"] == int(expected.sum())
    assert manifest["selection"]["absolute"] is True
    kept_ids = [i for b in RecordReader(out) for i in b.ids]
    all_ids = read_scores(scores).column("id").to_pylist()
    assert kept_ids == [i for i, k in zip(all_ids, expected, strict=True) if k]


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        ("information", "is not SIGNAL=LO:HI"),
        ("information=0.1", "is not SIGNAL=LO:HI"),
        ("information=0.1-0.9", "is not SIGNAL=LO:HI"),
        ("information=a:b", "is not SIGNAL=LO:HI"),
        ("information=0.1:0.9:1", "is not SIGNAL=LO:HI"),
        ("information=:0.9", "is not SIGNAL=LO:HI"),
        ("information=0.9:0.1", "lo > hi"),
        ("information=0.1:1.5", "quantiles"),
        ("perplexity=0.1:0.9", "unknown signal"),
        ("generative=0.1:0.9", "no 'generative' column"),
        ("=0.1:0.9", "unknown signal"),
    ],
)
def test_select_interval_errors(scored, tmp_path, capsys, interval, message):
    inp, scores = scored
    out = tmp_path / "bad.jsonl.gz"
    assert select_cli(inp, scores, out, "--interval", interval) == 2
    err = capsys.readouterr().err
    assert err.startswith("euds select: error:"), err
    assert message in err
    assert list(tmp_path.iterdir()) == []  # no output, manifest or temporary file


def test_select_needs_budget_or_interval(scored, tmp_path, capsys):
    inp, scores = scored
    with pytest.raises(SystemExit) as exc:
        select_cli(inp, scores, tmp_path / "o.jsonl")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        select_cli(
            inp, scores, tmp_path / "o.jsonl", "--budget", "0.1", "--interval", "information=0:1"
        )
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
    assert select_cli(inp, scores, tmp_path / "o.jsonl", "--budget", "1.5") == 2
    assert "budget must be a share" in capsys.readouterr().err


def test_select_scores_of_another_file(scored, sst2_files, tmp_path, capsys):
    inp, scores = scored
    out = tmp_path / "o.jsonl"
    # Another size: refused before any work.
    assert select_cli(sst2_files["jsonl"], scores, out, "--budget", "0.1") == 2
    err = capsys.readouterr().err
    assert "another file" in err and "bytes" in err
    assert not out.exists()
    # The same size, other bytes: the input is hashed as it is copied (read once), and the
    # output never takes its name.
    twin = tmp_path / inp.name
    data = bytearray(inp.read_bytes())
    data[4] ^= 1  # the gzip header's mtime: the same records, other bytes
    twin.write_bytes(bytes(data))
    out2 = tmp_path / "o2.jsonl.gz"
    assert select_cli(twin, scores, out2, "--budget", "0.1") == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "another file" in err
    assert not out2.exists() and not list(tmp_path.glob(".o2*"))


def test_select_scores_not_a_score_directory(scored, tmp_path, capsys):
    inp, scores = scored
    out = tmp_path / "o.jsonl.gz"
    # a folder without a manifest
    empty = tmp_path / "empty"
    empty.mkdir()
    assert select_cli(inp, empty, out, "--budget", "0.5") == 2
    err = capsys.readouterr().err
    assert err.startswith("euds select: error:") and "not a score directory" in err
    # a damaged manifest
    damaged = tmp_path / "damaged"
    shutil.copytree(scores, damaged)
    (damaged / "_manifest.json").write_text("{not json")
    assert select_cli(inp, damaged, out, "--budget", "0.5") == 2
    assert "is damaged" in capsys.readouterr().err
    # a score table (single Parquet file) of another length than the input
    fake = tmp_path / "fake.parquet"
    pq.write_table(pa.table({"id": ["a"], "information": [1.0]}), fake)
    assert select_cli(inp, fake, out, "--budget", "0.5") == 2
    err = capsys.readouterr().err
    assert "does not hold the scores of" in err and "its records differ" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "empty", "fake.parquet"]


def test_select_incomplete_scores(scored, tmp_path, capsys):
    inp, scores = scored
    partial = tmp_path / "partial"
    shutil.copytree(scores, partial)
    manifest = json.loads((partial / "_manifest.json").read_text())
    manifest["status"] = "scoring"
    (partial / "_manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "o.jsonl.gz"
    assert select_cli(inp, partial, out, "--budget", "0.5") == 2
    err = capsys.readouterr().err
    assert err.startswith("euds select: error:") and "is not complete" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial"]
    # completing it (what `euds score` does at the end) makes it usable
    manifest["status"] = "complete"
    (partial / "_manifest.json").write_text(json.dumps(manifest))
    assert select_cli(inp, partial, out, "--budget", "0.5", "-q") == 0
    check_selection(inp, partial, out, 2000)


def test_select_from_a_score_file(scored, tmp_path):
    """A single score Parquet file (the table of a score directory) is accepted too; its
    sha256 goes to the manifest."""
    inp, scores = scored
    single = tmp_path / "scores.parquet"
    pq.write_table(read_scores(scores), single)
    out, ref = tmp_path / "file.jsonl.gz", tmp_path / "dir.jsonl.gz"
    assert select_cli(inp, single, out, "--budget", "0.16", "-q") == 0
    assert select_cli(inp, scores, ref, "--budget", "0.16", "-q") == 0
    manifest = check_selection(inp, single, out, 2000)
    assert manifest["scores"]["config"] == {}
    assert out.read_bytes() == ref.read_bytes()


def test_select_nonfinite_scores(scored, tmp_path, capsys):
    inp, scores = scored
    # a copy of the score directory with two infinite scores in its shard
    bad = tmp_path / "inf"
    shutil.copytree(scores, bad)
    part = bad / "part-00000.parquet"
    table = pq.read_table(part)
    v = table.column("information").to_numpy().copy()
    v[[5, 9]] = [np.inf, -np.inf]
    table = table.set_column(1, "information", pa.array(v))
    pq.write_table(table, part)
    manifest = json.loads((bad / "_manifest.json").read_text())
    manifest["shards"][0]["files"][part.name] = part.stat().st_size
    manifest["shards"][0]["sha256"][part.name] = sha256_file(part)
    (bad / "_manifest.json").write_text(json.dumps(manifest))
    assert ScoreDir(bad).damage() is None
    out = tmp_path / "o.jsonl.gz"
    assert select_cli(inp, bad, out, "--budget", "0.5") == 2
    err = capsys.readouterr().err
    ids = table.column("id").to_pylist()
    assert repr(ids[5]) in err and "on_nonfinite" in err
    assert select_cli(inp, bad, out, "--budget", "0.5", "--on-nonfinite", "drop", "-q") == 0
    manifest = check_selection(inp, bad, out, 2000)
    assert manifest["selection"]["counts"]["dropped_by_reason"]["nonfinite"] == 2
    dec = pq.read_table(out.with_name(out.name + ".decisions.parquet")).to_pylist()
    assert dec[5]["reason"] == dec[9]["reason"] == "nonfinite"


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "tsv", "parquet", "jsonl"])
def test_select_keeps_the_input_format(sst2_files, sst2_records, tmp_path, fmt):
    inp = sst2_files[fmt]
    scores = tmp_path / "s"
    out = tmp_path / f"out.{fmt}"
    assert score_cli(inp, scores) == 0
    assert ScoreDir(scores).manifest()["input"]["sha256"] == sha256(inp)
    assert select_cli(inp, scores, out, "--budget", "0.25", "-q") == 0
    manifest = check_selection(inp, scores, out, len(sst2_records))
    assert manifest["output"]["records"] == 50
    if fmt == "parquet":
        assert pq.read_schema(out).equals(pq.read_schema(inp))


def test_select_uses_the_scored_format(sst2_files, sst2_records, tmp_path):
    inp = tmp_path / "records.txt"
    inp.write_bytes(sst2_files["jsonl"].read_bytes())
    scores = tmp_path / "s"
    assert score_cli(inp, scores, "--format", "jsonl") == 0
    assert ScoreDir(scores).manifest()["config"]["format"] == "jsonl"
    out = tmp_path / "kept.txt"
    assert select_cli(inp, scores, out, "--budget", "0.5", "-q") == 0
    assert len(lines_of(out)) == 100
    kept = [json.loads(line)["id"] for line in lines_of(out)]
    assert set(kept) <= {r["id"] for r in sst2_records}


def test_select_text_and_id_fields(tmp_path):
    inp = tmp_path / "custom.jsonl"
    records = [
        {"key": 1000 + i, "sentence": f"sentence number {i} " * (1 + i % 5)} for i in range(60)
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    scores = tmp_path / "s"
    assert score_cli(inp, scores, "--text-field", "sentence", "--id-field", "key") == 0
    assert read_scores(scores).column("id").to_pylist() == [str(r["key"]) for r in records]
    out = tmp_path / "o.jsonl"
    assert select_cli(inp, scores, out, "--budget", "0.5", "-q") == 0
    check_selection(inp, scores, out, 60, text_field="sentence", id_field="key")


@pytest.mark.parametrize(("src", "name"), [("jsonl", "out.jsonl.gz"), ("jsonl.gz", "out.jsonl")])
def test_select_output_compression_follows_its_name(sst2_files, tmp_path, src, name):
    inp = sst2_files[src]
    scores = tmp_path / "s"
    assert score_cli(inp, scores) == 0
    out = tmp_path / name
    assert select_cli(inp, scores, out, "--budget", "0.5", "-q") == 0
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    reader = RecordReader(out)
    assert sum(len(b) for b in reader) == 100
    assert reader.stats.flags == {}


# -- info and the entry point ------------------------------------------------------------------


def test_info_in_process(capsys):
    assert run("info") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cuda_compiled"] is True
    assert {"version", "simd", "threads", "cuda_devices"} <= set(info)


def test_entry_point_subprocess(child_python, scored, tmp_path):
    exe = Path(child_python).with_name("euds")
    if not exe.is_file():
        pytest.skip("the euds entry point is not installed next to this python")
    env = dict(os.environ)
    info = subprocess.run([exe, "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    parsed = json.loads(info.stdout)
    assert parsed["cuda_compiled"] is True
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("euds ")
    inp, scores = scored
    out = tmp_path / "sub.jsonl.gz"
    proc = subprocess.run(
        [
            exe,
            "select",
            inp,
            "--scores",
            scores,
            "-o",
            out,
            "--budget",
            "0.16",
            "--signals",
            "information",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept 320 of 2000" in proc.stderr
    manifest = check_selection(inp, scores, out, 2000)
    assert manifest["command"][:2] == ["euds", "select"]
    bad = subprocess.run(
        [exe, "select", inp, "--scores", scores, "-o", out, "--interval", "information=x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "SIGNAL=LO:HI" in bad.stderr


# -- the whole SST-2 training set --------------------------------------------------------------


def test_full_sst2_train(data_dir, tmp_path):
    inp = data_dir / "sst2" / "train.jsonl.gz"
    scores, out = tmp_path / "train", tmp_path / "train16.jsonl.gz"
    assert score_cli(inp, scores) == 0
    assert read_scores(scores).num_rows == 67_349
    check_scores_manifest(scores, inp, 67_349)
    assert select_cli(inp, scores, out, "--budget", "0.16", "-q") == 0
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    assert counts["input"] == 67_349
    assert counts["kept"] + counts["dropped"] == 67_349
    assert abs(counts["kept"] / 67_349 - 0.16) <= 0.001
    assert len(lines_of(out)) == counts["kept"] == manifest["output"]["records"]
    assert manifest["output"]["sha256"] == sha256(out)


# -- outputs euds must not replace, and errors as one line ---------------------------------------


def test_select_never_replaces_the_input_or_a_file_it_did_not_write(sst2_files, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    shutil.copy(sst2_files["jsonl"], inp)
    original = inp.read_bytes()
    scores = tmp_path / "s"
    assert score_cli(inp, scores) == 0
    # onto the input itself: refused, with or without --overwrite
    for extra in ((), ("--overwrite",)):
        assert select_cli(inp, scores, inp, "--budget", "0.1", "-q", *extra) == 2
        assert "which this command reads" in capsys.readouterr().err
        assert inp.read_bytes() == original
    # onto a file of the user's: refused unless --overwrite
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_bytes(b"the user's own file\n")
    assert select_cli(inp, scores, theirs, "--budget", "0.1", "-q") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert theirs.read_bytes() == b"the user's own file\n"
    assert select_cli(inp, scores, theirs, "--budget", "0.1", "-q", "--overwrite") == 0
    assert len(lines_of(theirs)) == 20
    # the same command again replaces a selection euds wrote (its manifest proves it)
    assert select_cli(inp, scores, theirs, "--budget", "0.2", "-q") == 0
    assert len(lines_of(theirs)) == 40
    # ... but not once the user has edited it
    theirs.write_bytes(theirs.read_bytes() + b"an edit\n")
    assert select_cli(inp, scores, theirs, "--budget", "0.2", "-q") == 2
    capsys.readouterr()


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_select_out_of_range_seed_is_one_clear_line(scored, tmp_path, capsys, seed):
    inp, scores = scored
    code = select_cli(inp, scores, tmp_path / "o.jsonl.gz", "--budget", "0.5", "--seed", seed)
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("euds select: error: seed must be") and "Traceback" not in err
    )


def test_an_internal_error_is_one_line_unless_debug(sst2_files, tmp_path, capsys, monkeypatch):
    from euds.engines import driver

    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nspanning lines")

    monkeypatch.setattr(driver, "score", broken)
    args = ("score", sst2_files["jsonl"], "-o", tmp_path / "s", *INFO, "-q")
    assert run(*args) == 1
    err = capsys.readouterr().err
    assert err == (
        "euds score: internal error: RuntimeError: a bug spanning lines (run again with --debug "
        "for the traceback, and please report it)\n"
    )
    assert run(*args, "--debug") == 1
    assert "Traceback" in capsys.readouterr().err


def test_threads_out_of_range_is_one_clear_line(sst2_files, tmp_path, capsys):
    for threads in ("-3", "100000"):
        assert score_cli(sst2_files["jsonl"], tmp_path / "s", "--threads", threads) == 2
        err = capsys.readouterr().err
        assert "threads" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_tune_prints_the_chosen_band(sst2_files, data_dir, tiny_lm, embedder, tmp_path, capsys):
    pytest.importorskip("sklearn")
    pool, scores = sst2_files["jsonl"], tmp_path / "s"
    args = ("--model", str(tiny_lm.folder), "--embedder", str(embedder.folder), "--k", "4")
    assert run("score", pool, "-o", scores, *args, "-q") == 0
    dev = tmp_path / "dev.jsonl"
    with gzip.open(data_dir / "sst2" / "dev.jsonl.gz", "rb") as f:
        dev.write_bytes(b"".join(f.readline() for _ in range(60)))
    capsys.readouterr()
    assert run("tune", "--scores", scores, "--pool", pool, "--dev", dev, "--budget", "0.3") == 0
    choice = json.loads(capsys.readouterr().out)
    assert choice["budget"] == 0.3 and 0.0 <= choice["dev_accuracy"] <= 1.0
    assert choice["position"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    # A pool of as many records that is not the scored file: refused, not a count check.
    other = tmp_path / "other.jsonl"
    other.write_bytes(pool.read_bytes().replace(b"the", b"teh", 1))
    assert run("tune", "--scores", scores, "--pool", other, "--dev", dev, "--budget", "0.3") == 2
    assert "is not the input" in capsys.readouterr().err


def test_experiment_config_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name="x"\ntrain="t"\neval="e"\noutput="o"\nbudgets=[2]\n')
    assert run("experiment", bad, "--no-finetune") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budgets" in err[0]
    assert run("experiment", tmp_path / "missing.toml") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.toml" in err[0]


def test_experiment_threads_reach_the_fine_tunes(monkeypatch):
    """--threads is the fine-tunes' thread count, a part of their cache key (as
    experiments/confirm_clean.py sets it), so a render with the same --threads finds them."""
    import euds.research.experiment as experiment

    seen = []
    monkeypatch.setattr(
        experiment, "run_experiments", lambda configs, **_: seen.extend(configs) or []
    )
    config = Path(__file__).resolve().parents[1] / "experiments" / "trec.toml"
    assert run("experiment", config, "--threads", "1") == 0
    assert seen[0].finetune["threads"] == 1
    seen.clear()
    assert run("experiment", config) == 0
    assert "threads" not in seen[0].finetune


# -- your own models ----------------------------------------------------------------------------


def test_models_prepare_a_users_folders_prints_their_cache_entries(
    tmp_path, monkeypatch, capsys, training_texts
):
    from model_factories import make_family_lm, make_tiny_sentence_encoder

    monkeypatch.setenv("EUDS_CACHE", str(tmp_path / "cache"))
    lm = make_family_lm("gpt2", tmp_path / "gpt2", training_texts, seed=7)
    st = make_tiny_sentence_encoder(tmp_path / "st", training_texts)
    assert run("models", "prepare", str(lm), str(st)) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name.split("-")[0] for p in printed] == ["lm", "embedder"]
    assert all(Path(p).parent == tmp_path / "cache" / "models" for p in printed)


def test_a_wrong_model_folder_is_one_line_and_exit_2(tmp_path, capsys, sst2_files):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run("score", str(sst2_files["jsonl"]), "-o", str(tmp_path / "s"), "--model", str(empty))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"--model {empty} is not a causal LM folder: it has no config.json" in err
    assert not (tmp_path / "s").exists()
    code = run("models", "prepare", str(tmp_path / "nothing"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no such file or folder" in err and "\n" not in err
