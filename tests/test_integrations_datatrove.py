"""euds in a real datatrove pipeline: JsonlReader -> EudsScorer -> EudsBandFilter -> JsonlWriter
on two worker processes, against ``euds score`` on the same records; the filter on documents
that lack scores; argument errors."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datatrove")
pytest.importorskip("orjson")  # datatrove's JSONL reader and writer need it
pytest.importorskip("torch")  # the tiny test LM is built with transformers

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from conftest import read_jsonl_gz, small_config
from euds import score
from euds.integrations.datatrove import EudsBandFilter, EudsScorer, band_values
from euds.scores import read_scores
from euds.selection import select

BANDS = {"information": (0.1, 0.9), "generative": (0.05, 0.95)}
SIGNAL_KEYS = ("information", "generative", "nll", "bpb", "semantic")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir) -> tuple[Path, Path, list[dict]]:
    """41 records (40 SST-2 sentences and a whitespace-only text) as one JSONL file for
    ``euds score`` and as two files, 32 + 9 records, one per datatrove task: each task's
    first batch then holds the same records as a batch of ``euds score`` (batch_size 32)."""
    records = read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 40)
    records.insert(10, {"id": "blank", "text": "   ", "label": 0})
    root = tmp_path_factory.mktemp("datatrove")
    whole = root / "corpus.jsonl"
    whole.write_text("".join(json.dumps(r) + "\n" for r in records))
    parts = root / "parts"
    parts.mkdir()
    for k, chunk in enumerate((records[:32], records[32:])):
        (parts / f"part-{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chunk))
    return whole, parts, records


@pytest.fixture(scope="module")
def score_dir(corpus, tiny_lm, embedder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("datatrove_scores") / "scores"
    score(corpus[0], out, small_config(tiny_lm, embedder), progress=False)
    return out


@pytest.fixture(scope="module")
def pipeline_run(corpus, score_dir, tiny_lm, embedder, tmp_path_factory):
    """The pipeline on two tasks in two worker processes; returns its output folders."""
    _, parts, _ = corpus
    out = tmp_path_factory.mktemp("datatrove_out")
    executor = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(parts)),
            EudsScorer(config=small_config(tiny_lm, embedder), centroids=score_dir),
            EudsBandFilter(
                BANDS, scores=score_dir, exclusion_writer=JsonlWriter(str(out / "dropped"))
            ),
            JsonlWriter(str(out / "kept")),
        ],
        tasks=2,
        workers=2,
        logging_dir=str(out / "logs"),
    )
    executor.run()
    return out


def read_output(folder: Path) -> list[dict]:
    return [r for path in sorted(folder.glob("*.jsonl.gz")) for r in read_jsonl_gz(path)]


def count(stat) -> int:
    """A datatrove counter as saved in stats.json: a number, or a dict with its total."""
    return int(stat if isinstance(stat, (int, float)) else stat["total"])


def test_scores_in_metadata_equal_euds_score(pipeline_run, score_dir, corpus):
    docs = {r["id"]: r for r in read_output(pipeline_run / "kept")}
    docs |= {r["id"]: r for r in read_output(pipeline_run / "dropped")}
    table = read_scores(score_dir)
    ids = table.column("id").to_pylist()
    assert sorted(docs) == sorted(ids)
    meta = [docs[i]["metadata"] for i in ids]
    for name in SIGNAL_KEYS:
        expected = table.column(name).to_numpy(zero_copy_only=False)
        got = np.array([np.nan if m[f"euds_{name}"] is None else m[f"euds_{name}"] for m in meta])
        if name == "semantic":
            # euds score keeps the embeddings in float16; the step uses them as computed.
            np.testing.assert_allclose(got, expected, atol=1e-3, equal_nan=True)
        else:  # the same records in the same batches: the same numbers
            np.testing.assert_array_equal(got, expected)
    assert [m["euds_n_tokens"] for m in meta] == table.column("n_tokens").to_pylist()
    assert [m["euds_truncated"] for m in meta] == table.column("truncated").to_pylist()
    assert [m["euds_flags"] for m in meta] == table.column("flags").to_pylist()
    assert docs["blank"]["metadata"]["euds_flags"] == "empty_text"
    assert docs["blank"]["metadata"]["label"] == 0  # the reader's own metadata is kept


def test_kept_and_dropped_are_the_input_as_euds_select_decides(pipeline_run, score_dir, corpus):
    _, _, records = corpus
    kept = read_output(pipeline_run / "kept")
    dropped = read_output(pipeline_run / "dropped")
    assert len(kept) + len(dropped) == len(records)
    assert sorted(r["id"] for r in kept + dropped) == sorted(r["id"] for r in records)
    assert {r["id"]: r["text"] for r in kept + dropped} == {r["id"]: r["text"] for r in records}

    table = read_scores(score_dir)
    ids = table.column("id").to_pylist()
    chosen = select(table, intervals=BANDS)  # what `euds select --interval` keeps
    assert chosen.counts["dropped_by_reason"].get("duplicate_text", 0) == 0
    assert sorted(r["id"] for r in kept) == sorted(np.array(ids)[chosen.keep].tolist())
    assert 0 < len(kept) < len(records)

    bounds = band_values(BANDS, score_dir)
    for s, (lo, hi) in bounds.items():
        assert (lo, hi) == (chosen.intervals[s]["lo"], chosen.intervals[s]["hi"])
    values = {s: dict(zip(ids, table.column(s).to_pylist(), strict=True)) for s in BANDS}

    def reason(doc_id: str) -> str:  # the first band (in BANDS order) the record fails
        for s, (lo, hi) in bounds.items():
            v = values[s][doc_id]
            if v is None or math.isnan(v):
                return f"euds_{s}_unscored"
            if v < lo:
                return f"euds_{s}_below"
            if v > hi:
                return f"euds_{s}_above"
        raise AssertionError(f"{doc_id} lies inside every band")

    assert {r["id"]: r["metadata"]["filter_reason"] for r in dropped} == {
        r["id"]: reason(r["id"]) for r in dropped
    }
    assert "filter_reason" not in kept[0]["metadata"]


def test_datatrove_stats_show_the_counts(pipeline_run, corpus):
    _, _, records = corpus
    steps = json.loads((pipeline_run / "logs" / "stats.json").read_text())
    stats = {step["name"]: step["stats"] for step in steps}
    scorer = stats[f"{EudsScorer.type}: {EudsScorer.name}"]
    band = stats[f"{EudsBandFilter.type}: {EudsBandFilter.name}"]
    assert count(scorer["euds_scored"]) == len(records) - 1
    assert count(scorer["euds_unscored"]) == 1
    assert count(scorer["euds_flag_empty_text"]) == 1
    assert count(scorer["batches"]) == 2  # one per task: 32 and 9 documents
    kept = len(read_output(pipeline_run / "kept"))
    assert count(band["total"]) == len(records)
    assert count(band["forwarded"]) == kept
    assert count(band["dropped"]) == len(records) - kept
    assert count(band["dropped_euds_information_unscored"]) == 1
    by_reason = sum(count(v) for k, v in band.items() if k.startswith("dropped_"))
    assert by_reason == len(records) - kept


def test_filter_drops_documents_without_scores_with_their_own_reason(tmp_path):
    docs = [
        Document(text="in band", id="ok", metadata={"euds_information": 2.0}),
        Document(text="edge", id="edge", metadata={"euds_information": 3.0}),
        Document(text="not scored", id="none", metadata={}),
        Document(text="empty", id="nan", metadata={"euds_information": None}),
        Document(text="float nan", id="fnan", metadata={"euds_information": float("nan")}),
        Document(text="text", id="str", metadata={"euds_information": "2.0"}),
        Document(text="low", id="low", metadata={"euds_information": 0.5}),
        Document(text="high", id="high", metadata={"euds_information": 9.0}),
    ]
    band = EudsBandFilter(
        {"information": (1.0, 3.0)},
        absolute=True,
        exclusion_writer=JsonlWriter(str(tmp_path / "dropped")),
    )
    kept = [d.id for d in band.run(iter(docs))]
    assert kept == ["ok", "edge"]  # both ends of the band are inside it, as in euds select
    dropped = {r["id"]: r["metadata"]["filter_reason"] for r in read_output(tmp_path / "dropped")}
    assert dropped == {
        "none": "euds_information_missing",
        "nan": "euds_information_unscored",
        "fnan": "euds_information_unscored",
        "str": "euds_information_invalid",
        "low": "euds_information_below",
        "high": "euds_information_above",
    }
    assert band.stats["dropped_euds_information_missing"].total == 1


def test_scorer_step_loads_models_once_per_process_and_pickles(tiny_lm, embedder, sst2_records):
    step = EudsScorer(config=small_config(tiny_lm, embedder), batch_size=4)
    assert step.signals == ("information", "generative")  # no centroids: no semantic
    docs = [Document(text=r["text"], id=r["id"]) for r in sst2_records[:6]]
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == [r["id"] for r in sst2_records[:6]]
    assert "euds_semantic" not in out[0].metadata
    assert all(isinstance(d.metadata["euds_generative"], float) for d in out)
    copy = pickle.loads(pickle.dumps(step))  # what an executor sends to its workers
    assert copy.scorer() is step.scorer()  # the same process: the models are not reloaded
    assert step.stats["batches"].total == 2


def test_caller_errors_name_the_fix(score_dir, tiny_lm, embedder, tmp_path):
    with pytest.raises(ValueError, match="centroids="):
        EudsScorer(("semantic",), config=small_config(tiny_lm, embedder))
    with pytest.raises(ValueError, match="no centroids at"):
        EudsScorer(config=small_config(tiny_lm, embedder), centroids=tmp_path)
    with pytest.raises(ValueError, match="scores=SCORES_DIR"):
        EudsBandFilter({"information": (0.1, 0.9)})
    with pytest.raises(ValueError, match="mean-rank"):
        EudsBandFilter({"mean-rank": (0.1, 0.9)}, scores=score_dir)
    with pytest.raises(ValueError, match="unknown signals"):
        EudsBandFilter({"perplexity": (1, 2)}, absolute=True)
    with pytest.raises(ValueError, match="lo <= hi"):
        EudsBandFilter({"generative": (2, 1)}, absolute=True)
    with pytest.raises(ValueError, match="must lie in"):
        EudsBandFilter({"information": (0.1, 1.5)}, scores=score_dir)
    with pytest.raises(ValueError, match="not found"):
        EudsBandFilter({"information": (0.1, 0.9)}, scores=tmp_path / "nowhere")


def test_band_filter_from_a_select_config():
    from euds.config import SelectConfig
    from euds.integrations.datatrove import EudsBandFilter

    f = EudsBandFilter.from_config(
        SelectConfig(intervals={"information": (1.0, 2.0)}, absolute=True)
    )
    assert f.bounds == {"information": (1.0, 2.0)}
    with pytest.raises(ValueError, match="not a budget"):
        EudsBandFilter.from_config(SelectConfig(budget=0.2))
