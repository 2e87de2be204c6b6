"""The Newton solvers against independent references: closed forms on a linear model, dense autograd Hessians."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from soa_helpers import tiny_cnn
from robaudit_second_order_attacks.newton import (
    GGNOperator,
    HessianOperator,
    conjugate_gradient,
    exact_newton,
    hessian_check,
)

C, SHAPE = 4, (1, 3, 4)
D = 12


def _linear(scale: float = 1.0) -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(D, C)).double()
    with torch.no_grad():
        net[1].weight.mul_(scale)
        net[1].bias.mul_(scale)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _closed_form(net: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float, relative: bool):
    """Dense float64 reference per sample: H_x = Wᵀ(diag p − ppᵀ)W, g = Wᵀ(p − e_y), d = (H + μI)⁻¹ g.

    Complements are summed from the other probabilities (1 − p_k = Σ_{j≠k} p_j), so the reference
    stays exact for confident samples where 1 − p_top is below float64's resolution."""
    w = net[1].weight.double()
    z = net(x)
    out = []
    for i in range(len(x)):
        p = z[i].softmax(0)
        comp = torch.stack([torch.cat([p[:k], p[k + 1:]]).sum() for k in range(C)])
        h_l = -torch.outer(p, p)
        h_l[range(C), range(C)] = p * comp
        r = p.clone()
        r[y[i]] = -comp[y[i]]
        h = w.T @ h_l @ w
        g = w.T @ r
        rho = g @ h @ g / (g @ g)
        mu = damping * rho if relative else torch.tensor(damping, dtype=torch.float64)
        out.append((torch.linalg.solve(h + mu * torch.eye(D, dtype=torch.float64), g), h, g, mu))
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("scale", "damping", "relative"), [
    (1.0, 1e-3, True), (1.0, 1e-6, True), (1.0, 1e-3, False),
    (60.0, 1e-3, True), (60.0, 1e-6, True),  # scale 60: logit margins 9–50, 1 − p_top down to ~1e-22
])
def test_linear_model_closed_form(scale: float, damping: float, relative: bool) -> None:
    net = _linear(scale)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, *SHAPE, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (8,), generator=gen)
    ref = _closed_form(net, x, y, damping, relative)
    exact = exact_newton(net, x, y, damping, relative)
    cg = conjugate_gradient(GGNOperator(net, x, y), damping, relative, tol=1e-12, max_iter=50)
    for i, (d, h, g, mu) in enumerate(ref):
        assert torch.linalg.matrix_rank(h, rtol=1e-10) <= C - 1  # singular: regularisation is required
        assert _rel(exact.gradient[i], g) < 1e-10
        assert _rel(exact.direction[i], d) < 1e-6
        assert _rel(cg.direction[i], d) < 1e-6
        assert float(exact.damping[i]) == pytest.approx(float(mu), rel=1e-8)
        assert float(cg.damping[i]) == pytest.approx(float(mu), rel=1e-6)
    assert bool(cg.converged.all()) and int(cg.iterations.max()) <= C + 1  # ≤ c distinct eigenvalues
    assert float(cg.residual.max()) < 1e-9 and float(exact.residual.max()) < 1e-10


def test_relu_cnn_against_dense_autograd_hessian() -> None:
    net = tiny_cnn().double()
    for p in net.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=gen)
    damping = 1e-3
    exact = exact_newton(net, x, y, damping, True)
    cg = conjugate_gradient(GGNOperator(net, x, y), damping, True, tol=1e-12, max_iter=40)
    cg_h = conjugate_gradient(HessianOperator(net, x, y), damping, True, tol=1e-12, max_iter=40)
    for i in range(len(x)):
        def loss(v: torch.Tensor, i: int = i) -> torch.Tensor:
            return F.cross_entropy(net(v.view(1, 1, 6, 6)), y[i].view(1))

        h = torch.func.hessian(loss)(x[i].flatten())
        g = torch.func.grad(loss)(x[i].flatten())
        eig = torch.linalg.eigvalsh(h)
        assert eig.min() > -1e-10 * eig.max()           # PSD (Yao Thm 1: piecewise-linear net)
        assert int((eig > 1e-9 * eig.max()).sum()) <= 4  # rank ≤ c − 1
        mu = damping * (g @ h @ g) / (g @ g)
        d = torch.linalg.solve(h + mu * torch.eye(36, dtype=torch.float64), g)
        for sol in (exact, cg, cg_h):
            assert _rel(sol.direction[i], d) < 1e-6
            assert float(sol.damping[i]) == pytest.approx(float(mu), rel=1e-6)


def test_cg_mask_makes_each_sample_independent_of_its_batch() -> None:
    net = tiny_cnn().double().requires_grad_(False)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(5, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (5,), generator=gen)
    batch = conjugate_gradient(GGNOperator(net, x, y), 1e-3, True, tol=1e-8, max_iter=40)
    for i in range(5):
        alone = conjugate_gradient(GGNOperator(net, x[i:i + 1], y[i:i + 1]), 1e-3, True, tol=1e-8, max_iter=40)
        assert int(alone.iterations[0]) == int(batch.iterations[i])
        assert _rel(alone.direction[0], batch.direction[i]) < 1e-10


def test_zero_gradient_gives_zero_direction_not_nan() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(D, C)).double()
    nn.init.zeros_(net[1].weight)
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    for sol in (exact_newton(net, x, y, 1e-3, True),
                conjugate_gradient(GGNOperator(net, x, y), 1e-3, True, tol=1e-8, max_iter=10)):
        assert torch.isfinite(sol.direction).all() and float(sol.direction.abs().max()) == 0.0


def test_hessian_check_tells_piecewise_linear_from_smooth_nets() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=gen)
    relu = tiny_cnn().double()
    _, ok = hessian_check(relu, x, y, torch.Generator().manual_seed(1), 1e-6)
    assert bool(ok.all())
    torch.manual_seed(0)
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.GELU(), nn.Linear(16, 5)).double()
    rel, ok = hessian_check(gelu, x, y, torch.Generator().manual_seed(1), 1e-6)
    assert not bool(ok.any()) and float(rel.min()) > 1e-3
