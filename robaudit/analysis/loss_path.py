"""The 1-D loss path between two compared checkpoints (``robaudit compare --loss-path A B``).

Yao et al. Fig 5 draws J((1 − t)·θ_A + t·θ_B) from an original model to a robust one. The
comparison has only saved results, so the path is a fresh, small audit: run A's own configuration
(its checkpoint, architecture, dataset, samples and seed) with the single probe
``curvature.landscape`` and ``interpolate_to`` = run B's checkpoint. Loading goes through the same
safe loader as ``robaudit run``; a run that was audited with ``--trust-checkpoint`` is *not*
trusted again unless ``compare --trust-checkpoint`` says so.

A results file is data: robaudit never imports code because one names it. The saved
architecture is reused only when it is a ``timm:``/``torchvision:`` name; a run audited with
``--arch file.py:Class`` or ``package.module:Class`` needs ``compare --arch`` again.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from robaudit.config import AuditConfig, config_from_mapping
from robaudit.errors import ModelLoadError, UsageError
from robaudit.models.arch_spec import BUILDER_PREFIXES, ArchSpec, parse_trusted_name
from robaudit.models.checkpoint import refuse_untrusted_code

LANDSCAPE = "curvature.landscape"
SAVED_ONLY = ("out", "resume", "probes", "probe_config", "report", "trust_checkpoint", "model")


def _arch(saved: object, cli_arch: str | None, label: str) -> str | None:
    """The path audit's architecture: ``compare --arch``, else the saved one if it names no code.

    Raises:
        UsageError: the saved architecture is a Python file or module (or not a string) and
            ``--arch`` was not given.
    """
    if cli_arch is not None:
        return cli_arch
    if saved is None:
        return None  # inferred from the checkpoint itself, by the loader's own safe rules
    if isinstance(saved, str) and any(saved.strip().startswith(p + ":") for p in BUILDER_PREFIXES):
        try:
            spec = parse_trusted_name(saved, f"run {label}'s saved architecture")
        except ModelLoadError:
            spec = None
        if isinstance(spec, ArchSpec):
            return str(spec)
    raise UsageError(f"--loss-path: run {label} was audited with architecture {str(saved)[:200]!r}, and robaudit "
                     "never imports code named by a results file",
                     fix="pass the architecture again on the command line: robaudit compare ... --arch "
                         "path/to/file.py:ClassName (or timm:NAME / torchvision:NAME)")


def _checkpoint(results: dict[str, Any], label: str) -> str:
    path = results["model"].get("checkpoint_path")
    if not path or not Path(path).is_file():
        raise UsageError(f"--loss-path: the checkpoint of run {label} ({path or results['model']['source']}) "
                         "is not a file on this machine", fix="re-run compare where the audited checkpoints are")
    return str(path)


def path_config(run_a: dict[str, Any], run_b: dict[str, Any], labels: tuple[str, str], out: Path, *,
                trust_checkpoint: bool, threads: int | None, points: int, arch: str | None = None) -> AuditConfig:
    """The audit configuration that draws the path from run A's checkpoint to run B's.

    Args:
        arch: the architecture given on the command line (``compare --arch``); required when
            run A's saved architecture names a Python file or module.

    Raises:
        UsageError: the runs audit different architectures or datasets, a checkpoint is missing,
            run A's architecture is code and ``arch`` is not given, or a checkpoint is a
            TorchScript archive and ``trust_checkpoint`` is false.
    """
    if run_a["model"]["arch"] != run_b["model"]["arch"]:
        raise UsageError(f"--loss-path: runs {labels[0]} and {labels[1]} have different architectures "
                         f"({run_a['model']['arch']} vs {run_b['model']['arch']})",
                         fix="interpolate only between checkpoints of the same architecture")
    if run_a["data"]["source"] != run_b["data"]["source"]:
        raise UsageError(f"--loss-path: runs {labels[0]} and {labels[1]} audit different datasets",
                         fix="interpolate between runs on the same dataset")
    saved = dict(run_a["config"])
    cwd = run_a.get("environment", {}).get("working_directory")
    known = {f.name for f in dataclasses.fields(AuditConfig)}
    values = {k: v for k, v in saved.items() if k in known and k not in SAVED_ONLY}
    values["arch"] = _arch(values.get("arch"), arch, labels[0])
    if values.get("data_dir") and cwd and not Path(values["data_dir"]).is_absolute():
        values["data_dir"] = str(Path(cwd) / values["data_dir"])
    if threads is not None:
        values["threads"] = threads
    model, other = _checkpoint(run_a, labels[0]), _checkpoint(run_b, labels[1])
    for path in (model, other):  # before the path audit starts, not when curvature.landscape reaches B
        refuse_untrusted_code(path, trust_checkpoint)
    # overwrite: a re-run compare redraws the path; the earlier path audit is moved aside, not deleted
    values.update(model=model, out=str(out), probes=[LANDSCAPE], report=True, overwrite=True,
                  trust_checkpoint=trust_checkpoint,
                  probe_config={LANDSCAPE: {"interpolate_to": other, "points": points, "plane_points": 3}})
    return config_from_mapping(values)


def loss_path(run_a: dict[str, Any], run_b: dict[str, Any], labels: tuple[str, str], out: Path, *,
              trust_checkpoint: bool = False, threads: int | None = None, points: int = 21,
              arch: str | None = None) -> dict[str, Any]:
    """Audit the path from run A's checkpoint to run B's and return it for ``compare.json``.

    Returns:
        ``{"from", "to", "run_dir", "t", "losses": {sample set: [nats per t]}, "endpoint_losses", ...}``;
        t = 0 is run A's model, t = 1 run B's.

    Raises:
        UsageError: see :func:`path_config`; or the path audit failed (its directory keeps the details).
    """
    from robaudit.engine import run_audit

    config = path_config(run_a, run_b, labels, out, trust_checkpoint=trust_checkpoint, threads=threads, points=points,
                         arch=arch)
    outcome = run_audit(config, quiet=True, command=["robaudit", "compare", "--loss-path", *labels])
    entry = outcome.results["probes"][LANDSCAPE]
    if entry["status"] != "ok":
        error = (entry.get("error") or {}).get("message", "unknown error")
        raise UsageError(f"--loss-path {labels[0]} {labels[1]}: the path audit failed: {error}",
                         fix=f"see {out}/results.json")
    curve = entry["artifacts"]["interpolation"]
    info = entry["summary"]["interpolation"]
    return {"from": labels[0], "to": labels[1], "run_dir": str(out), "t": curve["t"], "losses": curve["losses"],
            "endpoint_losses": info.get("endpoint_losses"), "other_sha256": info.get("other_sha256"),
            "meaning": "mean cross-entropy (nats) at (1 − t)·θ_from + t·θ_to; floating buffers interpolated too"}
