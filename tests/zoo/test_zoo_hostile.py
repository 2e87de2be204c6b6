"""Hostile models and sweeps for ``robaudit zoo``: a model whose process ends with exit code 0 or 1 before its
audit finished, and two sweeps into one --out at once. Run through the real CLI in child processes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import robaudit
from zoo_fixtures import make_zoo, variant

QUITS = '''
import os

from digits_cnn import DigitsCNN


class QuitsWith0(DigitsCNN):
    """Ends its audit's process with exit code 0 in the middle of the audit, as a crash that says "ok"."""

    def forward(self, x):
        os._exit(0)


class QuitsWith1(DigitsCNN):
    """Ends its audit's process with exit code 1 (the gate's code) although no gate was given."""

    def forward(self, x):
        os._exit(1)
'''


def test_a_model_that_exits_0_or_1_before_its_audit_finished_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    manifest = make_zoo(tmp_path, n_models=1, probes=["clean"])
    (tmp_path / "quits.py").write_text(QUITS, encoding="utf-8")
    variant(tmp_path / "demo.pt", seed=5, scale=0.0)
    with manifest.open("a", encoding="utf-8") as f:
        for name, cls in (("zero", "QuitsWith0"), ("one", "QuitsWith1")):
            f.write(f'[[model]]\nname = "{name}"\nsource = "demo.pt"\narch = "quits.py:{cls}"\n\n')
    proc = robaudit("zoo", str(manifest), "--out", "zoo", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"]}
    assert rows["bs16"]["status"] == "ok"
    for name, code in (("zero", 0), ("one", 1)):
        assert rows[name]["status"] == "failed", rows[name]
        assert rows[name]["exit_code"] == code  # what the process did, kept
        assert f"exited with code {code}" in rows[name]["reason"] and "before its audit finished" in rows[name]["reason"]
        assert f"zoo: {name} failed (exit {code})" in proc.stderr
    assert proc.returncode == 3, proc.stderr  # a crash, as a killed process is: never 0 (ok) or 1 (gate failed)
    assert "Traceback" not in proc.stderr


def test_a_second_sweep_into_a_locked_out_stops_with_exit_2_naming_the_holder(tmp_path: Path) -> None:
    """A sweep holds --out's lock for its whole length; a second sweep (fresh or --resume) is refused before it
    writes anything, as a second ``robaudit run`` into one directory is."""
    manifest = make_zoo(tmp_path, n_models=1, probes=["clean"])
    (tmp_path / "zoo").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (  # another process holding the lock as robaudit does
        "import os, sys, time\nfrom filelock import FileLock\n"
        "with FileLock(sys.argv[1], timeout=0):\n"
        "    open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
        "    print('held', flush=True)\n    time.sleep(120)\n"), str(tmp_path / "zoo" / ".robaudit.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"]):
            proc = robaudit("zoo", str(manifest), "--out", "zoo", *extra, cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("robaudit: error")]
            assert len(lines) == 1 and f"in use by another robaudit run (PID {holder.pid})" in lines[0], proc.stderr
            assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == [".robaudit.lock"]
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    proc = robaudit("zoo", str(manifest), "--out", "zoo", cwd=tmp_path)  # the lock died with its holder
    assert proc.returncode == 0, proc.stderr


def test_resume_after_the_manifest_changed_a_models_samples_or_checkpoint_starts_it_afresh(tmp_path: Path) -> None:
    """--resume continues what it can; a model whose earlier audit used other samples or another checkpoint cannot
    be continued, so it is audited afresh, with its earlier files moved aside (never a failure on every resume)."""
    manifest = make_zoo(tmp_path, n_models=2, probes=["clean"])
    assert robaudit("zoo", str(manifest), "--out", "zoo", cwd=tmp_path).returncode == 0
    text = manifest.read_text(encoding="utf-8").replace("n-samples = 40", "n-samples = 30")
    manifest.write_text(text, encoding="utf-8")
    variant(tmp_path / "runs" / "bs32" / "model.pt", seed=9, scale=0.05)  # and a new checkpoint for bs32
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"]}
    for name in ("bs16", "bs32"):
        assert rows[name]["status"] == "ok", rows[name]
        model_dir = tmp_path / "zoo" / "models" / name
        results = json.loads((model_dir / "results.json").read_text())
        assert results["data"]["n_used"] == 30
        previous = [p for p in model_dir.iterdir() if p.name.startswith("previous-")]
        assert len(previous) == 1 and json.loads((previous[0] / "results.json").read_text())["data"]["n_used"] == 40
    assert rows["bs32"]["sha256"] != json.loads(
        (next((tmp_path / "zoo" / "models" / "bs32").glob("previous-*")) / "results.json").read_text()
    )["model"]["checkpoint_sha256"]


def test_zoo_csv_has_one_column_per_field_when_a_model_failed() -> None:
    """A failed model's null clean accuracy was its own ``clean_accuracy`` column next to the finished
    models' ``clean_accuracy/value`` …; now its cells in those columns are empty, and every cell reads back
    as the row's value in zoo.json."""
    import csv
    import io

    from robaudit.zoo.table import csv_text

    done = {"name": "a", "status": "ok", "clean_accuracy": {"value": 0.9, "low": 0.8, "high": 0.95, "n": 40},
            "robust_accuracy": {"linf": {"0.1": {"value": 0.5, "n": 40}}}, "tags": {}}
    failed = {"name": "b", "status": "failed", "clean_accuracy": None, "robust_accuracy": {}, "tags": {}}
    for rows in ([done, failed], [failed, done]):
        table = list(csv.DictReader(io.StringIO(csv_text(rows))))
        header = list(table[0].keys())
        assert "clean_accuracy" not in header and len(header) == len(set(header))
        by_name = {r["name"]: r for r in table}
        assert by_name["a"]["clean_accuracy/value"] == "0.9" and by_name["a"]["robust_accuracy/linf/0.1/value"] == "0.5"
        assert by_name["b"]["clean_accuracy/value"] == "" and by_name["b"]["status"] == "failed"


def test_only_the_error_line_of_a_refused_resume_starts_a_model_afresh(tmp_path: Path) -> None:
    """``run --resume`` warns "--resume DIR: those results were made with --seed …" and reruns every probe; when that
    audit then fails with another usage error, the model must not be restarted with --overwrite (moving its
    earlier files aside and running it twice): only the error line says whether the resume itself was refused."""
    from robaudit.zoo.task import Attempt, TaskRequest, run_task

    out = tmp_path / "models" / "m"
    out.mkdir(parents=True)
    (out / "results.json").write_text("{}", encoding="utf-8")
    calls: list[list[str]] = []

    def attempt(argv: list[str], cwd: Path, threads: int, log: Path) -> Attempt:
        calls.append(argv)
        return Attempt(2, None, f"robaudit: WARNING: --resume {out}: those results were made with --seed 0, this run "
                                "uses 1; every probe runs again\nrobaudit: error: unknown knob 'clean.bins'. Fix: see "
                                "robaudit probes clean\n")

    request = TaskRequest("m", "m.safetensors", {}, str(out), str(tmp_path / "tasks"), str(tmp_path), True, 1, None,
                          "d")
    record = run_task(request, attempt)
    assert len(calls) == 1 and "--overwrite" not in calls[0]
    assert record.status == "failed" and "unknown knob" in record.reason

    calls.clear()  # the refusal itself (the real message's form) does start the model afresh
    refused = (f"robaudit: error: --resume {out}: those results were made with a different model (arch is 'a' there "
               "and 'b' now). Fix: use a new --out directory, or drop --resume.\n")
    run_task(request, lambda argv, *rest: calls.append(argv) or Attempt(2 if len(calls) == 1 else 0, None,
                                                                         refused if len(calls) == 1 else ""))
    assert len(calls) == 2 and "--overwrite" in calls[1] and "--resume" not in calls[1]
