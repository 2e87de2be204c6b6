"""CUDA variants of the top-k oracle test: thick-restart Lanczos on a CUDA operator against the dense float64 spectrum.

Marked ``gpu``: skipped where no CUDA device is present (``benchmarks/gpu_check.sh`` runs them).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from curvature_oracle import Oracle, top_by_magnitude
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("k", [5, 20])
def test_cuda_topk_matches_dense_eigenvalues(oracle: Oracle, k: int) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7, device=torch.device("cuda"))
    pairs = topk(op, k, tol=1e-8, seed=0)
    ref = top_by_magnitude(oracle.eigenvalues, k).numpy()
    assert np.max(np.abs(pairs.values - ref) / np.abs(ref)) <= 1e-6
    h = oracle.hessian
    dense = [float((h @ v - lam * v).norm()) / abs(lam) for lam, v in zip(pairs.values, pairs.vectors)]
    assert np.all(np.asarray(dense) <= pairs.residuals * (1 + 1e-6) + 1e-12)
    assert pairs.summary(1e-3)["certified"]


def test_cuda_topk_is_reproducible_on_the_same_device(oracle: Oracle) -> None:
    runs = []
    for _ in range(2):
        op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, device=torch.device("cuda"))
        runs.append(topk(op, 5, seed=3))
    assert np.array_equal(runs[0].values, runs[1].values)
    assert torch.equal(runs[0].vectors, runs[1].vectors)
