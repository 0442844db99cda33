"""The one-pass scoring run: score directory, resume after SIGKILL, determinism, memory, faults."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import same_table, small_config
from euds import ScoreConfig, score
from euds.scores import ScoreDir, read_scores

pytest.importorskip("torch")

BAD_LINES = [
    b'{"id": "bad-empty", "text": ""}\n',
    b'{"id": "bad-space", "text": "   \\n "}\n',
    b"this is not json\n",
    b'{"id": "bad-number", "text": 42}\n',
    b'{"id": "sst2-train-1", "text": "a duplicate id with its own text"}\n',
    b'{"id": "bad-utf8", "text": "caf\xe9 au lait"}\n',
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir) -> Path:
    """600 SST-2 lines with bad records mixed in (JSONL)."""
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        lines = list(itertools.islice(f, 600))
    for k, bad in enumerate(BAD_LINES):
        lines.insert(50 + 90 * k, bad)
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def test_all_signals_in_one_pass(tmp_path, corpus, tiny_lm, embedder):
    out = tmp_path / "scores"
    summary = score(corpus, out, small_config(tiny_lm, embedder), progress=False)
    n_lines = len(corpus.read_bytes().splitlines())
    table = read_scores(out)
    assert summary.records == table.num_rows == n_lines
    assert table.column_names == [
        "id",
        "information",
        "generative",
        "nll",
        "bpb",
        "semantic",
        "n_tokens",
        "truncated",
        "flags",
        "text_hash",
        "near_keys",
    ]
    sd = ScoreDir(out)
    manifest = sd.manifest()
    assert manifest["status"] == "complete" and manifest["input"]["sha256"]
    assert sum(s["rows"] for s in manifest["shards"]) == n_lines
    assert all(s["rows"] == 128 for s in manifest["shards"][:-1])
    assert manifest["semantic"]["k"] == 4 and (out / "centroids.npy").is_file()
    emb = np.concatenate([np.asarray(sd.embeddings(s)) for s in sd.shards()])
    assert emb.dtype == np.float16 and emb.shape == (n_lines, 384)

    flags = dict(
        zip(table.column("id").to_pylist(), table.column("flags").to_pylist(), strict=True)
    )
    assert flags["bad-empty"] == "empty_text" and flags["bad-space"] == "empty_text"
    assert flags["bad-number"] == "non_string_text" and flags["bad-utf8"] == "invalid_utf8"
    assert "invalid_json" in table.column("flags").to_pylist()
    assert (
        "duplicate_id" in flags["sst2-train-1"]
        or table.column("id").to_pylist().count("sst2-train-1") == 2
    )
    unscorable = np.array(
        [f != "" and f != "duplicate_id" for f in table.column("flags").to_pylist()]
    )
    for name in ("information", "generative", "nll", "semantic"):
        col = np.asarray(table.column(name), dtype=float)
        assert np.array_equal(np.isnan(col), unscorable), name
    se = np.asarray(table.column("semantic"))
    assert 0 <= np.nanmin(se) and np.nanmax(se) <= np.log(4) + 1e-6 and np.nanstd(se) > 0


def test_complete_directory_is_reused_and_other_configs_refused(
    tmp_path, corpus, tiny_lm, embedder
):
    out = tmp_path / "scores"
    config = small_config(tiny_lm, embedder, signals=("information", "semantic"))
    score(corpus, out, config, progress=False)
    stamp = (out / "part-00000.parquet").stat().st_mtime_ns
    again = score(
        corpus,
        out,
        small_config(tiny_lm, embedder, signals=("information", "semantic")),
        progress=False,
    )
    assert again.reused and (out / "part-00000.parquet").stat().st_mtime_ns == stamp
    # a touched (or copied again) input with the same bytes is the same input
    os.utime(corpus, ns=(time.time_ns(), time.time_ns() + 10**9))
    config = small_config(tiny_lm, embedder, signals=("information", "semantic"))
    assert score(corpus, out, config, progress=False).reused
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(corpus.read_bytes().replace(b"a", b"e", 1))
    moved = out.parent / "moved"
    out.rename(moved)
    manifest = ScoreDir(moved).manifest()
    manifest["input"]["path"] = str(changed.resolve())  # same path and size, other bytes
    ScoreDir(moved).write_manifest(manifest)
    with pytest.raises(ValueError, match="another input or configuration"):
        score(changed, moved, config, progress=False)
    moved.rename(out)
    with pytest.raises(ValueError, match="another input or configuration"):
        score(corpus, out, small_config(tiny_lm, embedder, signals=("information",)))
    redone = score(
        corpus,
        out,
        small_config(tiny_lm, embedder, signals=("information",)),
        overwrite=True,
        progress=False,
    )
    assert not redone.reused and "semantic" not in ScoreDir(out).manifest()["config"]["signals"]


def test_new_clustering_parameters_recluster_without_re_embedding(
    tmp_path, corpus, tiny_lm, embedder
):
    out = tmp_path / "scores"
    signals = ("information", "semantic")
    score(corpus, out, small_config(tiny_lm, embedder, signals=signals), progress=False)
    embeddings = sorted(out.glob("emb-*.npy"))
    stamps = [p.stat().st_mtime_ns for p in embeddings]
    first = read_scores(out).column("semantic").to_numpy()
    changed = small_config(tiny_lm, embedder, signals=signals, k=5, temperature=0.2)
    again = score(corpus, out, changed, progress=False)
    assert again.scored_now == 0 and "cluster" in again.stage_seconds
    assert [p.stat().st_mtime_ns for p in embeddings] == stamps  # nothing re-embedded
    assert ScoreDir(out).manifest()["semantic"]["k"] == 5
    second = read_scores(out)
    assert not np.allclose(second.column("semantic").to_numpy(), first, equal_nan=True)
    fresh = score(corpus, tmp_path / "fresh", changed, progress=False)
    assert same_table(second, read_scores(fresh.output))


def test_same_input_and_config_give_identical_scores(tmp_path, corpus, tiny_lm, embedder):
    a = read_scores(
        score(corpus, tmp_path / "a", small_config(tiny_lm, embedder), progress=False).output
    )
    b = read_scores(
        score(corpus, tmp_path / "b", small_config(tiny_lm, embedder), progress=False).output
    )
    assert same_table(a, b)


def _cli(python: str, args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [python, "-m", "euds.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_resume_after_sigkill_gives_identical_scores(
    child_python, tmp_path, data_dir, tiny_lm, embedder
):
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        data = b"".join(itertools.islice(f, 3000))
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    common = [
        "score",
        str(src),
        "--model",
        str(tiny_lm.folder),
        "--embedder",
        str(embedder.folder),
        "--batch-size",
        "64",
        "--shard-size",
        "256",
        "--k",
        "4",
        "-q",
    ]
    reference = tmp_path / "reference"
    ref = _cli(child_python, [*common, "-o", str(reference)])
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()

    killed = tmp_path / "killed"
    proc = _cli(child_python, [*common, "-o", str(killed)])
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if len(json.loads((killed / "_manifest.json").read_text())["shards"]) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((killed / "_manifest.json").read_text())
    assert manifest["status"] != "complete" and 3 <= len(manifest["shards"]) < 12

    resumed = _cli(child_python, [*common, "-o", str(killed)])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()
    assert same_table(read_scores(killed), read_scores(reference))
    assert np.array_equal(np.load(killed / "centroids.npy"), np.load(reference / "centroids.npy"))


def test_resume_ignores_unlisted_and_damaged_shards(tmp_path, corpus, tiny_lm, embedder):
    out = tmp_path / "scores"
    config = small_config(tiny_lm, embedder, signals=("information", "generative"))
    reference = read_scores(score(corpus, tmp_path / "ref", config, progress=False).output)
    score(corpus, out, config, progress=False)
    sd = ScoreDir(out)
    manifest = sd.manifest()
    # As if killed while writing shard 2: listed shards 0-1, a half-written part 2, a temp file.
    manifest["status"] = "scoring"
    manifest["pass_complete"] = False
    manifest["shards"] = manifest["shards"][:2]
    sd.write_manifest(manifest)
    (out / "part-00002.parquet").write_bytes(b"PAR1 half")
    # A temporary file of a run recorded in the manifest is euds's own; one without a recorded
    # run token might be anybody's, and is left alone.
    token = manifest["run_tokens"][-1]
    (out / f".part-00003.parquet.{token}.x1.tmp").write_bytes(b"junk")
    (out / ".part-00003.parquet.x.tmp").write_bytes(b"not provably ours")
    summary = score(corpus, out, config, progress=False)
    assert summary.resumed_from == 256
    assert same_table(read_scores(out), reference)
    assert [p.name for p in out.glob(".*.tmp")] == [".part-00003.parquet.x.tmp"]


def test_unwritable_output_is_a_clear_error(child_python, corpus, tiny_lm, embedder):
    proc = _cli(
        child_python,
        ["score", str(corpus), "-o", "/proc/euds-scores", "--signals", "information", "-q"],
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"error" in err and b"/proc/euds-scores" in err


def test_disk_full_leaves_only_complete_shards(child_python, tmp_path, corpus, tiny_lm, embedder):
    """A file-size limit (EFBIG, as a full disk gives ENOSPC) hits while shards are written."""
    out = tmp_path / "scores"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        # Above a part's size (16 rows, about 5.6 kB with near_keys), below the manifest's
        # once it lists about 36 shards.
        "resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))\n"
        "from euds.cli import main\n"
        f"sys.exit(main(['score', {str(corpus)!r}, '-o', {str(out)!r}, '--signals', 'information',"
        " '--batch-size', '16', '--shard-size', '16', '-q']))\n"
    )
    proc = subprocess.run([child_python, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == 2, proc.stderr.decode()
    assert b"File too large" in proc.stderr or b"No space" in proc.stderr
    sd = ScoreDir(out)
    assert not list(out.glob(".*.tmp"))  # no half-written file under any name
    listed = {name for s in sd.shards() for name in s.files}
    assert listed <= {p.name for p in out.glob("part-*")}
    assert sd.damage() is None and sd.shards()
    import pyarrow.parquet as pq

    for part in out.glob("part-*"):  # written whole, even the one the manifest could not list
        assert pq.read_table(part).num_rows == 16


def _peak_rss_kib(python: str, args: list[str]) -> int:
    script = (
        "import resource, sys\n"
        "from euds.cli import main\n"
        f"code = main({args!r})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([python, "-c", script], capture_output=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr.decode()
    return int(proc.stdout.decode().split()[-1])


def test_peak_memory_does_not_grow_with_the_corpus(child_python, tmp_path, data_dir, tiny_lm):
    """information + generative on 10k vs 100k records (SST-2 repeated with new ids)."""
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in itertools.islice(f, 10_000)]

    def write(n: int) -> Path:
        path = tmp_path / f"in{n}.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                r = records[i % len(records)]
                f.write(json.dumps({"id": f"r{i}", "text": r["text"]}) + "\n")
        return path

    peaks = {}
    for n in (10_000, 100_000):
        peaks[n] = _peak_rss_kib(
            child_python,
            [
                "score",
                str(write(n)),
                "-o",
                str(tmp_path / f"s{n}"),
                "--signals",
                "information,generative",
                "--model",
                str(tiny_lm.folder),
                "-q",
            ],
        )
    assert peaks[100_000] / peaks[10_000] <= 1.2, peaks


def test_corpus_mode_information_is_a_late_column(tmp_path, corpus, tiny_lm, embedder):
    from euds import _core
    from euds.tokenizer import TextTokenizer

    out = tmp_path / "scores"
    config = small_config(tiny_lm, embedder, signals=("information",), information_mode="corpus")
    score(corpus, out, config, progress=False)
    table = read_scores(out)
    got = np.asarray(table.column("information"), dtype=float)
    # Reference: count the whole pool, then score, in one go.
    from euds.io import RecordReader

    texts = [t for b in RecordReader(corpus, batch_size=10_000) for t in b.texts]
    tokens = TextTokenizer().encode(texts)
    counts = _core.UnigramCounts()
    counts.add(tokens.offsets, tokens.ids)
    expected = counts.self_information(tokens.offsets, tokens.ids)
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_bad_configs_are_value_errors(tmp_path, corpus):
    with pytest.raises(ValueError, match="multiple of batch_size"):
        score(corpus, tmp_path / "x", ScoreConfig(batch_size=100, shard_size=150))
    with pytest.raises(ValueError, match="signals"):
        score(corpus, tmp_path / "x", ScoreConfig(signals=("information", "bogus")))
    with pytest.raises(ValueError, match="not found"):
        score(tmp_path / "missing.jsonl", tmp_path / "x", ScoreConfig())
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="not a score directory"):
        score(corpus, tmp_path / "occupied", ScoreConfig(signals=("information",)))


def test_empty_input_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no records"):
        score(empty, tmp_path / "x", ScoreConfig(signals=("information",)), progress=False)


@pytest.mark.skipif(os.environ.get("EUDS_SKIP_FULL") == "1", reason="EUDS_SKIP_FULL=1")
def test_parquet_and_csv_inputs_score_like_jsonl(tmp_path, sst2_files, tiny_lm, embedder):
    config = small_config(tiny_lm, embedder, signals=("information", "generative"))
    tables = {
        fmt: read_scores(
            score(sst2_files[fmt], tmp_path / fmt.replace(".", "_"), config, progress=False).output
        )
        for fmt in ("jsonl", "csv", "parquet")
    }
    assert same_table(tables["csv"], tables["jsonl"]) and same_table(
        tables["parquet"], tables["jsonl"]
    )


def test_a_resumed_run_succeeds_where_a_fresh_one_does(tmp_path):
    """The text-field check belongs to the run's first batch, not to the first batch after
    the resume point (here every record after row 40 lacks the text field)."""
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": k, ("text" if k < 40 else "body"): f"record {k}"}) + "\n"
            for k in range(200)
        )
    )
    config = ScoreConfig(signals=("information",), batch_size=16, shard_size=64)
    out = tmp_path / "scores"
    fresh = score(path, out, config, progress=False)
    assert fresh.flags == {"missing_text": 160}
    sd = ScoreDir(out)
    manifest = sd.manifest()
    manifest.update(status="scoring", pass_complete=False, writing=[1])
    manifest["shards"] = manifest["shards"][:1]
    sd.write_manifest(manifest)
    resumed = score(path, out, config, progress=False)
    assert resumed.resumed_from == 64 and resumed.flags == {"missing_text": 160}


def test_bpb_column_and_directories_scored_before_it(tmp_path, corpus, tiny_lm, embedder, capsys):
    import shutil

    import pyarrow.parquet as pq

    from conftest import read_all
    from euds.cli import main
    from euds.subset import select_file

    out = tmp_path / "scores"
    score(corpus, out, small_config(tiny_lm, embedder, signals=("generative",)), progress=False)
    table = read_scores(out)
    assert table.column_names[:4] == ["id", "generative", "nll", "bpb"]
    nll, bpb = (np.asarray(table.column(c), dtype=float) for c in ("nll", "bpb"))
    assert np.array_equal(np.isnan(bpb), np.isnan(nll)) and np.isnan(bpb).sum() == 5
    # SST-2 sentences are shorter than max_tokens, so their tokens cover every byte of them.
    assert not np.asarray(table.column("truncated")).any()
    texts = read_all(corpus)[3]
    whole = np.array([len(t.encode()) if t else 0 for t in texts])
    n = np.asarray(table.column("n_tokens"))
    ok = ~np.isnan(nll)
    np.testing.assert_allclose(bpb[ok], nll[ok] * n[ok] / np.log(2) / whole[ok], rtol=1e-12)

    # A directory scored before bpb existed: the same scores without the column.
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = ScoreDir(old).manifest()
    for shard in manifest["shards"]:
        name = f"part-{shard['index']:05d}.parquet"
        pq.write_table(pq.read_table(old / name).drop_columns(["bpb"]), old / name)
        shard["files"][name] = (old / name).stat().st_size
        shard.pop("sha256", None)  # an earlier euds recorded sizes only
    ScoreDir(old).write_manifest(manifest)
    assert read_scores(old).column_names == [c for c in table.column_names if c != "bpb"]
    before = select_file(corpus, old, tmp_path / "old.jsonl", budget=0.3, signals=["generative"])
    now = select_file(corpus, out, tmp_path / "new.jsonl", budget=0.3, signals=["generative"])
    assert before.selection.signals == now.selection.signals == ["generative"]
    assert (tmp_path / "old.jsonl").read_bytes() == (tmp_path / "new.jsonl").read_bytes()
    with pytest.raises(ValueError, match="no 'bpb' column"):
        select_file(corpus, old, tmp_path / "x.jsonl", budget=0.3, signals=["bpb"])

    # The command line takes bpb as a selection signal.
    args = ["select", str(corpus), "--scores", str(out), "--budget", "0.3", "--signals", "bpb"]
    assert main([*args, "-o", str(tmp_path / "bpb.jsonl"), "-q"]) == 0
    manifest = json.loads((tmp_path / "bpb.jsonl.manifest.json").read_text())
    assert manifest["selection"]["signals"] == ["bpb"]
    assert set(manifest["selection"]["intervals"]) == {"bpb"}
    capsys.readouterr()
    old_args = [*args[:3], str(old), *args[4:]]
    assert main([*old_args, "-o", str(tmp_path / "bpb-old.jsonl"), "-q"]) == 2
    assert "bpb" in capsys.readouterr().err


def test_the_same_model_path_holding_another_model_does_not_reuse_scores(
    tmp_path, corpus, training_texts
):
    from model_factories import make_family_lm

    folder = make_family_lm("qwen2", tmp_path / "mine", training_texts, seed=11)
    config = ScoreConfig(signals=("information", "generative"), model=str(folder), max_tokens=32)
    out = tmp_path / "scores"
    score(corpus, out, config, progress=False)
    manifest = ScoreDir(out).manifest()
    assert manifest["models"]["lm"]["source"] == str(folder)
    assert manifest["config"]["model_content"]
    # The information signal counted the model's own tokens (400-piece vocabulary).
    assert manifest["models"]["tokenizer"]["path"].endswith("tokenizer.json")
    assert score(corpus, out, config, progress=False).reused
    make_family_lm("qwen2", folder, training_texts, seed=12)  # other weights, same path
    with pytest.raises(ValueError, match="another input or configuration"):
        score(corpus, out, config, progress=False)
