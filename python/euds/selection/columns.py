"""Score columns as :func:`euds.selection.select` reads them: from a mapping of arrays, a
``pyarrow.Table`` or a ``pandas.DataFrame``, as numpy arrays, checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def columns_of(scores: Any) -> dict[str, Any]:
    """Every column of ``scores`` by name (numpy arrays; ``near_keys`` as ``[n, bands]``)."""
    if isinstance(scores, Mapping):
        return dict(scores)
    try:
        import pyarrow as pa

        if isinstance(scores, pa.Table):
            return {name: arrow_to_numpy(scores.column(name)) for name in scores.column_names}
    except ImportError:  # pragma: no cover
        pass
    if hasattr(scores, "columns") and hasattr(scores, "__getitem__"):  # pandas.DataFrame
        return {str(c): scores[c].to_numpy() for c in scores.columns}
    raise ValueError(
        f"scores must be a mapping of arrays, a pyarrow.Table or a pandas.DataFrame, got "
        f"{type(scores).__name__}"
    )


def arrow_to_numpy(column: Any) -> np.ndarray:
    """A column as numpy; a fixed-size list column without nulls (``near_keys``) as 2-D."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type) and column.null_count == 0:
        width = column.type.list_size
        flat = (
            column.combine_chunks().flatten()
            if column.num_chunks
            else pa.array([], column.type.value_type)
        )
        return flat.to_numpy(zero_copy_only=False).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False)


def length(columns: Mapping[str, Any]) -> int:
    """The number of records: every column must have it."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"score columns differ in length: {sorted(lengths)}")
    return lengths.pop()


def score_column(columns: Mapping[str, Any], name: str) -> np.ndarray:
    """A numeric 1-D score column as contiguous float64."""
    v = np.asarray(columns[name])
    if v.ndim != 1:
        raise ValueError(f"score column {name!r} must be 1-D, got shape {v.shape}")
    if v.dtype.kind not in "fiu":
        raise ValueError(f"score column {name!r} must be numeric, got dtype {v.dtype}")
    return np.ascontiguousarray(v, dtype=np.float64)


def near_key_matrix(keys: Any, n: int) -> np.ndarray:
    """The ``near_keys`` column as a ``[n, bands]`` uint64 array (a missing row, in shards
    scored before the column existed, as zeros: it matches nothing). ``keys``: a 2-D array,
    one key array (or None) per row, or an Arrow (fixed-size) list column."""
    if hasattr(keys, "type"):  # pyarrow Array or ChunkedArray
        import pyarrow as pa

        keys = arrow_to_numpy(pa.chunked_array([keys]) if isinstance(keys, pa.Array) else keys)
    if isinstance(keys, np.ndarray) and keys.ndim == 2 and keys.dtype == np.uint64:
        out = keys
    else:
        try:
            rows = [None if k is None else np.asarray(k, dtype=np.uint64) for k in keys]
            width = max((len(r) for r in rows if r is not None), default=0)
            out = np.zeros((len(rows), width), dtype=np.uint64)
            for i, r in enumerate(rows):
                if r is not None:
                    out[i] = r
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                "near_keys must hold one array of unsigned 64-bit band keys per record (all of "
                "the same length, or None), as Scorer.score_texts returns them"
            ) from None
    if out.shape[0] != n:
        raise ValueError(f"near_keys has {out.shape[0]} rows, the scores {n}")
    return out
