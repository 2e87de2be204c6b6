"""Which attack-success columns the analysis tests: each norm's reference budget by default (science.md §4,
"AUROC for attack success at the audit's ε"), every budget with ``auroc_budgets = "all"``; columns whose
budget cannot be stated are kept. Oracles: the run's attack-outcome table and the threat model."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.analysis.config import AnalysisConfig
from robaudit.analysis.indicators import analyse, column_roles
from robaudit.attack_outcomes import load_outcome_table, success_budgets
from robaudit.cli.main import main
from robaudit.engine.runner import derive_seed
from robaudit.exitcodes import ExitCode
from robaudit.report import render
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


def test_only_off_reference_outcomes_record_why_the_analysis_did_not_run() -> None:
    """Indicators plus success columns all off the reference budget: no test under "reference", and the
    result says so (it was ``None``, indistinguishable from "no indicator"); "all" tests every column."""
    results, cols = _synthetic({"linf": {"reference": 0.3}, "l2": {"reference": 2.0}})
    for probe in ("b", "p"):  # keep only probe "a", at ε 0.1 and 0.2
        del results["probes"][probe]
    out = analyse(results, cols, seed=1, config=FAST)
    assert set(out) == {"skipped", "config", "reference_eps", "untested_success"}
    assert out["untested_success"] == ["a/success_eps_0.1", "a/success_eps_0.2"]
    assert out["reference_eps"] == {"linf": 0.3, "l2": 2.0} and out["config"]["auroc_budgets"] == "reference"
    assert out["skipped"] == (
        "no outcome to test: every attack-success column is off its norm's reference budget (L∞ ε = 0.1, "
        "L∞ ε = 0.2 run; reference L∞ ε = 0.3), auroc-budgets = \"reference\" tests only the reference budget, "
        "and no minimal-ε or distance probe ran")
    every = analyse(results, cols, seed=1, config=AnalysisConfig(n_bootstrap=40, n_permutations=40,
                                                                 auroc_budgets="all"))
    assert _auroc_outcomes(every) == ["a/success_eps_0.1", "a/success_eps_0.2"]
    # with no indicator there is nothing to analyse either way
    del results["probes"]["g"]
    assert analyse(results, cols, seed=1, config=FAST) is None


def test_an_audit_with_attacks_only_off_the_reference_says_why_through_the_cli(tmp_path: Path) -> None:
    """The real CLI: FGSM at its own ε (off the digits reference 0.1) plus an indicator probe. results.json
    records the reason, and the report names both remedies."""
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--threads", "1", "-q",
            "--probes", "clean,geometry.gradients,attack.fgsm", "--set", "attack.fgsm.eps=[0.05]", "--out", str(out)]
    assert main(args) == ExitCode.OK
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["threat_model"]["norms"]["linf"]["reference"] == 0.1
    analysis = results["analysis"]
    assert analysis["untested_success"] == ["attack.fgsm/success_eps_0.05"]
    assert analysis["skipped"].startswith("no outcome to test: every attack-success column is off its norm's "
                                          "reference budget (L∞ ε = 0.05 run; reference L∞ ε = 0.1)")
    report = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    line = next(t for t in report.split("<p class=\"skipped\">") if t.startswith("Not run in this audit: no outcome"))
    line = line.split("</p>")[0]
    assert line == f"Not run in this audit: {analysis['skipped']}. To include it, " + render.SECTIONS[-1]["how"] + "."
    assert "minimal-ε attack probe (attack.min_eps)" in line and 'auroc-budgets = "all" in [analysis]' in line
    # the first remedy named: auroc-budgets = "all" makes the same audit's analysis run
    config = tmp_path / "robaudit.toml"
    config.write_text('[analysis]\nauroc-budgets = "all"\nn-bootstrap = 40\nn-permutations = 40\n', encoding="utf-8")
    again = tmp_path / "again"
    assert main(["--config", str(config), *args[:-1], str(again)]) == ExitCode.OK
    tested = json.loads((again / "results.json").read_text(encoding="utf-8"))["analysis"]
    assert _auroc_outcomes(tested) == ["attack.fgsm/success_eps_0.05"] and "skipped" not in tested
