"""The embedding API: a Scorer built once, scoring batches, tables and HF datasets."""

from __future__ import annotations

import signal

import numpy as np
import pyarrow as pa
import pytest

from euds import ScoreConfig
from euds.api import Scorer, score_dataset, select_dataset
from euds.selection import select

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def scorer(tiny_lm, sst2_records):
    from euds.models import embedder_files

    config = ScoreConfig(model=str(tiny_lm.folder), embedder=str(embedder_files().folder), k=4)
    s = Scorer(config=config)
    s.fit_semantic([r["text"] for r in sst2_records])
    return s


def test_scores_match_the_scorers_they_wrap(scorer, sst2_records):
    texts = [r["text"] for r in sst2_records[:40]]
    out = scorer.score_texts(texts)
    assert set(out) == {
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
    }
    from euds.duplicates import near_duplicate_keys

    np.testing.assert_array_equal(np.stack(out["near_keys"]), near_duplicate_keys(texts))
    tokens = scorer.tokenizer.encode(texts)
    np.testing.assert_array_equal(out["information"], scorer.information.score(tokens))
    ge, _ = scorer.generative.score(tokens)
    np.testing.assert_array_equal(out["generative"], ge)
    assert np.isfinite(out["semantic"]).all() and (out["flags"] == "").all()


def test_bad_texts_are_flagged_not_dropped(scorer):
    out = scorer.score_texts(["fine text", "", None, 42, "  "])  # type: ignore[list-item]
    assert out["flags"].tolist() == [
        "",
        "empty_text",
        "missing_text",  # as a record without a text is flagged in a score directory
        "non_string_text",
        "empty_text",
    ]
    for name in ("information", "generative", "semantic"):
        assert np.isfinite(out[name][0]) and np.isnan(out[name][1:]).all()


def test_score_batches_streams_in_order(scorer, sst2_records):
    texts = (r["text"] for r in sst2_records[:70])
    parts = list(scorer.score_batches(texts, batch_size=32))
    assert [len(p["information"]) for p in parts] == [32, 32, 6]
    whole = scorer.score_texts([r["text"] for r in sst2_records[:70]])
    np.testing.assert_allclose(
        np.concatenate([p["information"] for p in parts]), whole["information"]
    )


def test_score_table_and_select_on_arrow(scorer, sst2_records):
    table = pa.table(
        {"id": [r["id"] for r in sst2_records], "text": [r["text"] for r in sst2_records]}
    )
    scored = scorer.score_table(table)
    assert scored.num_rows == table.num_rows and "semantic" in scored.column_names
    chosen = select(scored, budget=0.25, method="mean-rank")
    assert chosen.counts["kept"] == round(0.25 * table.num_rows)
    with pytest.raises(ValueError, match="no column"):
        scorer.score_table(table, text_column="body")


def test_semantic_without_centroids_says_how(tiny_lm):
    from euds.models import embedder_files

    s = Scorer(("semantic",), config=ScoreConfig(embedder=str(embedder_files().folder)))
    with pytest.raises(ValueError, match="centroids"):
        s.score_texts(["x"])


def test_centroids_from_a_score_directory(tmp_path, scorer):
    np.save(tmp_path / "centroids.npy", scorer.centroids)
    from euds.models import embedder_files

    s = Scorer(
        ("semantic",),
        config=ScoreConfig(embedder=str(embedder_files().folder), k=4),
        centroids=tmp_path,
    )
    np.testing.assert_array_equal(s.centroids, scorer.centroids)
    with pytest.raises(ValueError, match="centroids must be"):
        s.set_centroids(np.zeros((4, 3), np.float32))


def test_hugging_face_dataset_map(scorer, sst2_records):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(sst2_records[:50])
    scored = score_dataset(ds, scorer, batch_size=16)
    assert scored.num_rows == 50 and "generative" in scored.column_names
    direct = scorer.score_texts([r["text"] for r in sst2_records[:50]])
    np.testing.assert_allclose(np.array(scored["information"]), direct["information"])
    # The Scorer's own map function is the same one.
    mapped = ds.map(scorer.hf_map_function(), batched=True, batch_size=16)
    assert mapped.column_names == scored.column_names
    np.testing.assert_array_equal(np.array(mapped["generative"]), np.array(scored["generative"]))
    with pytest.raises(ValueError, match="text_column="):
        ds.map(scorer.hf_map_function("body"), batched=True)


def test_select_on_a_pandas_frame(scorer, sst2_records):
    pd = pytest.importorskip("pandas")
    out = scorer.score_texts([r["text"] for r in sst2_records])
    frame = pd.DataFrame(out)
    chosen = select(frame, budget=0.5, signals=["information", "semantic"])
    assert chosen.counts["kept"] == round(0.5 * len(frame))
    deduped = select(frame, budget=0.5, signals=["generative"], drop_near_duplicates=True)
    assert deduped.counts["kept"] == round(0.5 * len(frame)) and "near" in deduped.duplicates


def test_select_dataset_keeps_what_select_keeps_with_and_without_workers(scorer, sst2_records):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(sst2_records[:40])
    # batch_size 10 divides each worker's 20 rows: the same batches, so the same numbers.
    band = {"budget": 0.25, "signals": ["generative"]}  # a budget alone needs embeddings
    one, chosen = select_dataset(ds, scorer, **band, batch_size=10, return_selection=True)

    # The workers are fork()ed from a thread that ran FAISS's OpenMP (scoring "one" above):
    # a deadlock there must fail this test, not hang the run. The fork must come from this
    # thread (OpenMP's state is per thread), hence an alarm rather than a helper thread.
    def too_long(signum: int, frame: object) -> None:
        raise TimeoutError("select_dataset(num_proc=2) did not finish in 180 s: a worker hung")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(180)
    try:
        two = select_dataset(ds, scorer, **band, batch_size=10, num_proc=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert one.num_rows == two.num_rows == round(0.25 * 40) == chosen.counts["kept"]
    assert one.to_dict() == two.to_dict()  # rows, order and every score column
    direct = select(scorer.score_texts([r["text"] for r in sst2_records[:40]]), **band)
    np.testing.assert_array_equal(chosen.keep, direct.keep)
    assert one["id"] == np.array([r["id"] for r in sst2_records[:40]])[direct.keep].tolist()


def test_select_dataset_options_and_errors(scorer, sst2_records):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(sst2_records[:40])
    kept = select_dataset(ds, scorer, intervals={"information": (0.25, 0.75)}, keep_scores=False)
    assert kept.column_names == ds.column_names and 0 < kept.num_rows < 40
    scores = scorer.score_texts([r["text"] for r in sst2_records[:40]])
    inside = select(scores, intervals={"information": (0.25, 0.75)}).keep
    assert kept["id"] == np.array([r["id"] for r in sst2_records[:40]])[inside].tolist()
    by_label, chosen = select_dataset(
        ds, scorer, budget=0.5, signals=["generative"], stratify="label", return_selection=True
    )
    labels = np.array(ds["label"])
    for label in set(labels.tolist()):  # each label keeps half of its rows (largest remainder)
        assert abs(int(chosen.keep[labels == label].sum()) - (labels == label).sum() / 2) <= 0.5
    assert by_label.num_rows == 20
    # Two near copies (case, punctuation) of rows 0 and 1 at the end: the copies go.
    copies = [
        {**r, "id": f"copy{i}", "text": r["text"].upper() + " !"}
        for i, r in enumerate(sst2_records[:2])
    ]
    with_copies = datasets.Dataset.from_list(sst2_records[:40] + copies)
    deduped, chosen = select_dataset(
        with_copies,
        scorer,
        budget=0.5,
        signals=["generative"],
        drop_near_duplicates=True,
        return_selection=True,
    )
    assert chosen.reason[40:].tolist() == ["near_duplicate_text"] * 2
    assert deduped.num_rows == 21 and not any(i.startswith("copy") for i in deduped["id"])
    with pytest.raises(ValueError, match="not a column"):
        select_dataset(ds, scorer, budget=0.5, signals=["generative"], stratify="topic")
    with pytest.raises(ValueError, match="default selection"):
        select_dataset(ds, scorer, budget=0.5)
    with pytest.raises(ValueError, match="budget must be"):
        select_dataset(ds, scorer, budget=1.5)
    with pytest.raises(ValueError, match="text_column="):
        select_dataset(ds, scorer, budget=0.5, signals=["generative"], text_column="body")
