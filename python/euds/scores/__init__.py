"""The score directory: score shards in Parquet, kept embeddings, late columns, a manifest.

Layout of ``SCORES_DIR``::

    _manifest.json        config, input identity, model hashes, library versions, shard list,
                          status ("scoring" until the pass and the late columns are done)
    part-00000.parquet    rows [0, shard_size): id, information, generative, nll, bpb,
                          n_tokens, truncated, flags (the signals scored in the pass),
                          text_hash and near_keys (the exact- and near-duplicate keys of
                          :mod:`euds.duplicates`);
                          text_hash, near_keys and bpb are absent in directories scored
                          before they existed
    emb-00000.npy         float16 embeddings of those rows (semantic signal), kept so that
                          clustering or re-selection never re-embeds
    ids-00000.npz         content token ids of those rows (corpus-mode information only)
    late.parquet          columns computed after the pass over the whole pool, in row order:
                          ``semantic`` (and ``information`` in corpus mode)
    centroids.npy         the spherical k-means centroids behind ``semantic``

Every file is written under a temporary name and renamed when complete, and the manifest is
rewritten (atomically) after each shard: a killed run leaves complete shards and a manifest
that lists exactly them. :func:`read_scores` joins the parts and the late columns into one
table whose rows follow the input's order.

:mod:`euds.scores.lifecycle` owns the directory's life cycle (:func:`open_for_scoring`), the
same for every engine: open, resume, reuse or replace a score directory, under an exclusive lock.
euds deletes only files it can prove it wrote: the files a valid manifest lists, the files of
the shards the manifest says a run was writing (``writing``), the late files, and temporary
files carrying the token of a run recorded in the manifest (``run_tokens``). It never deletes
a folder it did not create, and it refuses a non-empty folder that is not a score directory.
"""

from euds.scores.directory import ScoreDir, read_scores
from euds.scores.layout import (
    CENTROIDS,
    COLUMN_ORDER,
    FORMAT_VERSION,
    LATE,
    LOCK,
    MANIFEST,
    ShardInfo,
    embedding_name,
    ids_name,
    part_name,
    shard_names,
)
from euds.scores.lifecycle import ScoreRun, input_identity, open_for_scoring, same_input

__all__ = [
    "CENTROIDS",
    "COLUMN_ORDER",
    "FORMAT_VERSION",
    "LATE",
    "LOCK",
    "MANIFEST",
    "ScoreDir",
    "ScoreRun",
    "ShardInfo",
    "embedding_name",
    "ids_name",
    "input_identity",
    "open_for_scoring",
    "part_name",
    "read_scores",
    "same_input",
    "shard_names",
]
