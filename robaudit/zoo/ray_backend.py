"""``robaudit zoo --ray [ADDRESS]``: the zoo's tasks on Ray, a local instance or a cluster.

Each model is one Ray task. The task hands its :class:`~robaudit.zoo.task.TaskRequest` to a long-lived zoo
worker (:mod:`robaudit.zoo.worker`) that the Ray worker process starts once and keeps, so torch and robaudit
are imported once per Ray worker and every model still runs in its own forked child. The task writes the
model's audit to the shared ``--out`` and returns its :class:`~robaudit.zoo.task.TaskRecord`; the driver
saves the records and the zoo table as results come back (``ray.wait``). Ray retries a task whose worker or
node was lost (``max_retries``); a model that fails is a record, not a Ray error, so it is not retried.

Resources: a task asks for one GPU when the Ray cluster has GPUs (and the model is not set to ``device =
"cpu"``), else for CPUs. On the local instance (``ray.init(num_cpus=--workers or the machine's CPUs)``) a
task takes one CPU slot, as a ``--workers`` worker does, and runs with its share of the machine's threads;
on a cluster it asks for as many CPUs as its torch threads (``threads`` in ``[audit]``, else 1).
"""
from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Any, Callable, Iterator

from robaudit.errors import UsageError
from robaudit.exitcodes import ExitCode
from robaudit.zoo.task import TaskRecord, TaskRequest, record_json, task_threads

MAX_RETRIES = 2
"""Ray re-runs a task at most this many times when its worker process or node dies."""

INSTALL_FIX = "pip install 'robaudit[ray]'"

_worker: Any = None  # this Ray worker process's zoo worker (robaudit.zoo.worker.WorkerClient)


def audit_task(request: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: audit one model on this Ray worker's long-lived zoo worker; the record as a dict."""
    global _worker
    from robaudit.zoo.worker import WorkerClient

    task = TaskRequest(**request)
    threads = task_threads(task)
    if _worker is None or _worker.threads != threads or _worker.proc.poll() is not None:
        if _worker is not None:
            _worker.close()
        _worker = WorkerClient(threads)
    return record_json(_worker.run(task))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed", fix=INSTALL_FIX) from None
    return ray


def check_ray() -> None:
    """Fail with one line (exit 2) when Ray is not installed: before any model runs."""
    _import_ray()


def run_on_ray(todo: list[TaskRequest], address: str | None, workers: int | None,
               save: Callable[[TaskRecord], None]) -> Iterator[list[TaskRecord]]:
    """The records of ``todo`` as Ray finishes them, in batches (every record that finished since the last
    batch); ``save`` is called on each as soon as it comes back.

    Args:
        address: a Ray cluster (``ray.init(address=...)``); ``None`` starts a local instance and shuts it down
            at the end.
        workers: the local instance's CPU slots (models at once); ``None``: the machine's CPUs.
    """
    if not todo:
        return
    ray = _import_ray()
    local = address is None
    if local:
        cpus = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        remote = ray.remote(audit_task)
        pending = {}
        for request in todo:
            if gpus and request.settings.get("device", "") != "cpu":
                options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1 if local else task_threads(request)}
            else:
                options = {"num_cpus": 1 if local else task_threads(request)}
            if not local and "threads" not in request.settings:
                request = replace(request, threads=1)
            ref = remote.options(max_retries=MAX_RETRIES, **options).remote(asdict(request))
            pending[ref] = request
        while pending:
            ray.wait(list(pending), num_returns=1)
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            batch = []
            for ref in ready:
                request = pending.pop(ref)
                try:
                    record = TaskRecord(**ray.get(ref))
                except ray.exceptions.RayError as exc:  # retries exhausted: the worker or node kept dying
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    record = TaskRecord(request.name, request.digest, "failed", int(ExitCode.INTERNAL),
                                        f"the Ray task failed after {MAX_RETRIES} retries: {first}")
                save(record)
                batch.append(record)
            yield batch
    finally:
        ray.shutdown()
