"""robaudit's pytest plugin, through real pytest sessions (pytester): the entry point registers it,
a passing rule passes, a failing rule fails with the gate's table, a NaN value is an error."""
from __future__ import annotations

import json
import math
from importlib.metadata import distribution
from pathlib import Path

import pytest

import robaudit
from demo import DEMO_ARCH, DEMO_CHECKPOINT

ACCURACY = ["probes", "clean", "summary", "accuracy"]
OPTIONS = f'arch={DEMO_ARCH!r}, probes="clean", n_samples=30, report=False'


def _test_file(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_model=f"""
from robaudit.pytest_plugin import assert_robust

{body}
""")


def test_the_plugin_is_registered_through_pytest11() -> None:
    eps = [e for e in distribution("robaudit").entry_points if e.group == "pytest11"]
    assert [(e.name, e.value) for e in eps] == [("robaudit", "robaudit.pytest_plugin")]


def test_a_passing_rule_passes_and_a_failing_rule_fails_with_the_table(pytester: pytest.Pytester) -> None:
    _test_file(pytester, f"""
def test_passes(tmp_path):
    outcome = assert_robust({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS}, out=tmp_path / "a",
                            rules={{"rule": [{{"id": "clean floor", "metric": {ACCURACY!r}, "threshold": 0.5}}]}})
    assert outcome.results["probes"]["clean"]["status"] == "ok"

def test_fails(robaudit_audit):
    robaudit_audit({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS},
                   rules={{"rule": [{{"id": "impossible floor", "metric": {ACCURACY!r}, "threshold": 0.999}}]}})
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "robaudit gate failed" in text
    assert "impossible floor" in text and "0.999" in text  # the rule's row of the gate table
    assert "clean floor" not in text  # the passing test prints nothing


def test_rules_from_a_toml_file(pytester: pytest.Pytester) -> None:
    rules = pytester.path / "gate.toml"
    rules.write_text(f'[[rule]]\nid = "floor"\nmetric = {json.dumps(ACCURACY)}\nthreshold = 0.999\n')
    _test_file(pytester, f"""
def test_fails(robaudit_audit):
    robaudit_audit({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS}, rules={str(rules)!r})
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "robaudit gate failed" in result.stdout.str() and "floor" in result.stdout.str()


@pytest.fixture(scope="module")
def nan_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline whose clean accuracy is NaN. Module-scoped, so its in-process audit runs before the
    ``pytester`` fixture snapshots ``sys.modules``: modules first imported inside a pytester test are
    evicted when it ends, and later tests would see two copies of robaudit's engine and errors."""
    baseline = tmp_path_factory.mktemp("nan") / "baseline"
    robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, probes=["clean"], n_samples=30, report=False,
                   out=baseline)
    raw = json.loads((baseline / "results.json").read_text())
    raw["probes"]["clean"]["summary"]["accuracy"]["value"] = math.nan
    (baseline / "results.json").write_text(json.dumps(raw))
    return baseline


def test_a_nan_value_is_an_error_not_a_pass(pytester: pytest.Pytester, nan_baseline: Path) -> None:
    baseline = nan_baseline
    _test_file(pytester, f"""
def test_regression(robaudit_audit):
    robaudit_audit({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS}, baseline={str(baseline)!r},
                   rules={{"rule": [{{"id": "no regression", "metric": {ACCURACY!r}, "max-regression": 0.02}}]}})
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "holds NaN" in text and str(baseline / "results.json") in text
    assert "robaudit gate failed" not in text  # an error, not a comparison that failed


def test_a_temporary_results_folder_goes_when_the_gate_passes_and_stays_named_when_it_fails(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``out=``: a passing gate leaves nothing in the temporary directory; a failing one keeps its
    audit, and the failure message names the folder (which holds the audit's results.json)."""
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # where the session's tempfile.mkdtemp puts its folders
    _test_file(pytester, f"""
def test_passes():
    outcome = assert_robust({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS},
                            rules={{"rule": [{{"id": "clean floor", "metric": {ACCURACY!r}, "threshold": 0.5}}]}})
    assert not outcome.out_dir.exists()

def test_fails():
    assert_robust({str(DEMO_CHECKPOINT)!r}, "digits", {OPTIONS},
                  rules={{"rule": [{{"id": "impossible floor", "metric": {ACCURACY!r}, "threshold": 0.999}}]}})
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_model.py::test_passes")
    result.assert_outcomes(passed=1)
    assert list(tmp.iterdir()) == []
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_model.py::test_fails")
    result.assert_outcomes(failed=1)
    (kept,) = tmp.iterdir()
    assert (kept / "results.json").is_file()
    assert f"results kept in {kept}" in result.stdout.str()
