"""C&W L2 (corrected): per-sample L2 distances and robust accuracy at L2 budgets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.budgets import check_eps_list
from robaudit.probes.attacks.distance import DistanceAttack, DistanceConfig, distance_columns
from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel


class CWL2Probe(DistanceAttack):
    """Carlini–Wagner L2, minimising ‖δ‖₂² + c·f(x+δ), with torchattacks' faults fixed in the adapter:
    correct loss for negative logits, pixels at exactly 0 or 1 can move, per-sample early stopping,
    per-sample binary search over c."""

    name = "attack.cw_l2"
    version = "1"
    description = "C&W L2 (corrected: negative logits, 0/1 pixels, per-sample stopping): distances and robust accuracy"
    columns = distance_columns("C&W L2", "L2 pixels", ("l2",))

    @dataclass
    class Config(DistanceConfig):
        """Knobs of C&W L2."""

        c: float = field(default=1.0, metadata={"unit": "dimensionless (weight of the margin loss)"})
        """Initial trade-off constant c (then binary-searched per sample)."""
        kappa: float = field(default=0.0, metadata={"unit": "logit units"})
        """Confidence κ: stop pushing once the wrong class leads by κ logits."""
        steps: int = field(default=100, metadata={"unit": "steps"})
        """Adam steps per binary-search round (the reference preset's 100)."""
        lr: float = field(default=0.01, metadata={"unit": "pixel units per step"})
        """Adam learning rate, in pixel units per step."""
        binary_search_steps: int = field(default=5, metadata={"unit": "rounds"})
        """Rounds of binary search over c."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "l2")
            if not self.c > 0:
                raise ValueError(f"c must be positive, got {self.c}")
            if self.kappa < 0:
                raise ValueError(f"kappa must be non-negative, got {self.kappa}")
            if self.steps < 1 or self.binary_search_steps < 1:
                raise ValueError("steps and binary_search_steps must be at least 1")
            if not self.lr > 0:
                raise ValueError(f"lr must be positive, got {self.lr}")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost:
        """Per sample: ``binary_search_steps`` rounds of ``steps`` Adam steps (one forward+backward
        each) and one re-check forward of the result. An upper bound: a sample stops its round
        early once its loss stalls (Carlini's criterion, checked every ``steps // 10`` steps)."""
        return n_samples * Cost(forward=1, backward=config.binary_search_steps * config.steps)

    def norm(self) -> str:
        return "l2"

    def find(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, seed: int) -> ta.AttackOutput:
        cfg = self.config
        return ta.cw_l2(target, x, y, c=cfg.c, kappa=cfg.kappa, steps=cfg.steps, lr=cfg.lr,
                        binary_search_steps=cfg.binary_search_steps, seed=seed)

    def settings(self) -> dict[str, Any]:
        cfg = self.config
        return {"c": cfg.c, "kappa": cfg.kappa, "steps": cfg.steps, "lr": cfg.lr,
                "binary_search_steps": cfg.binary_search_steps, "box": "projected Adam in pixel space",
                "early_stopping": "per sample"}
