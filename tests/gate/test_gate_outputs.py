"""The gate's outputs: JUnit XML (read back with junitparser), Markdown and $GITHUB_STEP_SUMMARY,
the results.json record (JSON Schema, baseline hash) and the report."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from junitparser import Failure, JUnitXml, Skipped

from gate_helpers import cli, set_accuracy, write_rules
from robaudit.exitcodes import ExitCode
from robaudit.results import schema_text

RULES = """
level = 0.05
[[rule]]
id = "clean accuracy floor"
metric = ["probes", "clean", "summary", "accuracy"]
threshold = 0.5
[[rule]]
id = "no regression"
metric = ["probes", "clean", "summary", "accuracy"]
max-regression = 0.0
noise = "none"
[[rule]]
id = "pgd at 0.1"
metric = ["probes", "attack.pgd_linf", "summary", "robust_accuracy", 0.1]
threshold = 0.3
optional = true
[[rule]]
id = "no error flags"
min-severity = "error"
"""


@pytest.fixture
def gated(candidate: Path, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, Path]:
    """A candidate one sample worse than the baseline, gated with a pre-existing job summary file."""
    results = json.loads((baseline / "results.json").read_text())
    acc = results["probes"]["clean"]["summary"]["accuracy"]
    set_accuracy(candidate, round(acc["value"] * acc["n"]) - 1)
    summary = tmp_path / "step_summary.md"
    summary.write_text("## earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = cli(["gate", str(candidate), "--rules", str(write_rules(tmp_path / "gate.toml", RULES)),
                        "--baseline", str(baseline)])
    return code, out, summary


def test_junit_has_one_testcase_per_rule(gated: tuple[int, str, Path], candidate: Path) -> None:
    code, _, _ = gated
    assert code == ExitCode.GATE_FAILED
    xml = JUnitXml.fromfile(str(candidate / "gate-junit.xml"))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.skipped, suite.errors) == (4, 1, 1, 0)
    cases = {case.name: case for case in suite}
    assert list(cases) == ["clean accuracy floor", "no regression", "pgd at 0.1", "no error flags"]
    assert cases["clean accuracy floor"].is_passed and cases["no error flags"].is_passed
    (failure,) = cases["no regression"].result
    assert isinstance(failure, Failure) and "worse" in failure.message and failure.type == "gate.max_regression"
    (skipped,) = cases["pgd at 0.1"].result
    assert isinstance(skipped, Skipped) and "did not run" in skipped.message
    assert cases["no regression"].classname == "robaudit.gate.max_regression"
    props = {p.name: p.value for p in suite.properties()}
    assert props["status"] == "failed" and len(props["baseline_results_sha256"]) == 64


def test_markdown_is_appended_to_the_github_step_summary(gated: tuple[int, str, Path], candidate: Path) -> None:
    _, _, summary = gated
    text = summary.read_text()
    assert text.startswith("## earlier step\n")  # appended, not overwritten
    md = (candidate / "gate-summary.md").read_text()
    assert md in text
    assert md.startswith("### ❌ robaudit gate FAILED: 1 of 4 rule(s) failed")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4  # header + one row per rule
    assert any(line.startswith("| ❌ | no regression |") for line in rows)
    assert "- ❌ **no regression**:" in md  # the reason, below the table


def test_terminal_table_lists_every_rule(gated: tuple[int, str, Path]) -> None:
    _, out, _ = gated
    assert out.splitlines()[0].startswith("robaudit gate FAILED: 1 of 4 rule(s) failed, 2 passed, 1 skipped")
    for word, rule in (("PASS", "clean accuracy floor"), ("FAIL", "no regression"), ("SKIP", "pgd at 0.1")):
        assert any(word in line and rule in line for line in out.splitlines()), out


def test_results_record_validates_and_hashes_the_baseline(gated: tuple[int, str, Path], candidate: Path,
                                                           baseline: Path) -> None:
    results = json.loads((candidate / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    gate = results["gate"]
    assert gate["status"] == "failed" and gate["exit_code"] == 1
    assert gate["counts"] == {"total": 4, "passed": 2, "failed": 1, "skipped": 1, "error": 0}
    assert gate["baseline"]["results_sha256"] == hashlib.sha256((baseline / "results.json").read_bytes()).hexdigest()
    assert gate["baseline"]["per_sample_sha256"] == hashlib.sha256((baseline / "per_sample.csv").read_bytes()).hexdigest()
    assert gate["rules_sha256"] == hashlib.sha256(RULES.encode()).hexdigest()
    assert json.loads((baseline / "results.json").read_text())["gate"] is None  # the baseline is never written


def test_report_shows_the_gate_at_the_top(gated: tuple[int, str, Path], candidate: Path) -> None:
    html = (candidate / "report.html").read_text()
    verdict = html[html.index('<section id="summary">'):html.index('<section id="provenance">')]
    assert '<div class="v sev-error">failed</div>' in verdict
    assert "1 of 4 rule(s) failed, 1 skipped" in verdict
    assert "Gate rule <strong>no regression</strong> failed" in verdict


def test_no_record_leaves_results_untouched(candidate: Path, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in candidate.iterdir()}
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\nthreshold = 0.5\n')
    code, _, _ = cli(["gate", str(candidate), "--rules", str(rules), "--no-record", "-q",
                      "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "s.md")])
    assert code == ExitCode.OK
    assert {p.name: p.read_bytes() for p in candidate.iterdir()} == before
    assert JUnitXml.fromfile(str(tmp_path / "j.xml")) is not None and (tmp_path / "s.md").is_file()
