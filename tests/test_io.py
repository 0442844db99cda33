"""Readers and the selection writer (euds.io) on real SST-2 records in every input format."""

from __future__ import annotations

import csv
import gzip
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import read_all
from euds.io import RecordReader, detect_format, read_batches, resolve_format
from euds.output import write_selected

FORMATS = ["jsonl", "jsonl.gz", "csv", "csv.gz", "tsv", "parquet"]


def output_records(path, fmt: str) -> list[dict]:
    """The records of a written file as dicts of strings (CSV) or native values."""
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    raw = path.read_bytes()
    if fmt.endswith(".gz"):
        raw = gzip.decompress(raw)
    if fmt.startswith("jsonl"):
        return [json.loads(line) for line in raw.splitlines()]
    delimiter = "\t" if fmt.startswith("tsv") else ","
    rows = list(csv.reader(io.StringIO(raw.decode(), newline=""), delimiter=delimiter))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def as_written(records: list[dict], fmt: str) -> list[dict]:
    """What ``output_records`` gives back for these input records."""
    if fmt.startswith(("csv", "tsv")):
        return [{k: str(v) for k, v in r.items()} for r in records]
    return records


# -- detect_format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", ("jsonl", False)),
        ("a.jsonl.gz", ("jsonl", True)),
        ("A.JSONL.GZ", ("jsonl", True)),
        ("dir.csv/a.ndjson", ("jsonl", False)),
        ("a.ndjson.gz", ("jsonl", True)),
        ("a.csv", ("csv", False)),
        ("a.csv.gz", ("csv", True)),
        ("a.tsv", ("tsv", False)),
        ("a.tsv.gz", ("tsv", True)),
        ("a.parquet", ("parquet", False)),
        ("a.pq", ("parquet", False)),
        ("my.data.v2.csv", ("csv", False)),
    ],
)
def test_detect_format(name, expected):
    assert detect_format(name) == expected


@pytest.mark.parametrize(
    "name", ["a.json", "a.txt", "a", "a.gz", "a.parquet.gz", "a.jsonl.bz2", "a.csv.zip", "jsonl"]
)
def test_detect_format_unknown_extension(name):
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(name)


def test_resolve_format_explicit_wins():
    assert resolve_format("data.txt", "jsonl", None) == ("jsonl", False)
    assert resolve_format("data.txt.gz", "csv", None) == ("csv", True)
    assert resolve_format("a.jsonl", None, True) == ("jsonl", True)
    with pytest.raises(ValueError, match="format must be one of"):
        resolve_format("a.jsonl", "xml", None)


def test_reader_explicit_format_on_unknown_name(tmp_path, sst2_files, sst2_records):
    path = tmp_path / "records.txt"
    path.write_bytes(sst2_files["jsonl"].read_bytes())
    with pytest.raises(ValueError, match="cannot tell the format"):
        RecordReader(path)
    _, _, ids, texts, _ = read_all(path, format="jsonl")
    assert ids == [r["id"] for r in sst2_records]
    assert texts == [r["text"] for r in sst2_records]


# -- RecordReader ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_reads_every_format(fmt, sst2_files, sst2_records):
    reader, _, ids, texts, flags = read_all(sst2_files[fmt])
    assert ids == [r["id"] for r in sst2_records]
    assert texts == [r["text"] for r in sst2_records]
    assert flags == [[] for _ in sst2_records]
    assert reader.stats.records == len(sst2_records)
    assert reader.stats.flags == {}
    assert reader.stats.blank_lines == 0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch_size", [1, 7, 64, 200, 10_000])
def test_batches_bounded_and_start_right(fmt, batch_size, sst2_files, sst2_records):
    n = len(sst2_records)
    _, batches, ids, _, _ = read_all(sst2_files[fmt], batch_size=batch_size)
    sizes = [len(b) for b in batches]
    assert all(1 <= s <= batch_size for s in sizes)
    assert sum(sizes) == n
    # every batch but the last is full
    assert all(s == batch_size for s in sizes[:-1])
    assert len(batches) == -(-n // batch_size)
    starts = [b.start for b in batches]
    assert starts == list(np.cumsum([0, *sizes[:-1]]))
    for b in batches:
        assert b.ids == [r["id"] for r in sst2_records[b.start : b.start + len(b)]]
        assert len(b.texts) == len(b.flags) == len(b)
    assert ids == [r["id"] for r in sst2_records]


def test_reader_is_reiterable_and_read_batches(sst2_files, sst2_records):
    reader = RecordReader(sst2_files["jsonl.gz"], batch_size=50)
    first = [i for b in reader for i in b.ids]
    second = [i for b in reader for i in b.ids]
    assert first == second == [r["id"] for r in sst2_records]
    assert reader.stats.records == len(sst2_records)
    via = [i for b in read_batches(sst2_files["csv"], batch_size=33) for i in b.ids]
    assert via == first


@pytest.mark.parametrize("fmt", FORMATS)
def test_ids_are_row_numbers_without_id_field(fmt, sst2_files, sst2_records):
    n = len(sst2_records)
    _, _, ids, _, flags = read_all(sst2_files[fmt], id_field=None, batch_size=37)
    assert ids == [str(i) for i in range(n)]
    _, _, ids2, _, flags2 = read_all(sst2_files[fmt], id_field="no_such_field", batch_size=37)
    assert ids2 == ids
    assert flags == flags2 == [[] for _ in range(n)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_text_and_id_fields(fmt, sst2_files, sst2_records):
    # text_field="id": the ids are strings in every format
    _, _, _, texts, _ = read_all(sst2_files[fmt], text_field="id", id_field=None)
    assert texts == [r["id"] for r in sst2_records]


def test_integer_ids_become_strings(tmp_path):
    records = [{"id": 10 + 3 * i, "text": f"text number {i}"} for i in range(20)]
    records[5]["id"] = 2**62  # large ints stay exact
    jsonl = tmp_path / "int_ids.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "int_ids.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    assert pa.types.is_int64(pq.read_schema(parquet).field("id").type)
    for path in (jsonl, parquet):
        _, _, ids, texts, flags = read_all(path)
        assert ids == [str(r["id"]) for r in records]
        assert all(isinstance(i, str) for i in ids)
        assert texts == [r["text"] for r in records]
        assert flags == [[] for _ in records]


def test_parquet_int32_and_string_ids(tmp_path):
    path = tmp_path / "ids.parquet"
    pq.write_table(
        pa.table({"id": pa.array([3, 1, 2], pa.int32()), "text": ["a b", "c", "d e f"]}), path
    )
    _, _, ids, _, _ = read_all(path)
    assert ids == ["3", "1", "2"]


def test_reader_rejects_bad_arguments(tmp_path, sst2_files):
    with pytest.raises(ValueError, match="not found"):
        RecordReader(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="batch_size"):
        RecordReader(sst2_files["jsonl"], batch_size=0)
    with pytest.raises(ValueError, match="text_field"):
        RecordReader(sst2_files["jsonl"], text_field="")


def test_csv_quoting_and_multiline_fields(tmp_path):
    records = [
        {"id": "q1", "text": 'a "quoted" word, and a comma'},
        {"id": "q2", "text": "two\nlines\r\nand CRLF"},
        {"id": "q3", "text": "tab\tinside"},
        {"id": "q4", "text": "ünïcödé ✓ 😀"},
    ]
    for name, delim in (("q.csv", ","), ("q.tsv", "\t")):
        path = tmp_path / name
        buf = io.StringIO(newline="")
        w = csv.writer(buf, delimiter=delim)
        w.writerow(["id", "text"])
        w.writerows([[r["id"], r["text"]] for r in records])
        path.write_bytes(buf.getvalue().encode())
        _, _, ids, texts, flags = read_all(path)
        assert ids == [r["id"] for r in records]
        assert texts == [r["text"] for r in records]
        assert flags == [[] for _ in records]


def test_csv_large_field(tmp_path):
    big = "word " * 100_000  # 500 kB, over the csv module's default field limit
    path = tmp_path / "big.csv"
    path.write_text(f"id,text\nbig,{big}\nsmall,tiny\n")
    _, _, ids, texts, _ = read_all(path)
    assert ids == ["big", "small"]
    assert texts == [big, "tiny"]


# -- write_selected ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_all_reproduces_input(fmt, tmp_path, sst2_files, sst2_records):
    src = sst2_files[fmt]
    out = tmp_path / src.name
    n = len(sst2_records)
    written = write_selected(src, out, np.ones(n, dtype=bool))
    assert written == n
    assert output_records(out, fmt) == as_written(sst2_records, fmt)
    if fmt == "jsonl":
        assert out.read_bytes() == src.read_bytes()
    if fmt.endswith(".gz"):
        assert gzip.decompress(out.read_bytes()) == gzip.decompress(src.read_bytes())
    if fmt == "parquet":
        a, b = pq.read_table(src), pq.read_table(out)
        assert b.schema.equals(a.schema, check_metadata=True)
        assert b.equals(a)
    # and euds reads back the same records
    _, _, ids, texts, _ = read_all(out)
    assert ids == [r["id"] for r in sst2_records]
    assert texts == [r["text"] for r in sst2_records]


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_subset_in_order(fmt, tmp_path, sst2_files, sst2_records):
    src = sst2_files[fmt]
    n = len(sst2_records)
    keep = np.random.default_rng(7).random(n) < 0.3
    keep[0] = keep[-1] = True
    out = tmp_path / src.name
    written = write_selected(src, out, keep, batch_size=16)
    expected = [r for r, k in zip(sst2_records, keep, strict=True) if k]
    assert written == int(keep.sum()) == len(expected)
    assert output_records(out, fmt) == as_written(expected, fmt)
    if fmt == "jsonl":
        lines = src.read_bytes().splitlines(keepends=True)
        assert out.read_bytes() == b"".join(ln for ln, k in zip(lines, keep, strict=True) if k)


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_none(fmt, tmp_path, sst2_files, sst2_records):
    src = sst2_files[fmt]
    out = tmp_path / src.name
    assert write_selected(src, out, np.zeros(len(sst2_records), dtype=bool)) == 0
    assert output_records(out, fmt) == []
    if fmt == "parquet":
        assert pq.read_schema(out).equals(pq.read_schema(src))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("delta", [-1, 1, -150])
def test_write_wrong_keep_length_raises(fmt, delta, tmp_path, sst2_files, sst2_records):
    src = sst2_files[fmt]
    out = tmp_path / src.name
    keep = np.ones(len(sst2_records) + delta, dtype=bool)
    with pytest.raises(ValueError, match=f"has {len(sst2_records)} records"):
        write_selected(src, out, keep)
    # nothing is left behind: neither the output nor a temporary file
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["jsonl.gz", "csv.gz"])
def test_gz_output_is_deterministic(fmt, tmp_path, sst2_files, sst2_records):
    src = sst2_files[fmt]
    keep = np.arange(len(sst2_records)) % 3 == 0
    a, b = tmp_path / f"a.{fmt}", tmp_path / "other" / f"b.{fmt}"
    write_selected(src, a, keep)
    write_selected(src, b, keep)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[:2] == b"\x1f\x8b"


def test_gzip_output_override(tmp_path, sst2_files, sst2_records):
    n = len(sst2_records)
    out = tmp_path / "plain.jsonl"
    write_selected(sst2_files["jsonl.gz"], out, np.ones(n, dtype=bool), gzip_output=False)
    assert out.read_bytes() == gzip.decompress(sst2_files["jsonl.gz"].read_bytes())
    out_gz = tmp_path / "packed.jsonl.gz"
    write_selected(sst2_files["jsonl"], out_gz, np.ones(n, dtype=bool), gzip_output=True)
    assert gzip.decompress(out_gz.read_bytes()) == sst2_files["jsonl"].read_bytes()


def test_write_jsonl_skips_blank_lines_and_adds_final_newline(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "a"}\n\n  \n{"text": "b"}\r\n{"text": "c"}')
    out = tmp_path / "out.jsonl"
    assert write_selected(src, out, np.array([True, True, True])) == 3
    assert out.read_bytes() == b'{"text": "a"}\n{"text": "b"}\r\n{"text": "c"}\n'
    with pytest.raises(ValueError):
        write_selected(src, tmp_path / "bad.jsonl", np.ones(5, dtype=bool))


def test_write_csv_keeps_undecodable_bytes(tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text\n1,caf\xe9 latin-1\n2,fine\n")
    out = tmp_path / "out.csv"
    assert write_selected(src, out, np.array([True, False])) == 1
    assert out.read_bytes() == b"id,text\r\n1,caf\xe9 latin-1\r\n"
