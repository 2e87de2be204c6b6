"""Certified top-k eigenpairs of the parameter Hessian by thick-restart Lanczos.

The default solver (``solver="lanczos"``) is a thick-restart Lanczos (Wu & Simon 2000) with full
reorthogonalisation, in float64 torch on the operator's device. Its certificates are read from the
Lanczos relation H Vᵀ = Vᵀ T + r e_mᵀ: a Ritz pair (θ, Vᵀs) has ‖H y − θ y‖ = ‖r‖·|s_m| exactly,
so they cost no HVP. Nor do the starts: after :meth:`HessianOperator.check`, its random unit vectors
v and u, whose products it computed, start the solver and the first completeness check. The
relative residual r_i = ‖H v_i − λ_i v_i‖ / |λ_i| bounds the relative distance from λ_i to *some*
eigenvalue of H (H is symmetric).

A residual cannot show that an eigenvalue was missed (one the Krylov space never resolved, e.g. a
copy of a repeated eigenvalue, or a member of a tight cluster when the basis is too small: small
``ncv`` did exactly that in ARPACK, a wrong λ20 with all residuals ≤ 1e-2). So after convergence a
*completeness check* runs ``check_steps`` Lanczos steps from a fresh seeded random vector on H
deflated by the found vectors. Its largest Ritz value is a lower bound on the deflated spectrum's
extreme; if it beats λ_k, an eigenvalue was missed for certain, and the solver continues on the
deflated operator and merges. What this guarantees at run time: no missed eigenvalue that this
check can see is returned; one that a random start does not excite within ``check_steps`` steps
(probability ~0 unless it sits inside a cluster below λ_k's magnitude) can still be missed, and the
summary reports the check (``completeness``) so that a reader knows what was tested.

``solver="arpack"`` keeps the previous path, ``scipy.sparse.linalg.eigsh`` (ARPACK) with one
explicit certificate HVP per pair, for the benchmark (benchmarks/curvature_vs_pyhessian.py).
hessian-eigenthings' ``lanczos`` is not used: it is not restarted (its default 2k steps gave 13 %
error on the top-5) and turns reorthogonalisation off above 50 steps (it then returned copies of
λ1, all marked converged: 147 % error) — measured on a 1,886-parameter CNN; see docs/curvature.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robaudit.errors import ProbeError
from robaudit.probes.curvature.operator import HessianOperator

WHICH = ("LM", "LA")
SOLVERS = ("lanczos", "arpack")


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
        hvps_certificate: HVPs spent on the residual certificates (0 for ``lanczos``, which reads them
            from the Lanczos relation, and k for ``arpack``).
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


def _order(values: torch.Tensor, which: str) -> torch.Tensor:
    """Indices of ``values`` from most to least wanted (|λ| descending for LM, λ descending for LA)."""
    key = values.abs() if which == "LM" else values
    return torch.argsort(-key, stable=True)


def _beats(a: float, b: float, which: str) -> bool:
    """Whether eigenvalue ``a`` is strictly more wanted than ``b``."""
    return abs(a) > abs(b) if which == "LM" else a > b


@dataclass
class RitzPairs:
    """Ritz pairs from :func:`thick_restart_lanczos`, most wanted first (float64, on the start's device).

    Attributes:
        values: (j,) Ritz values.
        vectors: (j, P) orthonormal Ritz vectors.
        residuals: (j,) absolute residuals ‖A y − θ y‖ of the searched operator A, from the Lanczos relation.
        hvps: products spent.
        converged: whether the first k met ``tol`` (or the Krylov space became invariant).
        tail: (P,) the unit vector q of the Lanczos relation (zeros when the space became invariant).
        tail_weights: (j,) β·s_m: the residual vector A y_i − θ_i y_i the relation predicts is
            ``tail_weights[i] * tail`` (see :meth:`tails`).
    """

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    hvps: int
    converged: bool
    tail: torch.Tensor
    tail_weights: torch.Tensor

    def tails(self, n: int) -> torch.Tensor:
        """(n, P) the predicted residual vectors A y_i − θ_i y_i of the first n pairs (β q s_m)."""
        return self.tail_weights[:n, None] * self.tail[None]


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Make ``w`` (in place) orthogonal to the rows of ``basis`` by Gram–Schmidt twice; return ``basis·w``.

    ``scratch``: a vector like ``w`` to hold ``basisᵀ·h`` (saves two allocations of P entries per call;
    the same products, bitwise). Each pass streams the whole basis from memory twice, which is what
    this costs at large P (memory-bound BLAS-2).
    """
    if not len(basis):
        return torch.zeros(0, dtype=w.dtype, device=w.device)
    h = basis @ w
    w -= basis.T @ h if scratch is None else torch.mv(basis.T, h, out=scratch)
    h2 = basis @ w
    w -= basis.T @ h2 if scratch is None else torch.mv(basis.T, h2, out=scratch)
    return h + h2


def _ritz(t: torch.Tensor, beta: float, k: int, which: str,
          tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Ritz values, vectors of T and residuals β·|s_m|, most wanted first; and whether the first k meet ``tol``.

    Cheap (an m×m eigendecomposition, m ≤ ncv), so it runs after every product: the solver
    stops at the first step where the wanted pairs are certified, not at the next restart.
    """
    theta, s = torch.linalg.eigh(t)
    order = _order(theta, which)
    theta, s = theta[order], s[:, order]
    res = beta * s[-1].abs()
    want = min(k, len(theta))
    return theta, s, res, bool(torch.all(res[:want] <= tol * theta[:want].abs()))


def thick_restart_lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], size: int, k: int, *, which: str,
                          tol: float, ncv: int, max_hvps: int, start: torch.Tensor,
                          locked: torch.Tensor | None = None, start_product: torch.Tensor | None = None) -> RitzPairs:
    """The k wanted eigenpairs of a symmetric operator, restricted to the complement of ``locked``.

    Thick-restart Lanczos with full reorthogonalisation, in float64 on ``start``'s device. The basis
    V (≤ ``ncv`` rows) and the projected matrix T = V A Vᵀ satisfy A Vᵀ = Vᵀ T + β q e_mᵀ, so a Ritz
    pair (θ, Vᵀs) has residual β·|s_m| with no extra product. A restart keeps the
    ``max((ncv + k) // 2, k + 1)`` most wanted Ritz vectors and continues from q.

    Memory: V is allocated once (``ncv`` × P float64) and filled row by row; a restart writes the
    kept Ritz vectors over its first rows (through one temporary of their size); the product, the
    next vector and the Gram–Schmidt scratch reuse three P-vectors. No step copies the basis.

    Args:
        matvec: H·v for a flat P-vector (any dtype/device; the result is cast to float64). It is
            handed a row of the basis: it must neither modify nor keep its argument.
        size: P.
        k: how many pairs must converge.
        which: ``LM`` (largest |λ|) or ``LA`` (largest λ).
        tol: stop when each of the k has residual ≤ tol·|θ|.
        ncv: the largest basis (> k).
        max_hvps: stop (``converged = False``) after this many products (≥ 1; ≥ 0 with ``start_product``).
        start: the start vector (P,).
        locked: (L, P) orthonormal rows; the search runs on A = (I − LᵀL) H (I − LᵀL).
        start_product: H·start when it is already known (``start`` must then be orthogonal to
            ``locked``): the first step uses it and costs no product.
    """
    dev, dt = start.device, torch.float64
    locked = torch.zeros(0, size, dtype=dt, device=dev) if locked is None else locked.to(dev, dt)
    room = size - len(locked)
    ncv = max(min(ncv, room), 1)
    pending = start.to(dev, dt).clone().reshape(-1)
    _orthogonalise(pending, locked)
    norm = pending.norm()
    pending /= norm
    known = None if start_product is None else start_product.to(dev, dt).reshape(-1) / norm
    limit = max_hvps if known is not None else max(max_hvps, 1)
    basis = torch.empty(ncv, size, dtype=dt, device=dev)  # rows [0, m) are the Krylov basis V
    w = torch.empty(size, dtype=dt, device=dev)  # the product being orthogonalised
    scratch = torch.empty(size, dtype=dt, device=dev)
    m = 0
    t = torch.zeros(0, 0, dtype=dt)  # the projected matrix (CPU)
    hvps, beta = 0, 0.0
    while True:
        invariant = False
        while known is not None or hvps < limit:
            basis[m].copy_(pending)
            m += 1
            if known is not None:
                w.copy_(known)
                known = None
            else:
                w.copy_(matvec(basis[m - 1]).reshape(-1))
                hvps += 1
            _orthogonalise(w, locked, scratch)
            h = _orthogonalise(w, basis[:m], scratch).cpu()
            beta = float(w.norm())
            j = len(t)
            grown = torch.zeros(j + 1, j + 1, dtype=dt)
            grown[:j, :j] = t
            grown[:, j] = h
            grown[j, :] = h
            t = grown
            invariant = beta <= 1e-12 * max(float(t.abs().max()), 1e-300) or m >= room
            if invariant:
                break
            torch.div(w, beta, out=pending)
            if m >= ncv or (len(t) > k and _ritz(t, beta, k, which, tol)[3]):
                break
        theta, s, res, done = _ritz(t, 0.0 if invariant else beta, k, which, tol)
        done = done or invariant
        keep = min(max((ncv + k) // 2, k + 1), len(theta) - 1)
        if done or hvps >= max_hvps or keep < 1:
            tail = pending if not invariant else torch.zeros_like(pending)
            return RitzPairs(theta.to(dev), s.T.to(dev) @ basis[:m], res.to(dev), hvps, done,
                             tail, (beta * s[-1]).to(dev))
        basis[:keep] = s[:, :keep].T.to(dev) @ basis[:m]
        m = keep
        t = torch.diag(theta[:keep])  # the arrow to q is refilled by q's own product


def topk(op: HessianOperator, k: int, *, which: str = "LM", tol: float = 1e-6, seed: int = 0,
         ncv: int | None = None, maxiter: int | None = None, solver: str = "lanczos",
         check_steps: int = 5, start: torch.Tensor | None = None) -> EigenPairs:
    """The k dominant eigenpairs of H, with residual certificates.

    Args:
        op: the HVP operator.
        k: how many pairs (1 ≤ k < P).
        which: ``LM`` (largest |λ|, signed — Yao's power iteration finds these) or ``LA`` (largest λ).
        tol: relative tolerance on the Ritz residuals (``arpack``: 0 = machine precision).
        seed: seeds the Gaussian start vectors.
        ncv: Lanczos basis size (default: ``lanczos`` max(2k + 10, 4k); ``arpack`` scipy's max(2k + 1, 20)).
        maxiter: ``lanczos``: at most maxiter·ncv solver HVPs (default 20); ``arpack``: restart limit.
        solver: ``lanczos`` (thick restart, certificates free) or ``arpack`` (the previous path).
        check_steps: Lanczos steps of the completeness check on the deflated operator (``lanczos``; 0: none).
        start: the Lanczos start vector (P,) (``lanczos``; default: seeded Gaussian). The completeness
            check always starts from a fresh seeded Gaussian vector.

    Raises:
        ProbeError: k is not below the number of parameters.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not 1 <= k < op.size:
        raise ProbeError(f"asked for {k} eigenpairs of a Hessian with {op.size} parameters",
                         fix=f"choose k between 1 and {op.size - 1}")
    if solver == "arpack":
        return _arpack(op, k, which=which, tol=tol, seed=seed, ncv=ncv, maxiter=maxiter)
    return _lanczos(op, k, which=which, tol=tol, seed=seed, ncv=ncv, maxiter=maxiter, check_steps=check_steps,
                    start=start)


def _lanczos(op: HessianOperator, k: int, *, which: str, tol: float, seed: int, ncv: int | None,
             maxiter: int | None, check_steps: int, start: torch.Tensor | None) -> EigenPairs:
    start_hvps, start_time = op.hvps, time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    dev = op.device
    first_start = torch.randn(op.size, generator=gen, dtype=torch.float64)
    # the operator check's products (random unit vectors u, v with H·u, H·v) start the solver and
    # the first completeness check, so that they cost no HVP of their own
    known = list(getattr(op, "checked_products", ())) if start is None else []
    first_product = None
    if start is not None:
        first_start = start.to(torch.float64).reshape(-1).cpu()
    elif known:
        first_start, first_product = known.pop(0)
    ncv = min(max(ncv if ncv is not None else max(2 * k + 10, 4 * k), k + 2), op.size)
    budget = (maxiter if maxiter is not None else 20) * ncv
    tol = max(tol, 1e-14)
    first = thick_restart_lanczos(op.matvec, op.size, k, which=which, tol=tol, ncv=ncv, max_hvps=budget,
                                  start=first_start.to(dev),
                                  start_product=None if first_product is None else first_product.to(dev))
    values, vectors, residuals = first.values[:k], first.vectors[:k], first.residuals[:k]
    converged, solver_hvps, rounds = first.converged, first.hvps, []
    check_hvps = 0
    for _ in range(3):  # completeness: does H, deflated by the found vectors, have anything beyond λ_k?
        if not check_steps or len(values) < k or k + len(vectors) >= op.size:
            break
        check_start, check_product = torch.randn(op.size, generator=gen, dtype=torch.float64).to(dev), None
        if known and not rounds:  # H·(u − Yᵀc), c = Y u, from H·u and the Lanczos relation H Yᵀ = Yᵀ Θ + tails
            u, hu = (t.to(dev, torch.float64) for t in known.pop(0))
            c = vectors @ u
            check_start = u - c @ vectors
            check_product = hu - (c * values) @ vectors - c @ first.tails(k)
        probe = thick_restart_lanczos(op.matvec, op.size, 1, which=which, tol=tol, ncv=check_steps,
                                      max_hvps=check_steps - (check_product is not None), locked=vectors,
                                      start=check_start, start_product=check_product)
        check_hvps += probe.hvps
        top, last = float(probe.values[0]), float(values[-1])
        missed = _beats(top, last, which)
        rounds.append({"deflated_top": top, "missed": missed, "hvps": probe.hvps})
        if not missed:
            break
        # a missed eigenvalue: search the deflated operator from the check's best vector, and merge
        more = thick_restart_lanczos(op.matvec, op.size, k, which=which, tol=tol, ncv=ncv, max_hvps=budget,
                                     start=probe.vectors[0], locked=vectors)
        solver_hvps += more.hvps
        converged = converged and more.converged
        # the deflated residuals miss Lᵀ L H y = Lᵀ Rᵀ y (R: the locked residuals): add its bound
        extra = float(residuals.norm())
        values = torch.cat([values, more.values[:k]])
        vectors = torch.cat([vectors, more.vectors[:k]])
        residuals = torch.cat([residuals, more.residuals[:k] + extra])
        order = _order(values, which)[:k]
        values, vectors, residuals = values[order], vectors[order], residuals[order]
    complete = bool(rounds) and not rounds[-1]["missed"]
    solver_hvps = op.hvps - start_hvps
    vals = values.cpu().numpy()
    if len(rounds) > 1:  # merged deflated runs: certify each pair explicitly (rare)
        rel = certify(op, vals, vectors.to("cpu", torch.float64))
        consistency = None
    else:
        # one product checks that the operator agrees with the relation (float32 rounding, a
        # non-deterministic model): a random combination y = Σ c_i v_i must give
        # H y − Σ c_i λ_i v_i = Σ c_i (predicted residual_i); the discrepancy is added to every residual.
        c = torch.randn(len(vals), generator=gen, dtype=torch.float64).to(vectors.device)
        c /= c.norm()
        y = c @ vectors
        seen = op.matvec(y).to(vectors.device, torch.float64) - (c * values) @ vectors
        consistency = float((seen - c @ first.tails(k)).norm())
        residuals = residuals + consistency
        rel = np.array([float(r) / abs(v) if v != 0 else math.inf for r, v in zip(residuals.cpu().numpy(), vals)])
    if rounds and not complete:
        rel = np.full_like(rel, math.inf)  # a missed eigenvalue may remain: never certify
    return EigenPairs(
        vals, fix_signs(vectors.to("cpu", torch.float64)), rel, which,
        "thick-restart Lanczos (full reorthogonalisation, certificates from the Lanczos relation)",
        tol, solver_hvps, op.hvps - start_hvps - solver_hvps, time.perf_counter() - start_time, converged,
        extra={"ncv": ncv, "completeness": {"check_steps": check_steps, "complete": complete if rounds else None,
                                            "hvps": check_hvps, "rounds": rounds},
               "operator_consistency": consistency})


def _arpack(op: HessianOperator, k: int, *, which: str, tol: float, seed: int, ncv: int | None,
            maxiter: int | None) -> EigenPairs:
    """The previous path: ``scipy.sparse.linalg.eigsh`` and one explicit certificate HVP per pair."""
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

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
