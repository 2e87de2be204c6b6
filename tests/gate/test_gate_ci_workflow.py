"""The CI workflow of docs/ci-gate.md end to end: audit a checkpoint with ``robaudit run --gate``
against a committed baseline, with a passing model and a regressed one, then re-gate the saved
results with ``robaudit gate`` (no recomputation)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from junitparser import Failure, JUnitXml
from safetensors import safe_open
from safetensors.torch import save_file

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from gate_helpers import cli
from robaudit.exitcodes import ExitCode

RULES = """\
# gate.toml, committed next to the baseline results (the workflow in docs/ci-gate.md)
baseline = "baseline"
level = 0.05

[[rule]]
id = "clean accuracy at least 0.80"
metric = ["probes", "clean", "summary", "accuracy"]
threshold = 0.80

[[rule]]
id = "clean accuracy no worse than the baseline (beyond noise)"
metric = ["probes", "clean", "summary", "accuracy"]
max-regression = 0.0

[[rule]]
id = "calibration error at most 3x the baseline"
metric = ["probes", "calibration", "summary", "ece"]
max-ratio = 3.0

[[rule]]
id = "no error flags"
min-severity = "error"
"""


@pytest.fixture
def repo(gate_base: Path, tmp_path: Path) -> Path:
    """A project checkout: the committed baseline results and the rules file beside it."""
    root = tmp_path / "repo"
    shutil.copytree(gate_base, root / "robustness" / "baseline")
    (root / "robustness" / "gate.toml").write_text(RULES)
    return root


def _degraded_checkpoint(path: Path) -> Path:
    """The demo checkpoint with seeded Gaussian noise (0.8 × each tensor's std) on every weight."""
    with safe_open(str(DEMO_CHECKPOINT), "pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.8 * v.std() * torch.randn(v.shape, generator=gen) for k, v in state.items()}
    save_file(noisy, str(path), metadata=metadata)
    return path


def _audit_and_gate(checkpoint: Path, out: Path) -> tuple[int, str, str]:
    return cli(["run", str(checkpoint), "--arch", DEMO_ARCH, "--n-samples", "60", "--probes", "clean,calibration",
                "--threads", "2", "--out", str(out), "--gate", "robustness/gate.toml"])  # relative, as in CI


@pytest.mark.slow
def test_ci_workflow_passes_a_good_model_and_fails_a_regressed_one(repo: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.chdir(repo)

    # 1. the PR's checkpoint is the baseline model: everything passes
    good = tmp_path / "audit-good"
    code, out, err = _audit_and_gate(DEMO_CHECKPOINT, good)
    assert code == ExitCode.OK, err
    assert out.strip() == f"report: {good / 'report.html'}"  # run's stdout is unchanged; the table goes to stderr
    assert "robaudit gate passed: 0 of 4 rule(s) failed, 4 passed" in err
    gate = json.loads((good / "results.json").read_text())["gate"]
    assert gate["status"] == "passed"
    assert gate["baseline"]["path"] == str(Path("robustness") / "baseline")
    assert '<div class="v">passed</div>' in (good / "report.html").read_text()
    assert JUnitXml.fromfile(str(good / "gate-junit.xml")).tests == 4

    # 2. a regressed checkpoint: the audit runs, the gate fails with exit 1 and says why
    bad = tmp_path / "audit-bad"
    code, out, err = _audit_and_gate(_degraded_checkpoint(tmp_path / "degraded.safetensors"), bad)
    assert code == ExitCode.GATE_FAILED, err
    results = json.loads((bad / "results.json").read_text())
    accuracy = results["probes"]["clean"]["summary"]["accuracy"]["value"]
    baseline_accuracy = json.loads((repo / "robustness" / "baseline" / "results.json").read_text()
                                   )["probes"]["clean"]["summary"]["accuracy"]["value"]
    assert accuracy < baseline_accuracy - 0.2  # a real regression, measured by the audit itself
    statuses = {r["id"]: r["status"] for r in results["gate"]["rules"]}
    assert statuses["clean accuracy at least 0.80"] == "failed"
    assert statuses["clean accuracy no worse than the baseline (beyond noise)"] == "failed"
    regression = next(r for r in results["gate"]["rules"] if r["kind"] == "max_regression")
    assert regression["noise"]["method"] == "two-proportion" and regression["noise"]["p_value"] < 0.05
    failures = [c.name for s in JUnitXml.fromfile(str(bad / "gate-junit.xml")) for c in s
                if any(isinstance(r, Failure) for r in c.result)]
    assert "clean accuracy at least 0.80" in failures
    html = (bad / "report.html").read_text()
    assert "Gate rule <strong>clean accuracy at least 0.80</strong> failed" in html

    # both runs appended their summaries to the job summary, in order
    text = summary.read_text()
    assert text.index("### ✅ robaudit gate passed") < text.index("### ❌ robaudit gate FAILED")

    # 3. re-gating the saved results gives the same verdict without recomputing anything
    per_sample = (bad / "per_sample.csv").read_bytes()
    code, out, _ = cli(["gate", str(bad), "--rules", "robustness/gate.toml"])
    assert code == ExitCode.GATE_FAILED
    assert (bad / "per_sample.csv").read_bytes() == per_sample
    again = json.loads((bad / "results.json").read_text())["gate"]
    assert [(r["id"], r["status"], r["message"]) for r in again["rules"]] == \
        [(r["id"], r["status"], r["message"]) for r in results["gate"]["rules"]]


def test_bad_rules_fail_before_the_audit_runs(tmp_path: Path) -> None:
    rules = tmp_path / "gate.toml"
    rules.write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\nthreshhold = 0.8\n')
    code, _, err = cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--out", str(tmp_path / "out"),
                        "--gate", str(rules), "-q"])
    assert code == ExitCode.USAGE
    assert "did you mean 'threshold'" in err
    assert not (tmp_path / "out").exists()  # nothing was audited
