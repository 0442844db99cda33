"""The Ray engine: the scoring pass and the selection filter on Ray Data, for corpora that
outgrow one machine.

Scoring (:class:`RayEngine`, run by the one driver :mod:`euds.engines.driver`; ``score_ray`` is
the shorthand), in the same score directory format as the local engine:

1. The input is read into Arrow blocks: JSONL(.gz) as raw lines split by the local reader's
   own line rule (bytes, never decoded text: only LF ends a line) in a Ray task, Parquet by
   Ray Data (``read_parquet``). Blocks keep file order; records are parsed with the local
   reader's rules, so flags are the same, and numbered from the block sizes.
2. Small tasks cut the blocks into one Arrow block per shard (records row // shard_size), and
   ``map_batches`` over those blocks (whole blocks as batches) sends each shard to an actor of
   a pool (a callable class): the actor holds the tokenizer and the ONNX sessions, scores its
   shard batch by batch exactly as the local engine does (same batches, hence the same
   numbers) and writes the shard's files itself, atomically. A retried shard rewrites the
   same files, so a killed actor costs time, never rows. (No ``groupby``: its shuffle needs
   CPUs that a pool holding every CPU never gives back.)
3. The driver lists the shards in the manifest as they finish; then (as for every engine) it
   marks repeated ids and computes the late columns, the per-shard assignment + entropy running
   as Ray tasks (``map_shards``).

Quantiles for selection are exact: the score columns (8 bytes a record) are gathered on the
driver. ``select_ray`` reads the input on Ray Data, filters each block in a Ray task with its
slice of the kept mask, and streams the kept records, in input order, into the output file.

Multi-node: input and output must be on a filesystem every node sees (NFS, a shared volume),
the models prepared in a cache every node sees (``EUDS_CACHE``); see docs/ray.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from euds.batch import Models, Stages, concat_csr, pass_schema, score_record_batch
from euds.cache import sha256_file
from euds.config import ScoreConfig
from euds.engines import driver
from euds.engines.driver import Pass, ScoreSummary
from euds.io import InputError
from euds.scores import ScoreDir, ScoreRun, ShardInfo

log = logging.getLogger("euds")

SUPPORTED = ("jsonl", "parquet")


def _ray():
    try:
        import ray
    except ImportError:
        raise ValueError("the Ray engine needs Ray: pip install 'euds[ray]'") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Joins the cluster at ``address`` (``auto``, ``HOST:6379``) or starts a local Ray."""
    ray = _ray()
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    # The workers must import euds and find the models the driver uses.
    kwargs["runtime_env"] = {
        "env_vars": {k: v for k, v in os.environ.items() if k.startswith("EUDS_")}
    }
    ray.init(**kwargs)


def _task(fn, **options):
    """``fn`` as a Ray task (made on first use, so that importing euds never imports Ray).
    Data-movement tasks ask for no CPU: they must run while the scoring actors hold the CPUs."""
    ray = _ray()
    key = (fn, tuple(sorted(options.items())))
    if key not in _TASKS:
        _TASKS[key] = ray.remote(**{"num_cpus": 0, "max_retries": 3, **options})(fn)
    return _TASKS[key]


_TASKS: dict[Any, Any] = {}


def _num_rows(table) -> int:
    return table.num_rows


def _jsonl_table(path: str, gz: bool):
    """The records of a JSONL file as (raw bytes, 1-based line number), split into lines by
    the local reader's own function, so that both engines see the same records: bytes are
    split, never decoded text (0x85 inside a UTF-8 character is data), at LF (or at CR in a
    file whose first 64 KiB hold CRs but no LF), blank lines are dropped and a leading byte
    order mark is removed."""
    import pyarrow as pa

    from euds.io import iter_jsonl_lines

    raws: list[bytes] = []
    lines: list[int] = []
    for line, raw in iter_jsonl_lines(Path(path), gz):
        raws.append(raw)
        lines.append(line)
    return pa.table({"raw": pa.array(raws, pa.binary()), "line": pa.array(lines, pa.int64())})


def _rows_between(lo: int, hi: int, starts: list[int], *tables):
    """Records ``lo:hi`` of the input (numbered in ``row``) from the blocks that hold them."""
    import pyarrow as pa

    pieces = []
    for start, table in zip(starts, tables, strict=True):
        a, b = max(lo, start), min(hi, start + table.num_rows)
        if a < b:
            pieces.append(table.slice(a - start, b - a))
    table = pa.concat_tables(pieces)
    return table.append_column("row", pa.array(np.arange(lo, hi, dtype=np.int64)))


def _kept_rows(table, mask: np.ndarray):
    import pyarrow as pa

    return table.filter(pa.array(mask))


def _record_blocks(
    input_path: Path,
    fmt: str,
    gz: bool,
    text_field: str,
    id_field: str | None,
    *,
    all_columns: bool = False,
) -> tuple[list[Any], list[int]]:
    """The input's records read by Ray Data, in file order: object refs of Arrow blocks and the
    index of each block's first record. JSONL blocks hold ``raw`` and ``line``; Parquet blocks
    the file's columns (all, or the text and id columns)."""
    ray = _ray()

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    if fmt == "jsonl":
        # One task reads the file (as Ray Data's read_text would); the shards are cut from
        # its block by the tasks of _shard_blocks.
        blocks = [_task(_jsonl_table).remote(str(input_path), gz)]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        from euds.io import parquet_record_columns

        records = ray.data.read_parquet(str(input_path))
        if not all_columns:
            schema = pq.read_schema(input_path)
            records = records.select_columns(
                parquet_record_columns(input_path, schema, text_field, id_field)
            )
        blocks = records.materialize().to_arrow_refs()
    else:
        raise ValueError(f"the Ray engine reads {SUPPORTED}, not {fmt!r}: use the local engine")
    counts = ray.get([_task(_num_rows).remote(b) for b in blocks])
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int).tolist()
    return blocks, starts


def _shard_blocks(blocks: list[Any], starts: list[int], shard_size: int, todo: list[int]):
    """One Arrow block per shard to score (records + ``row``), ready in the object store
    before the scoring actors start."""
    ray = _ray()
    n = starts[-1]
    refs = []
    for index in todo:
        lo, hi = index * shard_size, min(n, (index + 1) * shard_size)
        holders = [k for k in range(len(blocks)) if starts[k] < hi and starts[k + 1] > lo]
        refs.append(
            _task(_rows_between).remote(
                lo, hi, [starts[k] for k in holders], *[blocks[k] for k in holders]
            )
        )
    ray.wait(refs, num_returns=len(refs), fetch_local=False)
    return refs


class _ShardScorer:
    """A Ray actor: the models, loaded once; scores one shard per call and writes it."""

    def __init__(
        self,
        config_dict: dict[str, Any],
        out_dir: str,
        token: str | None,
        fmt: str,
        input_path: str,
        threads: int,
    ) -> None:
        from euds import set_num_threads

        self.config = ScoreConfig(**config_dict)
        # As many threads as the CPUs this actor holds: actors on one node must not oversubscribe.
        if self.config.threads is None:
            self.config.threads = threads
        set_num_threads(self.config.threads)
        self.scorers = Models(self.config)
        self.sd = ScoreDir(Path(out_dir), token=token)
        self.fmt = fmt
        self.input_path = input_path

    def __call__(self, group):
        import pyarrow as pa

        from euds.records import RecordBatch, RecordRules, parse_jsonl_line

        config = self.config
        group = group.sort_by("row")
        rows = np.asarray(group.column("row"))
        start = int(rows[0])
        index = start // config.shard_size
        if self.fmt == "jsonl":
            parsed = [parse_jsonl_line(r) for r in group.column("raw").to_pylist()]
            where = [f"line {line}" for line in group.column("line").to_pylist()]
        else:
            columns = [c for c in group.column_names if c not in ("row", "shard")]
            parsed = group.select(columns).to_pylist()
            where = [f"row {r + 1}" for r in rows]
        # The local reader's rules; ids repeated across shards are marked by the driver.
        rules = RecordRules(
            self.input_path, config.text_field, config.id_field, strict=config.strict
        )
        if self.fmt != "jsonl":
            rules.fields_seen(columns)
        schema = pass_schema(config.signals, config.information_mode)
        batches, embeddings, token_batches = [], [], []
        stages = Stages({})  # the actor's stage times are not reported
        for a in range(0, len(parsed), config.batch_size):
            records = RecordBatch(start=start + a, ids=[], texts=[], flags=[])
            for k in range(a, min(a + config.batch_size, len(parsed))):
                rules.add(records, int(rows[k]), where[k], parsed[k])
            if start == 0 and a == 0:
                rules.check_text_field(records)
            batch, emb, tokens = score_record_batch(self.scorers, records, schema, stages)
            batches.append(batch)
            if emb is not None:
                embeddings.append(emb)
            token_batches.append(tokens)
        corpus = self.scorers.information is not None and self.scorers.information.needs_counts
        info = self.sd.write_shard(
            index,
            start,
            pa.Table.from_batches(batches, schema=schema),
            np.concatenate(embeddings) if embeddings else None,
            concat_csr(token_batches) if corpus else None,
        )
        return pa.table(
            {
                "index": [info.index],
                "start": [info.start],
                "rows": [info.rows],
                "files": [json.dumps(info.files)],
                "sha256": [json.dumps(info.sha256)],
                "models": [json.dumps(self.scorers.identity)],
            }
        )


@dataclass(frozen=True)
class _ActorPool:
    """How the scoring actors are sized and retried."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    max_retries: int


class RayEngine:
    """Scores on Ray (see the module docstring): ``actors`` actors holding the models, each
    with ``cpus_per_actor`` CPUs (and ``gpus_per_actor`` GPUs), retried ``max_retries`` times."""

    marks_duplicate_ids = False  # an actor sees one shard: the driver marks them after

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int = 1,
        cpus_per_actor: float = 1,
        gpus_per_actor: float = 0,
        max_retries: int = 3,
    ) -> None:
        if not isinstance(actors, int) or isinstance(actors, bool) or actors < 1:
            raise ValueError(f"actors must be a positive int, got {actors!r}")
        self.address = address
        self.pool = _ActorPool(actors, cpus_per_actor, gpus_per_actor, max_retries)

    def check(self, input_path: Path, config: ScoreConfig) -> None:
        from euds.io import resolve_format

        fmt, _ = resolve_format(input_path, config.format, None)
        if fmt not in SUPPORTED:
            raise ValueError(f"the Ray engine reads {SUPPORTED}, not {fmt!r}: use the local engine")
        connect(self.address)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "ray",
            "actors": self.pool.actors,
            "cpus_per_actor": self.pool.cpus_per_actor,
            "gpus_per_actor": self.pool.gpus_per_actor,
        }

    def map_shards(self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        ray = _ray()
        return ray.get([_task(fn, num_cpus=1).remote(*a) for a in args])

    def write_kept(
        self,
        input_path: Path,
        out_path: Path,
        keep: np.ndarray,
        *,
        format: str | None,
        gzip_output: bool,
        sha256: str | None,
        read_back: Any,
    ) -> int:
        """The kept records written from Ray Data: the kept mask (one byte a record) is shipped
        to the workers, the input is read and filtered there, and the kept records stream back
        in input order into the output file."""
        written = _write_selected_ray(
            input_path,
            out_path,
            keep,
            address=self.address,
            format=format,
            gzip_output=gzip_output,
            read_back=read_back,
        )
        if sha256 is not None and sha256_file(input_path) != sha256:  # Ray read it in parts
            raise InputError(
                Path(input_path), "changed while the selection was written; select again"
            )
        return written

    def run_pass(self, job: Pass) -> str | None:
        from euds.io import resolve_format

        fmt, gz = resolve_format(job.input_path, job.config.format, None)
        done = {s.index: s for s in job.done}
        written, job.records = _ray_pass(
            job.input_path, fmt, gz, job.run, job.config, done, job.stages, self.pool
        )
        job.summary.scored_now = sum(s.rows for s in written)
        return None  # Ray read the input: the driver hashes it


def score_ray(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ScoreConfig | None = None,
    *,
    address: str | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    overwrite: bool = False,
    max_retries: int = 3,
) -> ScoreSummary:
    """Scores ``input_path`` on Ray into ``output_dir`` (same format as the local engine)."""
    engine = RayEngine(
        address,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        max_retries=max_retries,
    )
    return driver.score(input_path, output_dir, config, engine, overwrite=overwrite)


def _ray_pass(
    input_path: Path,
    fmt: str,
    gz: bool,
    run: ScoreRun,
    config: ScoreConfig,
    done: dict[int, ShardInfo],
    stages: Stages,
    pool: _ActorPool,
) -> tuple[list[ShardInfo], int]:
    """The scoring pass over the shards not yet ``done``; returns the shards it wrote and the
    number of records of the input."""
    sd, manifest = run.sd, run.manifest
    blocks, starts = _record_blocks(input_path, fmt, gz, config.text_field, config.id_field)
    n = starts[-1]
    if n == 0:
        raise ValueError(f"{input_path} holds no records")
    shard_size = config.shard_size
    todo = [k for k in range(-(-n // shard_size)) if k not in done]
    manifest["writing"] = todo  # the shards the actors may leave unlisted if killed
    run.write()
    written: list[ShardInfo] = []
    if todo:  # none left when a resumed run died after the last shard
        shard_refs = _shard_blocks(blocks, starts, shard_size, todo)
        del blocks  # the shard blocks hold the records now
        # One block per shard, one shard per call (batch_size=None: whole blocks as batches).
        ray = _ray()
        results = ray.data.from_arrow_refs(shard_refs).map_batches(
            _ShardScorer,
            batch_size=None,
            batch_format="pyarrow",
            zero_copy_batch=True,
            fn_constructor_args=(
                asdict(config),
                str(sd.path.resolve()),  # the actors may run in another working folder
                sd.token,
                fmt,
                str(input_path.resolve()),
                max(1, int(pool.cpus_per_actor)),
            ),
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.cpus_per_actor,
            num_gpus=pool.gpus_per_actor,
            max_restarts=pool.max_retries,
            max_task_retries=pool.max_retries,
        )
        t0 = time.perf_counter()
        # Shards are listed as their groups finish (in any order), so a killed driver resumes.
        for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
            for r in batch.to_pylist():
                shard = ShardInfo(
                    index=r["index"],
                    start=r["start"],
                    rows=r["rows"],
                    files=json.loads(r["files"]),
                    sha256=json.loads(r["sha256"]),
                )
                written.append(shard)
                manifest["shards"].append(asdict(shard))
                manifest.setdefault("models", json.loads(r["models"]))
            run.write()
        stages.seconds["ray pass"] = time.perf_counter() - t0
    shards = sorted([*done.values(), *written], key=lambda s: s.index)
    if sum(s.rows for s in shards) != n or [s.index for s in shards] != list(range(len(shards))):
        raise RuntimeError(f"the Ray pass returned shards {[s.index for s in shards]} for {n} rows")
    manifest["shards"] = [asdict(s) for s in shards]
    run.write()
    return written, n


def select_ray(
    input_path: str | os.PathLike[str],
    scores: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: Any = None,
    *,
    address: str | None = None,
    **options: Any,
):
    """:func:`euds.subset.select_file` with the Ray engine writing the kept records
    (:meth:`RayEngine.write_kept`)."""
    from euds import subset

    return subset.select_file(
        input_path, scores, output_path, config, engine=RayEngine(address), **options
    )


def _write_selected_ray(
    input_path, output_path, keep: np.ndarray, *, address, format, gzip_output, read_back
) -> int:
    from euds.cache import atomic_path
    from euds.io import resolve_format
    from euds.output import check_read_back, copy_line, open_output

    input_path, output_path = Path(input_path), Path(output_path)
    fmt, gz = resolve_format(input_path, format, None)
    if fmt not in SUPPORTED:
        raise ValueError(f"the Ray engine reads {SUPPORTED}, not {fmt!r}: use the local engine")
    connect(address)
    ray = _ray()
    blocks, starts = _record_blocks(input_path, fmt, gz, "text", None, all_columns=True)
    n = starts[-1]
    if n != len(keep):
        raise ValueError(
            f"{input_path} has {n} records but the selection has {len(keep)}: the scores were "
            "computed on another file"
        )
    keep = np.asarray(keep, dtype=bool)
    # The filter runs where the blocks are; each task gets its slice of the mask.
    filtered = [
        _task(_kept_rows, num_cpus=1).remote(block, keep[starts[k] : starts[k + 1]])
        for k, block in enumerate(blocks)
    ]
    del blocks

    def kept_batches():
        for ref in filtered:  # in input order
            yield ray.get(ref)

    written = 0
    out_gz = gz if gzip_output is None else gzip_output
    with atomic_path(output_path) as tmp:
        if fmt == "jsonl":
            ending = _first_line_ending(input_path, gz)
            with open_output(tmp, out_gz) as out:
                for batch in kept_batches():
                    for raw in batch.column("raw").to_pylist():
                        copy_line(out, raw, ending)
                        written += 1
        else:
            import pyarrow.parquet as pq

            schema = pq.read_schema(input_path)
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in kept_batches():
                    if batch.num_rows:
                        writer.write_table(batch.select(schema.names).cast(schema))
                        written += batch.num_rows
        if read_back is not None:
            check_read_back(tmp, fmt, out_gz, read_back, written)
    return written


def _first_line_ending(path: Path, gz: bool) -> bytes:
    """The line end of the input's first line, the convention a last unterminated line gets."""
    from euds.io import iter_jsonl_lines
    from euds.output import line_ending

    for _, raw in iter_jsonl_lines(path, gz):
        return line_ending(raw)
    return b"\n"
