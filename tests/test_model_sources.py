"""A user's own model folders: what is accepted, and the one clear error for what is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from euds.model_sources import (
    embedder_source,
    lm_source,
    max_positions,
    sliding_window,
    source_for,
    start_token,
)
from model_factories import make_family_lm, make_tiny_sentence_encoder, train_bpe_tokenizer


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, training_texts) -> Path:
    return make_family_lm("llama", tmp_path_factory.mktemp("src") / "llama", training_texts)


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory, training_texts) -> Path:
    return make_tiny_sentence_encoder(tmp_path_factory.mktemp("src") / "st", training_texts)


def test_a_causal_lm_folder_is_accepted_with_every_deciding_file(llama_folder):
    source = lm_source(llama_folder)
    assert (source.role, source.kind, source.model_type) == ("lm", "hf", "llama")
    names = {p.name for p in source.hashed}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert source.entry_name().startswith("lm-llama-") and len(source.key()) == 64


def test_the_key_changes_with_the_weights_and_not_with_the_folder(llama_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(llama_folder, copy)
    assert lm_source(copy).key() == lm_source(llama_folder).key()
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert lm_source(copy).key() != lm_source(llama_folder).key()


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("config.json", r"not a causal LM folder: it has no config\.json"),
        ("model.safetensors", r"has no weights: expected one of model\.safetensors"),
        ("tokenizer.json", r"has no tokenizer: expected tokenizer\.json"),
    ],
)
def test_a_folder_missing_a_part_is_refused_naming_it(llama_folder, tmp_path, remove, message):
    copy = tmp_path / "m"
    shutil.copytree(llama_folder, copy)
    (copy / remove).unlink()
    with pytest.raises(ValueError, match=message):
        lm_source(copy)


def test_wrong_kinds_of_path_are_refused(tmp_path, encoder_folder, llama_folder):
    with pytest.raises(ValueError, match="no such file or folder"):
        lm_source(tmp_path / "absent")
    text = tmp_path / "weights.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="must be a GGUF model"):
        lm_source(text)
    with pytest.raises(
        ValueError, match=r"not a causal LM: its config\.json names BertModel.*--embedder"
    ):
        lm_source(encoder_folder)
    with pytest.raises(ValueError, match=r"is a causal LM \(LlamaForCausalLM\).*--model"):
        embedder_source(llama_folder)
    with pytest.raises(ValueError, match="a sentence encoder is a folder"):
        embedder_source(text)


def test_sharded_weights_need_every_shard(llama_folder, tmp_path):
    copy = tmp_path / "sharded"
    shutil.copytree(llama_folder, copy)
    (copy / "model.safetensors").rename(copy / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"lacks weight shards \['model-00002-of-00002"):
        lm_source(copy)


def test_a_sentence_transformers_folder_gives_its_pooling_and_limit(encoder_folder):
    source = embedder_source(encoder_folder)
    assert source.kind == "sentence-transformers"
    assert source.settings == {"pooling": "mean", "normalize": True, "max_seq_length": 64}
    assert source_for(encoder_folder).role == "embedder"


def test_unsupported_modules_and_pooling_modes_are_named(encoder_folder, tmp_path):
    copy = tmp_path / "dense"
    shutil.copytree(encoder_folder, copy)
    modules = json.loads((copy / "modules.json").read_text())
    modules.insert(
        2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"sentence_transformers\.models\.Dense not supported"):
        embedder_source(copy)
    other = tmp_path / "sqrt"
    shutil.copytree(encoder_folder, other)
    pooling = next(other.glob("*Pooling/config.json"))
    # Both config formats: sentence-transformers < 5.7's booleans and the newer pooling_mode.
    for config, named in (
        (
            {"pooling_mode_mean_tokens": False, "pooling_mode_mean_sqrt_len_tokens": True},
            "pooling_mode_mean_sqrt_len_tokens",
        ),
        ({"pooling_mode": "weightedmean"}, "weightedmean"),
        ({"pooling_mode": ["mean", "max"]}, "mean, max"),
    ):
        pooling.write_text(json.dumps(config))
        with pytest.raises(ValueError, match=f"config turns on {named}"):
            embedder_source(other)
    pooling.write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    assert embedder_source(other).settings["pooling"] == "cls"


def test_start_token_rules(training_texts):
    with_template = train_bpe_tokenizer(training_texts[:200], bos_template=True).to_str()
    plain = train_bpe_tokenizer(training_texts[:200]).to_str()
    assert start_token(with_template, {"bos_token_id": 0}) == (
        1,
        "the token the tokenizer's template puts first",
    )
    assert start_token(plain, {"bos_token_id": 1, "eos_token_id": 0})[0] == 1
    assert start_token(plain, {"bos_token_id": None, "eos_token_id": [0, 5]})[0] == 0
    with pytest.raises(ValueError, match="cannot tell which token starts a text"):
        start_token(plain, {})


def test_limits_read_from_the_config():
    assert max_positions({"max_position_embeddings": 2048}) == 2048
    assert max_positions({"n_positions": 1024}) == 1024
    assert max_positions({}) is None
    assert sliding_window({"sliding_window": 4096}) == 4096
    assert sliding_window({"sliding_window": 4096, "use_sliding_window": False}) is None
    assert sliding_window({"sliding_window": None}) is None
