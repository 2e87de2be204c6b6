"""Top-k eigenpairs (restarted Lanczos) and Yao's power iteration against the dense float64 spectrum."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from curvature_oracle import Oracle, dense_hessian, top_by_magnitude
from robaudit.errors import ProbeError
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.power import deflated_power
from robaudit.probes.curvature.samples import subset


@pytest.mark.parametrize("solver", ["lanczos", "arpack"])
@pytest.mark.parametrize("k", [5, 20])
@pytest.mark.parametrize("which", ["LM", "LA"])
def test_topk_matches_dense_eigenvalues_with_unequal_batches(oracle: Oracle, k: int, which: str, solver: str) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)  # 8×7 + 4
    pairs = topk(op, k, which=which, tol=1e-8, seed=0, solver=solver)
    ref = top_by_magnitude(oracle.eigenvalues, k) if which == "LM" else oracle.eigenvalues.flip(0)[:k]
    assert np.max(np.abs(pairs.values - ref.numpy()) / np.abs(ref.numpy())) <= 1e-6
    # the certificates, recomputed with the dense matrix
    h = oracle.hessian
    dense_res = [float((h @ v - lam * v).norm()) / abs(lam) for lam, v in zip(pairs.values, pairs.vectors)]
    assert np.allclose(pairs.residuals, dense_res, rtol=1e-6, atol=1e-12)
    assert max(pairs.residuals) < 1e-6 and pairs.converged
    certificates = k if solver == "arpack" else 1  # lanczos: from the Lanczos relation, plus one consistency product
    assert pairs.hvps_solver > k and pairs.hvps_certificate == certificates
    assert op.hvps == pairs.hvps_solver + certificates
    assert torch.allclose(pairs.vectors @ pairs.vectors.T, torch.eye(k, dtype=torch.float64), atol=1e-8)


def test_float32_topk_is_accurate_and_certified(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float32, batch_size=7)
    pairs = topk(op, 5, tol=1e-6, seed=0)
    ref = top_by_magnitude(oracle.eigenvalues, 5).numpy()
    assert np.max(np.abs(pairs.values - ref) / np.abs(ref)) <= 1e-4
    assert max(pairs.residuals) < 1e-3


def test_single_sample_hessian_has_negative_eigenvalues_reported_with_sign(oracle: Oracle) -> None:
    one = subset(oracle.set(), 1, seed=0, name="audit:1")
    h1 = dense_hessian(oracle.model.audit_copy(), one.x, one.y)
    ref = top_by_magnitude(torch.linalg.eigvalsh(h1), 10).numpy()
    assert (ref < 0).any(), "the oracle's single-sample Hessian should be indefinite"
    op = HessianOperator(oracle.model, one, dtype=torch.float64)
    pairs = topk(op, 10, tol=1e-10, seed=0)
    assert np.max(np.abs(pairs.values - ref) / np.abs(ref)) <= 1e-6
    summary = pairs.summary(certify_tol=1e-3)
    assert summary["negative_count"] == int((ref < 0).sum())
    assert summary["most_negative"] == pytest.approx(float(ref[ref < 0].min()), rel=1e-6)


def test_topk_is_seeded_and_signs_are_fixed(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    a, b = topk(op, 3, seed=5), topk(op, 3, seed=5)
    assert np.array_equal(a.values, b.values) and torch.equal(a.vectors, b.vectors)
    idx = a.vectors.abs().argmax(dim=1)
    assert torch.all(a.vectors.gather(1, idx[:, None]) > 0)


def test_topk_refuses_k_not_below_the_parameter_count(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    with pytest.raises(ProbeError, match="eigenpairs"):
        topk(op, op.size)


def test_power_iteration_follows_yaos_rule_and_is_certified(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    pairs = deflated_power(op, 3, tol=1e-4, max_iter=200, seed=0)
    ref = top_by_magnitude(oracle.eigenvalues, 3).numpy()
    # Yao's relative-change rule at 1e-4 gives eigenvalues good to about that order, not to 1e-6
    assert np.max(np.abs(pairs.values - ref) / np.abs(ref)) < 1e-2
    assert pairs.which == "LM" and "paper reproduction" in pairs.solver
    h = oracle.hessian
    dense_res = [float((h @ v - lam * v).norm()) / abs(lam) for lam, v in zip(pairs.values, pairs.vectors)]
    assert np.allclose(pairs.residuals, dense_res, rtol=1e-6)
    its = pairs.extra["iterations"]
    assert pairs.hvps_solver == sum(its) and all(2 <= i <= 200 for i in its)
    # a tighter tolerance costs more iterations and is closer
    tight = deflated_power(op, 3, tol=1e-8, max_iter=2000, seed=0)
    assert sum(tight.extra["iterations"]) > sum(its)
    assert np.max(np.abs(tight.values - ref) / np.abs(ref)) < np.max(np.abs(pairs.values - ref) / np.abs(ref))


def test_power_iteration_reports_pairs_that_hit_max_iter(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    pairs = deflated_power(op, 2, tol=1e-12, max_iter=3, seed=0)
    assert pairs.extra["met_tolerance"] == [False, False] and not pairs.converged
    assert pairs.extra["iterations"] == [3, 3]
