"""Stopping ``robaudit zoo`` through the real CLI: Ctrl-C (SIGINT to the terminal's whole process group) and
SIGTERM (to the driver alone, as a CI cancel may send it) stop the sweep with exit 4; the models in flight
keep their finished probes and are recorded as ``interrupted``, the queued ones are not started, no process is
left behind, and ``--resume`` finishes the sweep."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from robaudit.results import zoo_schema
from zoo_fixtures import make_zoo

N_MODELS = 4
WORKERS = 2


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux ``/proc/PID/task/TID/children``)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += kids - found
            found |= kids
    return found


def _alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, already dead and waiting to be reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _a_probe_finished(out: Path) -> bool:
    """Whether some model's results.json (written atomically) holds a finished probe."""
    for path in (out / "models").glob("*/results.json"):
        try:
            if "ok" in {p["status"] for p in json.loads(path.read_text())["probes"].values()}:
                return True
        except (OSError, ValueError, KeyError):
            pass
    return False


def _deliverable() -> None:
    """In the driver before it starts: Ctrl-C and SIGTERM as a terminal or CI deliver them, whatever the state
    of the test process (a process started in the background of a shell ignores SIGINT, and its children too)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_stopped_sweep_exits_4_keeps_its_work_and_resumes(tmp_path: Path, how: str) -> None:
    manifest = make_zoo(tmp_path, n_models=N_MODELS)
    out = tmp_path / "zoo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", str(out),
                               "--workers", str(WORKERS)], cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_deliverable)
    try:
        deadline = time.monotonic() + 600
        while not _a_probe_finished(out) and time.monotonic() < deadline:  # the sweep is well under way
            assert driver.poll() is None, "the sweep ended before it could be stopped"
            time.sleep(0.1)
        processes = _descendants(driver.pid)  # the workers and the audits in flight
        assert len(processes) >= 2 * WORKERS - 1
        if how == "ctrl-c":
            os.killpg(driver.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        else:
            driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 4, stderr
    time.sleep(0.5)
    assert not [pid for pid in processes if _alive(pid)]  # no orphan audit, no worker

    records = {p.stem: json.loads(p.read_text()) for p in (out / "tasks").glob("*.json")}
    interrupted = {n for n, r in records.items() if r["status"] == "interrupted"}
    assert interrupted, records
    assert {r["status"] for r in records.values()} <= {"ok", "interrupted"}
    kept = set()
    for name in interrupted:  # a model may have been stopped before its audit wrote anything
        assert records[name]["exit_code"] == 4
        path = out / "models" / name / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {"status": "interrupted", "probes": {}}
        assert results["status"] == "interrupted"
        if "ok" in {p["status"] for p in results["probes"].values()}:
            kept.add(name)
    assert kept  # the model stopped after its first probe kept that probe's result
    never_started = {f"bs{16 * 2 ** k}" for k in range(N_MODELS)} - set(records)
    assert never_started  # the queued models did not run ...
    for name in never_started:
        assert not (out / "models" / name / "results.json").exists()
    document = json.loads((out / "zoo.json").read_text())
    jsonschema.validate(document, zoo_schema())  # "interrupted" and "pending" rows are published statuses
    rows = {r["name"]: r["status"] for r in document["models"]}
    assert {n for n, s in rows.items() if s == "pending"} == never_started  # ... and the table says so
    assert {n for n, s in rows.items() if s == "interrupted"} == interrupted
    assert stderr.strip().splitlines()[-1].startswith("robaudit: zoo interrupted"), stderr
    assert "Traceback" not in stderr

    resumed = subprocess.run([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", str(out),
                              "--workers", str(WORKERS), "--resume"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    rows = {r["name"]: r["status"] for r in json.loads((out / "zoo.json").read_text())["models"]}
    assert set(rows.values()) == {"ok"} and len(rows) == N_MODELS
