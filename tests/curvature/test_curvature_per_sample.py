"""Per-sample curvature along a direction, c_i = vᵀ∇²CE_i v, against per-sample dense Hessians."""
from __future__ import annotations

import torch

from curvature_oracle import Oracle, dense_hessian
from robaudit.probes.curvature import per_sample
from robaudit.probes.curvature.operator import HessianOperator


def test_per_sample_curvature_matches_dense_and_averages_to_vhv(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = per_sample.directional_curvature(op, v, oracle.set())
    assert c.shape == (len(oracle.data),) and c.dtype == torch.float64
    vhv = float(v @ oracle.hessian @ v)
    assert abs(float(c.mean()) - vhv) <= 1e-10 * abs(vhv)
    for i in (0, 13, 59):
        h_i = dense_hessian(oracle.model.audit_copy(), oracle.data.x[i:i + 1], oracle.data.y[i:i + 1])
        assert abs(float(c[i]) - float(v @ h_i @ v)) <= 1e-10 * max(1.0, abs(float(v @ h_i @ v)))


def test_weights_trick_equals_the_vmapped_fallback(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    theta = op.parameters_vector()
    d = torch.randn(op.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, y = oracle.data.x[:20].double(), oracle.data.y[:20]
    with torch.enable_grad():
        fast = per_sample._weights_trick(op, theta, d, x, y)
    slow = per_sample._vmapped(op, theta, d, x, y)
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-12)
