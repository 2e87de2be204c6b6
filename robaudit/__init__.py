"""robaudit: a robustness auditor for existing PyTorch model zoos.

Python API::

    import robaudit
    outcome = robaudit.audit(model="examples/digits_cnn.safetensors",
                             arch="examples/digits_cnn.py:DigitsCNN", dataset="digits", out="audit")
    outcome.results["probes"]["clean"]["summary"]["accuracy"]["value"]

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


def audit(config: "AuditConfig | None" = None, /, *, config_file: str | Path | None = None, quiet: bool = True,
          **options: Any) -> "AuditOutcome":
    """Run an audit from Python.

    Args:
        config: a ready :class:`AuditConfig`; or leave it out and pass ``options``.
        config_file: a ``robaudit.toml`` (or ``pyproject.toml``) whose values act as
            defaults under ``options``, as on the command line.
        quiet: no progress bars.
        **options: :class:`AuditConfig` fields (``model=``, ``dataset=``, ``probes=`` …).

    Returns:
        The :class:`~robaudit.engine.AuditOutcome`; results are also on disk in ``out``.
    """
    from robaudit.config import config_from_mapping, read_config_file
    from robaudit.engine import run_audit

    if config is None:
        merged: dict[str, Any] = {}
        if config_file is not None:
            file_values = read_config_file(Path(config_file))
            merged.update(file_values["run"])
            if file_values["probe_config"]:
                merged["probe_config"] = file_values["probe_config"]
        merged.update(options)
        config = config_from_mapping(merged)
    elif options or config_file is not None:
        raise TypeError("pass either an AuditConfig or keyword options, not both")
    return run_audit(config, quiet=quiet)
