"""Fixtures of the zoo tests: one finished sweep of the issue's minimal manifest, shared read-only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_fixtures import make_zoo  # noqa: E402

WORKERS = 2


def robaudit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "robaudit", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(manifest, zoo out dir, the finished process) of ``robaudit zoo zoo.toml --out zoo --workers 2``."""
    root = tmp_path_factory.mktemp("zoo")
    manifest = make_zoo(root)
    proc = robaudit("zoo", str(manifest), "--out", str(root / "zoo"), "--workers", str(WORKERS), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return manifest, root / "zoo", proc
