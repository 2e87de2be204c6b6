"""robaudit: a robustness auditor for existing PyTorch model zoos.

Python API::

    import robaudit
    outcome = robaudit.audit(model="examples/digits_cnn.safetensors",
                             arch="examples/digits_cnn.py:DigitsCNN", dataset="digits", out="audit")
    outcome.results["probes"]["clean"]["summary"]["accuracy"]["value"]

    # live objects: an nn.Module and (x, y) tensors, a torch Dataset or a DataLoader
    outcome = robaudit.audit(model=net, data=(x, y), mean=[0.3054], std=[0.3761], out="audit-live")

The same :class:`~robaudit.config.AuditConfig` backs the CLI and this API.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("robaudit")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from robaudit.config import AuditConfig
    from robaudit.engine import AuditOutcome

__all__ = ["AuditConfig", "__version__", "audit"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import robaudit`` (and ``robaudit --version``) stays free of torch.
    if name == "AuditConfig":
        from robaudit.config import AuditConfig

        return AuditConfig
    raise AttributeError(f"module 'robaudit' has no attribute {name!r}")


def audit(config: "AuditConfig | None" = None, /, *, model: Any = None, data: Any = None,
          config_file: str | Path | None = None, quiet: bool = True, **options: Any) -> "AuditOutcome":
    """Run an audit from Python.

    Args:
        config: a ready :class:`AuditConfig`; or leave it out and pass ``model``, ``data`` and ``options``.
        model: a live ``torch.nn.Module`` (audited as it is: a copy in eval mode; it is assumed to take
            [0, 1] pixels unless ``mean=``/``std=`` give its normalisation), or what ``robaudit run MODEL``
            takes (a checkpoint path, ``timm:NAME``, ``torchvision:NAME``, ``hf-hub:ORG/NAME``).
        data: ``(x, y)`` tensors (``x`` N×C×H×W float pixels in [0, 1], ``y`` N integer class indices), a
            torch ``Dataset`` or ``DataLoader`` yielding ``(x, y)``, or what ``--dataset`` takes (a name
            or a path); ``dataset=`` is the same option. Sample ids of in-memory data are ``memory:<i>``.
        config_file: a ``robaudit.toml`` (or ``pyproject.toml``) whose values act as
            defaults under ``options``, as on the command line.
        quiet: no progress bars.
        **options: other :class:`AuditConfig` fields (``probes=``, ``n_samples=``, ``out=`` …);
            ``analysis=`` takes an :class:`~robaudit.analysis.config.AnalysisConfig` or a dict of its knobs
            (``{"n_bootstrap": 200, "auroc_budgets": "all"}``), replacing the config file's ``[analysis]``.

    Returns:
        The :class:`~robaudit.engine.AuditOutcome`; results are also on disk in ``out``. A live module
        is left exactly as it was (mode, ``requires_grad``, weights, device), which is checked. So are
        the process's torch settings: threads, deterministic algorithms, cuDNN and TF32 flags,
        ``CUBLAS_WORKSPACE_CONFIG`` and the global random generators are put back afterwards.

    Raises:
        RobauditError: bad input (one line saying what is wrong and how to fix it).
    """
    from robaudit.results.environment import process_settings_restored

    with process_settings_restored():  # a notebook's torch settings are its own (the CLI's process just exits)
        return _audit(config, model=model, data=data, config_file=config_file, quiet=quiet, **options)


def _audit(config: "AuditConfig | None", /, *, model: Any, data: Any, config_file: str | Path | None, quiet: bool,
           **options: Any) -> "AuditOutcome":
    from robaudit.config import config_from_mapping, read_config_file
    from robaudit.engine import run_audit

    if model is not None:
        options["model"] = model
    if data is not None:
        options["data"] = data
    if config is not None:
        if options or config_file is not None:
            raise TypeError("pass either an AuditConfig or keyword options, not both")
        return run_audit(config, quiet=quiet)
    from robaudit.live_inputs import split_live_options

    options, live = split_live_options(options)
    merged: dict[str, Any] = {}
    if config_file is not None:
        file_values = read_config_file(Path(config_file))
        merged.update(file_values["run"])
        if file_values["probe_config"]:
            merged["probe_config"] = file_values["probe_config"]
        if file_values["analysis"]:
            merged["analysis"] = file_values["analysis"]
    merged.update(options)
    config = config_from_mapping(merged)
    if live is None:
        return run_audit(config, quiet=quiet)
    live.check_config(config)
    with live.guard():
        return run_audit(config, quiet=quiet, live=live)
