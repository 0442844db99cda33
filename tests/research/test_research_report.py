"""euds.research.report's fine-tuned cells table (docs/results.md's): each row against the
statistics computed directly from the runs it summarises. (Named apart from tests/test_report.py,
which tests euds.report: the test folders are not packages.)"""

import numpy as np
from scipy import stats

from euds.research.report import finetune_cells_table, pair_cells_table


def _cell(dataset, pool, budget, gains, junk=None, finished=True):
    """A finished cell of experiments/finetune_cell.py: random at 0.60 on every seed, the
    default at 0.60 + gain (points / 100); on noisy pools, junk shares per method."""
    seeds = list(range(40, 40 + len(gains)))
    runs = []
    for seed, gain in zip(seeds, gains, strict=True):
        for method, acc in (("default", 0.6 + gain / 100), ("random", 0.6)):
            r = {"method": method, "seed": seed, "accuracy": acc, "steps": 120}
            if junk:
                r["junk_share"] = junk[method]
            runs.append(r)
    cell = {
        "dataset": dataset,
        "pool": pool,
        "budget": budget,
        "default": "typical",
        "seeds": seeds,
        "steps": [120],
        "runs": runs,
    }
    if finished:
        cell["difference"] = {"mean": float(np.mean(gains))}
    return cell


def _rows(text):
    return [line.split(" | ") for line in text.splitlines()[2:]]


def test_each_row_holds_the_paired_statistics_of_its_runs():
    gains = [1.0, 2.0, 0.5, 1.5, -0.2, 1.2, 0.8, 1.1, 0.9, 1.3]
    [row] = _rows(finetune_cells_table([_cell("sst2", "clean", 0.02, gains)]))
    d = np.array(gains)
    half = stats.t.ppf(0.975, 9) * d.std(ddof=1) / np.sqrt(10)
    lo, hi = d.mean() - half, d.mean() + half
    assert row[0] == "| SST-2 clean" and row[1] == "2%" and row[3] == "10 (40–49)"
    assert row[5:7] == [f"{60 + d.mean():.1f}", "60.0"]
    # its interval lies above 0: bold
    assert row[7] == f"**+{d.mean():.1f} [+{lo:.1f}, +{hi:.1f}]**"
    mde = (stats.t.ppf(0.975, 9) + stats.t.ppf(0.8, 9)) * d.std(ddof=1) / np.sqrt(10)
    assert row[8] == f"{mde:.1f}"
    bound = d.mean() - stats.t.ppf(0.95, 9) * d.std(ddof=1) / np.sqrt(10)
    assert row[9] == f"shown (+{bound:.2f})"
    assert row[10] == "9; −0.2 to +2.0"
    assert row[11] == "—"
    # one cell: Holm leaves its p as it is
    assert row[12] == f"{stats.ttest_1samp(d, 0).pvalue:.3f} |"


def test_a_loss_is_bold_and_not_non_inferior_and_noisy_rows_give_the_junk_kept():
    gains = [-1.0, -1.5, -0.8, -1.2, -2.0, -0.9, -1.1, -1.4, -0.7, -1.3]
    junk = {"default": 0.166, "random": 0.187}
    [row] = _rows(finetune_cells_table([_cell("trec", "noisy", 0.3, gains, junk)]))
    assert row[7].startswith("**−1.2 [") and row[7].endswith("]**")
    assert row[9].startswith("not shown (−")
    assert row[10] == "0; −2.0 to −0.7"
    assert row[11] == "16.6% / 18.7%"


def test_unfinished_cells_are_left_out_and_rows_are_ordered_by_pool_dataset_budget():
    flat = [0.5, -0.5, 0.3, -0.3]
    cells = [
        _cell("trec", "noisy", 0.05, flat, {"default": 0.0, "random": 0.2}),
        _cell("trec", "clean", 0.1, flat),
        _cell("sst2", "clean", 0.16, flat),
        _cell("20ng", "clean", 0.02, flat, finished=False),
        _cell("trec", "clean", 0.02, flat),
    ]
    rows = _rows(finetune_cells_table(cells))
    assert [(r[0], r[1]) for r in rows] == [
        ("| SST-2 clean", "16%"),
        ("| TREC clean", "2%"),
        ("| TREC clean", "10%"),
        ("| TREC noisy", "5%"),
    ]
    # not significant either way: not bold
    assert not rows[0][7].startswith("**")


def test_the_last_column_is_each_cells_p_holm_corrected_over_the_table():
    gains = {
        0.02: [1.0, 2.0, 0.5, 1.5, -0.2, 1.2, 0.8, 1.1, 0.9, 1.3],
        0.05: [0.4, -0.3, 0.9, 0.2, -0.6, 0.5, 0.1, 0.7, -0.2, 0.3],
        0.1: [-0.5, 0.5, -0.4, 0.4, 0.1, -0.1, 0.3, -0.3, 0.2, -0.2],
    }
    rows = _rows(finetune_cells_table([_cell("sst2", "clean", b, g) for b, g in gains.items()]))
    p = np.array([stats.ttest_1samp(g, 0).pvalue for g in gains.values()])
    order = np.argsort(p)
    # Holm by hand: the k-th smallest p times (m - k), kept monotone, capped at 1
    holm = np.minimum(1, np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1)))
    expected = np.empty_like(p)
    expected[order] = holm
    assert [r[12] for r in rows] == [f"{x:.3f} |" for x in expected]
    # the correction is over the table: the strongest cell's p is tripled
    assert float(rows[0][12].removesuffix(" |")) > p[0]


def test_a_named_candidates_cells_head_their_columns_method_not_default():
    gains = [0.5, -0.5, 0.3, -0.3]
    default = finetune_cells_table([_cell("trec", "clean", 0.3, gains)]).splitlines()[0]
    named = finetune_cells_table([{**_cell("trec", "clean", 0.3, gains), "named": True}])
    header = named.splitlines()[0]
    assert "default" not in header and "| method | seeds" in header
    assert "method − random" in header and "default − random" in default
    assert _rows(named) == _rows(finetune_cells_table([_cell("trec", "clean", 0.3, gains)]))


def _pair_cell(dataset, pool, budget, mean, lo, hi, junk=None):
    c = {
        "dataset": dataset,
        "pool": pool,
        "budget": budget,
        "eval": {"mean": mean, "ci": [lo, hi], "mde": 1.25},
    }
    if junk:
        c["junk_share"] = junk
    return c


def test_the_pair_table_puts_each_pool_in_its_column_and_bolds_what_excludes_0():
    junk = {"random": 0.18, "typical": 0.172, "typical+clean": 0.032}
    cells = [
        _pair_cell("trec", "noisy", 0.16, 2.5, 0.66, 4.4, junk),
        _pair_cell("trec", "clean", 0.16, -1.6, -2.6, -0.6),
        _pair_cell("sst2", "clean", 0.3, 0.2, -0.3, 0.7),
    ]
    rows = _rows(pair_cells_table(cells, "typical", "typical+clean"))
    assert rows[0] == ["| SST-2", "30%", "+0.2 [−0.3, +0.7]; 1.2", "—", "— |"]
    assert rows[1] == [
        "| TREC",
        "16%",
        "**−1.6 [−2.6, −0.6]**; 1.2",
        "**+2.5 [+0.7, +4.4]**; 1.2",
        "17.2% → 3.2% |",
    ]
