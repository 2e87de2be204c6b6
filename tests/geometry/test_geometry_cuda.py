"""CUDA variants of the input-Hessian oracle test: the probe on a CUDA device against dense float64 autograd
Hessians (computed on the CPU), in both precisions, and the same seed giving the same results on the device.

Marked ``gpu``: skipped where no CUDA device is present (``benchmarks/gpu_check.sh`` runs them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geometry_helpers import digits_context, digits_model
from robaudit.probes.geometry.common import working_model
from robaudit.probes.geometry.hessian_probe import InputHessian
from robaudit.probes.testing import make_test_context
from robaudit.results.environment import make_cuda_reproducible

pytestmark = pytest.mark.gpu
N = 8


def _dense_eigenvalues(model, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:  # noqa: ANN001
    """Descending eigenvalues of one sample's 64×64 loss Hessian by dense float64 autograd on the CPU."""
    work = working_model(model, "float64").cpu()

    def f(flat: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(work(flat.reshape(1, 1, 8, 8)), y[None])

    return torch.linalg.eigvalsh(torch.func.hessian(f)(x.reshape(-1).double())).flip(0).numpy()


def _cuda_run(model, precision: str, seed: int = 0):  # noqa: ANN001
    make_cuda_reproducible()
    cpu_ctx = digits_context(model, N, start=40)
    ctx = make_test_context(model, cpu_ctx.data, batch_size=32, seed=seed, device="cuda")
    torch.manual_seed(seed)
    with torch.enable_grad():
        return cpu_ctx.data, InputHessian(InputHessian.Config(precision=precision)).run(ctx)


@pytest.mark.parametrize(("precision", "rtol"), [("float64", 1e-6), ("mixed", 1e-6)])
def test_cuda_input_hessian_matches_dense_autograd(precision: str, rtol: float) -> None:
    model = digits_model("relu")
    data, res = _cuda_run(model, precision)
    assert (res.per_sample["method_exact"] == 1).all() and res.summary["theorem1"]["holds"]
    for i in range(N):
        ev = _dense_eigenvalues(model, data.x[i], data.y[i])
        got = np.array([res.per_sample[f"lambda_{k}"][i] for k in range(1, 10)])
        # λ1 and the trace relatively; the whole spectrum within rtol·λ1 (float32 Jacobians in mixed)
        assert got[0] == pytest.approx(ev[0], rel=rtol)
        np.testing.assert_allclose(got, ev[:9], rtol=0, atol=rtol * ev[0])
        assert res.per_sample["trace"][i] == pytest.approx(ev.sum(), rel=rtol)


def test_cuda_input_hessian_same_seed_same_results() -> None:
    model = digits_model("gelu")  # the Lanczos fallback: random start vectors from the seed
    runs = [_cuda_run(model, "float64", seed=5)[1] for _ in range(2)]
    assert (runs[0].per_sample["method_exact"] == 0).all()
    for key, col in runs[0].per_sample.items():
        np.testing.assert_array_equal(col, runs[1].per_sample[key], err_msg=key)
