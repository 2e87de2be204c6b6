"""``curvature.topk``: certified top-k Hessian eigenpairs by restarted Lanczos, per sample set (standard)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.probes.base import Column, Flag, ProbeContext, ProbeResult
from robaudit.probes.curvature.eigen import SOLVERS, WHICH, EigenPairs, topk
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.per_sample import directional_curvature
from robaudit.probes.curvature.probe_base import (
    KAMATH,
    CurvatureProbe,
    EigenKnobs,
    certificate_flag,
    check_sets,
    negative_flag,
    put,
)
from robaudit.probes.curvature.samples import SampleSet
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel


def lanczos_hvp_estimate(k: int, ncv: int | None, check_steps: int, bases: int = 1) -> int:
    """Operator products of :func:`~robaudit.probes.curvature.eigen.topk` (``lanczos``) for k pairs
    that converge within the first Krylov basis, the typical case: one basis of ``ncv`` products
    (max(2k + 10, 4k) by default), one completeness check of ``check_steps`` products, and k
    certificate products. Measured: top-20 took 78–80 products on a clustered spectrum and 64 + 20 on
    the demo CNN (``benchmarks/curvature_topk_hvps.py``), against 105 here. A spectrum that needs
    restarts costs more, up to ``maxiter`` bases per solve: that cap (20·ncv by default) is 10–100×
    what the solver uses, so it is not what the estimate reports. Independent of the parameter
    count P, which only lowers it (ncv ≤ P). ``bases``: Krylov bases to count, for a caller whose
    tolerance typically needs restarts."""
    basis = max(ncv if ncv is not None else max(2 * k + 10, 4 * k), k + 2)
    return bases * basis + check_steps + k


class CurvatureTopK(CurvatureProbe):
    """Top-k Hessian eigenpairs by thick-restart Lanczos, with residual certificates, per sample set.

    Summary per set (``sets › <base> › full | b_h_<B_H>``): signed eigenvalues (ordered by |λ| with
    ``which = LM``), relative residuals ‖Hv − λv‖/|λ|, negative eigenvalues, HVP counts, ‖∇_θ J‖,
    J, and the operator checks. ``lambda_1`` is λ1 of the first set. Per sample (audit set,
    full): ``v1_curvature`` = v1ᵀ∇²_θ CE_i v1 (its mean is λ1).
    """

    name = "curvature.topk"
    version = "4"
    description = ("top-k eigenvalues of the parameter Hessian (restarted Lanczos, residual certificates), "
                   "per sample set")
    standard = True
    higher_is_better: ClassVar = {("lambda_1",): False}
    summary_keys: ClassVar = (("lambda_1",), ("lambda_1_set",), ("k",), ("which",), ("preset",), ("operator", "**"),
                              ("sets", "**"))
    indicator_keys: ClassVar = (("sets", "*", "*", "eigenvalues", "0"),)  # λ1 of every Hessian set
    columns: ClassVar = {
        "v1_curvature": Column("curvature along v1, v1ᵀ∇²_θ CE_i v1", role="indicator",
                               unit="nats per unit² parameter step", scale_invariant=False),
    }

    @dataclass
    class Config(EigenKnobs):
        """Knobs of ``curvature.topk``."""

        which: str = field(default="LM", metadata={"unit": "choice"})
        """``LM``: largest magnitude, signed (what power iteration finds); ``LA``: largest algebraic."""
        tol: float = field(default=9e-4, metadata={"unit": "relative residual"})
        """Relative tolerance on the Ritz residuals ‖Hv − λv‖/|λ| (below ``certify_tol``, leaving room for
        the consistency term). The eigenvalue error is about residual²·|λ|/gap: 9e-4 gave 1.6e-6
        relative on a clustered top-20 (docs/curvature.md)."""
        certify_tol: float = field(default=1e-3, metadata={"unit": "relative residual"})
        """Raise ``eigenpairs_not_certified`` when a relative residual exceeds this."""
        solver: str = field(default="lanczos", metadata={"unit": "choice"})
        """``lanczos``: thick-restart Lanczos, certificates from the Lanczos relation; ``arpack``: the
        previous path (scipy's eigsh, one certificate HVP per pair)."""
        ncv: int | None = field(default=None, metadata={"unit": "Lanczos vectors"})
        """Lanczos basis size (``None``: max(2k + 10, 4k) for ``lanczos``, scipy's max(2k + 1, 20) for ``arpack``)."""
        maxiter: int | None = field(default=None, metadata={"unit": "iterations"})
        """``lanczos``: at most maxiter·ncv solver HVPs (``None``: 20); ``arpack``: its restart limit."""
        check_steps: int = field(default=5, metadata={"unit": "Lanczos steps"})
        """Lanczos steps of the completeness check on H deflated by the found pairs (0: off)."""
        per_sample: bool = True
        """Compute ``v1_curvature`` per audit sample (needs forward-mode AD; skipped with a note if unsupported)."""

        def __post_init__(self) -> None:
            self._validate_common()
            self._apply_preset()
            if self.k < 1:
                raise ValueError(f"k must be at least 1, got {self.k}")
            check_sets(self.sets)
            if self.solver not in SOLVERS:
                raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
            if self.check_steps < 0:
                raise ValueError(f"check_steps must be ≥ 0, got {self.check_steps}")
            if self.which not in WHICH:
                raise ValueError(f"which must be one of {WHICH}, got {self.which!r}")
            if self.tol < 0 or self.certify_tol <= 0:
                raise ValueError("tol must be ≥ 0 and certify_tol > 0")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """Per set (:meth:`sets_cost`): the solver's typical HVPs (:func:`lanczos_hvp_estimate`;
        ARPACK's work scales with the parameter count, so unknown), and with ``per_sample`` the
        per-sample curvature along v1 on the audit set (one forward and three nested backward passes
        per sample, counted as two HVPs). Not counted: restarts on a hard spectrum, and with
        ``dtype = auto`` the float64 redo of a set whose float32 pairs fail the certificate (it
        doubles that set's cost; the results record when it ran)."""
        if config.solver == "arpack":
            return Unknown("ARPACK's iteration cap scales with the parameter count")
        cost = cls.sets_cost(config, n_samples, lanczos_hvp_estimate(config.k, config.ncv, config.check_steps))
        if isinstance(cost, Unknown):
            return cost
        if config.per_sample and any(spec in ("audit", "audit:full") for spec in config.sets):
            cost = cost + Cost(hvp=2 * n_samples)
        return cost

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        flags: list[Flag] = []
        notes: list[str] = [KAMATH]
        spectra: dict[str, Any] = {}
        artifacts: dict[str, Any] = {"sets": {}}
        per_sample: dict[str, np.ndarray] = {}
        lambda_1: float | None = None
        operator_info: dict[str, Any] | None = None
        for samples in self._sets(ctx, list(cfg.sets)):
            op = self._operator(ctx, samples)
            checks = self._checks(ctx, op, samples.name, flags)
            pairs = self._solve(op, ctx)
            escalated = None
            if cfg.dtype == "auto" and not pairs.summary(cfg.certify_tol)["certified"]:
                # float32 HVPs lose accuracy where the loss saturates (confident single samples): redo in float64
                escalated = {"from": "float32", "max_residual": pairs.summary(cfg.certify_tol)["max_residual"],
                             "hvps": op.hvps}
                notes.append(self._operator_note(samples.name, op, "float32 eigenpairs failed the certificate"))
                op.release()
                op = self._operator(ctx, samples, "float64")
                checks = self._checks(ctx, op, samples.name, flags)
                pairs = self._solve(op, ctx)
            entry = pairs.summary(cfg.certify_tol)
            entry["dtype"] = str(op.dtype).replace("torch.", "")
            entry["escalated"] = escalated
            entry.update(n=len(samples), b_h=samples.b_h, loss=op.loss(), gradient_norm=float(op.gradient().norm()),
                         checks=checks)
            if samples.name in ("audit", "audit:full") and cfg.per_sample and pairs.k:
                column = self._per_sample(op, pairs, samples, notes)
                if column is not None:
                    per_sample["v1_curvature"] = column.numpy()
                    entry["v1_curvature_mean"] = float(column.mean())
            put(spectra, samples.name, entry)
            put(artifacts["sets"], samples.name, samples.describe())
            for flag in (negative_flag(self.name, samples.name, pairs),
                         certificate_flag(self.name, samples.name, pairs, cfg.certify_tol)):
                if flag is not None:
                    flags.append(flag)
            notes.append(self._operator_note(samples.name, op, f"top-{pairs.k} in {pairs.hvps_solver} solver + "
                                                               f"{pairs.hvps_certificate} certificate HVPs, "
                                                               f"{pairs.seconds:.2f} s"))
            if operator_info is None:
                lambda_1 = float(pairs.values[0]) if pairs.k else None
                operator_info = op.describe()
            op.release()
        return ProbeResult(
            summary={"lambda_1": lambda_1, "lambda_1_set": cfg.sets[0], "k": cfg.k, "which": cfg.which,
                     "preset": cfg.preset, "operator": operator_info, "sets": spectra},
            per_sample=per_sample, flags=flags, artifacts=artifacts, notes=notes,
        )

    def _solve(self, op: HessianOperator, ctx: ProbeContext) -> EigenPairs:
        cfg = self.config
        return topk(op, min(int(cfg.k), op.size - 1), which=cfg.which, tol=cfg.tol, seed=ctx.seed, ncv=cfg.ncv,
                    maxiter=cfg.maxiter, solver=cfg.solver, check_steps=cfg.check_steps)

    @staticmethod
    def _per_sample(op: HessianOperator, pairs: EigenPairs, samples: SampleSet,
                    notes: list[str]) -> torch.Tensor | None:
        try:
            return directional_curvature(op, pairs.vectors[0], samples)
        except RuntimeError as exc:  # an op without a forward-mode derivative
            notes.append(f"per-sample curvature along v1 not computed: {str(exc).splitlines()[0]}")
            return None
