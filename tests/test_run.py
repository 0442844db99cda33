"""`euds run` (score + select + report), `euds report`, and the report rendering."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from euds.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def sst2_600(tmp_path_factory, data_dir) -> Path:
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        data = b"".join(itertools.islice(f, 600))
    path = tmp_path_factory.mktemp("run") / "sst2_600.jsonl.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as g:
        g.write(data)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sst2_600, tiny_lm) -> Path:
    from euds.models import embedder_files

    out = tmp_path_factory.mktemp("run_out") / "out"
    code = main(
        [
            "run",
            str(sst2_600),
            "--budget",
            "0.16",
            "-o",
            str(out),
            "--model",
            str(tiny_lm.folder),
            "--embedder",
            str(embedder_files().folder),
            "--k",
            "8",
            "--batch-size",
            "64",
            "--shard-size",
            "256",
            "-q",
        ]
    )
    assert code == 0
    return out


def test_run_writes_selection_manifest_and_report(run_dir, sst2_600, capsys):
    selected = run_dir / "selected.jsonl.gz"
    manifest = json.loads((run_dir / "selected.jsonl.gz.manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    assert counts["input"] == 600 and counts["kept"] == 96  # round(0.16 * 600)
    assert counts["kept"] + counts["dropped"] == counts["input"]
    # the default at 16%: one typical member per cluster, after damaged texts
    # (euds.selection.DEFAULT_CHOICE), which the run read the texts for
    assert manifest["selection"]["method"] == "typical"
    assert manifest["selection"]["damaged"]["policy"] == "drop"
    with gzip.open(selected, "rt") as f:
        kept_lines = f.read().splitlines()
    assert len(kept_lines) == 96
    decisions = pq.read_table(run_dir / "selected.jsonl.gz.decisions.parquet")
    kept_ids = [json.loads(line)["id"] for line in kept_lines]
    assert kept_ids == [
        i
        for i, k in zip(decisions["id"].to_pylist(), decisions["kept"].to_pylist(), strict=True)
        if k
    ]
    assert (run_dir / "report.html").is_file() and (run_dir / "scores" / "_manifest.json").is_file()


def test_run_again_reuses_the_scores(run_dir, sst2_600, tiny_lm, capsys):
    from euds.models import embedder_files

    stamp = (run_dir / "scores" / "part-00000.parquet").stat().st_mtime_ns
    code = main(
        [
            "run",
            str(sst2_600),
            "--budget",
            "0.3",
            "-o",
            str(run_dir),
            "--model",
            str(tiny_lm.folder),
            "--embedder",
            str(embedder_files().folder),
            "--k",
            "8",
            "--batch-size",
            "64",
            "--shard-size",
            "256",
            "--method",
            "mean-rank",
            "-q",
        ]
    )
    assert code == 0
    assert (run_dir / "scores" / "part-00000.parquet").stat().st_mtime_ns == stamp
    printed = capsys.readouterr().out
    assert "selected 180 of 600" in printed and "report:" in printed
    manifest = json.loads((run_dir / "selected.jsonl.gz.manifest.json").read_text())
    assert manifest["selection"]["method"] == "mean-rank"


@pytest.mark.parametrize("fit", ["pool", "distinct"])
def test_select_with_a_pool_fit_on_real_scores(run_dir, sst2_600, tmp_path, fit):
    """--typical-fit pool/distinct through the CLI: the manifest says what the k-means saw (every
    embedded record, 600, or one per group of copies) while the tails and copy rules left fewer
    to keep from, and kept + dropped = input."""
    out = tmp_path / f"{fit}.jsonl"
    args = ["select", str(sst2_600), "--scores", str(run_dir / "scores"), "-o", str(out)]
    tails = ["--signals", "information,generative", "--tails", "0.1:0.9", "--drop-near-duplicates"]
    assert (
        main([*args, "--budget", "0.1", "--method", "typical", *tails, "--typical-fit", fit, "-q"])
        == 0
    )
    selection = json.loads(out.with_name(out.name + ".manifest.json").read_text())["selection"]
    details = selection["details"]
    counts = selection["counts"]
    assert details["fit"] == fit
    copies = counts["dropped_by_reason"].get("duplicate_text", 0) + counts["dropped_by_reason"].get(
        "near_duplicate_text", 0
    )
    if fit == "pool":
        assert details["fitted"] == 600
    else:  # a group of copies is fitted once: at most as many left out as the rules dropped
        assert 600 - copies <= details["fitted"] < 600 and details["given_to_fill"] >= 0
    assert counts["kept"] == 60 and counts["kept"] + counts["dropped"] == 600
    assert counts["dropped_by_reason"]["tail"] > 0
    assert len(out.read_text().splitlines()) == 60


def test_select_keeping_no_near_duplicate_copy_on_real_scores(run_dir, sst2_600, tmp_path):
    """--near-duplicate-keep none through the CLI: every group that loses its later copies under
    keep-first loses its first too, and nothing else changes in the rules' drops."""
    args = ["select", str(sst2_600), "--scores", str(run_dir / "scores"), "--budget", "0.1"]
    args += ["--signals", "generative", "--drop-near-duplicates", "-q"]
    near = {}
    for keep in ("first", "none"):
        out = tmp_path / f"{keep}.jsonl"
        assert main([*args, "-o", str(out), "--near-duplicate-keep", keep]) == 0
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        counts = manifest["selection"]["counts"]
        assert counts["kept"] == 60 and counts["kept"] + counts["dropped"] == 600
        near[keep] = manifest["selection"]["duplicates"]["near"]
    assert near["first"]["groups"] > 0 and near["none"]["policy"] == "keep-none"
    assert near["none"]["groups"] == near["first"]["groups"]
    assert near["none"]["dropped"] == near["first"]["dropped"] + near["first"]["groups"]


def test_report_is_self_contained_html(run_dir):
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    # No external resources: no scripts, links, remote images or fonts.
    assert not re.search(r"<script|<link|src=|url\(|https?://", page)
    assert page.count("<svg") == 5 + 10  # 5 histograms, 10 pairs
    for name in ("information", "generative", "nll", "bpb", "semantic"):
        assert f"<b>{name}</b>" in page
    assert "kept + dropped = 600 = input" in page
    assert page.count("<tr><td>low") >= 4 and page.count("<tr><td>high") >= 4
    assert "Pearson" in page and "Spearman" in page


def test_report_command_without_selection(run_dir, tmp_path):
    out = tmp_path / "plain.html"
    assert main(["report", str(run_dir / "scores"), "-o", str(out), "-q"]) == 0
    page = out.read_text()
    assert "<h2>Selection</h2>" not in page and page.count("<svg") == 15


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    """Renders the page and checks the screenshot is not blank (skips without chromium)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (make report-check installs it)")
    png = tmp_path / "report.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={png}",
            "--window-size=1400,2400",
            (run_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert png.is_file(), proc.stderr.decode()[-2000:]
    image = pytest.importorskip("PIL.Image")
    pixels = np.asarray(image.open(png).convert("L"))
    assert pixels.std() > 10  # text, bars and points, not a blank page
