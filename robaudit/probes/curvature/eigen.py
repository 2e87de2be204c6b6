"""Certified top-k eigenpairs of the parameter Hessian by restarted Lanczos.

The solver is ``scipy.sparse.linalg.eigsh`` (ARPACK's implicitly restarted Lanczos) on the exact
HVP operator, started from a seeded Gaussian vector. It is used instead of hessian-eigenthings'
``lanczos`` because that one is not restarted (its default 2k steps gave 13 % error on the
top-5) and turns reorthogonalisation off above 50 steps (it then returned copies of λ1, all
marked converged: 147 % error) — measured on a 1,886-parameter CNN; see ``docs/curvature.md``.

Every returned pair carries an explicit certificate, the relative residual
r_i = ‖H v_i − λ_i v_i‖ / |λ_i|, from one more HVP per pair. For a symmetric H there is an
eigenvalue within ‖H v_i − λ_i v_i‖ of λ_i (so r_i bounds the relative error of λ_i as an
eigenvalue of H); it does not prove that no larger eigenvalue was missed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robaudit.errors import ProbeError
from robaudit.probes.curvature.operator import HessianOperator

WHICH = ("LM", "LA")


@dataclass
class EigenPairs:
    """The top-k eigenpairs of H.

    Attributes:
        values: k signed eigenvalues (float64), ordered by |λ| descending (``which="LM"``) or
            by λ descending (``which="LA"``). Units: nats per unit² of parameter displacement.
        vectors: k×P unit eigenvectors (float64, CPU), sign fixed so the largest-magnitude entry
            is positive.
        residuals: k relative residuals ‖Hv − λv‖ / |λ| (the certificates).
        which: ``LM`` (largest magnitude, as power iteration finds them) or ``LA`` (largest algebraic).
        solver: what ran.
        tol: the solver's requested tolerance.
        hvps_solver: HVPs spent by the solver.
        hvps_certificate: HVPs spent on the residual certificates (k).
        seconds: wall time of solver and certificates.
        converged: whether the solver reported convergence (``False`` after hitting ``maxiter``).
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    which: str
    solver: str
    tol: float
    hvps_solver: int
    hvps_certificate: int
    seconds: float
    converged: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """The number of pairs."""
        return len(self.values)

    def summary(self, certify_tol: float) -> dict[str, Any]:
        """JSON summary: signed eigenvalues, residuals, negatives, HVP counts (no timings)."""
        neg = [float(v) for v in self.values if v < 0]
        return {
            "eigenvalues": [float(v) for v in self.values],
            "residuals": [float(r) for r in self.residuals],
            "max_residual": float(np.max(self.residuals)) if self.k else None,
            "found": self.k,
            "certified": bool(self.k and np.all(self.residuals <= certify_tol)),
            "certify_tol": certify_tol,
            "negative_count": len(neg),
            "most_negative": min(neg) if neg else None,
            "which": self.which,
            "solver": self.solver,
            "tol": self.tol,
            "converged": self.converged,
            "hvps": {"solver": self.hvps_solver, "certificate": self.hvps_certificate,
                     "total": self.hvps_solver + self.hvps_certificate},
            **self.extra,
        }


def fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so its largest-magnitude entry is positive (eigenvectors are defined up to sign)."""
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None])).squeeze(1)
    signs[signs == 0] = 1
    return vectors * signs[:, None]


def certify(op: HessianOperator, values: np.ndarray, vectors: torch.Tensor) -> np.ndarray:
    """Relative residuals ‖H v_i − λ_i v_i‖ / |λ_i| (one HVP per pair; ∞ when λ_i = 0)."""
    out = []
    for lam, v in zip(values, vectors):
        hv = op.matvec(v).to("cpu", torch.float64)
        r = float((hv - float(lam) * v).norm())
        out.append(r / abs(float(lam)) if lam != 0 else math.inf)
    return np.asarray(out, dtype=np.float64)


def topk(op: HessianOperator, k: int, *, which: str = "LM", tol: float = 1e-6, seed: int = 0,
         ncv: int | None = None, maxiter: int | None = None) -> EigenPairs:
    """The k dominant eigenpairs of H by ``scipy.sparse.linalg.eigsh``, with residual certificates.

    Args:
        op: the HVP operator.
        k: how many pairs (1 ≤ k < P).
        which: ``LM`` (largest |λ|, signed — Yao's power iteration finds these) or ``LA`` (largest λ).
        tol: ARPACK's relative tolerance on the Ritz residuals (0 = machine precision).
        seed: seeds the Gaussian start vector.
        ncv: Lanczos basis size (default: scipy's, max(2k + 1, 20)).
        maxiter: restart limit (default: scipy's, 10·P).

    Raises:
        ProbeError: k is not below the number of parameters.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not 1 <= k < op.size:
        raise ProbeError(f"asked for {k} eigenpairs of a Hessian with {op.size} parameters",
                         fix=f"choose k between 1 and {op.size - 1}")
    v0 = np.random.default_rng(seed).standard_normal(op.size)
    start_hvps, start = op.hvps, time.perf_counter()
    if ncv is not None:
        ncv = min(max(ncv, k + 2), op.size)
    converged = True
    try:
        values, vecs = eigsh(op.linear_operator(), k=k, which=which, v0=v0, tol=tol, ncv=ncv, maxiter=maxiter)
    except ArpackNoConvergence as exc:  # keep the pairs that did converge (possibly none)
        converged = False
        values, vecs = exc.eigenvalues, exc.eigenvectors.reshape(op.size, -1)
    hvps_solver = op.hvps - start_hvps
    order = np.argsort(-np.abs(values) if which == "LM" else -values, kind="stable")
    values = np.asarray(values[order], dtype=np.float64)
    vectors = fix_signs(torch.from_numpy(np.ascontiguousarray(vecs[:, order].T)).to(torch.float64))
    residuals = certify(op, values, vectors) if len(values) else np.zeros(0)
    return EigenPairs(values, vectors, residuals, which, "scipy.sparse.linalg.eigsh (ARPACK restarted Lanczos)",
                      tol, hvps_solver, op.hvps - start_hvps - hvps_solver, time.perf_counter() - start, converged,
                      extra={"ncv": ncv})
