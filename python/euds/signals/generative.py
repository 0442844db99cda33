"""Generative entropy: SmolLM2's predictive entropy, run in ONNX Runtime (DESIGN.md).

GE(x) = (1/n) sum_i H(p_i), p_i the softmax of the logits at the position that predicts content
token i of ``[0] + tokens(x)``; the same pass gives NLL(x) = -(1/n) sum_i ln p_i(t_i), in nats
per token, over the n content tokens kept after truncation.

Bits per byte, the ``bpb`` column (:func:`bits_per_byte`): bpb(x) = n NLL(x) / (ln 2 B(x)), the
total NLL of the n scored content tokens in bits over B(x), the UTF-8 bytes of the text those
tokens cover: from the first content token's start to the last kept token's end
(:attr:`euds.tokenizer.TokenBatch.n_bytes`). Every content token is predicted, the first one
from BOS, and BOS covers no text, so numerator and denominator cover the same text; with
SmolLM2's byte-level BPE (no normaliser, untrimmed offsets) that is the text's first B(x)
bytes, all of it unless truncated. Offsets count characters, so a multi-byte character that the
truncation cuts inside counts whole (at most 3 bytes more). NLL per token depends on how finely
a tokenizer splits a text; bpb does not, so its bands mean the same across models and
languages. NaN where NLL is NaN (no content tokens).

How a batch of texts is run:

* the last content token is not fed: it predicts nothing and no position attends to it, so
  a text of n tokens costs n positions (BOS + the first n - 1 tokens), with the same scores;
* **packing** (default): sequences are placed into rows of
  ``pack_length`` positions by best-fit decreasing; the packed graph's block-diagonal mask keeps
  them independent and positions restart per sequence, so a row of five short sentences costs
  what one long one does and there is no padding between them.
* **padded** (``packing=False``): one sequence per row, rows sorted by length (length-bucketed).
* Rows are grouped into ONNX Runtime calls of at most ``batch_tokens`` positions (rows x longest
  row), not a fixed number of texts.
* The logits ``[rows, T, V]`` are reduced by the C++ fused kernel (one pass: entropy and NLL per
  position) and averaged per text; ``reduction="graph"`` instead uses a graph that computes both
  inside ONNX Runtime (measured slower, kept for comparison).

Results come back in input order; texts without content tokens get NaN.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from euds import _core
from euds._core import EudsError
from euds.models import LmFiles, lm_files_for
from euds.runtime import onnx_session
from euds.tokenizer import TokenBatch

log = logging.getLogger("euds")

Precision = Literal["fp32", "int8-block", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8-block", "int8")
REDUCTIONS: tuple[str, ...] = ("kernel", "graph")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
DEFAULT_BATCH_TOKENS = 2048
DEFAULT_PACK_LENGTH = 64


@dataclass
class _Batch:
    """One ONNX Runtime call: rows of placed sequences."""

    input_ids: np.ndarray  # int64 [R, T]
    position_ids: np.ndarray  # int64 [R, T]
    segment_ids: np.ndarray  # int64 [R, T], 0 = padding (packed graph)
    attention_mask: np.ndarray  # int64 [R, T], 1 = token (padded graph)
    targets: np.ndarray  # int64 [R, T], next token where mask
    mask: np.ndarray  # bool [R, T], positions that predict a content token
    sample: np.ndarray  # int64 [R, T], the text each predicting position belongs to, else -1


class GenerativeScorer:
    """Scores token batches with generative entropy and NLL under the scoring LM.

    ``model``: a prepared :class:`~euds.models.LmFiles` or its folder, a Hugging Face
    causal-LM folder or a GGUF file (exported into the cache on first use, see
    :func:`euds.models.lm_files_for`); default: the SmolLM2 cache entry. A model whose family
    does not allow packing runs padded batches (logged).

    ``precision``: ``fp32`` (default, the exact scores),
    ``int8-block`` (8-bit weights and activations in blocks of 32: 1.2x faster, Spearman
    0.9956 / 0.9975 against fp32 on SST-2 / 20NG) or ``int8`` (dynamic per-tensor quantisation:
    2.7x faster but Spearman 0.68 / 0.80; for rough passes only). See bench/README.md.
    """

    name = "generative"

    def __init__(
        self,
        model: LmFiles | str | os.PathLike[str] | None = None,
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        packing: bool = True,
        pack_length: int = DEFAULT_PACK_LENGTH,
        precision: Precision = "fp32",
        reduction: Literal["kernel", "graph"] = "kernel",
        device: Literal["cpu", "cuda"] = "cpu",
        threads: int | None = None,
    ) -> None:
        if not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
        if not isinstance(pack_length, int) or pack_length < 2:
            raise ValueError(f"pack_length must be an int >= 2, got {pack_length!r}")
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}, got {precision!r} (bf16: ONNX Runtime's "
                "CPU provider has no bf16 matrix kernels; see README)"
            )
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if reduction == "graph" and not packing:
            raise ValueError("reduction='graph' is built on the packed graph: use packing=True")
        if reduction == "graph" and precision != "fp32":
            raise ValueError("reduction='graph' is only built for precision='fp32'")
        self.files = lm_files_for(model)
        if packing and self.files.packing_off is not None:
            if reduction == "graph" or precision != "fp32":
                raise ValueError(
                    f"{self.files.folder} has no packed graph ({self.files.packing_off}); the "
                    "in-graph reduction and the int8 graphs are built on it"
                )
            log.info("padded batches for %s: %s", self.files.folder, self.files.packing_off)
            packing = False
        self.bos_id = self.files.bos_id
        self.batch_tokens = batch_tokens
        self.packing = packing
        self.pack_length = pack_length
        self.precision = precision
        self.reduction = reduction
        self.device = device
        if not packing:
            path = self.files.padded
        elif reduction == "graph":
            path = self.files.variant("reduced")
        elif precision != "fp32":
            path = self.files.variant(precision)
        else:
            path = self.files.packed
        self.graph = path
        self.session = onnx_session(path, device=device, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.vocab_size = _vocab_size(self.files)

    # -- public ------------------------------------------------------------------------------

    def score(self, tokens: TokenBatch) -> tuple[np.ndarray, np.ndarray]:
        """(GE, NLL) per text, float64, in input order; NaN where a text has no tokens."""
        n = len(tokens)
        ge_sum = np.zeros(n)
        nll_sum = np.zeros(n)
        count = np.zeros(n, dtype=np.int64)
        if tokens.ids.size and int(tokens.ids.max()) >= self.vocab_size:
            raise ValueError(
                f"token id {int(tokens.ids.max())} is outside the model's vocabulary "
                f"({self.vocab_size}): the tokenizer does not belong to this model"
            )
        for batch in self._batches(tokens):
            entropy, nll = self._run(batch)
            flat_sample = batch.sample.reshape(-1)
            ge, c = _core.segment_mean(entropy.reshape(-1), flat_sample, n)
            nl, _ = _core.segment_mean(nll.reshape(-1), flat_sample, n)
            hit = c > 0
            ge_sum[hit] += ge[hit] * c[hit]
            nll_sum[hit] += nl[hit] * c[hit]
            count += c
        with np.errstate(invalid="ignore", divide="ignore"):
            ge_out = np.where(count > 0, ge_sum / count, np.nan)
            nll_out = np.where(count > 0, nll_sum / count, np.nan)
        return ge_out, nll_out

    # -- planning ----------------------------------------------------------------------------

    def _batches(self, tokens: TokenBatch):
        # BOS + all content tokens but the last: the last token predicts nothing and, being
        # last, is attended to by no position, so leaving it out changes no score.
        lengths = tokens.n_tokens.astype(np.int64)
        todo = np.flatnonzero(tokens.n_tokens > 0)
        if todo.size == 0:
            return
        if self.packing:
            capacity = max(self.pack_length, int(lengths[todo].max()))
            rows = plan_rows(lengths, todo, capacity)
        else:
            rows = [[int(k)] for k in todo[np.argsort(-lengths[todo], kind="stable")]]
        fill = np.array([sum(int(lengths[k]) for k in row) for row in rows])
        order = np.argsort(-fill, kind="stable")
        start = 0
        while start < len(order):
            width = int(fill[order[start]])
            stop = start + max(1, self.batch_tokens // width)
            chosen = [rows[r] for r in order[start:stop]]
            yield _fill_batch(tokens, lengths, chosen, width, self.bos_id)
            start = stop

    # -- running -----------------------------------------------------------------------------

    def _run(self, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
        if self.device == "cuda":
            return self._run_cuda(batch)
        feed = self._feed(batch)
        if self.reduction == "graph":
            feed["targets"] = batch.targets
            entropy, nll = self.session.run(["entropy", "nll"], feed)
            entropy = np.ascontiguousarray(entropy, dtype=np.float32)
            nll = np.ascontiguousarray(nll, dtype=np.float32)
            entropy[~batch.mask] = np.nan
            nll[~batch.mask] = np.nan
            return entropy, nll
        (logits,) = self.session.run(["logits"], feed)
        entropy, nll = _core.row_softmax_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), batch.mask.reshape(-1)
        )
        return entropy, nll

    def _feed(self, batch: _Batch) -> dict[str, np.ndarray]:
        if self.packing:
            return {
                "input_ids": batch.input_ids,
                "position_ids": batch.position_ids,
                "segment_ids": batch.segment_ids,
            }
        feed = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "position_ids": batch.position_ids,
        }
        return {k: v for k, v in feed.items() if k in self.input_names}

    def _run_cuda(self, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """Logits stay on the GPU (I/O binding) and are reduced there by the CUDA kernel."""
        import onnxruntime as ort

        if self.reduction == "graph":
            raise EudsError("device='cuda' reduces with the CUDA kernel; use reduction='kernel'")
        rows = batch.input_ids.size
        binding = self.session.io_binding()
        for name, value in self._feed(batch).items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output("logits", "cuda", 0)
        self.session.run_with_iobinding(binding)
        logits = binding.get_outputs()[0]
        targets = ort.OrtValue.ortvalue_from_numpy(batch.targets.reshape(-1), "cuda", 0)
        mask = ort.OrtValue.ortvalue_from_numpy(batch.mask.reshape(-1).view(np.uint8), "cuda", 0)
        entropy = ort.OrtValue.ortvalue_from_shape_and_type([rows], np.float32, "cuda", 0)
        nll = ort.OrtValue.ortvalue_from_shape_and_type([rows], np.float32, "cuda", 0)
        _core.cuda_row_softmax_entropy_ptr(
            logits.data_ptr(),
            rows,
            self.vocab_size,
            "float32",
            1.0,
            targets.data_ptr(),
            "int64",
            mask.data_ptr(),
            entropy.data_ptr(),
            nll.data_ptr(),
        )
        return entropy.numpy(), nll.numpy()


def bits_per_byte(nll: np.ndarray, n_tokens: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """bpb per text, float64 (the module docstring): mean NLL in nats per token times the
    tokens, in bits, over the bytes they cover; NaN where NLL is NaN or no bytes are covered."""
    nll = np.asarray(nll, dtype=np.float64)
    n_bytes = np.asarray(n_bytes, dtype=np.float64)
    total_bits = nll * np.asarray(n_tokens, dtype=np.float64) / np.log(2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_bytes > 0, total_bits / n_bytes, np.nan)


def plan_rows(lengths: np.ndarray, todo: np.ndarray, capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: the longest sequence first, each into the row with the
    least free space that still holds it. Returns the texts of each row in placement order."""
    rows: list[list[int]] = []
    free_rows: list[list[int]] = [[] for _ in range(capacity + 1)]  # free space -> rows
    for k in todo[np.argsort(-lengths[todo], kind="stable")]:
        need = int(lengths[k])
        r = -1
        for free in range(need, capacity + 1):
            if free_rows[free]:
                r = free_rows[free].pop()
                break
        if r < 0:
            r, free = len(rows), capacity
            rows.append([])
        rows[r].append(int(k))
        if free - need > 0:
            free_rows[free - need].append(r)
    return rows


def _fill_batch(
    tokens: TokenBatch, lengths: np.ndarray, rows: list[list[int]], width: int, bos_id: int
) -> _Batch:
    r_count = len(rows)
    shape = (r_count, width)
    input_ids = np.zeros(shape, dtype=np.int64)
    position_ids = np.zeros(shape, dtype=np.int64)
    segment_ids = np.zeros(shape, dtype=np.int64)
    attention_mask = np.zeros(shape, dtype=np.int64)
    targets = np.zeros(shape, dtype=np.int64)
    mask = np.zeros(shape, dtype=bool)
    sample = np.full(shape, -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for seg, k in enumerate(row, start=1):
            content = tokens.row(k)
            n = len(content)  # positions: BOS + content[:-1]; position j predicts content[j]
            input_ids[r, at] = bos_id
            input_ids[r, at + 1 : at + n] = content[:-1]
            position_ids[r, at : at + n] = np.arange(n)
            segment_ids[r, at : at + n] = seg
            attention_mask[r, at : at + n] = 1
            targets[r, at : at + n] = content
            mask[r, at : at + n] = True
            sample[r, at : at + n] = k
            at += n
    return _Batch(input_ids, position_ids, segment_ids, attention_mask, targets, mask, sample)


def _vocab_size(files: LmFiles) -> int:
    try:
        return int(files.config()["vocab_size"])
    except (OSError, ValueError, KeyError) as e:
        raise EudsError(
            f"cannot read the vocabulary size from {files.hf / 'config.json'}: {e}"
        ) from e
