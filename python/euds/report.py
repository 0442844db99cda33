"""A self-contained HTML report of a score directory (and of a selection made from it).

One page, no external resources: per-signal histograms with the selected interval shaded,
pairwise scatter plots with Pearson and Spearman correlations, the kept / dropped counts by
reason, and example texts from the low, middle and high end of each signal. Plots are inline
SVG written here (no plotting library needed).

Example texts are read only from a file whose sha256 equals the one the score directory's
manifest recorded for its input (a completed run records it): the manifest names a path, and
anyone can write a manifest, so the path alone would let a report pull lines of any local file
into a page that gets shared. Without a match the report is written without example texts and
says why.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from euds._version import __version__
from euds.cache import sha256_file
from euds.provenance import now_iso
from euds.scores import ScoreDir

SIGNAL_COLUMNS = ("information", "generative", "nll", "bpb", "semantic")
# bpb is in bits, the rest in nats: the captions say which.
UNITS = {
    "information": "nats",
    "generative": "nats",
    "nll": "nats per token",
    "bpb": "bits per UTF-8 byte",
    "semantic": "nats",
}
COLORS = {"kept": "#1f77b4", "dropped": "#c7c7c7", "band": "rgba(31,119,180,0.15)"}


def write_report(
    scores_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    selection_manifest: str | os.PathLike[str] | None = None,
    input_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    examples: int = 3,
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """Writes the report to ``output`` (atomically, marked as euds's) and returns its path.

    ``output`` never replaces the scores, the scored input, the selection's files or anything
    inside a score directory, and replaces an existing file only when it is a report euds
    wrote and nobody changed since, or with ``overwrite`` (:mod:`euds.output`). A selection
    manifest must be one ``euds select`` wrote for this score directory's input."""
    from euds.output import Protected, check_output, write_marked
    from euds.subset import read_selection_manifest

    sd = ScoreDir(Path(scores_dir))
    manifest = sd.manifest()
    sd.check_intact(manifest)
    recorded = manifest.get("input", {})
    protected = Protected.of(
        inputs=[recorded.get("path"), input_path, selection_manifest], score_dirs=[sd.path]
    )
    check_output(output, protected, overwrite=overwrite)
    table = sd.read()
    signals = [c for c in SIGNAL_COLUMNS if c in table.column_names]
    values = {s: np.asarray(table.column(s), dtype=np.float64) for s in signals}
    n = table.num_rows

    keep = None
    selection: dict[str, Any] = {}
    if selection_manifest is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sel_manifest, decisions = read_selection_manifest(selection_manifest)
        if recorded.get("sha256") != sel_manifest["input"]["sha256"]:
            raise ValueError(
                f"{selection_manifest} is a selection of another input than the one "
                f"{sd.path} scored (their sha256 differ)"
            )
        selection = sel_manifest["selection"]
        try:
            dec = pq.read_table(decisions, columns=["kept", "reason"])
        except (OSError, pa.ArrowException) as e:
            raise ValueError(f"{decisions} (named by {selection_manifest}): {e}") from None
        keep = np.asarray(dec.column("kept"), dtype=bool)
        if len(keep) != n:
            raise ValueError(f"{decisions} has {len(keep)} rows, the scores {n}")
        protected = Protected.of(
            inputs=[recorded.get("path"), input_path, selection_manifest, decisions],
            score_dirs=[sd.path],
        )
        check_output(output, protected, overwrite=overwrite)

    rng = np.random.default_rng(seed)
    example_rows = _example_rows(values, examples)
    wanted = {r for by_end in example_rows.values() for rows in by_end.values() for r in rows}
    texts: dict[int, str] = {}
    source, no_texts = _scored_input(manifest, input_path) if wanted else (None, None)
    if source is not None:
        texts = _texts_at(source, manifest, sorted(wanted))
    ids = table.column("id").to_pylist()

    parts = [_header(manifest, n, selection, keep)]
    parts.append("<h2>Distributions</h2><div class='grid'>")
    for s in signals:
        band = _band(selection, s)
        parts.append(_histogram(s, values[s], keep, band))
    parts.append("</div>")
    if len(signals) > 1:
        parts.append("<h2>Pairs</h2><div class='grid'>")
        sample = rng.choice(n, size=min(n, max_points), replace=False) if n else np.zeros(0, int)
        for i, a in enumerate(signals):
            for b in signals[i + 1 :]:
                parts.append(_scatter(a, b, values[a], values[b], keep, sample))
        parts.append("</div>")
    parts.append("<h2>Examples</h2>")
    if no_texts:
        parts.append(f"<p class='note'>Shown without example texts: {html.escape(no_texts)}.</p>")
    for s in signals:
        parts.append(_examples(s, values[s], example_rows[s], texts, ids, keep))
    page = _page("".join(parts))
    return write_marked(Path(output), page.encode("utf-8"), protected, overwrite=overwrite)


# -- pieces ----------------------------------------------------------------------------------


def _header(manifest: dict[str, Any], n: int, selection: dict[str, Any], keep) -> str:
    config = manifest.get("config", {})
    rows = [
        ("input", manifest.get("input", {}).get("path")),
        ("records", f"{n:,}"),
        ("signals", ", ".join(config.get("signals", []))),
        ("scored", manifest.get("finished") or manifest.get("created")),
    ]
    if "semantic" in manifest:
        sem = manifest["semantic"]
        rows.append(
            ("semantic", f"K={sem['k']}, m={sem['m']}, τ={sem['temperature']}, seed={sem['seed']}")
        )
    out = ["<h1>euds report</h1><table class='kv'>"]
    out += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows]
    out.append("</table>")
    if selection:
        counts = selection["counts"]
        share = 100.0 * counts["kept"] / max(counts["input"], 1)
        reasons = ", ".join(f"{k}: {v:,}" for k, v in counts["dropped_by_reason"].items()) or "—"
        how = (
            f"budget {selection['budget']:.2%} at position {selection['position']}"
            if selection.get("budget") is not None
            else "intervals " + json.dumps(selection.get("intervals"))
        )
        out.append(
            "<h2>Selection</h2><table class='kv'>"
            f"<tr><th>method</th><td>{html.escape(selection['method'])} on "
            f"{html.escape(', '.join(selection['signals']))} ({html.escape(how)})</td></tr>"
            f"<tr><th>kept</th><td><b>{counts['kept']:,}</b> of {counts['input']:,} "
            f"({share:.2f}%)</td></tr>"
            f"<tr><th>dropped</th><td>{counts['dropped']:,} ({html.escape(reasons)})</td></tr>"
            f"<tr><th>check</th><td>kept + dropped = {counts['kept'] + counts['dropped']:,} "
            "= input</td></tr>"
            "</table>"
        )
    return "".join(out)


def _band(selection: dict[str, Any], signal: str) -> tuple[float, float] | None:
    """The value interval of a signal's band (single / intersect); mean-rank selects on the
    combined rank, which has no band on any one signal."""
    entry = selection.get("intervals", {}).get(signal, {}) if selection else {}
    if "lo" in entry and "hi" in entry:
        return float(entry["lo"]), float(entry["hi"])
    return None


def _histogram(name: str, v: np.ndarray, keep, band, bins: int = 40) -> str:
    w, h, pad = 420, 220, 44
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return f"<figure><figcaption>{name}: no finite values</figcaption></figure>"
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    total, _ = np.histogram(finite, edges)
    kept = np.histogram(v[np.isfinite(v) & keep], edges)[0] if keep is not None else None
    top = max(int(total.max()), 1)
    sx = (w - 2 * pad) / (hi - lo)
    sy = (h - 2 * pad) / top
    out = [f"<figure><svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img'>"]
    if band is not None:
        x0 = pad + (max(band[0], lo) - lo) * sx
        x1 = pad + (min(band[1], hi) - lo) * sx
        out.append(_rect(x0, pad, max(x1 - x0, 1), h - 2 * pad, COLORS["band"]))
    for i in range(bins):
        x = pad + (edges[i] - lo) * sx
        bw = max((edges[i + 1] - edges[i]) * sx - 1, 1)
        th = total[i] * sy
        out.append(
            _rect(x, h - pad - th, bw, th, COLORS["dropped" if kept is not None else "kept"])
        )
        if kept is not None and kept[i]:
            kh = kept[i] * sy
            out.append(_rect(x, h - pad - kh, bw, kh, COLORS["kept"]))
    out.append(_axes(w, h, pad, lo, hi, top))
    out.append("</svg>")
    nan = int(np.isnan(v).sum())
    stats = f"mean {finite.mean():.3f}, sd {finite.std():.3f}, median {np.median(finite):.3f}"
    legend = ""
    if keep is not None:
        legend = " · blue: kept, grey: dropped" + (", shaded: the band" if band is not None else "")
    unit = f" ({UNITS[name]})" if name in UNITS else ""
    out.append(
        f"<figcaption><b>{name}</b>{unit} — {stats}; NaN {nan:,}{legend}</figcaption></figure>"
    )
    return "".join(out)


def _rect(x: float, y: float, width: float, height: float, fill: str) -> str:
    return (
        f"<rect x='{x:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height:.1f}' fill='{fill}'/>"
    )


def _scatter(a: str, b: str, va: np.ndarray, vb: np.ndarray, keep, sample: np.ndarray) -> str:
    w, h, pad = 340, 320, 44
    ok = np.isfinite(va) & np.isfinite(vb)
    if ok.sum() < 3:
        return f"<figure><figcaption>{a} vs {b}: too few values</figcaption></figure>"
    pearson = float(np.corrcoef(va[ok], vb[ok])[0, 1])
    spearman = float(np.corrcoef(_ranks(va[ok]), _ranks(vb[ok]))[0, 1])
    pts = sample[ok[sample]]
    ax0, ax1 = float(va[ok].min()), float(va[ok].max())
    ay0, ay1 = float(vb[ok].min()), float(vb[ok].max())
    ax1 = ax1 if ax1 > ax0 else ax0 + 1
    ay1 = ay1 if ay1 > ay0 else ay0 + 1
    sx, sy = (w - 2 * pad) / (ax1 - ax0), (h - 2 * pad) / (ay1 - ay0)
    out = [f"<figure><svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img'>"]
    for i in pts:
        color = COLORS["kept"] if keep is None or keep[i] else COLORS["dropped"]
        x = pad + (va[i] - ax0) * sx
        y = h - pad - (vb[i] - ay0) * sy
        out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='1.6' fill='{color}'/>")
    out.append(_axes(w, h, pad, ax0, ax1, None, y_range=(ay0, ay1)))
    out.append("</svg>")
    out.append(
        f"<figcaption><b>{a}</b> (x) vs <b>{b}</b> (y): Pearson {pearson:.3f}, "
        f"Spearman {spearman:.3f} ({len(pts):,} points shown)</figcaption></figure>"
    )
    return "".join(out)


def axis_label(value: float) -> str:
    """A number as an axis reads it: 66k or 1.2M for large counts (never 66e+03), three
    significant digits otherwise."""
    a = abs(value)
    if a and a < 1e-3:
        return f"{value:.1e}"
    for size, suffix in ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")):
        text = f"{value / size:.3g}"
        if "e" not in text:  # 999,999 rounds to 1e+03 thousands: the next unit says 1M
            return text + suffix
    return f"{value / 1e12:.3g}T"


def _axes(w, h, pad, x0, x1, top, y_range=None) -> str:
    y_lo, y_hi = y_range if y_range else (0, top)
    x0, x1, y_lo, y_hi = (axis_label(v) for v in (x0, x1, y_lo, y_hi))
    return (
        f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#444'/>"
        f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#444'/>"
        f"<text x='{pad}' y='{h - pad + 14}' font-size='10'>{x0}</text>"
        f"<text x='{w - pad}' y='{h - pad + 14}' font-size='10' text-anchor='end'>{x1}</text>"
        f"<text x='{pad - 4}' y='{h - pad}' font-size='10' text-anchor='end'>{y_lo}</text>"
        f"<text x='{pad - 4}' y='{pad + 8}' font-size='10' text-anchor='end'>{y_hi}</text>"
    )


def _example_rows(values: dict[str, np.ndarray], k: int) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for s, v in values.items():
        order = np.flatnonzero(np.isfinite(v))
        order = order[np.argsort(v[order], kind="stable")]
        mid = len(order) // 2
        out[s] = {
            "low": order[:k].tolist(),
            "middle": order[max(0, mid - k // 2) : max(0, mid - k // 2) + k].tolist(),
            "high": order[-k:][::-1].tolist() if len(order) else [],
        }
    return out


def _examples(name, v, rows, texts, ids, keep) -> str:
    head = f"<tr><th></th><th>id</th><th>{name}</th><th>text</th></tr>"
    out = [f"<h3>{name}</h3><table class='ex'>{head}"]
    for where in ("low", "middle", "high"):
        for r in rows[where]:
            text = texts.get(r, "")
            short = text if len(text) <= 400 else text[:400] + " …"
            mark = "" if keep is None else (" ✓" if keep[r] else "")
            out.append(
                f"<tr><td>{where}{mark}</td><td>{html.escape(str(ids[r]))}</td><td>{v[r]:.3f}</td>"
                f"<td>{html.escape(short)}</td></tr>"
            )
    out.append("</table>")
    return "".join(out)


def _scored_input(
    manifest: dict[str, Any], input_path: str | os.PathLike[str] | None
) -> tuple[Path | None, str | None]:
    """The input to read example texts from, or None and the reason there is none: the file
    (the manifest's, or ``input_path`` when the user says it moved) must have the sha256 that
    the manifest recorded for the scored input."""
    recorded = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
    sha = recorded.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64):
        return None, "the score directory records no sha256 of its input (an unfinished run?)"
    named = input_path if input_path is not None else recorded.get("path")
    if not isinstance(named, (str, os.PathLike)):
        return None, "the score directory names no input file"
    path = Path(named)
    if not path.is_file():
        return None, f"the input {path} is not found (give its new place with --input)"
    size = recorded.get("size")
    # A size that differs settles it without reading the file.
    if (isinstance(size, int) and path.stat().st_size != size) or sha256_file(path) != sha:
        return None, f"{path} is not the scored input (its sha256 differs from the manifest's)"
    return path, None


def _texts_at(path: Path, manifest: dict[str, Any], rows: list[int]) -> dict[int, str]:
    """The texts of the given rows, read from the input (a single streaming pass); the caller
    has checked that ``path`` is the scored input (:func:`_scored_input`)."""
    from euds.io import RecordReader

    if not rows or not path.is_file():
        return {}
    config = manifest.get("config", {})
    wanted = set(rows)
    found: dict[int, str] = {}
    reader = RecordReader(
        path,
        text_field=config.get("text_field", "text"),
        id_field=config.get("id_field", "id"),
        format=config.get("format"),
    )
    last = max(wanted)
    for batch in reader:
        for offset, text in enumerate(batch.texts):
            row = batch.start + offset
            if row in wanted:
                found[row] = text if text is not None else "(no text)"
        if batch.start + len(batch) > last:
            break
    return found


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)


def _page(body: str) -> str:
    created = now_iso()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>euds report</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 18px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; max-width: 420px; }}
table.kv th {{ text-align: left; padding-right: 14px; font-weight: 600; }}
table.ex {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
table.ex td, table.ex th {{ border-bottom: 1px solid #eee; padding: 3px 6px; vertical-align: top; }}
table.ex td:nth-child(4) {{ white-space: pre-wrap; }}
p.note {{ color: #666; }}
</style></head><body>
{body}
<p style="color:#888;font-size:12px">euds {__version__} · {created}</p>
</body></html>
"""
