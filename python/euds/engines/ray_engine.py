"""The Ray engine: the scoring pass and the selection filter on Ray Data, for corpora that
outgrow one machine.

Scoring (``score_ray``), in the same score directory format as the local engine:

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
3. The driver lists the shards in the manifest, marks repeated ids (``duplicate_id`` needs the
   whole id column), then computes the late columns: k-means centroids on a sample of the kept
   embeddings, and the assignment + entropy per shard as distributed tasks.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from euds.pipeline import (
    CLUSTERING,
    ScoreConfig,
    ScoreSummary,
    _fill_counts,
    _late_columns,
    _Stages,
    check_input_unchanged,
    pass_schema,
    score_identity,
    score_record_batch,
    semantic_record,
)
from euds.scores import ScoreDir, ScoreRun, ShardInfo, now_iso, open_for_scoring

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
    the local reader's own function, so that both engines see the same records: lines end
    at LF only (bytes such as 0x85 inside a UTF-8 character, or a lone CR, are data), blank
    lines are dropped and a leading byte order mark is removed."""
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

        names = pq.read_schema(input_path).names
        records = ray.data.read_parquet(str(input_path))
        if not all_columns:
            if text_field not in names:
                raise ValueError(f"{input_path}: no column {text_field!r}; columns: {names}")
            records = records.select_columns(
                [text_field] + ([id_field] if id_field and id_field in names else [])
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
        from euds.pipeline import Models

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

        from euds.io import RecordBatch, interpret_record, parse_jsonl_line

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
        schema = pass_schema(config.signals, config.information_mode)
        batches, embeddings, token_batches = [], [], []
        stages = _Stages({})  # the actor's stage times are not reported
        seen_text_field = False
        for a in range(0, len(parsed), config.batch_size):
            records = RecordBatch(start=start + a, ids=[], texts=[], flags=[])
            for k in range(a, min(a + config.batch_size, len(parsed))):
                record = parsed[k]
                if isinstance(record, dict) and config.text_field in record:
                    seen_text_field = True
                rid, text, flags = interpret_record(
                    record, int(rows[k]), config.text_field, config.id_field
                )
                if config.strict and flags:
                    raise ValueError(
                        f"{self.input_path}:{where[k]}: record {rid!r}: {', '.join(flags)}"
                    )
                records.ids.append(rid)
                records.texts.append(text)
                records.flags.append(flags)
            if start == 0 and a == 0 and not seen_text_field:
                raise ValueError(
                    f"{self.input_path}: no record of the first {len(records)} has the text field "
                    f"{config.text_field!r}"
                )
            batch, emb, tokens = score_record_batch(self.scorers, records, schema, stages)
            batches.append(batch)
            if emb is not None:
                embeddings.append(emb)
            token_batches.append(tokens)
        from euds.pipeline import _concat_csr

        corpus = self.scorers.information is not None and self.scorers.information.needs_counts
        info = self.sd.write_shard(
            index,
            start,
            pa.Table.from_batches(batches, schema=schema),
            np.concatenate(embeddings) if embeddings else None,
            _concat_csr(token_batches) if corpus else None,
        )
        return pa.table(
            {
                "index": [info.index],
                "start": [info.start],
                "rows": [info.rows],
                "files": [json.dumps(info.files)],
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
    from euds.io import resolve_format

    config = config or ScoreConfig()
    config.check()
    input_path = Path(input_path)
    if not input_path.is_file():
        raise ValueError(f"input file not found: {input_path}")
    fmt, gz = resolve_format(input_path, config.format, None)
    if fmt not in SUPPORTED:
        raise ValueError(f"the Ray engine reads {SUPPORTED}, not {fmt!r}: use the local engine")
    if not isinstance(actors, int) or actors < 1:
        raise ValueError(f"actors must be a positive int, got {actors!r}")
    connect(address)
    t_start = time.perf_counter()
    identity = score_identity(input_path, config)
    with open_for_scoring(
        Path(output_dir).resolve(), identity, overwrite=overwrite, reclusterable=CLUSTERING
    ) as run:
        summary = ScoreSummary(output=str(run.sd.path))
        return _score_ray(
            input_path,
            fmt,
            gz,
            run,
            config,
            summary,
            _Stages(summary.stage_seconds),
            t_start,
            _ActorPool(actors, cpus_per_actor, gpus_per_actor, max_retries),
        )


def _score_ray(
    input_path: Path,
    fmt: str,
    gz: bool,
    run: ScoreRun,
    config: ScoreConfig,
    summary: ScoreSummary,
    stages: _Stages,
    t_start: float,
    pool: _ActorPool,
) -> ScoreSummary:
    sd, manifest = run.sd, run.manifest
    manifest["engine"] = {
        "name": "ray",
        "actors": pool.actors,
        "cpus_per_actor": pool.cpus_per_actor,
        "gpus_per_actor": pool.gpus_per_actor,
    }
    if manifest.get("status") == "complete":
        summary.reused = True
        _fill_counts(summary, sd)
        return summary
    done = {s.index: s for s in sd.intact_shards()}
    sd.drop_stale(manifest, list(done.values()))
    manifest["shards"] = [asdict(s) for s in done.values()]
    run.write()

    written: list[ShardInfo] = []
    if not manifest.get("pass_complete"):  # else only the clustering parameters changed
        written = _ray_pass(input_path, fmt, gz, run, config, done, stages, pool)
    _late_columns_ray(sd, manifest, config, stages)
    from euds.cache import sha256_file

    check_input_unchanged(input_path, run)
    manifest["status"] = "complete"
    manifest["input"]["sha256"] = stages.run("checksum", sha256_file, input_path)
    manifest["finished"] = now_iso()
    run.write()
    summary.seconds = time.perf_counter() - t_start
    summary.scored_now = sum(s.rows for s in written)
    summary.resumed_from = sum(s.rows for s in done.values())
    _fill_counts(summary, sd)
    return summary


def _ray_pass(
    input_path: Path,
    fmt: str,
    gz: bool,
    run: ScoreRun,
    config: ScoreConfig,
    done: dict[int, ShardInfo],
    stages: _Stages,
    pool: _ActorPool,
) -> list[ShardInfo]:
    """The scoring pass over the shards not yet ``done``; returns the shards it wrote."""
    sd, manifest = run.sd, run.manifest
    blocks, starts = _record_blocks(input_path, fmt, gz, config.text_field, config.id_field)
    n = starts[-1]
    if n == 0:
        raise ValueError(f"{input_path} holds no records")
    shard_size = config.shard_size
    todo = [k for k in range(-(-n // shard_size)) if k not in done]
    written: list[ShardInfo] = []
    manifest["writing"] = todo  # the shards the actors may leave unlisted if killed
    run.write()
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
                str(sd.path),
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
                    index=r["index"], start=r["start"], rows=r["rows"], files=json.loads(r["files"])
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
    manifest["writing"] = []
    run.write()
    stages.run("duplicates", _mark_duplicates, run, shards)
    manifest["pass_complete"] = True  # once the duplicates are marked
    run.write()
    return written


def _mark_duplicates(run: ScoreRun, shards: list[ShardInfo]) -> None:
    """Adds ``duplicate_id`` to later occurrences of an id, as the local reader does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from euds.io import flag_order
    from euds.scores import part_name

    sd, manifest = run.sd, run.manifest
    seen: set[str] = set()
    changed = False
    for shard in shards:
        table = sd.read_part(shard)
        ids = table.column("id").to_pylist()
        flags = table.column("flags").to_pylist()
        hit = False
        for k, rid in enumerate(ids):
            if rid in seen:
                parts = [f for f in flags[k].split("|") if f]
                if "duplicate_id" not in parts:  # a resumed run may mark a shard twice
                    flags[k] = "|".join(sorted([*parts, "duplicate_id"], key=flag_order))
                    hit = True
            else:
                seen.add(rid)
        if hit:
            table = table.set_column(
                table.column_names.index("flags"), "flags", pa.array(flags, pa.string())
            )
            name = part_name(shard.index)
            with sd.atomic(name) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            for entry in manifest["shards"]:
                if entry["index"] == shard.index:
                    entry["files"][name] = (sd.path / name).stat().st_size
            changed = True
    if changed:
        run.write()


def _late_columns_ray(
    sd: ScoreDir, manifest: dict[str, Any], config: ScoreConfig, stages: _Stages
) -> None:
    """Late columns with the assignment spread over Ray tasks (one per shard)."""
    if "semantic" not in config.signals:
        _late_columns(sd, manifest, config, stages)
        return
    ray = _ray()
    from euds.pipeline import _corpus_information, _embedding_sample
    from euds.signals.semantic import fit_centroids

    shards = sd.shards()
    t0 = time.perf_counter()
    sample = _embedding_sample(sd, shards, config.max_points_per_centroid * config.k, config.seed)
    if len(sample) < config.k:
        raise ValueError(
            f"semantic entropy with k={config.k} needs at least {config.k} embedded texts"
        )
    centroids = fit_centroids(
        sample, config.k, seed=config.seed, max_points_per_centroid=config.max_points_per_centroid
    )
    sd.write_centroids(centroids)
    centroids_ref = ray.put(centroids)

    @ray.remote(num_cpus=1, max_retries=3)
    def assign(emb_path: str, centroids: np.ndarray, m: int | None, tau: float) -> np.ndarray:
        from euds.signals.semantic import semantic_entropy, top_similarities

        emb = np.asarray(np.load(emb_path, mmap_mode="r"), dtype=np.float32)
        return semantic_entropy(top_similarities(emb, centroids, m), tau)

    from euds.scores import embedding_name

    refs = [
        assign.remote(
            str(sd.path / embedding_name(s.index)), centroids_ref, config.m, config.temperature
        )
        for s in shards
    ]
    late = {"semantic": np.concatenate(ray.get(refs))}
    if "information" in config.signals and config.information_mode == "corpus":
        late["information"] = _corpus_information(sd, shards)
    sd.write_late(late)
    manifest["semantic"] = {
        **semantic_record(config, len(sample)),
        "assignment": f"{len(shards)} Ray tasks",
    }
    stages.seconds["cluster"] = time.perf_counter() - t0


def select_ray(
    input_path: str | os.PathLike[str],
    scores: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    address: str | None = None,
    format: str | None = None,
    command: list[str] | None = None,
    **options: Any,
):
    """Like :func:`euds.select.select_file`, with the filter over the input run on Ray Data:
    the kept mask (one byte a record) is shipped to the workers, the input is read and
    filtered there, and the kept records stream back in input order into the output file."""
    from euds import select as selection

    def ray_writer(path, out, keep, *, format=None, gzip_output=None):
        return _write_selected_ray(
            path, out, keep, address=address, format=format, gzip_output=gzip_output
        )

    return selection.select_file(
        input_path,
        scores,
        output_path,
        format=format,
        command=command,
        writer=ray_writer,
        **options,
    )


def _write_selected_ray(
    input_path, output_path, keep: np.ndarray, *, address, format, gzip_output
) -> int:
    from euds.cache import atomic_path
    from euds.io import _open_out, resolve_format

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
            with _open_out(tmp, out_gz) as out:
                for batch in kept_batches():
                    for raw in batch.column("raw").to_pylist():
                        out.write(raw if raw.endswith(b"\n") else raw + b"\n")
                        written += 1
        else:
            import pyarrow.parquet as pq

            schema = pq.read_schema(input_path)
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in kept_batches():
                    if batch.num_rows:
                        writer.write_table(batch.select(schema.names).cast(schema))
                        written += batch.num_rows
    return written
