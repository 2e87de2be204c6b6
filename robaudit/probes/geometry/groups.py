"""Sample groups for summaries: clean-correct vs wrong always; robust vs non-robust when attacks ran.

Robustness comes from the run's attack-outcome table (``ctx.outcomes``, see
:mod:`robaudit.attack_outcomes`) at the audit's L∞ ε: a correctly classified sample is non-robust
when any L∞ attack broke it there — at exactly that budget, or with a verified adversarial distance
≤ ε (``attack.min_eps``, FAB L∞). L2 attacks do not count: their budgets are not comparable to an
L∞ ε. Nothing breaks when no attack ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robaudit.probes.base import ProbeContext

NORM = "linf"


@dataclass
class SampleGroups:
    """Boolean masks (length N) of the summary groups, and where robustness came from.

    Attributes:
        masks: ``all``, ``correct``, ``incorrect`` always; ``robust`` and ``non_robust`` (both
            subsets of ``correct``) when attack results at the audit's ε were found.
        robustness_source: ``{"probes", "epsilon", "norm"}`` or ``None``.
        available_attack_eps: every L∞ ε the attacks ran at (to explain a missing split).
    """

    masks: dict[str, np.ndarray]
    robustness_source: dict[str, Any] | None = None
    available_attack_eps: list[float] = field(default_factory=list)

    @property
    def has_robustness(self) -> bool:
        """Whether the robust / non-robust split is available."""
        return "robust" in self.masks


def sample_groups(ctx: ProbeContext, epsilon: float) -> SampleGroups:
    """Groups of the audit samples: correctness from the audit's clean logits, robustness from the
    attack-outcome table at the L∞ budget ``epsilon`` (pixel units)."""
    logits = ctx.clean_logits()
    correct = (logits.argmax(dim=1) == ctx.data.y).numpy()
    masks = {"all": np.ones(len(correct), dtype=bool), "correct": correct, "incorrect": ~correct}
    outcomes = ctx.outcomes.norms.get(NORM)
    groups = SampleGroups(masks, None, list(outcomes.eps) if outcomes is not None else [])
    answer = ctx.outcomes.broken_at(NORM, epsilon)
    if answer is not None:
        broken, attacks = answer
        masks["non_robust"] = correct & broken
        masks["robust"] = correct & ~broken
        groups.robustness_source = {"probes": list(attacks), "epsilon": epsilon, "norm": NORM}
    return groups
