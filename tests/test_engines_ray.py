"""The Ray engine on a local Ray instance (2 CPUs): parity with the local engine, a killed
actor, selection on Ray."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

from conftest import same_table  # noqa: E402
from conftest import small_config as config  # noqa: E402
from euds import ScoreConfig, score  # noqa: E402
from euds.scores import ScoreDir, read_scores  # noqa: E402
from euds.subset import select_file  # noqa: E402

BAD_LINES = [
    b'{"id": "bad-empty", "text": ""}\n',
    b"not json at all\n",
    b'{"id": "sst2-train-3", "text": "a repeated id"}\n',
    b'{"id": "bad-utf8", "text": "caf\xe9"}\n',
    b"\n",
]


@pytest.fixture(scope="module")
def ray_local():
    from euds.engines.ray import connect

    connect(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir) -> Path:
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        lines = list(itertools.islice(f, 700))
    for k, bad in enumerate(BAD_LINES):
        lines.insert(40 + 130 * k, bad)
    path = tmp_path_factory.mktemp("ray_corpus") / "corpus.jsonl.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as g:
        g.write(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def local_scores(tmp_path_factory, corpus, tiny_lm, embedder) -> Path:
    out = tmp_path_factory.mktemp("local") / "scores"
    score(corpus, out, config(tiny_lm, embedder), progress=False)
    return out


def test_ray_scores_equal_local_scores(
    ray_local, tmp_path, corpus, tiny_lm, embedder, local_scores
):
    from euds.engines.ray import score_ray

    out = tmp_path / "ray"
    summary = score_ray(corpus, out, config(tiny_lm, embedder), actors=2)
    local, distributed = read_scores(local_scores), read_scores(out)
    assert same_table(distributed, local)
    assert summary.records == local.num_rows == 700 + len(BAD_LINES) - 1
    flags = distributed.column("flags").to_pylist()
    assert "duplicate_id" in flags and "invalid_json" in flags and "empty_text" in flags
    assert np.array_equal(np.load(out / "centroids.npy"), np.load(local_scores / "centroids.npy"))
    a, b = ScoreDir(out), ScoreDir(local_scores)
    assert [s.rows for s in a.shards()] == [s.rows for s in b.shards()]
    assert a.manifest()["engine"]["name"] == "ray" and a.complete()


def test_ray_selection_equals_local_selection(ray_local, tmp_path, corpus, local_scores):
    from euds.engines.ray import select_ray

    options = {"budget": 0.16, "method": "intersect"}
    local = select_file(corpus, local_scores, tmp_path / "local.jsonl.gz", **options)
    distributed = select_ray(corpus, local_scores, tmp_path / "ray.jsonl.gz", **options)
    assert local.written == distributed.written == round(0.16 * local.selection.counts["input"])
    assert (tmp_path / "local.jsonl.gz").read_bytes() == (tmp_path / "ray.jsonl.gz").read_bytes()
    assert np.array_equal(local.selection.keep, distributed.selection.keep)


def test_ray_parquet_input(ray_local, tmp_path, sst2_files, tiny_lm, embedder):
    from euds.engines.ray import score_ray, select_ray

    cfg = config(tiny_lm, embedder, signals=("information", "generative"))
    local = score(sst2_files["parquet"], tmp_path / "local", cfg, progress=False)
    distributed = score_ray(sst2_files["parquet"], tmp_path / "ray", cfg, actors=1)
    assert same_table(read_scores(distributed.output), read_scores(local.output))
    band = {"budget": 0.3, "signals": ("generative",)}
    a = select_file(sst2_files["parquet"], local.output, tmp_path / "a.parquet", **band)
    b = select_ray(sst2_files["parquet"], local.output, tmp_path / "b.parquet", **band)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert a.written == b.written


def _actor_pids() -> list[int]:
    """Pids of the scoring actors: Ray names its worker processes after the actor
    (``ray::MapWorker(MapBatches(_ShardScorer))``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::") and b"_ShardScorer" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def test_killed_actor_is_retried_without_loss_or_duplicates(
    ray_local, tmp_path, data_dir, tiny_lm, embedder
):
    from euds.engines.ray import score_ray

    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        data = b"".join(itertools.islice(f, 2500))
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    cfg = config(tiny_lm, embedder, shard_size=128)
    reference = score(src, tmp_path / "local", cfg, progress=False)

    out = tmp_path / "ray"
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = score_ray(src, out, cfg, actors=2, max_retries=5)
        except BaseException as e:  # surfaced below
            result["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and killed is None and worker.is_alive():
        if len(list(out.glob("part-*.parquet"))) >= 2:
            pids = _actor_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.05)
    worker.join(timeout=900)
    assert killed is not None, "no scoring actor was found to kill"
    assert "error" not in result, result.get("error")
    table = read_scores(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 2500  # no loss, no duplicates
    assert same_table(table, read_scores(reference.output))


def test_ray_engine_refuses_csv(ray_local, tmp_path, sst2_files):
    from euds.engines.ray import score_ray

    with pytest.raises(ValueError, match="local engine"):
        score_ray(sst2_files["csv"], tmp_path / "x", ScoreConfig(signals=("information",)))


def test_cli_engine_ray(ray_local, tmp_path, corpus, tiny_lm, embedder, local_scores, capsys):
    from euds.cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "score",
            str(corpus),
            "-o",
            str(out),
            "--engine",
            "ray",
            "--actors",
            "2",
            "--model",
            str(tiny_lm.folder),
            "--embedder",
            str(embedder.folder),
            "--batch-size",
            "32",
            "--shard-size",
            "128",
            "--k",
            "4",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert same_table(read_scores(out), read_scores(local_scores))
    code = main(
        [
            "select",
            str(corpus),
            "--scores",
            str(out),
            "-o",
            str(tmp_path / "s.jsonl"),
            "--budget",
            "0.5",
            "--engine",
            "ray",
            "-q",
        ]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "s.jsonl.manifest.json").read_text())
    assert manifest["selection"]["counts"]["kept"] == manifest["output"]["records"]


def test_cli_run_engine_ray(ray_local, tmp_path, corpus, tiny_lm, embedder, local_scores, capsys):
    """`euds run --engine ray`: the same driver, hence the same scores and selection."""
    from euds.cli import main

    common = ["--model", str(tiny_lm.folder), "--embedder", str(embedder.folder)]
    common += ["--batch-size", "32", "--shard-size", "128", "--k", "4", "--budget", "0.3", "-q"]
    assert main(["run", str(corpus), "-o", str(tmp_path / "ray"), "--engine", "ray", *common]) == 0
    assert main(["run", str(corpus), "-o", str(tmp_path / "local"), *common]) == 0
    capsys.readouterr()
    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    assert same_table(read_scores(ray_dir / "scores"), read_scores(local_scores))
    assert ScoreDir(ray_dir / "scores").manifest()["engine"]["name"] == "ray"
    assert (ray_dir / "selected.jsonl.gz").read_bytes() == (
        local_dir / "selected.jsonl.gz"
    ).read_bytes()
    assert (ray_dir / "report.html").is_file()


# Valid UTF-8 whose bytes include 0x85 (NEL in Latin-1, a line break to str.splitlines) and
# 0x1c-0x1e, plus CRLF and a lone CR inside a record: every line below is one record.
NON_ASCII_LINES = [
    '{"id": "pl", "text": "zażółć gęślą jaźń, ąę"}\r\n',
    '{"id": "ru", "text": "съешь же ещё этих мягких французских булок, х"}\n',
    '{"id": "cjk", "text": "日本語のテキストと中文文本…"}\r\n',
    '{"id": "emoji", "text": "so good 😅😅 Å"}\n',
    '{"id": "sep", "text": "a\\u001cb\\u001ec\\u0085d"}\n',
    '{"id": "cr", "text": "one\\rtwo"}\r\n',
]


@pytest.mark.parametrize("gz", [False, True])
def test_ray_reads_non_ascii_and_crlf_like_the_local_engine(
    ray_local, tmp_path, tiny_lm, embedder, gz
):
    from euds.engines.ray import score_ray, select_ray

    raw = "".join(NON_ASCII_LINES * 3).encode()
    assert b"\x85" in raw and b"\r\n" in raw
    path = tmp_path / ("mixed.jsonl.gz" if gz else "mixed.jsonl")
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    cfg = config(tiny_lm, embedder, signals=("information", "generative"))
    local = read_scores(score(path, tmp_path / "local", cfg, progress=False).output)
    distributed = read_scores(score_ray(path, tmp_path / "ray", cfg, actors=1).output)
    assert local.num_rows == distributed.num_rows == 3 * len(NON_ASCII_LINES)
    assert same_table(distributed, local)
    flags = distributed.column("flags").to_pylist()
    assert flags == ["", "", "", "", "", ""] + ["duplicate_id"] * 12
    # the selection copies the lines byte for byte, CRLF included, on both engines
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    select_file(
        path, tmp_path / "local", a, budget=1.0, keep_duplicates=True, signals=("information",)
    )
    select_ray(
        path, tmp_path / "ray", b, budget=1.0, keep_duplicates=True, signals=("information",)
    )
    assert a.read_bytes() == b.read_bytes() == raw
