"""Iterative attacks: BIM / FGSM-k (L∞), PGD L∞ (APGD-CE by default) and PGD L2.

torchattacks' PGD defaults (2/255 per step, 10 steps) are sized for CIFAR at 8/255 and
overstate robustness on digits at ε = 0.1 by about 20 points; here the step is always a
fraction of ε: BIM uses ε/k (Yao's FGSM-10), PGD 2.5·ε/steps (Madry et al.) unless configured.
The L∞ sweep's default is APGD-CE (Croce & Hein's Auto-PGD on the cross-entropy, AutoAttack's
first stage), which sets its own step sizes: on an adversarially trained model it is stronger
than Madry's PGD at the same number of steps (docs/attacks.md, benchmarks/attack_strength.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_eps_list
from robaudit.probes.seeding import derive_seed
from robaudit.probes.attacks.sweep import SweepAttack, SweepConfig, sweep_columns
from robaudit.probes.attacks.verify import predicts_correctly, project
from robaudit.probes.base import Requirement
from robaudit.probes.cost import Cost


METHODS = ("apgd-ce", "pgd")
"""``attack.pgd_linf``'s methods: APGD-CE (the default) and Madry's PGD (version 1's attack)."""


def _per_restart(seed: ta.Seeds, restart: int, rows: torch.Tensor | None = None) -> ta.Seeds:
    """The seed(s) of one restart: derived from the batch seed, or from each sample's (``rows``: the
    samples of the batch attacked again)."""
    if isinstance(seed, int):
        return derive_seed(seed, restart)
    picked = seed if rows is None else [seed[int(i)] for i in rows.nonzero().flatten().tolist()]
    return [derive_seed(s, restart) for s in picked]


def _check_steps(steps: int, step_fraction: float | None, restarts: int = 1) -> None:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if step_fraction is not None and not 0 < step_fraction <= 2:
        raise ValueError(f"step_fraction is the step size as a fraction of eps, in (0, 2]; got {step_fraction}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")


class BIMProbe(SweepAttack):
    """BIM / FGSM-k: k signed-gradient steps of ε/k from the clean image, projected each step."""

    name = "attack.bim"
    version = "2"
    description = "BIM / FGSM-k (k steps of eps/k; Yao's FGSM-10) over an L∞ ε sweep, with sanity flags"
    norm = "linf"
    iterative = True
    single_step_peer = "attack.fgsm"
    requires = (Requirement("attack.fgsm", optional=True),)
    columns = sweep_columns("BIM", "linf")

    @dataclass
    class Config(SweepConfig):
        """Knobs of BIM."""

        steps: int = field(default=10, metadata={"unit": "steps"})
        """k, the number of steps."""
        step_fraction: float | None = field(default=None, metadata={"unit": "fraction of ε"})
        """Step size as a fraction of ε; ``None`` means 1/steps (k steps of ε/k)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "linf")
            _check_steps(self.steps, self.step_fraction)

    def _fraction(self) -> float:
        return self.config.step_fraction if self.config.step_fraction is not None else 1.0 / self.config.steps

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        return ta.bim(target, x, y, eps, alpha=self._fraction() * eps, steps=self.config.steps, seed=seed)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.config.steps, "step_fraction": self._fraction(), "random_start": False}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost:
        """k steps: k forward+backward passes per sample."""
        return Cost(backward=config.steps)


class _PGDBase(SweepAttack):
    iterative = True

    def _fraction(self) -> float:
        return self.config.step_fraction if self.config.step_fraction is not None else 2.5 / self.config.steps

    def _one(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        raise NotImplementedError

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        """PGD with restarts: each restart attacks only the samples that every earlier one left
        correctly classified (verified here), and replaces their candidate."""
        out = self._one(target, x, y, eps, _per_restart(seed, 0))
        adv = out.adv.clone()
        for r in range(1, self.config.restarts):
            checked, _ = project(x, adv, eps, self.norm)
            still = predicts_correctly(target.model, checked, y)
            if not bool(still.any()):
                break
            known, (clean_x, clean_y) = target.clean_correct, target.clean_batch
            xs, ys = x[still], y[still]
            if known is not None and clean_x is x and clean_y is y:  # the verdict is this batch's: narrow it
                known = known[still.cpu()]
            else:
                known = None
            with target.known_clean(known, xs, ys):
                again = self._one(target, xs, ys, eps, _per_restart(seed, r, still.cpu()))
            adv[still] = again.adv
        return ta.AttackOutput(adv, out.first_grad_bad)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.config.steps, "step_fraction": self._fraction(),
                "random_start": self.config.random_start, "restarts": self.config.restarts}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost:
        """``steps`` forward+backward passes per restart, and a check forward before each later
        restart; later restarts attack only survivors, so this is an upper bound."""
        return Cost(forward=config.restarts - 1, backward=config.steps * config.restarts)


@dataclass
class _PGDConfig(SweepConfig):
    steps: int = field(default=20, metadata={"unit": "steps"})
    """Number of steps per restart."""
    step_fraction: float | None = field(default=None, metadata={"unit": "fraction of ε"})
    """Step size as a fraction of ε; ``None`` means 2.5/steps (Madry et al.)."""
    random_start: bool = True
    """Start from a uniformly random point of the ε-ball (seeded)."""
    restarts: int = field(default=1, metadata={"unit": "restarts"})
    """Independent random restarts; a sample counts as broken if any restart breaks it."""


class PGDLinfProbe(_PGDBase):
    """L∞ PGD over an ε sweep: APGD-CE (default) or Madry's PGD with a step that scales with ε."""

    name = "attack.pgd_linf"
    version = "2"
    description = ("L∞ PGD over an ε sweep: APGD-CE (default) or Madry's PGD (method = pgd), restarts, "
                   "Wilson CIs, sanity flags")
    standard = True
    norm = "linf"
    single_step_peer = "attack.fgsm"
    requires = (Requirement("attack.fgsm", optional=True),)
    columns = sweep_columns("PGD L∞", "linf")

    @dataclass
    class Config(_PGDConfig):
        """Knobs of PGD L∞."""

        method: str = field(default="apgd-ce", metadata={"unit": "choice"})
        """``apgd-ce``: torchattacks' APGD on the cross-entropy (AutoAttack's first stage; it sets its
        own step sizes and always starts at a random point); ``pgd``: Madry's PGD with ``step_fraction``
        and ``random_start`` (version 1's attack)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "linf")
            _check_steps(self.steps, self.step_fraction, self.restarts)
            if self.method not in METHODS:
                raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
            if self.method == "apgd-ce" and (self.step_fraction is not None or not self.random_start):
                raise ValueError("step_fraction and random_start = false apply to method = \"pgd\"; APGD-CE sets "
                                 "its own step sizes from a random start (set method = \"pgd\" to use them)")

    def _one(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        if self.config.method == "apgd-ce":
            return ta.apgd(target, x, y, eps, "linf", steps=self.config.steps, seed=seed)
        return ta.pgd_linf(target, x, y, eps, alpha=self._fraction() * eps, steps=self.config.steps,
                           random_start=self.config.random_start, seed=seed)

    def settings(self) -> dict[str, Any]:
        if self.config.method == "apgd-ce":
            return {"method": "apgd-ce", "steps": self.config.steps, "step_fraction": None, "random_start": True,
                    "restarts": self.config.restarts}
        return {"method": "pgd", **super().settings()}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost:
        """PGD: as :meth:`_PGDBase.attack_cost`. APGD-CE: per restart one clean-check forward and
        ``steps + 1`` forward+backward passes (its first gradient is taken at the random start), and a
        check forward before each later restart; an upper bound, as for PGD. The clean check is made on
        every call only for a network that draws random numbers in its forward pass; otherwise only the
        session's first call makes it, and the others reuse the audit's clean verdict
        (:func:`~robaudit.probes.attacks.torchattacks_adapter.apgd`)."""
        if config.method != "apgd-ce":
            return super().attack_cost(config)
        per_restart = Cost(forward=1, backward=config.steps + 1)
        return per_restart * config.restarts + Cost(forward=config.restarts - 1)


class PGDL2Probe(_PGDBase):
    """PGD L2 over an ε sweep; the step length scales with ε."""

    name = "attack.pgd_l2"
    version = "2"
    description = "PGD L2 (random start, step = fraction of eps, restarts) over an ε sweep, Wilson CIs, sanity flags"
    norm = "l2"
    single_step_peer = "attack.l2grad"
    requires = (Requirement("attack.l2grad", optional=True),)
    columns = sweep_columns("PGD L2", "l2")

    @dataclass
    class Config(_PGDConfig):
        """Knobs of PGD L2."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "l2")
            _check_steps(self.steps, self.step_fraction, self.restarts)

    def _one(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        return ta.pgd_l2(target, x, y, eps, alpha=self._fraction() * eps, steps=self.config.steps,
                         random_start=self.config.random_start, seed=seed)
