"""The float32 R·v screen of the input-Hessian check against dense float64 autograd, and against the unscreened check.

R·v = Σ_k (p_k − y_k) ∇²x z_k·v = H_x·v − J_zᵀ H_L J_z·v. The oracle is the dense 64×64 (or 16×16) input
Hessian of the loss minus the dense Gauss-Newton matrix built from a dense Jacobian. On a piecewise-linear
net the screen must give exact zeros (which the dense difference, autograd's rounding, does not); where the
net is curved it must equal the dense difference; and the probe must reach the same methods, eigenvalues,
traces, flags and (on the samples it still checks) residuals as the float64 check on every sample
(``screen_check = false``, version 3's path).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from geometry_helpers import digits_context, digits_model, linear_setup, run_probe
from helpers import audit_data, audit_model, context
from robaudit.probes.geometry.common import working_model
from robaudit.probes.geometry.curvature import rademacher, second_order_vps
from robaudit.probes.geometry.hessian_probe import InputHessian


def _dense(work: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H_x, H_x − J_zᵀ(diag p − ppᵀ)J_z) of one sample by dense float64 autograd (D×D each)."""
    shape = x.shape

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(work(flat.reshape(1, *shape)), y[None])

    flat = x.reshape(-1).double()
    h = torch.func.hessian(loss)(flat)
    jac = torch.func.jacrev(lambda f: work(f.reshape(1, *shape))[0])(flat)
    p = work(flat.reshape(1, *shape))[0].softmax(0)
    return h, h - jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac


def _r(work: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        p = work(x.double()).softmax(1)
    return p - F.one_hot(y, p.shape[1]).double()


def _problem(activation: str, n: int, seeds: tuple[int, ...]):  # noqa: ANN202
    """(digits model, its first n test samples from 40 on, x, y, its float64 copy, one Rademacher v per seed)."""
    model = digits_model(activation)
    ctx = digits_context(model, n, start=40)
    vectors = torch.stack([rademacher((n, 64), torch.Generator().manual_seed(s)) for s in seeds])
    return model, ctx.data.x, ctx.data.y, working_model(model, "float64"), vectors


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_screen_equals_dense_remainder_on_a_gelu_net(dtype: str) -> None:
    model, x, y, work64, vectors = _problem("gelu", 4, seeds=(0, 1))
    r = _r(work64, x, y)
    got = second_order_vps(working_model(model, dtype), x, r, vectors).double()
    tol = 1e-10 if dtype == "float64" else 1e-5  # float32: the model's own rounding, relative to the product
    for i in range(4):
        h, rem = _dense(work64, x[i], y[i])
        # Σ_k r_k ∇²z_k densely, forward-over-reverse (a different autograd mode from the screen's double backward)
        direct = torch.func.hessian(lambda f: (work64(f.reshape(1, 1, 8, 8))[0] * r[i]).sum())(x[i].reshape(-1).double())
        for j in range(2):
            v = vectors[j, i]
            expect = direct @ v
            assert expect.norm() > 1e-3 * (h @ v).norm()  # curved: far above rounding
            np.testing.assert_allclose(got[j, i].numpy(), expect.numpy(), rtol=0, atol=tol * float(expect.abs().max()))
            # and it is H·v − GGN·v: the dense difference agrees up to its own cancellation (≈ ε‖J_z‖²‖v‖)
            np.testing.assert_allclose(got[j, i].numpy(), (rem @ v).numpy(), rtol=0,
                                       atol=max(tol, 1e-6) * float(expect.abs().max()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_screen_is_exactly_zero_on_piecewise_linear_nets(dtype: str) -> None:
    """ReLU digits CNN and a linear model: exact zeros, where the dense H − GGN is autograd's rounding."""
    model, x, y, work64, vectors = _problem("relu", 6, seeds=(0,))
    got = second_order_vps(working_model(model, dtype), x, _r(work64, x, y), vectors)
    assert got.dtype == getattr(torch, dtype) and bool((got == 0).all())
    dense = torch.stack([_dense(work64, x[i], y[i])[1] @ vectors[0, i] for i in range(6)])
    assert bool((dense != 0).any())  # the old check's residual is rounding, not zero
    lin, lctx, _, _ = linear_setup(n=4)
    lw = working_model(lin, dtype)
    lv = torch.stack([rademacher((4, 16), torch.Generator().manual_seed(1))])
    assert bool((second_order_vps(lw, lctx.data.x, _r(working_model(lin, "float64"), lctx.data.x, lctx.data.y),
                                  lv) == 0).all())


def _elu_problem() -> tuple:
    """A 16-8-4 ELU net whose hidden unit 0 decides the regime per sample: all pre-activations positive
    (locally linear: H = GGN exactly), unit 0 at about −3 (curved), or at about −30 (curved by e⁻³⁰ ≈ 1e-13:
    R·v is non-zero, so the screen sends it to the float64 check, which passes it as piecewise linear)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    first, last = nn.Linear(16, 8), nn.Linear(8, 4)
    with torch.no_grad():
        first.weight.copy_(torch.rand(8, 16, generator=g) * 0.1)
        first.bias.fill_(5.0)
        first.weight[0] = 60.0 / 16
        first.bias[0] = -30.0
        last.weight.copy_(torch.randn(4, 8, generator=g))
        last.bias.copy_(torch.randn(4, generator=g))
    net = nn.Sequential(nn.Flatten(), first, nn.ELU(), last)
    means = torch.tensor([0.6, 0.7, 0.45, 0.4, 0.0, 0.0])  # linear, linear, curved, curved, barely, barely
    noise = torch.rand(6, 1, 4, 4, generator=g) * 0.02
    x = (means[:, None, None, None] + noise - noise.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    model = audit_model(net, 4)
    return model, x, y


def test_screen_on_a_net_linear_at_some_samples_only() -> None:
    model, x, y = _elu_problem()
    runs = {}
    for screen in (True, False):
        ctx = context(model, audit_data(x, y, 4), batch_size=6)
        runs[screen] = run_probe(InputHessian(InputHessian.Config(screen_check=screen, lanczos_steps=16)), ctx)
    on, off = runs[True].per_sample, runs[False].per_sample
    np.testing.assert_array_equal(on["method_exact"], [1, 1, 0, 0, 1, 1])
    work = working_model(model, "float64")
    for i in range(6):
        h, rem = _dense(work, x[i], y[i])
        rel = float(torch.linalg.matrix_norm(rem) / torch.linalg.matrix_norm(h))
        # the oracle's regimes: exactly linear (rounding only), curved, curved below the check's tolerance
        assert (rel < 1e-12) if i < 2 else (rel > 1e-3) if i < 4 else (0 < rel < 1e-9), (i, rel)
        ev = torch.linalg.eigvalsh(h).flip(0).numpy()
        assert on["lambda_1"][i] == pytest.approx(ev[0], rel=1e-6)
    # screened samples: residual 0 (exact), the others as the unscreened check computes them
    assert (on["ggn_residual"][:2] == 0).all() and (off["ggn_residual"][:2] > 0).all()
    np.testing.assert_allclose(on["ggn_residual"][2:4], off["ggn_residual"][2:4], rtol=1e-12)
    # barely curved: the float64 check's rounding (now on a sub-batch) decides, far inside the tolerance
    assert (on["ggn_residual"][4:] < 1e-7).all() and (off["ggn_residual"][4:] < 1e-7).all()
    for key in on:
        if key != "ggn_residual":
            np.testing.assert_allclose(on[key], off[key], rtol=1e-12, atol=0, equal_nan=True, err_msg=key)
    assert {f.id for f in runs[True].flags} == {f.id for f in runs[False].flags} >= {"input_hessian_fallback"}
    assert runs[True].summary["methods"] == runs[False].summary["methods"]


def test_gelu_net_is_flagged_exactly_as_without_the_screen() -> None:
    model = digits_model("gelu")
    res = {}
    for screen in (True, False):
        ctx = digits_context(model, 3, start=40)
        res[screen] = run_probe(InputHessian(InputHessian.Config(screen_check=screen, lanczos_steps=8, top_k=3)), ctx)
    assert (res[True].per_sample["method_exact"] == 0).all()
    for key, col in res[False].per_sample.items():
        np.testing.assert_array_equal(res[True].per_sample[key], col, err_msg=key)
    assert [f.message for f in res[True].flags] == [f.message for f in res[False].flags]
    assert res[True].summary["theorem1"] == res[False].summary["theorem1"]
