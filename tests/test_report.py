"""The HTML report: self-contained, escaped, sections shown only for probes that ran."""
from __future__ import annotations

import html as html_module
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


def test_verdict_sentence_states_the_worst_case_at_the_reference_budget_with_its_wilson_interval(demo_run: Path) -> None:
    """Oracle: the Wilson interval recomputed with scipy from the outcome table's counts at the
    threat model's reference budget; the sentence prints exactly those numbers and names every attack."""
    from scipy.stats import binomtest

    from robaudit.report.verdict import attack_name, verdict

    results = json.loads((demo_run / "results.json").read_text())
    linf = results["threat_model"]["norms"]["linf"]
    ref = linf["reference"]
    table = results["attack_outcomes"]
    entry = next(e for e in table["norms"]["linf"]["by_eps"] if abs(e["eps"] - ref) < 1e-12)
    robust = table["n"] - entry["broken"]
    ci = binomtest(robust, table["n"]).proportion_ci(confidence_level=0.95, method="wilson")

    v = verdict(results)
    assert (v.norm, v.eps, v.budget_source) == ("linf", ref, linf["source"])
    assert abs(v.value - robust / table["n"]) < 1e-12
    assert abs(v.low - ci.low) < 1e-9 and abs(v.high - ci.high) < 1e-9
    numbers = f"{100 * robust / table['n']:.1f} % [{100 * ci.low:.1f}, {100 * ci.high:.1f}]"
    assert numbers in v.sentence
    assert set(v.attacks) == set(entry["attacks"])
    assert " + ".join(attack_name(a, results) for a in entry["attacks"]) in v.sentence
    assert "reference budget for" in v.sentence and "AutoAttack was not run, so this is an upper bound" in v.sentence
    html = (demo_run / "report.html").read_text()
    shown = re.search(r'<p id="verdict"[^>]*>(.*?)</p>', html).group(1)
    assert numbers in shown


def test_verdict_names_a_configured_budget_and_the_autoattack_convention(demo_copy: Path) -> None:
    """On CIFAR-like data without AutoAttack the sentence says the convention is not met; with a
    configured list it names the largest configured budget as its source."""
    from robaudit.report.verdict import format_eps, verdict

    results = json.loads((demo_copy / "results.json").read_text())
    results["threat_model"]["family"] = "cifar-like"
    v = verdict(results)
    assert not v.meets_convention
    assert "the reference budget for CIFAR-like data" in v.sentence
    assert "AutoAttack, the field's convention for L∞ on CIFAR/ImageNet, was not run" in v.sentence
    results["threat_model"]["norms"]["linf"]["source"] = "config"
    assert "the largest budget you configured with --eps" in verdict(results).sentence
    assert format_eps(8 / 255, "linf") == "8/255" and format_eps(0.1, "linf") == "0.1"
    del results["attack_outcomes"]
    assert verdict(results).sentence.startswith("No attack ran")


def test_ranked_indicator_table_follows_the_documented_rule(demo_run: Path) -> None:
    """Every row's verdict word re-derived from the raw tests (BH p, intervals, partial ρ); the table
    shows the top five and worst five, and no two indicators share a label."""
    from robaudit.analysis.ranking import VERDICT_ORDER
    from robaudit.report.render import ranked_indicators

    results = json.loads((demo_run / "results.json").read_text())
    analysis = results["analysis"]
    alpha = analysis["method"]["alpha"]
    ranked = ranked_indicators(results)
    rows = ranked["rows"]
    assert {r["indicator"] for r in rows} == {t["indicator"] for t in analysis["tests"]}
    for row in rows:
        tests = [t for t in analysis["tests"] if t["indicator"] == row["indicator"] and t["estimate"]]
        sig = []
        for t in tests:
            null = 0.5 if t["kind"] == "auroc" else 0.0
            e = t["estimate"]
            if t["p_adjusted"] is not None and t["p_adjusted"] < alpha and (e["low"] > null or e["high"] < null):
                sig.append(t)
        spearman = [t for t in tests if t["kind"] == "spearman"]
        if not sig:
            assert row["verdict"] == "does not predict"
        else:
            partial = max(spearman, key=lambda t: abs(t["estimate"]["value"]))["partial"]
            through = partial["value"] is None or partial["low"] <= 0 <= partial["high"]
            assert row["verdict"] == ("only through confidence" if through else "predicts")
            best = max(sig, key=lambda t: abs(t["estimate"]["value"] - 0.5) * 2 if t["kind"] == "auroc"
                       else abs(t["estimate"]["value"]))
            assert row["outcome"] == best["outcome"]
    order = [(VERDICT_ORDER.index(r["verdict"]), -r["effect"]) for r in rows]
    assert order == sorted(order)
    assert ranked["top"] == rows[:5] and ranked["worst"] == rows[5:][-5:]
    labels = [r["label"] for r in rows]
    assert len(set(labels)) == len(labels), labels
    html = (demo_run / "report.html").read_text()
    table = html[html.index('id="top-indicators"'):html.index("</table>", html.index('id="top-indicators"'))]
    for row in ranked["top"] + ranked["worst"]:
        assert f"<td>{row['label']}</td>" in html_module.unescape(table)


def test_every_section_is_numbered_in_order(demo_run: Path) -> None:
    html = (demo_run / "report.html").read_text()
    numbers = [int(n) for n in re.findall(r"<h2>(\d+)\. ", html)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) == len(re.findall(r"<h2", html))
    assert re.search(r"<h2>3\. Clean accuracy and calibration</h2>", html)


def test_data_section_shows_skipped_images_and_the_class_restriction(demo_copy: Path) -> None:
    results = json.loads((demo_copy / "results.json").read_text())
    results["data"]["skipped_images"] = [{"path": "val/broken.JPEG", "reason": "truncated or corrupt (test)"}]
    results["data"]["class_restriction"] = {"applied": True, "subset": "imagenet-r", "model_classes": 1000,
                                            "num_classes": 200, "columns": list(range(200)), "synsets": []}
    (demo_copy / "results.json").write_text(json.dumps(results))
    html = render_report(demo_copy).read_text()
    provenance = html[html.index('id="provenance"'):html.index('id="clean"')]
    assert "1 could not be decoded and were skipped" in provenance and "val/broken.JPEG" in provenance
    assert "200 classes of <strong>imagenet-r</strong>" in provenance and "model's 1000" in provenance
