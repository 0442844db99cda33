"""The selection experiment: pools per seed, every method's exact counts, the baselines, the
statistics' inputs, the default chosen on dev only (worst case, per budget), fine-tune
confirmation, caching."""

import dataclasses
import json

import numpy as np
import pytest

from euds.research import experiment, pools
from euds.research import methods as research_methods
from euds.research.experiment import ExperimentConfig, choose_default
from euds.research.methods import (
    BASELINES,
    CANDIDATES,
    LENGTH_MATCHED,
    NEEDS_TARGET,
    STEP_MATCHED,
    choose,
    length_deciles,
    length_matched,
    subset_stats,
)
from euds.research.noise import KINDS
from euds.research.pools import Pool
from euds.research.report import comparisons, noninferiority_lines, p_text


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
seeds = [0]
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
    methods = {*BASELINES, *CANDIDATES, *(m + LENGTH_MATCHED for m in CANDIDATES)}
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


def test_pools_vary_with_the_seed_and_random_differs_from_the_bands(ran):
    config, _summary, out = ran
    prepared = pools.prepare_data(config)
    a = pools.pool_rows(len(prepared.superset), 200, 0)
    b = pools.pool_rows(len(prepared.superset), 200, 1)
    assert len(a) == len(b) == 200 and not np.array_equal(a, b)
    junk = pools.read_jsonl(out / "junk.jsonl")
    assert len(junk) == 2 * 50 and {r["id"].split("-")[1] for r in junk} == {"0", "1"}


def test_default_is_a_candidate_and_fine_tunes_are_paired(ran):
    _config, summary, out = ran
    by_budget = summary["default"]["by_budget"]
    assert set(by_budget) == {"0.1", "0.3"}
    assert all(m in CANDIDATES and m not in NEEDS_TARGET for m in by_budget.values())
    runs = summary["finetune"]
    natural = [r for r in runs if r["method"] in ("default", "random")]
    assert {(r["method"], r["pool"], r["seed"]) for r in natural} == {
        (m, p, s) for m in ("default", "random") for p in ("clean", "noisy") for s in (0, 1)
    }
    assert {r["candidate"] for r in natural if r["method"] == "default"} == {by_budget["0.3"]}
    assert {r["records"] for r in natural if r["pool"] == "clean"} == {60}
    assert len({r["steps"] for r in natural if r["pool"] == "clean"}) == 1  # same per budget
    # Step-matched: 60 records train (whole epochs) at least the whole pool's 13 steps.
    full = [r for r in runs if r["method"] == "full"]
    matched = [r for r in runs if r["method"] == "default" + STEP_MATCHED]
    assert [r["records"] for r in full] == [200] and {r["steps"] for r in full} == {13}
    assert [r["records"] for r in matched] == [60] and {r["steps"] for r in matched} == {16}
    md = (out / "results.md").read_text()
    assert "## The default, chosen on dev" in md and "worst-case dev gain" in md
    assert "| random |" in md and "MDE" in md and "Non-inferiority of the default" in md
    assert "30% step-matched: 16 steps" in md and f"| default{STEP_MATCHED} |" in md
    assert "The default's junk per kind at every budget" in md
    assert (out / "probe_clean.svg").read_text().startswith("<svg")
    assert json.loads((out / "summary.json").read_text())["finetune"] == runs


def test_a_second_run_is_served_from_the_cache(ran):
    config, summary, out = ran
    cached = sorted((out / "runs").glob("*.json")) + sorted((out / "screen").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    (again,) = experiment.run_experiments([config])
    assert again["screen"] == summary["screen"] and again["finetune"] == summary["finetune"]
    assert [p.stat().st_mtime_ns for p in cached] == stamps


def test_a_run_of_fewer_seeds_shares_the_data_and_the_cache(ran):
    # --seeds limits what runs, never what is prepared: the junk file, its scores and the
    # seed's screen are those of the run of every seed, reused untouched.
    config, summary, out = ran
    kept = [out / "junk.jsonl", *sorted((out / "scores" / "junk").rglob("*"))]
    kept += sorted((out / "screen").glob("*.json")) + sorted((out / "runs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in kept]
    (one,) = experiment.run_experiments([config], seeds=[1])
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    assert one["screen"] == [r for r in summary["screen"] if r["seed"] == 1]
    assert one["finetune"] and {r["seed"] for r in one["finetune"]} == {1}

    # The run of one seed chooses its default from that seed's screens, so its default may
    # differ; every run the two share (random's always) is the cached one, row for row.
    def cell(r):
        return r["pool"], r["budget"], r["method"], r.get("candidate")

    every = {cell(r): r for r in summary["finetune"] if r["seed"] == 1}
    shared = [r for r in one["finetune"] if cell(r) in every]
    assert {r["method"] for r in shared} >= {"random"}
    assert all(r == every[cell(r)] for r in shared)
    experiment.run_experiments([config])  # the tables of every seed back in place
    with pytest.raises(ValueError, match="among tiny's seeds"):
        experiment.run_experiments([config], seeds=[0, 7])


def test_a_changed_candidate_screens_only_itself(ran, monkeypatch):
    # The screen cache is per method, keyed by that method's own settings: changing one
    # candidate (or adding one) must not screen the others again, nor change their rows.
    config, summary, out = ran
    folder = out / "screen"
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    shown = ["random", "typical", "typical" + LENGTH_MATCHED]
    s = experiment.screen(config, methods=shown)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.json")} == before
    assert s.rows == [r for r in summary["screen"] if r["method"] in (*shown, "full")]

    monkeypatch.setitem(CANDIDATES, "typical", {"method": "typical", "position": 0.5})
    again = experiment.screen(config, methods=shown)
    new = set(folder.glob("*.json")) - set(before)
    # typical and its length-matched control, on each of 2 seeds x 2 pools; nothing else.
    assert len(new) == 2 * 2 * 2
    assert all(p.stat().st_mtime_ns == ns for p, ns in before.items())
    pairs = zip(s.rows, again.rows, strict=True)
    changed = {r["method"] for a, b in pairs if a != b for r in (a, b)}
    assert changed <= {"typical", "typical" + LENGTH_MATCHED} and "typical" in changed
    assert [r for r in again.rows if r["method"] in ("random", "full")] == [
        r for r in s.rows if r["method"] in ("random", "full")
    ]


def test_a_new_typical_start_screens_only_what_runs_typicality(ran, monkeypatch):
    # The screens of methods that run typicality are keyed by its k-means start too: a new
    # start screens them again, and nothing else.
    config, _, out = ran
    folder = out / "screen"
    shown = ["random", "coverage", "typical", "typical+clean", "typical" + LENGTH_MATCHED]
    experiment.screen(config, methods=shown)
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    monkeypatch.setattr(research_methods, "TYPICAL_START", "another start")
    experiment.screen(config, methods=shown)
    new = set(folder.glob("*.json")) - set(before)
    assert len(new) == 3 * 2 * 2  # the three typical ones; 2 seeds x 2 pools
    assert all(p.stat().st_mtime_ns == ns for p, ns in before.items())


def test_a_seed_outside_the_config_screens_its_clean_pool_only(ran):
    # A fresh seed's clean pool needs no junk: it is screened from the same scored data,
    # which stays untouched; it has no noisy pool, whose junk was never built.
    config, summary, out = ran
    # (files: a reader's lock file comes and goes, touching its folder)
    kept = [out / "junk.jsonl", *sorted(p for p in (out / "scores").rglob("*") if p.is_file())]
    stamps = [p.stat().st_mtime_ns for p in kept]
    shown = ["random", "typical"]
    s = experiment.screen(config, seeds=[7, 0], methods=shown)
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    assert {(r["seed"], r["pool"]) for r in s.rows} == {(7, "clean"), (0, "clean"), (0, "noisy")}
    assert {r["method"] for r in s.rows} == {"random", "typical", "full"}
    fresh = [r for r in s.rows if r["seed"] == 7 and r["method"] == "typical"]
    assert len(fresh) == len(config.budgets)
    ours = [r for r in summary["screen"] if r["seed"] == 0]
    assert [r for r in s.rows if r["seed"] == 0] == [
        r for r in ours if r["method"] in (*shown, "full")
    ]


def test_other_seeds_never_rewrite_the_scored_junk(ran):
    # The seeds build the junk file; other seeds over a scored folder are refused before
    # anything is written, so the junk and its scores stay as they were.
    config, _summary, out = ran
    kept = [out / "junk.jsonl", *sorted(p for p in (out / "scores").rglob("*") if p.is_file())]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in kept]
    other = dataclasses.replace(config, seeds=[*config.seeds, 7])
    with pytest.raises(ValueError, match=r"junk\.jsonl would change"):
        pools.prepare_data(other)
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in kept] == before


def test_the_overview_across_datasets_is_written_beside_the_tables(ran):
    _, _, out = ran
    text = (out / "overview.md").read_text()
    assert "| budget | tiny clean | tiny noisy |" in text
    # The confirm list's default-vs-random fine-tunes at 30% on the clean pool, 2 seeds.
    assert "| tiny | 30% | 2 |" in text


class _Screened:
    """What choose_default reads of a screened dataset."""

    def __init__(self, name, rows, budgets=(0.05, 0.16), seeds=(0, 1, 2)):
        self.rows = rows
        self.config = type(
            "C",
            (),
            {
                "name": name,
                "choice_pools": ["clean", "noisy"],
                "noise": 0.2,
                "budgets": list(budgets),
                "seeds": list(seeds),
            },
        )


def _rows(dev, evaluation=None, budgets=(0.05, 0.16)):
    """Rows whose dev probe is 0.7 + dev(method, pool, budget), eval 0.7 + evaluation(...)."""
    out = []
    for seed in range(3):
        for pool in ("clean", "noisy"):
            for budget in budgets:
                for method in ("random", *CANDIDATES):
                    out.append(
                        {
                            "pool": pool,
                            "seed": seed,
                            "budget": budget,
                            "method": method,
                            "probe_dev": 0.7 + dev(method, pool, budget),
                            "probe_eval": 0.7
                            + (evaluation(method, pool, budget) if evaluation else 0.0),
                        }
                    )
    return out


def test_the_default_is_chosen_on_dev_never_on_eval():
    gain = {"semantic": 0.02, "coverage": 0.01}
    choice = choose_default(
        [
            _Screened(
                "a",
                _rows(lambda m, p, b: gain.get(m, 0.0), lambda m, p, b: 0.2 * (m == "intersect")),
            )
        ]
    )
    assert choice["by_budget"] == {"0.05": "semantic", "0.16": "semantic"}
    assert choice["worst_dev_gain"]["0.05"]["semantic"] == pytest.approx(2.0)


def test_the_default_is_judged_by_its_worst_dataset_and_pool():
    # "typical" has the best mean (a +6 on one dataset) but loses on the other's noisy pool;
    # "coverage" gains a little everywhere: maximin chooses coverage.
    a = _rows(lambda m, p, b: {"typical": 0.06, "coverage": 0.01}.get(m, 0.0))
    b = _rows(
        lambda m, p, b: {"typical": -0.01 if p == "noisy" else 0.02, "coverage": 0.005}.get(m, 0.0)
    )
    choice = choose_default([_Screened("a", a), _Screened("b", b)])
    assert set(choice["by_budget"].values()) == {"coverage"}
    assert choice["worst_dev_gain"]["0.16"]["typical"] == pytest.approx(-1.0)
    assert choice["worst_dev_gain"]["0.16"]["coverage"] == pytest.approx(0.5)


def test_the_default_may_change_with_the_budget_and_sticks_within_the_margin():
    def dev(m, p, b):
        if b == 0.05:
            return {"typical": 0.03, "coverage": 0.01}.get(m, 0.0)
        if b == 0.16:  # coverage better, but by less than the hysteresis: typical stays
            return {"typical": 0.010, "coverage": 0.012}.get(m, 0.0)
        return {"typical": 0.0, "coverage": 0.02}.get(m, 0.0)  # 0.3: clearly coverage

    choice = choose_default(
        [_Screened("a", _rows(dev, budgets=(0.05, 0.16, 0.3)), (0.05, 0.16, 0.3))]
    )
    assert choice["by_budget"] == {"0.05": "typical", "0.16": "typical", "0.3": "coverage"}


def _seeded_rows(dev, seeds=range(5), budgets=(0.05, 0.16)):
    """Rows whose dev probe is 0.7 + dev(method, pool, budget, seed)."""
    return [
        {
            "pool": pool,
            "seed": seed,
            "budget": budget,
            "method": method,
            "probe_dev": 0.7 + dev(method, pool, budget, seed),
            "probe_eval": 0.7,
        }
        for seed in seeds
        for pool in ("clean", "noisy")
        for budget in budgets
        for method in ("random", *CANDIDATES)
    ]


def test_the_incumbent_stays_unless_the_winner_leads_beyond_noise():
    # Coverage leads typical by 0.6 point on average, but seed by seed the lead swings from
    # -1.5 to +3: maximin alone switches, the incumbent rule keeps typical.
    swing = [0.05, -0.04, 0.01, -0.03, 0.02]
    data = _seeded_rows(
        lambda m, p, b, s: (
            {"typical": 0.01, "coverage": 0.01 + 0.005 + swing[s] / 2}.get(m, 0.0)
            - 0.005 * (m not in ("typical", "coverage"))
        )
    )
    alone = choose_default([_Screened("a", data, seeds=range(5))])
    assert alone["by_budget"] == {"0.05": "coverage", "0.16": "coverage"}
    held = choose_default(
        [_Screened("a", data, seeds=range(5))], incumbent={0.05: "typical", 0.16: "typical"}
    )
    assert held["by_budget"] == {"0.05": "typical", "0.16": "typical"}
    test = held["challenges"]["0.05"]
    assert (test["incumbent"], test["challenger"], test["replaced"]) == (
        "typical",
        "coverage",
        False,
    )
    assert test["lead"] == pytest.approx(100 * np.mean(swing) / 2 + 0.5)
    assert test["ci"][0] < 0 < test["ci"][1]


def test_a_winner_that_leads_on_every_seed_replaces_the_incumbent():
    data = _seeded_rows(
        lambda m, p, b, s: {"typical": 0.01, "coverage": 0.02 + 0.001 * s}.get(m, 0.0)
    )
    held = choose_default(
        [_Screened("a", data, seeds=range(5))], incumbent={0.05: "typical", 0.16: "typical"}
    )
    assert held["by_budget"] == {"0.05": "coverage", "0.16": "coverage"}
    test = held["challenges"]["0.16"]
    assert test["replaced"] and test["ci"][0] > 0
    assert test["lead"] == pytest.approx(1.2)
    assert "bootstrap" in held["rule"]


def test_the_incumbents_lead_is_judged_on_its_worst_cell():
    # The lead is between worst cells: coverage's +5 on the clean pool does not count; its
    # noisy pool (+0.5 to +0.9 by seed) is its worst, and typical's +1 beats that on every seed.
    data = _seeded_rows(
        lambda m, p, b, s: {
            "typical": 0.01,
            "coverage": 0.05 if p == "clean" else 0.005 + 0.001 * s,
        }.get(m, 0.0)
    )
    held = choose_default(
        [_Screened("a", data, seeds=range(5))], incumbent={0.05: "coverage", 0.16: "typical"}
    )
    assert held["by_budget"] == {"0.05": "typical", "0.16": "typical"}
    assert held["challenges"].get("0.16") is None  # the winner is the incumbent: no test
    test = held["challenges"]["0.05"]  # typical challenges coverage, the 5% incumbent
    assert test["challenger"] == "typical" and test["lead"] == pytest.approx(0.3)
    assert test["replaced"] and test["ci"][0] > 0


def test_target_candidates_are_never_the_default():
    choice = choose_default([_Screened("a", _rows(lambda m, p, b: 0.05 * (m == "target")))])
    assert "target" not in choice["by_budget"].values()
    assert choice["worst_dev_gain"]["0.05"].get("target") is None


def test_noninferiority_of_the_default_per_budget():
    rows = []
    for seed in range(10):
        for budget, delta in ((0.02, 0.0), (0.16, -0.02)):
            rows.append(
                {
                    "pool": "clean",
                    "seed": seed,
                    "budget": budget,
                    "method": "random",
                    "accuracy": 0.80 + 0.001 * seed,
                }
            )
            rows.append(
                {
                    "pool": "clean",
                    "seed": seed,
                    "budget": budget,
                    "method": "default",
                    "accuracy": 0.80 + delta + 0.001 * seed + 0.002 * (seed % 2),
                }
            )
    text = noninferiority_lines(rows, "accuracy")
    lines = [
        line for line in text.splitlines() if line.startswith("| 2%") or line.startswith("| 16%")
    ]
    assert lines[0].endswith("| shown |") and lines[1].endswith("| not shown |")


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
