"""The hessian-eigenthings 1.0.0a5 traps robaudit's adapter avoids, reproduced against the dense Hessian.

These tests call the library directly (robaudit itself only calls it from
``robaudit/probes/curvature/eigenthings.py``). If a release fixes a trap, its test fails: then
revisit the adapter and docs/curvature.md.
"""
from __future__ import annotations

import copy

import hessian_eigenthings as he
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curvature_oracle import Oracle, top_by_magnitude
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator


@pytest.fixture(scope="module")
def library_setup(oracle: Oracle) -> tuple:
    net = copy.deepcopy(oracle.model).double().eval()
    return net, oracle.data.x.double(), oracle.data.y


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_library_operator_weights_unequal_batches_equally(oracle: Oracle, library_setup: tuple) -> None:
    net, x, y = library_setup
    batches = [(x[i:i + 7], y[i:i + 7]) for i in range(0, len(y), 7)]  # 8 × 7 and a last batch of 4
    library = he.HessianOperator(net, batches, he.supervised_loss(F.cross_entropy))
    ours = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    v = torch.randn(ours.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = oracle.hessian @ v
    assert _rel(library.matvec(v), exact) > 0.01  # the trap (27 % here)
    assert _rel(ours.matvec(v), exact) < 1e-12  # weighting by sample count


def test_library_lanczos_default_is_inaccurate(oracle: Oracle, library_setup: tuple) -> None:
    net, x, y = library_setup
    full = he.HessianOperator(net, [(x, y)], he.supervised_loss(F.cross_entropy))
    ref = top_by_magnitude(oracle.eigenvalues, 5).numpy()
    library = he.lanczos(full, k=5, seed=0).eigenvalues.numpy()  # 2k = 10 steps, no restart
    assert np.max(np.abs(library - ref) / np.abs(ref)) > 1e-2
    ours = topk(HessianOperator(oracle.model, oracle.set(), dtype=torch.float64), 5, seed=0)
    assert np.max(np.abs(ours.values - ref) / np.abs(ref)) < 1e-6


def test_library_lanczos_above_50_steps_returns_converged_copies_of_lambda1(oracle: Oracle, library_setup: tuple) -> None:
    net, x, y = library_setup
    full = he.HessianOperator(net, [(x, y)], he.supervised_loss(F.cross_entropy))
    res = he.lanczos(full, k=5, max_iter=100, seed=0)  # reorthogonalisation switches off above 50 steps
    values = res.eigenvalues.numpy()
    lam1 = float(top_by_magnitude(oracle.eigenvalues, 1)[0])
    assert np.allclose(values, lam1, rtol=1e-6)  # five "eigenvalues", all λ1 (ghosts)
    assert bool(res.converged.all())  # and all marked converged
