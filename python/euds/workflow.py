"""The main job: score (reusing scores already there), select, report — ``euds run``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from euds.config import ScoreConfig, SelectConfig
from euds.engines import driver
from euds.engines.driver import Engine, ScoreSummary
from euds.engines.local import LocalEngine
from euds.io import detect_format
from euds.output import Protected, check_output
from euds.report import write_report
from euds.subset import SelectionOutput, check_selection_outputs, select_file

log = logging.getLogger("euds")


@dataclass
class RunResult:
    scores: Path
    summary: ScoreSummary
    selected: SelectionOutput
    report: Path


def run(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ScoreConfig | None = None,
    *,
    engine: Engine | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: list[str] | None = None,
    selection: SelectConfig | None = None,
    **options: Any,
) -> RunResult:
    """Scores ``input_path`` into ``out_dir/scores`` (a complete directory with the same input and
    configuration is reused as it is), selects into ``out_dir/selected.<input's extension>`` and
    writes ``out_dir/report.html``. ``selection`` (or ``options``, its fields as keywords)
    says what to keep (``stratify`` may name ``"clusters"`` or an input field); ``engine``
    scores (default: the local engine; the selection is written locally)."""
    selection = selection or SelectConfig(**options)
    selection.check()  # before the scoring pass, not after it
    input_path, out = Path(input_path), Path(out_dir)
    scores_dir = out / "scores"
    fmt = (config.format if config else None) or detect_format(input_path)[0]
    suffix = (
        "".join(input_path.suffixes[-2:])
        if input_path.name.lower().endswith(".gz")
        else input_path.suffix
    )
    selected_path = out / f"selected{suffix or '.' + fmt}"
    # Every output is checked before the pass: a refusal after a long pass is a bug.
    check_selection_outputs(input_path, scores_dir, selected_path, selection, overwrite=overwrite)
    check_output(out / "report.html", Protected.of(inputs=[input_path]), overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    summary = driver.score(
        input_path,
        scores_dir,
        config,
        engine or LocalEngine(),
        overwrite=overwrite,
        progress=progress,
    )
    selected = select_file(
        input_path,
        scores_dir,
        selected_path,
        selection,
        format=config.format if config else None,
        command=command,
        overwrite=overwrite,
    )
    report = write_report(
        scores_dir, out / "report.html", selection_manifest=selected.manifest, overwrite=overwrite
    )
    return RunResult(scores=scores_dir, summary=summary, selected=selected, report=report)
