"""The ``adv_landscape`` probe on a tiny model: ε = 0 against curvature.topk and the dense Hessian,
exact cosines at a = 0, an unchanged model, determinism, JSON, knobs and the report section."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from adv_landscape_helpers import BUILTIN, context, dense_hessian

from robaudit.plugin import (
    SampleSet,
    render_probe_section,
    same_state,
    to_jsonable,
    undeclared_summary_keys,
    validate_probe_class,
)
from robaudit_adversarial_landscape.consistency import cosine_per_sample, perturbation_consistency
from robaudit_adversarial_landscape.operator import PGD, AdversarialHessianOperator
from robaudit_adversarial_landscape.probe import AdversarialLandscape

CurvatureTopK = BUILTIN.get("curvature.topk")
FAST = {"k": 2, "steps": 3, "a": [0.0, 0.5], "eps": [0.0, 0.1]}


def _run(tiny, seed: int = 0, **knobs):  # noqa: ANN001, ANN202
    model, data = tiny
    cfg = AdversarialLandscape.Config(**{**FAST, **knobs})
    with torch.enable_grad():
        return AdversarialLandscape(cfg).run(context(model, data, seed=seed))


def test_contract() -> None:
    assert validate_probe_class(AdversarialLandscape) == []
    assert AdversarialLandscape.name == "adv_landscape"


def test_eps_zero_equals_curvature_topk_and_the_dense_hessian(tiny) -> None:  # noqa: ANN001
    model, data = tiny
    ours = _run(tiny, eps=[0.0], k=3, consistency=False, dtype="float64")
    with torch.enable_grad():
        ref = CurvatureTopK(CurvatureTopK.Config(k=3, dtype="float64", per_sample=False)).run(context(model, data))
    mine = ours.summary["spectra"]["0"]["eigenvalues"]
    theirs = ref.summary["sets"]["audit"]["full"]["eigenvalues"]
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)
    dense = torch.linalg.eigvalsh(dense_hessian(model, data.x, data.y)).numpy()
    np.testing.assert_allclose(mine, dense[np.argsort(-np.abs(dense))][:3], rtol=1e-6)
    assert ours.summary["lambda_1"]["0"] == mine[0] == ours.summary["lambda_1_clean"]
    assert ours.summary["consistency"] == {} and ours.per_sample == {}


def test_run_leaves_model_unchanged_and_is_deterministic(tiny) -> None:  # noqa: ANN001
    model, data = tiny
    before = model.state_fingerprint()
    first = _run(tiny)
    assert same_state(before, model.state_fingerprint())
    assert not model.training
    second = _run(tiny)
    assert json.dumps(to_jsonable(first.summary), sort_keys=True) == json.dumps(to_jsonable(second.summary),
                                                                                sort_keys=True)
    assert undeclared_summary_keys(AdversarialLandscape, to_jsonable(first.summary)) == []
    for key, col in first.per_sample.items():
        np.testing.assert_array_equal(col, second.per_sample[key])
    payload = {"s": first.summary, "a": first.artifacts, "f": [f.to_json() for f in first.flags]}
    assert json.loads(json.dumps(to_jsonable(payload)))["s"]["eps"] == [0.0, 0.1]

    s = first.summary
    assert s["eps"] == [0.0, 0.1] and set(s["lambda_1"]) == {"0", "0.1"}
    assert s["spectra"]["0.1"]["recompute_max_abs_diff"] == 0.0
    assert s["spectra"]["0.1"]["delta_linf_mean"] == pytest.approx(0.1, rel=1e-5)
    assert s["adv_loss"]["0.1"] > s["adv_loss"]["0"]
    assert isinstance(s["monotone_in_eps"], bool)
    assert s["monotone_in_eps"] == (s["lambda_1"]["0.1"] > s["lambda_1"]["0"])
    assert s["lambda_1_growth"] == {"0.1": pytest.approx(s["lambda_1"]["0.1"] / s["lambda_1"]["0"])}
    assert (s["monotone_in_eps"] is False) == any(f.id == "adv_curvature_not_monotone" for f in first.flags)
    rows = s["consistency"]["0.1"]
    for direction in ("eigenvector", "random"):
        assert rows[direction]["0"]["cosine"] == 1.0  # same θ, same seed: exactly 1
        assert rows[direction]["0"]["clean_error"]["plus"] == rows[direction]["0"]["clean_error"]["minus"]
        assert -1.0 <= rows[direction]["0.5"]["cosine"] <= 1.0
        assert s[f"cosine_{direction}"]["0.1"] == rows[direction]["0.5"]["cosine"]
        assert first.per_sample[f"cosine_{direction}"].shape == (len(data),)
    assert not any(f.id == "adv_example_nondeterministic" for f in first.flags)


def test_cosine_at_a_zero_is_exactly_one_per_sample(tiny) -> None:  # noqa: ANN001
    model, data = tiny
    op = AdversarialHessianOperator(model, _set(data), None, dtype=torch.float32, batch_size=10)
    attack = PGD("linf", 0.1, steps=4, step_fraction=0.5, random_start=True, seed=11, batch_size=10)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = perturbation_consistency(op, attack, v, [0.0, 0.2], "relative", data.x, data.y)
    assert np.all(rows[0].cosine == 1.0)
    assert rows[0].plus == rows[0].minus
    theta_norm = float(op.parameters_vector().double().norm())
    assert rows[1].step_norm == pytest.approx(0.2 * theta_norm) and rows[1].relative_step == pytest.approx(0.2)
    assert np.all(rows[1].cosine <= 1.0 + 1e-12)


def test_cosine_per_sample_exact_values() -> None:
    d = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert np.all(cosine_per_sample(d, d.clone()) == 1.0)
    np.testing.assert_allclose(cosine_per_sample(d, -d), -1.0, rtol=0, atol=1e-15)
    z = d.clone()
    z[2] = 0
    out = cosine_per_sample(d, z)
    assert math.isnan(out[2]) and np.all(out[[0, 1, 3, 4]] == 1.0)


@pytest.mark.parametrize("knobs, match", [
    ({"eps": [-0.1]}, "non-negative"),
    ({"eps": [0.0, 0.1], "consistency_eps": [0.2]}, "not in eps"),
    ({"consistency_eps": [0.0]}, "positive"),
    ({"a": [0.0, -1.0]}, "non-negative"),
    ({"a_unit": "filter"}, "a_unit"),
    ({"directions": ["hessian"]}, "directions"),
    ({"per_sample_a": 0.7}, "per_sample_a"),
    ({"norm": "l1"}, "norm"),
    ({"hessian_set": "val"}, "set"),
])
def test_bad_knobs_are_rejected(knobs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdversarialLandscape.Config(**knobs)


def test_report_context_renders_from_saved_entry(tiny) -> None:  # noqa: ANN001
    result = _run(tiny)
    entry = {"summary": to_jsonable(result.summary), "flags": [f.to_json() for f in result.flags],
             "notes": result.notes}
    entry = json.loads(json.dumps(entry))
    results = {"probes": {"adv_landscape": entry}}
    ctx = AdversarialLandscape.report_context(entry, results)
    assert set(ctx["figures"]) == {"spectrum", "cosine", "error"}
    assert [r["eps"] for r in ctx["spectrum"]] == ["0", "0.1"]
    html = render_probe_section(AdversarialLandscape, entry, results)
    assert "Top eigenvalues against ε" in html and "dependence of δ* on θ is ignored" in html
    assert html.count("<svg") == 3 and "eigenvector" in html and "random" in html


def _set(data):  # noqa: ANN001, ANN202
    return SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))


def test_trend_and_growth() -> None:
    trend = AdversarialLandscape._trend
    assert trend([0.0, 0.1, 0.2], {"0": 1.0, "0.1": 3.0, "0.2": 2.0}) == (False, {"0.1": 3.0, "0.2": 2.0})
    assert trend([0.0, 0.1], {"0": 2.0, "0.1": 3.0}) == (True, {"0.1": 1.5})
    assert trend([0.1, 0.2], {"0.1": 1.0, "0.2": 1.0}) == (False, None)  # equal is not a rise; no ε = 0
    assert trend([0.0], {"0": 1.0}) == (None, None)


def test_auto_dtype_redoes_uncertified_pairs_in_float64_on_the_same_delta(tiny) -> None:  # noqa: ANN001
    model, data = tiny
    strict = _run(tiny, eps=[0.1], k=1, consistency=False, certify_tol=1e-13)
    entry = strict.summary["spectra"]["0.1"]
    assert entry["escalated"] is not None and entry["escalated"]["from"] == "float32"
    assert entry["dtype"] == "float64"
    # float64 on the float32 δ*: the dense Hessian at exactly those inputs (the probe's PGD, rerun) is the oracle
    attack = PGD("linf", 0.1, 3, 2.5 / 3, True, entry["attack"]["seed"], entry["attack"]["batch_size"])
    op = AdversarialHessianOperator(model, _set(data), attack, dtype=torch.float32, batch_size=16)
    dense = torch.linalg.eigvalsh(dense_hessian(model, op.adversarial_x.double(), data.y)).numpy()
    np.testing.assert_allclose(entry["eigenvalues"], dense[np.argsort(-np.abs(dense))][:1], rtol=1e-6)
    assert any(f.id == "eigenpairs_not_certified" for f in strict.flags)
