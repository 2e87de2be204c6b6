"""The closing console summary of ``robaudit run``: the verdict sentence, each probe's headline
number, and the worst-case robust accuracy per (norm, ε), as rich tables sized to their content."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from robaudit.report.verdict import NORM_NAMES, verdict_sentence, worst_case_rows
from robaudit.threat_model import eps_key, same_eps


def headline(entry: dict[str, Any], threat_model: dict[str, Any]) -> str:
    """A probe's headline number as text ('' when it has none).

    Attacks: robust accuracy (%) at the reference budget of their norm (else their first ε), with
    its CI; ``clean``: accuracy; ``calibration``: ECE.
    """
    summary = entry.get("summary") or {}
    robust = summary.get("robust_accuracy")
    if isinstance(robust, dict) and robust and summary.get("norm"):
        norm = summary["norm"]
        eps_list = [float(e) for e in summary.get("eps", [])]
        reference = ((threat_model.get("norms") or {}).get(norm) or {}).get("reference")
        eps = next((e for e in eps_list if reference is not None and same_eps(e, float(reference))),
                   eps_list[0] if eps_list else None)
        est = robust.get(eps_key(eps)) if eps is not None else None
        if isinstance(est, dict) and est.get("value") is not None:
            return f"robust acc {_pct(est)} at {NORM_NAMES.get(norm, norm)} ε={eps:.4g}"
    acc = summary.get("accuracy")
    parts = []
    if isinstance(acc, dict) and acc.get("value") is not None:
        parts.append(f"accuracy {_pct(acc)}")
    ece = summary.get("ece")
    if isinstance(ece, dict) and ece.get("value") is not None:
        parts.append(f"ECE {ece['value']:.4f}")
    return "  ".join(parts)


def render_summary(results: dict[str, Any], width: int = 120) -> str:
    """The summary text: verdict, per-probe table, worst-case table and flags (no colour codes)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, soft_wrap=False)
    tm = results.get("threat_model") or {}
    probes = Table(title="probes", title_justify="left", box=None, pad_edge=False)
    probes.add_column("probe", no_wrap=True)
    probes.add_column("status", no_wrap=True)
    probes.add_column("headline", overflow="fold")
    for name, entry in results.get("probes", {}).items():
        status = entry.get("status", "?")
        detail = headline(entry, tm) if status == "ok" else ((entry.get("error") or {}).get("message") or "")
        probes.add_row(name, status, detail)
    console.print(probes)
    rows = worst_case_rows(results)
    if rows:
        worst = Table(title="worst-case robust accuracy (95 % CI, Wilson)", title_justify="left", box=None,
                      pad_edge=False)
        for col in ("norm", "ε", "robust acc", "attacks"):
            worst.add_column(col, no_wrap=col != "attacks")
        for r in rows:
            worst.add_row(NORM_NAMES.get(r["norm"], r["norm"]), f"{r['eps']:.4g}", _pct(r["estimate"]),
                          " + ".join(r["attacks"]))
        console.print(worst)
    console.print(f"verdict: {verdict_sentence(results)}", overflow="fold")
    for flag in results.get("flags", []):
        console.print(f"flag {flag['id']} ({flag['severity']}): {flag['message']}", overflow="fold")
    return buffer.getvalue()


def summary_html(results: dict[str, Any]) -> str:
    """The verdict and the two summary tables as an HTML fragment (every value escaped), for
    :meth:`robaudit.engine.AuditOutcome._repr_html_` in Jupyter."""
    from html import escape

    tm = results.get("threat_model") or {}
    parts = [f'<div class="robaudit-summary"><p id="verdict"><b>{escape(verdict_sentence(results))}</b></p>',
             "<table><thead><tr><th>probe</th><th>status</th><th>headline</th></tr></thead><tbody>"]
    for name, entry in results.get("probes", {}).items():
        status = entry.get("status", "?")
        detail = headline(entry, tm) if status == "ok" else ((entry.get("error") or {}).get("message") or "")
        parts.append(f"<tr><td>{escape(name)}</td><td>{escape(status)}</td><td>{escape(detail)}</td></tr>")
    parts.append("</tbody></table>")
    rows = worst_case_rows(results)
    if rows:
        parts.append("<table><caption>worst-case robust accuracy (95 % CI, Wilson)</caption><thead><tr><th>norm</th>"
                     "<th>ε</th><th>robust acc</th><th>attacks</th></tr></thead><tbody>")
        for r in rows:
            parts.append(f"<tr><td>{escape(NORM_NAMES.get(r['norm'], r['norm']))}</td><td>{r['eps']:.4g}</td>"
                         f"<td>{escape(_pct(r['estimate']))}</td><td>{escape(' + '.join(r['attacks']))}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("</div>")
    return "".join(parts)


def _pct(est: dict[str, Any]) -> str:
    text = f"{100 * est['value']:.1f} %"
    if est.get("low") is not None and est.get("high") is not None:
        text += f" [{100 * est['low']:.1f}, {100 * est['high']:.1f}]"
    return text


def print_summary(results: dict[str, Any], out_dir: Path, report_path: Path | None, quiet: bool) -> None:
    """Print the summary to stderr (unless quiet) and the report path to stdout."""
    import click

    if not quiet:
        click.echo(render_summary(results, width=max(100, Console(stderr=True).width)).rstrip("\n"), err=True)
        click.echo(f"results: {out_dir / 'results.json'}", err=True)
    if report_path is not None:
        click.echo(f"report: {report_path}")
