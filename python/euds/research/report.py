"""Rendering an experiment's summary (:func:`euds.research.experiment.run_experiments`): Markdown
tables of paired differences from random with 95% intervals, the minimum detectable effect of
each cell and Holm-corrected significance, the default's non-inferiority, the junk kept per kind,
the subsets' make-up, and SVG plots of accuracy against the share of data kept (inline SVG
written here, like :mod:`euds.report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from euds.research.methods import (
    DEFAULT,
    FULL,
    LENGTH_MATCHED,
    RANDOM,
    STEP_MATCHED,
)
from euds.research.stats import holm, mde, noninferiority, paired, tost

PRIMARY_BUDGET = 0.16
TOST_BUDGET, TOST_MARGIN = 0.3, 1.0  # points of accuracy
NONINFERIORITY_MARGIN = 0.5  # points of accuracy
PLOTTED = ("random", "default", "coverage", "typical", "target", "random+classes")


def _points(value: float) -> float:
    return 100.0 * value


def signed(value: float, spec: str = "+.1f") -> str:
    """A number as the docs print it: a typographic minus."""
    return format(value, spec).replace("-", "\u2212")


def with_default(rows: list[dict[str, Any]], choice: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` plus, at every budget where a default was chosen, a copy of the chosen
    candidate's rows (and of its length-matched control's) named ``default``
    (``default~length``)."""
    by_budget = choice.get("by_budget", {})
    out = list(rows)
    for r in rows:
        chosen = by_budget.get(str(r["budget"]))
        if chosen is None:
            continue
        if r["method"] == chosen:
            out.append({**r, "method": DEFAULT})
        elif r["method"] == chosen + LENGTH_MATCHED:
            out.append({**r, "method": DEFAULT + LENGTH_MATCHED})
    return out


def comparisons(
    rows: list[dict[str, Any]], metric: str, pool: str
) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (method, budget) on one pool: mean metric, the paired difference from random
    (points; step-matched rows from step-matched random) with its MDE, and the Holm-adjusted p
    over every method x budget of the table."""
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
            d = [_points(values[s] - base[s]) for s in seeds]
            cell["diff"] = paired(d)
            cell["mde"] = mde(d)
            cell["differences"] = d
        out[(method, budget)] = cell
    # The copies named default are not comparisons of their own.
    keys = [k for k, c in out.items() if "diff" in c and not k[0].startswith(DEFAULT)]
    for k, p in zip(keys, holm([out[k]["diff"].p for k in keys]), strict=True):
        out[k]["p_holm"] = float(p)
    for (method, _), c in out.items():
        if method.startswith(DEFAULT) and "diff" in c:
            c["p_holm"] = float("nan")
    return out


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    if "diff" not in c:
        return f"{c['mean']:.1f}"
    d = c["diff"]
    text = f"{c['mean']:.1f} ({d.mean:+.1f} [{d.lo:+.1f}, {d.hi:+.1f}]; MDE {c['mde']:.1f})"
    return f"**{text}**" if c.get("p_holm", 1.0) < 0.05 else text


def _methods_in(rows: list[dict[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in rows))
    first = [m for m in (RANDOM, DEFAULT) if m in seen]
    return (
        first + [m for m in seen if m not in first and m != FULL] + ([FULL] if FULL in seen else [])
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


def noninferior(differences: list[float]) -> tuple[float, float, str]:
    """p of the one-sided test that the mean is above −:data:`NONINFERIORITY_MARGIN`, the
    one-sided 95% lower bound, and the verdict ("shown" or "not shown")."""
    p = noninferiority(differences, NONINFERIORITY_MARGIN)
    lo = paired(differences, level=0.90).lo  # the one-sided 95% bound
    return p, lo, "shown" if p < 0.05 else "not shown"


def noninferiority_lines(rows: list[dict[str, Any]], metric: str, pool: str = "clean") -> str:
    """The default against random at every budget: one-sided test that it is no more than
    :data:`NONINFERIORITY_MARGIN` points under random."""
    cells = comparisons(rows, metric, pool)
    lines = []
    for (method, budget), c in sorted(cells.items(), key=lambda kv: kv[0][1]):
        if method != DEFAULT or "differences" not in c:
            continue
        d = c["differences"]
        p, lo, verdict = noninferior(d)
        lines.append(
            f"| {budget:.0%} | {len(d)} | {np.mean(d):+.2f} | {lo:+.2f} | {p_text(p)} | {verdict} |"
        )
    if not lines:
        return "(no default rows)"
    return "\n".join(
        [
            f"| budget | seeds | default − random | one-sided 95% lower bound | p (H0: ≤ "
            f"−{NONINFERIORITY_MARGIN:g}) | non-inferior |",
            "|---|---|---|---|---|---|",
            *lines,
        ]
    )


DATASET_NAMES = {"sst2": "SST-2", "20ng": "20NG", "trec": "TREC"}


def _dataset_rank(dataset: str) -> int:
    """Where a dataset's rows go in a table: in DATASET_NAMES's order, unknown ones last."""
    return list(DATASET_NAMES).index(dataset) if dataset in DATASET_NAMES else len(DATASET_NAMES)


def _seed_list(seeds: list[int]) -> str:
    """``10 (40–49)`` for a run of consecutive seeds, else every seed."""
    s = sorted(seeds)
    if s == list(range(s[0], s[-1] + 1)):
        return f"{len(s)} ({s[0]}\u2013{s[-1]})"
    return f"{len(s)} ({', '.join(map(str, s))})"


def _interval(mean: float, lo: float, hi: float) -> str:
    """``+x [lo, hi]``, bold where the interval excludes 0."""
    text = f"{signed(mean)} [{signed(lo)}, {signed(hi)}]"
    return f"**{text}**" if lo > 0 or hi < 0 else text


def finetune_cells_table(cells: list[dict[str, Any]]) -> str:
    """The fine-tuned cells of ``experiments/finetune_cell.py`` (its JSON's ``cells``), one row
    each, finished cells only: mean accuracy of the default and random, the paired difference
    (bold where its 95% CI excludes 0), the MDE at 80% power, the one-sided non-inferiority
    bound at −:data:`NONINFERIORITY_MARGIN`, the seeds that gain with the range of the
    differences, on noisy pools the junk each kept (mean share of the subset), and the
    difference's p Holm-corrected over the table's cells (each interval is its cell's alone).
    Cells of a candidate named instead of the default (``--method``) head their columns
    "method"."""
    done = [c for c in cells if "difference" in c]
    done.sort(key=lambda c: (c["pool"], _dataset_rank(c["dataset"]), c["budget"], len(c["seeds"])))
    who = "method" if any(c.get("named") for c in done) else "default"
    lines = [
        f"| dataset, pool | budget | {'default method' if who == 'default' else who} "
        f"| seeds | updates | {who} | random "
        f"| {who} − random [95% CI] | MDE | non-inferior (one-sided bound) "
        f"| seeds gaining; range | junk kept, {who} / random | p, Holm over the table |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Every cell's statistics first: Holm corrects each p over the whole table.
    per_cell = []
    for c in done:
        by = {(r["method"], r["seed"]): r for r in c["runs"]}
        acc = {m: [by[m, s]["accuracy"] for s in c["seeds"]] for m in ("default", "random")}
        d = [_points(a - b) for a, b in zip(acc["default"], acc["random"], strict=True)]
        per_cell.append((c, by, acc, d, paired(d)))
    p_holm = holm([ci.p for *_, ci in per_cell])
    for (c, by, acc, d, ci), p in zip(per_cell, p_holm, strict=True):
        seeds = c["seeds"]
        interval = _interval(ci.mean, ci.lo, ci.hi)
        _, bound, verdict = noninferior(d)
        junk = "—"
        if c["pool"] == "noisy":
            share = {m: 100 * np.mean([by[m, s]["junk_share"] for s in seeds]) for m in acc}
            junk = f"{share['default']:.1f}% / {share['random']:.1f}%"
        name = DATASET_NAMES.get(c["dataset"], c["dataset"])
        lines.append(
            f"| {name} {c['pool']} | {c['budget']:.0%} | {c['default']} | {_seed_list(seeds)} "
            f"| {', '.join(map(str, c['steps']))} | {_points(np.mean(acc['default'])):.1f} "
            f"| {_points(np.mean(acc['random'])):.1f} | {interval} | {mde(d):.1f} "
            f"| {verdict} ({signed(bound, '+.2f')}) | {sum(x > 0 for x in d)}; {signed(min(d))} to "
            f"{signed(max(d))} | {junk} | {p:.3f} |"
        )
    return "\n".join(lines)


def pair_cells_table(cells: list[dict[str, Any]], old: str, new: str) -> str:
    """``new`` against ``old`` per dataset and budget (``experiments/clean_cost.py``'s cells):
    the paired eval-probe difference on the clean and on the noisy pools, each with its 95% CI
    (bold where it excludes 0) and MDE, and the junk each keeps on the noisy pools."""
    by = {(c["dataset"], c["pool"], c["budget"]): c for c in cells}
    keys = sorted({(d, b) for d, _, b in by}, key=lambda k: (_dataset_rank(k[0]), k[1]))
    lines = [
        f"| dataset | budget | clean pools: {new} − {old} [95% CI]; MDE "
        f"| noisy pools: {new} − {old} [95% CI]; MDE | junk kept, {old} → {new} |",
        "|---|---|---|---|---|",
    ]
    for dataset, budget in keys:
        row = [DATASET_NAMES.get(dataset, dataset), f"{budget:.0%}"]
        for pool in ("clean", "noisy"):
            c = by.get((dataset, pool, budget))
            e = c and c["eval"]
            row.append(f"{_interval(e['mean'], *e['ci'])}; {e['mde']:.1f}" if e else "—")
        junk = (by.get((dataset, "noisy", budget)) or {}).get("junk_share")
        row.append(f"{100 * junk[old]:.1f}% → {100 * junk[new]:.1f}%" if junk else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def challenger_cells_table(cells: list[dict[str, Any]], old: str) -> str:
    """Each challenger against ``old`` per dataset, pool and budget
    (``experiments/fresh_rule.py``'s cells): the dev-probe difference with the p of its
    non-inferiority test (what the rule reads), the eval-probe difference with its 95% CI (bold
    where it excludes 0) and MDE, and on the noisy pools the junk each keeps."""
    order = sorted(cells, key=lambda c: (_dataset_rank(c["dataset"]), c["pool"], c["budget"]))
    lines = [
        f"| dataset | pool | budget | challenger | dev − {old}; p (≥ −0.5) "
        f"| eval − {old} [95% CI]; MDE | junk kept, {old} → challenger |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in order:
        d, e, junk = c["dev"], c["eval"], c.get("junk_share")
        kept = f"{100 * junk[old]:.1f}% → {100 * junk[c['challenger']]:.1f}%" if junk else "—"
        row = [
            DATASET_NAMES.get(c["dataset"], c["dataset"]),
            c["pool"],
            f"{c['budget']:.0%}",
            c["challenger"],
            f"{signed(d['mean'])}; {d['noninferior_p']:.3f}",
            f"{_interval(e['mean'], *e['ci'])}; {e['mde']:.1f}",
            kept,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def equivalence(
    rows: list[dict[str, Any]], label: str, metric: str = "accuracy", method: str = DEFAULT
) -> str:
    """TOST of ``method`` at 30% against the full pool, margin 1 point, clean pool; ``label``
    names the method in the line, the same way for the probe and the fine-tunes."""
    what = "fine-tuned" if metric == "accuracy" else "linear probe"
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in rows:
        if r["pool"] == "clean" and not _nan(r.get(metric)):
            by.setdefault((r["method"], r["budget"]), {})[r["seed"]] = r[metric]
    full, part = by.get((FULL, 1.0)), by.get((method, TOST_BUDGET))
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


def junk_share_table(rows: list[dict[str, Any]], methods: list[str]) -> str:
    """Junk kept (% of the subset, mean over seeds) on the noisy pool, method x budget."""
    noisy = [r for r in rows if r["pool"] == "noisy" and "junk_share" in r]
    if not noisy:
        return "(no noisy pool)"
    budgets = sorted({r["budget"] for r in noisy if r["budget"] < 1.0})
    lines = [
        "| method | " + " | ".join(f"{b:.0%}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for m in methods:
        cells = []
        for b in budgets:
            rs = [r["junk_share"] for r in noisy if r["method"] == m and r["budget"] == b]
            cells.append(f"{100 * np.mean(rs):.1f}" if rs else "")
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    full = [r["junk_share"] for r in noisy if r["method"] == FULL]
    if full:
        lines.append(f"| whole pool | {100 * np.mean(full):.1f} |" + " |" * (len(budgets) - 1))
    return "\n".join(lines)


def noise_table(rows: list[dict[str, Any]], budget: float, methods: list[str]) -> str:
    """Junk kept per kind (counts, mean over seeds) on the noisy pool at one budget."""
    noisy = [
        r for r in rows if r["pool"] == "noisy" and r["budget"] == budget and "junk_share" in r
    ]
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
        lines.append(f"| {m} | {share:.1f} | " + " | ".join(f"{v:.1f}" for v in per_kind) + " |")
    return "\n".join(lines)


def default_noise_table(rows: list[dict[str, Any]]) -> str:
    """The default's junk kept per kind at every budget (counts, mean over seeds)."""
    noisy = [
        r for r in rows if r["pool"] == "noisy" and r["method"] == DEFAULT and "junk_share" in r
    ]
    if not noisy:
        return "(no noisy pool)"
    kinds = sorted({k for r in noisy for k in r.get("junk_kept", {})})
    lines = [
        "| budget | kept | junk kept % | " + " | ".join(kinds) + " |",
        "|---|---|---|" + "---|" * len(kinds),
    ]
    for b in sorted({r["budget"] for r in noisy}):
        rs = [r for r in noisy if r["budget"] == b]
        share = 100 * np.mean([r["junk_share"] for r in rs])
        per_kind = [np.mean([r["junk_kept"].get(k, 0) for r in rs]) for k in kinds]
        lines.append(
            f"| {b:.0%} | {rs[0]['records']} | {share:.1f} | "
            + " | ".join(f"{v:.1f}" for v in per_kind)
            + " |"
        )
    return "\n".join(lines)


def makeup_table(rows: list[dict[str, Any]], budget: float, methods: list[str]) -> str:
    clean = [
        r
        for r in rows
        if r["pool"] == "clean" and r["budget"] in (budget, 1.0) and "median_words" in r
    ]
    lines = [
        "| method | median words | largest class share | classes covered | clusters covered |",
        "|---|---|---|---|---|",
    ]
    for m in [*methods, FULL]:
        rs = [r for r in clean if r["method"] == m]
        if rs:
            lines.append(
                f"| {m} | {np.mean([r['median_words'] for r in rs]):.1f} | "
                f"{np.mean([r['largest_class_share'] for r in rs]):.3f} | "
                f"{np.mean([r.get('classes_covered', float('nan')) for r in rs]):.1f} | "
                f"{np.mean([r['clusters_covered'] for r in rs]):.1f} |"
            )
    return "\n".join(lines)


def choice_table(choice: dict[str, Any]) -> str:
    """The default at each budget with its worst-case dev gain, and the runner-up."""
    worst = choice.get("worst_dev_gain", {})
    lines = [
        "| budget | default | worst-case dev gain | runner-up | its worst-case dev gain |",
        "|---|---|---|---|---|",
    ]
    for b, chosen in sorted(choice.get("by_budget", {}).items(), key=lambda kv: float(kv[0])):
        w = worst.get(b, {})
        others = sorted((m for m in w if m != chosen), key=lambda m: -w[m])
        second = others[0] if others else ""
        lines.append(
            f"| {float(b):.0%} | {chosen} | {signed(w.get(chosen, float('nan')), '+.2f')} | "
            f"{second} | " + (signed(w[second], "+.2f") if second else "") + " |"
        )
    return "\n".join(lines)


def rank_correlation(screen: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """Spearman correlation between the probe (eval) and the fine-tune (eval) over the
    (pool, method, budget) means both measured."""
    from scipy.stats import spearmanr

    def means(rows: list[dict[str, Any]], metric: str) -> dict[tuple[str, str, float], float]:
        groups: dict[tuple[str, str, float], list[float]] = {}
        for r in rows:
            if _nan(r.get(metric)):
                continue
            key = (r["pool"], r.get("candidate", r["method"]), r["budget"])
            groups.setdefault(key, []).append(r[metric])
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

    def x(b: float) -> float:  # log scale: budgets from 1% to 100%
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
        if r["pool"] == pool and r["method"] in (*PLOTTED, FULL) and not _nan(r.get(metric)):
            groups.setdefault((r["method"], r["budget"]), []).append(_points(r[metric]))
    for (method, budget), v in sorted(groups.items()):
        if method == FULL:
            continue
        a = np.array(v)
        half = (
            float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
            if len(a) > 1
            else float("nan")
        )
        mean = float(a.mean())
        series.setdefault(method, []).append((budget, mean, mean - half, mean + half))
    full = groups.get((FULL, 1.0))
    if full:
        for pts in series.values():
            pts.append((1.0, float(np.mean(full)), float("nan"), float("nan")))
    return svg_lines(title, series)


def write_results(summary: dict[str, Any], out: Path) -> None:
    """results.md, probe_clean.svg and probe_noisy.svg in ``out``."""
    (out / "results.md").write_text(markdown(summary))
    rows = with_default(summary["screen"], summary["default"])
    for pool in ("clean", "noisy"):
        (out / f"probe_{pool}.svg").write_text(
            plot(
                rows,
                "probe_eval",
                pool,
                f"{summary['name']}, {pool} pool: linear probe accuracy (eval) vs data kept",
            )
        )


def markdown(summary: dict[str, Any]) -> str:
    choice = summary["default"]
    screen = with_default(summary["screen"], choice)
    runs: list[dict[str, Any]] = summary["finetune"]
    main = [m for m in _methods_in(screen) if LENGTH_MATCHED not in m or m.startswith(DEFAULT)]
    controls = [m for m in _methods_in(screen) if m.endswith(LENGTH_MATCHED)]
    listed = [m for m in main if m != FULL]
    seeds = sorted({r["seed"] for r in screen})
    parts = [
        f"# {summary['name']}",
        "",
        f"Pool {summary['pool']:,} records per seed (from a superset of {summary['superset']:,}), "
        f"dev {summary['dev']:,}, eval {summary['eval']:,}; {len(seeds)} seeds. Datasets that "
        f"chose the default: {', '.join(choice.get('datasets', []))} (dev only; rule: "
        f"{choice.get('rule', '')}).",
        "",
        "## The default, chosen on dev",
        "",
        choice_table(choice),
        "",
        "## Linear probe on the kept embeddings (eval accuracy, points)",
        "",
        "Each cell: mean over seeds (paired difference from random [95% CI]; the minimum "
        "detectable effect at 80% power, from the cell's own spread); bold where the "
        "Holm-corrected p over the table's comparisons (the default's copies excluded) is "
        "below .05. `default` repeats, at each budget, the candidate chosen there.",
        "",
    ]
    for pool in ("clean", "noisy"):
        if any(r["pool"] == pool for r in screen):
            parts += [
                f"### {pool} pool",
                "",
                table(screen, "probe_eval", pool, main),
                "",
                f"Non-inferiority of the default ({pool} pool, probe, margin "
                f"{NONINFERIORITY_MARGIN:g} point):",
                "",
                noninferiority_lines(screen, "probe_eval", pool),
                "",
            ]
    parts += [
        "### Length-matched controls (clean pool)",
        "",
        table([r for r in screen if r["method"] in (RANDOM, *controls)], "probe_eval", "clean"),
        "",
        equivalence(screen, "the default", "probe_eval"),
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
                    "Non-inferiority of the default (fine-tuned, margin "
                    f"{NONINFERIORITY_MARGIN:g} point):",
                    "",
                    noninferiority_lines(pool_runs, "accuracy", pool),
                    "",
                ]
        parts += [rank_correlation(summary["screen"], runs), ""]
    else:
        parts += ["No fine-tunes ran.", ""]
    parts += [
        "## Junk kept on the noisy pool (% of the subset, mean over seeds)",
        "",
        junk_share_table(screen, listed),
        "",
        "The default's junk per kind at every budget (counts, mean over seeds):",
        "",
        default_noise_table(screen),
        "",
        f"Every method's junk per kind at {PRIMARY_BUDGET:.0%} (counts, mean over seeds):",
        "",
        noise_table(screen, PRIMARY_BUDGET, listed),
        "",
        f"## What the {PRIMARY_BUDGET:.0%} subsets hold (clean pool, mean over seeds)",
        "",
        makeup_table(screen, PRIMARY_BUDGET, listed),
        "",
        "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()),
        "",
    ]
    return "\n".join(parts)


__all__ = ["comparisons", "markdown", "noninferior", "table", "with_default", "write_results"]
