"""The experiment's data: the files it writes once (superset, junk, dev, eval), the seeded pool of
each seed (:func:`pool_rows`), and a pool's score columns (:func:`make_pool`).

A seeded *superset* of the training file (after the config's ``preprocess``) is scored once with
all three signals. Seed s draws its *pool* from the superset, so pools vary with the seed; the
*noisy pool* of seed s adds ``noise`` junk (:mod:`euds.research.noise`, random labels) made from
that pool, scored once for all seeds. Per-record columns (information, generative, text hash,
embeddings) are the superset's; the semantic signal is recomputed on each pool (k-means on the
pool's embeddings, then its soft assignment), as scoring that pool would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from euds.cache import atomic_write_bytes
from euds.provenance import open_text
from euds.research.methods import POOLS

# -- data ----------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a small labelled JSONL(.gz) file (the experiment's own data files)."""
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    write_changed(path, jsonl_bytes(records))


def write_changed(path: Path, data: bytes, current: bytes | None = None) -> None:
    """Writes ``data`` to ``path`` unless the file holds it already (``current``: its bytes,
    where the caller has read them). Unchanged files keep their mtime: their scores are found
    again on a rerun."""
    if current is None and path.is_file():
        current = path.read_bytes()
    if current != data:
        atomic_write_bytes(path, data)


@dataclass
class Prepared:
    superset: list[dict[str, Any]]
    junk: list[dict[str, Any]]  # every seed's junk, id junk-SEED-I, with "junk" = its kind
    dev: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    paths: dict[str, Path]
    pool_size: int


def load_records(path: Path, cleaner: str | None) -> list[dict[str, Any]]:
    """The records of a JSONL file as the experiment sees them: each text through the dataset's
    clean-up (:mod:`euds.research.preprocess`, by name; None: as read), records left without
    text dropped."""
    from euds.research import preprocess

    clean = preprocess.get(cleaner)
    records = read_jsonl(path)
    if clean is not None:
        records = [{**r, "text": clean(r["text"])} for r in records]
    # A post with nothing left after the clean-up carries no text to learn from.
    return [r for r in records if r["text"].strip()]


def prepare_data(config: Any) -> Prepared:
    """Writes superset.jsonl, junk.jsonl, dev.jsonl and eval.jsonl under the output folder."""
    from euds.output import Protected, claim_folder
    from euds.research.noise import noisy_pool

    inputs = [config.train, config.eval, config.dev or None]
    out = claim_folder(config.output, Protected.of(inputs=inputs), ".euds-experiment")

    def load(path: str) -> list[dict[str, Any]]:
        return load_records(Path(path), config.preprocess)

    train = load(config.train)
    rng = np.random.default_rng(config.sample_seed)
    order = rng.permutation(len(train))
    dev = load(config.dev) if config.dev else [train[i] for i in np.sort(order[-config.dev_size :])]
    if not config.dev:
        order = order[: -config.dev_size]
    n = min(config.superset or len(order), len(order))
    if n < config.pool_size:
        raise ValueError(
            f"{config.train} has {n} usable records, the pool needs {config.pool_size}"
        )
    superset = [train[i] for i in np.sort(order[:n])]
    evaluation = load(config.eval)
    if config.eval_size and config.eval_size < len(evaluation):
        keep = np.random.default_rng(config.sample_seed + 1).permutation(len(evaluation))
        evaluation = [evaluation[i] for i in np.sort(keep[: config.eval_size])]
    junk = []
    for seed in config.seeds:
        pool = [superset[i] for i in pool_rows(len(superset), config.pool_size, seed)]
        junk += [r for r in noisy_pool(pool, config.noise, seed=seed) if "junk" in r]
    paths = {k: out / f"{k}.jsonl" for k in ("superset", "junk", "dev", "eval")}
    files = {"superset": superset, "junk": junk, "dev": dev, "eval": evaluation}
    data = {key: jsonl_bytes(records) for key, records in files.items()}
    current = {key: path.read_bytes() if path.is_file() else None for key, path in paths.items()}
    # A file that was scored is never rewritten under its scores (other seeds build other
    # junk): refused before anything is written, so the folder stays as it was.
    for key in ("superset", "junk"):
        scores = out / "scores" / key
        if scores.exists() and current[key] not in (None, data[key]):
            raise ValueError(
                f"{paths[key]} would change (other seeds or settings than those its scores in "
                f"{scores} were made from); give this run its own output folder"
            )
    for key, path in paths.items():
        write_changed(path, data[key], current[key])
    return Prepared(superset, junk, dev, evaluation, paths, config.pool_size)


def pool_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The superset rows of seed ``seed``'s pool (sorted)."""
    return np.sort(np.random.default_rng([seed, 17]).choice(n, size=size, replace=False))


# -- pools ---------------------------------------------------------------------------------------


@dataclass
class Pool:
    """One pool of one seed: its records, score columns, embeddings and k-means clusters."""

    kind: str  # clean | noisy
    seed: int
    records: list[dict[str, Any]]
    columns: dict[str, np.ndarray]
    embeddings: np.ndarray
    clusters: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([str(r["label"]) for r in self.records])

    @property
    def words(self) -> np.ndarray:
        return np.array([len(r["text"].split()) for r in self.records])

    @property
    def junk(self) -> np.ndarray:
        return np.array([r.get("junk") or "" for r in self.records], dtype=object)


@dataclass
class Scored:
    """Score columns and embeddings of a scored file, by row."""

    columns: dict[str, np.ndarray]
    embeddings: np.ndarray

    @classmethod
    def read(cls, path: Path) -> Scored:
        from euds.scores import ScoreDir

        sd = ScoreDir(path)
        table = sd.read(["id", "information", "generative", "bpb", "n_tokens", "text_hash"])
        columns = {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
        emb = np.concatenate([np.asarray(sd.embeddings(s), dtype=np.float32) for s in sd.shards()])
        return cls(columns, emb)

    def rows(self, index: np.ndarray) -> Scored:
        return Scored({k: v[index] for k, v in self.columns.items()}, self.embeddings[index])


def pool_kinds(noise: float, configured: list[int], seed: int) -> tuple[str, ...]:
    """The pools seed ``seed`` has: clean, and with ``noise`` a noisy one too if the seed is
    among the ``configured`` ones, the only seeds whose junk is built."""
    return POOLS if noise and seed in configured else ("clean",)


def make_pool(
    kind: str,
    seed: int,
    prepared: Prepared,
    superset: Scored,
    junk: Scored,
    score: dict[str, Any],
    noise: float,
    target: np.ndarray | None = None,
) -> Pool:
    """Seed ``seed``'s pool (``kind`` clean or noisy) with its score columns: the records' own
    from the scored superset and junk, semantic entropy and clusters from k-means on this pool,
    near-duplicate keys from the texts, and, given ``target`` embeddings (the dev split's), the
    ``target`` similarity column."""
    from euds.config import ScoreConfig
    from euds.duplicates import near_duplicate_keys
    from euds.research.noise import noisy_pool
    from euds.selection import TARGET, target_column
    from euds.signals.semantic import assign, fit_centroids, nearest_centroid

    rows = pool_rows(len(prepared.superset), prepared.pool_size, seed)
    records = [prepared.superset[i] for i in rows]
    part = superset.rows(rows)
    if kind == "noisy":
        records = noisy_pool(records, noise, seed=seed)
        # Rows of [pool, then every seed's junk] in the noisy pool's order.
        junk_at = {r["id"]: len(rows) + i for i, r in enumerate(prepared.junk)}
        clean_at = iter(range(len(rows)))
        index = np.array([junk_at[r["id"]] if "junk" in r else next(clean_at) for r in records])
        both = Scored(
            {k: np.concatenate([v, junk.columns[k]]) for k, v in part.columns.items()},
            np.concatenate([part.embeddings, junk.embeddings]),
        )
        part = both.rows(index)
    config = ScoreConfig(**score)
    centroids = fit_centroids(
        part.embeddings,
        config.k,
        seed=config.seed,
        max_points_per_centroid=config.max_points_per_centroid,
    )
    columns = dict(part.columns)
    # From the texts with the pass's own function: score directories made before the column
    # existed lack it.
    columns["near_keys"] = near_duplicate_keys([r["text"] for r in records])
    columns["semantic"] = assign(part.embeddings, centroids, config.m, config.temperature)
    if target is not None:
        columns[TARGET] = target_column(
            "embedding", embeddings=part.embeddings, target_embeddings=target
        )
    clusters = nearest_centroid(part.embeddings, centroids)
    return Pool(kind, seed, records, columns, part.embeddings, clusters)
