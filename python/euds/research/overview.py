"""The tables across datasets that docs/results.md shows (``overview.md``, written by
:func:`euds.research.experiment.run_experiments` beside each dataset's ``results.md``): the
default's choice, default − random on the probe per dataset and pool with its MDE, the default's
non-inferiority, the junk kept on the noisy pools, and the fine-tuned default − random."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from euds.research.methods import DEFAULT, POOLS, RANDOM
from euds.research.report import (
    NONINFERIORITY_MARGIN,
    PRIMARY_BUDGET,
    choice_table,
    comparisons,
    noninferior,
    signed,
    with_default,
)

# The methods whose junk the overview shows: the baseline, the default, and the cleanest others.
NOISE_SHOWN = (RANDOM, DEFAULT, "typical+clean", "intersect", "target", "target+clean")


def _ci(c: dict[str, Any]) -> str:
    d = c["diff"]
    return f"{signed(d.mean)} [{signed(d.lo)}, {signed(d.hi)}]"


def _budgets(rows: list[dict[str, Any]]) -> list[float]:
    return sorted({r["budget"] for r in rows if r["budget"] < 1.0})


def _junk_share(rows: list[dict[str, Any]], method: str, budget: float) -> float:
    """Mean junk share (%) of ``method``'s subsets at ``budget`` (NaN where none)."""
    v = [r["junk_share"] for r in rows if r["method"] == method and r["budget"] == budget]
    return 100.0 * float(np.mean(v)) if v else float("nan")


# (dataset, pool) -> comparisons(...) of that dataset's rows on that pool.
_Columns = dict[tuple[str, str], dict[tuple[str, float], dict[str, Any]]]


def _budget_table(
    cells: _Columns,
    columns: list[tuple[str, str]],
    headers: list[str],
    budgets: list[float],
    render: Callable[[dict[str, Any], tuple[str, str], float], str],
) -> str:
    """A budget x column table of the default's cells; ``render`` writes a cell that has a
    paired difference (the others stay empty)."""
    lines = ["| budget | " + " | ".join(headers) + " |", "|---|" + "---|" * len(columns)]
    for b in budgets:
        row = []
        for col in columns:
            c = cells[col].get((DEFAULT, b))
            row.append(render(c, col, b) if c and "differences" in c else "")
        lines.append(f"| {b:.0%} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _probe_overview(
    cells: _Columns, columns: list[tuple[str, str]], budgets: list[float], by_budget: dict[str, str]
) -> str:
    def render(c: dict[str, Any], col: tuple[str, str], b: float) -> str:
        text = f"{_ci(c)}; {c['mde']:.1f}"
        # The default's cells are copies: their Holm mark is their candidate's.
        candidate = cells[col].get((by_budget.get(str(b), ""), b), {})
        return f"**{text}**" if candidate.get("p_holm", 1.0) < 0.05 else text

    headers = [f"{name} {pool}" for name, pool in columns]
    return _budget_table(cells, columns, headers, budgets, render)


def _noninferiority_overview(
    cells: _Columns, columns: list[tuple[str, str]], budgets: list[float]
) -> str:
    def render(c: dict[str, Any], col: tuple[str, str], b: float) -> str:
        _, lo, verdict = noninferior(c["differences"])
        return f"{verdict} ({signed(lo)})"

    clean = [col for col in columns if col[1] == "clean"]
    return _budget_table(cells, clean, [name for name, _ in clean], budgets, render)


def _junk_overview(screens: dict[str, list[dict[str, Any]]], budgets: list[float]) -> str:
    """Junk kept at :data:`PRIMARY_BUDGET` and its range over the budgets below, per dataset."""
    noisy = {
        name: [r for r in rows if r["pool"] == "noisy" and "junk_share" in r]
        for name, rows in screens.items()
    }
    noisy = {name: rows for name, rows in noisy.items() if rows}
    small = [b for b in budgets if b < PRIMARY_BUDGET]
    lines = [
        "| method | "
        + " | ".join(f"{name} {PRIMARY_BUDGET:.0%}" for name in noisy)
        + ("".join(f" | {name} ≤{small[-1]:.0%}" for name in noisy) if small else "")
        + " |",
        "|---|" + "---|" * (len(noisy) * (2 if small else 1)),
    ]
    for m in NOISE_SHOWN:
        at = [_junk_share(rows, m, PRIMARY_BUDGET) for rows in noisy.values()]
        spans = []
        for rows in noisy.values():
            v = [x for x in (_junk_share(rows, m, b) for b in small) if not math.isnan(x)]
            spans.append(f"{min(v):.1f}–{max(v):.1f}" if v else "")
        if all(math.isnan(x) for x in at) and not any(spans):
            continue
        cells = ["" if math.isnan(x) else f"{x:.1f}" for x in at]
        lines.append(f"| {m} | " + " | ".join(cells + (spans if small else [])) + " |")
    return "\n".join(lines)


def _finetune_overview(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | budget | seeds | updates | default | random | default − random [95% CI] "
        "| MDE | non-inferior (one-sided bound) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        runs = [r for r in s["finetune"] if r["pool"] == "clean"]
        cells = comparisons(runs, "accuracy", "clean")
        for b in _budgets(runs):
            c, base = cells.get((DEFAULT, b)), cells.get((RANDOM, b))
            if not c or not base or "diff" not in c:
                continue
            steps = sorted({r["steps"] for r in runs if r["budget"] == b})
            _, lo, verdict = noninferior(c["differences"])
            text = _ci(c)
            lines.append(
                f"| {s['name']} | {b:.0%} | {c['diff'].n} | {'/'.join(map(str, steps))} | "
                f"{c['mean']:.1f} | {base['mean']:.1f} | "
                + (f"**{text}**" if c["diff"].lo > 0 or c["diff"].hi < 0 else text)
                + f" | {c['mde']:.1f} | {verdict} ({signed(lo)}) |"
            )
    return "\n".join(lines) if len(lines) > 2 else "No fine-tunes ran."


def overview(summaries: list[dict[str, Any]]) -> str:
    """The tables across datasets that docs/results.md shows, from the summaries of one run
    (which share the default): the choice; default − random on the probe per dataset and pool;
    its non-inferiority on the clean pools; the junk kept on the noisy pools; and the
    fine-tuned default − random on the clean pools."""
    choice = summaries[0]["default"]
    screens = {s["name"]: with_default(s["screen"], choice) for s in summaries}
    budgets = sorted({b for rows in screens.values() for b in _budgets(rows)})
    columns = [
        (name, pool)
        for name, rows in screens.items()
        for pool in POOLS
        if any(r["pool"] == pool for r in rows)
    ]
    cells = {(name, pool): comparisons(screens[name], "probe_eval", pool) for name, pool in columns}
    seeds = sorted({r["seed"] for rows in screens.values() for r in rows})
    return "\n".join(
        [
            "# Overview across datasets",
            "",
            f"Datasets: {', '.join(screens)}; {len(seeds)} probe seeds. Generated by "
            "`euds experiment` with every dataset's full tables beside it (results.md).",
            "",
            "## The default, chosen on dev",
            "",
            choice_table(choice),
            "",
            "## Linear probe: default − random (eval accuracy, points [95% CI]; MDE)",
            "",
            "Bold: the candidate the default stands for has a Holm-corrected p below .05 in "
            "its dataset's table.",
            "",
            _probe_overview(cells, columns, budgets, choice.get("by_budget", {})),
            "",
            f"## Non-inferiority of the default (probe, clean pools, margin "
            f"{NONINFERIORITY_MARGIN:g} point)",
            "",
            "Each cell: the verdict and the one-sided 95% lower bound of default − random.",
            "",
            _noninferiority_overview(cells, columns, budgets),
            "",
            "## Junk kept on the noisy pools (% of the subset, mean over seeds)",
            "",
            _junk_overview(screens, budgets),
            "",
            "## Fine-tuned: default − random (clean pools, eval accuracy, points)",
            "",
            "Bold: the 95% CI excludes 0.",
            "",
            _finetune_overview(summaries),
            "",
        ]
    )


__all__ = ["overview"]
