"""The per-sample worst case over every attack that ran in this audit, at each budget.

The numbers come from the run's attack-outcome table (``ctx.outcomes``, see
:mod:`robaudit.attack_outcomes`): a sample counts as broken at (norm, ε) when any attack of that
norm broke it at that ε, or a minimum-distance result (``attack.min_eps``, C&W, FAB) proves an
adversarial example within ε. All of these are verified adversarial examples, so the worst case is
a valid upper bound on robust accuracy. The probe requires at least one attack in the same audit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from robaudit.attack_outcomes import worst_case_key
from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel
from robaudit.probes.attacks.budgets import NORMS, eps_key
from robaudit.probes.attacks.sweep import accuracy_by_eps, clean_correct, eps_columns
from robaudit.probes.base import ATTACK_OUTCOMES, Column, Probe, ProbeContext, ProbeResult, Requirement, check_level


class WorstCaseProbe(Probe):
    """Per-sample worst case over all attacks of this audit, per norm and ε, with Wilson CIs."""

    name = "attack.worst_case"
    version = "1"
    description = "per-sample worst case over every attack that ran, per norm and eps (robust accuracy, Wilson CI)"
    standard = True
    requires = (Requirement(ATTACK_OUTCOMES),)
    higher_is_better: ClassVar = {
        ("linf", "robust_accuracy"): True, ("linf", "robust_accuracy_clean_correct"): True,
        ("l2", "robust_accuracy"): True, ("l2", "robust_accuracy_clean_correct"): True,
    }
    outcome_keys: ClassVar = tuple((norm, "robust_accuracy", "*") for norm in NORMS)
    summary_keys: ClassVar = (
        ("sources", "*"),
        *((norm, key, "*") for norm in NORMS for key in ("robust_accuracy", "robust_accuracy_clean_correct", "eps")),
        *((norm, "attacks", "*", "*") for norm in NORMS),
    )

    columns: ClassVar = {
        **eps_columns("success_linf_eps_", "worst case over all L∞ attacks: success", "attack_success", "", ("linf",)),
        **eps_columns("success_l2_eps_", "worst case over all L2 attacks: success", "attack_success", "", ("l2",)),
        "clean_correct": Column("correct on the clean sample (1/0)", "other", ""),
    }

    @dataclass
    class Config:
        """Knobs of the worst-case combination."""

        ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
        """Coverage of the Wilson intervals."""

        def __post_init__(self) -> None:
            check_level(self.ci_level, "ci_level")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost:
        """No model pass of its own: it reads the outcome table and the shared clean logits."""
        return Cost()

    def run(self, ctx: ProbeContext) -> ProbeResult:
        correct = clean_correct(ctx)
        table = ctx.outcomes
        sources = sorted({a for o in table.norms.values() for names in o.attacks for a in names}
                         | {a for o in table.norms.values() for a in o.distance_attacks})
        summary: dict[str, Any] = {"sources": sources}
        per_sample: dict[str, np.ndarray] = {"clean_correct": correct}
        for norm in NORMS:
            outcomes = table.norms.get(norm)
            if outcomes is None or not outcomes.eps:
                continue
            eps_list = list(outcomes.eps)
            broken = ~correct[None, :] | outcomes.broken
            for k, e in enumerate(eps_list):
                per_sample[worst_case_key(norm, e)] = broken[k]
            summary[norm] = {"eps": eps_list,
                             **accuracy_by_eps(eps_list, correct[None, :] & ~broken, correct, self.config.ci_level),
                             "attacks": {eps_key(e): list(outcomes.attacks[k]) for k, e in enumerate(eps_list)}}
        return ProbeResult(summary=summary, per_sample=per_sample)
