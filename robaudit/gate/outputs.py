"""What the gate writes: a terminal table, JUnit XML, a Markdown summary, and ``results.json`` ``gate``.

- JUnit XML: one ``<testsuite>``, one ``<testcase>`` per rule (``<failure>`` when it failed,
  ``<error>`` when a value it reads is not a finite number, ``<skipped>`` when an optional rule had
  no metric), so any CI shows the rules as tests.
- Markdown: a heading with the verdict and a table of rules; appended to ``$GITHUB_STEP_SUMMARY``
  when that variable is set (GitHub Actions shows it on the run's page).

Every output is rendered from the final :class:`~robaudit.gate.evaluate.GateOutcome` before the
first one is written, and all of them state the same verdict as the exit code. A gate that stops
before a verdict (exit 2 or 5) replaces an earlier gate's JUnit and Markdown files with ones that
say so (:func:`write_stopped_outputs`).
"""
from __future__ import annotations

import logging
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

from robaudit.errors import UsageError
from robaudit.gate.evaluate import GateOutcome, RuleOutcome, describe_noise, format_value
from robaudit.gate.rules import MetricRule
from robaudit.results import store

log = logging.getLogger("robaudit.gate")

JUNIT_FILE = store.JUNIT_FILE
MARKDOWN_FILE = store.MARKDOWN_FILE
STATUS_WORD = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
STATUS_ICON = {"passed": "✅", "failed": "❌", "skipped": "⏭️", "error": "❌"}
VERDICT = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "nothing_to_gate": "had nothing to gate"}


def headline(outcome: GateOutcome) -> str:
    """``robaudit gate FAILED: 1 of 3 rules failed, 0 skipped`` (one line)."""
    c = outcome.counts()
    errors = f"{c['error']} in error (not a finite number), " if c["error"] else ""
    return (f"robaudit gate {VERDICT[outcome.status]}: {errors}{c['failed']} of {c['total']} rule(s) failed, "
            f"{c['passed']} passed, {c['skipped']} skipped")


def _bound(o: RuleOutcome) -> str:
    r = o.rule
    if not isinstance(r, MetricRule):
        return r.target
    if r.kind == "threshold":
        if o.higher_is_better is None:
            return f"threshold {r.limit:g}"
        return f"{'≥' if o.higher_is_better else '≤'} {r.limit:g}"
    if r.kind == "max_regression":
        return f"at most {r.limit:g} worse than baseline"
    return f"≤ {r.limit:g}× baseline"


def _noise(o: RuleOutcome) -> str:
    if o.noise is None or not isinstance(o.rule, MetricRule):
        return "—"
    return describe_noise(o.rule, o.noise, o.higher_is_better, short=True)


def rows(outcome: GateOutcome) -> list[dict[str, str]]:
    """One row of display strings per rule (shared by the terminal table and the Markdown)."""
    out = []
    for o in outcome.outcomes:
        metric = isinstance(o.rule, MetricRule)
        out.append({
            "status": o.status,
            "rule": o.rule.id,
            "value": format_value(o.value) if metric else str(len(o.matched_flags)) + " flag(s)",
            "bound": _bound(o),
            "baseline": format_value(o.baseline_value) if metric and o.rule.relative else "—",
            "noise": _noise(o),
            "verdict": o.verdict,
            "detail": o.message,
        })
    return out


def print_table(outcome: GateOutcome, file: IO[str] | None = None) -> None:
    """Print the verdict, a table of rules and the reasons for failed and skipped rules (rich;
    plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, highlight=False)
    if console.width < 120:
        console = Console(file=file, highlight=False, width=120)
    table = Table(title=headline(outcome), title_justify="left")
    for col in ("", "rule", "value", "bound", "baseline", "noise test", "verdict"):
        table.add_column(col, overflow="fold")
    colour = {"passed": "green", "failed": "red", "skipped": "yellow", "error": "red"}
    for row in rows(outcome):
        table.add_row(Text(STATUS_WORD[row["status"]], style=colour[row["status"]]), Text(row["rule"], style="bold"),
                      row["value"], row["bound"], row["baseline"], row["noise"], row["verdict"])
    console.print(table)
    for row in rows(outcome):
        if row["status"] != "passed":
            console.print(Text(f"{STATUS_WORD[row['status']]} {row['rule']}: {row['detail']}",
                               style=colour[row["status"]]))
    if outcome.baseline:
        b = outcome.baseline
        console.print(f"baseline {b['path']} (results.json sha256 {b['results_sha256']})")
    for kind, why in outcome.mismatches.items():
        console.print(f"accepted baseline mismatch ({kind}): {why}")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(outcome: GateOutcome) -> str:
    """The Markdown summary (GitHub-flavoured): verdict heading, provenance, rules table, reasons."""
    icon = {"passed": "✅", "failed": "❌", "error": "❌", "nothing_to_gate": "⚠️"}[outcome.status]
    lines = [f"### {icon} {headline(outcome)}", ""]
    where = f"Results `{outcome.results_dir}`"
    if outcome.baseline:
        b = outcome.baseline
        where += f" · baseline `{b['path']}` (results.json sha256 `{(b['results_sha256'] or '')[:16]}…`)"
    where += f" · rules `{outcome.rules.source}` · α = {outcome.rules.level:g}"
    lines += [where, ""]
    lines.append("| | rule | value | bound | baseline | noise test | verdict |")
    lines.append("|---|---|---|---|---|---|---|")
    table = rows(outcome)
    for row in table:
        lines.append("| " + " | ".join(_md_cell(x) for x in (
            STATUS_ICON[row["status"]], row["rule"], row["value"], row["bound"], row["baseline"], row["noise"],
            row["verdict"])) + " |")
    reasons = [row for row in table if row["status"] != "passed"]
    if reasons:
        lines.append("")
        lines += [f"- {STATUS_ICON[row['status']]} **{_md_cell(row['rule'])}**: {_md_cell(row['detail'])}"
                  for row in reasons]
    for kind, why in outcome.mismatches.items():
        lines += ["", f"Accepted baseline mismatch (**{kind}**): {_md_cell(why)}"]
    return "\n".join(lines) + "\n"


def junit_xml(outcome: GateOutcome) -> str:
    """The JUnit XML report: one test case per rule."""
    c = outcome.counts()
    suites = ET.Element("testsuites", name="robaudit gate", tests=str(c["total"]), failures=str(c["failed"]),
                        errors=str(c["error"]), skipped=str(c["skipped"]), time="0")
    suite = ET.SubElement(suites, "testsuite", name=f"robaudit gate {outcome.results_dir}", tests=str(c["total"]),
                          failures=str(c["failed"]), errors=str(c["error"]), skipped=str(c["skipped"]), time="0",
                          timestamp=outcome.evaluated.replace("+00:00", ""), hostname=socket.gethostname())
    props = ET.SubElement(suite, "properties")
    prop_values: dict[str, Any] = {"results_dir": str(outcome.results_dir), "rules": outcome.rules.source,
                                   "rules_sha256": outcome.rules.sha256, "level": outcome.rules.level,
                                   "status": outcome.status}
    if outcome.baseline:
        prop_values.update(baseline=outcome.baseline["path"], baseline_results_sha256=outcome.baseline["results_sha256"])
    for name, value in prop_values.items():
        if value is not None:
            ET.SubElement(props, "property", name=name, value=str(value))
    for o, row in zip(outcome.outcomes, rows(outcome)):
        case = ET.SubElement(suite, "testcase", name=o.rule.id, classname=f"robaudit.gate.{o.rule.kind}", time="0")
        detail = "\n".join(f"{k}: {v}" for k, v in row.items() if k not in ("status", "verdict"))
        if o.status == "failed":
            failure = ET.SubElement(case, "failure", message=o.message, type=f"gate.{o.rule.kind}")
            failure.text = detail
        elif o.status == "error":
            error = ET.SubElement(case, "error", message=o.message, type="gate.not_a_finite_number")
            error.text = detail
        elif o.status == "skipped":
            ET.SubElement(case, "skipped", message=o.message)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def check_output_paths(results_dir: Path, *, junit: Path | None, markdown_path: Path | None,
                       baseline_dir: Path | None = None) -> None:
    """Refuse gate outputs that would overwrite what the gate reads, or each other, before anything is written.

    The JUnit file, the Markdown summary and ``$GITHUB_STEP_SUMMARY`` must not be the candidate's or the
    baseline's ``results.json``, ``per_sample.csv`` or ``report.html``, nor the same file as one another:
    writing the verdict there would destroy the audit it is about.

    Raises:
        UsageError: naming the option, the file and what it would overwrite (exit 2).
    """
    protected: dict[str, str] = {}
    for role, directory in (("the results directory", results_dir), ("the baseline", baseline_dir)):
        if directory is None:
            continue
        for name in (store.RESULTS_FILE, store.PER_SAMPLE_FILE, store.REPORT_FILE):
            protected.setdefault(os.path.realpath(Path(directory) / name), f"{name} of {role} {directory}")
    outputs = [("--junit", junit), ("--markdown", markdown_path)]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        outputs.append(("$GITHUB_STEP_SUMMARY", Path(summary)))
    seen: dict[str, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        real = os.path.realpath(path)
        what = protected.get(real) or seen.get(real)
        if what is not None:
            raise UsageError(f"{option} {path} is {what}; the gate would overwrite it",
                             fix=f"point {option} at a file of its own (the defaults are RESULTS_DIR/{JUNIT_FILE} "
                                 f"and RESULTS_DIR/{MARKDOWN_FILE})")
        seen[real] = f"the file {option} already writes"


def write_outputs(outcome: GateOutcome, *, junit: Path | None, markdown_path: Path | None,
                  record: bool = True) -> dict[str, Path]:
    """Write the JUnit file, the Markdown summary, ``$GITHUB_STEP_SUMMARY`` and the results record.

    Args:
        junit: where to write JUnit XML (None: not written).
        markdown_path: where to write the Markdown summary (None: not written).
        record: write the outcome into ``results.json`` ``gate`` (atomically).

    Returns:
        what was written, by kind (``junit``, ``markdown``, ``github``, ``results``).
    """
    written: dict[str, Path] = {}
    md = markdown(outcome)  # render everything before writing anything: no output may disagree with the verdict
    xml = junit_xml(outcome)
    if record:  # first: the one write that reads the results again
        results = store.read_results(outcome.results_dir)
        results["gate"] = outcome.record()
        written["results"] = store.write_results(outcome.results_dir, results)
    if junit is not None:
        store.atomic_write_text(Path(junit), xml)
        written["junit"] = Path(junit)
    if markdown_path is not None:
        store.atomic_write_text(Path(markdown_path), md)
        written["markdown"] = Path(markdown_path)
    summary = _append_step_summary(md, strict=True)
    if summary is not None:
        written["github"] = summary
    return written


def _append_step_summary(md: str, *, strict: bool) -> Path | None:
    """Append ``md`` to ``$GITHUB_STEP_SUMMARY`` when it is set; the path written, else ``None``.

    ``strict``: an unwritable summary is the user's error (exit 2); otherwise it is only logged.
    """
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return None
    try:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(md + "\n")
    except OSError as exc:
        if strict:
            raise UsageError(f"cannot append the gate summary to $GITHUB_STEP_SUMMARY ({summary}): {exc.strerror}",
                             fix="point GITHUB_STEP_SUMMARY at a writable file, or unset it") from None
        log.debug("could not append to $GITHUB_STEP_SUMMARY: %s", exc)
        return None
    return Path(summary)


def write_stopped_outputs(line: str, *, status: str, results_dir: Path, junit: Path | None,
                          markdown_path: Path | None) -> None:
    """When the gate stops before a verdict (bad rules or results: exit 2; nothing to gate: exit 5),
    replace the JUnit file and the Markdown summary of an earlier gate in the same place with ones
    that say so, and append to ``$GITHUB_STEP_SUMMARY``: a stale ✅ must never outlive a failed gate.

    Best effort: a file that cannot be written is left alone, and the caller raises its own error.
    Nothing is created in a directory that does not exist.

    Args:
        line: the one-line message the CLI prints.
        status: ``error`` or ``nothing_to_gate``.
    """
    icon, title = ("❌", "robaudit gate ERROR") if status == "error" else ("⚠️", "robaudit gate: nothing to gate")
    md = f"### {icon} {title}\n\nResults `{results_dir}`: {_md_cell(line)}\n"
    suites = ET.Element("testsuites", name="robaudit gate", tests="1", failures="0",
                        errors="1" if status == "error" else "0", skipped="0" if status == "error" else "1", time="0")
    suite = ET.SubElement(suites, "testsuite", name=f"robaudit gate {results_dir}", tests="1", failures="0",
                          errors="1" if status == "error" else "0", skipped="0" if status == "error" else "1",
                          time="0", hostname=socket.gethostname())
    case = ET.SubElement(suite, "testcase", name="robaudit gate", classname="robaudit.gate", time="0")
    if status == "error":
        ET.SubElement(case, "error", message=line, type="gate.stopped").text = line
    else:
        ET.SubElement(case, "skipped", message=line)
    ET.indent(suites)
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    targets = [(junit, xml), (markdown_path, md)]
    for path, text in targets:
        if path is not None and Path(path).parent.is_dir():
            try:
                store.atomic_write_text(Path(path), text)
            except (OSError, UsageError) as exc:
                log.debug("could not write %s: %s", path, exc)
    _append_step_summary(md, strict=False)
