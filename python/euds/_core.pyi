"""Type stubs of the compiled core (private; use the euds package)."""

from typing import Any

import numpy as np
import numpy.typing as npt

MAX_THREADS: int

class EudsError(RuntimeError): ...

def information_entropy(
    offsets: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int32] | npt.NDArray[np.uint32] | npt.NDArray[np.int64],
    out: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]: ...
def row_softmax_entropy(
    logits: npt.NDArray[np.float32] | npt.NDArray[np.float16],
    targets: npt.NDArray[np.int32] | npt.NDArray[np.int64] | None = None,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    scale: float = 1.0,
    entropy_out: npt.NDArray[np.float32] | None = None,
    nll_out: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...
def segment_mean(
    values: npt.NDArray[np.float32],
    segment: npt.NDArray[np.int32] | npt.NDArray[np.int64],
    n_segments: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def mean_pool_normalize(
    hidden: npt.NDArray[np.float32],
    mask: npt.NDArray[np.int64] | npt.NDArray[np.uint8] | npt.NDArray[np.bool_],
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def nan_quantiles(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64], q: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]: ...
def interval_mask(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64], lo: float, hi: float
) -> npt.NDArray[np.bool_]: ...
def percentile_ranks(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]: ...
def mean_rank(ranks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def band_select(
    ranks: npt.NDArray[np.float64], position: float, keep: int, seed: int = 0
) -> tuple[npt.NDArray[np.bool_], float]: ...
def tie_key(i: int, seed: int = 0) -> int: ...
def minhash_bands(
    offsets: npt.NDArray[np.int64],
    chars: npt.NDArray[np.uint32],
    shingle: int,
    bands: int,
    rows: int,
    seed: int = 0,
) -> npt.NDArray[np.uint64]: ...

class UnigramCounts:
    """Thread-safe: methods on one counter from several threads run one at a time."""

    def __init__(self, vocab_size: int = 0) -> None: ...
    def add(
        self,
        offsets: npt.NDArray[np.int64],
        ids: npt.NDArray[np.int32] | npt.NDArray[np.uint32] | npt.NDArray[np.int64],
    ) -> None: ...
    def self_information(
        self,
        offsets: npt.NDArray[np.int64],
        ids: npt.NDArray[np.int32] | npt.NDArray[np.uint32] | npt.NDArray[np.int64],
        alpha: float = 0.0,
        out: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]: ...
    def merge(self, other: UnigramCounts) -> None: ...
    @property
    def total(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    def counts(self) -> npt.NDArray[np.uint64]: ...
    @staticmethod
    def from_counts(counts: npt.NDArray[np.uint64]) -> UnigramCounts: ...

def cuda_device_count() -> int: ...
def cuda_row_softmax_entropy(
    logits: npt.NDArray[np.float32] | npt.NDArray[np.float16],
    targets: npt.NDArray[np.int64] | None = None,
    mask: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] | None = None,
    scale: float = 1.0,
    device: int = 0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...
def cuda_row_softmax_entropy_ptr(
    logits_ptr: int,
    rows: int,
    cols: int,
    dtype: str,
    scale: float,
    targets_ptr: int,
    target_dtype: str,
    mask_ptr: int,
    entropy_ptr: int,
    nll_ptr: int,
    stream: int = 0,
) -> None: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None:
    """0 = the default; ValueError outside 0..MAX_THREADS; never waits for a running kernel
    (takes effect for the next one)."""

def build_info() -> dict[str, Any]: ...
