"""Run the zoo: one task per model on ``--workers`` concurrent processes, resumable, with CI-friendly progress.

Layout of ``--out``::

    zoo/models/<name>/      the model's own audit (results.json, per_sample.csv, report.html)
    zoo/tasks/<name>.toml   the config its audit ran with
    zoo/tasks/<name>.json   what happened (status, exit code, reason, wall time, retry)
    zoo/zoo.json, zoo.csv, zoo.html

``zoo.json``/``zoo.csv`` are rebuilt from ``tasks/*.json`` after every finished model, one row per
model of the manifest, so a killed sweep leaves a consistent table and ``--resume`` never adds a row twice.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from robaudit.errors import UsageError
from robaudit.exitcodes import ExitCode
from robaudit.zoo.manifest import Manifest, ZooModel
from robaudit.zoo.task import TaskRecord, record_json, run_task, task_digest, task_settings

log = logging.getLogger("robaudit")

MODELS_DIR = "models"
TASKS_DIR = "tasks"


@dataclass
class SweepOutcome:
    """The records of every model (manifest order) and the zoo's exit code."""

    records: list[TaskRecord]
    exit_code: ExitCode
    skipped: list[str]


def thread_share(workers: int, total: int | None = None) -> int:
    """torch threads per worker: the machine's CPUs split evenly, at least one."""
    cpus = total or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    return max(1, cpus // max(1, workers))


def load_record(out: Path, name: str) -> TaskRecord | None:
    """The saved record of model ``name``, or ``None`` when it never finished."""
    path = out / TASKS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TaskRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _save_record(out: Path, record: TaskRecord) -> None:
    path = out / TASKS_DIR / f"{record.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record_json(record), indent=2), encoding="utf-8")
    os.replace(tmp, path)


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to start a fresh sweep over an earlier one (``--resume`` continues it)."""
    if not resume and ((out / MODELS_DIR).exists() or (out / TASKS_DIR).exists()):
        raise UsageError(f"{out} already holds a zoo sweep",
                         fix="pass --resume to continue it, or choose a new --out")


def zoo_exit_code(records: list[TaskRecord]) -> ExitCode:
    """0 when every model passed; else the most severe model code: 3 (internal) > 2 (input) > 4 > 5 > 1 (gate)."""
    severity = [ExitCode.OK, ExitCode.GATE_FAILED, ExitCode.NOTHING_RAN, ExitCode.INTERRUPTED,
                ExitCode.USAGE, ExitCode.INTERNAL]
    codes = [ExitCode(r.exit_code) if r.exit_code in ExitCode._value2member_map_ else ExitCode.INTERNAL
             for r in records]
    return max(codes, key=severity.index, default=ExitCode.OK)


def run_sweep(manifest: Manifest, out: Path, *, workers: int = 1, resume: bool = False, gate: Path | None = None,
              on_finish: Callable[[TaskRecord, int, int, int, float | None], None] | None = None,
              after_each: Callable[[], None] | None = None) -> SweepOutcome:
    """Audit every model of ``manifest`` into ``out``; a failed model is recorded and the sweep goes on.

    With ``resume``, a model whose saved record is ``ok`` (or ``gate_failed``) under the same settings
    digest is skipped; every other model runs again, continuing its own audit (``robaudit run --resume``).

    Args:
        on_finish: called as each model finishes with (record, done, failed, remaining, ETA seconds or None).
        after_each: called after each record is saved (rewrites the zoo table).
    """
    check_out_dir(out, resume)
    (out / TASKS_DIR).mkdir(parents=True, exist_ok=True)
    (out / MODELS_DIR).mkdir(parents=True, exist_ok=True)
    threads = thread_share(workers)
    records: dict[str, TaskRecord] = {}
    todo: list[tuple[ZooModel, dict[str, Any], str]] = []
    skipped = []
    for model in manifest.models:
        settings = task_settings(manifest.audit, model)
        digest = task_digest(settings, model)
        saved = load_record(out, model.name) if resume else None
        if saved is not None and saved.digest == digest and saved.status in ("ok", "gate_failed"):
            records[model.name] = saved
            skipped.append(model.name)
            continue
        todo.append((model, settings, digest))
    done = failed = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: dict[Future[TaskRecord], str] = {
            pool.submit(run_task, model, settings, out / MODELS_DIR / model.name, out / TASKS_DIR, manifest.base_dir,
                        resume=resume, threads=threads, gate=gate, digest=digest): model.name
            for model, settings, digest in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                pending.pop(future)
                record = future.result()
                _save_record(out, record)
                records[record.name] = record
                done += 1
                failed += record.status == "failed"
                remaining = len(todo) - done
                elapsed = time.perf_counter() - started
                eta = elapsed / done * remaining
                if after_each is not None:
                    after_each()
                if on_finish is not None:
                    on_finish(record, done, failed, remaining, eta)
    ordered = [records[m.name] for m in manifest.models]
    return SweepOutcome(ordered, zoo_exit_code(ordered), skipped)
