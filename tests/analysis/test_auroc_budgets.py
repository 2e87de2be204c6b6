"""Which attack-success columns the analysis tests: each norm's reference budget by default (science.md §4,
"AUROC for attack success at the audit's ε"), every budget with ``auroc_budgets = "all"``; columns whose
budget cannot be stated are kept. Oracles: the run's attack-outcome table and the threat model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from robaudit.analysis.config import AnalysisConfig
from robaudit.analysis.indicators import analyse, column_roles
from robaudit.attack_outcomes import load_outcome_table, success_budgets
from robaudit.engine.runner import derive_seed
from robaudit.results.store import read_per_sample

FAST = AnalysisConfig(n_bootstrap=40, n_permutations=40)


def _demo(run: Path) -> tuple[dict, dict[str, np.ndarray], int]:
    results = json.loads((run / "results.json").read_text())
    _, cols = read_per_sample(run)
    cols.pop("label")
    return results, cols, derive_seed(results["config"]["seed"], "analysis")


def _auroc_outcomes(analysis: dict) -> list[str]:
    return list(dict.fromkeys(t["outcome"] for t in analysis["tests"] if t["kind"] == "auroc"))


def test_success_budgets_place_every_success_column_of_the_standard_audit(demo_run: Path) -> None:
    """Each column is success at its stated (norm, ε): the worst case's equals the outcome table's "broken at
    (norm, ε)" (with the clean mistakes), each attack's own column equals what the table read for it there."""
    results, cols, _ = _demo(demo_run)
    budgets = success_budgets(results["probes"])
    success = [c for c, m in column_roles(results).items() if m["role"] == "attack_success"]
    assert success and set(budgets) == set(success)
    table = load_outcome_table(demo_run)
    wrong = cols["clean/correct"] == 0
    for column, (norm, eps) in budgets.items():
        probe = next(n for n, e in results["probes"].items() if column in e["per_sample_columns"])
        outcomes = table.norms[norm]
        k = outcomes.index(eps)
        expected = outcomes.broken[k] if probe == "attack.worst_case" else outcomes.broken_by[probe][k]
        np.testing.assert_array_equal(cols[column] == 1, expected | wrong)


def test_the_default_tests_attack_success_at_the_reference_budget_only(demo_run: Path) -> None:
    results, cols, seed = _demo(demo_run)
    reference = {n: b["reference"] for n, b in results["threat_model"]["norms"].items()}
    budgets = success_budgets(results["probes"])
    success = [c for c, m in column_roles(results).items() if m["role"] == "attack_success"]
    out = analyse(results, cols, seed=seed, config=FAST)
    tested = _auroc_outcomes(out)
    assert tested == [c for c in success if budgets[c][1] == reference[budgets[c][0]]]
    assert len(tested) == len({n for n, e in results["probes"].items()
                               if any(c in e["per_sample_columns"] for c in success)})  # one per attack probe
    assert out["untested_success"] == [c for c in success if c not in tested]
    assert out["reference_eps"] == reference
    every = analyse(results, cols, seed=seed, config=AnalysisConfig(n_bootstrap=40, n_permutations=40,
                                                                      auroc_budgets="all"))
    assert _auroc_outcomes(every) == success and every["untested_success"] == []
    assert every["method"]["binary"] == "AUROC, stratified percentile bootstrap, two-sided Mann–Whitney U p"
    assert len(every["tests"]) > len(out["tests"])


def _synthetic(threat_norms: dict | None) -> tuple[dict, dict[str, np.ndarray]]:
    """An L∞ attack at 0.1 and 0.2, an L2 attack at 1.0, a plugin success column with no stated budget."""
    g = np.random.default_rng(0)
    n = 80
    margin = g.lognormal(size=n)
    cols = {"clean/correct": np.ones(n), "g/margin": margin, "g/noise": g.normal(size=n),
            "a/success_eps_0.1": (margin < 0.6).astype(float), "a/success_eps_0.2": (margin < 1.2).astype(float),
            "b/success_eps_1": (margin < 1.0).astype(float), "p/success_eps_0.2": (margin < 0.9).astype(float)}
    meta = {"label": "x", "unit": "", "scale_invariant": None}
    probes = {
        "g": {"status": "ok", "summary": {}, "per_sample_columns": ["g/margin", "g/noise"],
              "columns": {"g/margin": {**meta, "role": "indicator"}, "g/noise": {**meta, "role": "indicator"}}},
        "a": {"status": "ok", "summary": {"norm": "linf", "eps": [0.1, 0.2]},
              "per_sample_columns": ["a/success_eps_0.1", "a/success_eps_0.2"],
              "columns": {c: {**meta, "role": "attack_success"} for c in ("a/success_eps_0.1", "a/success_eps_0.2")}},
        "b": {"status": "ok", "summary": {"norm": "l2", "eps": [1.0]}, "per_sample_columns": ["b/success_eps_1"],
              "columns": {"b/success_eps_1": {**meta, "role": "attack_success"}}},
        "p": {"status": "ok", "summary": {"newton": {}}, "per_sample_columns": ["p/success_eps_0.2"],
              "columns": {"p/success_eps_0.2": {**meta, "role": "attack_success"}}},
    }
    results: dict = {"probes": probes}
    if threat_norms is not None:
        results["threat_model"] = {"norms": threat_norms}
    return results, cols


def _without_setting(analysis: dict) -> dict:
    return {k: v for k, v in analysis.items() if k not in ("config", "method")}


def test_columns_whose_budget_is_unknown_are_kept() -> None:
    """A plugin column with no stated budget, and a norm without a reference in the threat model, are tested;
    an off-reference column of a placed budget is not."""
    results, cols = _synthetic({"linf": {"reference": 0.2}})
    out = analyse(results, cols, seed=1, config=FAST)
    assert _auroc_outcomes(out) == ["a/success_eps_0.2", "b/success_eps_1", "p/success_eps_0.2"]
    assert out["untested_success"] == ["a/success_eps_0.1"]

    results, cols = _synthetic({"linf": {"reference": 0.1}, "l2": {"reference": 0.5}})
    assert _auroc_outcomes(analyse(results, cols, seed=1, config=FAST)) == ["a/success_eps_0.1", "p/success_eps_0.2"]


def test_without_a_recorded_threat_model_every_column_is_tested_as_with_all() -> None:
    """A results file from before the threat model was recorded: no reference to choose by, so the default
    tests what ``"all"`` tests, with the same numbers."""
    results, cols = _synthetic(None)
    default = analyse(results, cols, seed=2, config=FAST)
    every = analyse(results, cols, seed=2, config=AnalysisConfig(n_bootstrap=40, n_permutations=40,
                                                                 auroc_budgets="all"))
    assert _auroc_outcomes(default) == ["a/success_eps_0.1", "a/success_eps_0.2", "b/success_eps_1",
                                        "p/success_eps_0.2"]
    assert _without_setting(default) == _without_setting(every)
