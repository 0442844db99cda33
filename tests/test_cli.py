"""The ``euds`` command line, in-process through ``euds.cli.main`` and once through the
installed entry point: score, select (budget, intervals), manifests, decisions, errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from euds.cli import main
from euds.io import RecordReader

SCORE_COLUMNS = ["id", "information", "n_tokens", "truncated", "flags"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lines_of(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.splitlines(keepends=True)


def run(*args: str | os.PathLike[str]) -> int:
    return main([str(a) for a in args])


def select_cli(inp, scores, out, *args: str | os.PathLike[str]) -> int:
    """``euds select INP --scores SCORES -o OUT ARGS...`` in-process."""
    return run("select", inp, "--scores", scores, "-o", out, *args)


def sample_entropy(ids: np.ndarray) -> float:
    if len(ids) == 0:
        return float("nan")
    _, c = np.unique(ids, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def scored(sst2_train_2000, tmp_path_factory):
    """(input, score table) of the 2,000-record SST-2 slice, scored once."""
    scores = tmp_path_factory.mktemp("cli_scores") / "X.parquet"
    assert run("score", sst2_train_2000, "-o", scores, "--signals", "information", "-q") == 0
    return sst2_train_2000, scores


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
    assert manifest["scores"]["sha256"] == sha256(scores)
    assert manifest["output"]["sha256"] == sha256(out)
    assert manifest["decisions"]["sha256"] == sha256(decisions_path)
    assert Path(manifest["output"]["path"]) == out
    # decisions: one row per input record, aligned with the score table
    decisions = pq.read_table(decisions_path)
    assert decisions.column_names == ["id", "kept", "reason"]
    assert decisions.num_rows == n_input
    assert decisions.column("id").to_pylist() == pq.read_table(scores).column("id").to_pylist()
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
    table = pq.read_table(scores)
    assert table.column_names == SCORE_COLUMNS
    assert table.num_rows == 2000
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
    meta = json.loads(pq.read_metadata(scores).metadata[b"euds"])
    assert meta["input"]["sha256"] == sha256(inp)
    assert meta["input"]["records"] == 2000
    assert meta["config"]["signals"] == ["information"]
    assert meta["tokenizer"]["sha256"] == sha256(tokenizer.path)


def test_score_information_mode_corpus(sst2_train_2000, tmp_path, tokenizer):
    scores = tmp_path / "corpus.parquet"
    args = ["score", sst2_train_2000, "-o", scores, "--information-mode", "corpus", "-q"]
    assert run(*args, "--batch-size", "300") == 0
    texts = [json.loads(line)["text"] for line in lines_of(sst2_train_2000)]
    batch = tokenizer.encode(texts)
    counts = np.bincount(batch.ids, minlength=tokenizer.vocab_size).astype(float)
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.zeros_like(counts))
    expected = np.array([-logp[batch.row(i)].mean() for i in range(len(texts))])
    got = pq.read_table(scores).column("information").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    meta = json.loads(pq.read_metadata(scores).metadata[b"euds"])
    assert meta["information_counts_total"] == int(batch.n_tokens.sum())
    assert meta["config"]["information_mode"] == "corpus"
    # the same scores whatever the batch size (two passes over a spill)
    again = tmp_path / "corpus2.parquet"
    assert run(*args[:3], again, *args[4:], "--batch-size", "4096") == 0
    np.testing.assert_array_equal(pq.read_table(again).column("information").to_numpy(), got)
    # and the selection on them works
    out = tmp_path / "corpus_out.jsonl.gz"
    assert select_cli(sst2_train_2000, scores, out, "--budget", "0.2", "-q") == 0
    assert check_selection(sst2_train_2000, scores, out, 2000)["output"]["records"] == 400


def test_score_max_tokens_and_batch_size(sst2_train_2000, tmp_path, scored):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert run("score", sst2_train_2000, "-o", a, "--max-tokens", "8", "-q") == 0
    assert run("score", sst2_train_2000, "-o", b, "--batch-size", "7", "-q") == 0
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("n_tokens").to_numpy().max() == 7
    assert any(ta.column("truncated").to_pylist())
    ref = pq.read_table(scored[1])
    assert tb.equals(ref)  # batch size does not change any score


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--signals", "perplexity"], "signals must be"),
        (["--signals", ""], "signals must be"),
        (["--max-tokens", "1"], "max_tokens"),
        (["--batch-size", "0"], "batch_size"),
        (["--tokenizer", "/no/such/tokenizer.json"], "tokenizer file not found"),
    ],
)
def test_score_argument_errors(sst2_train_2000, tmp_path, capsys, args, message):
    out = tmp_path / "s.parquet"
    assert run("score", sst2_train_2000, "-o", out, "-q", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("euds score: error:") and message in err
    assert not out.exists()


def test_score_missing_input(tmp_path, capsys):
    assert run("score", tmp_path / "nope.jsonl", "-o", tmp_path / "s.parquet") == 2
    assert "input file not found" in capsys.readouterr().err


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
    v = pq.read_table(scores).column("information").to_numpy()
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


def test_select_interval_quantiles(scored, tmp_path):
    inp, scores = scored
    out = tmp_path / "interval.jsonl.gz"
    assert select_cli(inp, scores, out, "--interval", "information=0.1:0.9", "-q") == 0
    manifest = check_selection(inp, scores, out, 2000)
    v = pq.read_table(scores).column("information").to_numpy()
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
    v = pq.read_table(scores).column("information").to_numpy()
    expected = (v >= 1.5) & (v <= 2.5)
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["selection"]["counts"]["kept"] == int(expected.sum())
    assert manifest["selection"]["absolute"] is True
    kept_ids = [i for b in RecordReader(out) for i in b.ids]
    all_ids = pq.read_table(scores).column("id").to_pylist()
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
    _, scores = scored
    out = tmp_path / "o.jsonl"
    assert select_cli(sst2_files["jsonl"], scores, out, "--budget", "0.1") == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "another file" in err
    assert not out.exists()


def test_select_scores_not_a_score_table(scored, tmp_path, capsys):
    inp, _ = scored
    fake = tmp_path / "fake.parquet"
    pq.write_table(pa.table({"id": ["a"], "information": [1.0]}), fake)
    assert select_cli(inp, fake, tmp_path / "o.jsonl.gz", "--budget", "0.5") == 2
    assert "not an euds score table" in capsys.readouterr().err


def test_select_nonfinite_scores(scored, tmp_path, capsys):
    inp, scores = scored
    table = pq.read_table(scores)
    v = table.column("information").to_numpy().copy()
    v[[5, 9]] = [np.inf, -np.inf]
    bad = tmp_path / "inf.parquet"
    table = table.set_column(1, "information", pa.array(v))
    meta = {b"euds": pq.read_metadata(scores).metadata[b"euds"]}
    pq.write_table(table.replace_schema_metadata(meta), bad)
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
    scores = tmp_path / "s.parquet"
    out = tmp_path / f"out.{fmt}"
    assert run("score", inp, "-o", scores, "-q") == 0
    assert select_cli(inp, scores, out, "--budget", "0.25", "-q") == 0
    manifest = check_selection(inp, scores, out, len(sst2_records))
    assert manifest["output"]["records"] == 50
    if fmt == "parquet":
        assert pq.read_schema(out).equals(pq.read_schema(inp))


def test_select_uses_the_scored_format(sst2_files, sst2_records, tmp_path):
    inp = tmp_path / "records.txt"
    inp.write_bytes(sst2_files["jsonl"].read_bytes())
    scores = tmp_path / "s.parquet"
    assert run("score", inp, "-o", scores, "--format", "jsonl", "-q") == 0
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
    scores = tmp_path / "s.parquet"
    assert (
        run("score", inp, "-o", scores, "--text-field", "sentence", "--id-field", "key", "-q") == 0
    )
    assert pq.read_table(scores).column("id").to_pylist() == [str(r["key"]) for r in records]
    out = tmp_path / "o.jsonl"
    assert select_cli(inp, scores, out, "--budget", "0.5", "-q") == 0
    check_selection(inp, scores, out, 60, text_field="sentence", id_field="key")


@pytest.mark.parametrize(("src", "name"), [("jsonl", "out.jsonl.gz"), ("jsonl.gz", "out.jsonl")])
def test_select_output_compression_follows_its_name(sst2_files, tmp_path, src, name):
    inp = sst2_files[src]
    scores = tmp_path / "s.parquet"
    assert run("score", inp, "-o", scores, "-q") == 0
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


def test_entry_point_subprocess(scored, tmp_path):
    exe = Path(sys.executable).with_name("euds")
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
        [exe, "select", inp, "--scores", scores, "-o", out, "--budget", "0.16"],
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
    scores, out = tmp_path / "train.parquet", tmp_path / "train16.jsonl.gz"
    assert run("score", inp, "-o", scores, "-q") == 0
    assert pq.read_table(scores).num_rows == 67_349
    assert select_cli(inp, scores, out, "--budget", "0.16", "-q") == 0
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    assert counts["input"] == 67_349
    assert counts["kept"] + counts["dropped"] == 67_349
    assert abs(counts["kept"] / 67_349 - 0.16) <= 0.001
    assert len(lines_of(out)) == counts["kept"] == manifest["output"]["records"]
    assert manifest["output"]["sha256"] == sha256(out)
