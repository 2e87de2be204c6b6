"""The engine: runs the selected probes in order and keeps the books."""
from robaudit.engine.runner import AuditOutcome, run_audit

__all__ = ["AuditOutcome", "run_audit"]
