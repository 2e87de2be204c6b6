"""Re-check what an attack returns and score it ourselves: never trust an attack's success flag.

A candidate is *valid* when it is finite, inside [0, 1] and within ε of the clean image in the
attack's norm (tolerance :data:`NORM_ATOL` pixel units plus a relative 1e-6 for float32
round-off). Invalid candidates are repaired conservatively: non-finite samples fall back to
the clean image, the rest are projected onto the ε-ball and the box, and predictions are
recomputed on what remains, so a reported success is always a verified adversarial example.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NORM_ATOL = 1e-6
"""Absolute tolerance, in pixel units, on ‖x_adv − x‖ ≤ ε (float32 round-off of x + ε·s)."""


def distances(x: torch.Tensor, adv: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ‖adv − x‖ in the L∞ or L2 norm over all pixels (N,), in float64."""
    delta = (adv.double() - x.double()).flatten(1)
    return delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)


def project(x: torch.Tensor, adv: torch.Tensor, eps: float, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Repair candidates: (valid candidates, N bools marking those that needed repair).

    Non-finite samples become the clean image; the rest are projected onto the ε-ball (L∞:
    clamp; L2: radial scaling) and then clipped to [0, 1], which keeps them in the ball.
    """
    return project_per_sample(x, adv, torch.full((len(x),), float(eps), dtype=torch.float64), norm)


def project_per_sample(x: torch.Tensor, adv: torch.Tensor, eps: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`project` with one budget per sample (``eps``: (N,), pixel units; ∞ allowed)."""
    shape = (-1, *[1] * (x.dim() - 1))
    eps64 = eps.detach().double().cpu()
    adv = adv.detach().to(x.dtype)
    finite = torch.isfinite(adv.flatten(1)).all(dim=1)
    adv = torch.where(finite.view(shape), adv, x)
    dist = distances(x, adv, norm).cpu()
    over = (dist > eps64 * (1 + 1e-6) + NORM_ATOL).to(x.device)
    outside_box = (adv.flatten(1).amin(dim=1) < 0) | (adv.flatten(1).amax(dim=1) > 1)
    invalid = ~finite | over | outside_box
    if bool(over.any()):
        e = eps64.clamp(max=1e30).to(x.device, x.dtype).view(shape)
        if norm == "linf":
            repaired = torch.minimum(torch.maximum(adv, x - e), x + e)
        else:
            scale = torch.clamp(eps64 / dist.clamp_min(1e-30), max=1.0).to(x.device, x.dtype).view(shape)
            repaired = x + (adv - x) * scale
        adv = torch.where(over.view(shape), repaired, adv)
    adv = adv.clamp(0.0, 1.0)
    return adv, invalid


@dataclass
class Scored:
    """Our own verdict on a batch of (re-checked) inputs.

    Attributes:
        correct: N bools, argmax of the logits equals the label.
        loss: N cross-entropies in nats.
        margin: N logit margins z_y − max_{j≠y} z_j (positive when correct).
    """

    correct: torch.Tensor
    loss: torch.Tensor
    margin: torch.Tensor


def score_logits(logits: torch.Tensor, y: torch.Tensor) -> Scored:
    """:class:`Scored` from logits N×K (computed in float64, returned on CPU)."""
    z = logits.detach().double().cpu()
    y = y.cpu()
    true = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return Scored(correct=z.argmax(dim=1) == y, loss=F.cross_entropy(z, y, reduction="none"), margin=true - other)


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Scored:
    """Forward ``x`` (no grad) through ``model`` and score it against ``y``."""
    with torch.no_grad():
        return score_logits(model(x), y)
