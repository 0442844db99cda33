"""ONNX Runtime sessions, configured once for every scorer."""

from __future__ import annotations

from pathlib import Path

from euds._core import EudsError


def onnx_session(path: Path, *, device: str = "cpu", threads: int | None = None):
    """An inference session with full graph optimisation, sequential execution and
    ``threads`` intra-op threads (0/None: ONNX Runtime's default, the physical cores)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise EudsError(f"model graph not found: {path} (run `euds models prepare`)")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EudsError(
                "device='cuda' needs onnxruntime-gpu with a visible GPU; available providers: "
                f"{ort.get_available_providers()}"
            )
        providers = ["CUDAExecutionProvider"]
    elif device == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return ort.InferenceSession(str(path), opts, providers=providers)
