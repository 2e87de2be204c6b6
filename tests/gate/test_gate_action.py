"""The composite GitHub Action (``action.yml``): its audit step's real shell script, run here with
the inputs GitHub would substitute, audits, gates, and reports robaudit's exit code as an output."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO
from robaudit.exitcodes import ExitCode

ACTION = yaml.safe_load((REPO / "action.yml").read_text())
EXPR = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")


def _step(name: str) -> dict:
    return next(s for s in ACTION["runs"]["steps"] if s.get("name") == name)


def _substitute(text: str, inputs: dict[str, str]) -> str:
    """GitHub's ``${{ inputs.X }}`` / ``${{ github.action_path }}`` substitution, for the names used."""
    def one(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("inputs."):
            return inputs[ref.removeprefix("inputs.")]
        if ref == "github.action_path":
            return str(REPO)
        raise AssertionError(f"unexpected expression {ref}")
    return EXPR.sub(one, text)


def _run_audit_step(inputs: dict[str, str], cwd: Path) -> tuple[int, dict[str, str], str]:
    step = _step("Audit and gate")
    defaults = {k: v.get("default", "") for k, v in ACTION["inputs"].items()}
    values = {**defaults, **inputs}
    output_file = cwd / "github_output"
    env = {**os.environ, **{k: _substitute(str(v), values) for k, v in step["env"].items()},
           "GITHUB_OUTPUT": str(output_file), "GITHUB_STEP_SUMMARY": str(cwd / "summary.md"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert step["shell"] == "bash"
    proc = subprocess.run(["bash", "-e", "-c", _substitute(step["run"], values)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines())
    return proc.returncode, outputs, proc.stderr


def test_action_declares_every_input_it_uses_and_always_uploads_the_results() -> None:
    used = {m.removeprefix("inputs.") for m in EXPR.findall((REPO / "action.yml").read_text()) if m.startswith("inputs.")}
    assert used <= set(ACTION["inputs"]), used - set(ACTION["inputs"])
    assert ACTION["runs"]["using"] == "composite"
    upload = _step("Upload the report and results")
    assert upload["if"] == "always()" and upload["with"]["path"] == "${{ inputs.out }}"
    assert "$ACTION_PATH" in _step("Install robaudit")["run"]


@pytest.mark.slow
def test_action_audit_step_passes_fails_and_compares_with_a_baseline(gate_base: Path, tmp_path: Path) -> None:
    shutil.copytree(gate_base, tmp_path / "baseline")
    (tmp_path / "pass.toml").write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\n'
                                        'threshold = 0.5\n')
    (tmp_path / "fail.toml").write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\n'
                                        'threshold = 1.01\n')
    (tmp_path / "relative.toml").write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\n'
                                            'max-regression = 0.0\n')
    args = f"--arch {DEMO_ARCH} --n-samples 60 --probes clean,calibration --threads 2 -q"
    base = {"model": str(DEMO_CHECKPOINT), "args": args}

    code, outputs, err = _run_audit_step({**base, "rules": "pass.toml", "out": "a"}, tmp_path)
    assert code == ExitCode.OK, err
    assert outputs == {"exit-code": "0", "report": "a/report.html"}
    assert (tmp_path / "a" / "report.html").is_file() and (tmp_path / "a" / "gate-junit.xml").is_file()
    assert "robaudit gate passed" in (tmp_path / "summary.md").read_text()

    code, outputs, err = _run_audit_step({**base, "rules": "fail.toml", "out": "b"}, tmp_path)
    assert code == ExitCode.GATE_FAILED, err
    assert outputs["exit-code"] == "1"
    assert "robaudit gate FAILED" in (tmp_path / "summary.md").read_text()

    # the same model as the baseline: no regression; the step gates the saved results against it
    code, outputs, err = _run_audit_step({**base, "rules": "relative.toml", "baseline": "baseline", "out": "c"},
                                         tmp_path)
    assert code == ExitCode.OK, err
    assert outputs["exit-code"] == "0"
    assert '"baseline"' in (tmp_path / "c" / "results.json").read_text()

    # no rules: a plain audit, robaudit's exit code passed through
    code, outputs, err = _run_audit_step({**base, "out": "d"}, tmp_path)
    assert code == ExitCode.OK and outputs["exit-code"] == "0", err
    assert not (tmp_path / "d" / "gate-junit.xml").exists()
