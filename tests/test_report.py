"""The HTML report: self-contained, escaped, sections shown only for probes that ran."""
from __future__ import annotations

import json
import re
from pathlib import Path

from robaudit.report import render_report


def test_report_is_self_contained(demo_run: Path) -> None:
    html = (demo_run / "report.html").read_text()
    assert "<script" not in html.lower()
    # no external resources: every src/href is a same-page anchor; SVG xmlns URIs are names, not requests
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith(("#", "data:")), attr
    assert "@import" not in html
    for ref in re.findall(r"url\(([^)]*)\)", html):  # SVG clip paths refer to ids in the same page
        assert ref.strip("'\"").startswith("#"), ref
    assert len(html.encode()) < 5_000_000


def test_report_shows_provenance_results_and_skipped_sections(demo_run: Path) -> None:
    results = json.loads((demo_run / "results.json").read_text())
    html = (demo_run / "report.html").read_text()
    assert results["model"]["checkpoint_sha256"] in html
    assert "from <strong>checkpoint</strong>" in html  # the normalisation source
    acc = results["probes"]["clean"]["summary"]["accuracy"]["value"]
    assert f"{acc:.4g}" in html
    assert html.count("<svg") >= 2  # confusion matrix and reliability diagram
    from robaudit.report.render import build_context

    sections = build_context(results)["sections"]
    assert [s["title"] for s in sections] == ["Attacks", "Parameter curvature", "Input geometry", "Indicator tests"]
    for s in sections:
        assert s["title"] in html
        ran = any(results["probes"][p]["status"] == "ok" for p in s["probes"])
        assert s["ran"] == (ran or (s["id"] == "indicators" and bool((results["analysis"] or {}).get("tests"))))
    assert html.count("Not run in this audit") == sum(not s["ran"] for s in sections)


def test_model_name_is_escaped(demo_copy: Path) -> None:
    results = json.loads((demo_copy / "results.json").read_text())
    evil = "<script>alert(1)</script>"
    results["model"]["source"] = evil
    results["model"]["arch"] = evil
    results["flags"].append({"id": "x", "severity": "info", "message": evil, "source": evil, "docs": ""})
    (demo_copy / "results.json").write_text(json.dumps(results))
    html = render_report(demo_copy).read_text()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_verdict_summary_shows_the_worst_case_robust_accuracy_of_the_saved_results(demo_run: Path) -> None:
    """The headline numbers are the attack.worst_case Estimates of results.json, with their CIs."""
    from robaudit.report.render import build_context, format_number

    results = json.loads((demo_run / "results.json").read_text())
    worst = results["probes"]["attack.worst_case"]["summary"]["linf"]["robust_accuracy"]
    cards = build_context(results)["headline"]
    assert cards[0]["title"] == "Worst-case robust accuracy (L∞)"
    assert [row["eps"] for row in cards[0]["rows"]] == list(worst)
    html = (demo_run / "report.html").read_text()
    verdict = html[html.index("1. Verdict summary"):html.index("2. Model and data provenance")]
    for key, est in worst.items():
        assert f"ε = {key}" in verdict
        assert format_number(est["value"], 3) in verdict and format_number(est["high"], 3) in verdict
    median = results["probes"]["attack.min_eps"]["summary"]["min_eps_quantiles"]["q50"]
    assert "Median minimal ε" in verdict and format_number(median, 4) in verdict


def test_the_same_results_render_to_byte_identical_reports(demo_copy: Path) -> None:
    """Two renders of one results directory give the same bytes (no SVG dates or random ids)."""
    first = render_report(demo_copy).read_bytes()
    second = render_report(demo_copy).read_bytes()
    assert first.count(b"<svg") >= 2
    assert first == second
