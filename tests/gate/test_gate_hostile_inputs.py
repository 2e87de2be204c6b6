"""Hostile inputs to ``robaudit gate`` that once passed (or destroyed what they gated).

Each case is built in tmp_path from real audits and gated through the real CLI; the tests assert the exit
code, the one ``robaudit: error`` line, and what is on disk afterwards.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from gate_helpers import cli, cli_code, error_line, write_rules

ACC = '["probes", "clean", "summary", "accuracy"]'
REGRESSION = f"""
[[rule]]
metric = {ACC}
max-regression = 0.0
noise = "none"
"""
FGSM_REGRESSION = """
[[rule]]
metric = ["probes", "attack.fgsm", "summary", "robust_accuracy", 0.1]
max-regression = 0.0
noise = "none"
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fgsm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real audits of the same model and samples with FGSM, one at the default ε list and one at --eps."""
    root = tmp_path_factory.mktemp("fgsm")
    runs = {}
    for name, extra in (("default", []), ("other_eps", ["--eps", "linf=0.02,0.1"])):
        out = root / name
        code = cli_code(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--probes",
                         "clean,attack.fgsm", "--threads", "1", "--out", str(out), "--no-report", "-q", *extra])
        assert code == 0
        runs[name] = out
    return runs


def test_a_baseline_with_another_eps_list_is_refused_unless_allowed(fgsm_runs: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(fgsm_runs["default"], candidate)
    rules = write_rules(tmp_path / "gate.toml", FGSM_REGRESSION)
    before = _sha(candidate / "results.json")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(fgsm_runs["other_eps"])])
    assert code == 2
    line = error_line(err)
    assert "not comparable" in line and "threat model linf eps" in line and "allow-mismatch" in line
    assert _sha(candidate / "results.json") == before
    # the robust accuracy at ε = 0.1 is present in both, so the rule could be evaluated once the user accepts it
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(fgsm_runs["other_eps"]),
                        "--allow-mismatch", "config"])
    assert code in (0, 1), err


def test_a_baseline_written_before_threat_models_were_recorded_is_still_comparable(fgsm_runs: dict[str, Path],
                                                                                    tmp_path: Path) -> None:
    """A baseline from an older robaudit has no threat_model section; its probes' config is compared as before
    (it was refused as 'threat model recorded in only one run'); an ε list the probes echo still differs."""
    baseline = tmp_path / "old_baseline"
    shutil.copytree(fgsm_runs["default"], baseline)
    results = json.loads((baseline / "results.json").read_text(encoding="utf-8"))
    del results["threat_model"]
    (baseline / "results.json").write_text(json.dumps(results), encoding="utf-8")
    rules = write_rules(tmp_path / "gate.toml", FGSM_REGRESSION + REGRESSION)
    code, _, err = cli(["gate", str(fgsm_runs["default"]), "--rules", str(rules), "--baseline", str(baseline)])
    assert code == 0, err


@pytest.mark.parametrize("how", ["same directory", "other spelling", "symbolic link"])
def test_a_baseline_that_is_the_candidate_itself_is_refused(candidate: Path, tmp_path: Path, how: str) -> None:
    rules = write_rules(tmp_path / "gate.toml", REGRESSION)
    baseline = {"same directory": candidate, "other spelling": Path(f"{candidate}/../{candidate.name}/"),
                "symbolic link": tmp_path / "link"}[how]
    if how == "symbolic link":
        baseline.symlink_to(candidate, target_is_directory=True)
    before = _sha(candidate / "results.json")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules), "--baseline", str(baseline),
                        "--allow-mismatch", "dataset,samples,config"])
    assert code == 2
    line = error_line(err)
    assert "comparing the audit with itself" in line and "Fix:" in line
    assert _sha(candidate / "results.json") == before
    assert "PASS" not in (candidate / "gate-summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("option, target", [("--junit", "results.json"), ("--markdown", "results.json"),
                                            ("--junit", "per_sample.csv"), ("--markdown", "report.html"),
                                            ("--junit", "baseline/results.json"), ("both", "same.xml")])
def test_outputs_never_overwrite_what_the_gate_reads(candidate: Path, baseline: Path, tmp_path: Path, option: str,
                                                     target: str) -> None:
    rules = write_rules(tmp_path / "gate.toml", REGRESSION)
    protected = [candidate / n for n in ("results.json", "per_sample.csv", "report.html")] + \
                [baseline / n for n in ("results.json", "per_sample.csv")]
    before = {p: _sha(p) for p in protected}
    args = ["gate", str(candidate), "--rules", str(rules), "--baseline", str(baseline)]
    if option == "both":
        args += ["--junit", str(tmp_path / target), "--markdown", str(tmp_path / target)]
    elif target.startswith("baseline/"):
        args += [option, str(baseline / target.split("/", 1)[1])]
    else:
        args += [option, str(candidate / target)]
    code, _, err = cli(args)
    assert code == 2
    line = error_line(err)
    assert "the gate would overwrite it" in line
    assert {p: _sha(p) for p in protected} == before
    assert not (tmp_path / "same.xml").exists()


def test_the_step_summary_never_overwrites_the_results(candidate: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rules = write_rules(tmp_path / "gate.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.1\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(candidate / "results.json"))
    before = _sha(candidate / "results.json")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 2
    assert "$GITHUB_STEP_SUMMARY" in error_line(err)
    assert _sha(candidate / "results.json") == before


PER_SAMPLE_RULE = """
[[rule]]
per-sample = ["clean", "loss"]
threshold = 5.0
higher-is-better = false
"""


def _cut_rows(table: Path, keep: int) -> None:
    lines = table.read_text(encoding="utf-8").splitlines(keepends=True)
    table.write_text("".join(lines[:1 + keep]), encoding="utf-8")


@pytest.mark.parametrize("how", ["rows cut at a line end", "header only", "an id twice", "a recorded column dropped"])
def test_a_per_sample_table_that_disagrees_with_results_json_is_refused(candidate: Path, tmp_path: Path,
                                                                       how: str) -> None:
    table = candidate / "per_sample.csv"
    lines = table.read_text(encoding="utf-8").splitlines(keepends=True)
    if how == "rows cut at a line end":
        _cut_rows(table, 5)
    elif how == "header only":
        _cut_rows(table, 0)
    elif how == "an id twice":
        table.write_text("".join(lines[:-1] + [lines[1]]), encoding="utf-8")
    else:
        cells = [line.rstrip("\n").split(",") for line in lines]
        drop = cells[0].index("calibration/brier")
        table.write_text("".join(",".join(c[:drop] + c[drop + 1:]) + "\n" for c in cells), encoding="utf-8")
    rules = write_rules(tmp_path / "gate.toml", PER_SAMPLE_RULE)
    before = _sha(candidate / "results.json")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 2
    line = error_line(err)
    assert "per_sample.csv" in line and "Fix:" in line
    assert _sha(candidate / "results.json") == before


@pytest.mark.parametrize("optional", [False, True])
def test_a_missing_per_sample_table_is_an_error_not_a_skip(candidate: Path, tmp_path: Path, optional: bool) -> None:
    (candidate / "per_sample.csv").unlink()
    rules = write_rules(tmp_path / "gate.toml", PER_SAMPLE_RULE + ("optional = true\n" if optional else ""))
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 2
    line = error_line(err)
    assert "records the per-sample column clean/loss" in line and "per_sample.csv is missing" in line


@pytest.mark.parametrize("severity", ["ERROR", None, 2])
def test_a_flag_of_unknown_severity_is_refused_not_passed(candidate: Path, tmp_path: Path, severity: object) -> None:
    import json

    results = json.loads((candidate / "results.json").read_text(encoding="utf-8"))
    results["flags"].append({"id": "probabilities_not_logits", "severity": severity, "source": "preflight",
                             "message": "edited"})
    (candidate / "results.json").write_text(json.dumps(results), encoding="utf-8")
    rules = write_rules(tmp_path / "gate.toml", '[[rule]]\nmin-severity = "warning"\n')
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 2
    assert "flags › [" in error_line(err) and "severity" in error_line(err)


@pytest.mark.parametrize("status", ["failed", "interrupted", "never started"])
def test_a_flag_rule_never_passes_over_a_probe_that_did_not_finish(candidate: Path, tmp_path: Path,
                                                                    status: str) -> None:
    import json

    results = json.loads((candidate / "results.json").read_text(encoding="utf-8"))
    if status == "never started":
        del results["probes"]["calibration"]
        results["status"] = "interrupted"
    else:
        results["probes"]["calibration"].update(status=status, error={"type": "RuntimeError", "message": "boom"})
    (candidate / "results.json").write_text(json.dumps(results), encoding="utf-8")
    any_error = write_rules(tmp_path / "any.toml", '[[rule]]\nmin-severity = "error"\n')
    code, out, _ = cli(["gate", str(candidate), "--rules", str(any_error)])
    assert code == 1
    assert "calibration" in out
    # a rule narrowed to the sources that finished is evaluated as before
    preflight_only = write_rules(tmp_path / "pre.toml", '[[rule]]\nmin-severity = "error"\nsources = ["preflight", "clean"]\n')
    assert cli(["gate", str(candidate), "--rules", str(preflight_only)])[0] == 0


def test_an_edited_direction_in_results_json_is_refused_not_obeyed(candidate: Path, tmp_path: Path) -> None:
    """``clean`` declares higher accuracy is better; a results.json that says lower would turn 'at least 0.99'
    into 'at most 0.99' and pass a poor model."""
    import json

    results = json.loads((candidate / "results.json").read_text(encoding="utf-8"))
    results["probes"]["clean"]["summary"]["accuracy"]["value"] = 0.1
    results["probes"]["clean"]["higher_is_better"] = {"accuracy": False, "mean_loss": False}
    (candidate / "results.json").write_text(json.dumps(results), encoding="utf-8")
    rules = write_rules(tmp_path / "gate.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.99\n")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 2
    line = error_line(err)
    assert "says lower is better" in line and "declares higher is better" in line
    # a rule that states its direction does not read the mirror at all, and fails the poor model
    stated = write_rules(tmp_path / "stated.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.99\nhigher-is-better = true\n")
    assert cli(["gate", str(candidate), "--rules", str(stated)])[0] == 1


def test_a_direction_written_by_another_version_of_the_probe_is_not_called_edited(candidate: Path,
                                                                                  tmp_path: Path) -> None:
    """Results written by another version of a probe (a version is bumped when the meaning of a number changes,
    its direction included) are read by their own mirror: the installed declaration is not evidence of an edit."""
    import json

    results = json.loads((candidate / "results.json").read_text(encoding="utf-8"))
    results["probes"]["clean"]["version"] = "1"  # an older clean probe whose accuracy was an error rate
    results["probes"]["clean"]["summary"]["accuracy"]["value"] = 0.1
    results["probes"]["clean"]["higher_is_better"] = {"accuracy": False, "mean_loss": False}
    (candidate / "results.json").write_text(json.dumps(results), encoding="utf-8")
    rules = write_rules(tmp_path / "gate.toml", f"[[rule]]\nmetric = {ACC}\nthreshold = 0.2\n")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == 0, err
