"""What every manifest euds writes records about itself: when (:func:`now_iso`), with which
library versions (:func:`versions`), and how its values become JSON (:func:`to_json`); plus
:func:`open_text`, the one reader of small plain or gzipped text files (configs, labels)."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from euds._version import __version__

# The libraries behind a score: what a score directory's manifest lists.
SCORING_PACKAGES = ("numpy", "pyarrow", "tokenizers", "onnxruntime", "faiss-cpu")


def now_iso() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions(packages: tuple[str, ...] = SCORING_PACKAGES) -> dict[str, str | None]:
    """euds's and Python's versions and those of ``packages`` (None where not installed)."""
    out: dict[str, str | None] = {"euds": __version__, "python": sys.version.split()[0]}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def to_json(value: Any) -> bytes:
    """``value`` as indented JSON bytes; numpy scalars and paths are written as plain values."""
    return json.dumps(value, indent=2, default=_plain).encode()


def _plain(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """A UTF-8 text file, gunzipped when its name ends in ``.gz``."""
    path = Path(path)
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")
