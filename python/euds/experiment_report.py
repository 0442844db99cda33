"""Rendering an experiment's summary (:func:`euds.experiment.run_experiments`): Markdown tables of
paired differences from random with 95% intervals and Holm-corrected significance, the noise
table, the subsets' make-up, and SVG plots of accuracy against the share of data kept. Like
:mod:`euds.report`, inline SVG written here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from euds.experiment import DEDUP, STEP_MATCHED
from euds.stats import holm, paired, tost

RANDOM = "random"
PRIMARY_BUDGET = 0.16
TOST_BUDGET, TOST_MARGIN = 0.3, 1.0  # points of accuracy
PLOTTED = ("random", "default", "auto", "intersect", "filter-random", "random+clusters")


def _points(value: float) -> float:
    return 100.0 * value


def comparisons(
    rows: list[dict[str, Any]], metric: str, pool: str
) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (method, budget) on one pool: mean metric and the paired difference from random
    (points; step-matched rows from step-matched random), with Holm-adjusted p over every
    method x budget of the table."""
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in rows:
        if r["pool"] == pool and not _nan(r.get(metric)):
            by.setdefault((r["method"], r["budget"]), {})[r["seed"]] = r[metric]
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for (method, budget), values in by.items():
        cell: dict[str, Any] = {
            "mean": _points(float(np.mean(list(values.values())))),
            "n": len(values),
        }
        # A step-matched row is paired only with step-matched random: against natural-epoch
        # random it would measure the extra updates, not the selection.
        baseline = RANDOM + STEP_MATCHED if method.endswith(STEP_MATCHED) else RANDOM
        base = by.get((baseline, budget))
        if method != baseline and base:
            seeds = sorted(set(values) & set(base))
            cell["diff"] = paired([_points(values[s] - base[s]) for s in seeds])
        out[(method, budget)] = cell
    keys = [k for k, c in out.items() if "diff" in c]
    for k, p in zip(keys, holm([out[k]["diff"].p for k in keys]), strict=True):
        out[k]["p_holm"] = float(p)
    return out


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    if "diff" not in c:
        return f"{c['mean']:.1f}"
    d = c["diff"]
    text = f"{c['mean']:.1f} ({d.mean:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}])"
    return f"**{text}**" if c.get("p_holm", 1.0) < 0.05 else text


def _methods_in(rows: list[dict[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in rows))
    first = [m for m in (RANDOM, "default") if m in seen]
    return (
        first
        + [m for m in seen if m not in first and m != "full"]
        + (["full"] if "full" in seen else [])
    )


def table(
    rows: list[dict[str, Any]], metric: str, pool: str, methods: list[str] | None = None
) -> str:
    cells = comparisons(rows, metric, pool)
    budgets = sorted({b for (_, b) in cells})
    methods = [m for m in (methods or _methods_in(rows)) if any((m, b) in cells for b in budgets)]
    lines = [
        "| method | " + " | ".join(f"{b:.0%}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_cell(cells.get((m, b))) for b in budgets) + " |")
    return "\n".join(lines)


def steps_line(runs: list[dict[str, Any]]) -> str:
    steps: dict[tuple[float, bool], set[int]] = {}
    for r in runs:
        steps.setdefault((r["budget"], r["method"].endswith(STEP_MATCHED)), set()).add(r["steps"])
    return "; ".join(
        f"{b:.0%}{' step-matched' if matched else ''}: {'/'.join(str(s) for s in sorted(v))} steps"
        for (b, matched), v in sorted(steps.items())
    )


def p_text(p: float) -> str:
    """A p-value as the report prints it: three decimals, and "p < 0.001" below that, so a
    small p never reads as "p = 0.000"."""
    return "p < 0.001" if p < 0.0005 else f"p = {p:.3f}"


def primary(rows: list[dict[str, Any]], metric: str = "accuracy", method: str = "default") -> str:
    """The pre-registered comparison: ``method`` vs random at 16% on the clean pool."""
    what = "fine-tuned" if metric == "accuracy" else "linear probe"
    c = comparisons(rows, metric, "clean").get((method, PRIMARY_BUDGET))
    if not c or "diff" not in c:
        return f"Default vs random at 16% ({what}, clean pool): not run."
    d = c["diff"]
    return (
        f"Default vs random at 16% ({what}, clean pool, n = {d.n} seeds): {d.mean:+.2f} points "
        f"[95% CI {d.lo:+.2f}, {d.hi:+.2f}], {p_text(d.p)}."
    )


def equivalence(
    rows: list[dict[str, Any]], label: str, metric: str = "accuracy", method: str = "default"
) -> str:
    """TOST of ``method`` at 30% against the full pool, margin 1 point, clean pool; ``label``
    names the method in the line, the same way for the probe and the fine-tunes."""
    what = "fine-tuned" if metric == "accuracy" else "linear probe"
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in rows:
        if r["pool"] == "clean" and not _nan(r.get(metric)):
            by.setdefault((r["method"], r["budget"]), {})[r["seed"]] = r[metric]
    full, part = by.get(("full", 1.0)), by.get((method, TOST_BUDGET))
    if not full or not part:
        return f"Within 1 point of full at 30% (TOST, {what}): not run."
    seeds = sorted(set(full) & set(part))
    d = [_points(part[s] - full[s]) for s in seeds]
    p = tost(d, TOST_MARGIN) if len(d) > 1 else float("nan")
    ci = paired(d, level=0.90)
    verdict = "shown" if p < 0.05 else "not shown"
    return (
        f"Within {TOST_MARGIN:g} point of full at {TOST_BUDGET:.0%} (TOST, {what}, n = {len(d)} "
        f"seeds): {label} - full = {ci.mean:+.2f} points [90% CI {ci.lo:+.2f}, {ci.hi:+.2f}], "
        f"{p_text(p)}: equivalence {verdict}."
    )


def noise_table(rows: list[dict[str, Any]], budget: float, methods: list[str]) -> str:
    noisy = [r for r in rows if r["pool"] == "noisy" and r["budget"] == budget]
    if not noisy:
        return "(no noisy pool)"
    kinds = sorted({k for r in noisy for k in r.get("junk_kept", {})})
    lines = [
        "| method | junk kept % | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for m in methods:
        rs = [r for r in noisy if r["method"] == m]
        if not rs:
            continue
        share = 100 * np.mean([r["junk_share"] for r in rs])
        per_kind = [np.mean([r["junk_kept"].get(k, 0) for r in rs]) for k in kinds]
        lines.append(f"| {m} | {share:.1f} | " + " | ".join(f"{v:.0f}" for v in per_kind) + " |")
    return "\n".join(lines)


def makeup_table(rows: list[dict[str, Any]], budget: float, methods: list[str]) -> str:
    clean = [r for r in rows if r["pool"] == "clean" and r["budget"] in (budget, 1.0)]
    lines = [
        "| method | median words | largest class share | clusters covered |",
        "|---|---|---|---|",
    ]
    for m in [*methods, "full"]:
        rs = [r for r in clean if r["method"] == m]
        if rs:
            lines.append(
                f"| {m} | {np.mean([r['median_words'] for r in rs]):.1f} | "
                f"{np.mean([r['largest_class_share'] for r in rs]):.3f} | "
                f"{np.mean([r['clusters_covered'] for r in rs]):.1f} |"
            )
    return "\n".join(lines)


def rank_correlation(screen: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """Spearman correlation between the probe (eval) and the fine-tune (eval) over the
    (pool, method, budget) means both measured."""
    from scipy.stats import spearmanr

    def means(rows: list[dict[str, Any]], metric: str) -> dict[tuple[str, str, float], float]:
        groups: dict[tuple[str, str, float], list[float]] = {}
        for r in rows:
            groups.setdefault((r["pool"], r.get("candidate", r["method"]), r["budget"]), []).append(
                r[metric]
            )
        return {k: float(np.mean(v)) for k, v in groups.items()}

    probe, fine = means(screen, "probe_eval"), means(runs, "accuracy")
    keys = sorted(set(probe) & set(fine))
    if len(keys) < 3:
        return f"Probe vs fine-tune rank correlation: {len(keys)} common cells, too few to say."
    rho, p = spearmanr([probe[k] for k in keys], [fine[k] for k in keys])
    return (
        f"Probe vs fine-tune rank correlation (Spearman, over the {len(keys)} pool x method x "
        f"budget cells both measured): rho = {rho:.2f} ({p_text(p)})."
    )


def auto_lines(screen: list[dict[str, Any]]) -> str:
    lines = []
    for pool in ("clean", "noisy"):
        rows = [r for r in screen if r["pool"] == pool and r["method"] == "auto"]
        if not rows:
            continue
        chosen: dict[str, int] = {}
        for r in rows:
            t = r["tuned"]
            name = f"{t['method']}@{t['position']}"
            chosen[name] = chosen.get(name, 0) + 1
        top = ", ".join(f"{k} x{v}" for k, v in sorted(chosen.items(), key=lambda kv: -kv[1])[:6])
        cells = comparisons(
            [
                {**r, "method": "random" if r["method"] == "best-of-25-random" else r["method"]}
                for r in screen
                if r["pool"] == pool and r["method"] in ("auto", "best-of-25-random")
            ],
            "probe_eval",
            pool,
        )
        diffs = ", ".join(
            f"{b:.0%}: {c['diff'].mean:+.1f} [{c['diff'].lo:+.1f}, {c['diff'].hi:+.1f}]"
            for (m, b), c in sorted(cells.items(), key=lambda kv: kv[0][1])
            if m == "auto" and "diff" in c
        )
        lines.append(
            f"- {pool} pool: chosen {top}; auto - best-of-25-random (probe, eval): {diffs}"
        )
    return "\n".join(lines)


def svg_lines(title: str, series: dict[str, list[tuple[float, float, float, float]]]) -> str:
    """Lines of (x, mean, lo, hi) per name, with interval bars; x is a share of data kept."""
    xs = sorted({p[0] for pts in series.values() for p in pts})
    ys = [v for pts in series.values() for p in pts for v in p[1:] if not math.isnan(v)]
    if not xs or not ys:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>\n"
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    w, h, m = 760, 420, 70
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]

    def x(b: float) -> float:  # log scale: budgets from 5% to 100%
        a, z = math.log(xs[0]), math.log(xs[-1])
        return m + (math.log(b) - a) / max(z - a, 1e-9) * (w - 2 * m - 110)

    def y(v: float) -> float:
        return h - m - (v - lo) / (hi - lo) * (h - 2 * m)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {w} {h}' width='{w}' height='{h}'>",
        f"<text x='{w / 2}' y='22' text-anchor='middle' font-size='14'>{title}</text>",
        f"<line x1='{m}' y1='{h - m}' x2='{w - m - 110}' y2='{h - m}' stroke='#333'/>",
        f"<line x1='{m}' y1='{m}' x2='{m}' y2='{h - m}' stroke='#333'/>",
    ]
    for b in xs:
        parts.append(_text(x(b), h - m + 16, f"{b:.0%}", "middle"))
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(_text(m - 6, y(v) + 4, f"{v:.1f}", "end"))
    for i, (name, pts) in enumerate(series.items()):
        color = colors[i % len(colors)]
        pts = sorted(pts)
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{x(p[0]):.1f},{y(p[1]):.1f}" for j, p in enumerate(pts)
        )
        parts.append(f"<path d='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
        for b, mean, a, z in pts:
            if not (math.isnan(a) or math.isnan(z)):
                parts.append(
                    f"<line x1='{x(b):.1f}' y1='{y(a):.1f}' x2='{x(b):.1f}' y2='{y(z):.1f}' "
                    f"stroke='{color}'/>"
                )
            parts.append(f"<circle cx='{x(b):.1f}' cy='{y(mean):.1f}' r='3' fill='{color}'/>")
        parts.append(
            f"<text x='{w - m - 100}' y='{m + 15 * i}' font-size='11' fill='{color}'>{name}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='11'>{text}</text>"


def plot(rows: list[dict[str, Any]], metric: str, pool: str, title: str) -> str:
    """Mean metric (points) per plotted method vs budget, bars = 95% t interval over seeds."""
    from scipy import stats

    series: dict[str, list[tuple[float, float, float, float]]] = {}
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        if r["pool"] == pool and r["method"] in (*PLOTTED, "full") and not _nan(r.get(metric)):
            groups.setdefault((r["method"], r["budget"]), []).append(_points(r[metric]))
    for (method, budget), v in sorted(groups.items()):
        a = np.array(v)
        half = (
            float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
            if len(a) > 1
            else float("nan")
        )
        mean = float(a.mean())
        if method == "full":
            continue
        series.setdefault(method, []).append((budget, mean, mean - half, mean + half))
    full = groups.get(("full", 1.0))
    if full:
        for pts in series.values():
            pts.append((1.0, float(np.mean(full)), float("nan"), float("nan")))
    return svg_lines(title, series)


def _choice_pools(default: dict[str, Any]) -> str:
    """Which pools chose the default and, when some were left out, what all of them would choose."""
    pools = default.get("pools")
    if not pools:
        return ""
    text = "; pools " + "; ".join(f"{name}: {', '.join(p)}" for name, p in pools.items())
    every = default.get("every_pool")
    if every:
        gain = every["mean_dev_gain"]
        top = sorted(gain, key=lambda m: -gain[m])[:2]
        text += (
            f". With every screened pool the rule would choose {every['method']} ("
            + ", ".join(f"{m} {100 * gain[m]:+.2f}" for m in top)
            + " mean dev points over random)"
        )
    return text


def write_report(summary: dict[str, Any], out: Path) -> None:
    """results.md, probe_clean.svg and probe_noisy.svg in ``out``."""
    (out / "results.md").write_text(markdown(summary))
    for pool in ("clean", "noisy"):
        rows = [
            {
                **r,
                "method": "default" if r["method"] == summary["default"]["method"] else r["method"],
            }
            for r in summary["screen"]
        ]
        (out / f"probe_{pool}.svg").write_text(
            plot(
                rows,
                "probe_eval",
                pool,
                f"{summary['name']}, {pool} pool: linear probe accuracy (eval) vs data kept",
            )
        )


def _dedup_section(
    screen: list[dict[str, Any]], dedup_rows: list[dict[str, Any]], default: str, dedup: list[str]
) -> list[str]:
    """Near-duplicate removal: junk kept on the noisy pool at 16%, each method without and
    with it (``screen``: every row), then the probe with it on each pool (``dedup_rows``: its
    own rows and random's, one Holm family)."""
    rename = {default: "default", default + DEDUP: "default" + DEDUP}
    pairs = [rename.get(m, m) for d in dedup for m in (d[: -len(DEDUP)], d)]
    every = [{**r, "method": rename.get(r["method"], r["method"])} for r in screen]
    rows = [{**r, "method": rename.get(r["method"], r["method"])} for r in dedup_rows]
    parts = [
        "## Near-duplicate removal (`--drop-near-duplicates`; probe pools)",
        "",
        "Junk kept on the noisy pool at 16% without and with it (counts per kind, mean over "
        "seeds):",
        "",
        noise_table(every, PRIMARY_BUDGET, pairs),
        "",
    ]
    for pool in ("clean", "noisy"):
        if any(r["pool"] == pool for r in rows):
            parts += [
                f"Linear probe with it, {pool} pool (eval accuracy, points):",
                "",
                table(rows, "probe_eval", pool, [rename.get(m, m) for m in dedup]),
                "",
            ]
    return parts


def markdown(summary: dict[str, Any]) -> str:
    default = summary["default"]["method"]
    # Near-duplicate removal has its own section (and Holm family): the main tables are as
    # they were before it was screened.
    screen: list[dict[str, Any]] = [r for r in summary["screen"] if not r["method"].endswith(DEDUP)]
    dedup_rows = [
        r for r in summary["screen"] if r["method"].endswith(DEDUP) or r["method"] == RANDOM
    ]
    runs: list[dict[str, Any]] = summary["finetune"]
    main = [m for m in _methods_in(screen) if "~length" not in m or m.startswith(default + "~")]
    dedup = [m for m in _methods_in(dedup_rows) if m.endswith(DEDUP)]
    parts = [
        f"# {summary['name']}",
        "",
        f"Pool {summary['pool']:,} records per seed (from a superset of {summary['superset']:,}), "
        f"dev {summary['dev']:,}, eval {summary['eval']:,}; seeds "
        f"{sorted({r['seed'] for r in screen})}. Default chosen on dev: **{default}** "
        f"({summary['default']['rule']}{_choice_pools(summary['default'])}).",
        "",
        "## Linear probe on the kept embeddings (eval accuracy, points)",
        "",
        "Each cell: mean over seeds (paired difference from random [95% CI]); bold where the "
        "Holm-corrected p over the table's comparisons is below .05.",
        "",
    ]
    for pool in ("clean", "noisy"):
        if any(r["pool"] == pool for r in screen):
            parts += [f"### {pool} pool", "", table(screen, "probe_eval", pool, main), ""]
    parts += [
        primary(screen, "probe_eval", default),
        "",
        equivalence(screen, f"the default ({default})", "probe_eval", default),
        "",
    ]
    parts += [
        "## Automatic interval (tuned on dev) and its control",
        "",
        auto_lines(screen),
        "",
        "## Fine-tuned (eval accuracy, points)",
        "",
    ]
    if runs:
        for pool in ("clean", "noisy"):
            pool_runs = [r for r in runs if r["pool"] == pool]
            if pool_runs:
                parts += [
                    f"### {pool} pool ({steps_line(pool_runs)})",
                    "",
                    table(pool_runs, "accuracy", pool),
                    "",
                ]
        parts += [
            "Pre-registered primary comparison. " + primary(runs),
            "",
            equivalence(runs, f"the default ({default})"),
            "",
            *(
                [
                    equivalence(
                        runs,
                        f"the default ({default}, step-matched)",
                        method="default" + STEP_MATCHED,
                    ),
                    "",
                ]
                if any(r["method"] == "default" + STEP_MATCHED for r in runs)
                else []
            ),
            rank_correlation(screen, runs),
            "",
        ]
    else:
        parts += ["No fine-tunes ran.", ""]
    listed = [m for m in main if m != "full"]
    parts += [
        "## Junk kept on the noisy pool at 16% (probe pools; counts per kind, mean over seeds)",
        "",
        noise_table(screen, PRIMARY_BUDGET, listed),
        "",
        *(_dedup_section(summary["screen"], dedup_rows, default, dedup) if dedup else []),
        "## What the 16% subsets hold (clean pool, mean over seeds)",
        "",
        makeup_table(screen, PRIMARY_BUDGET, listed),
        "",
        "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()),
        "",
    ]
    return "\n".join(parts)
