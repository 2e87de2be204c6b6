"""Consistency of adversarial examples under a parameter perturbation (Liu et al. 2020, Tables 1–2).

For a unit direction v in parameter space and a step a, PGD is run at θ + a·s·v and at θ − a·s·v
(s = 1 for ``absolute`` steps, as Liu et al.: ‖step‖₂ = a; s = ‖θ‖₂ for ``relative`` steps:
‖step‖₂ = a·‖θ‖₂), *with the same seed* (common random numbers: the two runs start from the same
random point), and per sample the cosine similarity of the two perturbations δ₊ = x_adv(θ + a·s·v) − x
and δ₋ = x_adv(θ − a·s·v) − x is taken over all pixels. With the same seed, a = 0 gives exactly 1
(Liu et al. report 0.86–0.98 at a = 0 because their two runs start independently). Each side also
gets its clean error and its adversarial error (PGD at that side's parameters, same ε).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robaudit_adversarial_landscape.operator import PGD, AdversarialHessianOperator, ShiftedNet

UNITS = ("absolute", "relative")


@dataclass
class SideResult:
    """One side (θ + a·s·v or θ − a·s·v): its clean and adversarial errors."""

    clean_error: float
    adv_error: float


@dataclass
class ConsistencyRow:
    """One step a along one direction.

    Attributes:
        a: the step, in the probe's unit.
        step_norm: ‖a·s·v‖₂, the Euclidean length of the parameter step.
        relative_step: step_norm / ‖θ‖₂.
        cosine: N per-sample cosines cos(δ₊, δ₋) (NaN where either perturbation is zero).
        plus, minus: the two sides' clean and adversarial errors.
    """

    a: float
    step_norm: float
    relative_step: float
    cosine: np.ndarray
    plus: SideResult
    minus: SideResult

    def summary(self) -> dict[str, object]:
        """JSON summary: mean cosine (over samples where it is defined), errors per side and their mean."""
        defined = self.cosine[np.isfinite(self.cosine)]
        return {
            "a": self.a, "step_norm": self.step_norm, "relative_step": self.relative_step,
            "cosine": float(defined.mean()) if defined.size else math.nan,
            "cosine_undefined": int(self.cosine.size - defined.size),
            "clean_error": {"plus": self.plus.clean_error, "minus": self.minus.clean_error,
                            "mean": 0.5 * (self.plus.clean_error + self.minus.clean_error)},
            "adv_error": {"plus": self.plus.adv_error, "minus": self.minus.adv_error,
                          "mean": 0.5 * (self.plus.adv_error + self.minus.adv_error)},
        }


def cosine_per_sample(delta_a: torch.Tensor, delta_b: torch.Tensor) -> np.ndarray:
    """cos(δa, δb) per sample over all pixels, in float64; NaN where either is zero.

    Written as dot / √(‖δa‖²·‖δb‖²) so that bitwise-equal perturbations give exactly 1
    (dot = ‖δa‖² = ‖δb‖² term for term, and √(s²) = s in IEEE arithmetic).
    """
    a = delta_a.detach().double().flatten(1).cpu()
    b = delta_b.detach().double().flatten(1).cpu()
    dot = (a * b).sum(dim=1)
    denom = torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1))
    cos = torch.where(denom > 0, dot / denom.clamp_min(1e-300), torch.full_like(dot, math.nan))
    return cos.numpy()


def unit_random_direction(size: int, seed: int) -> torch.Tensor:
    """A seeded Gaussian direction of unit Euclidean norm (float64, CPU)."""
    v = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


@torch.no_grad()
def _error(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    wrong = 0
    for start in range(0, len(y), batch_size):
        logits = net(x[start:start + batch_size])
        wrong += int((logits.argmax(dim=1) != y[start:start + batch_size]).sum())
    return wrong / len(y) if len(y) else math.nan


def perturbation_consistency(op: AdversarialHessianOperator, attack: PGD, direction: torch.Tensor,
                             steps: list[float], unit: str, x: torch.Tensor, y: torch.Tensor,
                             progress=None, label: str = "",  # noqa: ANN001
                             zero_row: ConsistencyRow | None = None) -> list[ConsistencyRow]:
    """Rows of :class:`ConsistencyRow` for each a in ``steps`` along ``direction`` (renormalised to unit norm).

    Args:
        op: supplies the eval-mode copy at θ (never written: shifted parameters go through
            ``functional_call``), its parameter layout, dtype, device and batch size.
        attack: the PGD used on both sides (same seed on both).
        direction: a flat P-vector.
        steps: the steps a (≥ 0).
        unit: ``absolute`` (‖step‖₂ = a) or ``relative`` (‖step‖₂ = a·‖θ‖₂).
        x, y: the clean samples (N×C×H×W pixels, N labels) on which perturbations are compared.
        zero_row: the a = 0 row of another direction with the same attack (a = 0 does not depend on
            the direction), reused instead of rerunning PGD twice at θ.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    theta = op.parameters_vector()
    theta_norm = float(theta.double().norm())
    scale = 1.0 if unit == "absolute" else theta_norm
    v = direction.detach().to("cpu", torch.float64)
    v = (v / v.norm()).to(op.device, op.dtype)
    x = x.to(op.device, op.dtype)
    y = y.to(op.device)
    rows = []
    it = steps if progress is None else progress(steps, f"adv_landscape: consistency {label}", len(steps))
    for a in it:
        if a == 0 and zero_row is not None:
            rows.append(zero_row)
            continue
        sides, deltas = [], []
        for sign in (1.0, -1.0):
            # a = 0 uses θ itself on both sides (no arithmetic), so the row checks PGD's determinism
            params = theta if a == 0 else theta + (sign * a * scale) * v
            net = ShiftedNet(op.net, op.names, op.split(params))
            x_adv = attack(net, x, y)
            sides.append(SideResult(_error(net, x, y, op.batch_size), _error(net, x_adv, y, op.batch_size)))
            deltas.append(x_adv - x)
        plus, minus = sides
        cos = cosine_per_sample(*deltas)
        step_norm = abs(a) * scale
        rows.append(ConsistencyRow(float(a), step_norm, step_norm / theta_norm if theta_norm else math.nan,
                                   cos, plus, minus))
    return rows
