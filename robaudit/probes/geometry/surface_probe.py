"""``geometry.surfaces``: decision/loss surfaces and Jacobian heat-maps of a few samples, for the report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.errors import ProbeError
from robaudit.probes.base import ATTACK_OUTCOMES, Probe, ProbeContext, ProbeResult, Requirement
from robaudit.probes.geometry import common
from robaudit.probes.geometry.groups import SampleGroups, sample_groups
from robaudit.probes.geometry.grids import downsample, linf_extent, plane_grid
from robaudit.probes.geometry.jacobian import decision_gradient, loss_gradient
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel

DIRECTIONS = ("sign_gradient", "pgd")


def evenly_spaced(pool: np.ndarray, key: np.ndarray, count: int) -> list[int]:
    """``count`` indices from ``pool`` at evenly spaced ranks of ``key`` (lowest to highest)."""
    if count <= 0 or len(pool) == 0:
        return []
    order = pool[np.argsort(key[pool], kind="stable")]
    picks = np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int))
    return [int(order[p]) for p in picks]


def choose_samples(groups: SampleGroups, margins: np.ndarray, count: int) -> list[int]:
    """Samples to draw: half non-robust and half robust when attacks ran, else a spread of margins.

    Within a group, samples sit at evenly spaced ranks of the linearised L∞ margin d/‖∇x d‖₁,
    so the pictures span samples close to and far from the boundary. Only correctly classified
    samples are chosen (all samples when none is correct).
    """
    key = np.nan_to_num(margins, nan=np.inf)
    if groups.has_robustness:
        weak = np.flatnonzero(groups.masks["non_robust"])
        strong = np.flatnonzero(groups.masks["robust"])
        n_weak = min(len(weak), max(count - len(strong), (count + 1) // 2))
        chosen = evenly_spaced(weak, key, n_weak) + evenly_spaced(strong, key, count - n_weak)
        if chosen:
            return chosen
    pool = np.flatnonzero(groups.masks["correct"])
    if len(pool) == 0:
        pool = np.arange(len(margins))
    return evenly_spaced(pool, key, count)


def pgd_perturbation(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """L∞ PGD on the CE loss from the clean point (no random start), step 2.5ε/steps, kept in [0, 1]."""
    alpha = 2.5 * eps / steps
    delta = torch.zeros_like(x)
    for _ in range(steps):
        grad = loss_gradient(model, x + delta, y)
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return delta


class DecisionSurfaces(Probe):
    """Decision surfaces d(x + a·u + b·v) and CE-loss surfaces of a few samples, and their Jacobian heat-maps.

    u is the adversarial direction scaled to the audit's ε (``sign_gradient``: ε·sign(∇x J),
    the FGSM step; ``pgd``: a short L∞ PGD perturbation computed here), v a random ±1 direction
    rescaled to the same L2 norm; a, b run over [−extent, extent] so a = 1 is the full
    adversarial step. The artifacts hold the grids, ‖a·u + b·v‖∞/ε on the grid (the ε-ball's
    trace is its contour at 1), and ∇x d with the image, average-pooled to at most
    ``heatmap_max_side`` pixels a side. No per-sample columns.
    """

    name = "geometry.surfaces"
    version = "2"  # 2: the robust split reads the attack-outcome table (distance attacks count at any ε)
    description = ("decision- and loss-surface grids along adversarial vs random directions, Jacobian heat-maps "
                   "(report pictures)")
    needs_grad = True
    standard = True
    requires = (Requirement(ATTACK_OUTCOMES, optional=True),  # the robust / non-robust split
                Requirement("geometry.gradients", optional=True))  # linear margins pick the surface samples
    higher_is_better: ClassVar = {}
    summary_keys: ClassVar = (
        ("direction",), ("extent",), ("resolution",), ("clip",), ("sample_ids", "*"), ("groups", "*"),
        ("boundary_inside_ball", "*"), ("epsilon",), ("epsilon_source",), ("robustness_source", "**"),
    )

    @dataclass
    class Config:
        """Knobs of ``geometry.surfaces``."""

        epsilon: float | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Audit L∞ budget ε in pixel units (scale of u and of the ε-ball); default: the threat model's L∞ reference."""
        samples: int = field(default=4, metadata={"unit": "samples"})
        """Samples drawn (chosen automatically unless sample_ids is given)."""
        sample_ids: list[str] = field(default_factory=list, metadata={"unit": "sample ids"})
        """Explicit sample ids to draw (e.g. ["test:12"]); overrides samples."""
        direction: str = field(default="sign_gradient", metadata={"unit": "choice"})
        """Adversarial axis u: sign_gradient (FGSM) or pgd."""
        pgd_steps: int = field(default=10, metadata={"unit": "steps"})
        """Steps of the PGD direction."""
        extent: float = field(default=3.0, metadata={"unit": "adversarial steps (multiples of)"})
        """Grid half-width in multiples of the adversarial step (a, b ∈ [−extent, extent])."""
        resolution: int = field(default=41, metadata={"unit": "grid points per axis"})
        """Grid points per axis."""
        precision: str = field(default="float32", metadata={"unit": "choice"})
        """Working precision of the model copy."""
        clip: bool = False
        """Clamp grid points to [0, 1] as attacks do (default: the unclipped geometry of d, as Yu draw it)."""
        heatmap_max_side: int = field(default=64, metadata={"unit": "grid points"})
        """Largest side of the stored heat-maps (average-pooled above it)."""

        def __post_init__(self) -> None:
            if self.epsilon is not None and not self.epsilon > 0:
                raise ValueError(f"epsilon must be positive, got {self.epsilon}")
            if self.samples < 1:
                raise ValueError(f"samples must be at least 1, got {self.samples}")
            if self.direction not in DIRECTIONS:
                raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
            if self.pgd_steps < 1:
                raise ValueError(f"pgd_steps must be at least 1, got {self.pgd_steps}")
            if not self.extent > 0:
                raise ValueError(f"extent must be positive, got {self.extent}")
            if self.resolution < 3:
                raise ValueError(f"resolution must be at least 3, got {self.resolution}")
            if self.heatmap_max_side < 4:
                raise ValueError(f"heatmap_max_side must be at least 4, got {self.heatmap_max_side}")
            common.check_precision(self.precision)

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """For each drawn sample (``len(sample_ids)`` or ``min(samples, N)``): d(x) and ∇x d (one
        forward+backward), the adversarial axis (one forward+backward, ``pgd_steps`` for ``pgd``) and
        the ``resolution``² grid forwards. Choosing the samples costs one forward+backward per audit
        sample unless ``sample_ids`` is given or ``geometry.gradients`` is selected (its margins
        are reused). Exact."""
        drawn = len(config.sample_ids) if config.sample_ids else min(config.samples, n_samples)
        axis = config.pgd_steps if config.direction == "pgd" else 1
        per_drawn = Cost(backward=1 + axis, forward=config.resolution ** 2)
        choice = Cost() if config.sample_ids or "geometry.gradients" in selected else Cost(backward=n_samples)
        return choice + drawn * per_drawn

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps, eps_source = common.resolve_epsilon(cfg.epsilon, ctx.threat_model)
        model = common.working_model(ctx.model, cfg.precision)
        groups = sample_groups(ctx, eps)
        chosen = self._choose(ctx, model, groups)
        x = ctx.data.x[chosen].to(ctx.device)
        y = ctx.data.y[chosen].to(ctx.device)
        d, dgrad, logits = decision_gradient(model, x, y)
        xd = x.to(dgrad.dtype)
        if cfg.direction == "pgd":
            u = pgd_perturbation(model, xd, y, eps, cfg.pgd_steps)
        else:
            u = eps * loss_gradient(model, xd, y).sign()
        noise = (torch.randint(0, 2, u.shape, generator=ctx.generator) * 2 - 1).to(u.dtype).to(u.device)
        u_l2 = u.reshape(len(u), -1).norm(dim=1)
        v = noise * (u_l2 / noise.reshape(len(u), -1).norm(dim=1)).reshape(-1, *([1] * (u.dim() - 1)))
        coords = torch.linspace(-cfg.extent, cfg.extent, cfg.resolution, dtype=torch.float64)
        dim = int(np.prod(x.shape[1:]))
        dec, loss = plane_grid(model, xd, y, u, v, coords, common.forward_batch(ctx.batch_size, dim), cfg.clip)
        ball = linf_extent(u, v, coords) / eps

        surfaces, heatmaps = [], []
        inside = []
        for i, row in enumerate(chosen):
            in_ball = ball[i] <= 1 + 1e-9
            min_in_ball = float(dec[i][in_ball].min()) if in_ball.any() else None
            inside.append(bool(min_in_ball is not None and min_in_ball <= 0))
            surfaces.append({
                "sample_id": ctx.data.ids[row], "label": int(y[i]), "pred": int(logits[i].argmax()),
                "group": _group_of(groups, row), "decision_at_x": float(d[i]),
                "coords": coords.tolist(), "decision": _sig(dec[i]), "loss": _sig(loss[i]),
                "linf_over_epsilon": _sig(ball[i]),
                "u_linf": float(u[i].abs().max()), "u_l2": float(u_l2[i]),
                "v_linf": float(v[i].abs().max()), "v_l2": float(v[i].reshape(-1).norm()),
                "min_decision_in_ball": min_in_ball,
            })
            heatmaps.append({
                "sample_id": ctx.data.ids[row], "label": int(y[i]), "shape": list(x.shape[1:]),
                "image": _sig(downsample(x[i].double().cpu(), cfg.heatmap_max_side)),
                "decision_grad": _sig(downsample(dgrad[i].double().cpu(), cfg.heatmap_max_side)),
            })
        summary: dict[str, Any] = {
            "epsilon": eps, "epsilon_source": eps_source, "direction": cfg.direction,
            "extent": cfg.extent, "resolution": cfg.resolution, "clip": cfg.clip,
            "sample_ids": [ctx.data.ids[r] for r in chosen],
            "groups": [_group_of(groups, r) for r in chosen],
            "boundary_inside_ball": inside,
            "robustness_source": groups.robustness_source,
        }
        artifacts = {"epsilon": eps, "direction": cfg.direction, "clip": cfg.clip, "surfaces": surfaces,
                     "heatmaps": heatmaps}
        return ProbeResult(summary=summary, artifacts=artifacts)

    def _choose(self, ctx: ProbeContext, model: torch.nn.Module, groups: SampleGroups) -> list[int]:
        cfg = self.config
        if cfg.sample_ids:
            index = {sid: i for i, sid in enumerate(ctx.data.ids)}
            missing = [s for s in cfg.sample_ids if s not in index]
            if missing:
                raise ProbeError(f"geometry.surfaces: unknown sample ids {missing[:3]}",
                                 fix=f"use ids from the per-sample table, e.g. {ctx.data.ids[0]!r}")
            return [index[s] for s in cfg.sample_ids]
        previous = ctx.previous.get("geometry.gradients")
        if previous is not None and "linear_margin_linf" in previous.per_sample:
            margins = np.asarray(previous.per_sample["linear_margin_linf"], dtype=np.float64)
        else:
            margins = np.full(len(ctx.data), np.nan)
            for rows, x, y in ctx.progress(ctx.data.batches(ctx.batch_size), "surface sample choice",
                                           -(-len(ctx.data) // ctx.batch_size)):
                d, grad, _ = decision_gradient(model, x.to(ctx.device), y.to(ctx.device))
                with np.errstate(divide="ignore", invalid="ignore"):
                    margins[rows] = (d / grad.reshape(len(grad), -1).double().abs().sum(dim=1)).cpu().numpy()
        return choose_samples(groups, margins, cfg.samples)


def _sig(t: torch.Tensor, digits: int = 6) -> list[Any]:
    """Nested lists of ``t`` rounded to ``digits`` significant digits (plot data: keeps results.json small)."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(t.detach().cpu().numpy()).tolist()


def _group_of(groups: SampleGroups, row: int) -> str:
    for name in ("non_robust", "robust", "correct", "incorrect"):
        if name in groups.masks and groups.masks[name][row]:
            return name
    return "all"
