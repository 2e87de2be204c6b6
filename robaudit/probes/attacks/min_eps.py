"""Per-sample minimal adversarial ε by bisection on PGD — the outcome the indicator tests correlate with.

Each clean-correct sample starts from a bracket [lower, upper]. With ``brackets`` on (the default)
and earlier attacks in the audit, it is the one the attack-outcome table gives: a sample first
broken at budget ε_{i+1} (a verified adversarial example) starts from [ε_i, ε_{i+1}]; a sample no
attack broke starts from [largest budget, ε_max]. Otherwise it is [0, ε_max]. Samples without a
verified adversarial example get PGD at ε_max first (those it cannot break are *censored*:
``min_eps`` NaN, ``min_eps_found`` False); then each round runs PGD at the midpoint of every live
bracket, and a sample stops once its bracket is no wider than the tolerance. ``min_eps`` is the
final upper end — a budget with a verified adversarial example — so the true minimal distance the
attacks can reach lies in (``min_eps_lower``, ``min_eps``], an interval no wider than the tolerance.
Clean-misclassified samples have ``min_eps`` = 0.

Every round attacks all live samples together, each at its own midpoint, with torchattacks'
PGD extended to per-sample budgets (:func:`~robaudit.probes.attacks.torchattacks_adapter.pgd_per_sample`).
The default is 10 PGD steps per run (step 2.5·ε/10). From [0, ε_max] a run at ε_max plus 7
bisection rounds costs 80 attack steps per clean-correct sample (digits L∞); from the standard
sweep's brackets (gaps of 0.05, 0.1 and 0.2 up to ε_max 0.5) at most 6 rounds, and 4 for a sample
broken inside the sweep. Bisection assumes success is monotone in ε, which PGD approximates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_norm
from robaudit.probes.attacks.distance import QUANTILES, histogram, quantiles
from robaudit.probes.seeding import derive_seed
from robaudit.probes.attacks.sweep import clean_correct
from robaudit.probes.attacks.verify import predicts_correctly, project_per_sample
from robaudit.probes.base import (
    ATTACK_OUTCOMES, Column, Probe, ProbeContext, ProbeResult, Requirement, check_level, wilson_interval,
)
from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel

if TYPE_CHECKING:
    from robaudit.attack_outcomes import OutcomeTable


UNIT = "pixels, in the probe's norm (summary › norm: L∞ or L2)"
"""The unit of ``min_eps``: the norm is a knob, so the column metadata (declared per class) names
it generically; ``summary › norm`` says which."""


_SWEEPS = {"linf": frozenset({"attack.fgsm", "attack.bim", "attack.pgd_linf"}),
           "l2": frozenset({"attack.l2grad", "attack.pgd_l2"})}
"""The built-in fixed-budget sweeps per norm, whose outcomes bracket the search (cost estimate only)."""


def _rounds(width: float, tol: float) -> int:
    """Bisection rounds that shrink a bracket of ``width`` to at most ``tol``."""
    return max(0, math.ceil(math.log2(width / tol))) if tol < width else 0


def sweep_brackets(outcomes: "OutcomeTable | None", norm: str, eps_max: float,
                   n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample starting brackets from the attack-outcome table: (lower, upper, found), each (N,).

    A sample first broken at budget ε_{i+1} ≤ ε_max (a verified adversarial example of some attack)
    starts from [ε_i, ε_{i+1}] (ε_0 = 0), found; a sample no attack broke at any budget ≤ ε_max
    starts from [largest such budget, ε_max], not yet found. Without a table for ``norm``: [0, ε_max].
    """
    lower, upper, found = np.zeros(n), np.full(n, eps_max), np.zeros(n, dtype=bool)
    table = outcomes.norms.get(norm) if outcomes is not None else None
    if table is None:
        return lower, upper, found
    keep = [k for k, e in enumerate(table.eps) if e <= eps_max]
    if not keep:
        return lower, upper, found
    eps = np.asarray([table.eps[k] for k in keep])
    broken = np.asarray(table.broken)[keep]
    found = broken.any(axis=0)
    first = broken.argmax(axis=0)
    upper = np.where(found, eps[first], eps_max)
    below = np.concatenate([[0.0], eps])  # below[first] = the budget just under the first broken one
    lower = np.where(found, below[first], eps[-1])
    return lower, upper, found


class MinEpsProbe(Probe):
    """Minimal adversarial ε per sample, by bisection on PGD (L∞ or L2) to a stated tolerance."""

    name = "attack.min_eps"
    version = "2"
    description = "per-sample minimal adversarial eps by bisection on PGD (L∞ or L2), to a stated tolerance"
    standard = True
    needs_grad = True
    provides = (ATTACK_OUTCOMES,)
    requires = (Requirement(ATTACK_OUTCOMES, optional=True),)
    higher_is_better: ClassVar = {("min_eps_quantiles",): True, ("found_fraction",): False}
    summary_keys: ClassVar = (
        ("n",), ("norm",), ("clean_correct",), ("found_fraction",), ("eps_max",), ("rounds",), ("tolerance",),
        *((key, f"q{round(q * 100)}") for key in ("min_eps_quantiles", "min_eps_quantiles_all_samples")
          for q in QUANTILES),
        ("cost", "**"), ("settings", "**"),
    )
    columns: ClassVar = {
        "min_eps": Column("minimal adversarial ε (PGD bisection)", "robustness", UNIT),
        "min_eps_lower": Column("minimal adversarial ε, lower end of the bracket", "other", UNIT),
        "min_eps_found": Column("PGD broke the sample within eps_max (1/0)", "other", ""),
    }

    @dataclass
    class Config:
        """Knobs of the minimal-ε bisection."""

        norm: str = field(default="linf", metadata={"unit": "choice"})
        """``linf`` or ``l2``."""
        steps: int = field(default=10, metadata={"unit": "steps"})
        """PGD steps per attack (each bisection round runs one PGD attack)."""
        step_fraction: float | None = field(default=None, metadata={"unit": "fraction of ε"})
        """PGD step size as a fraction of ε; ``None`` means 2.5/steps."""
        random_start: bool = True
        """PGD random start (seeded)."""
        eps_max: float | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Upper end of the search in pixel units; ``None`` is the threat model's search_max."""
        tolerance: float | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Width of the final bracket in pixel units; ``None`` is the threat model's tolerance (1/255 on digits L∞)."""
        ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
        """Coverage of the Wilson interval on the found fraction."""
        brackets: bool = True
        """Start each sample's bisection from the bracket the audit's earlier attacks found (robust at
        ε_i, broken at ε_{i+1}, from the attack-outcome table) instead of [0, ε_max]; ``False`` is
        the version-1 search."""

        def __post_init__(self) -> None:
            self.norm = check_norm(self.norm)
            if self.steps < 1:
                raise ValueError(f"steps must be at least 1, got {self.steps}")
            if self.step_fraction is not None and not 0 < self.step_fraction <= 2:
                raise ValueError(f"step_fraction must be in (0, 2], got {self.step_fraction}")
            if self.eps_max is not None and (not math.isfinite(self.eps_max) or self.eps_max <= 0):
                raise ValueError(f"eps_max must be a positive number of pixel units, got {self.eps_max}")
            if self.norm == "linf" and self.eps_max is not None and self.eps_max > 1:
                raise ValueError(f"an L∞ eps_max is at most 1 pixel unit, got {self.eps_max}")
            if self.tolerance is not None and not self.tolerance > 0:
                raise ValueError(f"tolerance must be positive, got {self.tolerance}")
            check_level(self.ci_level, "ci_level")

    @staticmethod
    def search_plan(config: "MinEpsProbe.Config", threat_model: ThreatModel) -> tuple[float, float, int]:
        """(ε_max, tolerance, bisection rounds from the full bracket [0, ε_max]) in pixel units of ``config.norm``."""
        budget = threat_model.norms[config.norm]
        eps_max = config.eps_max if config.eps_max is not None else budget.search_max
        tol = config.tolerance if config.tolerance is not None else budget.tolerance
        return eps_max, tol, _rounds(eps_max, tol)

    @classmethod
    def estimate_cost(cls, config: "MinEpsProbe.Config", n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost:
        """One PGD run (``steps`` forward+backward passes) and one re-check forward per sample at
        ε_max and in every bisection round. An upper bound: only clean-correct samples are attacked,
        only those broken are bisected, and with ``brackets`` and a selected sweep of this norm (at
        the threat model's budgets) each sample bisects at most the widest gap of that sweep."""
        eps_max, tol, rounds = cls.search_plan(config, threat_model)
        if config.brackets and selected & _SWEEPS[config.norm]:
            grid = sorted({0.0, eps_max, *(e for e in threat_model.norms[config.norm].eps if e < eps_max)})
            rounds = _rounds(max(b - a for a, b in zip(grid, grid[1:])), tol)
        return Cost(forward=1, backward=config.steps) * ((rounds + 1) * n_samples)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps_max, tol, full_rounds = self.search_plan(cfg, ctx.threat_model)
        fraction = cfg.step_fraction if cfg.step_fraction is not None else 2.5 / cfg.steps
        correct = clean_correct(ctx)
        n = len(correct)
        lower, upper, found = sweep_brackets(ctx.outcomes if cfg.brackets else None, cfg.norm, eps_max, n)
        found &= correct  # the table counts clean-misclassified samples as broken; they are not searched
        from_sweep = found.copy()
        steps_spent = 0

        with ta.attack_session(ctx.model, ctx.device) as target:
            def broken(idx: np.ndarray, eps: np.ndarray, stage: int) -> np.ndarray:
                """Which of the samples ``idx`` PGD breaks, each at its own budget ``eps``."""
                nonlocal steps_spent
                out = np.zeros(len(idx), dtype=bool)
                for b, start in enumerate(range(0, len(idx), ctx.batch_size)):
                    part = idx[start:start + ctx.batch_size]
                    rows = torch.as_tensor(part)
                    xb, yb = ctx.data.x[rows].to(ctx.device), ctx.data.y[rows].to(ctx.device)
                    budget = torch.as_tensor(eps[start:start + ctx.batch_size], dtype=xb.dtype)
                    res = ta.pgd_per_sample(target, xb, yb, budget, fraction, cfg.steps, cfg.random_start, cfg.norm,
                                            seed=derive_seed(ctx.seed, stage, b))
                    adv, _ = project_per_sample(xb, res.adv, budget, cfg.norm)
                    out[start:start + len(part)] = ~predicts_correctly(ctx.model, adv, yb).cpu().numpy()
                    steps_spent += cfg.steps * len(part)
                return out

            # stage 0: PGD at ε_max for the clean-correct samples no earlier attack bracketed
            attacked = np.flatnonzero(correct & ~found & (lower < eps_max))
            ok = broken(attacked, upper[attacked], 0)
            found[attacked[ok]] = True
            lower[attacked[~ok]] = eps_max
            live_width = (upper - lower)[correct & found]
            rounds = _rounds(float(live_width.max()), tol) if len(live_width) else 0
            for stage in ctx.progress(range(1, rounds + 1), self.name, rounds):
                # each sample stops once its bracket is no wider than the tolerance
                live = np.flatnonzero(correct & found & (upper - lower > tol))
                if not len(live):
                    break
                mid = (lower[live] + upper[live]) / 2
                ok = broken(live, mid, stage)
                upper[live[ok]] = mid[ok]
                lower[live[~ok]] = mid[~ok]

        min_eps = np.where(correct, np.where(found, upper, np.nan), 0.0)
        min_lower = np.where(correct, lower, 0.0)
        censored = np.where(correct, np.where(found, upper, np.inf), 0.0)
        n_correct = int(correct.sum())
        summary: dict[str, Any] = {
            "norm": cfg.norm, "eps_max": eps_max, "tolerance": tol, "rounds": rounds,
            "settings": {"steps": cfg.steps, "step_fraction": fraction, "random_start": cfg.random_start,
                         "brackets": cfg.brackets},
            "n": n, "clean_correct": n_correct,
            "found_fraction": wilson_interval(int(found.sum()), n_correct, cfg.ci_level),
            "min_eps_quantiles": quantiles(censored[correct]),
            "min_eps_quantiles_all_samples": quantiles(censored),
            "cost": {"attack_steps": steps_spent, "bracketed_by_earlier_attacks": int((from_sweep & correct).sum()),
                     "rounds_from_full_bracket": full_rounds,
                     "attack_steps_per_attacked_sample": steps_spent / n_correct if n_correct else 0.0,
                     "pgd_runs_per_attacked_sample": (steps_spent / n_correct / cfg.steps) if n_correct else 0.0},
        }
        return ProbeResult(
            summary=summary,
            per_sample={"min_eps": min_eps, "min_eps_lower": min_lower, "min_eps_found": found | ~correct},
            artifacts={"distribution": histogram(min_eps[correct & found], 0.0, eps_max),
                       "not_found": int(n_correct - found.sum()), "clean_wrong": int(n - n_correct)},
            notes=[f"min_eps is the smallest budget at which PGD ({cfg.norm}, {cfg.steps} steps) found a verified "
                   f"adversarial example, to within {tol:.4g}; samples not broken at eps_max = {eps_max:.4g} are "
                   "censored (NaN)."],
        )
