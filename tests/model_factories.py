"""Tiny models for the tests, built in a second: a random Llama with SmolLM2's vocabulary, and a
user's own models of every supported family (a causal LM folder, a GGUF file, a sentence
encoder) with a tokenizer trained here. Functions, not fixtures: conftest.py wraps the ones
many tests share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FAMILIES = ("llama", "qwen2", "mistral", "gpt2")


def make_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A random-weight Llama with SmolLM2's vocabulary, saved as a Hugging Face checkpoint.
    Its logits are spread out (scaled embeddings) so entropies vary between texts."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    config = transformers.LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(40.0)
    model.save_pretrained(folder)
    return folder


def train_bpe_tokenizer(texts: list[str], *, bos_template: bool = False):
    """A byte-level BPE (400 pieces) trained on ``texts``; specials: ``<|endoftext|>`` = 0,
    ``<s>`` = 1. With ``bos_template`` its post-processor puts ``<s>`` first, as Llama's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    return tok


def make_family_lm(family: str, folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A Hugging Face causal-LM folder of ``family`` (2 layers, 32 wide, random weights, logits
    spread out) with a tokenizer.json trained on ``texts``: what a user's own model looks like."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    tok = train_bpe_tokenizer(texts, bos_template=family == "llama")
    vocab = tok.get_vocab_size()
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=0,
    )
    config = {
        "llama": lambda: transformers.LlamaConfig(**common),
        "qwen2": lambda: transformers.Qwen2Config(**common),
        # A window shorter than the longest texts, so that the packed mask must apply it.
        "mistral": lambda: transformers.MistralConfig(sliding_window=16, **common),
        "gpt2": lambda: transformers.GPT2Config(
            vocab_size=vocab,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=256,
            bos_token_id=0,
            eos_token_id=0,
        ),
    }[family]()
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(40.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def make_tiny_sentence_encoder(
    folder: Path, texts: list[str], *, pooling: str = "mean", normalize: bool = True
) -> Path:
    """A sentence-transformers folder: a random 2-layer BERT, a WordPiece tokenizer trained on
    ``texts``, a Pooling module (``mean``, ``cls`` or ``max``) and optionally Normalize."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 5.7 moved the modules
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:
        from sentence_transformers import models as st_models
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(vocab_size=500, special_tokens=specials, show_progress=False),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    base = folder.parent / f"{folder.name}-base"
    base.mkdir(parents=True, exist_ok=True)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(base)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).eval().save_pretrained(base)
    word = st_models.Transformer(str(base), max_seq_length=64)
    modules = [word, st_models.Pooling(32, pooling_mode=pooling)]
    if normalize:
        modules.append(st_models.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


def make_tiny_gguf(path: Path, texts: list[str]) -> Path:
    """A GGUF file of a random 2-layer Llama (float32 tensors) with a byte-level BPE trained on
    ``texts``, written with the ``gguf`` package as llama.cpp lays it out."""
    gguf = pytest.importorskip("gguf")

    spec = json.loads(train_bpe_tokenizer(texts).to_str())
    tokens = [""] * len(spec["model"]["vocab"])
    for token, i in spec["model"]["vocab"].items():
        tokens[i] = token
    special = {a["content"] for a in spec["added_tokens"]}
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    vocab, hidden, ffn, layers, heads, kv_heads = len(tokens), 32, 64, 2, 4, 2
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(0)

    def tensor(name: str, *shape: int, scale: float = 0.2) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    kv = hidden // heads * kv_heads
    tensor("token_embd.weight", vocab, hidden, scale=8.0)
    for b in range(layers):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, np.float32))
        tensor(f"blk.{b}.attn_q.weight", hidden, hidden)
        tensor(f"blk.{b}.attn_k.weight", kv, hidden)
        tensor(f"blk.{b}.attn_v.weight", kv, hidden)
        tensor(f"blk.{b}.attn_output.weight", hidden, hidden)
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, np.float32))
        tensor(f"blk.{b}.ffn_gate.weight", ffn, hidden)
        tensor(f"blk.{b}.ffn_up.weight", ffn, hidden)
        tensor(f"blk.{b}.ffn_down.weight", hidden, ffn)
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    tensor("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
