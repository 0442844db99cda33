"""Rendering an experiment's summary (:func:`euds.experiment.run_experiment`): a Markdown table
of the metric per method and budget (mean ± std over seeds) and an SVG plot of the metric
against the share of data kept. Like :mod:`euds.report`, inline SVG written here."""

from __future__ import annotations

from typing import Any

import numpy as np


def _metric_names(summary: dict[str, Any]) -> tuple[str, str]:
    return (
        ("accuracy", "macro_f1") if summary["task"] == "classification" else ("f1", "exact_match")
    )


def _methods(summary: dict[str, Any], agg: dict[tuple[str, float], Any]) -> list[str]:
    """The methods that ran, in the experiment's order (first appearance in older summaries)."""
    ran = list(dict.fromkeys(method for method, _ in agg))
    order = summary.get("methods") or ran
    return [m for m in order if m in ran]


def aggregate(summary: dict[str, Any]) -> dict[tuple[str, float], dict[str, float]]:
    main, second = _metric_names(summary)
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in summary["runs"]:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        a = np.array([r[main] for r in rs], dtype=float)
        b = np.array([r[second] for r in rs], dtype=float)
        out[key] = {
            "mean": float(a.mean()),
            "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "mean2": float(b.mean()),
            "std2": float(b.std(ddof=1)) if len(b) > 1 else 0.0,
            "n": len(rs),
            "records": int(np.mean([r["records"] for r in rs])),
        }
    return out


def markdown_table(summary: dict[str, Any]) -> str:
    main, second = _metric_names(summary)
    agg = aggregate(summary)
    budgets = sorted({b for (_, b) in agg if b < 1.0})
    methods = _methods(summary, agg)
    scale = 100.0 if summary["task"] == "classification" else 1.0
    header = "| method | " + " | ".join(f"{b:.0%}" for b in budgets) + " | 100% |"
    lines = [
        f"{main} (mean ± std over seeds, x100 for classification); pool {summary['pool']:,}",
        "",
        header,
    ]
    lines.append("|---|" + "---|" * (len(budgets) + 1))
    full = agg.get(("full", 1.0))
    for m in methods:
        cells = []
        for b in budgets:
            v = agg.get((m, b))
            cells.append(f"{scale * v['mean']:.2f} ± {scale * v['std']:.2f}" if v else "")
        cells.append(
            f"{scale * full['mean']:.2f} ± {scale * full['std']:.2f}"
            if m == "full" and full
            else ""
        )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"{second} (mean over seeds)", "", header, "|---|" + "---|" * (len(budgets) + 1)]
    for m in methods:
        cells = [f"{scale * agg[(m, b)]['mean2']:.2f}" if (m, b) in agg else "" for b in budgets]
        cells.append(f"{scale * full['mean2']:.2f}" if m == "full" and full else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if summary.get("tuned"):
        lines += ["", "Automatic interval (proxy's choice per budget):", ""]
        for b, t in summary["tuned"].items():
            lines.append(
                f"- {float(b):.0%}: {t['method']} at position {t['position']} "
                f"(dev probe accuracy {t['dev_accuracy']:.3f}, {t['seconds']:.1f} s)"
            )
    return "\n".join(lines) + "\n"


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='11'>{text}</text>"


def svg_plot(summary: dict[str, Any]) -> str:
    """Metric vs share of data kept, one line per method, error bars = std over seeds."""
    main, _ = _metric_names(summary)
    agg = aggregate(summary)
    budgets = sorted({b for (_, b) in agg})
    values = [v["mean"] for v in agg.values()]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.15 or 0.01
    lo, hi = lo - pad, hi + pad
    w, h, m = 720, 400, 70
    colors = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
    ]

    def x(b: float) -> float:
        return m + (b - budgets[0]) / max(budgets[-1] - budgets[0], 1e-9) * (w - 2 * m)

    def y(v: float) -> float:
        return h - m - (v - lo) / (hi - lo) * (h - 2 * m)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {w} {h}' width='{w}' height='{h}'>"
    ]
    title = f"{summary['name']}: {main} vs data kept"
    parts.append(f"<text x='{w / 2}' y='20' text-anchor='middle' font-size='14'>{title}</text>")
    parts.append(f"<line x1='{m}' y1='{h - m}' x2='{w - m}' y2='{h - m}' stroke='#333'/>")
    parts.append(f"<line x1='{m}' y1='{m}' x2='{m}' y2='{h - m}' stroke='#333'/>")
    for b in budgets:
        parts.append(_label(x(b), h - m + 16, f"{b:.0%}", "middle"))
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(_label(m - 6, y(v) + 4, f"{v:.3f}", "end"))
    legend_y = m
    for i, method in enumerate(_methods(summary, agg)):
        color = colors[i % len(colors)]
        pts = sorted((b, agg[(method, b)]) for (mm, b) in agg if mm == method)
        if method == "full":
            v = pts[0][1]["mean"]
            style = f"stroke='{color}' stroke-dasharray='5,4'"
            parts.append(f"<line x1='{m}' y1='{y(v):.1f}' x2='{w - m}' y2='{y(v):.1f}' {style}/>")
        else:
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{x(b):.1f},{y(s['mean']):.1f}"
                for j, (b, s) in enumerate(pts)
            )
            parts.append(f"<path d='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
            for b, s in pts:
                parts.append(
                    f"<line x1='{x(b):.1f}' y1='{y(s['mean'] - s['std']):.1f}' x2='{x(b):.1f}' "
                    f"y2='{y(s['mean'] + s['std']):.1f}' stroke='{color}'/>"
                )
                parts.append(
                    f"<circle cx='{x(b):.1f}' cy='{y(s['mean']):.1f}' r='3' fill='{color}'/>"
                )
        parts.append(
            f"<text x='{w - m + 4}' y='{legend_y}' font-size='11' fill='{color}'>{method}</text>"
        )
        legend_y += 15
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
