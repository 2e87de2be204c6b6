"""FAB (untargeted, minimum norm): per-sample L∞ or L2 distances and robust accuracy at budgets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_eps_list, check_norm
from robaudit.probes.attacks.distance import DistanceAttack, DistanceConfig, distance_columns
from robaudit.probes.cost import Cost, Unknown, class_count_unknown
from robaudit.threat_model import ThreatModel


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

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per sample: a clean forward, and per restart a prediction forward, then per step one
        forward with K backward passes through it (the gradient of every logit; counted as K
        forward+backward passes, an upper bound on its one forward) and a prediction forward, and a
        re-check forward of the restart's result; then our own re-check forward. An upper bound:
        later restarts attack only the samples not yet broken, and only clean-correct samples are
        attacked."""
        if num_classes is None:
            return class_count_unknown()
        per_restart = Cost(forward=2 + config.steps, backward=config.steps * num_classes)
        return n_samples * (Cost(forward=2) + config.restarts * per_restart)

    def norm(self) -> str:
        return self.config.norm

    def find(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, seed: int) -> ta.AttackOutput:
        cfg = self.config
        k = int(target.model.num_classes) if hasattr(target.model, "num_classes") else 10
        return ta.fab_min_norm(target, x, y, cfg.norm, cfg.steps, cfg.restarts, k, seed)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.config.steps, "restarts": self.config.restarts, "targeted": False}
