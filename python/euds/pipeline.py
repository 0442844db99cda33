"""Scoring a file on this machine: ``euds score``'s default, ``euds.score``.

``score(INPUT, SCORES_DIR, config)`` is :func:`euds.engines.driver.score` on the local engine
(:mod:`euds.engines.local`): one streaming pass that tokenises once, scores every signal and
writes score shards, then the columns that need the whole pool, into a resumable score
directory (:mod:`euds.scores`). The configuration is :class:`euds.config.ScoreConfig`; the
per-batch scorer is :mod:`euds.batch`.
"""

from __future__ import annotations

import os

from euds.config import ScoreConfig
from euds.engines import driver
from euds.engines.driver import ScoreSummary
from euds.engines.local import LocalEngine


def score(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: ScoreConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> ScoreSummary:
    """Scores every record of ``input_path`` into the score directory ``output_dir``.

    Reuses a complete directory made with the same input and configuration, resumes an
    incomplete one, and refuses one made otherwise unless ``overwrite`` (see
    :func:`euds.scores.open_for_scoring` for what is deleted, and when).
    """
    return driver.score(
        input_path, output_dir, config, LocalEngine(), overwrite=overwrite, progress=progress
    )


__all__ = ["score"]
