"""The gate fails closed: a value it cannot compare never passes, and no output claims a pass.

Each hostile results.json or baseline is built in tmp_path from a real audit and gated through the
real CLI; the tests assert the exit code, the one ``robaudit: error`` line, and what the JUnit XML,
the Markdown summary and results.json say (or that they were not written).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from junitparser import Error, JUnitXml

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from gate_helpers import cli, error_line, sim_run, write_rules
from robaudit.gate import evaluate_gate, parse_rules
from robaudit.exitcodes import ExitCode
from robaudit.results import schema_text

ACC = '["probes", "clean", "summary", "accuracy"]'
ACC_VALUE = "probes › clean › summary › accuracy › value"
BOTH = f"""
[[rule]]
id = "floor"
metric = {ACC}
threshold = 0.5
[[rule]]
id = "no regression"
metric = {ACC}
max-regression = 0.05
"""


def _raw_results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def _set_value(run: Path, value: Any, key: str = "accuracy", field: str | None = "value") -> None:
    """Write ``value`` into the clean summary with Python's json (NaN and ±Infinity become literals)."""
    results = _raw_results(run)
    summary = results["probes"]["clean"]["summary"]
    if field is None:
        summary[key] = value
    else:
        summary[key][field] = value
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")


def _gate(run: Path, rules: Path, *extra: str) -> tuple[int, str, str]:
    return cli(["gate", str(run), "--rules", str(rules), *extra])


def _nothing_claims_a_pass(run: Path) -> None:
    """No JUnit test case passed and no Markdown heading says ✅ (a gate that stopped may say so)."""
    if (run / "gate-junit.xml").exists():
        for suite in JUnitXml.fromfile(str(run / "gate-junit.xml")):
            for case in suite:
                assert case.result, f"test case {case.name} passed"
    if (run / "gate-summary.md").exists():
        heading = (run / "gate-summary.md").read_text(encoding="utf-8").splitlines()[0]
        assert "✅" not in heading and heading.startswith(("### ❌", "### ⚠️")), heading


def _written_as_error(run: Path, rule_id: str) -> None:
    """JUnit shows ``rule_id`` as an error and nothing passed; Markdown shows ❌ ERROR and no ✅."""
    suite = list(JUnitXml.fromfile(str(run / "gate-junit.xml")))[0]
    assert suite.errors >= 1
    cases = {c.name: c for c in suite}
    results = cases[rule_id].result
    assert len(results) == 1 and isinstance(results[0], Error)
    md = (run / "gate-summary.md").read_text(encoding="utf-8")
    heading = md.splitlines()[0]
    assert heading.startswith("### ❌ robaudit gate ERROR"), heading
    assert "✅" not in heading and "passed:" not in heading


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("record", [True, False], ids=["record", "no-record"])
def test_non_finite_candidate_is_refused(candidate: Path, baseline: Path, tmp_path: Path, literal: str,
                                         record: bool) -> None:
    _set_value(candidate, float(literal.replace("Infinity", "inf")))
    before = (candidate / "results.json").read_bytes()
    extra = ["--baseline", str(baseline)] + ([] if record else ["--no-record"])
    code, out, err = _gate(candidate, write_rules(tmp_path / "r.toml", BOTH), *extra)
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    assert f"holds {literal} at {ACC_VALUE}" in line and "results.json" in line and "Fix:" in line
    assert "within the bound" not in out
    _nothing_claims_a_pass(candidate)
    assert (candidate / "results.json").read_bytes() == before


def test_nan_baseline_is_refused(candidate: Path, baseline: Path, tmp_path: Path) -> None:
    _set_value(baseline, float("nan"))
    code, out, err = _gate(candidate, write_rules(tmp_path / "r.toml", BOTH), "--baseline", str(baseline))
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    assert str(baseline / "results.json") in line and f"holds NaN at {ACC_VALUE}" in line
    _nothing_claims_a_pass(candidate)
    assert _raw_results(candidate)["gate"] is None


BAD_VALUES = [
    (None, "is null"),
    (True, "is the boolean true"),
    ("0.9", "is the string '0.9'"),
    ([0.9], "is a list of 1"),
    ({"value": 0.9}, "is a table (keys: value)"),
]


@pytest.mark.parametrize(("value", "said"), BAD_VALUES, ids=["null", "bool", "string", "list", "table"])
def test_wrongly_typed_candidate_value_is_a_rule_error(candidate: Path, baseline: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, value: Any, said: str) -> None:
    _set_value(candidate, value)
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rules = write_rules(tmp_path / "r.toml", BOTH.replace('id = "floor"', 'id = "floor"\noptional = true'))
    code, out, err = _gate(candidate, rules, "--baseline", str(baseline))
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    assert f"gate rule 'floor': the candidate's {ACC_VALUE} {said}" in line and "not a finite number" in line
    assert "1 more rule(s) in error" in line and "Fix:" in line
    _written_as_error(candidate, "floor")
    _written_as_error(candidate, "no regression")
    assert "❌ robaudit gate ERROR" in summary.read_text(encoding="utf-8")
    results = _raw_results(candidate)
    jsonschema.validate(results, json.loads(schema_text()))
    gate = results["gate"]
    assert gate["status"] == "error" and gate["exit_code"] == 2
    assert [r["status"] for r in gate["rules"]] == ["error", "error"]  # optional, but not missing: never skipped
    assert gate["counts"]["error"] == 2
    assert out.splitlines()[0].startswith("robaudit gate ERROR: 2 in error")
    html = (candidate / "report.html").read_text(encoding="utf-8")
    verdict = html[html.index('<section id="summary">'):html.index('<section id="provenance">')]
    assert 'sev-error">error</div>' in verdict and "2 in error (not a finite number)" in verdict
    assert "Gate rule <strong>floor</strong> could not be decided" in verdict


def test_wrongly_typed_baseline_value_is_a_rule_error_even_beside_a_passing_rule(
        candidate: Path, baseline: Path, tmp_path: Path) -> None:
    _set_value(baseline, None)
    code, out, err = _gate(candidate, write_rules(tmp_path / "r.toml", BOTH), "--baseline", str(baseline), "--no-record")
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    assert f"gate rule 'no regression': the baseline's {ACC_VALUE} is null" in line
    _written_as_error(candidate, "no regression")
    cases = {c.name: c for c in list(JUnitXml.fromfile(str(candidate / "gate-junit.xml")))[0]}
    assert cases["floor"].result == []  # the absolute rule was still evaluated, and passed
    assert _raw_results(candidate)["gate"] is None  # --no-record


@pytest.mark.parametrize(("value", "said"), [(None, "is null"), (False, "is the boolean false"), ("60", "is the string '60'")])
def test_plain_number_paths_refuse_non_numbers(candidate: Path, tmp_path: Path, value: Any, said: str) -> None:
    _set_value(candidate, value, key="n", field=None)
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nid = "enough samples"\nmetric = ["probes", "clean", "summary", "n"]\n'
                                             "threshold = 10\nhigher-is-better = true\n")
    code, _, err = _gate(candidate, rules)
    assert code == ExitCode.USAGE, err
    assert f"the candidate's probes › clean › summary › n {said}" in error_line(err)
    _written_as_error(candidate, "enough samples")


def test_per_sample_column_without_a_finite_cell_is_a_rule_error(candidate: Path, tmp_path: Path) -> None:
    lines = (candidate / "per_sample.csv").read_text(encoding="utf-8").splitlines()
    col = lines[0].split(",").index("clean/loss")
    rows = [lines[0]] + [",".join("" if j == col else c for j, c in enumerate(r.split(","))) for r in lines[1:]]
    (candidate / "per_sample.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nid = "loss"\nper-sample = ["clean", "loss"]\nthreshold = 5\n'
                                             "higher-is-better = false\noptional = true\n")
    code, _, err = _gate(candidate, rules)
    assert code == ExitCode.USAGE, err
    assert "per-sample column clean/loss has no finite value" in error_line(err)
    _written_as_error(candidate, "loss")


def _break(run: Path, how: str) -> str:
    """Damage ``run``'s results.json; returns a fragment the error line must contain."""
    path = run / "results.json"
    results = _raw_results(run)
    if how == "not-an-object":
        path.write_text(json.dumps([results]))
        return "holds a list of 1, not a JSON object"
    if how == "flags-not-a-list":
        results["flags"] = {"id": "x"}
        path.write_text(json.dumps(results))
        return "flags is an object, not a list of flag objects"
    if how == "flag-not-an-object":
        results["flags"] = ["zero_input_gradients"]
        path.write_text(json.dumps(results))
        return "flags › [0] is the string 'zero_input_gradients', not a flag object"
    if how == "probe-not-an-object":
        results["probes"]["clean"] = 0.9
        path.write_text(json.dumps(results))
        return "probes › clean is the number 0.9, not an object"
    if how == "probe-error-not-an-object":
        results["probes"]["calibration"]["error"] = "boom"
        path.write_text(json.dumps(results))
        return "probes › calibration › error is the string 'boom', not an object"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        return "is not valid JSON ("  # the parser's own reason (where the cut fell) follows
    if how == "not-utf8":
        path.write_bytes(b'{"schema_version": "1.0", "x": "\xff\xfe"}')
        return "is not UTF-8 text"
    if how == "newer-schema":
        results["schema_version"] = "2.0"
        path.write_text(json.dumps(results))
        return "has results schema 2.0, newer than the schema 1.0 that robaudit"
    if how == "no-schema":
        del results["schema_version"]
        path.write_text(json.dumps(results))
        return "has no schema_version"
    raise AssertionError(how)


BROKEN = ["not-an-object", "flags-not-a-list", "flag-not-an-object", "probe-not-an-object",
          "probe-error-not-an-object", "truncated", "not-utf8", "newer-schema", "no-schema"]


@pytest.mark.parametrize("how", BROKEN)
def test_broken_candidate_results_are_one_line_exit_2(candidate: Path, tmp_path: Path, how: str) -> None:
    fragment = _break(candidate, how)
    rules = write_rules(tmp_path / "r.toml", f'[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n[[rule]]\nflags = ["zero_*"]\n')
    code, _, err = _gate(candidate, rules)
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    assert fragment in line and "Fix:" in line
    if how == "newer-schema":
        assert "upgrade robaudit" in line
    if how == "truncated":
        assert line.endswith("the file looks truncated. Fix: re-run the audit that wrote it ('robaudit run ... --out DIR') "
                             "to regenerate it.")
    _nothing_claims_a_pass(candidate)
    code, out, err = cli(["report", str(candidate)])
    assert code == ExitCode.USAGE and fragment in error_line(err) and out == ""


@pytest.mark.parametrize("how", ["flags-not-a-list", "newer-schema"])
def test_broken_baseline_results_are_one_line_exit_2(candidate: Path, baseline: Path, tmp_path: Path, how: str) -> None:
    fragment = _break(baseline, how)
    code, _, err = _gate(candidate, write_rules(tmp_path / "r.toml", BOTH), "--baseline", str(baseline))
    line = error_line(err)
    assert code == ExitCode.USAGE and fragment in line and str(baseline) in line
    _nothing_claims_a_pass(candidate)


def test_malformed_per_sample_table_is_one_line_exit_2(candidate: Path, tmp_path: Path) -> None:
    table = candidate / "per_sample.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",lots"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = _gate(candidate, write_rules(tmp_path / "r.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n"))
    assert code == ExitCode.USAGE and "holds a cell that is not a number" in error_line(err)
    _nothing_claims_a_pass(candidate)


def test_run_gate_on_a_value_that_is_not_a_number_exits_2(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nid = "source"\nmetric = ["model", "source"]\nthreshold = 1\n'
                                             "higher-is-better = true\n")
    out = tmp_path / "audit"
    code, _, err = cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--probes", "clean",
                        "--threads", "2", "--out", str(out), "--no-report", "-q", "--gate", str(rules)])
    assert code == ExitCode.USAGE, err
    assert "gate rule 'source': the candidate's model › source is the string" in error_line(err)
    _written_as_error(out, "source")
    assert _raw_results(out)["gate"]["status"] == "error"


@pytest.mark.parametrize("where", ["candidate", "baseline"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_python_api_never_passes_a_non_finite_value(where: str, bad: float) -> None:
    cand, base = sim_run("cand", 55, 60), sim_run("base", 55, 60)
    run = cand if where == "candidate" else base
    run.results["probes"]["clean"]["summary"]["accuracy"]["value"] = bad
    rules = parse_rules({"rule": [{"id": "floor", "metric": ["probes", "clean", "summary", "accuracy"], "threshold": 0.5},
                                  {"id": "regression", "metric": ["probes", "clean", "summary", "accuracy"],
                                   "max-regression": 0.05}]}, source="api")
    outcome = evaluate_gate(cand, rules, base, ["clean"])
    statuses = {o.rule.id: o.status for o in outcome.outcomes}
    assert statuses == ({"floor": "error", "regression": "error"} if where == "candidate"
                        else {"floor": "passed", "regression": "error"})
    assert outcome.status == "error" and outcome.exit_code == ExitCode.USAGE
    error = outcome.error()
    assert error is not None and f"the {where}'s {ACC_VALUE} is {'NaN' if bad != bad else ('Infinity' if bad > 0 else '-Infinity')}" in error.message


def test_a_gate_that_stops_replaces_an_earlier_passing_verdict(candidate: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A passing gate's JUnit and Markdown files, then a gate that stops (exit 2): no ✅ is left behind."""
    summary = tmp_path / "step-summary.md"
    rules = write_rules(tmp_path / "r.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n")
    code, _, err = _gate(candidate, rules)
    assert code == ExitCode.OK, err
    assert "✅" in (candidate / "gate-summary.md").read_text(encoding="utf-8")
    _set_value(candidate, float("nan"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, err = _gate(candidate, rules)
    line = error_line(err)
    assert code == ExitCode.USAGE
    _nothing_claims_a_pass(candidate)
    (suite,) = JUnitXml.fromfile(str(candidate / "gate-junit.xml"))
    (case,) = list(suite)
    assert isinstance(case.result[0], Error) and case.result[0].message in line
    assert (candidate / "gate-summary.md").read_text(encoding="utf-8").startswith("### ❌ robaudit gate ERROR")
    assert summary.read_text(encoding="utf-8").startswith("### ❌ robaudit gate ERROR")
