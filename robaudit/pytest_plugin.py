"""robaudit's pytest plugin (entry point ``pytest11``: ``robaudit``), for teams that gate models in
their test suites::

    from robaudit.pytest_plugin import assert_robust

    def test_model_is_robust(tmp_path):
        assert_robust("model.safetensors", "cifar10", arch="torchvision:resnet18",
                      rules="gate.toml", probes="clean,attack.pgd_linf", n_samples=200, out=tmp_path / "audit")

or the ``robaudit_audit`` fixture, which writes each audit under the test's ``tmp_path``::

    def test_model(robaudit_audit):
        outcome = robaudit_audit("model.safetensors", "cifar10", rules={"rule": [...]}, arch=...)

``assert_robust`` runs the audit (:func:`robaudit.audit`), applies the gate rules (:mod:`robaudit.gate`)
and fails the test with the gate's table as the message; a rule that reads a value that is not a
finite number, bad rules, or an audit that did not finish raise robaudit's one-line error instead.
"""
from __future__ import annotations

import io
import itertools
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from robaudit.engine import AuditOutcome
    from robaudit.gate import GateRules

__all__ = ["assert_robust", "robaudit_audit"]


def _rules(rules: GateRules | Mapping[str, Any] | str | Path) -> GateRules:
    from robaudit.gate import GateRules, load_rules, parse_rules

    if isinstance(rules, GateRules):
        return rules
    if isinstance(rules, Mapping):
        return parse_rules(dict(rules), source="assert_robust(rules=...)", base_dir=Path.cwd())
    return load_rules(Path(rules))


def assert_robust(model: str, data: str = "digits", *, rules: GateRules | Mapping[str, Any] | str | Path,
                  out: str | Path | None = None, baseline: str | Path | None = None,
                  **options: Any) -> AuditOutcome:
    """Audit ``model`` on ``data``, gate the results on ``rules`` and fail the test if a rule fails.

    Args:
        model: what ``robaudit run MODEL`` takes (a checkpoint path, ``timm:NAME``, ``torchvision:NAME``).
        data: the ``--dataset`` (``digits``, ``cifar10``, ``FILE.npz`` …).
        rules: gate rules: a TOML file, a table as read from one (``{"rule": [{...}]}``), or parsed
            :class:`~robaudit.gate.GateRules` (docs/ci-gate.md).
        out: the results directory (default: a new temporary directory, deleted when every rule
            passes and kept, its path in the failure message, when the test fails).
        baseline: a baseline results directory for relative rules (overrides the rules' ``baseline``).
        **options: other :class:`~robaudit.config.AuditConfig` fields (``arch=``, ``probes=``, ``n_samples=`` …).

    Returns:
        The audit's :class:`~robaudit.engine.AuditOutcome`, when every rule passed (without ``out``, its
        ``out_dir`` is already deleted; ``results`` holds what ``results.json`` held).

    Raises:
        pytest.fail.Exception: a rule failed, or nothing could be gated; the message is the gate's table.
        RobauditError: bad rules or options, a rule reading a non-finite value, or an audit that did not
            finish cleanly (its one-line message).
    """
    checked = _rules(rules)  # bad rules fail before the audit
    if isinstance(options.get("probes"), str):
        options["probes"] = [p.strip() for p in options["probes"].split(",") if p.strip()]
    if out is not None:
        return _audit_and_gate(model, data, Path(out), checked, baseline, options)
    out_dir = Path(tempfile.mkdtemp(prefix="robaudit-"))
    try:
        outcome = _audit_and_gate(model, data, out_dir, checked, baseline, options)
    except pytest.fail.Exception:
        raise  # the gate failed: the results stay for inspection (the message names the folder)
    except BaseException:
        if not (out_dir / "results.json").exists():  # stopped before anything worth reading was written
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    return outcome


def _audit_and_gate(model: str, data: str, out_dir: Path, checked: GateRules, baseline: str | Path | None,
                    options: dict[str, Any]) -> AuditOutcome:
    """Audit into ``out_dir`` and gate it: :func:`assert_robust` once its output folder is chosen."""
    import robaudit
    from robaudit.errors import UsageError
    from robaudit.exitcodes import ExitCode
    from robaudit.gate import gate
    from robaudit.gate.outputs import print_table

    outcome = robaudit.audit(model=model, dataset=data, out=out_dir, **options)
    if outcome.exit_code != ExitCode.OK:
        failed = {n: (e.get("error") or {}).get("message") for n, e in outcome.results["probes"].items()
                  if e.get("status") != "ok"}
        raise UsageError(f"the audit did not finish cleanly (exit {int(outcome.exit_code)}): {failed}",
                         fix=f"see {outcome.out_dir / 'results.json'}")
    result = gate(outcome.out_dir, checked, baseline_dir=Path(baseline) if baseline is not None else None)
    if result.status == "error":
        error = result.error()
        assert error is not None
        raise error
    if result.status != "passed":
        table = io.StringIO()
        print_table(result, file=table)
        pytest.fail(f"robaudit gate {result.status}:\n{table.getvalue()}results kept in {outcome.out_dir}",
                    pytrace=False)
    return outcome


@pytest.fixture
def robaudit_audit(tmp_path: Path) -> Callable[..., AuditOutcome]:
    """:func:`assert_robust` with each audit written to ``tmp_path/audit-N`` (``out=`` still overrides)."""
    counter = itertools.count(1)

    def run(model: str, data: str = "digits", **kwargs: Any) -> AuditOutcome:
        kwargs.setdefault("out", tmp_path / f"audit-{next(counter)}")
        return assert_robust(model, data, **kwargs)

    return run
