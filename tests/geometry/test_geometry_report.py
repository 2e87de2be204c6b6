"""The geometry probes end to end through the engine, and the report section drawn from results.json."""
from __future__ import annotations

import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from geometry_helpers import digits_context, digits_model, run_probe
from robaudit.config import AuditConfig, build_probe_config
from robaudit.engine import run_audit
from robaudit.errors import ProbeError
from robaudit.probes.base import ProbeResult
from robaudit.probes.geometry.boundary_probe import BoundaryDistance
from robaudit.probes.geometry.gradient_probe import InputGradients
from robaudit.probes.geometry.hessian_probe import InputHessian
from robaudit.probes.geometry.surface_probe import DecisionSurfaces
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry
from robaudit.report.sections import geometry as section
from robaudit.results import store
from robaudit.results.serialise import to_jsonable

PROBES = {
    "geometry.gradients": "robaudit.probes.geometry.gradient_probe:InputGradients",
    "geometry.input_hessian": "robaudit.probes.geometry.hessian_probe:InputHessian",
    "geometry.boundary": "robaudit.probes.geometry.boundary_probe:BoundaryDistance",
    "geometry.surfaces": "robaudit.probes.geometry.surface_probe:DecisionSurfaces",
}


def _registry() -> ProbeRegistry:
    class Dist:
        name, version = "robaudit", "0"

    eps = [EntryPoint(n, v, ENTRY_POINT_GROUP)._for(Dist()) for n, v in
           (("clean", "robaudit.probes.clean:CleanAccuracy"), *PROBES.items())]
    return ProbeRegistry(entry_point_list=eps)


@pytest.fixture(scope="module")
def geometry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("geometry") / "audit"
    config = AuditConfig(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=60, out=out,
                         threads=THREADS, probes=["clean", *PROBES],
                         probe_config={"geometry.surfaces": {"samples": 2, "resolution": 21}})
    outcome = run_audit(config, _registry(), quiet=True)
    assert outcome.exit_code == 0, {k: v.get("error") for k, v in outcome.results["probes"].items()}
    return out


def test_every_quantity_is_recorded_per_sample_and_in_summary(geometry_run: Path):
    results = json.loads((geometry_run / "results.json").read_text())
    ids, cols = store.read_per_sample(geometry_run)
    assert results["model"]["module_swaps"] == []  # the demo CNN needs none
    expected = {
        "geometry.gradients": ["decision", "loss_grad_l2", "loss_grad_l1", "logit_jacobian_fro",
                               "logit_jacobian_spectral", "decision_grad_l2", "decision_grad_l1", "linear_margin_l2",
                               "linear_margin_linf", "jacobian_sparsity_0.01"],
        "geometry.input_hessian": ["lambda_1", "lambda_9", "lambda_min", "trace", "rank", "psd", "method_exact",
                                   "ggn_residual", "yu_bound", "yu_slack", "yu_safe", "decision_hessian_max_abs"],
        "geometry.boundary": ["l2_gradient", "linf_gradient", "l2_random_median", "linf_ratio"],
    }
    for probe, keys in expected.items():
        entry = results["probes"][probe]
        assert entry["status"] == "ok"
        for key in keys:
            column = f"{probe}/{key}"
            assert column in cols and len(cols[column]) == 60
            if key in entry["summary"]:
                assert set(entry["summary"][key]) >= {"all", "correct", "incorrect"}
                assert set(entry["summary"][key]["correct"]) == {"n", "mean", "median", "q05", "q25", "q75", "q95"}
    roles = results["probes"]["geometry.input_hessian"]["columns"]
    assert roles["geometry.input_hessian/lambda_1"]["role"] == "indicator"
    assert roles["geometry.input_hessian/lambda_2"]["role"] == "other"
    assert results["probes"]["geometry.gradients"]["columns"]["geometry.gradients/jacobian_sparsity_0.1"]["role"] == \
        "indicator"
    # the two probes that compute d agree with each other and with the clean probe's logit margin
    np.testing.assert_allclose(cols["geometry.gradients/decision"], cols["clean/logit_margin"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cols["geometry.input_hessian/decision"], cols["geometry.gradients/decision"], rtol=1e-12)
    t1 = results["probes"]["geometry.input_hessian"]["summary"]["theorem1"]
    assert t1["holds"] is True and t1["rank_max"] <= 9
    surf = results["probes"]["geometry.surfaces"]["artifacts"]
    assert len(surf["surfaces"]) == 2 and np.array(surf["surfaces"][0]["decision"]).shape == (21, 21)
    assert np.array(surf["heatmaps"][0]["decision_grad"]).shape == (1, 8, 8)


def test_report_section_is_drawn_from_results(geometry_run: Path):
    html = (geometry_run / "report.html").read_text()
    body = html[html.index('<section id="geometry">'):]
    body = body[:body.index("</section>")]
    assert "Theorem 1" in body and "holds on all 60 samples" in body
    assert body.count("<svg") >= 8 and body.count('src="data:image/png;base64,') == 2  # histograms; surfaces
    assert "Not run in this audit" not in body
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith(("#", "data:")), attr
    assert len(html.encode()) < 5_000_000


def test_robust_split_reaches_summaries_and_the_report():
    """With an L∞ attack result in ctx.previous the split appears everywhere, and build() draws it."""
    model = digits_model()
    correct = (digits_context(model, 40).clean_logits().argmax(1) == digits_context(model, 40).data.y).numpy()
    broken = np.zeros(40, dtype=bool)
    broken[::2] = True
    ctx = digits_context(model, 40, previous={"attack.pgd_linf": ProbeResult(
        summary={"norm": "linf", "eps": [0.1]}, per_sample={"success_eps_0.1": broken | ~correct})})
    probes = {}
    for cls, cfg in ((InputGradients, None), (InputHessian, None), (BoundaryDistance, None),
                     (DecisionSurfaces, DecisionSurfaces.Config(samples=2, resolution=11))):
        res = run_probe(cls(cfg), ctx)
        assert res.summary.get("robustness_source", {})["probes"] == ["attack.pgd_linf"]
        probes[cls.name] = {"status": "ok", "summary": to_jsonable(res.summary),
                            "artifacts": to_jsonable(res.artifacts)}
    assert probes["geometry.gradients"]["summary"]["group_sizes"]["non_robust"] == int((correct & broken).sum())
    groups = probes["geometry.surfaces"]["summary"]["groups"]
    assert sorted(groups) == ["non_robust", "robust"]  # one of each when attacks ran
    built = section.build({"probes": probes})
    assert [g["id"] for g in built["groups"]] == ["all", "correct", "incorrect", "robust", "non_robust"]
    assert all(len(row["medians"]) == 5 for row in built["headline"])
    assert len(built["surfaces"]) == 2 and all(s["png"].startswith("data:image/png;base64,") for s in built["surfaces"])
    assert built["theorem1"]["holds"] and built["boundary"]["ratio_linf"] > 1


def test_bad_knobs_are_rejected_before_running():
    for cls, knobs in ((InputGradients, {"precision": "float16"}), (InputGradients, {"sparsity_thresholds": [2.0]}),
                       (InputHessian, {"ggn_rtol": 0.0}), (InputHessian, {"top_k": 0}),
                       (BoundaryDistance, {"random_directions": 0}), (DecisionSurfaces, {"direction": "up"}),
                       (DecisionSurfaces, {"epsilon": -0.1})):
        with pytest.raises(ProbeError):
            build_probe_config(cls, knobs)
    cfg = build_probe_config(InputHessian, {"epsilon": "0.05", "top_m": 3})
    assert cfg.epsilon == 0.05 and cfg.top_m == 3


def test_unknown_surface_sample_id_is_a_clear_error():
    ctx = digits_context(digits_model(), 10)
    with pytest.raises(ProbeError, match="unknown sample ids"):
        run_probe(DecisionSurfaces(DecisionSurfaces.Config(sample_ids=["test:99999"])), ctx)
    res = run_probe(DecisionSurfaces(DecisionSurfaces.Config(sample_ids=[ctx.data.ids[3]], resolution=5)), ctx)
    assert res.summary["sample_ids"] == [ctx.data.ids[3]]
