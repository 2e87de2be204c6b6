"""Long-lived zoo workers: import torch and robaudit once, then audit model after model, each in a forked child.

A worker is ``python -m robaudit.zoo.worker``, started by the sweep (or, under ``--ray``, by each Ray worker
process). It imports what ``robaudit run`` needs but runs no torch operation, so it owns no OpenMP or
intra-op thread pool. For each :class:`~robaudit.zoo.task.TaskRequest` it reads (one JSON line on stdin) it
forks a child, which inherits the imports, sets its torch threads, and runs the ``robaudit run`` CLI entry
in-process with the task's config, then exits with its exit code. The worker reaps the child, records its
exit code, the killing signal if any, CPU time and the time to its first probe, and writes the
:class:`~robaudit.zoo.task.TaskRecord` as one JSON line on stdout. A crash, an OOM kill or ``sys.exit`` in a
model ends only that child.

Both links die together: the worker gets SIGKILL when the process that started it dies, and each child when
its worker dies (Linux ``PR_SET_PDEATHSIG``), so a killed sweep leaves no orphan writing into ``--out``.

Stopping: the worker is never interrupted itself. A Ctrl-C reaches the terminal's whole process group and a
SIGTERM may too; either one, or the SIGINT the driver sends when it stops, makes the worker pass a SIGINT to
its audit in flight, which records its finished probes as ``interrupted`` and exits 4, as ``robaudit run`` does
on Ctrl-C; the worker then replies as usual. A request that arrives after the stop is interrupted the same way
as soon as its child is forked.
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from robaudit.exitcodes import ExitCode
from robaudit.zoo.task import Attempt, TaskRecord, TaskRequest, record_json, run_task

PRELOAD = ("torch", "torchvision", "timm", "safetensors.torch", "matplotlib.pyplot", "scipy.sparse.linalg",
           "torchattacks", "robaudit.cli.main", "robaudit.engine", "robaudit.report", "robaudit.probes")
"""Modules the worker imports once, so that no child pays for them. None runs torch code at import."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_worker_pid: int | None = None  # this worker's pid; a forked child differs
_child_pid: int | None = None  # the audit in flight
_stopping = False  # a stop arrived: every audit from now on is interrupted


def _on_stop(signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM. In the worker: interrupt the audit in flight (a SIGINT: its Ctrl-C). In a child forked
    before it set its own handler: a Ctrl-C."""
    global _stopping
    if os.getpid() != _worker_pid:
        raise KeyboardInterrupt
    _stopping = True
    if _child_pid is not None:
        try:
            os.kill(_child_pid, signal.SIGINT)
        except ProcessLookupError:
            pass


def _interrupt_once(signum: int, frame: Any) -> None:
    """The child's Ctrl-C: the first SIGINT interrupts the audit; later ones (the terminal's and the driver's
    can both arrive) are ignored, so they cannot cut short the writing of the finished results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # nor by a process-group SIGTERM after the forwarded SIGINT
    raise KeyboardInterrupt


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def preload() -> None:
    """Import :data:`PRELOAD` and robaudit's own probes, without running any torch operation.

    Third-party probe plugins are not imported here: whether they load is each audit's decision
    (``ROBAUDIT_NO_PLUGIN_AUTOLOAD``, ``ROBAUDIT_BLOCK_PLUGINS``), so the child loads them itself.
    """
    from importlib.metadata import entry_points

    from robaudit.probes.registry import ENTRY_POINT_GROUP, OWN_DISTRIBUTION

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional package the audits will not need either
            pass
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION:
            ep.load()


def run_in_child(argv: list[str], cwd: Path, threads: int, log_path: Path) -> Attempt:
    """Run ``robaudit *argv`` in a child forked from this process; its stdout and stderr go to ``log_path``.

    Args:
        argv: the arguments after ``robaudit`` (``--config F run SOURCE ...``).
        cwd: the child's working directory.
        threads: torch CPU threads of the child (``torch.set_num_threads`` and ``OMP_NUM_THREADS``).

    Returns:
        the child's exit code (``ExitCode.INTERNAL`` with the signal when a signal killed it), its output, its
        CPU seconds and the seconds from the fork to its first probe.
    """
    global _child_pid
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    start = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    # A stop signal is held back over the fork: one that reached the child before Python's fork handling
    # would be lost there. The child takes it once its own handler is set; the worker, once the child is known.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage cannot follow it
        os.close(read_fd)
        _child(argv, cwd, threads, log_path, write_fd, parent, start)
    _child_pid = pid
    if _stopping:  # the stop came before this child existed
        os.kill(pid, signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.close(write_fd)
    try:
        _, status, usage = os.wait4(pid, 0)
    finally:
        _child_pid = None
    os.set_blocking(read_fd, False)
    try:
        report = json.loads(os.read(read_fd, 1 << 16) or b"{}")
    except (BlockingIOError, ValueError):
        report = {}
    finally:
        os.close(read_fd)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = int(ExitCode.INTERNAL) if sig is not None else os.WEXITSTATUS(status)
    try:
        output = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        output = ""
    return Attempt(code, sig, output, report.get("first_probe_s"), round(usage.ru_utime + usage.ru_stime, 3))


def _child(argv: list[str], cwd: Path, threads: int, log_path: Path, report_fd: int, parent: int,
           start: float) -> None:  # pragma: no cover - runs in the forked child
    """The forked child: never returns; exits with the ``robaudit`` exit code."""
    code = int(ExitCode.INTERNAL)
    first_probe: list[float] = []
    try:
        signal.signal(signal.SIGINT, _interrupt_once)  # SIGTERM: the worker's handler until the CLI entry sets its own
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        die_with_parent()
        if os.getppid() != parent:  # the worker died before the request to die with it was made
            os._exit(int(ExitCode.INTERNAL))
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(cwd)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
        from robaudit.cli.main import main
        from robaudit.engine.progress import AuditProgress

        start_probe = AuditProgress.start_probe

        def timed_start_probe(self: AuditProgress, index: int, name: str) -> None:
            if not first_probe:
                first_probe.append(time.perf_counter() - start)
            start_probe(self, index, name)

        AuditProgress.start_probe = timed_start_probe  # type: ignore[method-assign]  # this child only
        sys.argv = ["robaudit", *argv]
        code = main(argv)
    except SystemExit as exc:  # a model calling sys.exit: exit as a `robaudit run` process would
        if exc.code is None or isinstance(exc.code, int):
            code = int(exc.code or 0)
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # before the CLI entry took over
        print("robaudit: interrupted before the audit started", file=sys.stderr)
        code = int(ExitCode.INTERRUPTED)
    except BaseException:
        traceback.print_exc()
        code = int(ExitCode.INTERNAL)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.write(report_fd, json.dumps({"first_probe_s": round(first_probe[0], 4) if first_probe else None})
                     .encode())
        finally:
            os._exit(code)


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The worker loop: one :class:`TaskRequest` JSON line in, one :class:`TaskRecord` JSON line out, until EOF."""
    for line in requests:
        if not line.strip():
            continue
        request = TaskRequest(**json.loads(line))
        record = run_task(request, run_in_child)
        record.worker_pid = os.getpid()
        replies.write(json.dumps(record_json(record)) + "\n")
        replies.flush()


PARENT_ENV = "ROBAUDIT_ZOO_PARENT"
"""The pid of the process that started the worker: the worker dies with it."""


def main() -> None:
    """``python -m robaudit.zoo.worker``: die with the parent, keep stdout for the replies, send any stray
    output to stderr."""
    global _worker_pid
    _worker_pid = os.getpid()
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGTERM, _on_stop)
    die_with_parent()  # set here rather than in a preexec_fn, which is unsafe in a threaded parent (Ray's workers)
    if os.getppid() != int(os.environ.get(PARENT_ENV, os.getppid())):
        sys.exit("robaudit.zoo.worker: the process that started it has ended")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    preload()
    serve(sys.stdin, replies)


class WorkerClient:
    """The driver's handle on one worker process; restarts it when it died."""

    def __init__(self, threads: int, log_path: Path | None = None) -> None:
        """Start the worker with ``OMP_NUM_THREADS=threads``; its own stderr goes to ``log_path`` (else inherited)."""
        self.threads, self.log_path = threads, log_path
        self.stopping = False
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        self.cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")  # the GPUs its audits will see
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), PARENT_ENV: str(os.getpid())}
        err: Any = open(self.log_path, "a", encoding="utf-8") if self.log_path is not None else None  # noqa: SIM115
        try:
            return subprocess.Popen([sys.executable, "-m", "robaudit.zoo.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, env=env, text=True, bufsize=1)
        finally:
            if err is not None:
                err.close()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    def run(self, request: TaskRequest) -> TaskRecord:
        """Audit one model on this worker; a worker that dies mid-task is recorded as the model's failure.

        A worker dies with the thread that started it (``PR_SET_PDEATHSIG``), and a restarted one is started by
        the caller's thread: call this from threads that outlive the sweep's work.
        """
        assert self.proc.stdin is not None and self.proc.stdout is not None
        start = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(asdict(request)) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            return TaskRecord(**json.loads(line))
        code = self.proc.wait()
        sig = -code if code < 0 else None
        why = f"signal {signal.Signals(sig).name}" if sig else f"exit code {code}"
        wall = round(time.perf_counter() - start, 3)
        if self.stopping:  # killed by a second Ctrl-C: no restart
            return TaskRecord(request.name, request.digest, "interrupted", int(ExitCode.INTERRUPTED),
                              f"interrupted: the sweep was stopped and its worker ended ({why})", wall, signal=sig)
        self.proc = self._start()
        return TaskRecord(request.name, request.digest, "failed", int(ExitCode.INTERNAL),
                          f"the zoo worker process died ({why}) while auditing this model", wall, signal=sig)

    def interrupt(self) -> None:
        """Stop: the worker interrupts its audit in flight, and any it is sent later, as a Ctrl-C would."""
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def close(self, kill: bool = False) -> None:
        """End the worker (EOF on its stdin), killing it if it does not exit within 10 s, or at once with ``kill``
        (its audit in flight dies with it)."""
        if kill:
            self.proc.kill()
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class WorkerPool:
    """``n`` workers started by the calling thread; :meth:`run` borrows a free one (thread-safe)."""

    def __init__(self, n: int, threads: int, log_dir: Path | None = None) -> None:
        self._free: queue.Queue[WorkerClient] = queue.Queue()
        self._all = [WorkerClient(threads, log_dir / f"worker-{k}.log" if log_dir is not None else None)
                     for k in range(n)]
        for client in self._all:
            self._free.put(client)

    def run(self, request: TaskRequest) -> TaskRecord:
        """Audit ``request`` on the next free worker."""
        client = self._free.get()
        try:
            return client.run(request)
        finally:
            self._free.put(client)

    def interrupt(self) -> None:
        """Interrupt every worker's audit in flight (each records itself as ``interrupted``)."""
        for client in self._all:
            client.interrupt()

    def close(self, kill: bool = False) -> None:
        """End every worker; with ``kill``, at once."""
        for client in self._all:
            client.close(kill)


if __name__ == "__main__":
    main()
