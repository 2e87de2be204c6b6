"""One zoo model's audit as a task: what it runs with, the out-of-memory retry, and the record of what happened.

Each model runs ``robaudit --config TASK.toml run SOURCE --out zoo/models/<name>/`` through the CLI entry,
exactly as a user would run it, so a zoo audit and a single audit share one code path. *Where* an attempt
runs is the caller's: :mod:`robaudit.zoo.worker` runs it in a child forked from a long-lived worker process,
so a model that crashes, leaks memory or is killed takes only its own child down.
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from robaudit.errors import RESUME_REFUSED
from robaudit.exitcodes import ExitCode
from robaudit.zoo.manifest import ZooModel

OOM_MARKERS = ("out of memory", "outofmemoryerror")


@dataclass
class TaskRecord:
    """The outcome of one model's audit, as kept in ``zoo/tasks/<name>.json``.

    Attributes:
        exit_code: the ``robaudit run`` exit code (3 when the process was killed by a signal).
        reason: the one-line error the audit printed (empty when it succeeded).
        wall_s: seconds, every attempt included.
        retried_batch_size: the halved batch size of the out-of-memory retry, when one ran.
    """

    name: str
    digest: str
    status: str  # "ok" | "gate_failed" | "interrupted" (exit 4: the sweep was stopped) | "failed"
    exit_code: int
    reason: str = ""
    wall_s: float = 0.0
    attempts: int = 1
    retried_batch_size: int | None = None
    signal: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    worker_pid: int | None = None
    first_probe_s: float | None = None
    cpu_s: float | None = None


@dataclass
class TaskRequest:
    """What a worker needs to audit one model (JSON-able: it crosses a pipe, or Ray's object store).

    Attributes:
        settings: the model's ``robaudit.toml`` keys (written to ``task_dir/<name>.toml``).
        out_dir: ``zoo/models/<name>/``; task_dir: ``zoo/tasks/``; base_dir: the manifest's folder, where the
            audit runs (relative paths resolve there). All absolute.
        resume: continue an earlier audit in ``out_dir`` when it has results.
        threads: torch threads for the audit (its share of the machine), unless ``settings`` sets ``threads``.
        gate: absolute path of the ``--gate`` rules, or ``None``.
    """

    name: str
    source: str
    settings: dict[str, Any]
    out_dir: str
    task_dir: str
    base_dir: str
    resume: bool
    threads: int
    gate: str | None
    digest: str


@dataclass
class Attempt:
    """How one attempt ended: the exit code (or the killing signal), what it printed, and its timings.

    Attributes:
        first_probe_s: seconds from the start of the attempt to its first probe (``None`` if none started).
        cpu_s: CPU seconds (user + system) of the attempt.
    """

    exit_code: int
    signal: int | None
    output: str
    first_probe_s: float | None = None
    cpu_s: float | None = None


Runner = Callable[[list[str], Path, int, Path], Attempt]
"""Runs one attempt: (the ``robaudit`` arguments, working directory, torch threads, log file) -> :class:`Attempt`."""


def to_toml(table: dict[str, Any]) -> str:
    """``table`` as TOML, every value inline (strings, numbers, booleans, lists and tables)."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return json.dumps(str(value))
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def task_settings(audit: dict[str, Any], model: ZooModel) -> dict[str, Any]:
    """The model's ``robaudit.toml``: the shared ``[audit]`` keys, overridden by the model's own."""
    merged = {k.replace("_", "-"): v for k, v in audit.items()}
    merged.update({k.replace("_", "-"): v for k, v in model.settings.items()})
    return merged


def task_digest(settings: dict[str, Any], model: ZooModel) -> str:
    """sha256 of what decides a model's audit: its settings, its source, and the checkpoint's bytes."""
    h = hashlib.sha256(json.dumps({"settings": settings, "source": model.source}, sort_keys=True,
                                  default=str).encode())
    path = Path(model.source)
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def task_threads(request: TaskRequest) -> int:
    """The torch threads of the model's audit: its ``threads`` setting, else its share of the machine."""
    return int(request.settings.get("threads", request.threads))


def run_task(request: TaskRequest, attempt: Runner) -> TaskRecord:
    """Audit ``request``'s model with ``attempt``; on an out-of-memory failure retry once with half the batch
    size (resuming, so finished probes are kept). The attempt's output goes to ``task_dir/<name>.log``."""
    start = time.perf_counter()
    task_dir, out_dir = Path(request.task_dir), Path(request.out_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    settings, resume = dict(request.settings), request.resume
    attempts, retried, cpu, afresh = 0, None, 0.0, False
    while True:
        attempts += 1
        config = task_dir / f"{request.name}.toml"
        config.write_text(to_toml(settings), encoding="utf-8")
        argv = ["--config", str(config), "run", request.source, "--overwrite" if afresh else "--no-overwrite", "-q"]
        resuming = resume and not afresh and (out_dir / "results.json").is_file()
        if resuming:
            argv += ["--resume", str(out_dir)]
        else:
            argv += ["--out", str(out_dir)]
        if request.gate is not None:
            argv += ["--gate", request.gate]
        if "threads" not in settings:
            argv += ["--threads", str(request.threads)]
        result = attempt(argv, Path(request.base_dir), task_threads(request), task_dir / f"{request.name}.log")
        cpu += result.cpu_s or 0.0
        code, sig = result.exit_code, result.signal
        reason = _reason(result.output, code, sig, out_dir)
        finished = code in (ExitCode.OK, ExitCode.GATE_FAILED, ExitCode.INTERRUPTED)
        if resuming and code == ExitCode.USAGE and _resume_refused(result.output, out_dir):
            # the manifest changed the model or its samples: its earlier audit cannot be continued, so it starts
            # afresh, and --overwrite moves the earlier files into models/<name>/previous-<time>/ (nothing is lost)
            afresh = True
            continue
        if finished or retried is not None or not _is_oom(result.output, out_dir, sig):
            break
        retried = max(1, int(settings.get("batch-size", 128)) // 2)
        settings = {**settings, "batch-size": retried}
        resume = True
    status = {ExitCode.OK: "ok", ExitCode.GATE_FAILED: "gate_failed", ExitCode.INTERRUPTED: "interrupted"}.get(code, "failed")
    unbacked = _unbacked_success(code, out_dir, request.gate is not None)
    if unbacked:  # the process said "finished" but its audit did not: a crash (os._exit in forward), not a pass
        status, reason = "failed", unbacked
    return TaskRecord(request.name, request.digest, status, code, "" if status == "ok" else reason,
                      round(time.perf_counter() - start, 3), attempts, retried, sig,
                      first_probe_s=result.first_probe_s, cpu_s=round(cpu, 3))


def _reason(stderr: str, code: int, sig: int | None, out_dir: Path) -> str:
    """The one line that says why the audit failed: the CLI's error line, else the first failed probe's error."""
    if sig is not None:
        return f"the audit process was killed by signal {signal.Signals(sig).name}"
    lines = [ln for ln in stderr.splitlines()
             if ln.startswith("robaudit:") and any(w in ln.lower() for w in ("error", "interrupted"))]
    cli_lines = [ln for ln in lines if ln.startswith(("robaudit: error:", "robaudit: internal error:"))]
    if cli_lines:
        return cli_lines[-1].removeprefix("robaudit: ")
    for name, probe in _probes(out_dir).items():
        error = probe.get("error")
        if probe.get("status") == "failed" and isinstance(error, dict):
            return f"probe {name} failed: {error.get('message', '')}".strip()
    if lines:
        return lines[-1].removeprefix("robaudit: ")
    rest = [ln for ln in stderr.splitlines() if ln.strip()]
    return rest[-1] if rest else f"the audit process exited with code {code} and printed nothing"


def _resume_refused(output: str, out_dir: Path) -> bool:
    """Whether the audit's error line (not a warning, nor what the model printed) says ``--resume`` refused
    ``out_dir``'s earlier results (:data:`robaudit.errors.RESUME_REFUSED`)."""
    errors = [ln for ln in output.splitlines() if ln.startswith("robaudit: error: ")]
    return bool(errors) and errors[-1].startswith(f"robaudit: error: --resume {out_dir}: {RESUME_REFUSED} ")


def _unbacked_success(code: int, out_dir: Path, gated: bool) -> str:
    """Why exit code 0 (ok) or 1 (gate failed) is not what the model's results say, or ``""`` when it is.

    A model's code can end its audit's process with any code (``os._exit(0)`` in ``forward``); only a finished
    ``results.json`` (status ``complete``, or ``partial`` with skipped probes) makes 0 an audit that finished, and only a gate record that failed
    makes 1 a gate failure.
    """
    if code not in (ExitCode.OK, ExitCode.GATE_FAILED):
        return ""
    try:
        results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = None
    status = results.get("status") if isinstance(results, dict) else None
    gate = results.get("gate") if isinstance(results, dict) else None
    gate_status = gate.get("status") if isinstance(gate, dict) else None
    finished = status in ("complete", "partial")  # partial: a probe skipped for a stated reason, still exit 0
    if code == ExitCode.OK and finished and (not gated or gate_status == "passed"):
        return ""
    if code == ExitCode.GATE_FAILED and gated and finished and gate_status == "failed":
        return ""
    found = "no readable results.json" if results is None else f"results.json with status {status!r}" + (
        f" and gate status {gate_status!r}" if gated else "")
    return f"the audit process exited with code {code} but left {found}: it ended before its audit finished"


def _probes(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / "results.json").read_text(encoding="utf-8")).get("probes", {})
    except (OSError, ValueError):
        return {}


def _is_oom(stderr: str, out_dir: Path, sig: int | None) -> bool:
    """An out-of-memory failure: torch's error in the output or in a failed probe, or the kernel's SIGKILL."""
    if sig == signal.SIGKILL:
        return True
    text = stderr.lower() + json.dumps([p.get("error") for p in _probes(out_dir).values()]).lower()
    return any(marker in text for marker in OOM_MARKERS)


def record_json(record: TaskRecord) -> dict[str, Any]:
    """The record as stored in ``zoo/tasks/<name>.json``."""
    return asdict(record)
