"""CUDA row kernel on a lent GPU: parity with the CPU kernel and device throughput.

Runs where `euds.kernels.cuda_available()` is true (see bench/gpu_check.sh). Logits live on the
GPU (CuPy arrays); the kernel is called through the device-pointer entry point that the
generative scorer uses with ONNX Runtime's I/O binding, and timed with CUDA events.

    python3 bench/cuda_kernels.py [--rows 8192] [--vocab 49152]
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import table, write_result
from euds import _core, kernels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    if not kernels.cuda_available():
        raise SystemExit("no CUDA device visible (or euds built without CUDA)")
    import cupy as cp

    rng = np.random.default_rng(0)
    host = (rng.standard_normal((args.rows, args.vocab), dtype=np.float32) * 3).astype(np.float32)
    targets = rng.integers(0, args.vocab, args.rows).astype(np.int64)
    mask = np.ones(args.rows, dtype=np.uint8)
    mask[::17] = 0
    rows = []
    payload = {}
    for dtype in (np.float32, np.float16):
        x = host.astype(dtype)
        cpu_e, cpu_n = kernels.softmax_entropy(x, targets, mask.astype(bool))
        d_x, d_t, d_m = cp.asarray(x), cp.asarray(targets), cp.asarray(mask)
        d_e = cp.empty(args.rows, dtype=cp.float32)
        d_n = cp.empty(args.rows, dtype=cp.float32)

        name = np.dtype(dtype).name

        def run(d_x=d_x, d_t=d_t, d_m=d_m, d_e=d_e, d_n=d_n, name=name) -> None:
            _core.cuda_row_softmax_entropy_ptr(
                d_x.data.ptr,
                args.rows,
                args.vocab,
                name,
                1.0,
                d_t.data.ptr,
                "int64",
                d_m.data.ptr,
                d_e.data.ptr,
                d_n.data.ptr,
            )

        run()
        gpu_e, gpu_n = cp.asnumpy(d_e), cp.asnumpy(d_n)
        err_e = float(np.nanmax(np.abs(gpu_e - cpu_e)))
        err_n = float(np.nanmax(np.abs(gpu_n - cpu_n)))
        assert np.array_equal(np.isnan(gpu_e), np.isnan(cpu_e))
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(args.repeat):
            run()
        stop.record()
        stop.synchronize()
        seconds = cp.cuda.get_elapsed_time(start, stop) / 1e3 / args.repeat
        gbps = x.nbytes / seconds / 1e9
        rows.append([np.dtype(dtype).name, seconds * 1e3, gbps, err_e, err_n])
        payload[np.dtype(dtype).name] = {
            "ms": seconds * 1e3,
            "GBps": gbps,
            "max_abs_entropy": err_e,
            "max_abs_nll": err_n,
        }
    print(table(rows, ["dtype", "ms", "GB/s", "max|dH| vs CPU", "max|dNLL| vs CPU"]))
    write_result("cuda_kernels", {"shape": [args.rows, args.vocab], "results": payload})


if __name__ == "__main__":
    main()
