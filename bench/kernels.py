"""Fused logits reduction: euds vs numpy (and torch) vs this machine's copy bandwidth.

Input: logits [8192, 49152] float32 (1.6 GB, SmolLM2's vocabulary) and the same in float16.
Figures: GB/s of logits read. The copy bandwidth is measured with np.copyto on the same array
(both the source-read rate and the STREAM convention, read + write bytes).

    python bench/kernels.py [--rows 8192] [--vocab 49152] [--repeat 5]
"""

from __future__ import annotations

import argparse

import numpy as np

import euds
from _common import table, timeit, write_result
from euds import kernels


def numpy_reduction(
    x: np.ndarray, t: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The plain way: log-softmax per chunk of rows in numpy (float32), entropy and NLL."""
    ent = np.empty(len(x), dtype=np.float32)
    nll = np.empty(len(x), dtype=np.float32)
    for a in range(0, len(x), chunk):
        z = x[a : a + chunk]
        lse = z.max(axis=1, keepdims=True)
        lse = lse + np.log(np.exp(z - lse).sum(axis=1, keepdims=True))
        logp = z - lse
        ent[a : a + chunk] = -(np.exp(logp) * logp).sum(axis=1)
        nll[a : a + chunk] = -logp[np.arange(len(z)), t[a : a + chunk]]
    return ent, nll


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.vocab), dtype=np.float32) * 3.0).astype(np.float32)
    t = rng.integers(0, args.vocab, args.rows).astype(np.int64)
    x16 = x.astype(np.float16)
    gb = x.nbytes / 1e9

    dst = np.empty_like(x)
    copy = timeit(lambda: np.copyto(dst, x), repeat=args.repeat)
    dst = None  # free 1.6 GB before the next measurements
    copy_read = gb / copy["median_s"]
    copy_stream = 2 * copy_read

    results: dict[str, dict] = {}
    bandwidth = {"numpy_copy_read_GBps": copy_read, "numpy_copy_stream_GBps": copy_stream}
    r = timeit(lambda: kernels.softmax_entropy(x, t), repeat=args.repeat)
    results["euds_f32"] = {**r, "GBps": gb / r["median_s"]}
    r = timeit(lambda: kernels.softmax_entropy(x16, t), repeat=args.repeat)
    results["euds_f16"] = {**r, "GBps": (x16.nbytes / 1e9) / r["median_s"]}
    euds.set_num_threads(1)
    r = timeit(lambda: kernels.softmax_entropy(x, t), repeat=max(2, args.repeat // 2))
    results["euds_f32_1thread"] = {**r, "GBps": gb / r["median_s"]}
    euds.set_num_threads(0)
    r = timeit(lambda: numpy_reduction(x, t), repeat=2)
    results["numpy_f32"] = {**r, "GBps": gb / r["median_s"]}
    try:
        import torch

        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def torch_reduction() -> None:
            with torch.no_grad():
                logp = torch.log_softmax(xt, dim=-1)
                _ = -(logp.exp() * logp).sum(-1)
                _ = -logp.gather(1, tt[:, None])

        r = timeit(torch_reduction, repeat=2)
        results[f"torch_{torch.__version__}_f32"] = {**r, "GBps": gb / r["median_s"]}
        # Multi-threaded copy and read-only reduction: the memory system's ceilings here.
        dt = torch.empty_like(xt)
        tcopy = timeit(lambda: dt.copy_(xt), repeat=args.repeat)
        tsum = timeit(lambda: xt.sum(), repeat=args.repeat)
        dt = None
        bandwidth["torch_copy_read_GBps"] = gb / tcopy["median_s"]
        bandwidth["torch_copy_stream_GBps"] = 2 * gb / tcopy["median_s"]
        bandwidth["torch_sum_read_GBps"] = gb / tsum["median_s"]
    except ImportError:
        pass

    # Agreement between euds and the plain way, so the speed is at equal results.
    e1, n1 = kernels.softmax_entropy(x[:256], t[:256])
    e2, n2 = numpy_reduction(x[:256], t[:256])
    agree = {
        "max_abs_entropy": float(np.abs(e1 - e2).max()),
        "max_abs_nll": float(np.abs(n1 - n2).max()),
    }

    base = results["euds_f32"]["GBps"]
    rows = [
        [name, v["median_s"], v["GBps"], base / v["GBps"] if name != "euds_f32" else 1.0]
        for name, v in results.items()
    ]
    for name, v in bandwidth.items():
        rows.append([name, float("nan"), v, base / v])
    print(
        f"logits [{args.rows}, {args.vocab}] float32 = {gb:.2f} GB, {euds.build_info()['simd']}, "
        f"{euds.num_threads()} threads"
    )
    print(table(rows, ["method", "median s", "GB/s", "euds f32 speed / this"]))
    print(f"agreement euds vs numpy (256 rows): {agree}")
    write_result(
        "kernels",
        {
            "shape": [args.rows, args.vocab],
            "bytes_f32": x.nbytes,
            "results": results,
            "bandwidth": bandwidth,
            "ratios": {
                "euds_vs_numpy": base / results["numpy_f32"]["GBps"],
                **{f"euds_vs_{k.removesuffix('_GBps')}": base / v for k, v in bandwidth.items()},
            },
            "agreement": agree,
        },
    )


if __name__ == "__main__":
    main()
