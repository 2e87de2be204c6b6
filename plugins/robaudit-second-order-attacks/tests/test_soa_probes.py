"""attack.fhsm / attack.l2hess as probes: outputs in the ε-ball and [0, 1], the closed-form step on a
linear model, the result contract, the comparison with FGSM / L2GRAD, and the worst-case join."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from soa_helpers import BUILTIN
from robaudit.plugin import (
    ATTACK_OUTCOMES,
    column_meta,
    make_test_context,
    project,
    to_jsonable,
    undeclared_summary_keys,
    validate_probe_class,
)
from robaudit_second_order_attacks.probes import FHSMProbe, L2HessProbe

FGSMProbe, L2GradProbe, BIMProbe, WorstCaseProbe = (
    BUILTIN.get(name) for name in ("attack.fgsm", "attack.l2grad", "attack.bim", "attack.worst_case"))

LINF = [0.05, 0.2]
L2 = [0.3, 1.0]


def _ctx(model, data, previous=None):
    return make_test_context(model, data, previous=previous, batch_size=16)


def _run(cls, setup, previous=None, **knobs):
    model, data = setup
    eps = LINF if cls.norm == "linf" else L2
    knobs.setdefault("eps", eps)
    probe = cls(cls.Config(**knobs))
    return probe.run(_ctx(model, data, previous))


def test_contract_columns_and_json(cnn_setup) -> None:
    for cls in (FHSMProbe, L2HessProbe):
        assert validate_probe_class(cls) == []
        assert ATTACK_OUTCOMES in cls.provides  # attack.worst_case runs after it and counts it
        assert column_meta(cls, "success_eps_0.1").role == "attack_success"
    model, _ = cnn_setup
    before = model.state_fingerprint()
    result = _run(FHSMProbe, cnn_setup, sanity_checks=False)
    after = model.state_fingerprint()
    assert before[0] == after[0] and all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    n = len(cnn_setup[1])
    expected = {f"{kind}_eps_{e}" for kind in ("success", "loss", "margin") for e in ("0.05", "0.2")}
    assert expected | {"gradient_vanished", "newton_iterations", "newton_residual", "newton_damping",
                       "newton_gradient_cosine", "newton_sign_agreement"} == set(result.per_sample)
    assert all(len(v) == n for v in result.per_sample.values())
    json.dumps(to_jsonable(result.summary), allow_nan=False)
    assert undeclared_summary_keys(FHSMProbe, to_jsonable(result.summary)) == []
    s = result.summary
    assert s["norm"] == "linf" and s["eps"] == LINF and s["invalid_adversarials"] == {"0.05": 0, "0.2": 0}
    assert s["newton"]["method"] == "exact" and s["newton"]["converged_fraction"] == 1.0
    assert s["newton"]["hessian_check"]["ggn_equals_hessian_fraction"] == 1.0
    assert s["newton"]["solves"] == n  # one clean-point solve per sample, shared by both budgets
    assert not [f for f in result.flags if f.id.startswith("newton_")]
    control = s["comparison"]["control"]
    assert set(control["robust_accuracy"]) == {"0.05", "0.2"} and set(control["vs_peer"]["mcnemar_p"]) == {"0.05", "0.2"}
    again = _run(FHSMProbe, cnn_setup, sanity_checks=False)  # deterministic
    assert all(np.array_equal(result.per_sample[k], again.per_sample[k], equal_nan=True) for k in result.per_sample)


@pytest.mark.parametrize("cls", [FHSMProbe, L2HessProbe])
@pytest.mark.parametrize("steps", [1, 3])
def test_outputs_inside_the_budget_and_the_box(cnn_setup, cls, steps: int) -> None:
    model, data = cnn_setup
    probe = cls(cls.Config(steps=steps, method="cg"))
    x, y = data.x[:20], data.y[:20]
    with probe.session(_ctx(model, data)):
        for eps in ([0.1, 0.3] if cls.norm == "linf" else [0.5, 2.0]):
            adv = probe.attack(None, x, y, eps, 0).adv
            delta = (adv - x).flatten(1)
            dist = delta.abs().amax(dim=1) if cls.norm == "linf" else delta.norm(dim=1)
            assert float(dist.max()) <= eps * (1 + 1e-6) + 1e-6
            assert float(adv.min()) >= 0 and float(adv.max()) <= 1
            assert not bool(project(x, adv, eps, cls.norm)[1].any())  # robaudit's own re-check agrees
            if steps == 1 and cls.norm == "l2":  # one step of ε: on the sphere unless clipped by the box
                inside = ((adv > 0) & (adv < 1)).flatten(1).all(dim=1)
                assert torch.allclose(dist[inside], torch.full_like(dist[inside], eps), rtol=1e-5)


def test_fhsm_step_is_the_sign_of_the_closed_form_newton_direction() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x = torch.rand(10, 1, 3, 4, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    y = torch.arange(10) % 4
    ctx = make_test_context(net, x, y, batch_size=16)
    w, b = net[1].weight.double(), net[1].bias.double()
    eps, damping = 0.05, 1e-3
    probe = FHSMProbe(FHSMProbe.Config(eps=[eps], damping=damping))
    with probe.session(ctx):
        adv = probe.attack(None, x, y, eps, 0).adv
    for i in range(10):
        p = (w @ x[i].double().flatten() + b).softmax(0)
        h = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
        g = w.T @ (p - torch.nn.functional.one_hot(y[i], 4).double())
        mu = damping * (g @ h @ g) / (g @ g)
        d = torch.linalg.solve(h + mu * torch.eye(12, dtype=torch.float64), g)
        expected = (x[i].double().flatten() + eps * d.sign()).clamp(0, 1)
        assert torch.allclose(adv[i].double().flatten(), expected, atol=1e-7)


def test_comparison_reuses_fgsm_results_and_agrees_with_recomputing(cnn_setup) -> None:
    model, data = cnn_setup
    fgsm = FGSMProbe(FGSMProbe.Config(eps=LINF)).run(_ctx(model, data))
    reused = _run(FHSMProbe, cnn_setup, previous={"attack.fgsm": fgsm}, sanity_checks=False).summary["comparison"]
    computed = _run(FHSMProbe, cnn_setup, sanity_checks=False).summary["comparison"]
    assert reused["source"] == "previous" and computed["source"] == "computed"
    assert reused["peer_probe"] == "attack.fgsm" and reused["gradient_attack"] == "FGSM"
    for key in ("0.05", "0.2"):
        assert reused["gradient_robust_accuracy"][key] == fgsm.summary["robust_accuracy"][key]
        assert computed["gradient_robust_accuracy"][key] == reused["gradient_robust_accuracy"][key]
        assert computed["broken_only_by_newton"][key] == reused["broken_only_by_newton"][key]
        assert 0 <= reused["mcnemar_p"][key] <= 1


def test_iterated_comparison_reuses_bim_only_with_the_same_schedule(cnn_setup) -> None:
    model, data = cnn_setup
    bim3 = BIMProbe(BIMProbe.Config(eps=LINF, steps=3, sanity_checks=False)).run(_ctx(model, data))
    bim10 = BIMProbe(BIMProbe.Config(eps=LINF, steps=10, sanity_checks=False)).run(_ctx(model, data))
    same = _run(FHSMProbe, cnn_setup, previous={"attack.bim": bim3}, steps=3, sanity_checks=False).summary
    other = _run(FHSMProbe, cnn_setup, previous={"attack.bim": bim10}, steps=3, sanity_checks=False).summary
    assert same["comparison"]["source"] == "previous" and other["comparison"]["source"] == "computed"
    assert same["comparison"]["gradient_robust_accuracy"] == other["comparison"]["gradient_robust_accuracy"]
    assert same["comparison"]["gradient_attack"] == "FGSM-3 (BIM)"
    assert same["newton"]["solves"] == len(data) * (1 + 2 * 2)  # shared clean step, then 2 more per budget


def test_results_join_the_worst_case(cnn_setup) -> None:
    model, data = cnn_setup
    previous = {"attack.fgsm": FGSMProbe(FGSMProbe.Config(eps=LINF, sanity_checks=False)).run(_ctx(model, data)),
                "attack.l2grad": L2GradProbe(L2GradProbe.Config(eps=L2, sanity_checks=False)).run(_ctx(model, data))}
    previous["attack.fhsm"] = _run(FHSMProbe, cnn_setup, previous=previous, sanity_checks=False)
    previous["attack.l2hess"] = _run(L2HessProbe, cnn_setup, previous=previous, sanity_checks=False)
    worst = WorstCaseProbe().run(_ctx(model, data, previous))
    assert {"attack.fhsm", "attack.l2hess"} <= set(worst.summary["sources"])
    for norm, eps_list, names in (("linf", LINF, ("attack.fgsm", "attack.fhsm")),
                                  ("l2", L2, ("attack.l2grad", "attack.l2hess"))):
        for e in eps_list:
            key = f"{e:.6g}"
            assert set(names) <= set(worst.summary[norm]["attacks"][key])
            either = previous[names[0]].per_sample[f"success_eps_{key}"] | previous[names[1]].per_sample[f"success_eps_{key}"]
            assert np.array_equal(worst.per_sample[f"success_{norm}_eps_{key}"], either)
    # the comparison's "robust to both" is the same per-sample worst case of the pair
    both = previous["attack.fhsm"].summary["comparison"]["both_robust_accuracy"]["0.2"].value
    assert both == pytest.approx(worst.summary["linf"]["robust_accuracy"]["0.2"].value)


def test_exact_and_cg_give_the_same_attack(cnn_setup) -> None:
    exact = _run(L2HessProbe, cnn_setup, method="exact", sanity_checks=False)
    cg = _run(L2HessProbe, cnn_setup, method="cg", cg_tol=1e-10, sanity_checks=False)
    assert cg.summary["newton"]["method"] == "cg" and cg.summary["newton"]["cg"]["not_converged"] == 0
    assert undeclared_summary_keys(L2HessProbe, to_jsonable(cg.summary)) == []
    assert int(np.max(cg.per_sample["newton_iterations"])) <= 5 + 1
    for key in ("margin_eps_0.3", "margin_eps_1"):
        np.testing.assert_allclose(exact.per_sample[key], cg.per_sample[key], rtol=1e-4, atol=1e-4)


def test_config_validation() -> None:
    assert FHSMProbe.Config(method="cg").method == "cg" and L2HessProbe.Config(damping=1e-4, steps=5).steps == 5
    for bad, match in (({"method": "newton"}, "method must be one of"),
                       ({"method": "exact", "curvature": "hessian"}, "use curvature 'ggn'"),
                       ({"damping": 0}, "damping must be a positive"),
                       ({"eps": [2.0]}, "larger than the whole pixel range"),
                       ({"steps": 0}, "steps must be at least 1")):
        with pytest.raises(ValueError, match=match):
            FHSMProbe.Config(**bad)


def test_control_is_the_infinite_damping_limit_of_the_newton_attack(cnn_setup) -> None:
    """(H + μI)⁻¹g → g/μ as μ → ∞: FHSM with a huge damping is the control's gradient step, sample by sample."""
    newton = _run(FHSMProbe, cnn_setup, sanity_checks=False).summary["comparison"]["control"]
    limit = _run(FHSMProbe, cnn_setup, damping=1e12, gradient_control=False, sanity_checks=False)
    assert "control" not in limit.summary["comparison"]
    for key in ("0.05", "0.2"):
        assert limit.summary["robust_accuracy"][key] == newton["robust_accuracy"][key]


def test_float32_saturation_of_the_gradient_attack_is_flagged() -> None:
    """Logit margins of up to ~50: float32 autograd rounds p_y − 1 to 0, FGSM's gradient loses the true
    class, and the plugin's cancellation-free gradient step breaks significantly more samples."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with torch.no_grad():
        net[1].weight.mul_(400.0)
    x = torch.rand(100, 1, 3, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    probe = FHSMProbe(FHSMProbe.Config(eps=[0.05, 0.1], sanity_checks=False))
    result = probe.run(make_test_context(net, x, y, batch_size=16))
    vs = result.summary["comparison"]["control"]["vs_peer"]
    assert vs["broken_only_by_control"]["0.1"] > 10 and vs["broken_only_by_peer"]["0.1"] == 0
    assert [f.id for f in result.flags] == ["gradient_attack_understated"]
