"""``robaudit zoo`` through the real CLI: equality with single runs, failures, resume after SIGKILL, the schema."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import WORKERS, robaudit
from zoo_fixtures import BROKEN_ARCH, make_zoo, variant

VOLATILE = {"created", "started", "duration_s", "command", "resume", "notes",  # notes carry timings ("0.79 s")
            "seconds", "seconds_per_fwd_bwd"}  # the cost estimate's timings


def _strip(node: Any) -> Any:
    """``node`` without timings and the paths that name the output directory."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in VOLATILE and k != "out"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def assert_rows_match_single_runs(zoo: Path, singles: dict[str, Path]) -> None:
    """Each model's results.json in ``zoo`` equals its single run's (every leaf but timings), and so does its row."""
    rows = {r["name"]: r for r in json.loads((zoo / "zoo.json").read_text())["models"]}
    assert list(rows) == ["bs16", "bs32", "bs64"]
    for name in rows:
        zoo_results, single_results = _results(zoo / "models" / name), _results(singles[name])
        assert _strip(zoo_results) == _strip(single_results)
        row = rows[name]
        assert row["status"] == "ok" and row["exit_code"] == 0
        assert row["clean_accuracy"]["value"] == single_results["probes"]["clean"]["summary"]["accuracy"]["value"]
        assert row["sha256"] == single_results["model"]["checkpoint_sha256"]
        table = single_results["attack_outcomes"]
        for cell in table["norms"]["linf"]["by_eps"]:  # robust = not broken by any attack (clean-wrong count as broken)
            got = next(c for c in row["robust_accuracy"]["linf"].values() if c["eps"] == cell["eps"])
            assert got["value"] == pytest.approx((table["n"] - cell["broken"]) / table["n"])
            assert got["low"] <= got["value"] <= got["high"]
        lam = single_results["probes"]["curvature.topk"]["summary"]["sets"]["audit"]["full"]["eigenvalues"][0]
        assert row["indicators"]["curvature.topk sets › audit › full › eigenvalues › 0"] == lam
        assert row["tags"] == {"batch_size": int(name[2:]), "lr": 0.01}


def test_each_model_equals_a_single_robaudit_run(swept: tuple[Path, Path, Any], singles: dict[str, Path]) -> None:
    assert_rows_match_single_runs(swept[1], singles)


def test_on_ray_each_model_equals_a_single_robaudit_run(ray_swept: tuple[Path, Path, Any],
                                                        singles: dict[str, Path]) -> None:
    _, zoo, proc = ray_swept
    assert_rows_match_single_runs(zoo, singles)
    records = [json.loads((zoo / "tasks" / f"{n}.json").read_text()) for n in ("bs16", "bs32", "bs64")]
    assert all(r["worker_pid"] for r in records)
    assert len({r["worker_pid"] for r in records}) <= WORKERS  # a zoo worker per Ray worker, reused across models


def test_only_declared_indicators_are_correlated(swept: tuple[Path, Path, Any]) -> None:
    _, zoo, _ = swept
    analysis = json.loads((zoo / "zoo.json").read_text())["analysis"]
    indicators = {c["indicator"] for c in analysis["correlations"]}
    outcomes = {c["outcome"] for c in analysis["correlations"]}
    assert "curvature.topk sets › audit › full › eigenvalues › 0" in indicators
    assert not [i for i in indicators if any(s in i for s in ("batch_size", "hvps", "tol", "operator", " k"))]
    assert outcomes == {f"attack.fgsm robust_accuracy › {e}" for e in ("0.05", "0.1", "0.15", "0.2", "0.3")}


def test_zoo_json_follows_the_published_schema(swept: tuple[Path, Path, Any]) -> None:
    from robaudit.results import zoo_schema

    _, zoo, _ = swept
    document = json.loads((zoo / "zoo.json").read_text())
    schema = zoo_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema)
    broken = {**document, "models": [{**document["models"][0], "status": "done"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    header = (zoo / "zoo.csv").read_text().splitlines()[0].split(",")
    assert len((zoo / "zoo.csv").read_text().splitlines()) == 4
    assert {"name", "status", "clean_accuracy/value", "robust_accuracy/linf/0.1/value", "tags/batch_size"} <= set(header)


def test_failed_models_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """One worker (the default), five models: each failure ends only its own child, and the worker goes on."""
    manifest = make_zoo(tmp_path, n_models=1)
    (tmp_path / "broken.py").write_text(BROKEN_ARCH, encoding="utf-8")
    variant(tmp_path / "demo.pt", seed=5, scale=0.0)
    with manifest.open("a", encoding="utf-8") as f:
        f.write('[[model]]\nname = "raises"\nsource = "demo.pt"\narch = "broken.py:RaisesInForward"\n\n'
                '[[model]]\nname = "missing"\nsource = "runs/nowhere/model.pt"\narch = "models.py:M1"\n\n'
                '[[model]]\nname = "exits"\nsource = "demo.pt"\narch = "broken.py:ExitsInForward"\n\n'
                '[[model]]\nname = "oom"\nsource = "demo.pt"\narch = "broken.py:KilledOnBatchesOf16"\n'
                'batch-size = 16\n')
    proc = robaudit("zoo", str(manifest), "--out", "zoo", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"]}
    assert rows["bs16"]["status"] == "ok"
    assert (tmp_path / "zoo" / "models" / "bs16" / "results.json").is_file()
    for name in ("raises", "missing", "exits"):
        assert rows[name]["status"] == "failed"
        assert rows[name]["reason"] and "\n" not in rows[name]["reason"]
    assert rows["missing"]["exit_code"] == 2 and "does not exist" in rows["missing"]["reason"]
    assert "forward always fails" in rows["raises"]["reason"]
    # a model calling sys.exit(7) is the model's fault, named (exit 2), never its own code ending the run
    assert rows["exits"]["exit_code"] == 2 and "sys.exit(7)" in rows["exits"]["reason"]
    # SIGKILL (the OOM killer's signal) on batches of 16: retried once with 8, which finishes
    assert rows["oom"]["status"] == "ok", rows["oom"]
    assert rows["oom"]["cost"]["attempts"] == 2 and rows["oom"]["cost"]["retried_batch_size"] == 8
    assert _strip(_results(tmp_path / "zoo" / "models" / "oom"))["probes"]["clean"]["summary"] == \
        _strip(_results(tmp_path / "zoo" / "models" / "bs16"))["probes"]["clean"]["summary"]  # same weights
    records = {n: json.loads((tmp_path / "zoo" / "tasks" / f"{n}.json").read_text()) for n in rows}
    assert records["oom"]["signal"] is None  # the retry finished: the record is the last attempt's
    assert len({r["worker_pid"] for r in records.values()}) == 1  # the worker outlived every failed child
    assert proc.returncode == 2  # the most severe model's code (docs/zoo.md)
    assert "Traceback" not in proc.stderr
    assert "zoo: missing failed (exit 2)" in proc.stderr
    assert "oom ok (retried with batch size 8)" in proc.stderr


def test_imports_are_paid_once_per_worker(tmp_path: Path) -> None:
    """--workers 1, three models: one worker process audits them all, each in a child that starts with torch
    and robaudit already imported (its first probe starts within its wall time, after loading model and data)."""
    manifest = make_zoo(tmp_path)
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads((tmp_path / "zoo" / "tasks" / f"{n}.json").read_text()) for n in ("bs16", "bs32", "bs64")]
    pids = {r["worker_pid"] for r in records}
    assert len(pids) == 1 and None not in pids
    for r in records:
        assert 0 < r["first_probe_s"] < r["wall_s"] and r["cpu_s"] > 0
    assert not Path(f"/proc/{pids.pop()}").exists()  # the worker ended with the sweep


def test_sigkill_then_resume_equals_an_uninterrupted_sweep(tmp_path: Path) -> None:
    """One manifest (the same checkpoint files), two sweeps: one killed with SIGKILL and resumed, one not."""
    manifest = make_zoo(tmp_path)
    uninterrupted = tmp_path / "zoo-whole"
    proc = robaudit("zoo", str(manifest), "--out", str(uninterrupted), "--workers", str(WORKERS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "zoo"
    driver = subprocess.Popen([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", str(out),
                               "--workers", str(WORKERS)], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list((out / "tasks").glob("*.json")) and time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = {p.stem for p in (out / "tasks").glob("*.json")}
    assert 0 < len(finished) < 3
    workers = {json.loads((out / "tasks" / f"{n}.json").read_text())["worker_pid"] for n in finished}
    time.sleep(1.0)  # the kernel delivers the parent-death SIGKILLs: worker, then the model children
    assert not [pid for pid in workers if _alive(pid)]
    before = _snapshot(out)
    time.sleep(3.0)
    assert _snapshot(out) == before  # no orphan writes into --out after the kill
    created = {n: _results(out / "models" / n)["created"] for n in finished}
    proc = robaudit("zoo", str(manifest), "--out", str(out), "--workers", str(WORKERS), "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {n: _results(out / "models" / n)["created"] for n in finished} == created  # not re-run
    assert "already finished with the same settings" in proc.stderr

    def rows(zoo: Path) -> list[dict[str, Any]]:
        doc = json.loads((zoo / "zoo.json").read_text())
        return [{k: v for k, v in r.items() if k not in ("cost",)} for r in doc["models"]]

    assert rows(out) == rows(uninterrupted)
    for name in ("bs16", "bs32", "bs64"):
        assert _strip(_results(out / "models" / name)) == _strip(_results(uninterrupted / "models" / name))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, already dead and waiting to be reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file under ``root``."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_a_fresh_sweep_refuses_an_earlier_one(swept: tuple[Path, Path, Any]) -> None:
    manifest, zoo, _ = swept
    before = (zoo / "zoo.json").read_text()
    proc = robaudit("zoo", str(manifest), "--out", str(zoo), cwd=manifest.parent)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines() if "--resume" in line]
    assert (zoo / "zoo.json").read_text() == before


def test_a_bad_manifest_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "zoo.toml").write_text('[audit]\ndataset = "digits"\n[[model]]\nname = "a"\nsource = "x.pt"\n'
                                       '[[model]]\nname = "a"\nsource = "y.pt"\n', encoding="utf-8")
    proc = robaudit("zoo", "zoo.toml", "--out", "zoo", cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "used twice" in proc.stderr
    assert not (tmp_path / "zoo").exists()


def test_dry_run_validates_every_model_and_writes_nothing(tmp_path: Path) -> None:
    import importlib.util

    manifest = make_zoo(tmp_path, n_models=2)
    with manifest.open("a", encoding="utf-8") as f:
        f.write('[[model]]\nname = "missing"\nsource = "nowhere.pt"\narch = "models.py:M1"\n')
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--dry-run", cwd=tmp_path)
    spec = importlib.util.spec_from_file_location("digits_cnn", tmp_path / "digits_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parameters = sum(p.numel() for p in module.DigitsCNN(10).parameters())
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert proc.returncode == 2, proc.stderr
    for name in ("bs16", "bs32"):
        assert lines[name][1] == "ok" and int(lines[name][2].replace(",", "")) == parameters
        assert float(lines[name][3]) > 0
    assert lines["missing"][1:4] == ["failed", "exit", "2:"] and "does not exist" in proc.stdout
    assert "2/3 valid" in proc.stdout
    assert not (tmp_path / "zoo").exists()


def test_dry_run_lists_error_flags_on_a_valid_model_as_validate_does(tmp_path: Path) -> None:
    """A model whose preflight raises an error flag is valid for ``robaudit validate`` (exit 0, "valid, with 1
    error flag(s)"), so the dry run calls it ok, names the flag and exits 0."""
    manifest = make_zoo(tmp_path, n_models=0)
    (tmp_path / "broken.py").write_text(BROKEN_ARCH, encoding="utf-8")
    variant(tmp_path / "demo.pt", seed=5, scale=0.0)
    with manifest.open("a", encoding="utf-8") as f:
        f.write('[[model]]\nname = "detached"\nsource = "demo.pt"\narch = "broken.py:DetachedInput"\n')
    validate = robaudit("validate", "demo.pt", "--arch", "broken.py:DetachedInput", "--dataset", "digits",
                        "--n-samples", "40", cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr
    errors = [line.split()[1] for line in validate.stdout.splitlines()
              if line.startswith("flag ") and line.split()[2] == "(error):"]
    assert "zero_input_gradients" in errors
    assert validate.stdout.strip().splitlines()[-1] == f"valid, with {len(errors)} error flag(s)"
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("detached "))
    assert row.split()[1] == "ok"
    assert row.endswith(f"(error flag(s): {', '.join(errors)})")
    assert "1/1 valid" in proc.stdout
    assert not (tmp_path / "zoo").exists()


def test_gate_over_a_zoo_lists_failures_and_exits_1(tmp_path: Path) -> None:
    manifest = make_zoo(tmp_path, n_models=1)
    (tmp_path / "rules.toml").write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\n'
                                         "threshold = 0.999\n", encoding="utf-8")
    (tmp_path / "bad.toml").write_text('[[rule]]\nmetric = ["probes", "clean", "summary", "accuracy"]\n', encoding="utf-8")
    bad = robaudit("zoo", str(manifest), "--out", "bad-zoo", "--gate", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad-zoo").exists()  # bad rules fail before any model runs
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--gate", "rules.toml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    row = json.loads((tmp_path / "zoo" / "zoo.json").read_text())["models"][0]
    assert row["status"] == "gate_failed" and row["exit_code"] == 1
    results = _results(tmp_path / "zoo" / "models" / "bs16")
    assert results["gate"] is not None and results["probes"]["clean"]["summary"]["accuracy"]["value"] < 0.999
    assert "zoo: bs16 gate_failed (exit 1)" in proc.stderr


def test_ray_without_ray_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    manifest = make_zoo(tmp_path, n_models=1)
    shadow = tmp_path / "no-ray"
    shadow.mkdir()
    (shadow / "ray.py").write_text('raise ImportError("No module named \'ray\'")\n', encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    proc = robaudit("zoo", str(manifest), "--out", "zoo", "--ray", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'robaudit[ray]'" in proc.stderr
    assert not (tmp_path / "zoo").exists()
