"""Each rule kind passes and fails through the real CLI, with the documented exit codes.

Bounds are set just either side of the values in the audit's own results.json (read directly),
and regressed candidates are copies of the audit with a value or per-sample column changed; the
expected verdicts of noise tests come from independent references (scipy's chi-square test).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import chi2_contingency

from gate_helpers import cli, edit_results, scale_column, set_accuracy, write_rules
from robaudit.exitcodes import ExitCode

ACC = '["probes", "clean", "summary", "accuracy"]'
ECE = '["probes", "calibration", "summary", "ece"]'


def _summary(run: Path, probe: str) -> dict:
    return json.loads((run / "results.json").read_text())["probes"][probe]["summary"]


def _gate(run: Path, rules: Path, *extra: str) -> tuple[int, dict, str]:
    code, out, err = cli(["gate", str(run), "--rules", str(rules), *extra])
    gate = json.loads((run / "results.json").read_text())["gate"]
    return code, gate, out + err


def test_threshold_takes_its_direction_from_probe_metadata(candidate: Path, tmp_path: Path) -> None:
    acc = _summary(candidate, "clean")["accuracy"]["value"]
    ece = _summary(candidate, "calibration")["ece"]["value"]
    passing = write_rules(tmp_path / "pass.toml", f"""
[[rule]]
metric = {ACC}
threshold = {acc - 0.01}
[[rule]]
metric = {ECE}
threshold = {ece + 0.01}
""")
    code, gate, _ = _gate(candidate, passing)
    assert code == ExitCode.OK and gate["status"] == "passed"
    assert [r["higher_is_better"] for r in gate["rules"]] == [True, False]  # accuracy up, ECE down
    assert all(r["direction_source"].endswith("metadata") for r in gate["rules"])

    failing = write_rules(tmp_path / "fail.toml", f"""
[[rule]]
id = "accuracy floor"
metric = {ACC}
threshold = {acc + 0.01}
[[rule]]
id = "ece ceiling"
metric = {ECE}
threshold = {ece * 0.5}
""")
    code, gate, text = _gate(candidate, failing)
    assert code == ExitCode.GATE_FAILED and gate["status"] == "failed"
    assert [r["status"] for r in gate["rules"]] == ["failed", "failed"]
    assert "FAIL" in text and "accuracy floor" in text


def test_explicit_direction_and_list_index(candidate: Path, tmp_path: Path) -> None:
    per_class = _summary(candidate, "clean")["per_class_accuracy"]
    worst = min(range(len(per_class)), key=lambda i: per_class[i])
    rules = write_rules(tmp_path / "r.toml", f"""
[[rule]]
metric = ["probes", "clean", "summary", "per_class_accuracy", {worst}]
threshold = {per_class[worst] + 0.001}
higher-is-better = true
[[rule]]
metric = ["probes", "clean", "summary", "per_class_accuracy", {worst}]
threshold = {per_class[worst] + 0.001}
higher-is-better = false
""")
    code, gate, _ = _gate(candidate, rules)
    assert code == ExitCode.GATE_FAILED
    assert [r["status"] for r in gate["rules"]] == ["failed", "passed"]
    assert gate["rules"][0]["value"] == per_class[worst]


@pytest.mark.parametrize(("drop", "allowed", "expected"), [(1, 0.05, ExitCode.OK), (3, 0.02, ExitCode.GATE_FAILED)])
def test_max_regression_without_noise(candidate: Path, baseline: Path, tmp_path: Path, drop: int, allowed: float,
                                      expected: ExitCode) -> None:
    n = _summary(baseline, "clean")["accuracy"]["n"]
    k = round(_summary(baseline, "clean")["accuracy"]["value"] * n)
    set_accuracy(candidate, k - drop)
    rules = write_rules(tmp_path / "r.toml", f"""
[[rule]]
metric = {ACC}
max-regression = {allowed}
noise = "none"
""")
    code, gate, _ = _gate(candidate, rules, "--baseline", str(baseline))
    assert code == expected
    assert gate["rules"][0]["worse"] == pytest.approx(drop / n)
    assert gate["rules"][0]["baseline_value"] == pytest.approx(k / n)


@pytest.mark.parametrize("drop", [2, 12])
def test_max_regression_with_noise_agrees_with_the_chi_square_test(candidate: Path, baseline: Path, tmp_path: Path,
                                                                    drop: int) -> None:
    n = _summary(baseline, "clean")["accuracy"]["n"]
    k = round(_summary(baseline, "clean")["accuracy"]["value"] * n)
    set_accuracy(candidate, k - drop)
    rules = write_rules(tmp_path / "r.toml", f"""
level = 0.05
[[rule]]
metric = {ACC}
max-regression = 0
""")  # noise "auto" → two-proportion for a Wilson estimate
    code, gate, _ = _gate(candidate, rules, "--baseline", str(baseline))
    table = [[k, n - k], [k - drop, n - k + drop]]
    chi2 = chi2_contingency(table, correction=False)
    significant = chi2.pvalue / 2 < 0.05  # one-sided: the candidate is lower
    assert code == (ExitCode.GATE_FAILED if significant else ExitCode.OK)
    assert significant == (drop == 12)  # the two cases cover both outcomes
    noise = gate["rules"][0]["noise"]
    assert noise["method"] == "two-proportion"
    assert noise["p_value"] == pytest.approx(chi2.pvalue / 2, rel=1e-5)
    if not significant:
        assert gate["rules"][0]["verdict"] == "beyond the bound but within noise"


@pytest.mark.parametrize(("ratio", "allowed", "expected"), [(2.0, 1.5, ExitCode.GATE_FAILED), (2.0, 2.5, ExitCode.OK)])
def test_max_ratio(candidate: Path, baseline: Path, tmp_path: Path, ratio: float, allowed: float,
                   expected: ExitCode) -> None:
    ece = _summary(baseline, "calibration")["ece"]["value"]
    edit_results(candidate, **{"probes/calibration/summary/ece/value": ece * ratio})
    rules = write_rules(tmp_path / "r.toml", f"baseline = '{baseline}'\n[[rule]]\nmetric = {ECE}\nmax-ratio = {allowed}\n")
    code, gate, _ = _gate(candidate, rules)
    assert code == expected
    assert gate["rules"][0]["worse"] == pytest.approx(ratio)
    assert gate["rules"][0]["noise"] is None  # no noise model for a bootstrap-CI estimate: compared as is


@pytest.mark.parametrize(("factor", "expected"), [(1.0, ExitCode.OK), (3.0, ExitCode.GATE_FAILED)])
def test_per_sample_statistic_with_bootstrap(candidate: Path, baseline: Path, tmp_path: Path, factor: float,
                                             expected: ExitCode) -> None:
    scale_column(candidate, "clean/loss", factor)
    rules = write_rules(tmp_path / "r.toml", """
[[rule]]
per-sample = ["clean", "loss"]
statistic = "mean"
max-regression = 0.0
higher-is-better = false
""")
    code, gate, _ = _gate(candidate, rules, "--baseline", str(baseline))
    assert code == expected
    rule = gate["rules"][0]
    assert rule["noise"]["method"] == "bootstrap"
    mean_loss = _summary(baseline, "clean")["mean_loss"]  # the probe's own mean of the same column
    assert rule["baseline_value"] == pytest.approx(mean_loss, rel=1e-9)
    assert rule["value"] == pytest.approx(mean_loss * factor, rel=1e-9)


def _add_flag(run: Path, flag_id: str, severity: str) -> None:
    results = json.loads((run / "results.json").read_text())
    results["flags"].append({"id": flag_id, "severity": severity, "message": "injected for the test",
                             "source": "preflight", "docs": f"docs/flags.md#{flag_id}"})
    (run / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize(("rule", "expected"), [
    ('flags = ["zero_*"]', ExitCode.GATE_FAILED),
    ('flags = ["probabilities_not_logits"]', ExitCode.OK),
    ('min-severity = "warning"', ExitCode.GATE_FAILED),
    ('min-severity = "error"', ExitCode.OK),
    ('flags = ["zero_input_gradients"]\nsources = ["attack.*"]', ExitCode.OK),
])
def test_flag_rules_by_id_and_severity(candidate: Path, tmp_path: Path, rule: str, expected: ExitCode) -> None:
    _add_flag(candidate, "zero_input_gradients", "warning")
    code, gate, _ = _gate(candidate, write_rules(tmp_path / "r.toml", f"[[rule]]\n{rule}\n"))
    assert code == expected
    if expected == ExitCode.GATE_FAILED:
        assert [f["id"] for f in gate["rules"][0]["matched_flags"]] == ["zero_input_gradients"]


def test_flag_rule_new_only_ignores_flags_the_baseline_had(candidate: Path, baseline: Path, tmp_path: Path) -> None:
    _add_flag(candidate, "zero_input_gradients", "warning")
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nmin-severity = "warning"\nnew-only = true\n')
    assert _gate(candidate, rules, "--baseline", str(baseline))[0] == ExitCode.GATE_FAILED
    _add_flag(baseline, "zero_input_gradients", "warning")
    assert _gate(candidate, rules, "--baseline", str(baseline))[0] == ExitCode.OK


def test_missing_metric_fails_unless_optional(candidate: Path, tmp_path: Path) -> None:
    results = json.loads((candidate / "results.json").read_text())
    del results["probes"]["calibration"]  # a registered probe that did not run in this audit
    (candidate / "results.json").write_text(json.dumps(results))
    path = ECE
    code, gate, text = _gate(candidate, write_rules(tmp_path / "a.toml", f"[[rule]]\nmetric = {path}\nthreshold = 0.4\n"))
    assert code == ExitCode.GATE_FAILED
    assert "probe 'calibration' did not run" in gate["rules"][0]["message"]
    assert "optional = true" in gate["rules"][0]["message"]

    only_optional = write_rules(tmp_path / "b.toml", f"[[rule]]\nmetric = {path}\nthreshold = 0.4\noptional = true\n")
    code, gate, _ = _gate(candidate, only_optional)
    assert code == ExitCode.NOTHING_RAN and gate["status"] == "nothing_to_gate"
    assert gate["rules"][0]["status"] == "skipped"

    with_other = write_rules(tmp_path / "c.toml", only_optional.read_text() + f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n")
    code, gate, _ = _gate(candidate, with_other)
    assert code == ExitCode.OK and [r["status"] for r in gate["rules"]] == ["skipped", "passed"]


def test_no_rules_is_nothing_to_gate(candidate: Path, tmp_path: Path) -> None:
    code, gate, _ = _gate(candidate, write_rules(tmp_path / "r.toml", "level = 0.05\n"))
    assert code == ExitCode.NOTHING_RAN and gate["counts"]["total"] == 0


def test_rules_from_robaudit_toml_and_pyproject(candidate: Path, baseline: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "robaudit.toml").write_text(f"""dataset = "digits"
[gate]
baseline = "{baseline}"
[[gate.rule]]
metric = {ACC}
max-regression = 0.0
""")
    monkeypatch.chdir(project)
    code, gate, _ = _gate(candidate, Path("robaudit.toml"))
    assert code == ExitCode.OK and gate["rules_source"].endswith("robaudit.toml [gate]")
    code, out, err = cli(["gate", str(candidate)])  # no --rules: the config file's [gate] table
    assert code == ExitCode.OK, err
    (project / "robaudit.toml").unlink()
    (project / "pyproject.toml").write_text(f"""[project]
name = "x"
[tool.robaudit.gate]
[[tool.robaudit.gate.rule]]
metric = {ACC}
threshold = 1.01
""")
    code, out, err = cli(["gate", str(candidate)])
    assert code == ExitCode.GATE_FAILED, err
    assert json.loads((candidate / "results.json").read_text())["gate"]["rules_source"].endswith("[tool.robaudit.gate]")


def test_baseline_path_in_rules_is_relative_to_the_rules_file(candidate: Path, baseline: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = write_rules(baseline.parent / "gate.toml", f'baseline = "{baseline.name}"\n[[rule]]\nmetric = {ACC}\nmax-regression = 0\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, gate, _ = _gate(candidate, rules)
    assert code == ExitCode.OK
    assert Path(gate["baseline"]["path"]) == baseline
