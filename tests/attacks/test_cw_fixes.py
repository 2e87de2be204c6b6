"""The three C&W fixes of the adapter, each shown against torchattacks' own CW on the same inputs.

1. Negative logits (upstream #184): a bias shift that changes no decision must not change the
   attack's outcome.
2. Pixels at exactly 0 must be movable: a sample whose only adversarial direction raises a
   0-valued pixel is broken, at the closed-form distance.
3. Early stopping per sample: results do not depend on how samples are batched.
"""
from __future__ import annotations

import numpy as np
import torch

from attack_models import Linear, demo, linear_problem, run_probe, subset
from helpers import audit_data, audit_model
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.cw import CWL2Probe


def _shifted(model, shift: float):  # noqa: ANN001, ANN202
    """The same linear model with every bias moved by ``shift`` (no decision changes)."""
    fc = model.net.fc
    return audit_model(Linear(fc.weight.detach(), fc.bias.detach() + shift), fc.weight.shape[0])


def test_bias_shift_to_negative_logits_changes_nothing() -> None:
    model, data, _, d_2 = linear_problem(n=16, k=3, scale=2.0)
    negative = _shifted(model, -200.0)
    with torch.no_grad():
        assert (negative(data.x) < 0).all(), "the shifted model's logits are all negative"
        assert torch.equal(negative(data.x).argmax(dim=1), model(data.x).argmax(dim=1))
    knobs = {"eps": [0.5], "steps": 60, "binary_search_steps": 3}
    base = run_probe(CWL2Probe, model, data, **knobs)
    shifted = run_probe(CWL2Probe, negative, data, **knobs)
    assert base.per_sample["found"].all()
    np.testing.assert_array_equal(shifted.per_sample["found"], base.per_sample["found"])
    np.testing.assert_allclose(shifted.per_sample["distance"], base.per_sample["distance"], rtol=1e-3)
    assert (base.per_sample["distance"] >= d_2.numpy() - 1e-5).all()

    # torchattacks' own C&W treats the mask's 0 as the "largest other logit": with all logits
    # negative, f is clamped at 0 from the start, and the attack only shrinks ‖δ‖ — it finds nothing.
    with ta.attack_session(negative, torch.device("cpu")) as target:
        stock = ta.stock_cw(target, c=1.0, steps=60)(data.x, data.y)
    with torch.no_grad():
        assert (negative(stock).argmax(dim=1) == data.y).all()


def _zero_pixel_problem() -> tuple:
    """Two classes; only pixel 0 (exactly 0 in every sample) matters: z₁ − z₀ = 5·x₀ − 1.

    The closed-form minimal L2 (and L∞) distance is 0.2: raise pixel 0 from 0 to 0.2.
    """
    weight = torch.zeros(2, 16)
    weight[1, 0] = 5.0
    bias = torch.tensor([0.0, -1.0])
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 4, 4, generator=g)
    x[:, 0, 0, 0] = 0.0
    x[:, 0, 3, 3] = 1.0
    y = torch.zeros(6, dtype=torch.int64)
    return audit_model(Linear(weight, bias), 2), audit_data(x, y, 2)


def test_a_zero_valued_pixel_can_be_moved() -> None:
    model, data = _zero_pixel_problem()
    result = run_probe(CWL2Probe, model, data, eps=[0.25], steps=200, binary_search_steps=5)
    assert result.per_sample["found"].all()
    np.testing.assert_allclose(result.per_sample["distance"], 0.2, rtol=0.03)
    assert result.per_sample["success_eps_0.25"].all()

    # torchattacks' CW maps the 0 pixel to atanh(−1) = −∞, where tanh has zero gradient: it never moves
    with ta.attack_session(model, torch.device("cpu")) as target:
        stock = ta.stock_cw(target, c=10.0, steps=200)(data.x, data.y)
    assert torch.equal(stock[:, 0, 0, 0], data.x[:, 0, 0, 0])
    with torch.no_grad():
        assert (model(stock).argmax(dim=1) == data.y).all()


def test_results_do_not_depend_on_batching() -> None:
    model, data = demo()
    data = subset(data, 6)
    knobs = {"eps": [0.5, 1.0], "steps": 20, "binary_search_steps": 2}
    together = run_probe(CWL2Probe, model, data, batch_size=6, **knobs)
    apart = run_probe(CWL2Probe, model, data, batch_size=4, **knobs)
    np.testing.assert_array_equal(together.per_sample["found"], apart.per_sample["found"])
    np.testing.assert_allclose(together.per_sample["distance"], apart.per_sample["distance"], rtol=1e-4, atol=1e-6)
    assert together.per_sample["found"].mean() > 0.5
