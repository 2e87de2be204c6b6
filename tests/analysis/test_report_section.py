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


def test_auroc_grid_shows_each_binary_test_of_the_demo_audit(demo_run: Path) -> None:
    """Every attack-success test of the saved analysis appears once in the grid, with its own AUROC
    and the BH mark; the continuous-outcome verdicts lead the section."""
    from robaudit.report.sections.indicators import build

    results = json.loads((demo_run / "results.json").read_text())
    tests = results["analysis"]["tests"]
    ctx = build(results)
    grid = ctx["auroc_grid"]
    binary = [t for t in tests if t["kind"] == "auroc"]
    assert len(grid["rows"]) * len(grid["outcomes"]) == len(binary)
    by_pair = {(t["indicator"], t["outcome"]): t for t in binary}
    for row in grid["rows"]:
        for outcome, cell in zip(grid["outcomes"], row["cells"]):
            t = by_pair[(row["indicator"], outcome)]
            assert cell["value"] == (t["estimate"] or {}).get("value")
            assert cell["significant"] == (t["p_adjusted"] is not None and t["p_adjusted"] < 0.05)
    assert {t["outcome"] for t in ctx["headline"]} == {"attack.min_eps/min_eps"}
    html = (demo_run / "report.html").read_text()
    assert "Against attack success at each budget (AUROC)" in html and f"All {len(tests)} tests" in html
