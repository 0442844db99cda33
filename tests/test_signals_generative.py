"""Generative entropy: the ONNX Runtime scorer against plain PyTorch, packing, order, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from euds.signals.generative import GenerativeScorer, plan_rows
from euds.tokenizer import TextTokenizer, TokenBatch
from model_factories import FAMILIES, make_family_lm

torch = pytest.importorskip("torch")

TEXTS = [
    "hide new secretions from the parental units",
    "",
    "contains no wit , only labored gags",
    "   \n\t ",
    "that loves its characters and communicates something rather beautiful about human nature",
    "a",
    "remains utterly satisfied to remain the same throughout",
    "on the worst revenge-of-the-nerds clichés the filmmakers could dredge up",
    "that 's far too tragic to merit such superficial treatment",
    "demonstrates that the director of such hollywood blockbusters as patriot games can still "
    "turn out a small , personal film with an emotional wallop .",
]


def torch_reference(model, tokens: TokenBatch, bos: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The definition, computed plainly: one text at a time, float64 log-softmax."""
    ge, nll = [], []
    with torch.no_grad():
        for i in range(len(tokens)):
            content = tokens.row(i).tolist()
            if not content:
                ge.append(np.nan)
                nll.append(np.nan)
                continue
            ids = torch.tensor([[bos, *content]])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            ge.append(float(-(logp.exp() * logp).sum(-1).mean()))
            nll.append(float(-logp.gather(1, ids[0, 1:, None]).mean()))
    return np.array(ge), np.array(nll)


def load_torch(files):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(files.hf), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny(tiny_lm):
    return tiny_lm, load_torch(tiny_lm)


@pytest.fixture(scope="module")
def batch() -> TokenBatch:
    return TextTokenizer(max_tokens=32).encode(TEXTS)


def test_tiny_model_matches_pytorch(tiny, batch):
    files, model = tiny
    ge, nll = GenerativeScorer(files).score(batch)
    ref_ge, ref_nll = torch_reference(model, batch)
    assert np.array_equal(np.isnan(ge), np.isnan(ref_ge))
    np.testing.assert_allclose(ge, ref_ge, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(nll, ref_nll, atol=1e-4, equal_nan=True)
    # The tiny model is not degenerate: texts differ.
    assert np.nanstd(ge) > 0.05


@pytest.mark.parametrize(
    "options",
    [
        {"packing": False},
        {"pack_length": 2},
        {"pack_length": 200},
        {"batch_tokens": 1},
        {"batch_tokens": 7, "pack_length": 16},
        {"reduction": "graph"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_every_batching_gives_the_same_scores(tiny, batch, options):
    files, _ = tiny
    ge, nll = GenerativeScorer(files).score(batch)
    ge2, nll2 = GenerativeScorer(files, **options).score(batch)
    np.testing.assert_allclose(ge2, ge, atol=2e-5, equal_nan=True)
    np.testing.assert_allclose(nll2, nll, atol=2e-5, equal_nan=True)


def test_results_follow_input_order(tiny):
    files, _ = tiny
    tok = TextTokenizer(max_tokens=32)
    scorer = GenerativeScorer(files, pack_length=24)
    ge, _ = scorer.score(tok.encode(TEXTS))
    perm = np.random.default_rng(3).permutation(len(TEXTS))
    ge_perm, _ = scorer.score(tok.encode([TEXTS[i] for i in perm]))
    np.testing.assert_allclose(ge_perm, ge[perm], atol=2e-5, equal_nan=True)


def test_empty_texts_are_nan_and_others_are_finite(tiny, batch):
    files, _ = tiny
    ge, nll = GenerativeScorer(files).score(batch)
    empty = batch.n_tokens == 0
    assert empty.tolist() == [t.strip() == "" for t in TEXTS]
    assert np.isnan(ge[empty]).all() and np.isnan(nll[empty]).all()
    assert np.isfinite(ge[~empty]).all() and np.isfinite(nll[~empty]).all()


def test_all_empty_batch(tiny):
    files, _ = tiny
    ge, nll = GenerativeScorer(files).score(TextTokenizer().encode(["", " ", None]))
    assert np.isnan(ge).all() and np.isnan(nll).all() and ge.shape == (3,)


def test_truncated_texts_use_their_first_tokens(tiny):
    files, model = tiny
    long_text = " ".join(["word", "other", "thing"] * 200)
    tok = TextTokenizer(max_tokens=16)
    tokens = tok.encode([long_text, "short one"])
    assert tokens.truncated.tolist() == [True, False]
    assert tokens.n_tokens[0] == 15
    ge, nll = GenerativeScorer(files).score(tokens)
    ref_ge, ref_nll = torch_reference(model, tokens)
    np.testing.assert_allclose(ge, ref_ge, atol=1e-4)
    np.testing.assert_allclose(nll, ref_nll, atol=1e-4)


@pytest.mark.parametrize("precision", ["int8", "int8-block"])
def test_int8_variants_run_and_track_fp32(tiny, batch, precision):
    files, _ = tiny
    ge, _ = GenerativeScorer(files).score(batch)
    ge8, nll8 = GenerativeScorer(files, precision=precision).score(batch)
    ok = ~np.isnan(ge)
    assert np.array_equal(np.isnan(ge8), ~ok) and np.isfinite(nll8[ok]).all()
    assert np.corrcoef(ge[ok], ge8[ok])[0, 1] > 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_tokens": 0}, "batch_tokens"),
        ({"batch_tokens": 1.5}, "batch_tokens"),
        ({"pack_length": 1}, "pack_length"),
        ({"precision": "bf16"}, "bf16"),
        ({"reduction": "numpy"}, "reduction"),
        ({"device": "tpu"}, "device"),
        ({"reduction": "graph", "packing": False}, "packing"),
        ({"reduction": "graph", "precision": "int8"}, "fp32"),
    ],
)
def test_bad_options_are_value_errors(tiny, kwargs, message):
    files, _ = tiny
    with pytest.raises(ValueError, match=message):
        GenerativeScorer(files, **kwargs)


def test_ids_outside_the_vocabulary_are_rejected(tiny):
    files, _ = tiny
    bad = TokenBatch(
        offsets=np.array([0, 2], np.int64),
        ids=np.array([5, 60000], np.int32),
        n_tokens=np.array([2], np.int32),
        truncated=np.array([False]),
    )
    with pytest.raises(ValueError, match="vocabulary"):
        GenerativeScorer(files).score(bad)


def test_cuda_device_needs_the_gpu_provider(tiny):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA provider is present")
    from euds import EudsError

    with pytest.raises(EudsError, match="onnxruntime-gpu"):
        GenerativeScorer(tiny[0], device="cuda")


@pytest.mark.parametrize("capacity", [4, 9, 64])
def test_plan_rows_places_every_text_once_within_capacity(capacity):
    rng = np.random.default_rng(capacity)
    lengths = rng.integers(1, capacity + 1, 500)
    lengths[::7] = 0  # texts with no tokens are not planned
    todo = np.flatnonzero(lengths > 0)
    rows = plan_rows(lengths, todo, capacity)
    placed = sorted(k for row in rows for k in row)
    assert placed == todo.tolist()
    fills = [sum(lengths[k] for k in row) for row in rows]
    assert max(fills) <= capacity
    # Best-fit decreasing is within 11/9 OPT + 1 rows; the volume bound is a lower bound on OPT.
    assert len(rows) <= 11 / 9 * np.ceil(lengths.sum() / capacity) + 1


def test_smollm2_matches_pytorch_on_200_sst2_sentences(smollm2, sst2_records):
    """DESIGN.md: GE and NLL within 2e-3 of transformers + PyTorch (float64 softmax here)."""
    texts = [r["text"] for r in sst2_records[:200]]
    tokens = TextTokenizer().encode(texts)
    ge, nll = GenerativeScorer(smollm2).score(tokens)
    ref_ge, ref_nll = torch_reference(load_torch(smollm2), tokens)
    assert np.abs(ge - ref_ge).max() < 2e-3
    assert np.abs(nll - ref_nll).max() < 2e-3
    # Plausible values for an LM on English: entropies of a few nats, varied across texts.
    assert 1.0 < np.mean(ge) < 8.0 and np.std(ge) > 0.2


def test_smollm2_padded_and_packed_graphs_agree(smollm2, sst2_records):
    tokens = TextTokenizer().encode([r["text"] for r in sst2_records[:50]])
    ge, nll = GenerativeScorer(smollm2).score(tokens)
    ge2, nll2 = GenerativeScorer(smollm2, packing=False).score(tokens)
    assert np.abs(ge - ge2).max() < 2e-3 and np.abs(nll - nll2).max() < 2e-3


# -- bits per byte ---------------------------------------------------------------------------

BPB_TEXTS = [
    "naïve café — déjà vu , ça va ?",
    "日本語のテキストをバイトで数える",
    "emoji 🙂🚀 and maths ∑ x² ≤ ∞",
    "Привет , как дела ? Ελληνικά γράμματα",
    "plain ascii sentence .",
    "",
    "Größe und Maß " * 40,  # truncated at max_tokens=32, multi-byte characters throughout
    " ".join(["word", "other", "thing"] * 200),  # truncated, ASCII
]


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: each character of a token string is one byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    rest = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + k): b for k, b in enumerate(rest)}


def token_bytes(tokenizer: TextTokenizer, content: np.ndarray) -> bytes:
    """The bytes the tokens spell, from their strings (not from the tokenizer's offsets)."""
    alphabet = byte_level_alphabet()
    return bytes(alphabet[c] for t in content for c in tokenizer.tokenizer.id_to_token(int(t)))


def reference_bytes(tokenizer: TextTokenizer, text: str, content: np.ndarray) -> int:
    """The bytes the kept tokens cover, extended to the end of a character the cut falls
    inside (the documented rule)."""
    seen, raw = token_bytes(tokenizer, content), text.encode()
    assert raw.startswith(seen)  # byte-level BPE spells the text from its first byte
    end = len(seen)
    while end < len(raw) and raw[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        end += 1
    return end


def torch_bits_per_byte(model, tokenizer, texts, tokens: TokenBatch) -> np.ndarray:
    """The definition, plainly: the content tokens' total NLL (float64 log-softmax of the
    transformers logits) in bits, over :func:`reference_bytes`."""
    out = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            content = tokens.row(i)
            if not len(content):
                out.append(np.nan)
                continue
            ids = torch.tensor([[0, *content.tolist()]])
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            nats = float(-logp.gather(1, ids[0, 1:, None]).sum())
            out.append(nats / np.log(2) / reference_bytes(tokenizer, text, content))
    return np.array(out)


def score_columns(files, texts, max_tokens: int = 32, **options):
    """The pass columns of one batch, through the per-batch scorer every engine and the API
    use: ({column: numpy array}, tokens)."""
    from euds.batch import Models, Stages, pass_schema, score_record_batch
    from euds.config import ScoreConfig
    from euds.records import RecordBatch

    config = ScoreConfig(
        signals=("generative",), model=str(files.folder), max_tokens=max_tokens, **options
    )
    records = RecordBatch(
        start=0,
        ids=[str(k) for k in range(len(texts))],
        texts=list(texts),
        flags=[[] for _ in texts],
    )
    batch, _, tokens = score_record_batch(
        Models(config), records, pass_schema(config.signals), Stages({})
    )
    columns = {
        name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names
    }
    return columns, tokens


def test_bpb_matches_pytorch_bits_per_byte(tiny):
    files, model = tiny
    columns, tokens = score_columns(files, BPB_TEXTS)
    tok = TextTokenizer(max_tokens=32)
    # Counting bytes takes the encoding with offsets: the same ids as the offset-free one.
    np.testing.assert_array_equal(tokens.ids, tok.encode(BPB_TEXTS).ids)
    ref = torch_bits_per_byte(model, tok, BPB_TEXTS, tokens)
    np.testing.assert_allclose(columns["bpb"], ref, rtol=2e-3, equal_nan=True)
    assert np.isnan(columns["bpb"][5]) and np.isfinite(np.delete(columns["bpb"], 5)).all()
    for i, text in enumerate(BPB_TEXTS):
        if text:
            assert tokens.n_bytes[i] == reference_bytes(tok, text, tokens.row(i)), text
    # Bytes, not characters; the whole text unless truncated, and only the scored part if so.
    whole = np.array([len(t.encode()) for t in BPB_TEXTS])
    chars = np.array([len(t) for t in BPB_TEXTS])
    assert tokens.truncated.tolist() == [False] * 6 + [True, True]
    assert (tokens.n_bytes[:6] == whole[:6]).all() and (tokens.n_bytes[:4] > chars[:4]).all()
    assert (tokens.n_bytes[6:] < whole[6:] / 4).all()


def test_a_character_that_truncation_cuts_counts_whole():
    # "✓" is three bytes spelled by three tokens; with three content tokens the cut falls
    # after its second byte.
    tok = TextTokenizer(max_tokens=4)
    tokens = tok.encode(["a ✓ b"], count_bytes=True)
    assert len(token_bytes(tok, tokens.row(0))) == len("a ✓".encode()) - 1
    assert tokens.n_bytes.tolist() == [len("a ✓".encode())]
    assert tok.encode(["a ✓ b"]).n_bytes is None  # only counted when asked


@pytest.mark.parametrize(
    "options",
    [{}, {"packing": False}, {"pack_length": 16, "batch_tokens": 7}, {"pack_length": 200}],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_bpb_does_not_depend_on_the_batch(tiny, options):
    files, _ = tiny
    alone = [score_columns(files, [text], **options)[0]["bpb"][0] for text in BPB_TEXTS[:3]]
    # The same texts among others, in reverse order, packed otherwise.
    columns, tokens = score_columns(files, TEXTS + BPB_TEXTS[::-1], **options)
    base, base_tokens = score_columns(files, BPB_TEXTS)
    mixed = columns["bpb"][len(TEXTS) :][::-1]
    np.testing.assert_allclose(mixed, base["bpb"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(alone, base["bpb"][:3], rtol=1e-5)
    np.testing.assert_array_equal(tokens.n_bytes[len(TEXTS) :][::-1], base_tokens.n_bytes)


# -- a user's own causal LM: Llama, Qwen2, Mistral, GPT-2 ---------------------------------------

# Which token starts a text, and why (euds.model_sources.start_token), per family as built by
# conftest.make_family_lm: Llama's tokenizer template puts <s> first; the others name it in
# config.json (GPT-2: end-of-text, id 0).
START = {"llama": 1, "qwen2": 1, "mistral": 1, "gpt2": 0}


@pytest.fixture(scope="module", params=FAMILIES)
def family_lm(request, tmp_path_factory, training_texts):
    from euds.models import lm_files_for

    folder = make_family_lm(
        request.param, tmp_path_factory.mktemp("own") / request.param, training_texts
    )
    return request.param, folder, lm_files_for(folder)


def test_own_model_matches_pytorch_packed_and_padded(family_lm, ng_posts):
    from transformers import AutoModelForCausalLM

    family, folder, files = family_lm
    assert files.bos_id == START[family] and files.packing_off is None
    # The entry is the model's content (any folder holding the same files shares it).
    from euds.model_sources import lm_source

    assert files.manifest()["source"]["sha256"] == lm_source(folder).key()
    # Texts longer than Mistral's 16-token window, so that packing must apply the window.
    batch = TextTokenizer(files.tokenizer, max_tokens=96).encode(TEXTS + ng_posts[:4])
    assert batch.n_tokens.max() > 3 * 16
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ref_ge, ref_nll = torch_reference(model, batch, bos=files.bos_id)
    for packing in (True, False):
        scorer = GenerativeScorer(files, packing=packing, batch_tokens=512)
        assert scorer.packing is packing
        ge, nll = scorer.score(batch)
        np.testing.assert_allclose(ge, ref_ge, atol=2e-3, rtol=0)
        np.testing.assert_allclose(nll, ref_nll, atol=2e-3, rtol=0)


def test_a_family_whose_packed_graph_is_wrong_runs_padded(
    tmp_path, monkeypatch, caplog, training_texts
):
    """The packed export is checked against the model: a mask that lets texts see each other
    fails the check, the entry keeps only the padded graph, and scoring says so and runs it."""
    import logging

    from transformers import AutoModelForCausalLM

    from euds import models

    monkeypatch.setenv("EUDS_CACHE", str(tmp_path / "cache"))
    real = models._packed_module

    def leaky(model):  # every position attends to every earlier one in the row
        wrapper = real(model)

        class Leaky(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = wrapper

            def forward(self, input_ids, position_ids, segment_ids):
                return self.inner(input_ids, position_ids, torch.ones_like(segment_ids))

        return Leaky()

    monkeypatch.setattr(models, "_packed_module", leaky)
    folder = make_family_lm("qwen2", tmp_path / "qwen2", training_texts, seed=3)
    files = models.lm_files_for(folder)
    assert files.packing_off is not None and "packed logits differ" in files.packing_off
    assert not (files.folder / "lm_packed.onnx").exists()
    with caplog.at_level(logging.INFO, logger="euds"):
        scorer = GenerativeScorer(folder)
    assert not scorer.packing and "padded batches" in caplog.text
    batch = TextTokenizer(files.tokenizer, max_tokens=32).encode(TEXTS)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ref_ge, _ = torch_reference(model, batch, bos=files.bos_id)
    np.testing.assert_allclose(scorer.score(batch)[0], ref_ge, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="no packed graph"):
        GenerativeScorer(folder, precision="int8")


def test_long_contexts_up_to_the_model_limit_keep_the_token_budget(
    tmp_path, training_texts, ng_posts
):
    """--max-tokens up to the model's 256 positions: the same scores at any token budget
    (one long text per call or many), equal to PyTorch; beyond the limit, one clear error."""
    from transformers import AutoModelForCausalLM

    from euds.batch import Models
    from euds.config import ScoreConfig

    folder = make_family_lm("gpt2", tmp_path / "gpt2", training_texts)
    with pytest.raises(ValueError, match="max_tokens 300 exceeds the scoring LM's limit of 256"):
        Models(ScoreConfig(signals=("generative",), model=str(folder), max_tokens=300))
    models = Models(
        ScoreConfig(signals=("information", "generative"), model=str(folder), max_tokens=256)
    )
    # The information signal counts the scoring LM's tokens.
    assert models.tokenizer.path == models.generative.files.tokenizer
    assert models.identity["lm"]["source"] == str(folder)
    batch = models.tokenizer.encode(ng_posts[:12])
    assert batch.n_tokens.max() == 255
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ref_ge, ref_nll = torch_reference(model, batch, bos=models.generative.bos_id)
    for budget in (256, 4096):
        ge, nll = GenerativeScorer(models.generative.files, batch_tokens=budget).score(batch)
        np.testing.assert_allclose(ge, ref_ge, atol=2e-3, rtol=0)
        np.testing.assert_allclose(nll, ref_nll, atol=2e-3, rtol=0)


def test_a_tokenizer_that_is_not_the_models_is_refused(tmp_path, training_texts):
    from euds.batch import Models
    from euds.config import ScoreConfig
    from euds.tokenizer import smollm2_tokenizer_path

    folder = make_family_lm("llama", tmp_path / "llama", training_texts)
    other = str(smollm2_tokenizer_path())
    with pytest.raises(ValueError, match="is not the scoring LM's tokenizer"):
        Models(ScoreConfig(signals=("generative",), model=str(folder), tokenizer=other))
    # For the information signal alone, any tokenizer goes.
    assert Models(ScoreConfig(signals=("information",), tokenizer=other)).generative is None


def test_own_gguf_file_matches_transformers(tmp_path, training_texts):
    """A GGUF file as --model: dequantised by transformers, its byte-level BPE rebuilt by euds,
    scores equal transformers' model loaded from the same file."""
    from transformers import AutoModelForCausalLM

    from euds.models import lm_files_for
    from model_factories import make_tiny_gguf

    path = make_tiny_gguf(tmp_path / "tiny.gguf", training_texts[:500])
    files = lm_files_for(path)
    assert files.manifest()["source"]["kind"] == "gguf" and files.bos_id == 1
    assert files.packing_off is None
    model = AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file=path.name, dtype=torch.float32
    ).eval()
    batch = TextTokenizer(files.tokenizer, max_tokens=48).encode(TEXTS)
    ref_ge, ref_nll = torch_reference(model, batch, bos=1)
    ge, nll = GenerativeScorer(path).score(batch)
    np.testing.assert_allclose(ge, ref_ge, atol=2e-3, rtol=0)
    np.testing.assert_allclose(nll, ref_nll, atol=2e-3, rtol=0)
