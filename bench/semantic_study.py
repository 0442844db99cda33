"""The study behind the semantic defaults (K, temperature): is SE spread out, or degenerate?

For each pool (the float16 embeddings kept in a score directory) and each K x tau, fits
spherical k-means (seed 1234, at most 256 K training points), assigns every text and looks at
the distribution of SE / ln m (m = min(K, 32)): its spread (standard deviation, interquartile
range) and the shares piled up near 0 (< 0.05) or near the maximum (> 0.95). A good setting
spreads the texts across the range with little mass at either end.

    python bench/semantic_study.py --scores sst2=out/sst2/scores --scores 20ng=out/20ng/scores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import ROOT, table, write_result
from euds.scores import ScoreDir
from euds.signals.semantic import fit_centroids, semantic_entropy, top_similarities

KS = (8, 16, 32, 64)
TAUS = (0.02, 0.03, 0.05, 0.07, 0.1, 0.2)


def load_embeddings(path: Path) -> np.ndarray:
    sd = ScoreDir(path)
    parts = [np.asarray(sd.embeddings(s), dtype=np.float32) for s in sd.shards()]
    emb = np.concatenate(parts)
    return emb[~np.isnan(emb[:, 0])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scores", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "semantic_study.md")
    args = p.parse_args()
    rows = []
    payload = {}
    for item in args.scores:
        name, _, folder = item.partition("=")
        emb = load_embeddings(Path(folder))
        for k in KS:
            centroids = fit_centroids(emb, k)
            m = min(k, 32)
            sims = top_similarities(emb, centroids, m)
            for tau in TAUS:
                se = semantic_entropy(sims, tau) / np.log(m)
                q1, q3 = np.percentile(se, [25, 75])
                stats = {
                    "n": len(se),
                    "mean": float(se.mean()),
                    "sd": float(se.std()),
                    "iqr": float(q3 - q1),
                    "near_0": float((se < 0.05).mean()),
                    "near_max": float((se > 0.95).mean()),
                }
                payload[f"{name}/K={k}/tau={tau}"] = stats
                rows.append(
                    [
                        name,
                        k,
                        tau,
                        stats["mean"],
                        stats["sd"],
                        stats["iqr"],
                        stats["near_0"],
                        stats["near_max"],
                    ]
                )
    header = ["pool", "K", "tau", "mean SE/ln m", "sd", "IQR", "share < 0.05", "share > 0.95"]
    text = table(rows, header)
    print(text)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r[0]), str(r[1]), str(r[2]), *(f"{x:.3f}" for x in r[3:6])]
        cells += [f"{r[6]:.1%}", f"{r[7]:.1%}"]
        md.append("| " + " | ".join(cells) + " |")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(md) + "\n")
    print(f"wrote {args.markdown}")
    write_result("semantic_study", {"grid": payload})


if __name__ == "__main__":
    main()
