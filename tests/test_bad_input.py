"""Bad input: every record gets a documented flag (or a clear error naming it), never a crash,
and kept + dropped = input end to end through ``euds score`` + ``euds select``."""

from __future__ import annotations

import gzip
import hashlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import band_args
from euds import ScoreConfig, score
from euds.cli import main
from euds.engines.driver import ScoreSummary
from euds.io import RecordReader
from euds.records import RECORD_ERRORS
from euds.scores import ScoreDir, read_scores

GOOD = "a perfectly ordinary sentence about a film"

# (raw JSONL line, expected id (None: the row number), expected text (None: no text), expected
# reader flags)
CASES = [
    (b'{"id": "ok", "text": "a perfectly ordinary sentence about a film"}', "ok", GOOD, []),
    (b'{"id": "empty", "text": ""}', "empty", "", []),
    (b'{"id": "spaces", "text": "   \\n\\t  \\r\\n "}', "spaces", "   \n\t  \r\n ", []),
    (b'{"id": "latin1", "text": "caf\xe9 cr\xe8me"}', "latin1", None, ["invalid_utf8"]),
    (b'{"id": "surrogate", "text": "lone \\ud800 escape"}', "surrogate", None, ["invalid_utf8"]),
    (b'{"id": "lowsurr", "text": "\\udc80 low"}', "lowsurr", None, ["invalid_utf8"]),
    (b"this line is not json at all", None, None, ["invalid_json"]),
    (b'{"id": "trunc", "text": "cut off', None, None, ["invalid_json"]),
    (b'["an", "array", 1]', None, None, ["not_an_object"]),
    (b'"a bare string"', None, None, ["not_an_object"]),
    (b"null", None, None, ["not_an_object"]),
    (
        b'{"id": "notext", "body": "the text is under another key"}',
        "notext",
        None,
        ["missing_text"],
    ),
    (b'{"id": "nulltext", "text": null}', "nulltext", None, ["missing_text"]),
    (b'{"id": "number", "text": 42}', "number", None, ["non_string_text"]),
    (b'{"id": "float", "text": 4.5}', "float", None, ["non_string_text"]),
    (b'{"id": "list", "text": ["a", "b"]}', "list", None, ["non_string_text"]),
    (b'{"id": "dict", "text": {"a": "b"}}', "dict", None, ["non_string_text"]),
    (b'{"id": "bool", "text": true}', "bool", None, ["non_string_text"]),
    (b'{"id": 1.5, "text": "float id"}', None, "float id", ["invalid_id"]),
    (b'{"id": ["x"], "text": "list id"}', None, "list id", ["invalid_id"]),
    (b'{"id": true, "text": "bool id"}', None, "bool id", ["invalid_id"]),
    (
        b'{"id": "bad\xff\xfeid", "text": "undecodable id"}',
        None,
        "undecodable id",
        ["invalid_utf8"],
    ),
    (
        b'{"id": "ok", "text": "a perfectly ordinary sentence about a film"}',
        "ok",
        GOOD,
        ["duplicate_id"],
    ),
    (b'{"id": 77, "text": "int id"}', "77", "int id", []),
    (b'{"text": "no id at all"}', None, "no id at all", []),
    (b'{"id": null, "text": "null id"}', None, "null id", []),
    (b'{"id": "emptydup", "text": ""}', "emptydup", "", []),
    (b'{"id": "emptydup", "text": ""}', "emptydup", "", ["duplicate_id"]),
    (b'{"id": "dupbad", "text": 3}', "dupbad", None, ["non_string_text"]),
    # flags come in one order (euds.records.RECORD_ERRORS), not in the order they were found
    (b'{"id": "dupbad", "text": 3}', "dupbad", None, ["non_string_text", "duplicate_id"]),
    # the last of repeated keys counts, as for other JSON readers, and the record says so
    (b'{"id": "dk", "text": "first", "text": "last"}', "dk", "last", ["duplicate_key"]),
    # nested beyond euds.records.MAX_JSON_DEPTH: flagged, never a RecursionError
    (b'{"id": "deep", "text": ' + b"[" * 2000 + b"]" * 2000 + b"}", None, None, ["json_too_deep"]),
]
CASES = [(line, str(k) if rid is None else rid, t, f) for k, (line, rid, t, f) in enumerate(CASES)]
ROW_IDS = {k for k, (line, rid, _, _) in enumerate(CASES) if rid == str(k)}
UNSCORED = {k for k, (_, _, text, _) in enumerate(CASES) if not (text and text.strip())}


INFO = ("--signals", "information")  # the fast signal; the others need exported models


def cli(*args) -> int:
    """``euds ARGS...`` in-process; returns the exit code."""
    return main(band_args([str(a) for a in args]))


def score_info(path, out, **config) -> ScoreSummary:
    """``euds.score`` of the information signal only."""
    return score(path, out, ScoreConfig(signals=("information",), **config), progress=False)


def cases_file(tmp_path, blank_every: int = 0):
    """The CASES as a JSONL file; with ``blank_every``, a blank (or whitespace) line after
    every that many records. Returns (path, number of blank lines)."""
    out, blanks = [], 0
    for k, (line, *_) in enumerate(CASES):
        out.append(line + b"\n")
        if blank_every and k % blank_every == 0:
            out.append(b"\n" if blanks % 2 == 0 else b"   \t\r\n")
            blanks += 1
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b"".join(out))
    return path, blanks


def flags_of(table_flags: str) -> list[str]:
    return table_flags.split("|") if table_flags else []


def test_reader_flags_every_case(tmp_path):
    path, blanks = cases_file(tmp_path, blank_every=4)
    reader = RecordReader(path, batch_size=8)
    batches = list(reader)
    ids = [i for b in batches for i in b.ids]
    texts = [t for b in batches for t in b.texts]
    flags = [f for b in batches for f in b.flags]
    assert len(ids) == len(CASES)
    for k, (line, rid, text, expected) in enumerate(CASES):
        assert (ids[k], texts[k], flags[k]) == (rid, text, expected), (k, line)
    assert reader.stats.records == len(CASES)
    assert reader.stats.blank_lines == blanks > 0
    counted: dict[str, int] = {}
    for f in flags:
        for x in f:
            counted[x] = counted.get(x, 0) + 1
    assert reader.stats.flags == counted
    assert set(counted) <= set(RECORD_ERRORS)
    assert set(RECORD_ERRORS) - set(counted) == {"malformed_row"}  # CSV only, tested below


def test_score_table_flags_and_nan(tmp_path):
    path, _ = cases_file(tmp_path, blank_every=3)
    out = tmp_path / "scores"
    summary = score_info(path, out, batch_size=5, shard_size=10)
    table = read_scores(out).to_pylist()
    assert len(table) == len(CASES) == summary.records
    for k, (line, rid, text, expected) in enumerate(CASES):
        row = table[k]
        assert row["id"] == rid, line
        extra = ["empty_text"] if text is not None and not text.strip() else []
        assert flags_of(row["flags"]) == expected + extra, line
        if k in UNSCORED:
            assert math.isnan(row["information"]) and row["n_tokens"] == 0, line
        else:
            assert math.isfinite(row["information"]) and row["n_tokens"] > 0, line
        assert row["truncated"] is False
    assert summary.unscored == {"information": len(UNSCORED)}
    counted: dict[str, int] = {}
    for row in table:
        for f in flags_of(row["flags"]):
            counted[f] = counted.get(f, 0) + 1
    assert summary.flags == counted and counted["empty_text"] == 4
    # duplicate ids are still scored, and like the first occurrence
    assert table[22]["information"] == table[0]["information"]
    assert table[22]["n_tokens"] == table[0]["n_tokens"]
    # the records are counted with the blank lines left out, across the shards
    manifest = ScoreDir(out).manifest()
    assert manifest["status"] == "complete"
    n = len(CASES)
    assert [s["rows"] for s in manifest["shards"]] == [min(10, n - i) for i in range(0, n, 10)]
    assert manifest["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_empty_and_whitespace_text_give_nan_and_flag(tmp_path):
    texts = ["", " ", "\n", "\t\r\n  ", "\u00a0\u2009", "x"]
    path = tmp_path / "empty.jsonl"
    path.write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    )
    out = tmp_path / "empty"
    summary = score_info(path, out)
    assert summary.unscored == {"information": 5} and summary.flags == {"empty_text": 5}
    table = read_scores(out).to_pylist()
    for row in table[:-1]:
        assert math.isnan(row["information"])
        assert row["n_tokens"] == 0
        assert row["flags"] == "empty_text"
    assert table[-1]["flags"] == "" and table[-1]["n_tokens"] == 1
    assert table[-1]["information"] == 0.0


@pytest.mark.parametrize("budget", ["0.1", "0.3"])
def test_cases_end_to_end_through_cli(tmp_path, capsys, budget):
    path, _ = cases_file(tmp_path, blank_every=5)
    scores, out = tmp_path / "s", tmp_path / "kept.jsonl"
    assert (
        cli("score", path, "-o", scores, *INFO, "-q", "--batch-size", "4", "--shard-size", "8") == 0
    )
    assert len(ScoreDir(scores).shards()) == 4
    # every copy of a repeated text counts here (its own test is in test_select_methods)
    args = ("-q", "--budget", budget, "--keep-duplicates")
    assert cli("select", path, "--scores", scores, "-o", out, *args) == 0
    manifest = json.loads((tmp_path / "kept.jsonl.manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    n = len(CASES)
    assert counts["input"] == n == manifest["input"]["records"]
    assert counts["kept"] + counts["dropped"] == n
    assert counts["kept"] == round(float(budget) * n)
    assert sum(counts["dropped_by_reason"].values()) == counts["dropped"]
    assert counts["dropped_by_reason"]["unscored"] == len(UNSCORED)
    decisions = pq.read_table(tmp_path / "kept.jsonl.decisions.parquet").to_pylist()
    assert [d["id"] for d in decisions] == [c[1] for c in CASES]
    for k, d in enumerate(decisions):
        if k in UNSCORED:
            assert (d["kept"], d["reason"]) == (False, "unscored")
        else:
            assert d["reason"] in ("", "outside_interval")
            assert d["kept"] == (d["reason"] == "")
    # the output holds exactly the kept lines, byte for byte, in input order
    kept_lines = [CASES[k][0] + b"\n" for k, d in enumerate(decisions) if d["kept"]]
    assert out.read_bytes() == b"".join(kept_lines)
    assert manifest["output"]["records"] == counts["kept"]


def test_budget_over_scorable_share_is_a_clean_error(tmp_path, capsys):
    path, _ = cases_file(tmp_path)
    scores = tmp_path / "s"
    assert cli("score", path, "-o", scores, *INFO, "-q") == 0
    capsys.readouterr()
    code = cli(
        "select", path, "--scores", scores, "-o", tmp_path / "o.jsonl", "--budget", "0.9", "-q"
    )
    assert code == 2
    assert "lower the budget" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# -- strict mode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k", [k for k, c in enumerate(CASES) if c[3]], ids=lambda k: f"{k}-{'+'.join(CASES[k][3])}"
)
def test_strict_raises_naming_line_and_id(tmp_path, k):
    line, rid, _, expected = CASES[k]
    # the bad record after some good ones and a blank line (line numbers count every line)
    lines = [b'{"id": "g%d", "text": "fine text"}\n' % i for i in range(3)] + [b"\n"]
    if "duplicate_id" in expected:
        lines.append(b'{"id": "%s", "text": "the first one"}\n' % rid.encode())
    lines.append(line + b"\n")
    path = tmp_path / "strict.jsonl"
    path.write_bytes(b"".join(lines))
    row = len(lines) - 2  # records before it: all lines but the blank one
    want_id = str(row) if k in ROW_IDS else rid
    with pytest.raises(ValueError) as err:
        list(RecordReader(path, strict=True))
    assert str(err.value) == f"{path}:line {len(lines)}: record {want_id!r}: {', '.join(expected)}"
    # not strict: no error, every record read
    assert sum(len(b) for b in RecordReader(path)) == row + 1


def test_strict_accepts_good_and_empty_records(tmp_path, sst2_files):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'{"id": "a", "text": ""}\n\n{"id": "b", "text": "fine"}\n')
    assert sum(len(b) for b in RecordReader(path, strict=True)) == 2
    assert sum(len(b) for b in RecordReader(sst2_files["csv.gz"], strict=True)) > 0


def test_strict_cli_exit_code(tmp_path, capsys):
    path, _ = cases_file(tmp_path)
    scores = tmp_path / "s"
    assert cli("score", path, "-o", scores, *INFO, "--strict", "-q") == 2
    err = capsys.readouterr().err
    assert "euds score: error:" in err
    assert "line 4" in err and "'latin1'" in err and "invalid_utf8" in err
    # no scores are left behind: no shard, and nothing a selection would take
    assert not scores.exists()  # nothing was scored, nothing is left behind
    assert (
        cli("select", path, "--scores", scores, "-o", tmp_path / "o.jsonl", "--budget", "0.1") == 2
    )
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def _no_such_tokenizer(path):
    return ["--tokenizer", "/no/such/tokenizer.json"], [], "tokenizer file not found"


def _strict(path):
    return ["--strict"], [], "invalid_utf8"


def _wrong_text_field(path):
    path.write_text("".join(json.dumps({"id": i, "body": f"text {i}"}) + "\n" for i in range(10)))
    return [], ["--text-field", "body"], "fields seen"


@pytest.mark.parametrize("case", [_no_such_tokenizer, _strict, _wrong_text_field])
def test_failed_score_does_not_block_the_corrected_command(tmp_path, capsys, case):
    path, _ = cases_file(tmp_path)
    bad_args, fixed_args, message = case(path)
    scores = tmp_path / "s"
    assert cli("score", path, "-o", scores, *INFO, "-q", *bad_args) == 2
    assert message in capsys.readouterr().err
    code = cli("score", path, "-o", scores, *INFO, "-q", *fixed_args)
    assert code == 0, capsys.readouterr().err
    assert ScoreDir(scores).complete()


def test_strict_csv_malformed_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"id,text,label\na,hello,0\nb,too,many,fields\n")
    with pytest.raises(ValueError, match=r"line 3: record '1': malformed_row"):
        list(RecordReader(path, strict=True))


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_bad_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"id,text,label\n"
        b"a,hello there,0\n"
        b"b,too,many,fields\n"
        b"c\n"
        b'd,"quoted, with a comma",1\n'
        b"e,caf\xe9 latin-1,0\n"
        b"f,,1\n"
        b"a,duplicate,1\n"
    )
    reader = RecordReader(path)
    batch = next(iter(reader))
    assert batch.flags == [
        [],
        ["malformed_row"],
        ["malformed_row"],
        [],
        ["invalid_utf8"],
        [],
        ["duplicate_id"],
    ]
    assert batch.texts == ["hello there", None, None, "quoted, with a comma", None, "", "duplicate"]
    assert batch.ids[0] == "a" and batch.ids[3] == "d" and batch.ids[6] == "a"
    assert reader.stats.flags == {"malformed_row": 2, "invalid_utf8": 1, "duplicate_id": 1}
    scores = tmp_path / "bad"
    score_info(path, scores)
    table = read_scores(scores).to_pylist()
    assert [flags_of(r["flags"]) for r in table] == [
        [],
        ["malformed_row"],
        ["malformed_row"],
        [],
        ["invalid_utf8"],
        ["empty_text"],
        ["duplicate_id"],
    ]
    scored = [math.isfinite(r["information"]) for r in table]
    assert scored == [True, False, False, True, False, False, True]
    # end to end: the malformed rows are dropped as unscored, the output is valid CSV
    out = tmp_path / "out.csv"
    assert (
        cli("select", path, "--scores", scores, "-o", out, "-q", "--interval", "information=0:1")
        == 0
    )
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text())
    counts = manifest["selection"]["counts"]
    assert counts == {"input": 7, "kept": 3, "dropped": 4, "dropped_by_reason": {"unscored": 4}}
    kept = next(iter(RecordReader(out)))
    assert kept.ids == ["a", "d", "a"]


def test_csv_without_text_column(tmp_path):
    path = tmp_path / "notext.tsv"
    path.write_text("id\tsentence\tlabel\n1\thello\t0\n2\tworld\t1\n")
    with pytest.raises(ValueError, match=r"'text'.*fields seen: \['id', 'label', 'sentence'\]"):
        list(RecordReader(path))
    (_,) = list(RecordReader(path, text_field="sentence"))


# -- a wrong text field ------------------------------------------------------------------------


def test_text_field_missing_in_whole_first_batch(tmp_path, capsys):
    path = tmp_path / "body.jsonl"
    records = [{"id": i, "body": f"text {i}", "extra": 1} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=r"fields seen: \['body', 'extra', 'id'\]") as err:
        list(RecordReader(path))
    assert "'text'" in str(err.value) and str(path) in str(err.value)
    # also when the first batch is full and later records have it
    records += [{"id": 99, "text": "late"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match="no record of the first 4"):
        list(RecordReader(path, batch_size=4))
    # but not when some record of the first batch has it
    with_some = [{"id": "first", "text": "here"}, *records]
    path.write_text("".join(json.dumps(r) + "\n" for r in with_some))
    flags = [f for b in RecordReader(path, batch_size=4) for f in b.flags]
    assert flags.count(["missing_text"]) == 10
    # and the right field works; the CLI says what is wrong with exit code 2
    path.write_text("".join(json.dumps(r) + "\n" for r in records[:10]))
    assert next(t for b in RecordReader(path, text_field="body") for t in b.texts) == "text 0"
    # (the corrected command in the same output folder:
    # test_failed_score_does_not_block_the_corrected_command)
    assert cli("score", path, "-o", tmp_path / "s", *INFO, "-q") == 2
    assert "fields seen" in capsys.readouterr().err
    assert cli("score", path, "-o", tmp_path / "s2", *INFO, "-q", "--text-field", "body") == 0
    assert read_scores(tmp_path / "s2").column("id").to_pylist() == [str(i) for i in range(10)]


# -- Parquet -----------------------------------------------------------------------------------


def test_parquet_text_column_of_wrong_type(tmp_path, capsys):
    path = tmp_path / "int.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": [1, 2]}), path)
    with pytest.raises(ValueError, match=r"column 'text' has type int64, expected string"):
        list(RecordReader(path))
    assert cli("score", path, "-o", tmp_path / "s", *INFO, "-q") == 2
    assert "expected string" in capsys.readouterr().err
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), missing)
    with pytest.raises(ValueError, match=r"no column 'text'; columns: \['id', 'body'\]"):
        list(RecordReader(missing))


def test_parquet_null_text_and_large_string(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(
        pa.table(
            {
                "id": pa.array([1, None, 3], pa.int64()),
                "text": pa.array(["fine text", "also fine", None], pa.large_string()),
            }
        ),
        path,
    )
    batch = next(iter(RecordReader(path)))
    assert batch.ids == ["1", "1", "3"]  # a null id falls back to the row number
    assert batch.texts == ["fine text", "also fine", None]
    assert batch.flags == [[], ["duplicate_id"], ["missing_text"]]


# -- blank lines -------------------------------------------------------------------------------


def test_blank_lines_are_not_records(tmp_path):
    path = tmp_path / "blank.jsonl.gz"
    raw = b'\n{"id": "a", "text": "x y"}\n\n   \n\t\n{"id": "b", "text": "z"}\n\n'
    path.write_bytes(gzip.compress(raw))
    reader = RecordReader(path)
    batches = list(reader)
    assert [i for b in batches for i in b.ids] == ["a", "b"]
    assert reader.stats.blank_lines == 5
    assert reader.stats.records == 2
    only_blank = tmp_path / "only_blank.jsonl"
    only_blank.write_bytes(b"\n\n  \n")
    reader = RecordReader(only_blank)
    assert list(reader) == []
    assert reader.stats.blank_lines == 3


def test_empty_files_are_a_clean_error(tmp_path, capsys):
    """A file without records (empty, only blank lines, only a CSV header) is an error that
    names it, in `euds score`; nothing a selection would take is left."""
    for name, content in (("e.jsonl", b""), ("b.jsonl", b"\n\n"), ("h.csv", b"id,text\n")):
        path = tmp_path / name
        path.write_bytes(content)
        scores, out = tmp_path / f"{name}.scores", tmp_path / f"out_{name}"
        assert cli("score", path, "-o", scores, *INFO, "-q") == 2
        err = capsys.readouterr().err
        assert err.startswith("euds score: error:") and f"{path} holds no records" in err
        assert not any(p.name.startswith("part-") for p in tmp_path.glob(f"{name}.scores/*"))
        assert cli("select", path, "--scores", scores, "-o", out, "-q", "--budget", "0.5") == 2
        err = capsys.readouterr().err
        assert err.startswith("euds select: error:")
        assert "not found" in err and "euds score" in err
        assert not out.exists()


# -- huge documents ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [128, 16])
def test_ten_megabyte_document(tmp_path, ng_posts, max_tokens):
    doc = "\n\n".join(ng_posts)
    doc = (doc * (10_000_000 // len(doc) + 1))[:10_000_000]
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({"id": "small", "text": "a short one"}) + "\n")
        f.write(json.dumps({"id": "huge", "text": doc}) + "\n")
        f.write(json.dumps({"id": "nospace", "text": "x" * 10_000_000}) + "\n")
    out = tmp_path / "huge"
    # What keeps this fast (the text is cut before it is tokenised) is asserted in the next
    # test; no wall-clock bound here, which a loaded machine fails.
    summary = score_info(path, out, max_tokens=max_tokens)
    table = read_scores(out).to_pylist()
    assert [r["truncated"] for r in table] == [False, True, True]
    assert [r["n_tokens"] for r in table][1:] == [max_tokens - 1] * 2
    assert all(math.isfinite(r["information"]) for r in table)
    assert [r["flags"] for r in table] == ["", "", ""]
    assert summary.truncated == 2


def test_truncation_keeps_the_tokens_of_the_whole_text(tokenizer, ng_posts):
    """A ~1 MB realistic text: the ids kept are the first max_tokens - 1 of the full text's."""
    from euds.tokenizer import TextTokenizer

    text = "\n\n".join(ng_posts)
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    full = tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
    assert len(full) > 100_000
    for max_tokens in (2, 17, 128, 1000, 4096):
        tok = tokenizer if max_tokens == 128 else TextTokenizer(tokenizer.path, max_tokens)
        assert tok.char_window < len(text)  # the text is cut before tokenising
        batch = tok.encode([text])
        assert batch.n_tokens.tolist() == [max_tokens - 1]
        assert batch.truncated.tolist() == [True]
        assert batch.row(0).tolist() == full[: max_tokens - 1], max_tokens


def test_truncation_at_many_cut_points(tokenizer, ng_posts):
    """Small windows cut realistic text at many places: the kept ids never change."""
    from euds.tokenizer import TextTokenizer

    text = "\n\n".join(ng_posts)
    rng = np.random.default_rng(1234)
    toks = {k: TextTokenizer(tokenizer.path, k) for k in (2, 3, 5, 9, 33)}
    texts, expected, tok_of = [], [], []
    for _ in range(300):
        k = int(rng.choice(list(toks)))
        window = toks[k].char_window
        start = int(rng.integers(0, len(text) - 4 * window))
        s = text[start : start + int(rng.integers(window + 1, 3 * window))]
        texts.append(s)
        expected.append(tokenizer.tokenizer.encode(s, add_special_tokens=False).ids[: k - 1])
        tok_of.append(k)
    for s, ids, k in zip(texts, expected, tok_of, strict=True):
        batch = toks[k].encode([s])
        assert batch.row(0).tolist() == ids
        assert batch.truncated.tolist() == [True]


@pytest.mark.parametrize(
    "text",
    [
        "hello " + "=" * 30_000 + " world",
        "hello" + " " * 30_000 + "world",
        "ab\u00a0" * 20_000,
        "!!\x1c" * 20_000,
        "x\n\n\n" * 20_000,
        "1" * 30_000,
        "\U0001f600" * 30_000,
        "日本語" * 10_000,
        "\t" * 30_000 + "x",
    ],
    ids=["equals", "spaces", "nbsp", "sep", "newlines", "digits", "emoji", "cjk", "tabs"],
)
def test_truncation_adversarial_texts(tokenizer, text):
    from euds.tokenizer import TextTokenizer

    for k in (2, 5, 128):
        tok = tokenizer if k == 128 else TextTokenizer(tokenizer.path, k)
        full = tok.tokenizer.encode(text, add_special_tokens=False).ids
        batch = tok.encode([text])
        assert batch.row(0).tolist() == full[: k - 1]
        assert batch.truncated.tolist() == [len(full) > k - 1]
