"""Fixtures of the gate tests: one real audit of the demo checkpoint, shared by every gate test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from gate_helpers import cli_code


@pytest.fixture(scope="session")
def gate_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``robaudit run`` on the demo checkpoint: 60 digits, clean + calibration (read-only; copy to change)."""
    out = tmp_path_factory.mktemp("gate") / "base"
    code = cli_code(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "60",
                     "--probes", "clean,calibration", "--threads", "2", "--out", str(out), "-q"])
    assert code == 0
    return out


@pytest.fixture
def candidate(gate_base: Path, tmp_path: Path) -> Path:
    """A writable copy of :func:`gate_base` to gate (and to edit into a regressed candidate)."""
    dst = tmp_path / "candidate"
    shutil.copytree(gate_base, dst)
    return dst


@pytest.fixture
def baseline(gate_base: Path, tmp_path: Path) -> Path:
    """A second writable copy of :func:`gate_base`, used as the baseline."""
    dst = tmp_path / "baseline"
    shutil.copytree(gate_base, dst)
    return dst


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that run inside GitHub Actions must not append to the real job summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
