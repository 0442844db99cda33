"""Shared fixtures: the real data folder, small SST-2 slices in every input format, the scoring
tokenizer (built once per session), the exported models, and a session-wide cache.

Tests are marked ``slow`` automatically from the fixtures they use (:data:`SLOW_FIXTURES`: an
exported model, a child interpreter, Ray, a fine-tune), so ``make test-fast`` (``-m "not
slow"``) runs the rest in a few minutes; ``make test`` runs everything."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from model_factories import make_tiny_llama

REPO_ROOT = Path(__file__).resolve().parents[1]

# The tokenizer cache is reused across sessions (an ignored folder of the repo) unless the caller
# chose another one. Set before any euds code asks for the cache folder; subprocesses inherit it.
os.environ.setdefault("EUDS_CACHE", str(REPO_ROOT / ".cache" / "euds"))

SLICE_SIZE = 200

# A test that uses any of these (directly or through another fixture) is slow: it needs an
# exported model, a child interpreter, a Ray cluster or a fine-tune.
SLOW_FIXTURES = frozenset(
    {"tiny_lm", "smollm2", "embedder", "cache", "ray_local", "child_python", "trains"}
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def band_args(args: list[str]) -> list[str]:
    """A command line as these tests mean it: a ``select`` or ``run`` with a budget and no
    method, signals or intervals keeps the default (typicality, over the embeddings), which the
    information-only score directories of most tests do not hold; the tests written for a band
    name it, on the information signal."""
    if not args or args[0] not in ("select", "run") or "--budget" not in args:
        return args
    # `euds run` takes --signals for scoring: there the band is named by --select-signals.
    named = ("--select-signals", "--method", "--interval")
    if args[0] == "select":
        named = ("--signals", *named)
    position = args[args.index("--position") + 1] if "--position" in args else ""
    if any(a in named for a in args) or "=" in position:
        return args
    flag = "--signals" if args[0] == "select" else "--select-signals"
    return [*args, flag, "information"]


@pytest.fixture(scope="session")
def child_python() -> str:
    """The interpreter for a test that runs euds in a child process (marks the test slow)."""
    return sys.executable


@pytest.fixture(scope="session")
def trains() -> None:
    """Requested by a test that fine-tunes a model (marks the test slow)."""


def _find_data_dir() -> Path | None:
    candidate = (REPO_ROOT / ".." / "shared" / "data").resolve()
    return candidate if (candidate / "sst2").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` relative to the repo root (skips when the real data is absent)."""
    found = _find_data_dir()
    if found is None:
        pytest.skip("the real datasets (../shared/data) are not available")
    return found


def read_jsonl_gz(path: Path, limit: int | None = None) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, limit)]


def jsonl_bytes(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def csv_bytes(records: list[dict], delimiter: str = ",") -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter)
    fields = list(records[0])
    writer.writerow(fields)
    for r in records:
        writer.writerow([r[k] for k in fields])
    return buf.getvalue().encode()


@pytest.fixture(scope="session")
def sst2_records(data_dir: Path) -> list[dict]:
    """The first SLICE_SIZE records of SST-2 train: ``{"id", "text", "label"}``."""
    return read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", SLICE_SIZE)


@pytest.fixture(scope="session")
def sst2_files(tmp_path_factory: pytest.TempPathFactory, sst2_records: list[dict]) -> dict:
    """The SST-2 slice written once in every supported format; keys are the formats
    (``jsonl``, ``jsonl.gz``, ``csv``, ``csv.gz``, ``tsv``, ``parquet``). Read-only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("sst2_slice")
    files = {}
    data = jsonl_bytes(sst2_records)
    files["jsonl"] = folder / "slice.jsonl"
    files["jsonl"].write_bytes(data)
    files["jsonl.gz"] = folder / "slice.jsonl.gz"
    files["jsonl.gz"].write_bytes(gzip_bytes(data))
    files["csv"] = folder / "slice.csv"
    files["csv"].write_bytes(csv_bytes(sst2_records))
    files["csv.gz"] = folder / "slice.csv.gz"
    files["csv.gz"].write_bytes(gzip_bytes(csv_bytes(sst2_records)))
    files["tsv"] = folder / "slice.tsv"
    files["tsv"].write_bytes(csv_bytes(sst2_records, delimiter="\t"))
    files["parquet"] = folder / "slice.parquet"
    table = pa.table(
        {
            "id": [r["id"] for r in sst2_records],
            "text": [r["text"] for r in sst2_records],
            "label": pa.array([r["label"] for r in sst2_records], pa.int64()),
        }
    )
    # Small row groups: the readers must cross row-group boundaries.
    pq.write_table(table, files["parquet"], row_group_size=64)
    return files


@pytest.fixture(scope="session")
def sst2_train_2000(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The first 2,000 lines of SST-2 train, verbatim, as a .jsonl.gz file."""
    with gzip.open(data_dir / "sst2" / "train.jsonl.gz", "rb") as f:
        data = b"".join(itertools.islice(f, 2000))
    path = tmp_path_factory.mktemp("sst2_2000") / "train2000.jsonl.gz"
    path.write_bytes(gzip_bytes(data))
    return path


@pytest.fixture(scope="session")
def ng_posts(data_dir: Path) -> list[str]:
    """The texts of the first 300 20 Newsgroups training posts."""
    return [r["text"] for r in read_jsonl_gz(data_dir / "20newsgroups" / "train.jsonl.gz", 300)]


@pytest.fixture(scope="session")
def tokenizer():
    """The SmolLM2 scoring tokenizer, default ``max_tokens``."""
    from euds.tokenizer import TextTokenizer

    return TextTokenizer()


# -- language models ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random Llama exported through the same code as SmolLM2 (both graphs)."""
    from euds.models import build_lm_folder
    from euds.tokenizer import smollm2_tokenizer_path

    root = tmp_path_factory.mktemp("tiny_lm")
    hf = make_tiny_llama(root / "checkpoint")
    return build_lm_folder(hf, root / "lm", smollm2_tokenizer_path(), source={"tiny": True})


@pytest.fixture(scope="session")
def smollm2():
    """The real scoring LM, prepared in the cache on first use (about a minute)."""
    pytest.importorskip("transformers")
    from euds.models import lm_files

    return lm_files()


@pytest.fixture(scope="session")
def embedder():
    """The exported embedder's files (prepared once in the cache)."""
    from euds.models import embedder_files

    return embedder_files()


def read_all(path, **kwargs):
    """A whole :class:`euds.io.RecordReader` pass: (reader, batches, ids, texts, flags)."""
    from euds.io import RecordReader

    reader = RecordReader(path, **kwargs)
    batches = list(reader)
    ids = [i for b in batches for i in b.ids]
    texts = [t for b in batches for t in b.texts]
    flags = [f for b in batches for f in b.flags]
    return reader, batches, ids, texts, flags


def same_table(a, b) -> bool:
    """Column by column, NaN equal to NaN (pyarrow's equals treats NaN as unequal)."""
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = (
            a.column(name).to_numpy(zero_copy_only=False),
            b.column(name).to_numpy(zero_copy_only=False),
        )
        if x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                return False
        elif a.column(name).to_pylist() != b.column(name).to_pylist():
            return False
    return True


def small_config(tiny_lm, embedder, **overrides):
    """A quick scoring configuration: the tiny LM, small batches and shards, K = 4."""
    from euds import ScoreConfig

    base = {
        "model": str(tiny_lm.folder),
        "embedder": str(embedder.folder),
        "batch_size": 32,
        "shard_size": 128,
        "k": 4,
    }
    base.update(overrides)
    return ScoreConfig(**base)


# -- a user's own models: tiny random checkpoints with a tokenizer trained here -----------------


@pytest.fixture(scope="session")
def training_texts(data_dir: Path) -> list[str]:
    """2,000 SST-2 sentences to train the tiny tokenizers on."""
    return [r["text"] for r in read_jsonl_gz(data_dir / "sst2" / "train.jsonl.gz", 2000)]
