"""The registered curvature probes end to end on the oracle model: numbers, sets, flags, contract."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from curvature_oracle import Oracle, dense_hessian, make_ctx, top_by_magnitude
from robaudit.config import build_probe_config
from robaudit.data import DataRequest, load_data
from robaudit.data.audit_data import AuditData
from robaudit.errors import ProbeError
from robaudit.models.audit_model import same_state
from robaudit.probes.base import Probe, ProbeResult
from robaudit.probes.curvature.density_probe import CurvatureDensity
from robaudit.probes.curvature.landscape_probe import CurvatureLandscape
from robaudit.probes.curvature.power_probe import CurvaturePower
from robaudit.probes.curvature.topk_probe import CurvatureTopK
from robaudit.probes.curvature.trace_probe import CurvatureTrace
from robaudit.results.serialise import to_jsonable

CHEAP = {
    CurvatureTopK: {"dtype": "float64"},
    CurvaturePower: {"k": 3, "dtype": "float64"},
    CurvatureTrace: {"num_matvecs": 30},
    CurvatureDensity: {"runs": 2, "steps": 20},
    CurvatureLandscape: {"points": 7, "plane_points": 5, "train_samples": 200},
}


def _run(cls: type[Probe], oracle: Oracle, knobs: dict, data: AuditData | None = None, previous: dict | None = None,
         seed: int = 0) -> ProbeResult:
    ctx = make_ctx(oracle.model, data or oracle.data, seed=seed, previous=previous)
    return cls(build_probe_config(cls, knobs)).run(ctx)


def _as_json(result: ProbeResult) -> str:
    return json.dumps({"summary": to_jsonable(result.summary), "artifacts": to_jsonable(result.artifacts),
                       "per_sample": to_jsonable(result.per_sample), "flags": [f.to_json() for f in result.flags]},
                      sort_keys=True, allow_nan=False)


@pytest.mark.parametrize("cls", list(CHEAP), ids=lambda c: c.name)
def test_probe_is_deterministic_json_and_leaves_the_model_alone(oracle: Oracle, cls: type[Probe]) -> None:
    model = copy.deepcopy(oracle.model)
    before = model.state_fingerprint()
    ctx = make_ctx(model, oracle.data)
    first = cls(build_probe_config(cls, CHEAP[cls])).run(ctx)
    second = cls(build_probe_config(cls, CHEAP[cls])).run(make_ctx(model, oracle.data))
    assert same_state(before, model.state_fingerprint()) and not model.training
    assert _as_json(first) == _as_json(second)
    for key, column in first.per_sample.items():
        assert np.shape(column) == (len(oracle.data),), key


def test_topk_summary_and_per_sample_curvature_match_the_dense_hessian(oracle: Oracle) -> None:
    result = _run(CurvatureTopK, oracle, {"dtype": "float64", "k": 5, "tol": 1e-8})  # default tol 9e-4: ~1e-6 accurate
    spectrum = result.summary["sets"]["audit"]["full"]
    ref = top_by_magnitude(oracle.eigenvalues, 5).numpy()
    assert np.allclose(spectrum["eigenvalues"], ref, rtol=1e-6)
    assert result.summary["lambda_1"] == pytest.approx(ref[0], rel=1e-6)
    assert spectrum["certified"] and spectrum["hvps"]["certificate"] == 1 and spectrum["n"] == len(oracle.data)
    assert spectrum["checks"]["symmetric"] and spectrum["checks"]["deterministic"]
    assert result.summary["operator"]["parameters"] == oracle.hessian.shape[0]
    # per-sample curvature along v1: its mean is λ1, and sample 0 matches its own dense Hessian
    column = result.per_sample["v1_curvature"]
    assert column.mean() == pytest.approx(ref[0], rel=1e-8)
    evals, evecs = torch.linalg.eigh(oracle.hessian)
    v1 = evecs[:, evals.abs().argmax()]
    h0 = dense_hessian(oracle.model.audit_copy(), oracle.data.x[:1], oracle.data.y[:1])
    assert column[0] == pytest.approx(float(v1 @ h0 @ v1), rel=1e-6)
    assert any("HVPs in" in note for note in result.notes) and any("Kamath" in note for note in result.notes)


def test_paper_preset_on_train_subsets_with_a_single_sample_saddle(oracle: Oracle) -> None:
    cfg = build_probe_config(CurvatureTopK, {"preset": "paper", "k": 4, "train_samples": 400, "dtype": "float64",
                                             "per_sample": False})
    assert cfg.sets == ["train", "train:320", "train:1", "audit"]
    result = CurvatureTopK(cfg).run(make_ctx(oracle.model, oracle.data))
    sets = result.summary["sets"]
    assert sets["train"]["full"]["n"] == 400 and sets["train"]["b_h_320"]["n"] == 320
    single = sets["train"]["b_h_1"]
    (sample_id,) = result.artifacts["sets"]["train"]["b_h_1"]["ids"]
    assert sample_id.startswith("train:") and single["n"] == 1
    # oracle: that one training sample's dense Hessian
    train = load_data(DataRequest("digits", split="train"), 1)
    row = train.ids.index(sample_id)
    h1 = dense_hessian(oracle.model.audit_copy(), train.x[row:row + 1], train.y[row:row + 1])
    ref = top_by_magnitude(torch.linalg.eigvalsh(h1), 4).numpy()
    assert np.allclose(single["eigenvalues"], ref, rtol=1e-6)
    assert (ref < 0).any() and single["negative_count"] == int((ref < 0).sum())
    assert any(f.id == "negative_curvature" and "train:1" in f.message for f in result.flags)
    assert all(v > 0 for v in sets["train"]["full"]["eigenvalues"])  # the full-set Hessian's top is positive
    assert single["gradient_norm"] > 0  # Yao: negative curvature with a non-zero gradient, not a saddle point


def test_uncertified_eigenpairs_are_flagged(oracle: Oracle) -> None:
    result = _run(CurvatureTopK, oracle, {"k": 5, "maxiter": 1, "ncv": 6, "tol": 1e-14, "per_sample": False})
    assert any(f.id == "eigenpairs_not_certified" for f in result.flags)


def test_power_probe_is_labelled_and_compared_with_lanczos(oracle: Oracle) -> None:
    lanczos = _run(CurvatureTopK, oracle, {"dtype": "float64", "k": 3, "per_sample": False})
    result = _run(CurvaturePower, oracle, {"dtype": "float64", "k": 3}, previous={"curvature.topk": lanczos})
    entry = result.summary["sets"]["audit"]["full"]
    assert result.summary["mode"] == "paper reproduction" and "power iteration" in entry["solver"]
    diffs = entry["lanczos_relative_difference"]
    assert len(diffs) == 3 and max(diffs) < 1e-2
    ref = top_by_magnitude(oracle.eigenvalues, 3).numpy()
    assert np.allclose(entry["eigenvalues"], ref, rtol=1e-2)


def test_trace_probe_reports_an_interval_containing_the_exact_trace(oracle: Oracle) -> None:
    result = _run(CurvatureTrace, oracle, {"dtype": "float64", "num_matvecs": 60})
    est = result.summary["trace"]
    exact = float(oracle.hessian.trace())
    assert est.low < est.value < est.high and est.level == 0.95
    entry = result.summary["sets"]["audit"]["full"]
    assert abs(est.value - exact) <= 3 * entry["stderr"]
    assert entry["trace_per_parameter"] == pytest.approx(est.value / oracle.hessian.shape[0])


def test_density_probe_stores_a_redrawable_curve(oracle: Oracle) -> None:
    result = _run(CurvatureDensity, oracle, {"dtype": "float64", "runs": 2, "steps": 30, "grid_points": 50})
    entry = result.summary["sets"]["audit"]["full"]
    curve = result.artifacts["density"]["audit"]["full"]
    assert len(curve["grid"]) == len(curve["density"]) == 50 and len(curve["nodes"]) == 2
    assert entry["ritz_max"] == pytest.approx(float(oracle.eigenvalues[-1]), rel=1e-6)
    assert 0 < entry["negative_weight"] < 1  # the oracle's Hessian is indefinite


def test_landscape_probe_quadratic_check_and_random_cut(oracle: Oracle) -> None:
    result = _run(CurvatureLandscape, oracle, {"dtype": "float64", "points": 9, "plane_points": 5,
                                               "train_samples": 200})
    s = result.summary
    lam1 = float(top_by_magnitude(oracle.eigenvalues, 1)[0])
    assert s["lambda_1"] == pytest.approx(lam1, rel=1e-6)
    assert s["quadratic_fit"]["agrees"] and s["quadratic_fit"]["relative_difference"] < 2e-3
    assert set(result.artifacts["lines"]) == {"audit", "train"}
    plane = result.artifacts["plane"]["losses"]
    assert len(plane) == 5 and len(plane[0]) == 5
    assert plane[2][2] == pytest.approx(s["loss_at_theta"]["audit"], rel=1e-12)
    # the random cut's curvature is the Rayleigh quotient of the dense Hessian along it
    from robaudit.probes.curvature import landscape
    from robaudit.probes.curvature.operator import HessianOperator

    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    d = landscape.filter_normalised_direction(op, torch.Generator().manual_seed(0))
    assert s["random_direction"]["curvature"] == pytest.approx(float(d @ oracle.hessian @ d / (d @ d)), rel=1e-8)


@pytest.mark.parametrize(("cls", "knobs", "match"), [
    (CurvatureTopK, {"sets": ["valid"]}, "set must be one of"),
    (CurvatureTopK, {"sets": ["train:0"]}, "B_H"),
    (CurvatureTopK, {"sets": ["audit", "audit:full"]}, "twice"),
    (CurvatureTopK, {"preset": "yao"}, "preset"),
    (CurvatureTopK, {"which": "SA"}, "which"),
    (CurvatureTopK, {"dtype": "float16"}, "dtype"),
    (CurvatureTrace, {"method": "exact"}, "method"),
    (CurvatureTrace, {"reuse_graph": "sometimes"}, "reuse_graph"),
    (CurvatureLandscape, {"interpolation_range": [1, 0]}, "interpolation_range"),
])
def test_bad_knobs_fail_before_running(cls: type[Probe], knobs: dict, match: str) -> None:
    with pytest.raises(ProbeError, match=match):
        build_probe_config(cls, knobs)


def test_train_set_needs_a_dataset_with_a_train_split(oracle: Oracle) -> None:
    data = copy.copy(oracle.data)
    data.provenance = {**oracle.data.provenance, "source": "/tmp/x.npz", "name": "tensors"}
    with pytest.raises(ProbeError, match="one set of samples"):
        _run(CurvatureTrace, oracle, {"sets": ["train"]}, data=data)
