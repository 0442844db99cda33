"""A selection made into files: :func:`select_file` reads an input's scores (and, where the method
needs them, its texts, stored embeddings and a target sample), selects with
:func:`euds.selection.select` under a :class:`~euds.config.SelectConfig`, and writes the kept
records in the input's format, ``<output>.decisions.parquet`` (id, kept, reason for every input
record, plus the ``target`` column when there is one) and ``<output>.manifest.json``
(configuration, intervals, counts in / kept / dropped by reason, checksums)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from euds.config import SelectConfig
from euds.selection import Selection

CLUSTERS = "clusters"


@dataclass
class SelectionOutput:
    """What :func:`select_file` wrote."""

    selection: Selection
    output: Path
    manifest: Path
    decisions: Path
    written: int


def select_file(
    input_path: str | os.PathLike[str],
    scores: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: SelectConfig | None = None,
    *,
    format: str | None = None,
    command: list[str] | None = None,
    engine: Any = None,
    overwrite: bool = False,
    **options: Any,
) -> SelectionOutput:
    """Selects from the scores of ``input_path`` and writes the kept records to
    ``output_path`` in the input's format (gzipped when the name ends in .gz), plus
    ``<output>.manifest.json`` and ``<output>.decisions.parquet``. ``config`` (or ``options``,
    its fields as keywords) says how. The scores must belong to this input: a score directory
    by the input's sha256, a score Parquet file by the ids and text hashes of every record.
    ``engine`` writes the kept records (:meth:`euds.engines.driver.Engine.write_kept`; default
    the local engine; the Ray engine filters on its workers).

    ``config.stratify`` may name ``"clusters"`` (the k-means clusters of the semantic signal,
    from the score directory's embeddings) or a field of the input's records.

    The outputs never replace the input, the target sample or a file of the scores, and are
    never written inside a score directory (by file identity: links and mounts included). An
    existing output (or its manifest or decisions file) is replaced only with ``overwrite`` or
    when it is a selection euds wrote (its manifest's checksums match the files), so that the
    same command can run again. Two runs writing the same output hold a lock: the second fails
    at once, and the three files always come from one run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from euds._version import __version__
    from euds.cache import atomic_path, atomic_write_bytes, sha256_file
    from euds.io import read_field
    from euds.output import ReadBack, output_lock
    from euds.provenance import now_iso, to_json
    from euds.scores import MANIFEST, ScoreDir, read_scores
    from euds.selection import TARGET, TEXT_HASH, TYPICAL, select
    from euds.selection.columns import columns_of

    if config is None:
        config = SelectConfig(**options)
    elif options:
        raise ValueError(f"give config= or options, not both: {sorted(options)}")
    config.check()
    input_path, scores, out = Path(input_path), Path(scores), Path(output_path)
    if not input_path.is_file():
        raise ValueError(f"input file not found: {input_path}")
    if not scores.exists():
        raise ValueError(f"{scores} not found: score the input first (`euds score`)")
    manifest_path, decisions_path = companions(out)
    check_selection_outputs(input_path, scores, out, config, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        check_selection_outputs(input_path, scores, out, config, overwrite=overwrite)
        score_meta: dict[str, Any] = {}
        sd = ScoreDir(scores) if scores.is_dir() else None
        if sd is not None:
            score_meta = sd.manifest()
            if score_meta.get("status") != "complete":
                raise ValueError(f"{scores} is not complete: run `euds score` again to finish it")
            sd.check_intact(score_meta)
        score_config = score_meta.get("config", {})
        fmt = format or score_config.get("format")
        reading = {
            "text_field": score_config.get("text_field", "text"),
            "id_field": score_config.get("id_field", "id"),
            "format": fmt,
        }
        table = read_scores(scores)
        # The input is read once more, to copy the kept records: it is hashed while copied and
        # the output takes its name only if the hash is the one the scores recorded. A size
        # that differs settles it now, before any work.
        recorded = score_meta.get("input", {})
        input_sha = recorded.get("sha256")
        if input_sha is not None and recorded.get("size") not in (None, input_path.stat().st_size):
            raise ValueError(
                f"{scores} was computed on another file ({recorded['size']:,} bytes, "
                f"{input_path} has {input_path.stat().st_size:,}): rescore it with `euds score`"
            )
        if input_sha is None:  # a score file (or an unfinished record): check record by record
            input_sha = _check_records(input_path, scores, table, reading)
        columns = columns_of(table)
        labels = None
        if config.stratify == CLUSTERS:
            if sd is None:
                raise ValueError(f"--stratify {CLUSTERS} needs a score directory, not {scores}")
            labels = sd.cluster_labels()
        elif config.stratify is not None:
            labels = read_field(input_path, config.stratify, format=fmt)
        # The default (no method, no signals) is decided by the budget: what it needs is read.
        spec = config.default_spec()
        method = spec.get("method", config.method)
        wants_texts = config.needs_texts()
        wants_embeddings = method == TYPICAL or (
            config.target is not None and config.target_score != "ngram"
        )
        if wants_embeddings and (sd is None or not sd.has_embeddings()):
            what = "the default selection (typicality)" if spec else f"method {method}"
            raise ValueError(
                f"{what} needs the embeddings of the semantic signal, which {scores} does not "
                "hold: score with the semantic signal, or name --method / --signals to select "
                "on the scores alone"
            )
        texts = _texts(input_path, reading) if wants_texts else None
        embeddings = sd.embedding_matrix() if wants_embeddings and sd is not None else None
        target_info = None
        if config.target is not None:
            columns[TARGET], target_info = _target_column(
                config, score_config, reading, embeddings, texts
            )
        selection = select(
            columns,
            stratify=labels,
            texts=texts,
            embeddings=embeddings if method == TYPICAL else None,
            **config.select_options(),
        )
        if config.stratify is not None:
            selection.stratify = config.stratify
        if target_info is not None:
            selection.details["target_sample"] = target_info
        hashes = columns.get(TEXT_HASH)
        read_back = ReadBack(
            reading["text_field"],
            reading["id_field"],
            None
            if hashes is None
            else [h for h, k in zip(hashes, selection.keep, strict=True) if k],
        )
        if engine is None:
            from euds.engines.local import LocalEngine

            engine = LocalEngine()
        written = engine.write_kept(
            input_path,
            out,
            selection.keep,
            format=fmt,
            gzip_output=out.name.lower().endswith(".gz"),
            sha256=input_sha,  # the kept records come from bytes of this hash, or none land
            read_back=read_back,
        )
        counts = selection.counts
        if written != counts["kept"] or counts["kept"] + counts["dropped"] != counts["input"]:
            raise RuntimeError(f"selection bookkeeping is off: wrote {written}, counts {counts}")
        decision_columns = {
            "id": table.column("id"),
            "kept": pa.array(selection.keep),
            "reason": pa.array(selection.reason.astype(str)),
        }
        if TARGET in columns:
            decision_columns[TARGET] = pa.array(np.asarray(columns[TARGET], dtype=np.float64))
        with atomic_path(decisions_path) as tmp:
            pq.write_table(pa.table(decision_columns), tmp)
        here = manifest_path.parent
        manifest = {
            "kind": SELECTION_MANIFEST,
            "euds_version": __version__,
            "created": now_iso(),
            "command": command,
            # Paths are relative to this manifest's folder, wherever it is read from.
            "input": {
                "path": _relative(input_path, here),
                "sha256": input_sha,
                "records": counts["input"],
            },
            "scores": {
                "path": _relative(scores, here),
                "sha256": None if sd is not None else sha256_file(scores),
                "manifest_sha256": sha256_file(scores / MANIFEST) if sd is not None else None,
                "config": score_config,
            },
            "config": config.as_dict(),
            "selection": selection.summary(),
            "output": {"path": out.name, "sha256": sha256_file(out), "records": written},
            "decisions": {"path": decisions_path.name, "sha256": sha256_file(decisions_path)},
        }
        atomic_write_bytes(manifest_path, to_json(manifest))
    return SelectionOutput(selection, out, manifest_path, decisions_path, written)


SELECTION_MANIFEST = "euds selection"


def companions(out: Path) -> tuple[Path, Path]:
    """The manifest and decisions files of the selection written to ``out``."""
    return out.with_name(out.name + ".manifest.json"), out.with_name(
        out.name + ".decisions.parquet"
    )


def check_selection_outputs(
    input_path: Path, scores: Path, out: Path, config: SelectConfig, *, overwrite: bool
) -> None:
    """The output guard for a selection's three files (:mod:`euds.output`): never an input, a
    file of the scores or anything in a score directory; an existing one only when a selection
    euds wrote there proves them (or ``overwrite``)."""
    from euds.output import Protected, check_output

    manifest_path, decisions_path = companions(out)
    protected = Protected.of(inputs=[input_path, config.target], score_dirs=[scores])
    previous = _previous_selection(manifest_path, out, decisions_path)
    for path in (out, manifest_path, decisions_path):
        check_output(path, protected, overwrite=overwrite, ours=lambda _: previous)


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(path.resolve(), folder.resolve())


def read_selection_manifest(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """A selection manifest, checked to be one (``ValueError`` naming the file and field
    otherwise), and its decisions file, found relative to the manifest."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise ValueError(f"{path} is not a readable selection manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a euds selection manifest (not a JSON object)")
    for key, kind in (("selection", dict), ("decisions", dict), ("input", dict), ("output", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ValueError(
                f"{path} is not a euds selection manifest: field {key!r} is missing or not an "
                "object (give the OUT.manifest.json that `euds select` wrote)"
            )
    decisions = manifest["decisions"].get("path")
    counts = manifest["selection"].get("counts")
    if not isinstance(decisions, str) or not isinstance(counts, dict):
        raise ValueError(f"{path}: field 'decisions.path' or 'selection.counts' is damaged")
    if not isinstance(manifest["input"].get("sha256"), str):
        raise ValueError(f"{path}: field 'input.sha256' is missing")
    return manifest, path.parent / decisions


def _previous_selection(manifest_path: Path, out: Path, decisions: Path) -> bool:
    """Whether the files at these paths are a selection euds wrote (its manifest's checksums
    match the output and decisions files), so that the same command can run again."""
    from euds.cache import sha256_file

    try:
        previous, found = read_selection_manifest(manifest_path)
        return (
            found.resolve() == decisions.resolve()
            and sha256_file(out) == previous["output"]["sha256"]
            and sha256_file(decisions) == previous["decisions"]["sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check_records(input_path: Path, scores: Path, table: Any, reading: dict[str, Any]) -> str:
    """Scores with no recorded input checksum (a score Parquet file) must hold the input's
    records: the same ids and, where the scores carry them, the same text hashes, in order.
    Returns the sha256 of the input as read."""
    from euds.duplicates import text_hashes
    from euds.io import RecordReader

    ids: list[str] = []
    texts: list[str | None] = []
    reader = RecordReader(input_path, **reading)
    for batch in reader:
        ids.extend(batch.ids)
        texts.extend(batch.texts)
    theirs = table.column("id").to_pylist() if "id" in table.column_names else None
    if theirs is None:
        raise ValueError(f"{scores} has no id column to match against {input_path}")
    where = "records" if len(theirs) != len(ids) else None
    if where is None and theirs != ids:
        where = "ids"
    if where is None and "text_hash" in table.column_names:
        if table.column("text_hash").to_pylist() != text_hashes(texts):
            where = "texts"
    if where is not None:
        raise ValueError(
            f"{scores} does not hold the scores of {input_path} (its {where} differ): score "
            "the input with `euds score`"
        )
    assert reader.sha256 is not None  # a whole pass
    return reader.sha256


def _texts(path: Path, reading: dict[str, Any]) -> list[str | None]:
    from euds.io import read_texts

    return read_texts(path, **reading)


def _target_column(
    config: SelectConfig,
    score_config: dict[str, Any],
    reading: dict[str, Any],
    embeddings: np.ndarray | None,
    texts: list[str | None] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``target`` score column, and what the manifest says of the target sample."""
    from euds.cache import sha256_file
    from euds.io import read_texts
    from euds.selection import target_column

    assert config.target is not None
    path = Path(config.target)
    sample = read_texts(
        path, text_field=config.target_field or reading["text_field"], id_field=None
    )
    usable = [t for t in sample if t is not None and t.strip()]
    if not usable:
        raise ValueError(f"{path}: the target sample holds no text")
    target_embeddings = None
    if config.target_score != "ngram":
        from euds.signals.semantic import Embedder

        embedder = Embedder(
            score_config.get("embedder"),
            pooling=score_config.get("pooling", "core"),
            precision=score_config.get("embed_precision", "fp32"),
        )
        target_embeddings = embedder.embed(usable)
    column = target_column(
        config.target_score,
        embeddings=embeddings,
        target_embeddings=target_embeddings,
        texts=texts,
        target_texts=usable,
    )
    return column, {
        "path": str(path),
        "sha256": sha256_file(path),
        "texts": len(usable),
        "score": config.target_score,
    }


__all__ = ["CLUSTERS", "SelectionOutput", "read_selection_manifest", "select_file"]
