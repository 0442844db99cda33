"""Model preparation: cache layout, manifest, idempotence, recovery from partial builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from euds import models
from euds.cache import sha256_file
from euds.tokenizer import smollm2_gguf_path
from model_factories import make_tiny_llama

pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_lm):
    """An empty cache whose 'GGUF dequantisation' copies the tiny checkpoint (fast)."""
    monkeypatch.setenv("EUDS_CACHE", str(tmp_path / "cache"))
    calls = {"checkpoint": 0}

    def fake_checkpoint(gguf: Path, out_dir: Path) -> None:
        calls["checkpoint"] += 1
        shutil.copytree(tiny_lm.hf, out_dir)

    monkeypatch.setattr(models, "hf_checkpoint_from_gguf", fake_checkpoint)
    # The tokenizer cache is shared with the real one (building it again costs seconds).
    from euds import tokenizer

    real_cache = tiny_lm.tokenizer
    monkeypatch.setattr(tokenizer, "smollm2_tokenizer_path", lambda: real_cache)
    monkeypatch.setattr(models, "smollm2_tokenizer_path", lambda: real_cache)
    return tmp_path / "cache" / "models" / models.LM_NAME, calls


def test_prepare_writes_manifest_and_is_idempotent(cache):
    folder, calls = cache
    files = models.prepare_lm()
    assert files.folder == folder and calls["checkpoint"] == 1
    manifest = files.manifest()
    assert manifest["source"]["sha256"] == sha256_file(smollm2_gguf_path())
    assert manifest["versions"]["onnxruntime"] and manifest["versions"]["transformers"]
    for name in ("lm.onnx", "lm_packed.onnx", "tokenizer.json", "hf/config.json"):
        entry = manifest["files"][name]
        assert entry["size"] == (folder / name).stat().st_size
        assert entry["sha256"] == sha256_file(folder / name)
    mtime = files.packed.stat().st_mtime_ns
    again = models.lm_files()
    assert calls["checkpoint"] == 1 and again.packed.stat().st_mtime_ns == mtime
    assert models.prepare_lm(verify=True).folder == folder and calls["checkpoint"] == 1


def test_truncated_graph_is_detected_and_rebuilt(cache):
    _, calls = cache
    files = models.prepare_lm()
    data = files.packed.read_bytes()
    files.packed.write_bytes(data[: len(data) // 2])  # a killed copy
    rebuilt = models.lm_files()
    assert calls["checkpoint"] == 2
    entry = rebuilt.manifest()["files"]["lm_packed.onnx"]
    assert rebuilt.packed.stat().st_size == entry["size"] > len(data) // 2


def test_same_size_corruption_is_found_by_verify(cache):
    folder, calls = cache
    assert not folder.exists()
    files = models.prepare_lm()
    raw = bytearray(files.tokenizer.read_bytes())
    raw[100] ^= 0xFF
    files.tokenizer.write_bytes(bytes(raw))
    models.lm_files()  # the quick check only compares sizes
    assert calls["checkpoint"] == 1
    models.prepare_lm(verify=True)
    assert calls["checkpoint"] == 2
    assert (
        sha256_file(folder / "tokenizer.json")
        == files.manifest()["files"]["tokenizer.json"]["sha256"]
    )


def _flip_byte(path: Path) -> None:
    """Alters one byte in place (in the middle: a graph's weights, which would load and score
    silently wrong): same size, so only a checksum can tell."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_same_size_corruption_of_a_graph_is_rebuilt_before_loading(cache):
    from euds.signals.generative import GenerativeScorer

    folder, calls = cache
    files = models.prepare_lm()
    recorded = files.manifest()["files"]["lm_packed.onnx"]["sha256"]
    _flip_byte(folder / "lm_packed.onnx")
    scorer = GenerativeScorer()  # the default model: the cache entry
    assert calls["checkpoint"] == 2
    assert scorer.graph == folder / "lm_packed.onnx"
    assert (
        sha256_file(scorer.graph)
        == recorded
        == files.manifest()["files"]["lm_packed.onnx"]["sha256"]
    )


def test_same_size_corruption_in_a_given_folder_is_refused(tiny_lm, tmp_path):
    from euds import EudsError
    from euds.signals.generative import GenerativeScorer

    folder = tmp_path / "lm"
    shutil.copytree(tiny_lm.folder, folder)
    _flip_byte(folder / "lm.onnx")
    with pytest.raises(EudsError, match=r"lm\.onnx.*sha256.*euds models prepare --force"):
        GenerativeScorer(str(folder), packing=False)
    # The untouched graph of the same folder still loads.
    assert GenerativeScorer(str(folder)).graph == folder / "lm_packed.onnx"
    assert models.LmFiles(folder).config()["model_type"] == "llama"


def test_graph_checksum_is_computed_once_per_process(tiny_lm, tmp_path, monkeypatch):
    from euds import cache as cache_module

    folder = tmp_path / "lm"
    shutil.copytree(tiny_lm.folder, folder)
    hashed: list[str] = []
    real = cache_module.sha256_file
    monkeypatch.setattr(
        cache_module, "sha256_file", lambda p, *a: hashed.append(Path(p).name) or real(p, *a)
    )
    for _ in range(3):
        assert models.LmFiles(folder).packed == folder / "lm_packed.onnx"
    assert hashed == ["lm_packed.onnx"]
    # A changed file (new mtime) is hashed again, and found wrong.
    _flip_byte(folder / "lm_packed.onnx")
    from euds import EudsError

    with pytest.raises(EudsError, match=r"lm_packed\.onnx"):
        _ = models.LmFiles(folder).packed
    assert hashed == ["lm_packed.onnx", "lm_packed.onnx"]


def test_embedder_graph_is_verified_too(embedder, tmp_path):
    from euds import EudsError

    folder = tmp_path / "emb"
    folder.mkdir()
    manifest = embedder.manifest()
    small = {"tokenizer.json", "config.json"}
    for name in small:
        shutil.copyfile(embedder.folder / name, folder / name)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k in small}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert models.EmbedderFiles(folder).tokenizer == folder / "tokenizer.json"
    _flip_byte(folder / "tokenizer.json")
    with pytest.raises(EudsError, match=r"tokenizer\.json.*sha256"):
        _ = models.EmbedderFiles(folder).tokenizer


def test_stale_entry_rebuilds_but_a_missing_or_damaged_manifest_is_refused(cache):
    """An entry whose manifest euds wrote is rebuilt when its files no longer match; without a
    readable manifest nothing shows that euds made the folder, so it is left as it is."""
    folder, calls = cache
    models.prepare_lm()
    victim = next(p for p in folder.iterdir() if p.name != "manifest.json" and p.is_file())
    victim.write_bytes(victim.read_bytes() + b"x")
    models.lm_files()
    assert calls["checkpoint"] == 2
    (folder / "manifest.json").write_text("{not json")
    kept = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="holds no readable euds manifest"):
        models.lm_files()
    (folder / "manifest.json").unlink()
    with pytest.raises(ValueError, match="holds no readable euds manifest"):
        models.lm_files()
    assert calls["checkpoint"] == 2
    del kept["manifest.json"]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == kept


def test_failed_export_leaves_nothing_behind(cache, monkeypatch):
    folder, _ = cache

    def boom(hf_dir: Path, out_path: Path) -> None:
        out_path.write_bytes(b"half a graph")
        raise RuntimeError("export killed")

    monkeypatch.setattr(models, "export_packed", boom)
    with pytest.raises(RuntimeError, match="export killed"):
        models.prepare_lm()
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_lm_files_without_prepare_says_how(cache):
    from euds import EudsError

    with pytest.raises(EudsError, match="euds models prepare"):
        models.lm_files(prepare=False)


def test_variants_are_built_on_demand_and_recorded(cache):
    files = models.prepare_lm()
    path = files.variant("int8")
    assert path.is_file() and "lm_packed_int8.onnx" in files.manifest()["files"]
    assert files.variant("int8") == path
    with pytest.raises(ValueError, match="variant"):
        files.variant("bf16")


def test_real_smollm2_cache_entry(smollm2):
    manifest = smollm2.manifest()
    assert manifest["model"] == models.LM_NAME
    assert manifest["source"]["path"].endswith(".gguf")
    config = json.loads((smollm2.hf / "config.json").read_text())
    assert config["vocab_size"] == 49152 and config["num_hidden_layers"] == 30


def test_tiny_checkpoint_helper_is_a_llama(tmp_path):
    folder = make_tiny_llama(tmp_path / "x")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"


# -- a user's own models in the cache -----------------------------------------------------------


def test_a_users_model_is_exported_once_and_found_by_its_content(
    tmp_path, monkeypatch, training_texts
):
    from euds import EudsError
    from model_factories import make_family_lm

    monkeypatch.setenv("EUDS_CACHE", str(tmp_path / "cache"))
    folder = make_family_lm("llama", tmp_path / "mine", training_texts, seed=5)
    with pytest.raises(EudsError, match=f"euds models prepare {folder}"):
        models.lm_files_for(folder, prepare=False)
    files = models.lm_files_for(folder)
    assert files.folder.parent == tmp_path / "cache" / "models"
    assert files.folder.name.startswith("lm-llama-")
    manifest = files.manifest()
    assert manifest["source"]["kind"] == "hf" and manifest["lm"]["bos_id"] == 1
    assert manifest["lm"]["packing"]["supported"] is True
    # Only the config is kept of the checkpoint: the weights stay in the user's folder.
    assert sorted(p.name for p in (files.folder / "hf").iterdir()) == ["config.json"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(models, "export_padded", no_export)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert models.lm_files_for(copy) == files  # the same content: the same entry
    assert models.lm_files_for(files.folder) == files  # the prepared folder itself
    # int8 variants work on a user's model as on SmolLM2.
    assert files.variant("int8-block").is_file()


def test_a_users_encoder_is_exported_once(tmp_path, monkeypatch, training_texts):
    from model_factories import make_tiny_sentence_encoder

    monkeypatch.setenv("EUDS_CACHE", str(tmp_path / "cache"))
    folder = make_tiny_sentence_encoder(tmp_path / "st", training_texts, pooling="cls")
    files = models.embedder_files_for(folder)
    assert files.folder.name.startswith("embedder-bert-")
    assert files.info() == {
        "pooling": "cls",
        "normalize": True,
        "max_seq_length": 64,
        "pooled_graph": True,
    }
    monkeypatch.setattr(models, "export_encoder", lambda *a, **k: pytest.fail("exported again"))
    assert models.embedder_files_for(folder) == files
