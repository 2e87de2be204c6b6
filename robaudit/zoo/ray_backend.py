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
import socket
from dataclasses import asdict, replace
from typing import Any, Callable, Iterator

from robaudit.errors import UsageError
from robaudit.exitcodes import ExitCode
from robaudit.zoo.task import TaskRecord, TaskRequest, record_json, task_threads

MAX_RETRIES = 2
"""Ray re-runs a task at most this many times when its worker process or node dies."""

INSTALL_FIX = "pip install 'robaudit[ray]'"
ADDRESS_FIX = "check --ray ADDRESS / RAY_ADDRESS: the head node's address and port, and that the cluster is running"
CONNECT_TIMEOUT_S = 5.0
"""Seconds the TCP check of a ``--ray`` address waits for the head node."""

_worker: Any = None  # this Ray worker process's zoo worker (robaudit.zoo.worker.WorkerClient)


def audit_task(request: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: audit one model on this Ray worker's long-lived zoo worker; the record as a dict."""
    global _worker
    from robaudit.zoo.worker import WorkerClient

    task = TaskRequest(**request)
    threads = task_threads(task)
    if _worker is None or worker_is_stale(_worker, threads):
        if _worker is not None:
            _worker.close()
        _worker = WorkerClient(threads)
    return record_json(_worker.run(task))


def worker_is_stale(worker: Any, threads: int) -> bool:
    """Whether this Ray worker's zoo worker cannot run the next task: it died, it runs another thread count, or
    it was started with other GPUs than Ray gave this task. Ray reuses a worker process across tasks and sets
    ``CUDA_VISIBLE_DEVICES`` per task, while a zoo worker (and every child it forks) keeps the environment it
    started with."""
    return (worker.proc.poll() is not None or worker.threads != threads
            or worker.cuda_visible_devices != os.environ.get("CUDA_VISIBLE_DEVICES"))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed", fix=INSTALL_FIX) from None
    return ray


def check_ray(address: str | None = None) -> None:
    """Fail with one line (exit 2) before any model runs: when Ray is not installed, or when nothing listens at
    the cluster ``address`` (``[ray://]HOST:PORT``; ``None``: a local instance, nothing to check)."""
    _import_ray()
    if address is not None:
        _check_listening(address)


def _check_listening(address: str) -> None:
    """A TCP connection to ``[ray://]HOST:PORT``, so an unreachable cluster fails at once: ``ray.init`` would
    retry for minutes. Other spellings (``auto``) are left to ``ray.init``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    if not port.isascii() or not 0 < int(port) < 65536:  # "²" is a digit to isdigit; 99999… overflows connect
        raise UsageError(f"--ray {address}: the port must be a number from 1 to 65535", fix=ADDRESS_FIX)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc})", fix=ADDRESS_FIX) from None


def connect(address: str | None, workers: int | None) -> Any:
    """``ray.init``: the cluster at ``address``, or (``None``) a local instance of ``workers`` CPU slots (``None``:
    the machine's CPUs); the ``ray`` module, connected.

    Raises:
        UsageError: Ray is not installed, or the cluster cannot be reached (exit 2, not a robaudit bug).
    """
    ray = _import_ray()
    try:
        if address is None:
            cpus = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            _check_listening(address)
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except UsageError:
        raise
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ValueError: Ray's word on the address
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"the Ray cluster at {address}" if address is not None else "a local Ray instance"
        raise UsageError(f"could not connect to {where}: {type(exc).__name__}: {first}",
                         fix=ADDRESS_FIX if address is not None else "check Ray's installation ('ray start --head' "
                         "runs one by hand)") from None
    return ray


def run_on_ray(ray: Any, todo: list[TaskRequest], local: bool,
               save: Callable[[TaskRecord], None]) -> Iterator[list[TaskRecord]]:
    """The records of ``todo`` as Ray finishes them, in batches (every record that finished since the last
    batch); ``save`` is called on each as soon as it comes back. Ray is shut down at the end.

    Args:
        ray: the ``ray`` module, connected by :func:`connect`.
        local: Ray is a local instance (each task takes one CPU slot), not a cluster.
    """
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
                except ray.exceptions.RayError as exc:
                    record = TaskRecord(request.name, request.digest, "failed", int(ExitCode.INTERNAL),
                                        ray_failure(exc, ray.exceptions))
                save(record)
                batch.append(record)
            yield batch
    finally:
        ray.shutdown()


def ray_failure(exc: Exception, exceptions: Any) -> str:
    """The record's reason for a Ray task that raised ``exc``: Ray retries only a task whose worker process or
    node died (``exceptions`` is ``ray.exceptions``), so only then did it fail after the retries."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, (exceptions.WorkerCrashedError, exceptions.NodeDiedError)):
        return f"the Ray task failed after {MAX_RETRIES} retries: {first}"
    return f"the Ray task failed: {first}"
