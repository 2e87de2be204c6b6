"""``robaudit gate RESULTS_DIR``, and the ``--gate FILE`` step of ``robaudit run``.

The gate reads saved results (no recomputation), evaluates the rules, prints a table, writes
JUnit XML and a Markdown summary (also to ``$GITHUB_STEP_SUMMARY``), records the outcome in
``results.json`` and re-renders the report so it shows the verdict at the top.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import click

from robaudit.errors import RobauditError, UsageError
from robaudit.exitcodes import ExitCode

GATE_EPILOG = """
\b
Examples:
  # absolute bounds and flags only
  robaudit gate audit/ --rules gate.toml
\b
  # regressions against a committed baseline results directory, beyond sampling noise
  robaudit gate audit/ --rules gate.toml --baseline baselines/main
\b
  # run and gate in one go (the rules file may name its baseline)
  robaudit run model.safetensors --arch net.py:Net --out audit/ --gate gate.toml
\b
Without --rules, the [gate] table of robaudit.toml (or [tool.robaudit.gate] in pyproject.toml) is used.
Writes RESULTS_DIR/gate-junit.xml and gate-summary.md, appends the summary to $GITHUB_STEP_SUMMARY
when set, records the outcome in results.json and re-renders report.html. See docs/ci-gate.md.
Exit codes: 0 passed, 1 a rule failed, 2 bad rules or inputs (a value that is not a finite number
included), 5 nothing to gate.
"""


def rules_from_config(ctx: click.Context) -> Any:
    """The ``[gate]`` table of the config file found by the ``robaudit`` group, as :class:`GateRules`.

    Raises:
        UsageError: no config file, or one without a ``[gate]`` table.
    """
    from robaudit.gate import parse_rules

    obj = ctx.find_root().obj or {}
    path: Path | None = obj.get("config_path")
    table = (obj.get("file") or {}).get("gate")
    if path is None or table is None:
        raise UsageError("no gate rules given",
                         fix="pass --rules FILE, or add a [gate] table to robaudit.toml ([tool.robaudit.gate] in pyproject.toml)")
    if not isinstance(table, dict):
        raise UsageError(f"'gate' in {path} must be a table", fix="write [gate] and [[gate.rule]] tables")
    source = f"{path} [tool.robaudit.gate]" if path.name == "pyproject.toml" else f"{path} [gate]"
    return parse_rules(table, source=source, base_dir=path.parent, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def _allow(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _report(outcome: Any, quiet: bool, to_stderr: bool) -> None:
    from robaudit.gate.outputs import headline, print_table

    if quiet:
        click.echo(headline(outcome), err=True)
    else:
        print_table(outcome, file=sys.stderr if to_stderr else None)


def _rerender(results_dir: Path) -> Path | None:
    """Re-render the report so it shows the gate; a report problem never changes the gate's verdict."""
    import logging

    from robaudit.report import render_report

    try:
        return render_report(results_dir)
    except Exception as exc:  # the verdict and its records are already written; say why the report is stale
        first = (str(exc).splitlines() or [""])[0]
        logging.getLogger("robaudit").error("report not re-rendered with the gate (%s: %s); the gate's verdict, "
                                            "results.json and JUnit are unaffected", type(exc).__name__, first)
        return None


@click.command("gate", epilog=GATE_EPILOG)
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Rules file (TOML): standalone, robaudit.toml [gate] or pyproject.toml [tool.robaudit.gate].")
@click.option("--baseline", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Baseline results directory for relative rules [default: the rules' baseline].")
@click.option("--allow-mismatch", default=None, metavar="KIND,...",
              help="Accept baseline differences: dataset, samples, config (recorded in the outcome).")
@click.option("--junit", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="JUnit XML output [default: RESULTS_DIR/gate-junit.xml].")
@click.option("--markdown", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Markdown summary output [default: RESULTS_DIR/gate-summary.md].")
@click.option("--no-record", is_flag=True, default=False,
              help="Leave results.json and report.html unchanged (for read-only results).")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Print only the verdict line, not the table.")
@click.option("--debug", is_flag=True, default=False, help="Show tracebacks and debug logs.")
@click.pass_context
def gate(ctx: click.Context, results_dir: Path, rules_path: Path | None, baseline: Path | None,
         allow_mismatch: str | None, junit: Path | None, markdown: Path | None, no_record: bool, quiet: bool,
         debug: bool) -> None:
    """Gate the saved results in RESULTS_DIR on rules: exit 1 when a rule fails."""
    from robaudit.cli.main import _setup_logging
    from robaudit.gate import gate as run_gate
    from robaudit.gate import load_rules
    from robaudit.results import store

    _setup_logging(quiet, debug)
    from robaudit.gate.outputs import JUNIT_FILE, MARKDOWN_FILE, check_output_paths

    check_output_paths(Path(results_dir), junit=junit if junit is not None else Path(results_dir) / JUNIT_FILE,
                       markdown_path=markdown if markdown is not None else Path(results_dir) / MARKDOWN_FILE,
                       baseline_dir=baseline)  # before anything is written, even a stopped gate's files
    try:
        rules = load_rules(rules_path) if rules_path is not None else rules_from_config(ctx)
    except RobauditError as exc:  # as when the gate itself stops: no earlier verdict may be left standing
        from robaudit.gate.outputs import write_stopped_outputs

        write_stopped_outputs(exc.one_line(), status="error", results_dir=Path(results_dir),
                              junit=junit if junit is not None else Path(results_dir) / JUNIT_FILE,
                              markdown_path=markdown if markdown is not None else Path(results_dir) / MARKDOWN_FILE)
        raise
    outcome = run_gate(results_dir, rules, baseline_dir=baseline, allow_mismatch=_allow(allow_mismatch), junit=junit,
                       markdown=markdown, record=not no_record)
    _report(outcome, quiet, to_stderr=False)
    if not no_record and (Path(results_dir) / store.REPORT_FILE).is_file():
        _rerender(Path(results_dir))
    error = outcome.error()
    if error is not None:  # the outputs already record the rule as an error; now the one line and exit 2
        raise error
    ctx.exit(int(outcome.exit_code))


def prepare_run_gate(rules_path: Path) -> Any:
    """Read and check the rules of ``robaudit run --gate FILE`` before the audit starts.

    Bad rules, or a baseline directory that is missing, fail fast (exit 2) instead of after the audit.
    """
    from robaudit.gate import check_declared_paths, load_baseline, load_rules

    rules = load_rules(rules_path)
    check_declared_paths(rules)
    load_baseline(rules, None)
    return rules


def gate_after_run(rules: Any, out_dir: Path, audit_code: ExitCode, *, quiet: bool, render: bool) -> ExitCode:
    """Gate a fresh audit; the exit code is the audit's when it was not OK, else the gate's."""
    from robaudit.gate import gate as run_gate
    from robaudit.results import store

    if not (Path(out_dir) / store.RESULTS_FILE).is_file():
        return audit_code
    outcome = run_gate(out_dir, rules)
    _report(outcome, quiet, to_stderr=True)
    if render:
        _rerender(Path(out_dir))
    error = outcome.error()
    if error is not None and audit_code == ExitCode.OK:
        raise error
    return audit_code if audit_code != ExitCode.OK else outcome.exit_code
