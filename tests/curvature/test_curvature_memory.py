"""The HVP operator keeps the whole set's gradient graph only while it fits the working-memory budget.

Kept for every N, the graph made ``curvature.topk`` hold about 0.8 MB per audit sample on the quarter-width
ResNet-18 (peak RSS grew with the sample count); beyond the budget each product streams batches, and the
products stay those of the dense float64 Hessian either way.
"""
from __future__ import annotations

import pytest
import torch

from curvature_oracle import Oracle
from robaudit.probes import memory
from robaudit.probes.curvature.operator import HessianOperator


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("budget", [1 << 40, 1 << 10])
def test_auto_reuse_follows_the_graph_size_and_products_stay_exact(oracle: Oracle, budget: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CPU_WORKING_BUDGET", budget)
    samples = oracle.set()
    op = HessianOperator(oracle.model, samples, dtype=torch.float64, batch_size=7)
    per_sample = memory.activation_bytes(op.net, samples.x[:1])
    assert per_sample > 0
    assert op.reuse_graph is (3 * len(samples) * per_sample <= budget)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert _rel(op.matvec(v), oracle.hessian @ v) < 1e-12


def test_activation_bytes_count_each_sample_once(oracle: Oracle) -> None:
    """Saved activations grow linearly in the batch: two samples' worth is twice one's (parameters cancel)."""
    net = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, reuse_graph=False).net
    x = oracle.set().x
    one = memory.activation_bytes(net, x[:1])
    assert one == memory.activation_bytes(net, x[5:6]) > 0
    assert one % 8 == 0  # float64 storages
