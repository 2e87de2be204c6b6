"""The input-Hessian probe against dense float64 autograd Hessians (64×64) on the 8×8 digits CNN.

ReLU net: the exact c×c method must reproduce every non-zero eigenvalue, and the dense Hessian
itself must be PSD with rank ≤ 9 (Yao's Theorem 1 holds). GELU net (same weights): the run-time
check must catch H ≠ GGN, the Lanczos fallback must match the dense top-k, the labels must say so.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geometry_helpers import digits_context, digits_model, run_probe
from robaudit.probes.geometry.common import working_model
from robaudit.probes.geometry.hessian_probe import InputHessian
from robaudit.probes.geometry.jacobian import decision_function

N = 8


def _dense(model, x: torch.Tensor, y: torch.Tensor, what: str = "loss") -> torch.Tensor:
    """The 64×64 input Hessian of one sample by dense autograd (float64)."""
    work = working_model(model, "float64")

    def f(flat: torch.Tensor) -> torch.Tensor:
        z = work(flat.reshape(1, 1, 8, 8))
        if what == "loss":
            return F.cross_entropy(z, y[None])
        return decision_function(z, y[None])[0][0]

    return torch.func.hessian(f)(x.reshape(-1).double())


def _spectral_sq(model, x: torch.Tensor) -> float:
    """‖J_z‖₂² of one sample from a dense autograd Jacobian."""
    work = working_model(model, "float64")
    jac = torch.func.jacrev(lambda flat: work(flat.reshape(1, 1, 8, 8))[0])(x.reshape(-1).double())
    return float(torch.linalg.matrix_norm(jac, 2) ** 2)


@pytest.fixture(scope="module")
def relu_run():
    model = digits_model("relu")
    ctx = digits_context(model, N, start=40)
    return model, ctx, run_probe(InputHessian(), ctx)


def test_exact_spectrum_matches_dense_hessian(relu_run):
    model, ctx, res = relu_run
    for i in range(N):
        h = _dense(model, ctx.data.x[i], ctx.data.y[i])
        ev = torch.linalg.eigvalsh(h).flip(0).numpy()
        top = ev[0]
        got = np.array([res.per_sample[f"lambda_{k}"][i] for k in range(1, 10)])
        # Dense autograd carries ~ε‖J_z‖₂² of absolute rounding (its softmax backward cancels when
        # 1 − p_top is tiny), so eigenvalues are compared relatively (1e-6) where they stand 1e7 times
        # above that floor, and absolutely (20 floors) everywhere.
        floor = np.finfo(np.float64).eps * _spectral_sq(model, ctx.data.x[i])
        big = ev[:9] > 1e7 * floor
        assert big[0]
        np.testing.assert_allclose(got[big], ev[:9][big], rtol=1e-6)
        np.testing.assert_allclose(got, ev[:9], rtol=0, atol=20 * floor)
        # the dense Hessian itself: PSD and rank ≤ c − 1 = 9 (Theorem 1 and Proposition 2)
        assert ev[-1] >= -20 * floor
        assert np.sum(ev > 20 * floor) <= 9
        assert res.per_sample["trace"][i] == pytest.approx(float(torch.trace(h)), rel=1e-8)
        assert res.per_sample["lambda_min"][i] >= -1e-12 * top
    assert (res.per_sample["method_exact"] == 1).all()
    assert (res.per_sample["psd"] == 1).all() and np.nanmax(res.per_sample["rank"]) <= 9
    t1 = res.summary["theorem1"]
    assert t1["holds"] and t1["piecewise_linear_fraction"] == 1.0 and "holds" in t1["verdict"]
    assert res.summary["methods"]["lanczos_hvp"] == 0 and not res.flags


def test_mixed_precision_spectrum_matches_dense_hessian_to_1e_6(relu_run):
    """precision = mixed: float32 Jacobian, float64 c×c solve and check. λ1 and the trace to 1e-6
    relative, every eigenvalue within 1e-6·λ1, and the same Theorem 1 verdict (the check is float64)."""
    model, ctx, _ = relu_run
    res = run_probe(InputHessian(InputHessian.Config(precision="mixed")), ctx)
    for i in range(N):
        ev = torch.linalg.eigvalsh(_dense(model, ctx.data.x[i], ctx.data.y[i])).flip(0).numpy()
        got = np.array([res.per_sample[f"lambda_{k}"][i] for k in range(1, 10)])
        assert got[0] == pytest.approx(ev[0], rel=1e-6)
        np.testing.assert_allclose(got, ev[:9], rtol=0, atol=1e-6 * ev[0])
        assert res.per_sample["trace"][i] == pytest.approx(ev.sum(), rel=1e-6)
    assert (res.per_sample["method_exact"] == 1).all() and res.summary["theorem1"]["holds"]


def test_relu_decision_hessian_is_zero(relu_run):
    model, ctx, res = relu_run
    h = _dense(model, ctx.data.x[0], ctx.data.y[0], what="decision")
    assert float(h.abs().max()) == 0.0
    assert (res.per_sample["decision_hessian_max_abs"] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float64", "mixed"])  # mixed: the check and Lanczos still run in float64
def test_gelu_net_is_detected_and_lanczos_matches_dense_top_k(precision: str):
    model = digits_model("gelu")
    ctx = digits_context(model, 6, start=40)
    res = run_probe(InputHessian(InputHessian.Config(lanczos_steps=40, top_k=5, precision=precision)), ctx)
    assert (res.per_sample["method_exact"] == 0).all()
    assert (res.per_sample["ggn_residual"] > 1e-3).all()
    assert res.summary["methods"] == {**res.summary["methods"], "exact_cxc": 0, "lanczos_hvp": 6}
    assert not res.summary["theorem1"]["holds"]
    assert {f.id for f in res.flags} >= {"input_hessian_fallback"}
    saw_negative = False
    for i in range(6):
        h = _dense(model, ctx.data.x[i], ctx.data.y[i])
        ev = torch.linalg.eigvalsh(h).flip(0).numpy()
        got = np.array([res.per_sample[f"lambda_{k}"][i] for k in range(1, 6)])
        np.testing.assert_allclose(got, ev[:5], rtol=1e-6, atol=1e-9 * ev[0])
        # the smallest Ritz value bounds λ_min from above; negative curvature shows up
        assert res.per_sample["lambda_min"][i] >= ev[-1] - 1e-9 * ev[0]
        saw_negative |= ev[-1] < -1e-6 * ev[0]
        if ev[-1] < -1e-3 * ev[0]:
            assert res.per_sample["psd"][i] == 0
        hd = _dense(model, ctx.data.x[i], ctx.data.y[i], what="decision")
        evd = torch.linalg.eigvalsh(hd).numpy()
        assert res.per_sample["decision_hessian_max_abs"][i] == pytest.approx(np.abs(evd).max(), rel=1e-6)
        eps = res.summary["epsilon"]
        expect = eps * res.per_sample["decision_grad_l1"][i] + 0.5 * eps**2 * 64 * np.abs(evd).max()
        assert res.per_sample["yu_bound"][i] == pytest.approx(expect, rel=1e-6)
        # trace: exact GGN trace plus a Hutchinson estimate of the remainder; checked loosely
        assert res.per_sample["trace"][i] == pytest.approx(float(torch.trace(h)), rel=0.5)
    assert saw_negative
    assert "input_hessian_indefinite" in {f.id for f in res.flags}
