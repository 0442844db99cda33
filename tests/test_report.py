"""`euds report` reads example texts only from the input the scores were made from: a score
directory's manifest names a path, and a crafted one must not pull lines of any other local
file into the page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from euds.cache import sha256_file
from euds.report import write_report
from euds.scores import ScoreDir

ROWS = 12
SECRETS = [f"SECRET-LINE-{i}-hunter2" for i in range(ROWS + 1)]


def _input(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path


def _score_dir(folder: Path, input_entry: dict, config: dict | None = None) -> Path:
    """A small complete score directory (information and generative) with the given manifest
    ``input`` entry, as anyone could write by hand."""
    sd = ScoreDir(folder)
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(ROWS)],
            "information": rng.random(ROWS),
            "generative": rng.random(ROWS),
        }
    )
    shard = sd.write_shard(0, 0, table)
    sd.write_manifest(
        {
            "format": 1,
            "status": "complete",
            "input": input_entry,
            "config": {"signals": ["information", "generative"], "text_field": "text"}
            | (config or {}),
            "shards": [shard.__dict__],
        }
    )
    return folder


@pytest.fixture
def genuine(tmp_path) -> Path:
    return _input(tmp_path / "pool.jsonl", [f"pool text number {i}" for i in range(ROWS)])


def _page(scores: Path, out: Path, **kwargs) -> str:
    return write_report(scores, out, **kwargs).read_text()


def test_examples_come_from_the_input_that_matches_its_checksum(tmp_path, genuine):
    scores = _score_dir(tmp_path / "scores", {"path": str(genuine), "sha256": sha256_file(genuine)})
    page = _page(scores, tmp_path / "r.html")
    assert "pool text number" in page
    assert "without example texts" not in page


def test_manifest_naming_another_file_embeds_none_of_it(tmp_path, genuine):
    secret = _input(tmp_path / "secret.jsonl", SECRETS)
    # No checksum recorded: nothing proves the file is the one that was scored.
    scores = _score_dir(tmp_path / "a", {"path": str(secret)})
    page = _page(scores, tmp_path / "a.html")
    assert "SECRET-LINE" not in page and "hunter2" not in page
    assert "without example texts" in page
    # A checksum of another file (the genuine pool) with the path of the secret one.
    scores = _score_dir(tmp_path / "b", {"path": str(secret), "sha256": sha256_file(genuine)})
    page = _page(scores, tmp_path / "b.html")
    assert "SECRET-LINE" not in page and "without example texts" in page


def test_plain_text_file_read_as_csv_is_not_embedded(tmp_path):
    """Any text file reads as a one-column CSV whose header names the 'text field'."""
    secret = tmp_path / "notes.txt"
    secret.write_text("header\n" + "".join(s + "\n" for s in SECRETS))
    scores = _score_dir(
        tmp_path / "scores",
        {"path": str(secret), "sha256": "0" * 64},
        {"format": "csv", "text_field": "header", "id_field": None},
    )
    page = _page(scores, tmp_path / "r.html")
    assert "SECRET-LINE" not in page


def test_user_given_input_must_match_the_checksum(tmp_path, genuine):
    scores = _score_dir(
        tmp_path / "scores",
        {"path": str(tmp_path / "moved-away.jsonl"), "sha256": sha256_file(genuine)},
    )
    secret = _input(tmp_path / "secret.jsonl", SECRETS)
    page = _page(scores, tmp_path / "a.html", input_path=secret)
    assert "SECRET-LINE" not in page and "without example texts" in page
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(genuine.read_bytes())
    page = _page(scores, tmp_path / "b.html", input_path=moved)
    assert "pool text number" in page and "without example texts" not in page


def test_missing_input_says_why(tmp_path, genuine):
    scores = _score_dir(
        tmp_path / "scores",
        {"path": str(tmp_path / "gone.jsonl"), "sha256": sha256_file(genuine)},
    )
    page = _page(scores, tmp_path / "r.html")
    assert "without example texts" in page and "gone.jsonl" in page


def test_bpb_is_shown_like_the_other_signals_when_scored(tmp_path, genuine):
    entry = {"path": str(genuine), "sha256": sha256_file(genuine)}
    old = _page(_score_dir(tmp_path / "old", entry), tmp_path / "old.html")
    assert "<b>bpb</b>" not in old and old.count("<svg") == 2 + 1  # two histograms, one pair
    sd = ScoreDir(tmp_path / "new")
    rng = np.random.default_rng(1)
    bpb = 1.0 + rng.random(ROWS)
    bpb[3] = np.nan  # a record without an NLL
    table = pa.table(
        {"id": [f"r{i}" for i in range(ROWS)], "generative": rng.random(ROWS), "bpb": bpb}
    )
    shard = sd.write_shard(0, 0, table)
    sd.write_manifest(
        {
            "format": 1,
            "status": "complete",
            "input": entry,
            "config": {"signals": ["generative"], "text_field": "text"},
            "shards": [shard.__dict__],
        }
    )
    page = _page(sd.path, tmp_path / "new.html")
    finite = bpb[np.isfinite(bpb)]
    summary = (
        f"<b>bpb</b> (bits per UTF-8 byte) — mean {finite.mean():.3f}, sd {finite.std():.3f}, "
        f"median {np.median(finite):.3f}; NaN 1"
    )
    assert summary in page and "<h3>bpb</h3>" in page
    assert page.count("<svg") == 2 + 1 and "<b>generative</b> (x) vs <b>bpb</b> (y)" in page


def test_axis_labels_read_as_numbers():
    from euds.report import axis_label

    assert axis_label(66_000) == "66k"
    assert axis_label(67_349) == "67.3k"
    assert axis_label(1_250_000) == "1.25M"
    assert axis_label(0.5) == "0.5" and axis_label(0) == "0" and axis_label(12.25) == "12.2"
    assert "e+" not in axis_label(999_999)
