"""The analysis runs inside an audit and fills report section 6 (verdicts, matrix, scatter plots)."""
from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import jsonschema

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from robaudit.config import AuditConfig
from robaudit.engine import run_audit
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry
from robaudit.results import schema_text


def test_audit_with_an_outcome_fills_the_indicator_section(tmp_path: Path) -> None:
    class Dist:
        name, version = "robaudit", "0"

    eps = [EntryPoint(n, v, ENTRY_POINT_GROUP)._for(Dist()) for n, v in (
        ("clean", "robaudit.probes.clean:CleanAccuracy"), ("test.distance", "probe_fixtures:DistanceProbe"))]
    config = AuditConfig(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, n_samples=150, out=tmp_path / "a",
                         threads=THREADS, probes=["clean", "test.distance"])
    outcome = run_audit(config, ProbeRegistry(entry_point_list=eps), quiet=True)
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    analysis = results["analysis"]
    tests = {t["indicator"]: t for t in analysis["tests"]}
    assert set(tests) == {"clean/loss", "clean/logit_margin"}
    assert analysis["confounder"] == "clean/confidence"
    # A larger logit margin really does go with a larger distance to the boundary on a ReLU net.
    assert tests["clean/logit_margin"]["estimate"]["low"] > 0.3
    assert "a larger logit margin d(x) predicts a larger linearised L2 distance" in tests["clean/logit_margin"]["verdict"]
    html = (outcome.report_path).read_text()
    assert "Not run in this audit" in html and html.count("Not run in this audit") == 3
    assert "predicts a larger linearised L2 distance" in html
    assert "data:image/png;base64," in html


def test_auroc_grids_show_each_binary_test_of_the_demo_audit_once(demo_run: Path) -> None:
    """Every attack-success test of the saved analysis appears once across the per-attack grids (ε
    across, indicators down), with its own AUROC and the BH mark; the worst case leads; scatter plots
    and the heat-map cover only ranked indicators."""
    from robaudit.analysis.ranking import rank_indicators
    from robaudit.report.sections.indicators import build

    results = json.loads((demo_run / "results.json").read_text())
    tests = results["analysis"]["tests"]
    ctx = build(results)
    grids = ctx["auroc_grids"]
    binary = [t for t in tests if t["kind"] == "auroc"]
    by_pair = {(t["indicator"], t["outcome"]): t for t in binary}
    seen = []
    for grid in grids:
        assert len(grid["outcomes"]) <= 8  # fits the page: one attack's budgets per table
        for row in grid["rows"]:
            for outcome, eps, cell in zip(grid["outcomes"], grid["eps"], row["cells"]):
                t = by_pair[(row["indicator"], outcome)]
                assert outcome.endswith(f"eps_{eps}")
                assert cell["value"] == (t["estimate"] or {}).get("value")
                assert cell["significant"] == (t["p_adjusted"] is not None and t["p_adjusted"] < 0.05)
                seen.append((row["indicator"], outcome))
    assert sorted(seen) == sorted(by_pair)
    assert grids[0]["attack"].startswith("attack.worst_case")
    ranked = [r["indicator"] for r in rank_indicators(results["analysis"])]
    assert [r["indicator"] for r in grids[0]["rows"]] == [i for i in ranked if any(t["indicator"] == i for t in binary)]
    assert {t["outcome"] for t in ctx["headline"]} == {"attack.min_eps/min_eps"}
    html = (demo_run / "report.html").read_text()
    assert "Against attack success at the audit's ε (AUROC)" in html and f"All {len(tests)} tests" in html
    untested = len(results["analysis"]["untested_success"])
    assert untested > 0 and f"the {untested} success columns at other budgets are not tested" in html
    # the verdict lines are collapsed: they sit inside a <details> block
    section = html[html.index('id="indicators"'):]
    first_line = ctx["headline"][0]["verdict"]
    at = section.index(first_line.split(" (")[0].replace("'", "&#39;"))
    assert section.rfind("<details", 0, at) > section.rfind("</details>", 0, at)
