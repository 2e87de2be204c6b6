"""Helpers of the gate tests: run the real CLI, write rules, edit results copies."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from robaudit.cli.main import main
from robaudit.gate.baseline import Run
from robaudit.results import store


def cli(args: list[str]) -> tuple[int, str, str]:
    """Run ``robaudit ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def cli_code(args: list[str]) -> int:
    """Only the exit code of ``robaudit ARGS``."""
    return cli(args)[0]


def error_line(err: str) -> str:
    """The single ``robaudit: error`` line of stderr (fails when there is not exactly one)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def write_rules(path: Path, text: str) -> Path:
    """Write a rules file and return its path."""
    path.write_text(text, encoding="utf-8")
    return path


def edit_results(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Apply ``changes`` (``"a/b/c": value`` paths into results.json, ``/``-separated) and save."""
    results = json.loads((run_dir / "results.json").read_text())
    for dotted, value in changes.items():
        node = results
        keys = dotted.split("/")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    store.write_results(run_dir, results)
    return results


def set_accuracy(run_dir: Path, correct: int) -> None:
    """Make the clean accuracy estimate of ``run_dir`` ``correct`` of its n."""
    results = json.loads((run_dir / "results.json").read_text())
    acc = results["probes"]["clean"]["summary"]["accuracy"]
    acc["value"] = correct / acc["n"]
    store.write_results(run_dir, results)


def scale_column(run_dir: Path, column: str, factor: float) -> None:
    """Multiply one per-sample column of ``run_dir`` by ``factor`` (keeps ids and labels)."""
    ids, cols = store.read_per_sample(run_dir)
    labels = cols.pop("label").astype(int)
    cols[column] = cols[column] * factor
    store.write_per_sample(run_dir, ids, labels, cols)


def sim_run(name: str, k: int, n: int, column: np.ndarray | None = None) -> Run:
    """An in-memory results directory with a clean accuracy of k/n (and optionally a clean/loss column)."""
    ids = [f"s{i}" for i in range(n if column is None else len(column))]
    results = {
        "data": {"name": "sim", "split": "test"},
        "flags": [],
        "probes": {"clean": {
            "status": "ok", "version": "1", "config": {},
            "summary": {"accuracy": {"value": k / n, "low": None, "high": None, "level": 0.95, "method": "wilson", "n": n}},
            "higher_is_better": {"accuracy": True, "mean_loss": False},
        }},
    }
    columns = {} if column is None else {"clean/loss": np.asarray(column, dtype=float)}
    return Run(Path(name), results, ids, columns)
