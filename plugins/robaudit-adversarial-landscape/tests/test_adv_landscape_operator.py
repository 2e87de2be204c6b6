"""The adversarial Hessian operator against dense float64 oracles, and the once-per-θ δ* shortcut."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from adv_landscape_helpers import context, dense_hessian

from robaudit.plugin import SampleSet, same_state
from robaudit_adversarial_landscape.operator import PGD, AdversarialHessianOperator
from robaudit_adversarial_landscape.probe import AdversarialLandscape

EPS = 0.1


def _set(data) -> SampleSet:  # noqa: ANN001
    return SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))


def _pgd(eps: float = EPS, seed: int = 7) -> PGD:
    return PGD("linf", eps, steps=5, step_fraction=0.5, random_start=True, seed=seed, batch_size=10)


def _operator(tiny, **kwargs) -> AdversarialHessianOperator:  # noqa: ANN001
    model, data = tiny
    kwargs.setdefault("dtype", torch.float64)
    return AdversarialHessianOperator(model, _set(data), kwargs.pop("attack", _pgd()), batch_size=10, **kwargs)


def test_adversarial_hvp_equals_dense_hessian_at_fixed_delta(tiny) -> None:  # noqa: ANN001
    """H·v and the top eigenvalues equal the dense float64 Hessian of the loss at the detached x + δ*."""
    model, data = tiny
    op = _operator(tiny)
    x_adv = op.adversarial_x.detach().clone()
    delta = x_adv - data.x.double()
    assert float(delta.abs().max()) <= EPS + 1e-12 and float(delta.abs().max()) > 0.5 * EPS
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        net = model.audit_copy().double()
        clean, adv = F.cross_entropy(net(data.x.double()), data.y), F.cross_entropy(net(x_adv), data.y)
    assert float(adv) > float(clean)  # PGD ascended the loss
    assert op.loss() == pytest.approx(float(adv), rel=1e-12)

    dense = dense_hessian(model, x_adv, data.y)
    assert dense.shape == (op.size, op.size)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hv = op.matvec(v)
    torch.testing.assert_close(hv, dense @ v, rtol=1e-10, atol=1e-12)

    truth = torch.linalg.eigvalsh(dense).numpy()
    truth = truth[np.argsort(-np.abs(truth))][:3]
    probe = AdversarialLandscape(AdversarialLandscape.Config(k=3, dtype="float64"))
    pairs = probe._solve(op, context(model, data))
    np.testing.assert_allclose(pairs.values, truth, rtol=1e-6)


def test_clean_operator_is_the_clean_hessian(tiny) -> None:  # noqa: ANN001
    """ε = 0 (no attack): the operator is the plain mean-CE Hessian at the clean inputs."""
    model, data = tiny
    op = _operator(tiny, attack=None)
    assert torch.equal(op.adversarial_x, data.x.double())
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), dense_hessian(model, data.x, data.y) @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reuse_graph", [True, False])
def test_recomputing_delta_per_hvp_changes_nothing(tiny, reuse_graph: bool) -> None:  # noqa: ANN001
    """Liu's literal protocol (δ* recomputed at θ inside every HVP) gives bitwise the same products as δ*
    found once at θ, because θ is the same in every product and seeded PGD is deterministic."""
    once = _operator(tiny, dtype=torch.float32, reuse_graph=reuse_graph)
    every = _operator(tiny, dtype=torch.float32, reuse_graph=reuse_graph, recompute_per_hvp=True)
    assert once.recompute_difference() == 0.0
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(once.size, generator=gen)
        assert torch.equal(once.matvec(v), every.matvec(v))
    assert every.attack_runs == 4 and once.attack_runs == 2  # construction (+ the recompute check)
    assert torch.equal(once.adversarial_x, every.adversarial_x)


def test_a_different_seed_gives_a_different_delta(tiny) -> None:  # noqa: ANN001
    """The determinism check is not vacuous: PGD's random start does depend on the seed."""
    a = _operator(tiny, attack=_pgd(seed=1), dtype=torch.float32)
    b = _operator(tiny, attack=_pgd(seed=2), dtype=torch.float32)
    assert not torch.equal(a.adversarial_x, b.adversarial_x)


def test_operator_leaves_the_model_unchanged(tiny) -> None:  # noqa: ANN001
    model, _ = tiny
    before = model.state_fingerprint()
    flags = [p.requires_grad for p in model.parameters()]
    op = _operator(tiny, dtype=torch.float32)
    op.matvec(torch.ones(op.size))
    assert same_state(before, model.state_fingerprint())
    assert [p.requires_grad for p in model.parameters()] == flags
