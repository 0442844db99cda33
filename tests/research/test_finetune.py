"""The fine-tune driver (classification and QA), the SQuAD metric and its defaults."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from euds.research.finetune import (
    FinetuneConfig,
    classification_metrics,
    finetune,
    normalize_answer,
    read_squad,
    squad_f1,
    squad_metrics,
    write_squad,
)

pytest.importorskip("torch")
pytest.importorskip("transformers")


# -- metrics (pure functions) ------------------------------------------------------------------


def test_squad_normalisation_follows_v1_1():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert squad_f1("Denver Broncos", "the Denver Broncos") == 1.0
    assert squad_f1("Broncos won", "Denver Broncos") == pytest.approx(0.5)
    assert squad_f1("", "x") == 0.0
    metrics = squad_metrics(
        {"q1": ["Denver Broncos", "Broncos"], "q2": ["308"]}, {"q1": "broncos", "q2": "300"}
    )
    assert metrics == {"exact_match": 50.0, "f1": 50.0}


def test_classification_metrics_against_a_hand_count():
    gold = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(gold, pred, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class F1: c0 2*1/(2+1+1)=0.5, c1 2*2/(4+1+0)=0.8, c2 2*1/(2+0+1)=0.667
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


# -- the driver -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sst2_small(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ft")
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        (folder / "train.jsonl").write_bytes(b"".join(itertools.islice(f, 96)))
    with gzip.open(data_dir / "sst2" / "dev.jsonl.gz", "rb") as f:
        (folder / "dev.jsonl").write_bytes(b"".join(itertools.islice(f, 64)))
    return folder / "train.jsonl", folder / "dev.jsonl"


def test_classification_finetune_runs_and_is_seeded(trains, sst2_small, tmp_path):
    train, dev = sst2_small
    config = FinetuneConfig(
        epochs=1, min_steps=0, batch_size=16, max_length=32, seed=3, device="cpu"
    )
    a = finetune(train, dev, config, output=tmp_path / "m.json")
    b = finetune(train, dev, FinetuneConfig(**{**config.__dict__}))
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == a["accuracy"]
    assert a["accuracy"] == b["accuracy"] and a["macro_f1"] == b["macro_f1"]
    assert 0.0 <= a["accuracy"] <= 1.0 and a["classes"] == 2 and a["train_records"] == 96
    assert a["wall_seconds"] > 0 and a["train_steps"] == 6  # 96 / 16, one epoch


def test_min_steps_adds_epochs_over_a_small_set(trains, sst2_small, caplog):
    train, dev = sst2_small
    config = FinetuneConfig(epochs=1, min_steps=14, batch_size=16, max_length=32, device="cpu")
    with caplog.at_level("INFO", logger="euds"):
        assert finetune(train, dev, config)["train_steps"] == 18  # 3 whole epochs of 6 steps
    assert "3 epochs x 6 steps = 18 optimiser steps" in caplog.text  # said before training
    with pytest.raises(ValueError, match="min_steps"):
        finetune(train, dev, FinetuneConfig(min_steps=-1, device="cpu"))


def test_classification_input_errors_name_the_line(tmp_path, sst2_small):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "no label"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        finetune(bad, sst2_small[1], FinetuneConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="task"):
        finetune(bad, bad, FinetuneConfig(task="ner"))  # type: ignore[arg-type]


def test_qa_finetune_and_span_post_processing(trains, tmp_path, data_dir):
    examples = read_squad(data_dir / "xquad_en" / "test.json.gz")[:24]
    write_squad(tmp_path / "train.json", examples)
    write_squad(tmp_path / "eval.json", examples[:12])
    config = FinetuneConfig(
        task="qa", epochs=1, min_steps=0, batch_size=8, max_length=192, stride=64, device="cpu"
    )
    metrics = finetune(tmp_path / "train.json", tmp_path / "eval.json", config)
    assert metrics["train_questions"] == 24 and metrics["eval_questions"] == 12
    assert metrics["train_features"] >= 24  # long paragraphs give several windows
    assert 0.0 <= metrics["exact_match"] <= metrics["f1"] <= 100.0


def test_qa_features_map_answers_to_token_spans(data_dir):
    from transformers import AutoTokenizer

    from euds.models import minilm_path
    from euds.research.finetune import _qa_features

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    examples = read_squad(data_dir / "xquad_en" / "train.json.gz")[:30]
    features = _qa_features(
        tok, examples, FinetuneConfig(task="qa", max_length=128, stride=48), train=True
    )
    found = 0
    by_id = {e["id"]: e for e in examples}
    for f in features:
        s, e = f["start_positions"], f["end_positions"]
        if s == 0:
            continue  # this window does not hold the answer
        ex = by_id[f["example"]]
        span = ex["context"][f["offsets"][s][0] : f["offsets"][e][1]]
        assert normalize_answer(span) == normalize_answer(ex["answers"][0]["text"])
        found += 1
    assert found >= 25


def test_defaults_are_the_measured_ones():
    config = FinetuneConfig()
    assert (config.min_steps, config.lr, config.epochs) == (150, 1e-4, 2)
