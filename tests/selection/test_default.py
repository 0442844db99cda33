"""The default selection (a budget alone): the evidence's choice per budget, nearest on a log
scale; what it needs; and that it is what the experiment chose (docs/results/default_choice.json)
with the settings the experiment screened (euds.research.methods.CANDIDATES)."""

import json
from pathlib import Path

import numpy as np
import pytest

from euds.duplicates import near_duplicate_keys
from euds.selection import DEFAULT_CHOICE, DEFAULT_SPECS, default_choice, select

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_is_the_experiments_choice():
    chosen = json.loads((ROOT / "docs" / "results" / "default_choice.json").read_text())
    assert {str(b): name for b, name in DEFAULT_CHOICE} == chosen["by_budget"]


def test_the_default_has_the_screened_settings():
    from euds.research.methods import ALL, CANDIDATES

    for name, spec in DEFAULT_SPECS.items():
        screened = dict(CANDIDATES[name])
        # The experiment names every signal for the tails (all three were scored there); the
        # product drops the tails of every scored signal.
        assert screened.pop("signals", ALL) == ALL
        assert screened.pop("position", 0.0) == 0.0  # typical's default position
        assert screened == spec


@pytest.mark.parametrize(
    ("budget", "name"),
    [
        (0.001, "filter-random+clean"),
        (0.014, "filter-random+clean"),
        (0.015, "typical+clean"),
        (0.07, "typical+clean"),
        (0.12, "typical+clean"),
        (0.13, "typical+damaged"),
        (0.2, "typical+damaged"),
        (0.9, "typical+damaged"),
    ],
)
def test_a_budget_takes_the_choice_of_the_nearest_screened_budget(budget, name):
    assert default_choice(budget)[0] == name


def columns_and_embeddings(n=400, seed=0):
    rng = np.random.default_rng(seed)
    columns = {s: rng.normal(size=n) for s in ("information", "generative", "semantic")}
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    words = np.array([f"w{k:03d}" for k in range(500)])
    texts = [" ".join(rng.choice(words, size=12)) for _ in range(n)]
    texts[5] = " ".join(texts[7].split()[2:6])  # contained in another
    columns["near_keys"] = near_duplicate_keys(texts)
    return columns, x, texts


def test_below_the_switch_the_default_cleans_then_keeps_typical_members():
    columns, x, texts = columns_and_embeddings()
    sel = select(columns, budget=0.1, embeddings=x, texts=texts)
    assert sel.method == "typical" and sel.keep.sum() == 40
    assert sel.details["default"]["choice"] == "typical+clean"
    reasons = sel.counts["dropped_by_reason"]
    assert reasons["tail"] > 0 and reasons["contained_text"] >= 1
    assert sel.reason[5] == "contained_text"
    assert "near" in sel.duplicates and "contained" in sel.duplicates
    # The same as naming the settings.
    named = select(
        columns,
        budget=0.1,
        embeddings=x,
        texts=texts,
        method="typical",
        signals=["information", "generative", "semantic"],
        tails=(0.05, 0.95),
        drop_near_duplicates=True,
        drop_contained=True,
    )
    np.testing.assert_array_equal(sel.keep, named.keep)


def test_above_the_switch_the_default_drops_damaged_texts_then_keeps_typical_members():
    columns, x, texts = columns_and_embeddings()
    texts[9] = texts[9] + " caf\u00c3\u00a9"  # mojibake: UTF-8 read as Latin-1
    sel = select(columns, budget=0.2, embeddings=x, texts=texts)
    assert sel.details["default"]["choice"] == "typical+damaged"
    assert sel.reason[9] == "damaged_text" and sel.keep.sum() == 80
    assert set(sel.counts["dropped_by_reason"]) == {"damaged_text", "other_in_cluster"}
    assert sel.damaged["dropped"] == 1 and sel.damaged["by_kind"]["mojibake"] == 1
    # No tails and no copy rule but the exact one: the same as naming typical with the rule.
    named = select(
        columns, budget=0.2, embeddings=x, texts=texts, method="typical", drop_damaged=True
    )
    np.testing.assert_array_equal(sel.keep, named.keep)


def test_what_the_default_needs_is_named():
    columns, x, _ = columns_and_embeddings()
    with pytest.raises(ValueError, match=r"embeddings= .* and texts="):
        select(columns, budget=0.05)
    with pytest.raises(ValueError, match="texts="):
        select(columns, budget=0.05, embeddings=x)
    with pytest.raises(ValueError, match=r"embeddings= .* and texts="):
        select(columns, budget=0.3)
    with pytest.raises(ValueError, match="texts="):
        select(columns, budget=0.3, embeddings=x)
    # Naming a method or signals is never the default.
    assert select(columns, budget=0.3, signals=["generative"]).method == "single"
    # Scores without near-duplicate keys: the default goes without them and says so.
    del columns["near_keys"]
    texts = [f"t{i}" for i in range(len(x))]
    sel = select(columns, budget=0.05, embeddings=x, texts=texts)
    assert sel.duplicates["near"]["detected"] is False and sel.keep.sum() == 20


def test_at_one_percent_the_default_cleans_then_draws_uniformly_without_embeddings():
    columns, _, texts = columns_and_embeddings(n=1000)
    sel = select(columns, budget=0.01, texts=texts, seed=3)
    assert sel.method == "filter-random" and sel.keep.sum() == 10
    assert sel.details["default"]["choice"] == "filter-random+clean"
    reasons = sel.counts["dropped_by_reason"]
    assert reasons["tail"] > 0 and reasons["not_sampled"] > 0
    assert not sel.keep[5]  # contained in another text
    named = select(
        columns,
        budget=0.01,
        texts=texts,
        seed=3,
        method="filter-random",
        drop_near_duplicates=True,
        drop_contained=True,
    )
    assert np.array_equal(sel.keep, named.keep)
