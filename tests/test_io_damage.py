"""The readers on damaged input (euds.io): a bad record becomes a flagged record and the read
goes on; a bad file becomes one InputError (a ValueError) naming the file and where."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import read_all as _read_all
from euds import io as eio
from euds import records as erec
from euds.io import RecordReader
from euds.output import write_selected
from euds.records import parse_jsonl_line


def records(n: int) -> list[dict]:
    # varied words so that gzip output spans several read chunks
    return [
        {"id": f"r{i}", "text": " ".join(f"w{(i * 7919 + k * 104729) % 100003}" for k in range(12))}
        for i in range(n)
    ]


def jsonl(recs: list[dict], end: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(r).encode() + end for r in recs)


def csv_text(recs: list[dict], delimiter: str = ",") -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delimiter)
    w.writerow(["id", "text"])
    w.writerows([[r["id"], r["text"]] for r in recs])
    return buf.getvalue().encode()


def flag_of(value) -> str | None:
    """The flag ``parse_jsonl_line`` + ``interpret_record`` give a lone line, or None."""
    _, _, flags = erec.interpret_record(value, 0, "text", "id")
    return "|".join(flags) or None


# -- 1. JSON nested too deep -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_line_is_flagged(tmp_path, depth):
    deep = b"[" * depth + b"]" * depth
    assert flag_of(parse_jsonl_line(deep)) == "json_too_deep"
    assert flag_of(parse_jsonl_line(b'{"id": "d", "text": "x", "v": ' + deep + b"}")) == (
        "json_too_deep"
    )
    # an unclosed deep line (also invalid) is flagged, not a crash
    assert flag_of(parse_jsonl_line(b"{" * depth)) in ("json_too_deep", "invalid_json")
    path = tmp_path / "deep.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "before"}\n{"id": "deep", "v": '
        + deep
        + b'}\n{"id": "c", "text": "after"}\n'
    )
    reader, ids, texts, flags = _read(path, batch_size=2)
    assert ids == ["a", "1", "c"]
    assert texts == ["before", None, "after"]
    assert flags == [[], ["json_too_deep"], []]
    assert reader.stats.flags == {"json_too_deep": 1}
    # a resumed run reads past it too
    _, ids, _, flags = _read(path, skip=1)
    assert ids == ["1", "c"] and flags == [["json_too_deep"], []]
    with pytest.raises(ValueError, match=r"line 2: record '1': json_too_deep"):
        _read(path, strict=True)


def test_json_depth_limit_is_fixed_and_ignores_brackets_in_strings():
    limit = erec.MAX_JSON_DEPTH
    ok = b'{"id": "x", "text": "t", "v": ' + b"[" * (limit - 1) + b"]" * (limit - 1) + b"}"
    assert flag_of(parse_jsonl_line(ok)) is None
    over = b'{"id": "x", "text": "t", "v": ' + b"[" * limit + b"]" * limit + b"}"
    assert flag_of(parse_jsonl_line(over)) == "json_too_deep"
    # brackets inside strings (escaped quotes too) do not count
    text = "[{" * 3000 + '\\"[[[' + "]" * 10
    line = json.dumps({"id": "s", "text": text}).encode()
    assert erec.interpret_record(parse_jsonl_line(line), 0, "text", "id") == ("s", text, [])


# -- 2. damaged gzip -----------------------------------------------------------------------------


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "flipped":
        b = bytearray(data)
        for k in range(len(b) // 2, len(b) // 2 + 8):
            b[k] ^= 0xA5
        return bytes(b)
    if how == "not_gzip":
        return b"plain text, not gzip\n" * 10
    if how == "garbage_after":
        return data + b"garbage"
    raise AssertionError(how)


@pytest.mark.parametrize("fmt", ["jsonl.gz", "csv.gz", "tsv.gz"])
@pytest.mark.parametrize("how", ["truncated", "flipped", "not_gzip", "garbage_after"])
def test_damaged_gzip_is_one_clear_error(tmp_path, fmt, how):
    recs = records(3000)
    plain = jsonl(recs) if fmt == "jsonl.gz" else csv_text(recs, "\t" if fmt == "tsv.gz" else ",")
    data = _damage(gzip.compress(plain), how)
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(data)
    with pytest.raises(eio.InputError) as err:
        _read(path)
    e = err.value
    assert isinstance(e, ValueError)
    assert e.path == path and str(path) in str(e)
    assert isinstance(e.offset, int) and 0 <= e.offset <= len(data)
    assert f"compressed byte {e.offset}" in str(e)
    assert isinstance(e.line, int) and e.line >= 0
    if how == "truncated":
        assert e.offset == len(data)  # it ran out at the end of the file
        assert e.line > 100 and f"line {e.line}" in str(e)
    # the selection writer re-reads the input the same way, and leaves nothing behind
    out = tmp_path / "out" / f"sel.{fmt}"
    out.parent.mkdir()
    with pytest.raises(eio.InputError, match="compressed byte"):
        write_selected(path, out, np.ones(len(recs), dtype=bool))
    assert list(out.parent.iterdir()) == []


def test_input_error_pickles(tmp_path):
    # Ray sends exceptions between processes
    e = eio.InputError(tmp_path / "x.jsonl.gz", "corrupt", line=3, offset=10)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.path, back.line, back.offset) == (
        eio.InputError,
        str(e),
        e.path,
        3,
        10,
    )


# -- 3. Parquet with repeated column names ------------------------------------------------------


def _dup_table(names):
    cols = {
        "id": pa.array(["a", "b", "c"]),
        "text": pa.array(["one", "two", "three"]),
        "label": pa.array([1, 2, 3]),
    }
    arrays = [cols[n] if n in cols else pa.array([7, 8, 9]) for n in names]
    return pa.Table.from_arrays(arrays, names=names)


@pytest.mark.parametrize("column", ["text", "id"])
def test_parquet_repeated_text_or_id_column_is_an_error(tmp_path, column):
    path = tmp_path / "dup.parquet"
    names = ["id", "text", "label", column]
    table = _dup_table(names)
    if column == "text":  # the second one holds other texts
        table = table.set_column(3, "text", pa.array(["x", "y", "z"]))
    pq.write_table(table, path)
    with pytest.raises(eio.InputError, match=rf"column '{column}' appears 2 times") as err:
        _read(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_parquet_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "bad.parquet"
    pq.write_table(_dup_table(["id", "text", "label"]), path)
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"PAR1 not really", "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    with pytest.raises(eio.InputError, match="not a readable Parquet file") as err:
        _read(path)
    assert err.value.path == path
    with pytest.raises(eio.InputError, match="not a readable Parquet file"):
        write_selected(path, tmp_path / "out.parquet", np.ones(3, dtype=bool))


def test_parquet_repeated_other_column_is_read(tmp_path):
    path = tmp_path / "dup.parquet"
    pq.write_table(_dup_table(["id", "label", "text", "label"]), path)
    _, ids, texts, flags = _read(path)
    assert ids == ["a", "b", "c"] and texts == ["one", "two", "three"]
    assert flags == [[], [], []]
    # and the selection keeps both columns
    out = tmp_path / "out.parquet"
    assert write_selected(path, out, np.array([True, False, True])) == 2
    assert pq.ParquetFile(out).schema_arrow.names == ["id", "label", "text", "label"]


def test_csv_repeated_text_column_is_an_error(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_bytes(b"id,text,text\na,one,uno\n")
    with pytest.raises(eio.InputError, match=r"column 'text' appears 2 times"):
        _read(path)
    path.write_bytes(b"id,text,label,label\na,one,1,2\n")
    _, ids, texts, _ = _read(path)
    assert ids == ["a"] and texts == ["one"]


# -- 4. an unterminated CSV quote ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "delimiter"), [("q.csv", ","), ("q.tsv", "\t"), ("q.csv.gz", ",")]
)
def test_csv_unterminated_quote_is_refused(tmp_path, name, delimiter):
    d = delimiter
    lines = [f"id{d}text"] + [f"r{i}{d}row number {i}" for i in range(10)]
    lines[4] = f'r3{d}"an open quote that never closes'
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(eio.InputError, match=r"line 5.*quote") as err:
        _read(path)
    assert err.value.line == 5 and str(path) in str(err.value)
    with pytest.raises(eio.InputError, match=r"line 5"):
        write_selected(path, tmp_path / f"out.{name}", np.ones(10, dtype=bool))


def test_csv_stray_quote_mid_file_is_flagged_not_merged(tmp_path):
    # a quote opens on line 3 and a later quote closes it: the csv module would read lines 3-5 as
    # one record with a plausible text; it is one malformed_row instead, and the rows after it
    # are read as usual
    path = tmp_path / "stray.csv"
    path.write_bytes(b'id,text\na,fine\nb,"opens here\nc,swallowed\nd,"closes here\ne,after\n')
    _, ids, texts, flags = _read(path)
    assert ids == ["a", "1", "e"]
    assert texts == ["fine", None, "after"]
    assert flags == [[], ["malformed_row"], []]
    with pytest.raises(ValueError, match=r"line 3: record '1': malformed_row"):
        _read(path, strict=True)
    out = tmp_path / "out.csv"
    assert write_selected(path, out, np.array([True, False, True])) == 2
    assert out.read_bytes() == b"id,text\r\na,fine\r\ne,after\r\n"


def test_csv_multiline_quoted_fields_still_work(tmp_path):
    path = tmp_path / "ml.csv"
    path.write_bytes(b'id,text\na,"two\nlines"\nb,"with ""quotes""\r\nand CRLF"\nc,"last\nrow"')
    _, ids, texts, flags = _read(path)
    assert ids == ["a", "b", "c"]
    assert texts == ["two\nlines", 'with "quotes"\r\nand CRLF', "last\nrow"]
    assert flags == [[], [], []]


# -- 5. CR-only line endings -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cr.jsonl", "cr.jsonl.gz"])
def test_jsonl_with_cr_line_endings(tmp_path, name):
    recs = records(50)
    data = jsonl(recs, b"\r")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    _, ids, texts, flags = _read(path)
    assert ids == [r["id"] for r in recs]
    assert texts == [r["text"] for r in recs]
    assert flags == [[] for _ in recs]
    keep = np.arange(50) % 3 == 0
    out = tmp_path / "out.jsonl"
    assert write_selected(path, out, keep, gzip_output=False) == int(keep.sum())
    lines = data.split(b"\r")[:-1]
    assert out.read_bytes() == b"".join(ln + b"\r" for ln, k in zip(lines, keep, strict=True) if k)


def test_jsonl_line_endings_decided_on_the_first_64_kib(tmp_path):
    path = tmp_path / "long.jsonl"
    # a CRLF split by the 64 KiB the line ending is decided on: LF line endings
    first = b'{"text": "' + b"a" * (65535 - 12) + b'"}'
    assert len(first + b"\r") == 1 << 16
    path.write_bytes(first + b"\r\n" + b'{"text": "b",\r"id": "z"}\r\n')
    _, ids, texts, flags = _read(path)
    assert ids == ["0", "z"] and [len(t) for t in texts] == [65535 - 12, 1]
    assert flags == [[], []]
    # a first line longer than that, LF-terminated, with no CR in the first 64 KiB
    path.write_bytes(b'{"text": "' + b"a" * 70_000 + b'",\r"id": "q"}\n{"text": "b"}\n')
    _, ids, texts, _ = _read(path)
    assert ids == ["q", "1"] and [len(t) for t in texts] == [70_000, 1]
    # CR line endings with lines longer than a read chunk
    recs = [{"id": str(i), "text": "w" * (i * 40_000)} for i in range(6)]
    path.write_bytes(b"\r".join(json.dumps(r).encode() for r in recs))
    _, ids, texts, _ = _read(path)
    assert ids == [r["id"] for r in recs] and texts == [r["text"] for r in recs]


def test_jsonl_mixed_line_endings(tmp_path):
    # CRLF files keep working, and a lone CR within a line (JSON whitespace) stays one record
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "x"}\r\n{"id": "b",\r"text": "y"}\n\r\n{"id": "c", "text": "z"}'
    )
    _, ids, texts, flags = _read(path)
    assert ids == ["a", "b", "c"] and texts == ["x", "y", "z"] and flags == [[], [], []]


# -- 6. repeated JSON keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b'{"id": "a", "text": "first", "text": "second"}', "second"),
        (b'{"id": "a", "text": "t", "meta": {"k": 1, "k": 2}}', "t"),
        (b'{"id": "a", "text": "t", "x": 1, "\\u0078": 2}', "t"),  # the same key, escaped
    ],
)
def test_repeated_json_key_is_flagged(tmp_path, line, text):
    path = tmp_path / "dup.jsonl"
    path.write_bytes(b'{"id": "ok", "text": "fine", "meta": {"k": 1}}\n' + line + b"\n")
    reader, ids, texts, flags = _read(path)
    assert ids == ["ok", "a"]
    assert texts == ["fine", text]  # the last value, as every JSON reader keeps it
    assert flags == [[], ["duplicate_key"]]
    assert reader.stats.flags == {"duplicate_key": 1}
    assert "duplicate_key" in erec.RECORD_ERRORS
    order = list(erec.RECORD_ERRORS)
    assert order.index("duplicate_key") < order.index("duplicate_id")


@pytest.mark.parametrize(
    "line",
    [b'{"text": "a", "text": "b"} trailing', b'[{"k": 1, "k": 2}, oops', b'{"a": 1, "a": 2'],
)
def test_repeated_key_in_invalid_json_is_invalid_json(line):
    assert flag_of(parse_jsonl_line(line)) == "invalid_json"


def test_repeated_key_and_id_flags_in_documented_order(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y", "text": 5}\n')
    _, _, texts, flags = _read(path)
    assert texts == ["x", None]
    assert flags[1] == sorted(flags[1], key=erec.flag_order)
    assert set(flags[1]) == {"non_string_text", "duplicate_key", "duplicate_id"}


# -- 7. Parquet text column types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda v: pa.array(v).dictionary_encode(),
        lambda v: pa.array(v, pa.large_string()).dictionary_encode(),
        lambda v: pa.array(v, pa.large_string()),
        lambda v: pa.array(v, pa.string_view()),
    ],
    ids=["dictionary", "dictionary_large", "large_string", "string_view"],
)
def test_parquet_text_column_encodings(tmp_path, make):
    texts = ["a film", None, "a film", "another"]
    path = tmp_path / "enc.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "text": make(texts)}), path)
    _, ids, got, flags = _read(path)
    assert ids == ["a", "b", "c", "d"] and got == texts
    assert flags == [[], ["missing_text"], [], []]


# -- 8. input identity in the same pass ----------------------------------------------------------


def _all_formats(tmp_path) -> dict[str, bytes]:
    recs = records(300)
    files = {
        "jsonl": jsonl(recs),
        "jsonl.gz": gzip.compress(jsonl(recs)),
        "csv": csv_text(recs),
        "csv.gz": gzip.compress(csv_text(recs)),
        "tsv": csv_text(recs, "\t"),
    }
    out = {}
    for fmt, data in files.items():
        (tmp_path / f"in.{fmt}").write_bytes(data)
        out[fmt] = tmp_path / f"in.{fmt}"
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "in.parquet", row_group_size=64)
    out["parquet"] = tmp_path / "in.parquet"
    return out


@pytest.mark.parametrize("skip", [0, 1, 150, 299, 300])
def test_reader_sha256_of_the_bytes_read(tmp_path, skip):
    for fmt, path in _all_formats(tmp_path).items():
        reader = RecordReader(path, skip=skip, batch_size=32)
        assert reader.sha256 is None
        n = sum(len(b) for b in reader)
        assert n == 300 - skip
        assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest(), fmt
        # a pass that stops early has read only part of the file: no hash
        if skip < 250:
            it = iter(reader)
            next(it)
            assert reader.sha256 is None, fmt
            it.close()


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv", "parquet"])
@pytest.mark.parametrize("edit", ["append", "same_size"])
def test_input_changed_while_read_is_an_error(tmp_path, fmt, edit):
    path = _all_formats(tmp_path)[fmt]
    reader = RecordReader(path, batch_size=16)
    it = iter(reader)
    next(it)
    st = path.stat()
    if edit == "append":
        with open(path, "ab") as f:
            f.write(b"\n")
    else:  # rewritten in place with the same size: only the mtime tells
        data = bytearray(path.read_bytes())
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(eio.InputError, match="changed while it was being read") as err:
        list(it)
    assert str(path) in str(err.value)
    assert reader.sha256 is None


def test_input_deleted_while_read_is_an_error(tmp_path):
    path = _all_formats(tmp_path)["jsonl"]
    it = iter(RecordReader(path, batch_size=16))
    next(it)
    path.unlink()
    with pytest.raises(eio.InputError, match="changed while it was being read"):
        list(it)


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv", "parquet"])
def test_write_selected_checks_the_expected_sha256(tmp_path, fmt):
    path = _all_formats(tmp_path)[fmt]
    reader = RecordReader(path)
    list(reader)
    st = path.stat()
    assert (reader.file_size, reader.file_mtime_ns) == (st.st_size, st.st_mtime_ns)
    keep = np.arange(300) % 2 == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert write_selected(path, out_dir / path.name, keep, sha256=reader.sha256) == 150
    (out_dir / path.name).unlink()
    with pytest.raises(eio.InputError, match="sha256"):
        write_selected(path, out_dir / path.name, keep, sha256="0" * 64)
    assert list(out_dir.iterdir()) == []


def _read(path, **kwargs):
    reader, _, ids, texts, flags = _read_all(path, **kwargs)
    return reader, ids, texts, flags
