"""A user's own models: recognising a folder or GGUF file, checking it, and naming its cache entry.

``--model PATH`` takes a Hugging Face causal-LM folder (``config.json`` naming a ``*ForCausalLM``
/ ``*LMHeadModel`` architecture, safetensors or ``.bin`` weights, a tokenizer) or a GGUF file;
``--embedder PATH`` takes a sentence-transformers folder (``modules.json`` of a Transformer, a
Pooling and optionally a Normalize module) or a plain Hugging Face encoder folder (mean pooling,
as sentence-transformers itself assumes). This module reads such a source without loading any
weights: :func:`lm_source` / :func:`embedder_source` check it and raise one ``ValueError`` that
names what is missing, and :class:`ModelSource` carries what the export needs and the key of the
cache entry: the sha256 of every file that decides the model (config, weights, tokenizer,
pooling), so an edited model gets a new entry and an unchanged one is exported once.

:mod:`euds.models` turns a source into a cache entry (the ONNX export); the rules that decide
how a model is run once exported — which token starts a text (:func:`start_token`), how many
positions it takes (:func:`max_positions`) — live here, beside the checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from euds.cache import sha256_file_cached

# Version of the key: a change to how a source is exported changes every key.
KEY_VERSION = 1
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Files transformers builds a fast tokenizer from when there is no tokenizer.json.
TOKENIZER_SOURCES = (
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# sentence-transformers module classes euds runs, by class name (the module path moved in 5.x:
# sentence_transformers.models.Pooling became ...sentence_transformer.modules.pooling.Pooling).
ST_MODULES = ("Transformer", "Pooling", "Normalize")
# sentence-transformers' pooling modes (1_Pooling/config.json keys) -> euds's name; None: not
# supported by euds.
POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": None,
    "pooling_mode_weightedmean_tokens": None,
    "pooling_mode_lasttoken": None,
}
POOLINGS = ("mean", "cls", "max")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSource:
    """A checked user model. ``weights``: the folder transformers loads (for an embedder, its
    Transformer module's folder; for a GGUF file, the file). ``tokenizer``: its
    ``tokenizer.json``, or None when one must be built by transformers from the slow files."""

    role: str  # "lm" or "embedder"
    kind: str  # "hf", "sentence-transformers" or "gguf"
    path: Path
    weights: Path
    config: dict[str, Any]
    tokenizer: Path | None
    hashed: tuple[Path, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type") or "gguf")

    def key(self) -> str:
        """sha256 over the version, role, settings and every deciding file's sha256."""
        files = {
            p.relative_to(self.path).as_posix() if p != self.path else p.name: sha256_file_cached(p)
            for p in self.hashed
        }
        text = json.dumps(
            {"v": KEY_VERSION, "role": self.role, "settings": self.settings, "files": files},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def entry_name(self) -> str:
        """The cache entry's folder name: role, model type and 16 hex digits of the key."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.model_type)
        return f"{self.role}-{safe}-{self.key()[:16]}"

    def describe(self) -> dict[str, Any]:
        """What a manifest records of the source."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "model_type": self.model_type,
            "architectures": self.config.get("architectures"),
            "sha256": self.key(),
            **({"settings": self.settings} if self.settings else {}),
        }


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def lm_source(path: str | os.PathLike[str], *, option: str = "--model") -> ModelSource:
    """Checks a causal-LM folder or GGUF file; ``ValueError`` naming what is missing."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{option} {path}: no such file or folder")
    if path.is_file():
        if not is_gguf(path):
            raise ValueError(
                f"{option} {path}: a file must be a GGUF model (it does not start with 'GGUF'); "
                "otherwise give a Hugging Face model folder"
            )
        return ModelSource("lm", "gguf", path, path, {}, None, (path,))
    config = _read_config(path, option, "causal LM")
    architectures = config.get("architectures") or []
    causal = _causal_lm_architectures()
    if not any(a in causal or a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        named = ", ".join(architectures) or "no architecture"
        hint = " (a sentence encoder: pass it as --embedder)" if _is_encoder(config) else ""
        raise ValueError(
            f"{option} {path} is not a causal LM: its config.json names {named}{hint}; euds "
            "needs a *ForCausalLM / *LMHeadModel checkpoint"
        )
    weights = _weight_files(path, option)
    tokenizer = _tokenizer_files(path, option)
    return ModelSource(
        "lm",
        "hf",
        path,
        path,
        config,
        path / "tokenizer.json" if (path / "tokenizer.json").is_file() else None,
        (path / "config.json", *weights, *tokenizer),
    )


def embedder_source(path: str | os.PathLike[str], *, option: str = "--embedder") -> ModelSource:
    """Checks a sentence-transformers (or plain encoder) folder; ``ValueError`` naming what is
    missing or not supported. ``settings``: pooling, normalize, max_seq_length."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{option} {path}: no such file or folder")
    if not path.is_dir():
        raise ValueError(f"{option} {path}: a sentence encoder is a folder, not a file")
    hashed: list[Path] = []
    modules_path = path / "modules.json"
    if modules_path.is_file():
        transformer, pooling, normalize = _st_modules(path, modules_path, option)
        hashed += [modules_path, *[p for p in (pooling / "config.json",) if p.is_file()]]
        mode = _pooling_mode(pooling / "config.json", option)
        kind = "sentence-transformers"
    else:
        transformer, mode, normalize, kind = path, "mean", False, "hf"
    config = _read_config(transformer, option, "sentence encoder")
    architectures = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise ValueError(
            f"{option} {path} is a causal LM ({', '.join(architectures)}), not a sentence "
            "encoder: pass it as --model"
        )
    weights = _weight_files(transformer, option)
    tokenizer = _tokenizer_files(transformer, option)
    st_config = transformer / "sentence_bert_config.json"
    max_len = _max_seq_length(st_config, transformer, config)
    hashed += [transformer / "config.json", *weights, *tokenizer]
    if st_config.is_file():
        hashed.append(st_config)
    settings = {"pooling": mode, "normalize": normalize, "max_seq_length": max_len}
    return ModelSource(
        "embedder",
        kind,
        path,
        transformer,
        config,
        transformer / "tokenizer.json" if (transformer / "tokenizer.json").is_file() else None,
        tuple(hashed),
        settings,
    )


def source_for(path: str | os.PathLike[str]) -> ModelSource:
    """A causal LM or a sentence encoder, told apart by the files (``euds models prepare
    PATH``): a GGUF file or a causal-LM config is an LM, anything else is tried as an
    encoder, whose checks name what is missing."""
    path = Path(path)
    if path.is_file():
        return lm_source(path, option="models prepare")
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        architectures = []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    if causal and not (path / "modules.json").is_file():
        return lm_source(path, option="models prepare")
    return embedder_source(path, option="models prepare")


def content_key(path: str | os.PathLike[str], role: str) -> str:
    """What a score directory records of a model named by path, so that the same path holding
    another model does not resume or reuse old scores: a prepared folder's recorded source, or
    a user's model's :meth:`ModelSource.key`."""
    path = Path(path)
    try:
        source = json.loads((path / "manifest.json").read_text())["source"]
        return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (lm_source(path) if role == "lm" else embedder_source(path)).key()


def start_token(tokenizer_json: str, config: dict[str, Any]) -> tuple[int, str]:
    """(id, why) of the token prepended to every text so that its first content token is
    predicted too: the token the tokenizer's own template puts first (Llama's ``<s>``), else
    ``bos_token_id``, else ``eos_token_id`` (GPT-2 style: end-of-text starts a text)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    plain = tok.encode("a", add_special_tokens=False).ids
    framed = tok.encode("a", add_special_tokens=True).ids
    if len(framed) > len(plain) and framed[: len(plain)] != plain:
        return int(framed[0]), "the token the tokenizer's template puts first"
    for key in ("bos_token_id", "eos_token_id"):
        value = config.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, int) and not isinstance(value, bool):
            return value, f"{key} in config.json"
    raise ValueError(
        "cannot tell which token starts a text: the tokenizer adds none and config.json has "
        "neither bos_token_id nor eos_token_id"
    )


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest sequence the model's position embeddings allow, from its config."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def sliding_window(config: dict[str, Any]) -> int | None:
    """The attention window of a sliding-window model (Mistral), None for full attention."""
    window = config.get("sliding_window")
    if not isinstance(window, int) or window <= 0 or config.get("use_sliding_window") is False:
        return None
    return window


# -- checks ----------------------------------------------------------------------------------


def _read_config(folder: Path, option: str, what: str) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ValueError(
            f"{option} {folder} is not a {what} folder: it has no config.json (nor the "
            "manifest.json of a folder euds prepared)"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{option} {path} is not readable JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{option} {path} is not a JSON object")
    return config


def _weight_files(folder: Path, option: str) -> list[Path]:
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{option} {path} is not a weight index: {e}") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ValueError(f"{option} {folder} lacks weight shards {missing} named by {name}")
        return [path, *(folder / s for s in shards)]
    raise ValueError(f"{option} {folder} has no weights: expected one of {', '.join(WEIGHT_FILES)}")


def _tokenizer_files(folder: Path, option: str) -> list[Path]:
    present = [folder / n for n in ("tokenizer.json", *TOKENIZER_SOURCES) if (folder / n).is_file()]
    if not any(
        p.name in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt") for p in present
    ):
        raise ValueError(
            f"{option} {folder} has no tokenizer: expected tokenizer.json (or files transformers "
            "builds one from: tokenizer.model, vocab.json + merges.txt, vocab.txt)"
        )
    return present


def _causal_lm_architectures() -> set[str]:
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is in the export extra
        return set()
    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update(value if isinstance(value, (list, tuple)) else [value])
    return names


def _is_encoder(config: dict[str, Any]) -> bool:
    return any(
        a.endswith(("Model", "ForMaskedLM")) and not a.endswith("LMHeadModel")
        for a in config.get("architectures") or []
    )


def _st_modules(root: Path, modules_path: Path, option: str) -> tuple[Path, Path, bool]:
    try:
        modules = json.loads(modules_path.read_text())
        entries = [(str(m["type"]), str(m.get("path", ""))) for m in modules]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{option} {modules_path} is not a sentence-transformers module list: {e}"
        ) from None
    types = [t for t, _ in entries]
    kinds = [t.rsplit(".", 1)[-1] if t.startswith("sentence_transformers.") else t for t in types]
    unsupported = [t for t, k in zip(types, kinds, strict=True) if k not in ST_MODULES]
    if (
        unsupported
        or kinds[:2] != ["Transformer", "Pooling"]
        or kinds[2:] not in ([], ["Normalize"])
    ):
        raise ValueError(
            f"{option} {root}: euds runs a Transformer, a Pooling and optionally a Normalize "
            f"module, in that order; modules.json lists {', '.join(kinds) or 'nothing'}"
            + (f" ({', '.join(unsupported)} not supported)" if unsupported else "")
        )
    return root / entries[0][1], root / entries[1][1], "Normalize" in kinds


def _pooling_mode(path: Path, option: str) -> str:
    """The one pooling mode of a Pooling module's config: ``pooling_mode`` (a name or a list;
    sentence-transformers >= 5.7) or the older ``pooling_mode_*`` booleans."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{option} {path}: the pooling config is not readable: {e}") from None
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        on = [str(m) for m in mode] if isinstance(mode, list) else [str(mode)]
    else:
        on = [k for k in POOLING_MODES if config.get(k)]
    names = [POOLING_MODES.get(m, m if m in POOLINGS else None) for m in on]
    if len(on) != 1 or names[0] is None:
        raise ValueError(
            f"{option} {path}: euds pools with exactly one of mean, cls or max tokens; the "
            f"config turns on {', '.join(on) or 'none'}"
        )
    return str(names[0])


def _max_seq_length(st_config: Path, folder: Path, config: dict[str, Any]) -> int:
    """sentence-transformers' ``max_seq_length``, else the tokenizer's ``model_max_length``,
    bounded by the position embeddings."""
    limit = max_positions(config)
    length = None
    for path, key in (
        (st_config, "max_seq_length"),
        (folder / "tokenizer_config.json", "model_max_length"),
    ):
        try:
            value = json.loads(path.read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < 1_000_000:
            length = value
            break
    if length is None:
        length = limit or 512
    return min(length, limit) if limit else length
