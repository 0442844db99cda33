"""The selection experiment: pools per seed, every method's exact counts, the baselines, the
statistics' inputs, the default chosen on dev only, fine-tune confirmation, caching."""

import json

import numpy as np
import pytest

from euds import experiment
from euds.experiment import (
    AUTO,
    BASELINES,
    BEST_RANDOM,
    CANDIDATES,
    DEDUP,
    LENGTH_MATCHED,
    STEP_MATCHED,
    ExperimentConfig,
    Pool,
    choose,
    choose_default,
    length_deciles,
    length_matched,
    subset_stats,
)
from euds.experiment_report import _choice_pools, comparisons, p_text
from euds.noise import KINDS


def _toml(tmp_path, data_dir, tiny_lm, embedder, **extra):
    lines = {
        "name": '"tiny"',
        "train": f'"{data_dir / "sst2" / "train.jsonl.gz"}"',
        "eval": f'"{data_dir / "sst2" / "dev.jsonl.gz"}"',
        "output": f'"{tmp_path / "out"}"',
        "dev_size": "120",
        "superset": "300",
        "pool_size": "200",
        "eval_size": "100",
        "budgets": "[0.1, 0.3]",
        "seeds": "[0, 1]",
        **extra,
    }
    body = "\n".join(f"{k} = {v}" for k, v in lines.items())
    body += f"""

[finetune]
epochs = 1
min_steps = 0
batch_size = 16
max_length = 32
device = "cpu"

[score]
k = 4
model = "{tiny_lm.folder}"
embedder = "{embedder.folder}"
batch_size = 64
shard_size = 128

[[confirm]]
methods = ["default", "random"]
budgets = [0.3]
pools = ["clean", "noisy"]

[[confirm]]
methods = ["full", "default"]
budgets = [0.3]
steps = "full"
"""
    path = tmp_path / "tiny.toml"
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory, data_dir, tiny_lm, embedder):
    tmp_path = tmp_path_factory.mktemp("experiment")
    config = ExperimentConfig.from_toml(_toml(tmp_path, data_dir, tiny_lm, embedder))
    (summary,) = experiment.run_experiments([config])
    return config, summary, tmp_path / "out"


def test_every_method_keeps_exactly_the_budget_on_every_pool(ran):
    config, summary, _ = ran
    rows = summary["screen"]
    methods = {
        *BASELINES,
        *CANDIDATES,
        *(m + LENGTH_MATCHED for m in CANDIDATES),
        AUTO,
        BEST_RANDOM,
        *(m + DEDUP for m in ("random", *CANDIDATES)),
    }
    for seed in config.seeds:
        for pool, n in (("clean", 200), ("noisy", 250)):
            for budget in config.budgets:
                cell = [
                    r for r in rows if (r["seed"], r["pool"], r["budget"]) == (seed, pool, budget)
                ]
                assert {r["method"] for r in cell} == methods
                assert {r["records"] for r in cell} == {round(budget * n)}
            full = [r for r in rows if (r["seed"], r["pool"], r["method"]) == (seed, pool, "full")]
            assert [r["records"] for r in full] == [n]
    noisy = [r for r in rows if r["pool"] == "noisy"]
    assert all("junk_share" in r and set(r["junk_kept"]) <= set(KINDS) for r in noisy)
    full_noisy = [r for r in noisy if r["method"] == "full"]
    assert all(r["junk_share"] == pytest.approx(0.2, abs=0.01) for r in full_noisy)

    # Near-duplicate removal keeps fewer near duplicates than the methods without it.
    def near_kept(names: set[str]) -> int:
        return sum(r["junk_kept"].get("near_duplicate", 0) for r in noisy if r["method"] in names)

    bases = {"random", *CANDIDATES}
    assert near_kept({m + DEDUP for m in bases}) < near_kept(bases)
    auto = [r for r in rows if r["method"] == AUTO]
    assert all(len(r["tuned"]["trials"]) == 25 for r in auto)
    assert all(len(r["trials"]) == 25 for r in rows if r["method"] == BEST_RANDOM)


def test_pools_vary_with_the_seed_and_random_differs_from_the_bands(ran):
    config, _summary, out = ran
    prepared = experiment.prepare_data(config)
    a = experiment.pool_rows(len(prepared.superset), 200, 0)
    b = experiment.pool_rows(len(prepared.superset), 200, 1)
    assert len(a) == len(b) == 200 and not np.array_equal(a, b)
    junk = experiment.read_jsonl(out / "junk.jsonl")
    assert len(junk) == 2 * 50 and {r["id"].split("-")[1] for r in junk} == {"0", "1"}


def test_default_is_a_candidate_and_fine_tunes_are_paired(ran):
    _config, summary, out = ran
    assert summary["default"]["method"] in CANDIDATES
    runs = summary["finetune"]
    natural = [r for r in runs if r["method"] in ("default", "random")]
    assert {(r["method"], r["pool"], r["seed"]) for r in natural} == {
        (m, p, s) for m in ("default", "random") for p in ("clean", "noisy") for s in (0, 1)
    }
    assert {r["records"] for r in natural if r["pool"] == "clean"} == {60}
    assert len({r["steps"] for r in natural if r["pool"] == "clean"}) == 1  # same per budget
    # Step-matched: 60 records train (whole epochs) at least the whole pool's 13 steps.
    full = [r for r in runs if r["method"] == "full"]
    matched = [r for r in runs if r["method"] == "default" + STEP_MATCHED]
    assert [r["records"] for r in full] == [200, 200] and {r["steps"] for r in full} == {13}
    assert [r["records"] for r in matched] == [60, 60] and {r["steps"] for r in matched} == {16}
    assert {r["candidate"] for r in matched} == {summary["default"]["method"] + STEP_MATCHED}
    md = (out / "results.md").read_text()
    assert (
        "primary comparison" in md
        and "TOST, linear probe" in md
        and "| random |" in md
        and "[" in md
    )
    assert "30% step-matched: 16 steps" in md and f"| default{STEP_MATCHED} |" in md
    # The probe's and the fine-tunes' TOST lines name the method alike.
    chosen = summary["default"]["method"]
    assert md.count(f"the default ({chosen}) - full = ") == 2
    assert f"the default ({chosen}, step-matched) - full = " in md
    assert (out / "probe_clean.svg").read_text().startswith("<svg")
    assert json.loads((out / "summary.json").read_text())["finetune"] == runs


def test_a_second_run_is_served_from_the_cache(ran):
    config, summary, out = ran
    cached = sorted((out / "runs").glob("*.json")) + sorted((out / "screen").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    (again,) = experiment.run_experiments([config])
    assert again["screen"] == summary["screen"] and again["finetune"] == summary["finetune"]
    assert [p.stat().st_mtime_ns for p in cached] == stamps


def test_the_default_is_chosen_on_dev_never_on_eval():
    def rows(dev_best, eval_best):
        out = []
        for seed in range(3):
            for budget in (0.1, 0.16, 0.3, 0.5):
                for method in ("random", *CANDIDATES):
                    out.append(
                        {
                            "pool": "clean",
                            "seed": seed,
                            "budget": budget,
                            "method": method,
                            "probe_dev": 0.7 + 0.1 * (method == dev_best),
                            "probe_eval": 0.7 + 0.2 * (method == eval_best),
                        }
                    )
        return out

    class S:
        def __init__(self, r, pools=("clean", "noisy")):
            self.rows = r
            self.config = type("C", (), {"name": "x", "choice_pools": list(pools)})

    choice = choose_default([S(rows("semantic", "intersect"))])
    assert choice["method"] == "semantic"
    assert choice["mean_dev_gain"]["semantic"] == pytest.approx(0.1)
    assert "every_pool" not in choice

    # A pool left out of choice_pools does not move the choice; the report shows what would.
    late = [
        {**r, "pool": "noisy", "probe_dev": 0.7 + 0.3 * (r["method"] == "information")}
        for r in rows("information", "information")
    ]
    choice = choose_default([S(rows("semantic", "intersect") + late, pools=["clean"])])
    assert choice["method"] == "semantic"
    assert choice["mean_dev_gain"]["semantic"] == pytest.approx(0.1)
    assert choice["every_pool"]["method"] == "information"
    assert choice["every_pool"]["mean_dev_gain"]["semantic"] == pytest.approx(0.05)
    assert "would choose" in _choice_pools(choice)


def test_a_step_matched_row_is_paired_only_with_step_matched_random():
    def row(method, seed, accuracy):
        return {
            "pool": "clean",
            "budget": 0.3,
            "method": method,
            "seed": seed,
            "accuracy": accuracy,
        }

    rows = [row("random", s, 0.80) for s in range(3)]
    rows += [row("default", s, 0.81 + 0.001 * s) for s in range(3)]
    rows += [row("default@full-steps", s, 0.85 + 0.001 * s) for s in range(3)]
    cells = comparisons(rows, "accuracy", "clean")
    assert cells[("default", 0.3)]["diff"].mean == pytest.approx(1.1)
    assert "diff" not in cells[("default@full-steps", 0.3)]  # no step-matched random to pair with
    rows += [row("random@full-steps", s, 0.84) for s in range(3)]
    cells = comparisons(rows, "accuracy", "clean")
    assert cells[("default@full-steps", 0.3)]["diff"].mean == pytest.approx(1.1)
    assert "diff" not in cells[("random@full-steps", 0.3)]


def test_a_small_p_is_printed_as_below_a_thousandth():
    assert p_text(0.0) == p_text(0.0004) == "p < 0.001"
    assert p_text(0.0005) == "p = 0.001"
    assert p_text(0.019) == "p = 0.019"
    assert p_text(float("nan")) == "p = nan"


def _pool(labels, words, clusters, junk=None, hashes=None):
    n = len(labels)
    records = [
        {
            "id": str(i),
            "text": " ".join(["w"] * int(words[i])),
            "label": labels[i],
            **({"junk": junk[i]} if junk is not None and junk[i] else {}),
        }
        for i in range(n)
    ]
    columns = {
        "text_hash": np.array(
            hashes if hashes is not None else [str(i) for i in range(n)], dtype=object
        )
    }
    return Pool(
        "noisy" if junk is not None else "clean",
        0,
        records,
        columns,
        np.zeros((n, 2)),
        np.asarray(clusters),
    )


def test_length_matched_random_matches_every_decile():
    rng = np.random.default_rng(0)
    words = rng.integers(1, 60, size=500)
    keep = words > 40  # a method that keeps long texts
    matched = length_matched(keep, words, np.random.default_rng(1))
    bins = length_deciles(words)
    assert matched.sum() == keep.sum()
    assert np.array_equal(
        np.bincount(bins[matched], minlength=10), np.bincount(bins[keep], minlength=10)
    )
    assert not np.array_equal(matched, keep) or keep.sum() == 0


def test_stratified_random_keeps_class_and_cluster_shares():
    labels = ["a"] * 70 + ["b"] * 30
    clusters = [0] * 50 + [1] * 45 + [2] * 5
    pool = _pool(labels, np.full(100, 5), clusters)
    by_class = choose("random+classes", 0.2, pool, seed=3)
    assert by_class.sum() == 20 and by_class[:70].sum() == 14
    by_cluster = choose("random+clusters", 0.2, pool, seed=3)
    assert [by_cluster[:50].sum(), by_cluster[50:95].sum(), by_cluster[95:].sum()] == [10, 9, 1]
    assert np.array_equal(choose("random", 0.2, pool, seed=3), choose("random", 0.2, pool, seed=3))
    assert not np.array_equal(
        choose("random", 0.2, pool, seed=3), choose("random", 0.2, pool, seed=4)
    )


def test_an_exact_duplicate_counts_as_junk_only_beside_its_copy():
    junk = ["", "", "exact_duplicate", "gibberish", "exact_duplicate"]
    hashes = ["h0", "h1", "h0", "h3", "h9"]  # row 2 copies row 0; row 4's original is absent
    pool = _pool(["x", "y", "x", "y", "x"], np.full(5, 3), [0, 1, 2, 0, 1], junk, hashes)
    both = subset_stats(np.array([1, 1, 1, 1, 1], bool), pool)
    assert both["junk_kept"] == {"exact_duplicate": 1, "gibberish": 1}
    assert both["junk_share"] == pytest.approx(2 / 5)
    alone = subset_stats(np.array([0, 1, 1, 0, 0], bool), pool)
    assert alone["junk_share"] == 0 and alone["clusters_covered"] == 2
    assert alone["largest_class_share"] == 0.5


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    base = 'name="x"\ntrain="t"\neval="e"\noutput="o"\n'
    for extra, match in (
        ("budgets=[1.0]\n", "budgets"),
        ('task="qa"\n', "classification"),
        ('preprocess="html"\n', "newsgroups"),
        ("seeds=[1, 1]\n", "seeds"),
        ("superset=10\npool_size=20\n", "superset"),
        ('[[confirm]]\nmethods=["best"]\n', "unknown methods"),
        ("colour=1\n", "colour"),
        ('noise=0.0\n[[confirm]]\nmethods=["random"]\npools=["noisy"]\n', "noisy only"),
        ('choice_pools=["dirty"]\n', "choice_pools"),
        ('[[confirm]]\nmethods=["random"]\nsteps="double"\n', "steps"),
        ('seeds=[0, 1]\n[[confirm]]\nmethods=["random"]\nseeds=[2]\n', "confirm seeds"),
    ):
        bad.write_text(base + extra)
        with pytest.raises(ValueError, match=match):
            ExperimentConfig.from_toml(bad)
