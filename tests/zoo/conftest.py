"""Fixtures of the zoo tests: one finished sweep of the issue's minimal manifest, shared read-only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_fixtures import PROBES, N_SAMPLES, make_zoo  # noqa: E402

WORKERS = 2
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(100 * 2**20),
           "RAY_DEDUP_LOGS": "0"}
"""Keeps the tests' local Ray instance light (its dashboard is off: ``include_dashboard=False``)."""


def robaudit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process (``env`` adds to the environment)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "robaudit", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(manifest, zoo out dir, the finished process) of ``robaudit zoo zoo.toml --out zoo --workers 2``."""
    root = tmp_path_factory.mktemp("zoo")
    manifest = make_zoo(root)
    proc = robaudit("zoo", str(manifest), "--out", str(root / "zoo"), "--workers", str(WORKERS), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return manifest, root / "zoo", proc


@pytest.fixture(scope="session")
def singles(swept: tuple[Path, Path, subprocess.CompletedProcess[str]],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model of ``swept``'s manifest audited by a single ``robaudit run`` (with the zoo's thread share)."""
    from robaudit.zoo.sweep import thread_share

    manifest, _, _ = swept
    root = tmp_path_factory.mktemp("singles")
    out = {}
    for name in ("bs16", "bs32", "bs64"):
        source = str(manifest.parent / "runs" / name / "model.pt")  # the zoo resolves it from the manifest
        proc = robaudit("run", source, "--arch", "models.py:M1", "--arch-kwargs", '{"num_classes": 10}', "--dataset",
                        "digits", "--probes", ",".join(PROBES), "--n-samples", str(N_SAMPLES),
                        "--threads", str(thread_share(WORKERS)), "--out", str(root / name), "-q", cwd=manifest.parent)
        assert proc.returncode == 0, proc.stderr
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def ray_swept(swept: tuple[Path, Path, subprocess.CompletedProcess[str]]
              ) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(manifest, zoo out dir, the finished process) of ``robaudit zoo zoo.toml --out zoo-ray --workers 2 --ray``:
    the same manifest as ``swept``, on a local Ray instance of 2 CPUs that the sweep starts and shuts down."""
    manifest, _, _ = swept
    out = manifest.parent / "zoo-ray"
    proc = robaudit("zoo", str(manifest), "--out", str(out), "--workers", str(WORKERS), "--ray", cwd=manifest.parent,
                    env=RAY_ENV)
    assert proc.returncode == 0, proc.stderr
    return manifest, out, proc
