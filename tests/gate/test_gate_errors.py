"""Bad rules and inputs: one line on stderr, exit 2, a suggestion where one helps, nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Error, JUnitXml

from gate_helpers import cli, error_line, write_rules
from robaudit.exitcodes import ExitCode

ACC = '["probes", "clean", "summary", "accuracy"]'

CASES = [
    # (rules text, fragments that must appear in the one error line)
    ("[[rule]\nmetric = []\n", ["not valid TOML", "line 1"]),
    ("levle = 0.1\n", ["unknown gate key 'levle'", "did you mean 'level'"]),
    (f"[[rule]]\nmetric = {ACC}\ntreshold = 0.5\n", ["unknown key 'treshold'", "did you mean 'threshold'"]),
    (f"[[rule]]\nmetric = {ACC}\nmax-regresion = 0.5\n", ["did you mean 'max-regression'"]),
    ('[[rule]]\nmetric = "probes.clean.summary.accuracy"\nthreshold = 0.5\n',
     ["not dotted strings", 'metric = ["probes", "clean", "summary", "accuracy"]']),
    (f"[[rule]]\nmetric = {ACC}\n", ["has no bound", "threshold, max-regression or max-ratio"]),
    (f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\nmax-regression = 0.1\n", ["2 bounds"]),
    (f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\nnoise = 'wilsn'\n", ["did you mean 'wilson'"]),
    (f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\nnoise = 'two-proportion'\n", ["compares two runs", "wilson"]),
    (f"[[rule]]\nmetric = {ACC}\nmax-ratio = 0.5\n", ["must be ≥ 1"]),
    (f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\nlevel = 0.7\n", ["(0, 0.5)"]),
    ('[[rule]]\nflags = ["x"]\nmin-severity = "fatal"\n', ["min-severity", "info, warning, error"]),
    (f'[[rule]]\nflags = ["x"]\nmetric = {ACC}\n', ["mixes a flag rule and a metric rule"]),
    ("[[rule]]\nper-sample = \"clean/loss\"\nthreshold = 1\n", ["[PROBE, KEY]"]),
    ('allow-mismatch = ["sample"]\n', ["unknown mismatch 'sample'", "did you mean 'samples'"]),
    # found only against the data
    ('[[rule]]\nmetric = ["probes", "clean", "summary", "accurcy"]\nthreshold = 0.5\n',
     ["unknown metric path", "did you mean 'accuracy'", "use one of: accuracy, n, mean_loss"]),
    ('[[rule]]\nmetric = ["probes", "clen", "summary", "accuracy"]\nthreshold = 0.5\n',
     ["unknown probe 'clen'", "did you mean 'clean'"]),
    ('[[rule]]\nmetric = ["probes", "clean", "summary", "per_class_accuracy", 10]\nthreshold = 0.5\nhigher-is-better = true\n',
     ["index 10 is out of range for a list of 10"]),
    ('[[rule]]\nmetric = ["probes", "clean", "summary"]\nthreshold = 0.5\n', ["is a table, not a number", "its keys: accuracy"]),
    ('[[rule]]\nmetric = ["probes", "clean", "summary", "mean_confidence"]\nthreshold = 0.5\n',
     ["no direction", "declares no higher-is-better", "higher-is-better = true"]),
    ('[[rule]]\nper-sample = ["clean", "los"]\nthreshold = 1\nhigher-is-better = false\n',
     ["no per-sample column 'los'", "did you mean 'loss'"]),
    (f"[[rule]]\nmetric = {ACC}\nmax-regression = 0.01\n", ["no baseline was given", "--baseline DIR"]),
]


@pytest.mark.parametrize(("text", "fragments"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_rules_give_one_line_with_a_fix(candidate: Path, tmp_path: Path, text: str, fragments: list[str]) -> None:
    before = (candidate / "results.json").read_bytes()
    code, _, err = cli(["gate", str(candidate), "--rules", str(write_rules(tmp_path / "rules.toml", text))])
    line = error_line(err)
    assert code == ExitCode.USAGE, err
    for fragment in fragments:
        assert fragment in line, line
    assert "Fix:" in line
    assert (candidate / "results.json").read_bytes() == before  # nothing recorded
    # the JUnit file says the gate stopped, with the same line: one test case, in error
    (suite,) = JUnitXml.fromfile(str(candidate / "gate-junit.xml"))
    (case,) = list(suite)
    assert isinstance(case.result[0], Error) and case.result[0].message in line


def test_missing_rules_and_results(candidate: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["gate", str(candidate), "--rules", "nope.toml"])
    assert code == ExitCode.USAGE and "rules file nope.toml does not exist" in error_line(err)
    code, _, err = cli(["gate", str(candidate)])  # no --rules and no config file with [gate]
    assert code == ExitCode.USAGE and "no gate rules given" in error_line(err)
    rules = write_rules(tmp_path / "r.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n")
    code, _, err = cli(["gate", str(tmp_path / "no-such-dir"), "--rules", str(rules)])
    assert code == ExitCode.USAGE and "does not exist" in error_line(err)
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(tmp_path / "nobase")])
    assert code == ExitCode.USAGE and "nobase does not exist" in error_line(err)


def test_nothing_finished_is_exit_5(candidate: Path, tmp_path: Path) -> None:
    results = json.loads((candidate / "results.json").read_text())
    for entry in results["probes"].values():
        entry["status"] = "failed"
    (candidate / "results.json").write_text(json.dumps(results))
    code, _, err = cli(["gate", str(candidate), "--rules",
                        str(write_rules(tmp_path / "r.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.5\n"))])
    assert code == ExitCode.NOTHING_RAN and "nothing to gate" in error_line(err)


def _mismatch(candidate: Path, baseline: Path, kind: str) -> None:
    if kind == "dataset":
        results = json.loads((candidate / "results.json").read_text())
        results["data"]["name"] = results["data"]["source"] = "mnist"
        (candidate / "results.json").write_text(json.dumps(results))
    elif kind == "samples":
        text = (candidate / "per_sample.csv").read_text().splitlines()
        header, first, rest = text[0], text[1], text[2:]
        (candidate / "per_sample.csv").write_text("\n".join([header, "test:99999" + first[first.index(","):], *rest]) + "\n")
    else:
        results = json.loads((baseline / "results.json").read_text())
        results["probes"]["calibration"]["config"]["bins"] = 20
        (baseline / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize("kind", ["dataset", "samples", "config"])
def test_incomparable_baselines_are_refused_unless_allowed(candidate: Path, baseline: Path, tmp_path: Path,
                                                           kind: str) -> None:
    _mismatch(candidate, baseline, kind)
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nmetric = ["probes", "calibration", "summary", "ece"]\n'
                                             "max-ratio = 1.5\n")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(baseline)])
    line = error_line(err)
    assert code == ExitCode.USAGE
    assert "is not comparable" in line and f"--allow-mismatch {kind}" in line
    expected = {"dataset": "dataset mnist", "samples": "different sample ids", "config": "bins 15 vs 20"}[kind]
    assert expected in line

    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(baseline),
                        "--allow-mismatch", kind])
    assert code == ExitCode.OK, err
    gate = json.loads((candidate / "results.json").read_text())["gate"]
    assert kind in gate["mismatches"] and gate["allowed_mismatches"] == [kind]
