"""The Python API: ``robaudit.audit`` and ``robaudit.AuditConfig`` from the top level."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS


def test_audit_config_is_importable_from_the_top_level_and_runs_the_same_audit(tmp_path: Path) -> None:
    import robaudit
    from robaudit.config import AuditConfig

    assert robaudit.AuditConfig is AuditConfig
    options = dict(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=40, probes=["clean"],
                   threads=THREADS, report=False)
    via_config = robaudit.audit(robaudit.AuditConfig(**options, out=str(tmp_path / "a")))
    via_kwargs = robaudit.audit(**options, out=str(tmp_path / "b"))
    assert via_config.exit_code == via_kwargs.exit_code == 0
    assert via_config.results["probes"]["clean"]["summary"] == via_kwargs.results["probes"]["clean"]["summary"]


def test_importing_robaudit_does_not_import_torch() -> None:
    code = "import sys, robaudit; robaudit.AuditConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
