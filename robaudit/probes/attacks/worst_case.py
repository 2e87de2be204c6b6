"""The per-sample worst case over every attack that ran in this audit, at each budget.

A sample counts as broken at (norm, ε) when any attack probe of that norm broke it at exactly
that ε (``success_eps_<key>``), or when a minimum-distance result proves an adversarial example
within ε: ``attack.min_eps`` (``min_eps`` ≤ ε), C&W or FAB (``distance`` ≤ ε). All of these
are verified adversarial examples, so the worst case is a valid upper bound on robust accuracy.

The probe reads earlier results from ``ctx.previous`` (attacks run first: orders 10–18); run
alone it reports clean correctness only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from robaudit.probes.attacks.budgets import NORMS, eps_key
from robaudit.probes.attacks.sweep import accuracy_by_eps, clean_correct, eps_columns, success_key
from robaudit.probes.base import Column, Probe, ProbeContext, ProbeResult, check_level


def worst_case_key(norm: str, eps: float) -> str:
    """Per-sample column of the worst case: ``success_<norm>_eps_<key>``."""
    return f"success_{norm}_eps_{eps_key(eps)}"


class WorstCaseProbe(Probe):
    """Per-sample worst case over all attacks of this audit, per norm and ε, with Wilson CIs."""

    name = "attack.worst_case"
    version = "1"
    description = "per-sample worst case over every attack that ran, per norm and eps (robust accuracy, Wilson CI)"
    standard = True
    order = 19
    higher_is_better: ClassVar = {
        ("linf", "robust_accuracy"): True, ("linf", "robust_accuracy_clean_correct"): True,
        ("l2", "robust_accuracy"): True, ("l2", "robust_accuracy_clean_correct"): True,
    }
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

        ci_level: float = 0.95
        """Coverage of the Wilson intervals."""

        def __post_init__(self) -> None:
            check_level(self.ci_level, "ci_level")

    def run(self, ctx: ProbeContext) -> ProbeResult:
        correct = clean_correct(ctx)
        fixed: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {norm: [] for norm in NORMS}
        dist: dict[str, list[tuple[str, np.ndarray]]] = {norm: [] for norm in NORMS}
        budgets: dict[str, set[float]] = {norm: set() for norm in NORMS}
        for name in sorted(ctx.previous):
            result = ctx.previous[name]
            norm = result.summary.get("norm") if name.startswith("attack.") and name != self.name else None
            if norm not in NORMS:
                continue
            eps = [float(e) for e in result.summary.get("eps", [])]
            by_key = {eps_key(e): np.asarray(result.per_sample[success_key(e)], dtype=bool)
                      for e in eps if success_key(e) in result.per_sample}
            if by_key:
                fixed[norm].append((name, by_key))
                budgets[norm].update(eps)
            for column in ("min_eps", "distance"):
                if column in result.per_sample:
                    dist[norm].append((name, np.asarray(result.per_sample[column], dtype=float)))

        summary: dict[str, Any] = {"sources": sorted({s for norm in NORMS for s, _ in fixed[norm] + dist[norm]})}
        per_sample: dict[str, np.ndarray] = {"clean_correct": correct}
        for norm in NORMS:
            eps_list = sorted(budgets[norm])
            if not eps_list:
                continue
            robust, attacks = [], {}
            for e in eps_list:
                key = eps_key(e)
                broken = ~correct
                names = []
                for name, by_key in fixed[norm]:
                    if key in by_key:
                        broken = broken | by_key[key]
                        names.append(name)
                for name, d in dist[norm]:
                    broken = broken | (np.nan_to_num(d, nan=np.inf) <= e)
                    names.append(name)
                robust.append(correct & ~broken)
                attacks[key] = sorted(set(names))
                per_sample[worst_case_key(norm, e)] = broken
            summary[norm] = {"eps": eps_list, **accuracy_by_eps(eps_list, np.stack(robust), correct, self.config.ci_level),
                             "attacks": attacks}
        notes = [] if summary["sources"] else [
            "no attack results to combine: run attack probes in the same audit (e.g. attack.fgsm, attack.pgd_linf)"]
        return ProbeResult(summary=summary, per_sample=per_sample, notes=notes)
