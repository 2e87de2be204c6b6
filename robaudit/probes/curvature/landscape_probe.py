"""``curvature.landscape``: loss landscapes along the top eigenvectors, a filter-normalised random cut,
the quadratic fit that should recover λ1, and the path to another checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.errors import ProbeError
from robaudit.probes.base import Flag, ProbeContext, ProbeResult, Severity
from robaudit.probes.curvature import landscape
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator, rayleigh
from robaudit.probes.curvature.probe_base import (
    KAMATH,
    CurvatureKnobs,
    CurvatureProbe,
    check_sets,
)
from robaudit.probes.curvature.samples import SampleSet, parse_set
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel


class CurvatureLandscape(CurvatureProbe):
    """Loss landscapes: 1-D along v1 on each curve set, 2-D along (v1, v2), a filter-normalised random
    1-D cut, the quadratic fit along v1 that should recover λ1, and optionally the path to another
    checkpoint (``interpolate_to``).

    Directions come from the Hessian on ``hessian_set``. ``a`` is the Euclidean length of the
    parameter step along the unit eigenvectors; the random direction is filter-normalised (Li et al.),
    so its ``a`` is relative to each filter's norm.
    """

    name = "curvature.landscape"
    version = "1"
    description = ("loss landscape along the top Hessian eigenvectors, a random filter-normalised cut, "
                   "and checkpoint paths")
    standard = False
    summary_keys: ClassVar = (
        ("lambda_1",), ("lambda_2",), ("hessian_set",), ("hvps",), ("radius",), ("radius_source",),
        ("loss_evaluations",), ("loss_at_theta", "*"), ("max_rise_along_v1", "*"), ("residuals", "*"),
        ("checks", "**"), ("quadratic_fit", "**"), ("random_direction", "**"), ("interpolation", "**"),
    )

    @dataclass
    class Config(CurvatureKnobs):
        """Knobs of ``curvature.landscape``."""

        hessian_set: str = field(default="audit", metadata={"unit": "sample-set name"})
        """The set whose Hessian gives v1, v2 (and λ1 for the quadratic check)."""
        curve_sets: list[str] = field(default_factory=lambda: ["audit", "train"], metadata={"unit": "sample-set names"})
        """Sets whose loss is drawn along v1 (``train`` is skipped with a note when the source has no train split)."""
        points: int = field(default=21, metadata={"unit": "points"})
        """Points of each 1-D curve."""
        radius: float | None = field(default=None, metadata={"unit": "parameter-norm units"})
        """Half-width of the 1-D/2-D range along v1, v2 (parameter-norm units); ``None``: where
        ½·|λ1|·a² = ``rise``."""
        rise: float = field(default=1.0, metadata={"unit": "nats"})
        """Loss rise (nats) of the quadratic model at the edge of the automatic range."""
        plane: bool = True
        """Draw the 2-D landscape J(θ + a·v1 + b·v2) on the Hessian set."""
        plane_points: int = field(default=11, metadata={"unit": "points per axis"})
        """Points per axis of the 2-D landscape."""
        random_direction: bool = True
        """Draw the filter-normalised random 1-D cut."""
        random_radius: float = field(default=1.0, metadata={"unit": "filter-normalised units"})
        """Half-width of the random cut, in filter-normalised units."""
        fit_rise: float = field(default=1e-4, metadata={"unit": "nats"})
        """Loss rise (nats) of the quadratic model at the edge of the local fitting range: small enough that
        higher-order terms vanish, large enough to stay above rounding (1e-4 suits float32 and float64)."""
        fit_points: int = field(default=11, metadata={"unit": "points"})
        """Points of the local quadratic fit along v1."""
        fit_tolerance: float = field(default=0.02, metadata={"unit": "relative (fraction of λ1)"})
        """Relative difference between the locally fitted curvature and λ1 above which a disagreement is noted."""
        interpolate_to: str | None = field(default=None, metadata={"unit": "checkpoint path"})
        """Another checkpoint of the same architecture: draw J((1 − t)·θ + t·θ') (Yao Fig 5)."""
        interpolation_range: list[float] = field(default_factory=lambda: [-0.25, 1.25], metadata={"unit": "t (0 = audit model, 1 = the other)"})
        """t range of the checkpoint path (0 = audit model, 1 = the other)."""
        train_samples: int | None = field(default=500, metadata={"unit": "samples"})
        """How many train-split samples the ``train`` curve uses (stratified, seeded); ``None``: all."""

        def __post_init__(self) -> None:
            self._validate_common()
            parse_set(self.hessian_set)
            check_sets(self.curve_sets)
            if self.points < 3 or self.plane_points < 3 or self.fit_points < 3:
                raise ValueError("points, plane_points and fit_points must be at least 3")
            if (self.radius is not None and self.radius <= 0) or self.rise <= 0 or self.fit_rise <= 0:
                raise ValueError("radius, rise and fit_rise must be positive")
            if self.random_radius <= 0 or self.fit_tolerance <= 0:
                raise ValueError("random_radius and fit_tolerance must be positive")
            if len(self.interpolation_range) != 2 or self.interpolation_range[0] >= self.interpolation_range[1]:
                raise ValueError("interpolation_range must be [low, high] with low < high, "
                                 f"got {self.interpolation_range}")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """The operator on ``hessian_set`` (:meth:`operator_cost`) with the top-2 Lanczos cap
        (:func:`~robaudit.probes.curvature.topk_probe.lanczos_hvp_estimate` with three bases: its tolerance
        1e-6 typically takes restarts; typical, not a bound) and, with
        ``random_direction``, one Rayleigh-quotient HVP; then loss forwards: ``points`` per curve
        set along v1 (and along the random direction, and along the checkpoint path with
        ``interpolate_to``), ``fit_points`` and, with ``plane``, ``plane_points``² on the Hessian
        set. A train set holds at most ``train_samples``."""
        from robaudit.probes.curvature.topk_probe import lanczos_hvp_estimate

        sizes = [cls.set_size(spec, n_samples, config.train_samples) for spec in [config.hessian_set, *config.curve_sets]]
        unknown = next((s for s in sizes if isinstance(s, Unknown)), None)
        if unknown is not None:
            return unknown
        n_h, curves = sizes[0], sum(sizes[1:])
        matvecs = lanczos_hvp_estimate(2, None, 5, bases=3) + (1 if config.random_direction else 0)
        lines = config.points * (1 + int(config.random_direction) + int(bool(config.interpolate_to)))
        grid = config.fit_points + (config.plane_points ** 2 if config.plane else 0)
        return cls.operator_cost(n_h, matvecs, config.check_operator) + Cost(forward=lines * curves + grid * n_h)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        flags: list[Flag] = []
        notes: list[str] = [KAMATH]
        (hessian_samples,) = self._sets(ctx, [cfg.hessian_set])
        op = self._operator(ctx, hessian_samples)
        checks = self._checks(ctx, op, hessian_samples.name, flags)
        pairs = topk(op, min(2, op.size - 1), which="LM", tol=1e-6, seed=ctx.seed)
        if pairs.k == 0:
            raise ProbeError("the Lanczos solver found no eigenpair for the landscape directions",
                             fix="check the operator (curvature.topk reports its checks)")
        lam1 = float(pairs.values[0])
        v1 = pairs.vectors[0]
        surface = landscape.LossSurface(op, ctx.progress)

        curve_sets = self._curve_sets(ctx, cfg.curve_sets, hessian_samples, notes)
        radius = cfg.radius if cfg.radius is not None else landscape.auto_radius(lam1, cfg.rise)
        alphas = np.linspace(-radius, radius, cfg.points)
        lines = {s.name: {"alphas": alphas.tolist(), "losses": surface.line(s, v1, alphas, f"v1 on {s.name}")}
                 for s in curve_sets}

        fit_radius = landscape.auto_radius(lam1, cfg.fit_rise)
        fit_alphas = np.linspace(-fit_radius, fit_radius, cfg.fit_points)
        fit_losses = surface.line(hessian_samples, v1, fit_alphas, "quadratic fit")
        fit = landscape.quadratic_fit(fit_alphas, np.asarray(fit_losses))
        rel = abs(fit.curvature - lam1) / abs(lam1) if lam1 else math.inf
        quad = {"curvature": fit.curvature, "lambda_1": lam1, "relative_difference": rel,
                "agrees": rel <= cfg.fit_tolerance, "radius": fit.radius, "rms_residual": fit.rms_residual,
                "slope": fit.slope, "intercept": fit.intercept,
                "gradient_along_v1": float(op.gradient().double().cpu() @ v1),
                "points": fit.points}
        if rel > cfg.fit_tolerance:
            notes.append(f"The quadratic fit along v1 gives curvature {fit.curvature:.4g}, {100 * rel:.1f} % away from "
                         f"λ1 = {lam1:.4g}: the loss is not quadratic on the fitting range (±{fit.radius:.3g}), e.g. "
                         "because ReLU activation patterns change or higher-order terms dominate there.")
            flags.append(Flag("landscape_quadratic_mismatch", Severity.INFO,
                              f"fitted curvature along v1 {fit.curvature:.4g} differs from λ1 = {lam1:.4g} by "
                              f"{100 * rel:.1f} %", self.name))

        hessian_line = lines.get(hessian_samples.name)
        if hessian_line is not None:
            wide = landscape.quadratic_fit(alphas, np.asarray(hessian_line["losses"]))
            quad["plot_range"] = {"curvature": wide.curvature, "radius": wide.radius, "rms_residual": wide.rms_residual,
                                  "relative_difference": abs(wide.curvature - lam1) / abs(lam1) if lam1 else None}
        artifacts: dict[str, Any] = {"lines": lines, "fit": {"alphas": fit_alphas.tolist(), "losses": fit_losses}}
        summary: dict[str, Any] = {
            "lambda_1": lam1, "lambda_2": float(pairs.values[1]) if pairs.k > 1 else None,
            "residuals": [float(r) for r in pairs.residuals], "hessian_set": hessian_samples.name,
            "radius": radius,
            "radius_source": "knob" if cfg.radius is not None else f"½·|λ1|·a² = {cfg.rise:g} nats",
            "quadratic_fit": quad, "checks": checks,
            "loss_at_theta": {s.name: lines[s.name]["losses"][cfg.points // 2] for s in curve_sets},
            "max_rise_along_v1": {s.name: max(lines[s.name]["losses"]) - lines[s.name]["losses"][cfg.points // 2]
                                  for s in curve_sets},
        }
        if cfg.plane and pairs.k > 1:
            grid = np.linspace(-radius, radius, cfg.plane_points)
            artifacts["plane"] = {"alphas": grid.tolist(), "betas": grid.tolist(), "set": hessian_samples.name,
                                  "losses": surface.plane(hessian_samples, v1, pairs.vectors[1], grid, grid)}
        if cfg.random_direction:
            gen = torch.Generator().manual_seed(ctx.seed)
            d = landscape.filter_normalised_direction(op, gen)
            r_alphas = np.linspace(-cfg.random_radius, cfg.random_radius, cfg.points)
            artifacts["random"] = {s.name: {"alphas": r_alphas.tolist(),
                                            "losses": surface.line(s, d, r_alphas, f"random cut on {s.name}")}
                                   for s in curve_sets}
            curv = rayleigh(op, d)
            summary["random_direction"] = {
                "curvature": curv, "norm": float(d.double().norm()), "lambda_1_over_curvature":
                    lam1 / curv if curv else None,
                "method": "filter-normalised Gaussian (Li et al. 2018); 1-D parameters not perturbed",
            }
        if cfg.interpolate_to:
            artifacts["interpolation"], summary["interpolation"] = self._interpolate(ctx, surface, op, curve_sets)
        summary["hvps"] = op.hvps
        summary["loss_evaluations"] = surface.evaluations
        notes.append(self._operator_note(hessian_samples.name, op, f"top-2 for the directions, {surface.evaluations} "
                                                                   "loss evaluations"))
        op.release()
        return ProbeResult(summary=summary, flags=flags, artifacts=artifacts, notes=notes)

    def _curve_sets(self, ctx: ProbeContext, specs: list[str], hessian_samples: SampleSet,
                    notes: list[str]) -> list[SampleSet]:
        out = []
        for spec in specs:
            if spec == hessian_samples.name:
                out.append(hessian_samples)
                continue
            try:
                out.extend(self._sets(ctx, [spec]))
            except ProbeError as exc:
                notes.append(f"landscape on set '{spec}' skipped: {exc.message}")
        return out

    def _interpolate(self, ctx: ProbeContext, surface: landscape.LossSurface, op: HessianOperator,
                     curve_sets: list[SampleSet]) -> tuple[dict[str, Any], dict[str, Any]]:
        from robaudit.probes.curvature.checkpoints import load_other

        cfg = self.config
        other, info = load_other(ctx, str(cfg.interpolate_to))
        ts = np.linspace(cfg.interpolation_range[0], cfg.interpolation_range[1], cfg.points)
        losses: dict[str, list[float]] = {s.name: [] for s in curve_sets}
        for t in ctx.progress(ts, "curvature: checkpoint path", len(ts)):
            params, buffers = landscape.interpolation_state(op, other, float(t))
            for s in curve_sets:
                losses[s.name].append(surface.loss(s, params, buffers))
        at_other = landscape.interpolation_state(op, other, 1.0)
        ends = {s.name: {"audit_model": surface.loss(s), "other": surface.loss(s, *at_other)} for s in curve_sets}
        return ({"t": ts.tolist(), "losses": losses},
                {**info, "t_range": list(cfg.interpolation_range), "endpoint_losses": ends})
