"""``geometry.gradients``: first-order input geometry per sample (Yao's ‖∇x J‖, Yu's d and its Jacobian)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.probes.base import ATTACK_OUTCOMES, Column, Flag, Probe, ProbeContext, ProbeResult, Requirement, Severity
from robaudit.probes import memory
from robaudit.probes.geometry import common
from robaudit.probes.geometry.groups import sample_groups
from robaudit.probes.geometry.jacobian import logit_geometry, resolve_top_m
from robaudit.probes.geometry.spectrum import jacobian_gram
from robaudit.probes.geometry.stats import GROUPS, by_group, grouped_keys, histogram
from robaudit.probes.cost import Cost, Unknown, class_count_unknown
from robaudit.threat_model import ThreatModel


def jacobian_cost(config: common.ClassSubsetConfig, num_classes: int) -> Cost:
    """Passes per sample of :func:`~robaudit.probes.geometry.jacobian.logit_geometry`: the m kept
    Jacobian rows (``top_m`` of K, all when K ≤ ``max_full_classes``) as m backward passes through
    one forward, plus the loss and decision cotangents when m < K, and a float64 logits forward
    when the working precision is lower."""
    m = resolve_top_m(num_classes, config.top_m, config.max_full_classes)
    rows = m if m == num_classes else m + 2
    return Cost(forward=0 if config.precision == "float64" else 1, backward=rows)


def sparsity_column(threshold: float) -> str:
    """Per-sample column name of the Jacobian sparsity at a relative threshold (``jacobian_sparsity_0.01``)."""
    return f"jacobian_sparsity_{threshold:g}"


def jacobian_sparsity(grad: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
    """Fraction of entries with |g_i| < t · max_i |g_i|, per sample and threshold (N×D → N×T).

    A zero gradient counts as fully sparse (1.0).
    """
    mag = grad.abs().double()
    peak = mag.max(dim=1, keepdim=True).values
    below = [(mag < t * peak).double().mean(dim=1) for t in thresholds]
    zero = peak.squeeze(1) == 0
    return torch.where(zero[:, None], torch.ones(len(mag), len(thresholds), dtype=torch.float64, device=mag.device),
                       torch.stack(below, dim=1))


class InputGradients(Probe):
    """Per-sample loss gradient, logit Jacobian and decision-function geometry in input space.

    Per sample (units: pixel units of [0, 1] inputs; d in logit units; loss in nats):
    ``decision`` d(x) = z_y − max_{i≠y} z_i; ``loss_grad_l2`` / ``loss_grad_l1`` ‖∇x J‖₂ / ‖∇x J‖₁
    (ε‖∇x J‖₁ is the first-order loss gain under an L∞ budget ε, ``first_order_loss_gain``);
    ``logit_jacobian_fro`` / ``logit_jacobian_spectral`` ‖J_z‖_F / ‖J_z‖₂ (over the m most
    probable classes when c is large; m is in the summary); ``decision_grad_l2`` /
    ``decision_grad_l1`` ‖∇x d‖₂ / ‖∇x d‖₁; ``linear_margin_l2`` = d/‖∇x d‖₂ and
    ``linear_margin_linf`` = d/‖∇x d‖₁ (DeepFool-like distances to the linearised boundary,
    negative when misclassified); ``jacobian_sparsity_<t>`` the fraction of |∂d/∂x_i| below
    t × the sample's largest entry (Yu).
    """

    name = "geometry.gradients"
    version = "3"  # 3: precision mixed by default (float32 Jacobian, float64 logits); batches sized by memory
    # 2: the robust split reads the attack-outcome table (distance attacks count at any ε)
    description = ("input gradients: ‖∇x J‖₁/₂, logit-Jacobian norms, Yu's d(x) and ∇x d, linearised margins, "
                   "Jacobian sparsity")
    needs_grad = True
    standard = True
    requires = (Requirement(ATTACK_OUTCOMES, optional=True),)  # the robust / non-robust split
    columns: ClassVar = {
        "decision": Column("decision function d(x) = z_y − max z_i", "other", "logits", False),
        "loss_grad_l2": Column("loss-gradient norm ‖∇x J‖₂", "indicator", "nats per L2 pixel", False),
        "loss_grad_l1": Column("loss-gradient norm ‖∇x J‖₁", "indicator", "nats per L∞ pixel", False),
        "first_order_loss_gain": Column("first-order loss gain ε‖∇x J‖₁", "other", "nats", False),
        "logit_jacobian_fro": Column("logit-Jacobian norm ‖J_z‖_F", "other", "logits per L2 pixel", False),
        "logit_jacobian_spectral": Column("logit-Jacobian norm ‖J_z‖₂", "indicator", "logits per L2 pixel", False),
        "decision_grad_l2": Column("decision-gradient norm ‖∇x d‖₂", "other", "logits per L2 pixel", False),
        "decision_grad_l1": Column("decision-gradient norm ‖∇x d‖₁", "indicator", "logits per L∞ pixel", False),
        "linear_margin_l2": Column("linearised L2 margin d/‖∇x d‖₂", "indicator", "L2 pixels", True),
        "linear_margin_linf": Column("linearised L∞ margin d/‖∇x d‖₁", "indicator", "L∞ pixels", True),
        "jacobian_sparsity_*": Column("Jacobian sparsity of ∇x d at threshold t", "indicator", "fraction", True),
        **{sparsity_column(t): Column(f"Jacobian sparsity of ∇x d, |∂d/∂xᵢ| < {t:g}·max", "indicator", "fraction", True)
           for t in (1e-3, 1e-2, 1e-1)},  # the default thresholds: distinct labels in verdicts and tables
    }
    higher_is_better: ClassVar = {
        ("linear_margin_linf", "correct", "median"): True,
        ("linear_margin_l2", "correct", "median"): True,
        ("loss_grad_l1", "all", "median"): False,
        ("loss_grad_l2", "all", "median"): False,
        ("decision_grad_l1", "all", "median"): False,
        ("logit_jacobian_spectral", "all", "median"): False,
    }
    summary_keys: ClassVar = (
        *grouped_keys("loss_grad_l1", "loss_grad_l2", "first_order_loss_gain", "logit_jacobian_fro",
                      "logit_jacobian_spectral", "decision", "decision_grad_l1", "decision_grad_l2",
                      "linear_margin_linf", "linear_margin_l2"),
        *(("jacobian_sparsity", group, stat, "*") for group in GROUPS for stat in ("mean", "median")),
        ("jacobian_sparsity", "thresholds", "*"), ("group_sizes", "*"), ("input_dim",), ("num_classes",),
        ("jacobian_classes",), ("precision",), ("epsilon",), ("epsilon_source",), ("robustness_source", "**"),
    )

    @dataclass
    class Config(common.ClassSubsetConfig):
        """Knobs of ``geometry.gradients`` (ε: the robust split and the first-order loss gain; top_m: the
        logit-Jacobian rows kept)."""

        sparsity_thresholds: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1],
                                                 metadata={"unit": "fraction of max |∂d/∂x|"})
        """Relative thresholds t of the Jacobian sparsity (|∂d/∂x_i| < t · max |∂d/∂x|)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.sparsity_thresholds or not all(0 < t < 1 for t in self.sparsity_thresholds):
                raise ValueError(f"sparsity_thresholds must be in (0, 1), got {self.sparsity_thresholds}")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per sample: one forward pass builds the VJP function, then one backward pass
        per Jacobian row (:func:`jacobian_cost`). Exact."""
        if num_classes is None:
            return class_count_unknown()
        return n_samples * jacobian_cost(config, num_classes)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps, eps_source = common.resolve_epsilon(cfg.epsilon, ctx.threat_model)
        model = common.working_model(ctx.model, cfg.precision)
        model64 = common.logits_model(ctx.model, cfg.precision)
        n = len(ctx.data)
        c = ctx.model.num_classes
        dim = int(np.prod(ctx.data.x.shape[1:]))
        m = resolve_top_m(c, cfg.top_m, cfg.max_full_classes)
        thresholds = list(cfg.sparsity_thresholds)
        # outputs (K = m + 2 rows) plus the vmapped VJP's working memory (K + 1 activation copies; the CPU's
        # row-by-row VJPs hold fewer, and keep these batches)
        act = memory.activation_bytes(model, ctx.data.x[:1].to(ctx.device))
        per_sample_bytes = (m + 2) * (dim * common.dtype_bytes(cfg.precision) * 3 + act) + act
        budget = memory.working_budget(ctx.device)

        cols: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in (
            "decision", "loss_grad_l2", "loss_grad_l1", "logit_jacobian_fro", "logit_jacobian_spectral",
            "decision_grad_l2", "decision_grad_l1")}
        sparsity = np.full((n, len(thresholds)), np.nan)
        rows_iter = common.batch_rows(n, ctx.batch_size, per_sample_bytes, budget)
        total = common.n_batches(n, ctx.batch_size, per_sample_bytes, budget)
        for rows in ctx.progress(rows_iter, "input gradients", total):
            x = ctx.data.x[rows].to(ctx.device)
            y = ctx.data.y[rows].to(ctx.device)
            geo = logit_geometry(model, x, y, m, model64)
            gram = jacobian_gram(geo.jacobian)
            lg = geo.loss_grad.double()
            dg = geo.decision_grad.double()
            cols["decision"][rows] = geo.decision.cpu().numpy()
            cols["loss_grad_l2"][rows] = lg.norm(dim=1).cpu().numpy()
            cols["loss_grad_l1"][rows] = lg.abs().sum(dim=1).cpu().numpy()
            fro_sq = gram.diagonal(dim1=1, dim2=2).sum(dim=1)
            cols["logit_jacobian_fro"][rows] = fro_sq.clamp_min(0).sqrt().cpu().numpy()
            cols["logit_jacobian_spectral"][rows] = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0).sqrt().cpu().numpy()
            cols["decision_grad_l2"][rows] = dg.norm(dim=1).cpu().numpy()
            cols["decision_grad_l1"][rows] = dg.abs().sum(dim=1).cpu().numpy()
            sparsity[rows] = jacobian_sparsity(dg, thresholds).cpu().numpy()

        with np.errstate(divide="ignore", invalid="ignore"):
            cols["linear_margin_l2"] = cols["decision"] / cols["decision_grad_l2"]
            cols["linear_margin_linf"] = cols["decision"] / cols["decision_grad_l1"]
        cols["first_order_loss_gain"] = eps * cols["loss_grad_l1"]
        for j, t in enumerate(thresholds):
            cols[sparsity_column(t)] = sparsity[:, j]

        groups = sample_groups(ctx, eps)
        summary: dict[str, Any] = {
            "epsilon": eps, "epsilon_source": eps_source, "precision": cfg.precision,
            "num_classes": c, "jacobian_classes": m, "input_dim": dim,
            "group_sizes": {k: int(v.sum()) for k, v in groups.masks.items()},
            "robustness_source": groups.robustness_source,
        }
        for key in ("decision", "loss_grad_l2", "loss_grad_l1", "first_order_loss_gain", "logit_jacobian_fro",
                    "logit_jacobian_spectral", "decision_grad_l2", "decision_grad_l1", "linear_margin_l2",
                    "linear_margin_linf"):
            summary[key] = by_group(cols[key], groups)
        summary["jacobian_sparsity"] = {"thresholds": thresholds}
        for g, mask in groups.masks.items():
            summary["jacobian_sparsity"][g] = {
                "mean": [float(np.nanmean(col[mask])) if mask.any() else None for col in sparsity.T],
                "median": [float(np.nanmedian(col[mask])) if mask.any() else None for col in sparsity.T],
            }
        hist_keys = ("loss_grad_l1", "logit_jacobian_spectral", "decision_grad_l1", "linear_margin_linf",
                     sparsity_column(thresholds[len(thresholds) // 2]))
        artifacts = {"histograms": {k: histogram(cols[k], groups, cfg.histogram_bins) for k in hist_keys}}

        flags = []
        zero = groups.masks["correct"] & (cols["decision_grad_l1"] == 0)
        if zero.any():
            flags.append(Flag(
                "zero_decision_gradient", Severity.WARNING,
                f"∇x d is exactly zero for {int(zero.sum())} of {int(groups.masks['correct'].sum())} correctly "
                f"classified samples; their linearised margins are infinite (gradient masking or saturation)",
                self.name))
        notes = []
        if m < c:
            notes.append(f"logit-Jacobian norms use the {m} most probable classes of {c} (knob top_m)")
        return ProbeResult(summary=summary, per_sample=cols, flags=flags, artifacts=artifacts, notes=notes)
