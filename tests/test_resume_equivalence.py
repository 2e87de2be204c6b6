"""--resume gives exactly the results of an uninterrupted run (issue #13's "Done when").

For every probe boundary of the standard audit plus the opt-in attacks and one plugin probe
(attack.fhsm, which reads attack.fgsm's result when it ran): stop the run right after that probe's
result is on disk — SIGKILL of a real ``robaudit run`` process, or Ctrl-C (SIGINT) — resume it,
and compare with one uninterrupted run of the same seed: ``results.json`` identical in every leaf
except timings and the run's command line, ``per_sample.csv`` byte-identical.

The stop uses the engine's test-only hook ``ROBAUDIT_TEST_STOP_AFTER=<probe>:KILL|INT`` (inert
unless set). 24 samples and small attack knobs keep the whole matrix affordable for CI.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.attack_outcomes import load_outcome_table, to_json_text
from robaudit.cli.main import main
from robaudit.config import AuditConfig
from robaudit.engine.runner import TEST_STOP_VARIABLE, select_probes
from robaudit.exitcodes import ExitCode
from robaudit.probes.registry import ProbeRegistry

pytestmark = pytest.mark.slow

PROBES = ["standard", "attack.bim", "attack.l2grad", "attack.pgd_l2", "attack.cw_l2", "attack.autoattack",
          "attack.fab", "attack.fhsm"]
KNOBS = {"attack.bim.steps": "3", "attack.pgd_l2.steps": "3", "attack.cw_l2.steps": "10",
         "attack.cw_l2.binary_search_steps": "2", "attack.fab.steps": "5", "attack.autoattack.preset": "fast",
         "attack.autoattack.square_queries": "50", "curvature.topk.k": "2", "geometry.surfaces.samples": "2"}
ARGS = [str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits", "--n-samples", "24", "--seed", "3",
        "--threads", "1", "--no-report", "-q", "--probes", ",".join(PROBES),
        *[arg for knob, value in KNOBS.items() for arg in ("--set", f"{knob}={value}")]]

# what may differ between an uninterrupted and a resumed run: timings and the command line
VOLATILE_KEYS = {"created", "started", "duration_s", "command", "seconds", "seconds_per_fwd_bwd"}  # timings
VOLATILE_CONFIG = {"out", "resume"}
TIMING = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)? ?(?:ms|s)\b")


def _boundaries() -> list[str]:
    """The run order of the audit above: a stop after each of these probes is one boundary."""
    config = AuditConfig(model=str(DEMO_CHECKPOINT), probes=PROBES)
    return [s.name for s in select_probes(config, ProbeRegistry())]


BOUNDARIES = _boundaries()


def _normalised(results: dict[str, Any]) -> Any:
    def walk(node: Any, path: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()
                    if k not in VOLATILE_KEYS and not (path == ("config",) and k in VOLATILE_CONFIG)}
        if isinstance(node, list):
            return [walk(v, path) for v in node]
        if isinstance(node, str):
            return TIMING.sub("<time>", node)
        return node
    return walk(results, ())


def _assert_same_results(reference: Path, resumed: Path) -> None:
    ref = json.loads((reference / "results.json").read_text())
    got = json.loads((resumed / "results.json").read_text())
    assert got["status"] == "complete"
    a, b = _normalised(ref), _normalised(got)
    if a != b:
        differing = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        probes = [n for n in a.get("probes", {}) if a["probes"][n] != b.get("probes", {}).get(n)]
        pytest.fail(f"results.json differs in {differing}; probes {probes}")
    assert (reference / "per_sample.csv").read_bytes() == (resumed / "per_sample.csv").read_bytes()
    assert to_json_text(load_outcome_table(resumed)) == to_json_text(load_outcome_table(reference))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run with the same seed."""
    out = tmp_path_factory.mktemp("reference") / "audit"
    assert main(["run", *ARGS, "--out", str(out)]) == ExitCode.OK
    return out


def test_the_matrix_covers_every_probe_boundary() -> None:
    assert len(BOUNDARIES) == 17 and "attack.fhsm" in BOUNDARIES and "attack.worst_case" in BOUNDARIES
    assert BOUNDARIES.index("attack.fgsm") < BOUNDARIES.index("attack.fhsm")


def test_the_saved_outcome_table_matches_what_results_json_counts(reference: Path) -> None:
    """``robaudit report`` and the gate rebuild the engine's table from disk: the same counts."""
    results = json.loads((reference / "results.json").read_text())
    table = load_outcome_table(reference)
    assert {"sources": results["attack_outcomes"]["sources"], **table.summary()} == results["attack_outcomes"]
    assert set(results["attack_outcomes"]["sources"]) == {n for n in BOUNDARIES if n.startswith("attack.")} - {
        "attack.worst_case"}
    worst = results["probes"]["attack.worst_case"]["summary"]
    for norm, outcomes in table.norms.items():
        assert worst[norm]["eps"] == list(outcomes.eps)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_sigkill_at_a_probe_boundary_then_resume_equals_an_uninterrupted_run(
        boundary: str, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    env = {**os.environ, TEST_STOP_VARIABLE: f"{boundary}:KILL", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-m", "robaudit", "run", *ARGS, "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "running" and boundary in saved["probes"]
    assert main(["run", *ARGS, "--resume", str(out)]) == ExitCode.OK
    _assert_same_results(reference, out)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_ctrl_c_at_a_probe_boundary_then_resume_equals_an_uninterrupted_run(
        boundary: str, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "audit"
    monkeypatch.setenv(TEST_STOP_VARIABLE, f"{boundary}:INT")
    assert main(["run", *ARGS, "--out", str(out)]) == ExitCode.INTERRUPTED
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "interrupted" and saved["probes"][boundary]["status"] == "ok"
    monkeypatch.delenv(TEST_STOP_VARIABLE)
    assert main(["run", *ARGS, "--resume", str(out)]) == ExitCode.OK
    _assert_same_results(reference, out)
