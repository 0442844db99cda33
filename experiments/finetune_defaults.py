"""Measures `euds finetune`'s defaults (steps, learning rate) the way a first user meets them.

Training sets of 200, 800 and 3,000 SST-2 train sentences (seeded samples), evaluated on the
872 SST-2 dev sentences (never the test set, which docs/results.md reports), with the seeds
listed per setting. Writes docs/results/finetune_defaults.json; cached per run, so it can be
stopped and rerun. Run: python experiments/finetune_defaults.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from euds.cache import atomic_write_bytes
from euds.research.experiment import read_jsonl
from euds.research.finetune import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sst2"
OUT = ROOT / "out" / "finetune_defaults"
GRID = [  # (training sentences, settings, seeds), in order of priority
    (800, {"epochs": 2, "min_steps": 0, "lr": 5e-5}, (0, 1)),  # the defaults before
    (800, {"epochs": 2, "min_steps": 150, "lr": 1e-4}, (0, 1)),
    (800, {"epochs": 2, "min_steps": 150, "lr": 5e-5}, (0,)),
    (200, {"epochs": 2, "min_steps": 150, "lr": 1e-4}, (0,)),
    (3000, {"epochs": 2, "min_steps": 150, "lr": 1e-4}, (0,)),
]


def main() -> None:
    train = read_jsonl(DATA / "train.jsonl.gz")
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for size, settings, seeds in GRID:
        pick = np.random.default_rng(size).choice(len(train), size=size, replace=False)
        path = OUT / f"train{size}.jsonl"
        path.write_text("".join(json.dumps(train[i]) + "\n" for i in np.sort(pick)))
        for seed in seeds:
            name = f"{size}-{settings['min_steps']}-{settings['lr']:g}-{seed}.json"
            cached = OUT / name
            if not cached.is_file():
                config = FinetuneConfig(**settings, seed=seed, max_length=128, device="cpu")
                finetune(path, DATA / "dev.jsonl.gz", config, output=cached)
            m = json.loads(cached.read_text())
            rows.append(
                {
                    "train": size,
                    **settings,
                    "seed": seed,
                    "steps": m["train_steps"],
                    "dev_accuracy": m["accuracy"],
                    "seconds": m["wall_seconds"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    atomic_write_bytes(
        ROOT / "docs" / "results" / "finetune_defaults.json", json.dumps(rows, indent=1).encode()
    )


if __name__ == "__main__":
    sys.exit(main())
