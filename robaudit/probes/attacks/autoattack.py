"""AutoAttack (Croce & Hein 2020), standard composition: APGD-CE → APGD-T → FAB-T → Square.

Each component attacks only the samples every earlier one left robust, and each output is
re-checked here (norm, box, finiteness, our own prediction) — torchattacks' ``MultiAttack``
trusts the components' outputs, we don't. Per sample we record which component broke it.

Presets (recorded in the summary): ``reference`` — 100 iterations for APGD-CE, APGD-T and FAB-T,
5000 Square queries, 9 target classes (the published standard version); ``fast`` —
torchattacks' reduced 10 iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.probes.attacks import sanity
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import NORMS, check_eps_list, check_norm, eps_key, probe_budgets
from robaudit.probes.seeding import derive_seed, generator
from robaudit.probes.attacks.sweep import (
    accuracy_by_eps, clean_correct, eps_columns, noise_like, outcome_columns, sweep_outcomes,
)
from robaudit.probes.attacks.verify import project, score, score_logits
from robaudit.probes.base import ATTACK_OUTCOMES, Flag, Probe, ProbeContext, ProbeResult, check_level, wilson_interval
from robaudit.probes.cost import Cost, Unknown, class_count_unknown
from robaudit.threat_model import ThreatModel

CLEAN_WRONG = -1
NOT_BROKEN = 0
COMPONENT_CODES = {name: i + 1 for i, name in enumerate(ta.AUTOATTACK_COMPONENTS)}
"""Per-sample ``broken_by_eps_<key>`` codes: −1 misclassified clean, 0 robust, 1 APGD-CE, 2 APGD-T,
3 FAB-T, 4 Square."""


class AutoAttackProbe(Probe):
    """AutoAttack robust accuracy over an ε sweep, with the component that broke each sample."""

    name = "attack.autoattack"
    version = "1"
    description = "AutoAttack (APGD-CE, APGD-T, FAB-T, Square; reference 100-iteration preset) over an ε sweep"
    needs_grad = True
    provides = (ATTACK_OUTCOMES,)
    higher_is_better: ClassVar = {("robust_accuracy",): True, ("robust_accuracy_clean_correct",): True,
                                  ("noise_accuracy",): True}
    outcome_keys: ClassVar = (("robust_accuracy", "*"),)
    summary_keys: ClassVar = (
        ("clean_accuracy",), ("n",), ("norm",), ("eps", "*"), ("eps_source",), ("robust_accuracy", "*"),
        ("robust_accuracy_clean_correct", "*"), ("noise_accuracy", "*"), ("invalid_adversarials", "*"),
        ("broken_by", "*", "*"), ("components", "**"), ("preset",), ("torchattacks_version",), ("sanity", "**"),
    )
    columns: ClassVar = {
        **outcome_columns("AutoAttack", NORMS),
        **eps_columns("broken_by_eps_", ("AutoAttack component that broke the sample "
                                         "(−1 clean error, 0 none, 1 APGD-CE, 2 APGD-T, 3 FAB-T, 4 Square)"),
                      "other", "", NORMS),
    }

    @dataclass
    class Config:
        """Knobs of AutoAttack."""

        eps: list[float] | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Budgets in pixel units; ``None`` takes the threat model's reference budget of the norm (one ε:
        0.1 digits, 0.3 MNIST, 8/255 CIFAR, 4/255 ImageNet for L∞), since every ε costs a full AutoAttack."""
        norm: str = field(default="linf", metadata={"unit": "choice"})
        """``linf`` or ``l2``."""
        preset: str = field(default="reference", metadata={"unit": "choice"})
        """``reference`` (100 iterations, the published standard) or ``fast`` (torchattacks' 10)."""
        square_queries: int | None = field(default=None, metadata={"unit": "queries"})
        """Square's query budget; ``None`` takes the preset's 5000."""
        sanity_checks: bool = True
        """Draw the uniform-noise baseline behind ``noise_as_strong_as_attack``."""
        ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
        """Coverage of the Wilson intervals."""

        def __post_init__(self) -> None:
            self.norm = check_norm(self.norm)
            check_eps_list(self.eps, self.norm)
            if self.preset not in ta.AUTOATTACK_PRESETS:
                raise ValueError(f"preset must be one of {', '.join(ta.AUTOATTACK_PRESETS)}, got {self.preset!r}")
            if self.square_queries is not None and self.square_queries < 1:
                raise ValueError(f"square_queries must be at least 1, got {self.square_queries}")
            check_level(self.ci_level, "ci_level")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per ε (the reference budget unless ``eps`` is set) and sample: with ``sanity_checks`` a
        noise forward; APGD-CE (a clean forward, ``steps`` + 1 forward+backward passes); APGD-T for
        K ≥ 4 (a clean forward, then per target class a logits forward and ``steps`` + 1
        forward+backward passes); FAB-T (a clean forward, per target class two forwards, ``steps``
        forward+backward passes and as many prediction forwards, and a re-check forward); Square
        (at most ``square_queries`` + 3 forwards); and our re-check forward after each component.
        T = min(9, K − 1) target classes. An upper bound: each component attacks only the
        samples the earlier ones left robust (so this is attained when no sample breaks), and
        Square stops querying a broken sample."""
        if num_classes is None:
            return class_count_unknown()
        steps, queries = cls._plan_of(config)
        targets = max(1, min(ta.AUTOATTACK_TARGETS, num_classes - 1))
        n_eps = len(probe_budgets(config.eps, config.norm, threat_model, reference_only=True).eps)
        apgd_ce = Cost(forward=1, backward=steps + 1)
        apgd_t = Cost(forward=1 + targets, backward=targets * (steps + 1)) if num_classes >= 4 else Cost()
        fab_t = Cost(forward=1 + targets * (3 + steps), backward=targets * steps)
        square = Cost(forward=queries + 3)
        rechecks = Cost(forward=3 + (1 if num_classes >= 4 else 0))
        noise = Cost(forward=1 if config.sanity_checks else 0)
        return (n_eps * n_samples) * (noise + apgd_ce + apgd_t + fab_t + square + rechecks)

    @staticmethod
    def _plan_of(config: Any) -> tuple[int, int]:
        """(iterations, Square queries) of ``config``'s preset."""
        preset = ta.AUTOATTACK_PRESETS[config.preset]
        queries = config.square_queries if config.square_queries is not None else preset["square_queries"]
        return preset["steps"], queries

    def _plan(self) -> tuple[int, int]:
        return self._plan_of(self.config)


    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        steps, queries = self._plan()
        budgets = probe_budgets(cfg.eps, cfg.norm, ctx.threat_model, reference_only=True)
        eps_list = budgets.eps
        correct = clean_correct(ctx)
        clean_logits = ctx.clean_logits()
        n, k_classes = len(correct), int(ctx.model.num_classes)
        broken_by = np.where(correct, NOT_BROKEN, CLEAN_WRONG)[None, :].repeat(len(eps_list), axis=0)
        loss = np.full((len(eps_list), n), math.nan)
        margin = np.full((len(eps_list), n), math.nan)
        noise_robust = np.zeros((len(eps_list), n), dtype=bool)
        invalid = {eps_key(e): 0 for e in eps_list}
        grad_bad = np.zeros(n, dtype=bool)
        grad_seen = False
        components_run: list[str] = []

        with ta.attack_session(ctx.model, ctx.device) as target:
            for k in ctx.progress(range(len(eps_list)), self.name, len(eps_list)):
                eps = eps_list[k]
                components = ta.autoattack_components(target, eps, cfg.norm, steps, queries, k_classes,
                                                      derive_seed(ctx.seed, "autoattack", k))
                components_run = [name for name, _ in components]
                # every sample gets scored at least once: clean-wrong ones on the clean image (from
                # the audit's shared clean logits, no forward pass)
                for rows, xb, yb in ctx.data.batches(ctx.batch_size):
                    s = score_logits(clean_logits[rows], yb)
                    loss[k, rows], margin[k, rows] = s.loss.numpy(), s.margin.numpy()
                    if cfg.sanity_checks:
                        noisy = noise_like(xb.to(ctx.device), eps, cfg.norm, generator(ctx.seed, "noise", k, rows.start))
                        noise_robust[k, rows] = correct[rows] & score(ctx.model, noisy, yb.to(ctx.device)).correct.numpy()
                for name, attack in components:
                    idx = np.flatnonzero(broken_by[k] == NOT_BROKEN)
                    for start in range(0, len(idx), ctx.batch_size):
                        part = idx[start:start + ctx.batch_size]
                        rows = torch.as_tensor(part)
                        xb, yb = ctx.data.x[rows].to(ctx.device), ctx.data.y[rows].to(ctx.device)
                        adv, bad = project(xb, attack(xb, yb), eps, cfg.norm)
                        recorded = target.first_grad_bad
                        if name == "apgd-ce" and k == 0 and recorded is not None and len(recorded) == len(part):
                            grad_bad[part] = recorded.numpy()
                            grad_seen = True
                        invalid[eps_key(eps)] += int(bad.sum())
                        s = score(ctx.model, adv, yb)
                        loss[k, part], margin[k, part] = s.loss.numpy(), s.margin.numpy()
                        broken_by[k, part[~s.correct.numpy()]] = COMPONENT_CODES[name]

        robust = broken_by == NOT_BROKEN
        flags: list[Flag | None] = []
        checks: dict[str, Any] = {}
        counts = {eps_key(e): {name: int((broken_by[k] == COMPONENT_CODES[name]).sum()) for name in components_run}
                  for k, e in enumerate(eps_list)}
        flag, checks["square_only"] = sanity.black_box_beats_white_box(
            self.name, eps_list, [counts[eps_key(e)].get("square", 0) for e in eps_list], n)
        flags.append(flag)
        flag, checks["accuracy_rises"] = sanity.accuracy_rises(self.name, eps_list, list(robust))
        flags.append(flag)
        if grad_seen:
            flag, checks["gradient_vanished"] = sanity.gradient_vanish(self.name, grad_bad[correct])
            flags.append(flag)
        summary: dict[str, Any] = {
            "norm": cfg.norm, "eps": list(eps_list), "eps_source": budgets.source, "n": n,
            "preset": cfg.preset,
            "components": [{"name": name, **({"queries": queries} if name == "square" else {"steps": steps}),
                            **({"target_classes": max(1, min(ta.AUTOATTACK_TARGETS, k_classes - 1))}
                               if name in ("apgd-t", "fab-t") else {})} for name in components_run],
            "torchattacks_version": ta.torchattacks_version(),
            "clean_accuracy": wilson_interval(int(correct.sum()), n, cfg.ci_level),
            **accuracy_by_eps(eps_list, robust, correct, cfg.ci_level),
            "broken_by": counts,
            "invalid_adversarials": invalid,
        }
        if cfg.sanity_checks:
            summary["noise_accuracy"] = {eps_key(e): wilson_interval(int(r.sum()), n, cfg.ci_level)
                                         for e, r in zip(eps_list, noise_robust)}
            flag, checks["noise"] = sanity.noise_as_strong(self.name, eps_list, correct, list(robust), list(noise_robust))
            flags.append(flag)
        flags.append(sanity.attack_output_invalid(self.name, invalid))
        summary["sanity"] = checks

        per_sample = sweep_outcomes(eps_list, robust, loss, margin)
        for k, e in enumerate(eps_list):
            per_sample[f"broken_by_eps_{eps_key(e)}"] = broken_by[k].astype(np.int64)
        return ProbeResult(summary=summary, per_sample=per_sample, flags=[f for f in flags if f is not None],
                           notes=[f"AutoAttack preset '{cfg.preset}': {', '.join(components_run)}; "
                                  f"{steps} iterations, {queries} Square queries."])
