"""``robaudit zoo --dry-run``: validate every model (load, match, preflight: what ``robaudit validate``
does), count its parameters and estimate its audit's cost, without running any probe.

Each model is inspected in its own child process (``python -m robaudit.zoo.dry_run TASK.toml SOURCE``),
for the same isolation as the sweep. The estimate is the one ``robaudit run`` records as ``cost_estimate``
(:func:`robaudit.probes.cost.estimate_audit_cost`): per-sample forward, forward+backward and Hessian-vector
product passes from each probe's settings, and seconds = those passes (in forward+backward equivalents)
× one timed forward+backward of a sample on this device.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from robaudit.exitcodes import ExitCode
from robaudit.zoo.manifest import Manifest, ZooModel
from robaudit.zoo.task import to_toml, task_settings


def inspect_model(config_path: Path, source: str) -> dict[str, Any]:
    """Load, match and preflight-check one model as ``robaudit validate`` does; count its parameters and
    estimate its audit's cost exactly as ``robaudit run`` does before its probes (the ``cost_estimate`` of
    ``results.json``). Errors become ``{"status": "failed", ...}``; preflight's error flags are listed
    (``error_flags``, their ids) on a valid model, as ``validate`` lists them and ``run`` audits it."""
    from robaudit.config import config_from_mapping, read_config_file
    from robaudit.engine.runner import audit_cost_estimate, audit_threat_model, prepare, select_probes
    from robaudit.errors import RobauditError
    from robaudit.preflight import run_preflight
    from robaudit.probes.registry import ProbeRegistry

    try:
        file_values = read_config_file(config_path)
        config = config_from_mapping({**file_values["run"], "model": source,
                                      "probe_config": file_values["probe_config"]})
        selected = select_probes(config, ProbeRegistry())
        device, _, model, data = prepare(config, selected)
        threat_model = audit_threat_model(config, data)
        preflight = run_preflight(model, data, device, any(s.cls.needs_double_backward for s in selected),
                                  config.batch_size)
        estimate = audit_cost_estimate(selected, model, data, device, config.batch_size, threat_model)
    except RobauditError as exc:
        return {"status": "failed", "exit_code": int(exc.exit_code), "reason": exc.one_line()}
    return {"status": "ok", "exit_code": int(ExitCode.OK), "reason": "",
            "error_flags": [f.id for f in preflight.flags if f.severity.value == "error"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "samples": len(data), "device": str(device), "cost_estimate": estimate}


def dry_run(manifest: Manifest, threads: int) -> list[dict[str, Any]]:
    """Inspect every model of ``manifest`` in a child process; one dict per model (manifest order).
    Nothing is written under ``--out`` (the task configs live in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="robaudit-zoo-dry-run-") as tmp:
        return [_inspect_in_child(manifest, model, Path(tmp), threads) for model in manifest.models]


def _inspect_in_child(manifest: Manifest, model: ZooModel, task_dir: Path, threads: int) -> dict[str, Any]:
    config = task_dir / f"{model.name}.toml"
    config.write_text(to_toml(task_settings(manifest.audit, model)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "robaudit.zoo.dry_run", str(config.resolve()), model.source],
                          cwd=manifest.base_dir, env=env, capture_output=True, text=True)
    try:
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        row = {"status": "failed", "exit_code": int(ExitCode.INTERNAL),
               "reason": tail[-1] if tail else f"the inspection process ended with {proc.returncode}"}
    return {"name": model.name, "source": model.source, **row}


def main() -> None:  # pragma: no cover - the child process
    import warnings

    warnings.filterwarnings("ignore")
    print(json.dumps(inspect_model(Path(sys.argv[1]), sys.argv[2])))


if __name__ == "__main__":
    main()
