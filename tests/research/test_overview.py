"""The experiment's overview across datasets (docs/results.md's tables): each cell against
the statistics computed directly from the rows it summarises."""

import numpy as np
import pytest

from euds.research.overview import overview
from euds.research.stats import mde, paired

SEEDS = range(10)
BUDGETS = (0.02, 0.05, 0.16)
CHOICE = {
    "by_budget": {"0.02": "typical", "0.05": "typical", "0.16": "coverage"},
    "worst_dev_gain": {
        "0.02": {"typical": 0.3},
        "0.05": {"typical": 0.4, "coverage": 0.1},
        "0.16": {"coverage": -0.1},
    },
    "rule": "maximin",
    "datasets": ["a", "b"],
    "pools": ["clean", "noisy"],
}


def _gain(name, pool, method, budget, seed):
    """Accuracy gain over random in [0, 1]: typical +2 points on dataset a (spread 1 point),
    -1 point on b; coverage 0 +- 0.05 everywhere."""
    if method == "typical":
        return (0.02 if name == "a" else -0.01) + 0.01 * (seed % 2 - 0.5)
    if method == "coverage":
        return 0.0005 * (seed % 2 - 0.5)
    return 0.0


def _summary(name):
    screen = []
    for seed in SEEDS:
        for pool in ("clean", "noisy"):
            for budget in BUDGETS:
                for method, junk in (("random", 0.2), ("typical", 0.04), ("coverage", 0.1)):
                    row = {
                        "pool": pool,
                        "seed": seed,
                        "budget": budget,
                        "method": method,
                        "probe_dev": 0.7,
                        "probe_eval": 0.7 + 0.001 * seed + _gain(name, pool, method, budget, seed),
                    }
                    if pool == "noisy":
                        row["junk_share"] = junk + {0.02: 0.01, 0.05: 0.0, 0.16: 0.02}[budget]
                    screen.append(row)
    finetune = [
        {
            "pool": "clean",
            "seed": seed,
            "budget": 0.05,
            "method": method,
            "accuracy": 0.5
            + 0.003 * seed
            + (0.03 + 0.01 * (seed % 3) if method == "default" else 0),
            "steps": 100,
        }
        for seed in SEEDS
        for method in ("default", "random")
    ]
    return {"name": name, "default": CHOICE, "screen": screen, "finetune": finetune}


@pytest.fixture(scope="module")
def text():
    return overview([_summary("a"), _summary("b")])


def _row(text, heading, first):
    section = text.split(heading, 1)[1]
    return next(line for line in section.splitlines() if line.startswith(f"| {first} |"))


def _signed(x):
    return f"{x:+.1f}".replace("-", "\u2212")


def test_the_probe_cells_are_the_default_candidates_paired_differences(text):
    line = _row(text, "## Linear probe", "5%")
    header = _row(text, "## Linear probe", "budget")
    assert header == "| budget | a clean | a noisy | b clean | b noisy |"
    d_a = [100 * _gain("a", "clean", "typical", 0.05, s) for s in SEEDS]
    ci = paired(d_a)
    cells = line.strip("|").split("|")[1:]
    expected = f"{_signed(ci.mean)} [{_signed(ci.lo)}, {_signed(ci.hi)}]; {mde(d_a):.1f}"
    assert cells[0].strip() == f"**{expected}**"  # typical's Holm p is far below .05 on a
    d_b = [100 * _gain("b", "clean", "typical", 0.05, s) for s in SEEDS]
    assert cells[2].strip().startswith("**\u22121.0 [")  # typical loses on b, significantly
    assert paired(d_b).hi < 0
    # At 16% the default stands for coverage, a null effect: no bold.
    assert "**" not in _row(text, "## Linear probe", "16%")


def test_noninferiority_is_judged_against_the_half_point_margin(text):
    line = _row(text, "## Non-inferiority", "5%")
    a, b = (c.strip() for c in line.strip("|").split("|")[1:])
    lo_a = paired([100 * _gain("a", "clean", "typical", 0.05, s) for s in SEEDS], 0.90).lo
    assert a == f"shown ({_signed(lo_a)})"
    assert b.startswith("not shown (\u2212")  # a point under random is not within 0.5
    assert _row(text, "## Non-inferiority", "16%").count("| shown (") == 2


def test_the_junk_table_gives_the_primary_budget_and_the_range_below(text):
    assert _row(text, "## Junk kept", "method") == ("| method | a 16% | b 16% | a ≤5% | b ≤5% |")
    assert (
        _row(text, "## Junk kept", "random") == "| random | 22.0 | 22.0 | 20.0–21.0 | 20.0–21.0 |"
    )
    # The default is typical at 2 and 5% (4% junk) and coverage at 16% (10%).
    assert _row(text, "## Junk kept", "default") == "| default | 12.0 | 12.0 | 4.0–5.0 | 4.0–5.0 |"
    assert "| target |" not in text  # a method no row has is left out


def test_the_fine_tuned_rows_give_seeds_updates_means_and_the_interval(text):
    line = _row(text, "## Fine-tuned", "a")
    d = [100 * (0.03 + 0.01 * (s % 3)) for s in SEEDS]
    ci = paired(d)
    base = 100 * np.mean([0.5 + 0.003 * s for s in SEEDS])
    tuned = 100 * np.mean([0.5 + 0.003 * s + 0.03 + 0.01 * (s % 3) for s in SEEDS])
    assert line.startswith(f"| a | 5% | 10 | 100 | {tuned:.1f} | {base:.1f} | **")
    assert f"{_signed(ci.mean)} [{_signed(ci.lo)}, {_signed(ci.hi)}]" in line
    assert f"| {mde(d):.1f} | shown (" in line


def test_without_fine_tunes_the_overview_says_so():
    summaries = [{**_summary("a"), "finetune": []}]
    assert "No fine-tunes ran." in overview(summaries)


def test_the_choice_table_gives_each_budget_its_default_and_runner_up(text):
    assert (
        _row(text, "budget | default | worst", "5%")
        == "| 5% | typical | +0.40 | coverage | +0.10 |"
    )
    assert _row(text, "budget | default | worst", "16%") == "| 16% | coverage | \u22120.10 |  |  |"
