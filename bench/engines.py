"""Local engine vs the Ray engine on one machine: the overhead of Ray, and 1 vs 2 actors.

Information + generative entropy on the first --records SST-2 train sentences (the LM is
the cost), each engine into a fresh score directory, scores checked equal.

    python bench/engines.py [--records 2000]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DATA, table, write_result
from euds import ScoreConfig, score
from euds.engines.ray import connect, score_ray
from euds.scores import read_scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=2000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="euds-ray-bench-"))
    src = work / "in.jsonl"
    with gzip.open(DATA / "sst2" / "train.jsonl.gz", "rb") as f:
        src.write_bytes(b"".join(itertools.islice(f, args.records)))
    config = ScoreConfig(signals=("information", "generative"), shard_size=512, batch_size=512)
    rows = []
    t0 = time.perf_counter()
    local = score(src, work / "local", config, progress=False)
    results = {"local": {"seconds": time.perf_counter() - t0}}
    connect(num_cpus=2)
    reference = read_scores(local.output)
    for actors, cpus in ((1, 2), (2, 1)):
        name = f"ray, {actors} actor(s) x {cpus} CPU"
        out = work / f"ray{actors}"
        t0 = time.perf_counter()
        score_ray(src, out, config, actors=actors, cpus_per_actor=cpus)
        seconds = time.perf_counter() - t0
        got = read_scores(out)
        equal = all(
            np.array_equal(np.asarray(got[c]), np.asarray(reference[c]), equal_nan=True)
            for c in ("information", "generative", "nll")
        )
        results[name] = {"seconds": seconds, "scores_equal": equal}
    for name, r in results.items():
        r["records_per_s"] = args.records / r["seconds"]
        r["vs_local"] = results["local"]["seconds"] / r["seconds"]
        rows.append(
            [name, r["seconds"], r["records_per_s"], r["vs_local"], r.get("scores_equal", True)]
        )
    print(table(rows, ["engine", "s", "records/s", "speed vs local", "scores equal"]))
    write_result("engines", {"records": args.records, "results": results})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
