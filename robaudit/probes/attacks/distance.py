"""Minimum-distance attacks (C&W L2, FAB): per-sample distances and robust accuracy at budgets.

A minimum-distance attack returns, per sample, the closest adversarial example it found. We
re-check it (finite, in [0, 1]), recompute the prediction, and recompute the distance in the
attack's norm. ``distance`` is that distance for a verified adversarial example, 0 for samples
misclassified clean, and NaN where none was found. A sample is robust at budget ε when it is
correct clean and has no verified adversarial example within ε.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.probes.attacks import sanity
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import eps_key, probe_budgets
from robaudit.probes.seeding import derive_seed
from robaudit.probes.attacks.sweep import accuracy_by_eps, clean_correct, eps_columns, success_key
from robaudit.probes.attacks.verify import distances, predicts_correctly, project
from robaudit.probes.base import ATTACK_OUTCOMES, Column, Flag, Probe, ProbeContext, ProbeResult, check_level, wilson_interval

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def quantiles(values: np.ndarray) -> dict[str, float | None]:
    """Quantiles q10…q90 of ``values`` (+∞ allowed: censored samples; stored as null when infinite)."""
    if len(values) == 0:
        return {f"q{round(q * 100)}": None for q in QUANTILES}
    qs = np.quantile(np.asarray(values, dtype=float), QUANTILES, method="lower")
    return {f"q{round(q * 100)}": (float(v) if math.isfinite(v) else None) for q, v in zip(QUANTILES, qs)}


def histogram(values: np.ndarray, low: float, high: float, bins: int = 30) -> dict[str, Any]:
    """Histogram of finite ``values`` over [low, high] (report figures): edges, counts, n."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    top = max(high, float(values.max()) if len(values) else high)
    counts, edges = np.histogram(values, bins=bins, range=(low, top if top > low else low + 1))
    return {"edges": edges.tolist(), "counts": counts.tolist(), "n": int(len(values))}


def distance_columns(attack: str, unit: str, norms: tuple[str, ...]) -> dict[str, Column]:
    """Column metadata of a minimum-distance probe; ``attack`` is its display name, ``unit`` the
    distance's unit (``"L2 pixels"``, or generic when the norm is a knob), ``norms`` the norms it may use."""
    return {
        "distance": Column(f"{attack} distance to the closest adversarial example found", "robustness", unit),
        "found": Column(f"{attack} found an adversarial example (1/0)", "other", ""),
        **eps_columns("success_eps_", f"{attack} success", "attack_success", "", norms),
    }


@dataclass
class DistanceConfig:
    """Knobs shared by the minimum-distance probes."""

    eps: list[float] | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
    """Budgets at which to report robust accuracy; ``None`` takes the run's threat model (--eps) for the norm; a list replaces it for this probe."""
    ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
    """Coverage of the Wilson intervals."""

    def __post_init__(self) -> None:
        check_level(self.ci_level, "ci_level")


class DistanceAttack(Probe):
    """Base class: subclasses implement :meth:`find` and :meth:`settings`."""

    needs_grad = True
    provides = (ATTACK_OUTCOMES,)
    higher_is_better: ClassVar = {("robust_accuracy",): True, ("robust_accuracy_clean_correct",): True,
                                  ("distance_quantiles",): True}
    outcome_keys: ClassVar = (("robust_accuracy", "*"),)
    summary_keys: ClassVar = (
        ("clean_accuracy",), ("n",), ("norm",), ("eps", "*"), ("eps_source",), ("found_fraction",),
        ("invalid_adversarials",), ("robust_accuracy", "*"), ("robust_accuracy_clean_correct", "*"),
        *(("distance_quantiles", f"q{round(q * 100)}") for q in QUANTILES), ("sanity", "**"), ("settings", "**"),
    )

    def norm(self) -> str:
        """``linf`` or ``l2``."""
        raise NotImplementedError

    def find(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, seed: int) -> ta.AttackOutput:
        """Closest adversarial candidates of one batch."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The effective attack settings, echoed in the summary."""
        return {}

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        norm = self.norm()
        budgets = probe_budgets(cfg.eps, norm, ctx.threat_model)
        correct = clean_correct(ctx)
        n = len(correct)
        dist = np.full(n, np.nan)
        invalid = 0
        batches = list(enumerate(ctx.data.batches(ctx.batch_size)))
        with ta.attack_session(ctx.model, ctx.device) as target:
            for b, (rows, xb, yb) in ctx.progress(batches, self.name, len(batches)):
                xb, yb = xb.to(ctx.device), yb.to(ctx.device)
                out = self.find(target, xb, yb, derive_seed(ctx.seed, "find", b))
                adv, bad = project(xb, out.adv, math.inf, norm)
                invalid += int(bad.sum())
                fooled = ~predicts_correctly(ctx.model, adv, yb).cpu().numpy()
                d = distances(xb.cpu(), adv.cpu(), norm).numpy()
                dist[rows] = np.where(fooled, d, np.nan)
        dist = np.where(correct, dist, 0.0)
        found = np.isfinite(dist)
        robust = np.stack([correct & ~(found & (dist <= e)) for e in budgets.eps])
        censored = np.where(found, dist, np.inf)
        summary: dict[str, Any] = {
            "norm": norm, "eps": list(budgets.eps), "eps_source": budgets.source, "n": n,
            "settings": self.settings(),
            "clean_accuracy": wilson_interval(int(correct.sum()), n, cfg.ci_level),
            **accuracy_by_eps(budgets.eps, robust, correct, cfg.ci_level),
            "found_fraction": wilson_interval(int((found & correct).sum()), int(correct.sum()), cfg.ci_level),
            "distance_quantiles": quantiles(censored[correct]),
            "invalid_adversarials": invalid,
        }
        flags: list[Flag | None] = []
        flag, rises = sanity.accuracy_rises(self.name, budgets.eps, list(robust))
        summary["sanity"] = {"accuracy_rises": rises}
        flags.append(flag)
        flags.append(sanity.attack_output_invalid(self.name, {"any": invalid}))
        per_sample: dict[str, np.ndarray] = {"distance": dist, "found": found}
        for k, e in enumerate(budgets.eps):
            per_sample[success_key(e)] = ~robust[k]
        top = max(budgets.eps)
        return ProbeResult(summary=summary, per_sample=per_sample, flags=[f for f in flags if f is not None],
                           artifacts={"distribution": histogram(dist[correct & found], 0.0, top),
                                      "not_found": int((correct & ~found).sum()), "eps_keys": [eps_key(e) for e in budgets.eps]})
