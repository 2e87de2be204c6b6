"""Every attack sanity flag, both ways: raised on a model built to trigger it, silent on a normal one.

Triggers: a softmax output and a torch.round input layer (zero gradients), a non-differentiable
step that defeats small steps (KinkStep), a periodic decision function (accuracy rises with ε),
a hard threshold only a black-box search can cross (Binarised), and attacks that return
invalid candidates. The normal model is the demo CNN on real digits.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attack_models import (
    Binarised, KinkStep, Periodic, centred_inputs, demo, flag_ids, linear_problem, rounded_input, run_probe,
    softmax_output, subset, two_class,
)
from helpers import audit_model
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.autoattack import AutoAttackProbe
from robaudit.probes.attacks.iterative import BIMProbe, PGDL2Probe, PGDLinfProbe
from robaudit.probes.attacks.single_step import FGSMProbe, L2GradProbe

ATTACK_FLAGS = {"attack_gradients_vanish", "accuracy_rises_with_eps", "iterative_weaker_than_single_step",
                "large_eps_not_broken", "noise_as_strong_as_attack", "black_box_beats_white_box",
                "attack_output_invalid"}


@pytest.fixture(scope="module")
def digits() -> tuple:
    model, data = demo()
    return model, subset(data, 60)


def test_softmax_output_masks_gradients(digits: tuple) -> None:
    model, data = digits
    result = run_probe(FGSMProbe, softmax_output(model), data, eps=[0.1, 0.2])
    assert "attack_gradients_vanish" in flag_ids(result)
    vanished = result.summary["sanity"]["gradient_vanished"]
    assert vanished["count"] > 0.5 * vanished["of"]
    # the masked attack then does nothing: robust accuracy equals clean accuracy
    assert result.summary["robust_accuracy"]["0.2"].value == result.summary["clean_accuracy"].value


class NaNGradient(nn.Module):
    """Adds 0·Σ√(x − x.detach()) to the logits: the forward is unchanged (the term is exactly 0), but
    the backward multiplies √'s infinite slope at 0 by the zero coefficient: NaN input gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + 0.0 * torch.sqrt(x - x.detach()).flatten(1).sum(dim=1, keepdim=True)


def test_nan_input_gradients_are_flagged(digits: tuple) -> None:
    model, data = digits
    nan_model = audit_model(NaNGradient(model), model.num_classes, model.in_channels)
    with torch.no_grad():
        torch.testing.assert_close(nan_model(data.x), model(data.x))
    result = run_probe(FGSMProbe, nan_model, data, eps=[0.1], sanity_checks=False)
    assert "attack_gradients_vanish" in flag_ids(result)
    assert result.per_sample["gradient_vanished"].all()
    assert result.summary["sanity"]["gradient_vanished"]["count"] == len(data.y)


def test_round_layer_makes_noise_as_strong_as_the_attack(digits: tuple) -> None:
    model, data = digits
    data = subset(data, 40)
    masked = rounded_input(model, levels=2)
    for cls in (FGSMProbe, PGDLinfProbe):
        result = run_probe(cls, masked, data, eps=[0.3, 0.5])
        assert {"noise_as_strong_as_attack", "attack_gradients_vanish"} <= flag_ids(result), cls.name
    assert "large_eps_not_broken" in flag_ids(result)
    assert result.summary["sanity"]["large_eps"]["robust_accuracy"] > 0.02


def test_non_differentiable_step_makes_iterative_weaker_than_fgsm() -> None:
    model, data = two_class(KinkStep(eps0=0.1), centred_inputs(12))
    for cls, knobs in ((BIMProbe, {}), (PGDLinfProbe, {"method": "pgd"})):  # APGD-CE's first step is 2ε
        result = run_probe(cls, model, data, eps=[0.1], **knobs)
        assert "iterative_weaker_than_single_step" in flag_ids(result), cls.name
        row = result.summary["sanity"]["single_step"]["by_eps"]["0.1"]
        assert row == {"robust_iterative": 12, "robust_single_step": 0, "broken_only_by_single_step": 12}


def test_single_step_results_are_reused_from_an_earlier_fgsm_run() -> None:
    model, data = two_class(KinkStep(eps0=0.1), centred_inputs(12))
    fgsm = run_probe(FGSMProbe, model, data, eps=[0.1])
    pgd = run_probe(PGDLinfProbe, model, data, eps=[0.1], previous={"attack.fgsm": fgsm}, method="pgd")
    assert pgd.summary["sanity"]["single_step"]["source"] == "previous"
    assert "iterative_weaker_than_single_step" in flag_ids(pgd)


def test_periodic_model_makes_accuracy_rise_with_eps() -> None:
    model, data = two_class(Periodic(), centred_inputs(12))
    result = run_probe(FGSMProbe, model, data, eps=[0.1, 0.2], monotone=False)
    assert "accuracy_rises_with_eps" in flag_ids(result)
    assert result.summary["robust_accuracy"]["0.1"].value == 0.0
    assert result.summary["robust_accuracy"]["0.2"].value == 1.0
    # ε-monotone (the default): the verified example found at 0.1 is inside the 0.2 ball
    monotone = run_probe(FGSMProbe, model, data, eps=[0.1, 0.2])
    assert "accuracy_rises_with_eps" not in flag_ids(monotone)
    assert monotone.summary["robust_accuracy"]["0.2"].value == 0.0


def test_hard_threshold_lets_square_beat_the_white_box_components() -> None:
    model, data = two_class(Binarised(), centred_inputs(12, centre=0.4, spread=0.02))
    result = run_probe(AutoAttackProbe, model, data, eps=[0.15], preset="fast", square_queries=300)
    assert "black_box_beats_white_box" in flag_ids(result)
    assert result.summary["broken_by"]["0.15"]["square"] == 12
    assert result.summary["broken_by"]["0.15"]["apgd-ce"] == 0


class _OvershootingPGD(PGDLinfProbe):
    """A broken attack: returns its candidates pushed 3× further than the budget allows."""

    def attack(self, target, x, y, eps, seed):  # noqa: ANN001, ANN201
        out = super().attack(target, x, y, eps, seed)
        return ta.AttackOutput(x + 3 * (out.adv - x), out.first_grad_bad)


def test_invalid_attack_outputs_are_flagged_and_never_trusted() -> None:
    model, data, d_inf, _ = linear_problem(n=16)
    eps = float(d_inf.min()) * 0.9  # below every exact distance: no valid adversarial example exists
    result = run_probe(_OvershootingPGD, model, data, eps=[eps], sanity_checks=False)
    assert "attack_output_invalid" in flag_ids(result)
    assert result.summary["invalid_adversarials"] and sum(result.summary["invalid_adversarials"].values()) > 0
    assert not result.per_sample[next(k for k in result.per_sample if k.startswith("success_eps_"))].any()


@pytest.mark.slow
def test_no_attack_flag_on_a_normal_model(digits: tuple) -> None:
    model, data = digits
    data = subset(data, 40)
    linf, l2 = {"eps": [0.1, 0.3]}, {"eps": [0.5, 1.5]}
    raised: dict[str, set[str]] = {}
    fgsm = run_probe(FGSMProbe, model, data, **linf)
    l2grad = run_probe(L2GradProbe, model, data, **l2)
    for name, result in (
        ("fgsm", fgsm), ("l2grad", l2grad),
        ("bim", run_probe(BIMProbe, model, data, previous={"attack.fgsm": fgsm}, **linf)),
        ("pgd_linf", run_probe(PGDLinfProbe, model, data, previous={"attack.fgsm": fgsm}, **linf)),
        ("pgd_l2", run_probe(PGDL2Probe, model, data, previous={"attack.l2grad": l2grad}, **l2)),
        ("autoattack", run_probe(AutoAttackProbe, model, subset(data, 20), eps=[0.2], preset="fast",
                                 square_queries=100)),
    ):
        raised[name] = flag_ids(result) & ATTACK_FLAGS
        assert result.summary["sanity"], name
    assert all(not v for v in raised.values()), raised


def test_gradient_check_sees_real_gradients_on_a_normal_model(digits: tuple) -> None:
    model, data = digits
    result = run_probe(FGSMProbe, model, data, eps=[0.1])
    assert result.summary["sanity"]["gradient_vanished"]["count"] == 0
    # the recorder agrees with a gradient computed here, sample by sample
    x = data.x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = torch.nn.functional.cross_entropy(model(x), data.y)
        (g,) = torch.autograd.grad(loss, x)
    assert not ((g.flatten(1) == 0).all(dim=1)).any()
    assert not result.per_sample["gradient_vanished"].any()
