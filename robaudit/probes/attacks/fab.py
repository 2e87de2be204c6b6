"""FAB (untargeted, minimum norm): per-sample L∞ or L2 distances and robust accuracy at budgets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_eps_list, check_norm
from robaudit.probes.attacks.distance import DistanceAttack, DistanceConfig, distance_columns


class FABProbe(DistanceAttack):
    """FAB (Croce & Hein 2020): the closest adversarial example it finds per sample, at any distance."""

    name = "attack.fab"
    version = "1"
    description = "FAB minimum-norm attack (L∞ or L2): per-sample distances and robust accuracy at budgets"
    columns = distance_columns("FAB", "pixels, in the probe's norm (summary › norm: L∞ or L2)", ("linf", "l2"))

    @dataclass
    class Config(DistanceConfig):
        """Knobs of FAB."""

        norm: str = field(default="linf", metadata={"unit": "choice"})
        """``linf`` or ``l2``."""
        steps: int = field(default=100, metadata={"unit": "steps"})
        """Iterations per restart (the reference 100)."""
        restarts: int = field(default=1, metadata={"unit": "restarts"})
        """Restarts (later ones start from a random point)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            self.norm = check_norm(self.norm)
            check_eps_list(self.eps, self.norm)
            if self.steps < 1 or self.restarts < 1:
                raise ValueError("steps and restarts must be at least 1")

    def norm(self) -> str:
        return self.config.norm

    def find(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, seed: int) -> ta.AttackOutput:
        cfg = self.config
        k = int(target.model.num_classes) if hasattr(target.model, "num_classes") else 10
        return ta.fab_min_norm(target, x, y, cfg.norm, cfg.steps, cfg.restarts, k, seed)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.config.steps, "restarts": self.config.restarts, "targeted": False}
