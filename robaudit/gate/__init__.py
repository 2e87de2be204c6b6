"""The CI gate: rules on saved results (thresholds, baseline regressions with noise allowances,
flags) → exit code, terminal table, JUnit XML, Markdown summary and ``results.json`` ``gate``.

Python API::

    from robaudit.gate import gate, load_rules
    outcome = gate("audit/", load_rules(Path("gate.toml")), baseline_dir=Path("baseline/"))
    outcome.status, outcome.exit_code

See ``docs/ci-gate.md`` for the rules reference and a GitHub Actions workflow.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

from robaudit.errors import RobauditError

from robaudit.gate.baseline import BaselineMismatchError, Run
from robaudit.gate.evaluate import GateOutcome, GateValueError, NothingToGateError, RuleOutcome, evaluate_gate
from robaudit.gate.outputs import JUNIT_FILE, MARKDOWN_FILE, check_output_paths, write_outputs, write_stopped_outputs
from robaudit.gate.rules import GateRules, GateRulesError, check_rule_paths, load_rules, parse_rules

__all__ = ["BaselineMismatchError", "GateOutcome", "GateRules", "GateRulesError", "GateValueError", "NothingToGateError",
           "RuleOutcome", "Run", "check_declared_paths", "check_rule_paths", "evaluate_gate", "gate", "load_rules",
           "parse_rules", "registered_probe_names", "write_outputs"]

log = logging.getLogger("robaudit.gate")


def registered_probe_names() -> list[str]:
    """Names of the registered probes (to tell a probe that did not run from a misspelt one)."""
    from robaudit.probes.registry import ProbeRegistry

    try:
        return list(ProbeRegistry().names())
    except Exception as exc:  # a broken plugin must not stop the gate; names only sharpen messages
        log.debug("probe registry unavailable to the gate: %s", exc)
        return []


def check_declared_paths(rules: GateRules) -> None:
    """:func:`check_rule_paths` against the registered probes that the rules name.

    Raises:
        GateRulesError: a rule path that its probe does not declare (exit 2).
    """
    from robaudit.probes.registry import ProbeRegistry

    named = {r.probe() for r in rules.rules if hasattr(r, "probe")} - {None}
    try:
        registry = ProbeRegistry()
        known = set(registry.names())
    except Exception as exc:  # a broken plugin must not stop the gate; unchecked rules are still evaluated
        log.debug("probe registry unavailable to the gate: %s", exc)
        return
    classes = {name: cls for name in sorted(named & known) if (cls := registry.get_or_skip(name)) is not None}
    check_rule_paths(rules, classes)


def load_baseline(rules: GateRules, baseline_dir: Path | None) -> Run | None:
    """The baseline run: ``baseline_dir`` if given, else the rules' ``baseline``, else None.

    Raises:
        UsageError: the directory or its ``results.json`` is missing or unreadable.
    """
    path = baseline_dir if baseline_dir is not None else rules.baseline
    return Run.load(Path(path)) if path is not None else None


def gate(results_dir: Path | str, rules: GateRules, *, baseline_dir: Path | None = None,
         allow_mismatch: Iterable[str] = (), junit: Path | None = None, markdown: Path | None = None,
         record: bool = True, known_probes: Iterable[str] | None = None) -> GateOutcome:
    """Evaluate ``rules`` on ``results_dir`` and write the outputs.

    Args:
        results_dir: the audit's results directory.
        rules: checked rules (:func:`load_rules` / :func:`parse_rules`).
        baseline_dir: the baseline results directory; overrides the rules' ``baseline``.
        allow_mismatch: baseline differences to accept, on top of the rules' ``allow-mismatch``.
        junit: JUnit XML path (default ``RESULTS_DIR/gate-junit.xml``).
        markdown: Markdown summary path (default ``RESULTS_DIR/gate-summary.md``); the summary is
            also appended to ``$GITHUB_STEP_SUMMARY`` when that is set.
        record: write the outcome into ``results.json`` ``gate``.
        known_probes: registered probe names (default: ask the registry).

    Returns:
        the outcome, already written to every output; ``status == "error"`` (exit 2) when a rule
        read a value that is not a finite number (``outcome.error()`` is then its one-line error).

    Raises:
        GateRulesError, BaselineMismatchError, UsageError: bad rules or inputs (exit 2); then, as for
            NothingToGateError, the JUnit and Markdown files say that the gate stopped (never an
            earlier verdict), and ``results.json`` is left unchanged. An output path that is one of the
            files the gate reads (``--junit results.json``) is refused before anything is written.
        NothingToGateError: no probe finished (exit 5).
    """
    results_dir = Path(results_dir)
    junit = junit if junit is not None else results_dir / JUNIT_FILE
    markdown = markdown if markdown is not None else results_dir / MARKDOWN_FILE
    check_output_paths(results_dir, junit=junit, markdown_path=markdown,
                       baseline_dir=baseline_dir if baseline_dir is not None else rules.baseline)
    try:
        return _gate(results_dir, rules, baseline_dir=baseline_dir, allow_mismatch=allow_mismatch, junit=junit,
                     markdown=markdown, record=record, known_probes=known_probes)
    except RobauditError as exc:
        status = "nothing_to_gate" if isinstance(exc, NothingToGateError) else "error"
        write_stopped_outputs(exc.one_line(), status=status, results_dir=results_dir, junit=junit,
                              markdown_path=markdown)
        raise


def _gate(results_dir: Path, rules: GateRules, *, baseline_dir: Path | None, allow_mismatch: Iterable[str],
          junit: Path, markdown: Path, record: bool, known_probes: Iterable[str] | None) -> GateOutcome:
    from robaudit.gate.rules import MISMATCHES

    extra = set(allow_mismatch)
    unknown = extra - set(MISMATCHES)
    if unknown:
        from robaudit.errors import did_you_mean

        name = sorted(unknown)[0]
        hint = did_you_mean(name, MISMATCHES)
        raise GateRulesError(f"unknown mismatch '{name}' in --allow-mismatch" + (f"; {hint}" if hint else ""),
                             fix=f"use names from: {', '.join(MISMATCHES)}")
    if extra:
        rules = dataclasses.replace(rules, allow_mismatch=frozenset(rules.allow_mismatch | extra))
    check_declared_paths(rules)
    candidate = Run.load(results_dir)
    baseline = load_baseline(rules, baseline_dir)
    names = registered_probe_names() if known_probes is None else list(known_probes)
    outcome = evaluate_gate(candidate, rules, baseline, names)
    write_outputs(outcome, junit=junit, markdown_path=markdown, record=record)
    return outcome
