"""Fixed costs: ``robaudit --version``, ``probes`` and ``validate`` import no plotting, sparse-matrix
or attack library (issue #17). Each command runs in a fresh interpreter under ``python -X importtime``,
which lists every module the process imported, whoever imported it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO

HEAVY = ("matplotlib", "scipy.sparse", "torchattacks")


def _imported_modules(args: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m robaudit ARGS``; (the process, every module name it imported)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "robaudit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    names.discard("imported package")  # the header line
    return proc, names


def _heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", [
    ["--version"],
    ["probes"],
    ["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits"],
], ids=["version", "probes", "validate"])
def test_cli_imports_no_heavy_module(args: list[str]) -> None:
    proc, names = _imported_modules(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "robaudit.cli.main" in names  # importtime did list the process's imports
    if args[0] == "validate":
        assert proc.stdout.strip().splitlines()[-1] == "valid"
        assert "robaudit.preflight" in names and "robaudit.data.digits" in names  # it really loaded and checked
    assert _heavy(names) == []


def test_importtime_listing_sees_heavy_modules() -> None:
    """The check above can fail: rendering a report imports matplotlib, and importtime lists it."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "from robaudit.report.figures import reliability_diagram; reliability_diagram([])"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "matplotlib" in _heavy(names)
