#!/usr/bin/env bash
# The prepared check for a lent GPU (device tool): one short run, results under $OUT.
#   run(command="bash bench/gpu_check.sh", timeout_s=480)
# Builds euds with the image's own Python (it has scikit-build-core, pybind11, CuPy, PyTorch),
# runs the CUDA parity tests against the CPU kernels, then times the CUDA kernel on the device.
set -uo pipefail
OUT=${OUT:-/tmp/euds-gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pip install -q --no-build-isolation --no-deps . || exit 1
python3 -c "import euds, json; print(json.dumps(euds.build_info()))"
python3 -m pytest -q -p no:cacheprovider tests/test_kernels_row_entropy.py -k cuda -rs
python3 bench/cuda_kernels.py
cp bench/results/cuda_kernels.json "$OUT/" 2>/dev/null || true
python3 -c "import onnxruntime as o; print('onnxruntime providers:', o.get_available_providers())"
