"""euds: entropy-based data selection, with a compiled scoring core.

The public surface, imported from ``euds`` itself (each name is loaded on first use, so that
``import euds`` stays light)::

    from euds import Scorer, ScoreConfig, SelectConfig, score, select, select_file, run

* :func:`score` — score a file into a score directory (the local engine; resumable);
* :func:`select` — which records of scored columns to keep (arrays in, a mask out);
* :func:`select_file` — a selection made into files (kept records, manifest, decisions);
* :func:`run` — score, select and report in one call (``euds run``);
* :class:`Scorer`, :func:`score_dataset`, :func:`select_dataset` — scoring inside your own
  pipeline (texts, Arrow tables, Hugging Face datasets);
* :class:`ScoreConfig`, :class:`SelectConfig` — every option, checked before any work;
* :func:`read_scores`, :func:`write_report`, :func:`tune`; :class:`EudsError`.
"""

from __future__ import annotations

import importlib
from typing import Any

from euds._core import EudsError
from euds._version import __version__
from euds.kernels import build_info, num_threads, set_num_threads

# name -> the module that defines it
_LAZY = {
    "Scorer": "euds.api",
    "score_dataset": "euds.api",
    "select_dataset": "euds.api",
    "ScoreConfig": "euds.config",
    "SelectConfig": "euds.config",
    "score": "euds.pipeline",
    "select": "euds.selection",
    "Selection": "euds.selection",
    "select_file": "euds.subset",
    "run": "euds.workflow",
    "read_scores": "euds.scores",
    "write_report": "euds.report",
    "tune": "euds.tuning",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'euds' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "EudsError",
    "ScoreConfig",
    "Scorer",
    "SelectConfig",
    "Selection",
    "__version__",
    "build_info",
    "num_threads",
    "read_scores",
    "run",
    "score",
    "score_dataset",
    "select",
    "select_dataset",
    "select_file",
    "set_num_threads",
    "tune",
    "write_report",
]
