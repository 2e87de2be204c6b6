"""Run the zoo: one task per model on ``--workers`` long-lived worker processes (:mod:`robaudit.zoo.worker`)
or on Ray (:mod:`robaudit.zoo.ray_backend`), resumable, with CI-friendly progress.

Layout of ``--out``::

    zoo/models/<name>/      the model's own audit (results.json, per_sample.csv, report.html)
    zoo/tasks/<name>.toml   the config its audit ran with
    zoo/tasks/<name>.json   what happened (status, exit code, reason, wall time, retry, worker pid)
    zoo/tasks/<name>.log    what its audit printed (stdout and stderr)
    zoo/zoo.json, zoo.csv, zoo.html

Each record is saved as its model finishes; ``zoo.json``/``zoo.csv`` are rebuilt from ``tasks/*.json`` after
each batch of finished models, one row per model of the manifest, so a killed sweep leaves a consistent table and ``--resume`` never adds a row twice.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from robaudit.errors import UsageError
from robaudit.exitcodes import ExitCode
from robaudit.zoo.manifest import Manifest, ZooModel
from robaudit.zoo.task import TaskRecord, TaskRequest, record_json, task_digest, task_settings

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
    # a failed model whose process still exited 0 or 1 ended before its audit finished: a crash, as a kill is
    codes = [ExitCode.INTERNAL if r.status == "failed" and c in (ExitCode.OK, ExitCode.GATE_FAILED) else c
             for r, c in zip(records, codes)]
    return max(codes, key=severity.index, default=ExitCode.OK)


def run_sweep(manifest: Manifest, out: Path, *, workers: int | None = None, resume: bool = False,
              gate: Path | None = None, use_ray: bool = False, ray_address: str | None = None,
              on_finish: Callable[[TaskRecord, int, int, int, float | None], None] | None = None,
              after_each: Callable[[], None] | None = None) -> SweepOutcome:
    """Audit every model of ``manifest`` into ``out``; a failed model is recorded and the sweep goes on.

    A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM inside the CLI) stops the sweep: the models in flight are
    interrupted as ``robaudit run`` is (their finished probes kept) and recorded as ``interrupted``, the queued
    ones are not started (no record: pending), and the exception propagates once every worker has ended.

    With ``resume``, a model whose saved record is ``ok`` (or ``gate_failed``) under the same settings
    digest is skipped; every other model runs again, continuing its own audit (``robaudit run --resume``).

    Args:
        workers: models audited at once (worker processes, default 1; with Ray, the local instance's CPU slots,
            default the machine's CPUs, each task then running one thread).
        use_ray: submit the tasks to Ray, at ``ray_address`` (``None``: a local instance), connected before
            anything is written under ``out``.
        on_finish: called as each model finishes with (record, done, failed, remaining, ETA seconds or None).
        after_each: called after each record is saved (rewrites the zoo table).
    """
    check_out_dir(out, resume)
    threads = thread_share(workers or 1) if workers or not use_ray else 1
    records: dict[str, TaskRecord] = {}
    todo: list[TaskRequest] = []
    skipped = []
    for model in manifest.models:
        settings = task_settings(manifest.audit, model)
        digest = task_digest(settings, model)
        saved = load_record(out, model.name) if resume else None
        if saved is not None and saved.digest == digest and saved.status in ("ok", "gate_failed"):
            records[model.name] = saved
            skipped.append(model.name)
            continue
        todo.append(_request(model, settings, digest, out, manifest.base_dir, resume, threads, gate))
    ray = None
    if use_ray and todo:
        from robaudit.zoo.ray_backend import connect, run_on_ray

        ray = connect(ray_address, workers)  # before anything is written: a bad address leaves --out as it was
    (out / TASKS_DIR).mkdir(parents=True, exist_ok=True)
    (out / MODELS_DIR).mkdir(parents=True, exist_ok=True)
    done = failed = 0
    started = time.perf_counter()
    def save(record: TaskRecord) -> None:  # as soon as a model finishes: --resume counts on it
        _save_record(out, record)

    if ray is not None:
        batches = run_on_ray(ray, todo, ray_address is None, save)
    else:
        batches = _run_local(todo, workers or 1, threads, out / TASKS_DIR, save)
    try:
        for batch in batches:
            for record in batch:
                records[record.name] = record
                done += 1
                failed += record.status == "failed"
                remaining = len(todo) - done
                if on_finish is not None:
                    on_finish(record, done, failed, remaining, (time.perf_counter() - started) / done * remaining)
            if after_each is not None:  # once per batch: the table's analysis can cost more than a tiny model
                after_each()
    finally:  # a Ctrl-C between batches stops the models in flight now, not when the traceback is collected
        batches.close()
    ordered = [records[m.name] for m in manifest.models]
    return SweepOutcome(ordered, zoo_exit_code(ordered), skipped)


def _request(model: ZooModel, settings: dict[str, Any], digest: str, out: Path, base_dir: Path, resume: bool,
             threads: int, gate: Path | None) -> TaskRequest:
    return TaskRequest(model.name, model.source, settings, str((out / MODELS_DIR / model.name).resolve()),
                       str((out / TASKS_DIR).resolve()), str(base_dir.resolve()), resume, threads,
                       str(gate.resolve()) if gate is not None else None, digest)


def _run_local(todo: list[TaskRequest], workers: int, threads: int, log_dir: Path,
               save: Callable[[TaskRecord], None]) -> Iterator[list[TaskRecord]]:
    """The records of ``todo`` on ``workers`` long-lived worker processes of this machine, in batches: each
    batch holds every record that finished since the last. ``save`` is called in the worker's thread as each
    record arrives, so a record is on disk even while the caller is busy with the previous batch."""
    if not todo:
        return
    from robaudit.zoo.worker import WorkerPool

    n = max(1, min(workers, len(todo)))
    pool = WorkerPool(n, threads, log_dir)  # started by this thread, which outlives them
    executor = ThreadPoolExecutor(max_workers=n)

    def run(request: TaskRequest) -> TaskRecord:
        record = pool.run(request)
        save(record)
        return record

    pending: set[Future[TaskRecord]] = set()
    kill = False
    try:
        pending = {executor.submit(run, request) for request in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield [future.result() for future in finished]
    except BaseException:  # Ctrl-C, SIGTERM (raised as a Ctrl-C), the caller closing us, or an error: stop
        executor.shutdown(wait=False, cancel_futures=True)  # the queued models stay pending for --resume
        pool.interrupt()
        try:
            # the models in flight record their finished probes and themselves as interrupted; a future that
            # shutdown cancelled never counts as done for wait(), so it is left out
            wait({future for future in pending if not future.cancelled()})
        except BaseException:  # a second Ctrl-C: stop now
            kill = True
        raise
    finally:
        pool.close(kill)
        executor.shutdown(wait=not kill)
