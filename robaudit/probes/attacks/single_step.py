"""Single-step attacks of Yao et al.'s Table 5: FGSM (L∞) and L2GRAD (L2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_eps_list
from robaudit.probes.attacks.sweep import SweepAttack, SweepConfig, sweep_columns
from robaudit.probes.cost import Cost


class FGSMProbe(SweepAttack):
    """FGSM: x + ε·sign(∇ₓ CE), clipped to [0, 1], at every L∞ budget of the sweep."""

    name = "attack.fgsm"
    version = "2"
    description = "FGSM (one signed-gradient step) robust accuracy over an L∞ ε sweep, Wilson CIs, sanity flags"
    standard = True
    norm = "linf"
    columns = sweep_columns("FGSM", "linf")

    @dataclass
    class Config(SweepConfig):
        """Knobs of FGSM: the ε list and the shared sweep knobs."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "linf")

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        return ta.fgsm(target, x, y, eps, seed)

    def settings(self) -> dict[str, Any]:
        return {"steps": 1, "step_size": "eps"}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost:
        """One gradient step: one forward+backward per sample."""
        return Cost(backward=1)


class L2GradProbe(SweepAttack):
    """L2GRAD: x + ε·g/‖g‖₂ (g = ∇ₓ CE), clipped to [0, 1], at every L2 budget of the sweep."""

    name = "attack.l2grad"
    version = "2"
    description = "L2GRAD (one normalised-gradient step, Yao Table 5) robust accuracy over an L2 ε sweep"
    norm = "l2"
    columns = sweep_columns("L2GRAD", "l2")

    @dataclass
    class Config(SweepConfig):
        """Knobs of L2GRAD: the ε list and the shared sweep knobs."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "l2")

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: ta.Seeds) -> ta.AttackOutput:
        return ta.l2grad(target, x, y, eps, seed)

    def settings(self) -> dict[str, Any]:
        return {"steps": 1, "step_size": "eps"}

    @classmethod
    def attack_cost(cls, config: Any) -> Cost:
        """One gradient step: one forward+backward per sample."""
        return Cost(backward=1)
