"""``curvature.density``: the eigenvalue density of H by stochastic Lanczos quadrature, per sample set."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from robaudit.probes.base import Flag, ProbeContext, ProbeResult
from robaudit.probes.curvature import eigenthings
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel
from robaudit.probes.curvature.probe_base import (
    CurvatureKnobs,
    CurvatureProbe,
    check_sets,
    put,
)


class CurvatureDensity(CurvatureProbe):
    """Eigenvalue density of H by stochastic Lanczos quadrature with full reorthogonalisation.

    Summary per set: the extreme Ritz values, the share of spectral weight on negative Ritz values,
    the SLQ trace estimate, runs, steps, bandwidth and HVPs. Artifacts: the smoothed density on a
    grid and the raw nodes and weights (for redrawing).
    """

    name = "curvature.density"
    version = "1"
    description = "eigenvalue density of the parameter Hessian by stochastic Lanczos quadrature"
    standard = False
    summary_keys: ClassVar = (("method",), ("sets", "**"))

    @dataclass
    class Config(CurvatureKnobs):
        """Knobs of ``curvature.density``."""

        runs: int = field(default=2, metadata={"unit": "runs"})
        """Independent Rademacher start vectors."""
        steps: int = field(default=40, metadata={"unit": "Lanczos steps"})
        """Lanczos steps per run (capped at the number of parameters)."""
        grid_points: int = field(default=200, metadata={"unit": "points"})
        """Points of the stored density curve."""
        sigma: float | None = field(default=None, metadata={"unit": "eigenvalue units (nats per parameter unit²)"})
        """Gaussian bandwidth in eigenvalue units; ``None``: (largest − smallest Ritz value) / steps."""
        sets: list[str] = field(default_factory=lambda: ["audit"], metadata={"unit": "sample-set names"})
        """Sample sets (``audit``, ``train``, ``NAME:B_H``)."""

        def __post_init__(self) -> None:
            self._validate_common()
            if self.runs < 1 or self.steps < 2 or self.grid_points < 10:
                raise ValueError("runs ≥ 1, steps ≥ 2 and grid_points ≥ 10 are required")
            if self.sigma is not None and self.sigma <= 0:
                raise ValueError(f"sigma must be positive, got {self.sigma}")
            check_sets(self.sets)

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """Per set (:meth:`sets_cost`): ``runs`` × ``steps`` Lanczos HVPs (stochastic Lanczos
        quadrature). An upper bound: a run stops early when its Krylov space is exhausted."""
        return cls.sets_cost(config, n_samples, config.runs * config.steps)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        flags: list[Flag] = []
        notes: list[str] = []
        out: dict[str, Any] = {}
        curves: dict[str, Any] = {}
        for samples in self._sets(ctx, list(cfg.sets)):
            op = self._operator(ctx, samples)
            checks = self._checks(ctx, op, samples.name, flags)
            dens = eigenthings.spectral_density(op, runs=cfg.runs, steps=cfg.steps, grid_points=cfg.grid_points,
                                                sigma=cfg.sigma, seed=ctx.seed)
            valid = ~np.isnan(dens.nodes)
            negative_weight = float(np.sum(np.where(valid & (dens.nodes < 0), dens.weights, 0.0)) / dens.runs)
            put(out, samples.name, {
                "ritz_max": float(np.nanmax(dens.nodes)), "ritz_min": float(np.nanmin(dens.nodes)),
                "negative_weight": negative_weight, "trace_slq": dens.trace, "runs": dens.runs, "steps": dens.steps,
                "sigma": dens.sigma, "hvps": dens.hvps, "n": len(samples), "b_h": samples.b_h, "checks": checks,
            })
            put(curves, samples.name, {
                "grid": dens.grid.tolist(), "density": dens.density.tolist(),
                "nodes": [[float(v) for v in row if not math.isnan(v)] for row in dens.nodes],
                "weights": [[float(w) for w, v in zip(wr, vr) if not math.isnan(v)]
                            for wr, vr in zip(dens.weights, dens.nodes)],
            })
            notes.append(self._operator_note(samples.name, op, f"SLQ with {dens.runs} runs × {dens.steps} steps"))
            op.release()
        return ProbeResult(summary={"sets": out, "method": "stochastic Lanczos quadrature, full reorthogonalisation"},
                           flags=flags, artifacts={"density": curves}, notes=notes)
