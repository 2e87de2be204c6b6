"""Trace (Hutchinson / Hutch++) and SLQ density through the hessian-eigenthings adapter, against the dense Hessian."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from curvature_oracle import Oracle
from helpers import audit_model
from robaudit.probes.curvature import eigenthings
from robaudit.probes.curvature.operator import HessianOperator


def _rademacher_sd(h: torch.Tensor) -> float:
    """Standard deviation of one Rademacher Hutchinson term vᵀHv: √(2(‖H‖_F² − Σ H_ii²))."""
    return math.sqrt(2.0 * float((h * h).sum() - (h.diagonal() ** 2).sum()))


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_is_within_three_standard_errors_of_the_exact_trace(oracle: Oracle, method: str) -> None:
    exact = float(oracle.hessian.trace())
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    est = eigenthings.trace(op, method=method, num_matvecs=60, seed=0)
    assert est.hvps == 60 and est.method == method
    assert 0 < est.stderr
    assert abs(est.value - exact) <= 3 * est.stderr
    if method == "hutchinson":
        # the reported standard error estimates the analytic one for Rademacher probes
        assert est.stderr == pytest.approx(_rademacher_sd(oracle.hessian) / math.sqrt(60), rel=0.5)


def test_hutch_plus_plus_has_lower_error_than_hutchinson_over_seeds(oracle: Oracle) -> None:
    exact = float(oracle.hessian.trace())
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    err = {m: np.mean([abs(eigenthings.trace(op, method=m, num_matvecs=30, seed=s).value - exact) for s in range(4)])
           for m in ("hutchinson", "hutch++")}
    assert err["hutch++"] < err["hutchinson"]


def test_trace_rejects_too_few_matvecs(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64)
    with pytest.raises(ValueError, match="at least"):
        eigenthings.trace(op, method="hutch++", num_matvecs=5)


def test_slq_density_is_a_distribution_with_the_right_edges_and_trace(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7)
    dens = eigenthings.spectral_density(op, runs=4, steps=60, grid_points=2000, seed=0)
    ev = oracle.eigenvalues
    assert dens.hvps == 4 * 60 and dens.nodes.shape == (4, 60)
    assert np.allclose(dens.weights.sum(axis=1), 1.0, atol=1e-10)
    # extreme Ritz values converge first: they match the extreme eigenvalues
    assert np.nanmax(dens.nodes) == pytest.approx(float(ev[-1]), rel=1e-8)
    assert np.nanmin(dens.nodes) == pytest.approx(float(ev[0]), rel=1e-4)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-3)
    # P·Σ τ²θ is a Rademacher Hutchinson sample; 4 runs average to the trace within 3 SDs
    sd = _rademacher_sd(oracle.hessian) / math.sqrt(4)
    assert abs(dens.trace - float(oracle.hessian.trace())) <= 3 * sd


def test_slq_steps_are_capped_at_the_parameter_count(oracle: Oracle) -> None:
    tiny = audit_model(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 10)), 10)  # 20 parameters
    op = HessianOperator(tiny, oracle.set(), dtype=torch.float64)
    dens = eigenthings.spectral_density(op, runs=1, steps=op.size + 50, grid_points=50, seed=0)
    assert dens.steps == op.size == 20
