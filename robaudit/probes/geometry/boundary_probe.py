"""``geometry.boundary``: distance to the decision boundary along the gradient vs random directions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.probes.base import ATTACK_OUTCOMES, Column, Flag, Probe, ProbeContext, ProbeResult, Requirement, Severity
from robaudit.probes.geometry import common
from robaudit.probes.geometry.groups import sample_groups
from robaudit.probes.geometry.jacobian import decision_gradient
from robaudit.probes.geometry.line_search import first_crossing
from robaudit.probes.geometry.stats import by_group, grouped_keys, histogram
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel

# Each norm: how to turn ∇d into a unit descent direction, how to draw a random unit direction, and t_max.
NORMS = ("l2", "linf")


def unit_directions(grad: torch.Tensor, norm: str, random: int, generator: torch.Generator) -> torch.Tensor:
    """N×(1+R)×… directions: −∇d normalised in ``norm``, then R random ones of the same norm.

    L2: −∇d/‖∇d‖₂ and Gaussian directions scaled to unit L2 norm. L∞: −sign(∇d) and random
    ±1 vectors (unit L∞ norm; same L2 norm as the sign vector when ∇d has no zero entry).
    """
    n = len(grad)
    flat = grad.reshape(n, -1).double()
    if norm == "l2":
        g = -flat / flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        noise = torch.randn(n, random, flat.shape[1], generator=generator, dtype=torch.float64)
        noise = noise / noise.norm(dim=2, keepdim=True)
    else:
        g = -flat.sign()
        noise = (torch.randint(0, 2, (n, random, flat.shape[1]), generator=generator) * 2 - 1).double()
    dirs = torch.cat([g[:, None].cpu(), noise], dim=1)
    return dirs.reshape(n, 1 + random, *grad.shape[1:])


BATCH_CUT_BYTES = 1 << 30
"""Working set at which the boundary search cuts its batches: fixed, not :func:`robaudit.probes.memory.working_budget`,
because each batch draws its random directions from the probe's generator in turn, so where the batches
are cut decides which directions each sample gets; a device-dependent cut would make the random-direction
columns depend on the device's memory."""


class BoundaryDistance(Probe):
    """Distance from each correctly classified sample to the decision boundary d = 0 (line search).

    Per sample, for the L2 and L∞ geometries: ``<norm>_gradient`` is the distance along the
    descent direction of d (−∇d/‖∇d‖₂, or −sign(∇d) for L∞); ``<norm>_random_median`` and
    ``<norm>_random_min`` are the median and smallest distance over ``random_directions``
    random directions of the same norm (Gaussian, or ±1); ``<norm>_ratio`` = random median /
    gradient distance, how unusual the adversarial direction is. Units: pixel units in that
    norm. NaN: misclassified (d ≤ 0 already) or no crossing up to t_max (√D for L2, 1 for L∞);
    a random median is NaN when more than half of the random directions found no crossing.
    """

    name = "geometry.boundary"
    version = "2"  # 2: the robust split reads the attack-outcome table (distance attacks count at any ε)
    description = ("distance to the decision boundary along the gradient vs random directions "
                   "(L2 and L∞ line search on d)")
    needs_grad = True
    standard = False  # opt-in: line searches cost more than the rest of geometry together
    requires = (Requirement(ATTACK_OUTCOMES, optional=True),)  # the robust / non-robust split
    columns: ClassVar = {
        "l2_gradient": Column("boundary distance along −∇x d (L2)", "indicator", "L2 pixels", True),
        "linf_gradient": Column("boundary distance along −sign ∇x d (L∞)", "indicator", "L∞ pixels", True),
        "l2_random_median": Column("boundary distance along random directions (L2, median)", "other", "L2 pixels",
                                   True),
        "linf_random_median": Column("boundary distance along random ±1 directions (L∞, median)", "other",
                                     "L∞ pixels", True),
        "l2_random_min": Column("boundary distance along random directions (L2, min)", "other", "L2 pixels", True),
        "linf_random_min": Column("boundary distance along random ±1 directions (L∞, min)", "other", "L∞ pixels",
                                  True),
        "l2_ratio": Column("random / gradient boundary distance (L2)", "other", "", True),
        "linf_ratio": Column("random / gradient boundary distance (L∞)", "other", "", True),
    }
    higher_is_better: ClassVar = {
        ("linf_gradient", "correct", "median"): True,
        ("l2_gradient", "correct", "median"): True,
    }
    summary_keys: ClassVar = (
        *grouped_keys(*(f"{norm}_{key}" for norm in ("linf", "l2")
                        for key in ("gradient", "random_min", "random_median", "ratio"))),
        *(("found", norm, key) for norm in ("linf", "l2") for key in ("gradient", "random_median")),
        ("t_max", "*"), ("evaluations_per_direction", "*"), ("linf_gradient_within_epsilon",), ("group_sizes", "*"),
        ("input_dim",), ("precision",), ("random_directions",), ("epsilon",), ("epsilon_source",), ("robustness_source", "**"),
    )

    @dataclass
    class Config(common.GeometryConfig):
        """Knobs of ``geometry.boundary`` (ε: the robust split and the within-ε count)."""

        precision: str = field(default="float32", metadata={"unit": "choice"})
        """Working precision of the model copy (forward passes only)."""
        random_directions: int = field(default=4, metadata={"unit": "directions"})
        """Random directions per sample and norm."""
        search_points: int = field(default=12, metadata={"unit": "points"})
        """Geometric grid points in [t_max·1e-3, t_max] that bracket the crossing."""
        rtol: float = field(default=1e-6, metadata={"unit": "fraction of the distance"})
        """Refine the bracket (Illinois regula falsi) until it is narrower than rtol × the distance."""
        max_refine: int = field(default=40, metadata={"unit": "steps"})
        """Most refinement steps per crossing."""

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.random_directions < 1:
                raise ValueError(f"random_directions must be at least 1, got {self.random_directions}")
            if self.search_points < 2:
                raise ValueError(f"search_points must be at least 2, got {self.search_points}")
            if not 0 < self.rtol < 1:
                raise ValueError(f"rtol must be in (0, 1), got {self.rtol}")
            if self.max_refine < 0:
                raise ValueError(f"max_refine must be non-negative, got {self.max_refine}")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per sample: d(x) and ∇x d (one forward+backward); for each of the two norms one forward
        for d(x) and, along each of the 1 + ``random_directions`` directions, at most
        ``search_points`` grid forwards and ``max_refine`` refinement forwards. An upper bound: the
        grid stops at the first crossing and refinement at ``rtol``."""
        per_norm = 1 + (1 + config.random_directions) * (config.search_points + config.max_refine)
        return n_samples * Cost(backward=1, forward=2 * per_norm)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps, eps_source = common.resolve_epsilon(cfg.epsilon, ctx.threat_model)
        model = common.working_model(ctx.model, cfg.precision)
        n = len(ctx.data)
        dim = int(np.prod(ctx.data.x.shape[1:]))
        t_max = {"l2": math.sqrt(dim), "linf": 1.0}
        r = cfg.random_directions
        cols = {f"{norm}_{kind}": np.full(n, np.nan) for norm in NORMS
                for kind in ("gradient", "random_median", "random_min", "ratio")}
        evals = {norm: 0 for norm in NORMS}
        per_sample_bytes = (1 + r) * dim * common.dtype_bytes(cfg.precision) * 4
        outer = max(ctx.batch_size, common.forward_batch(ctx.batch_size, dim) // (1 + r))
        rows_iter = common.batch_rows(n, outer, per_sample_bytes, BATCH_CUT_BYTES)
        total = common.n_batches(n, outer, per_sample_bytes, BATCH_CUT_BYTES)
        for rows in ctx.progress(rows_iter, "boundary search", total):
            x = ctx.data.x[rows].to(ctx.device)
            y = ctx.data.y[rows].to(ctx.device)
            _, grad, _ = decision_gradient(model, x, y)
            xd = x.to(grad.dtype)
            for norm in NORMS:
                dirs = unit_directions(grad.detach(), norm, r, ctx.generator).to(ctx.device)
                dist_t, n_evals = first_crossing(model, xd, y, dirs, t_max[norm], cfg.search_points, cfg.rtol,
                                                 cfg.max_refine, common.forward_batch(ctx.batch_size, dim))
                evals[norm] = max(evals[norm], n_evals)
                dist = dist_t.numpy()
                rand = dist[:, 1:]
                cols[f"{norm}_gradient"][rows] = dist[:, 0]
                # not found = beyond t_max: the median is finite only when most directions crossed
                med = np.median(np.where(np.isnan(rand), np.inf, rand), axis=1)
                cols[f"{norm}_random_median"][rows] = np.where(np.isfinite(med), med, np.nan)
                with np.errstate(all="ignore"):
                    cols[f"{norm}_random_min"][rows] = np.nanmin(np.where(np.isnan(rand), np.inf, rand), axis=1)
        for norm in NORMS:
            cols[f"{norm}_random_min"][~np.isfinite(cols[f"{norm}_random_min"])] = np.nan
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{norm}_ratio"] = cols[f"{norm}_random_median"] / cols[f"{norm}_gradient"]

        groups = sample_groups(ctx, eps)
        correct = groups.masks["correct"]
        summary: dict[str, Any] = {
            "epsilon": eps, "epsilon_source": eps_source, "precision": cfg.precision,
            "random_directions": r, "t_max": t_max, "input_dim": dim,
            "group_sizes": {g: int(v.sum()) for g, v in groups.masks.items()},
            "robustness_source": groups.robustness_source,
            "found": {
                norm: {"gradient": _fraction(np.isfinite(cols[f"{norm}_gradient"][correct])),
                       "random_median": _fraction(np.isfinite(cols[f"{norm}_random_median"][correct]))}
                for norm in NORMS},
            "evaluations_per_direction": evals,
            "linf_gradient_within_epsilon": _fraction(cols["linf_gradient"][correct] <= eps),
        }
        for key, values in cols.items():
            summary[key] = by_group(values, groups)
        artifacts = {"histograms": {k: histogram(cols[k], groups, cfg.histogram_bins)
                                    for k in ("linf_gradient", "linf_random_median", "l2_gradient", "l2_ratio")}}
        return ProbeResult(summary=summary, per_sample=cols, flags=self._flags(cols, correct), artifacts=artifacts)

    def _flags(self, cols: dict[str, np.ndarray], correct: np.ndarray) -> list[Flag]:
        flags = []
        n_correct = int(correct.sum())
        if not n_correct:
            return flags
        missing = ~np.isfinite(cols["linf_gradient"][correct])
        if missing.mean() > 0.1:
            flags.append(Flag(
                "gradient_direction_no_boundary", Severity.WARNING,
                f"moving against ∇x d (−sign, up to 1 pixel unit per pixel) never crossed the decision boundary "
                f"for {int(missing.sum())} of {n_correct} correctly classified samples: the gradient does not point "
                f"towards the boundary (gradient masking or saturated logits)", self.name))
        ratio = cols["linf_ratio"][correct]
        ratio = ratio[np.isfinite(ratio)]
        if ratio.size and np.median(ratio) < 1:
            flags.append(Flag(
                "gradient_direction_uninformative", Severity.WARNING,
                f"random ±1 directions reach the decision boundary sooner than the sign-gradient direction "
                f"(median distance ratio {np.median(ratio):.3g} < 1 over {ratio.size} samples): gradients do not "
                f"point where the model is weakest, so gradient attacks and indicators may understate vulnerability",
                self.name))
        return flags


def _fraction(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if mask.size else None
