"""``robaudit zoo --ray`` at its boundary: an unreachable cluster, the reason of a failed Ray task, and the Ray
worker's zoo worker following the GPUs Ray gives each task."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import RAY_ENV
from zoo_fixtures import make_zoo

ray = pytest.importorskip("ray")


def _dead_port() -> int:
    """A local TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_unreachable_ray_address_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, where: str) -> None:
    manifest = make_zoo(tmp_path, n_models=1)
    address = f"127.0.0.1:{_dead_port()}"
    args, env = (["--ray", address], {}) if where == "option" else (["--ray"], {"RAY_ADDRESS": address})
    proc = subprocess.run([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", "zoo", *args],
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", **RAY_ENV, **env},
                          capture_output=True, text=True, timeout=120)  # ray.init would retry for minutes
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robaudit: error: no Ray cluster answers at " + address), lines
    assert "check --ray ADDRESS / RAY_ADDRESS" in lines[0]
    assert not (tmp_path / "zoo").exists()  # not left as a sweep: a rerun needs no --resume


def test_ray_init_failing_is_a_usage_error_before_anything_is_written(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Something listens at the address but Ray's handshake fails: Ray's own error, one line, exit 2."""
    from robaudit.errors import UsageError
    from robaudit.zoo.manifest import read_manifest
    from robaudit.zoo.sweep import run_sweep

    def refuse(**kwargs: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    monkeypatch.setattr(ray, "init", refuse)
    manifest = read_manifest(make_zoo(tmp_path, n_models=1))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = "ray://127.0.0.1:%d" % server.getsockname()[1]
        with pytest.raises(UsageError) as info:
            run_sweep(manifest, tmp_path / "zoo", use_ray=True, ray_address=address)
    assert info.value.one_line() == (f"could not connect to the Ray cluster at {address}: ConnectionError: Could not "
                                     "find any running Ray instance. Fix: check --ray ADDRESS / RAY_ADDRESS: the "
                                     "head node's address and port, and that the cluster is running.")
    assert not (tmp_path / "zoo").exists()


def test_only_lost_workers_and_nodes_are_said_to_be_retried() -> None:
    from robaudit.zoo.ray_backend import MAX_RETRIES, ray_failure

    retried = [ray.exceptions.WorkerCrashedError(), ray.exceptions.NodeDiedError("node 7 died\nmore")]
    for exc in retried:
        assert ray_failure(exc, ray.exceptions) == \
            f"the Ray task failed after {MAX_RETRIES} retries: {str(exc).strip().splitlines()[0]}"
    once = ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.\ndetails")
    assert ray_failure(once, ray.exceptions) == \
        "the Ray task failed: Task was killed due to the node running low on memory."


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the worker's environment from /proc")
def test_the_zoo_worker_is_restarted_when_ray_gives_the_task_other_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray reuses its worker process and sets CUDA_VISIBLE_DEVICES per task: a zoo worker started under one
    task's GPUs (its environment, as /proc shows it) must not run the next task's model."""
    from robaudit.zoo.ray_backend import worker_is_stale
    from robaudit.zoo.worker import WorkerClient

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    worker = WorkerClient(threads=1)
    try:
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=0" in environ
        assert not worker_is_stale(worker, 1)
        assert worker_is_stale(worker, 2)  # another thread count
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
        assert worker_is_stale(worker, 1)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        assert worker_is_stale(worker, 1)
    finally:
        worker.close(kill=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert worker_is_stale(worker, 1)  # it died


@pytest.mark.parametrize("port", ["99999999999999999999", "0", "²"])
def test_a_ray_address_with_an_impossible_port_is_exit_2(tmp_path: Path, port: str) -> None:
    """A port no TCP connection can have is the user's typo (one line, exit 2), not an OverflowError or
    ValueError escaping the address check as an internal error (exit 3)."""
    manifest = make_zoo(tmp_path, n_models=1)
    proc = subprocess.run([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", "zoo",
                           "--ray", f"127.0.0.1:{port}"],
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", **RAY_ENV},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the port must be a number from 1 to 65535" in lines[0], lines
    assert not (tmp_path / "zoo").exists()
