"""The curvature report section: rendered from a real audit's results.json, self-contained, honest."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from robaudit.report import render_report
from robaudit.report.sections import curvature as section

PROBES = ["clean", "curvature.topk", "curvature.power", "curvature.trace", "curvature.density", "curvature.landscape"]
KNOBS = {
    "curvature.topk": {"k": 3},
    "curvature.power": {"k": 2},
    "curvature.trace": {"num_matvecs": 12},
    "curvature.density": {"runs": 1, "steps": 15},
    "curvature.landscape": {"points": 7, "plane_points": 5, "train_samples": 100},
}


@pytest.fixture(scope="module")
def curvature_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import robaudit

    out = tmp_path_factory.mktemp("curvature") / "audit"
    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=40, out=out,
                             threads=THREADS, probes=PROBES, probe_config=KNOBS)
    assert outcome.exit_code == 0, outcome.results["probes"]
    return out


def _section(html: str) -> str:
    start = html.index('<section id="curvature">')
    return html[start:html.index("</section>", start)]


def test_section_shows_spectrum_density_landscapes_fit_and_caveat(curvature_run: Path) -> None:
    results = json.loads((curvature_run / "results.json").read_text())
    html = (curvature_run / "report.html").read_text()
    part = _section(html)
    assert part.count("<svg") == 5  # spectrum, density, 1-D (+ random cut), 2-D, quadratic fit
    assert "Kamath" in part and "not invariant to reparametrisation" in part
    lam1 = results["probes"]["curvature.topk"]["summary"]["lambda_1"]
    assert f"{lam1:.5g}" in part
    fit = results["probes"]["curvature.landscape"]["summary"]["quadratic_fit"]
    assert "Quadratic-fit check" in part and f"{fit['curvature']:.5g}" in part
    assert ("agree" if fit["agrees"] else "disagree") in part
    assert "power iteration" in part and "Trace" in part and "Spectral density" in part
    assert "Not run in this audit" not in part
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', part):
        assert attr.startswith(("#", "data:")), attr


def test_section_reports_failed_probes_and_redraws_without_recomputing(curvature_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "audit"
    shutil.copytree(curvature_run, copy)
    results = json.loads((copy / "results.json").read_text())
    results["probes"]["curvature.trace"].update(status="failed", error={"message": "boom", "type": "X", "internal": True})
    (copy / "results.json").write_text(json.dumps(results))
    part = _section(render_report(copy).read_text())
    assert "curvature.trace" in part and "boom" in part
    ctx = section.build(results)
    assert ctx["trace"] == [] and ctx["spectra"] and ctx["landscape"]["plane_svg"]


def test_negative_eigenvalues_are_drawn_hollow_and_counted() -> None:
    results = {"probes": {"curvature.topk": {"status": "ok", "notes": [], "summary": {
        "operator": None, "sets": {"train": {"b_h_1": {"eigenvalues": [3.0, -2.0, 1.0], "residuals": [1e-7] * 3,
                                                         "negative_count": 1, "most_negative": -2.0, "certified": True,
                                                         "hvps": {"solver": 9, "certificate": 3}, "n": 1}}}}}}}
    ctx = section.build(results)
    (row,) = ctx["spectra"]
    assert row["set"] == "train, B_H = 1" and row["negatives"] == 1 and row["most_negative"] == -2.0
    assert "λ &lt; 0" in ctx["spectrum_svg"] or "λ < 0" in ctx["spectrum_svg"]
