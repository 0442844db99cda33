"""docs/results.md shows the experiment's tables as the runner wrote them: every table of the
committed overview (docs/results/overview.md, the runner's ``overview.md``) appears in the
page verbatim, so that no figure on the page is retyped by hand; and README's first screen
quotes only intervals the committed tables hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from euds.research.report import signed

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
FRESH_RULES = sorted(RESULTS.glob("fresh_rule*.json"))  # each run of experiments/fresh_rule.py


def tables(text: str) -> list[str]:
    """Each run of consecutive lines that start with ``|``, joined."""
    out: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        row = line.startswith("|")
        if row and not previous:
            out.append([])
        if row:
            out[-1].append(line.rstrip())
        previous = row
    return ["\n".join(t) for t in out]


def interval(e: dict) -> str:
    """A results file's ``{"mean", "ci"}`` as README writes it: ``+x [lo, hi]``."""
    return f"\n{signed(e['mean'])} [{signed(e['ci'][0])}, {signed(e['ci'][1])}]"


def test_the_overview_has_the_tables_the_page_shows() -> None:
    found = tables((RESULTS / "overview.md").read_text())
    # the choice, the probe, non-inferiority, junk and the fine-tuned rows
    assert len(found) == 5


def test_every_overview_table_appears_in_the_page_verbatim() -> None:
    page = set(tables((ROOT / "docs" / "results.md").read_text()))
    overview = tables((RESULTS / "overview.md").read_text())
    missing = [t.splitlines()[0] for t in overview if t not in page]
    assert not missing, f"docs/results.md lacks the overview's tables headed {missing}"


def test_every_interval_on_the_readme_first_screen_is_in_the_committed_tables() -> None:
    """README's "What the selection does" quotes the runner's numbers; each "+x [lo, hi]" it
    gives must be one that the overview, a dataset's full tables (results/NAME_results.md,
    which print '-' for '−'), experiments/confirm_clean.py's, finetune_cell.py's (both files),
    clean_cost.py's, fresh_rule.py's, keep_none.py's or target_tails.py's cells hold, so that
    the first screen cannot drift from the evidence."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What the selection does", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"[+−]\d+\.\d \[[+−]\d+\.\d, [+−]\d+\.\d\]", section)
    assert quoted, "README's results section quotes no interval"
    held = "\n".join(p.read_text() for p in sorted(RESULTS.glob("*.md"))).replace("-", "−")
    # and the cells of experiments/confirm_clean.py (the product default's own fine-tunes)
    for path in sorted(RESULTS.glob("*_confirm_clean.json")):
        for c in json.loads(path.read_text())["cells"]:
            held += f"\n{signed(c['difference'])} [{signed(c['low'])}, {signed(c['high'])}]"
    # and experiments/finetune_cell.py's (cells run later on the rule check's pools, of the
    # default and of candidates named by --method)
    named = [RESULTS / "finetune_cell.json", RESULTS / "finetune_recipe.json"]
    for c in [c for p in named if p.is_file() for c in json.loads(p.read_text())["cells"]]:
        if "difference" in c:
            d = c["difference"]
            held += interval(d)
    # and experiments/clean_cost.py's (each challenger against typical, eval probe)
    for path in sorted(RESULTS.glob("clean_cost*.json")):
        for c in json.loads(path.read_text())["cells"]:
            e = c["eval"]
            held += interval(e)
    # and experiments/fresh_rule.py's (each challenger against typical, and over random)
    for c in [c for p in FRESH_RULES for c in json.loads(p.read_text())["cells"]]:
        for e in [c["eval"], *c["eval_gain_over_random"].values()]:
            held += interval(e)
    # and the pair scripts' (keep_none.py, target_tails.py): each pair's eval difference, the
    # challenger over random
    pairs = [RESULTS / "keep_none.json", RESULTS / "target_tails.json"]
    for c in [c for p in pairs for c in json.loads(p.read_text())["cells"]]:
        for e in [c["eval"], c["challenger_over_random"]["eval"]]:
            held += interval(e)
    missing = [q for q in quoted if q not in held]
    assert not missing, f"README quotes intervals the committed tables lack: {missing}"


@pytest.mark.parametrize("name", ["finetune_cell", "finetune_recipe"])
def test_the_finetuned_cells_table_is_the_runners(name: str) -> None:
    """docs/results.md's table of experiments/finetune_cell.py's cells (the default's, and
    ``--method``'s in finetune_recipe.json) is the one the runner prints from the committed
    JSON (``finetune_cell.py --table``), not a retyped copy."""
    from euds.research.report import finetune_cells_table

    cells = json.loads((RESULTS / f"{name}.json").read_text())["cells"]
    expected = finetune_cells_table(cells)
    assert expected in tables((ROOT / "docs" / "results.md").read_text())


@pytest.mark.parametrize(
    "path", sorted(RESULTS.glob("clean_cost*.json")), ids=lambda p: p.name.removesuffix(".json")
)
def test_the_clean_cost_tables_are_the_runners(path: Path) -> None:
    """docs/results.md's table of each experiments/clean_cost.py results file (typical+clean,
    and each challenger of ``--challenger``) is the one the script prints from the committed
    JSON (``clean_cost.py --table --output FILE``)."""
    from euds.research.report import pair_cells_table

    data = json.loads(path.read_text())
    expected = pair_cells_table(data["cells"], *data["methods"])
    assert expected in tables((ROOT / "docs" / "results.md").read_text())


@pytest.mark.parametrize("path", FRESH_RULES, ids=lambda p: p.stem)
def test_the_fresh_rule_table_is_the_runners(path: Path) -> None:
    """docs/results.md's table of each run of experiments/fresh_rule.py (the rule on fresh
    seeds of all three datasets) is the one the script prints from the committed JSON
    (``--table``), and the decision the page states is the JSON's."""
    from euds.research.report import challenger_cells_table

    data = json.loads(path.read_text())
    page = (ROOT / "docs" / "results.md").read_text()
    assert challenger_cells_table(data["cells"], "typical") in tables(page)
    for budget, decision in data["by_budget"].items():
        assert f"The rule's choice at {float(budget):.0%}: `{decision['chosen']}`" in page


@pytest.mark.parametrize("path", FRESH_RULES, ids=lambda p: p.stem)
def test_the_fresh_rule_decision_is_the_rule_applied_to_its_cells(path: Path, monkeypatch) -> None:
    """Each committed decision is experiments/fresh_rule.py's rule applied to the committed
    cells (dev and junk only), with that run's challengers (the first run's three where the
    file names none); a challenger made to pass every check would be chosen."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    from fresh_rule import CHALLENGERS, decide

    data = json.loads(path.read_text())
    challengers = tuple(data.get("challengers", CHALLENGERS))
    budgets = [float(b) for b in data["by_budget"]]
    assert decide(data["cells"], budgets, challengers) == data["by_budget"]
    # the last challenger made the only one to pass part (a): it is chosen at every budget
    pick = challengers[-1]
    passing = [
        {**c, "dev": {**c["dev"], "noninferior_p": 0.0 if c["challenger"] == pick else 1.0}}
        for c in data["cells"]
    ]
    assert {d["chosen"] for d in decide(passing, budgets, challengers).values()} == {pick}
