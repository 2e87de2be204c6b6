"""Re-check what an attack returns and score it ourselves: never trust an attack's success flag.

A candidate is *valid* when it is finite, inside [0, 1] and within ε of the clean image in the
attack's norm (tolerance :data:`NORM_ATOL` pixel units plus a relative 1e-6 for float32
round-off). Invalid candidates are repaired conservatively: non-finite samples fall back to
the clean image, the rest are projected onto the ε-ball and the box, and predictions are
recomputed on what remains, so a reported success is always a verified adversarial example.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

NORM_ATOL = 1e-6
"""Absolute tolerance, in pixel units, on ‖x_adv − x‖ ≤ ε (float32 round-off of x + ε·s)."""


def distances(x: torch.Tensor, adv: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ‖adv − x‖ in the L∞ or L2 norm over all pixels (N,), in float64, on x's device.

    The difference is taken in x's precision (float32 or wider): a correctly rounded subtraction
    has a relative error of at most 2⁻²⁴ per pixel, so each norm carries at most that relative
    error (≪ the 1e-6 tolerance below); the L2 sum of squares is accumulated in float64.
    """
    if x.dtype not in (torch.float32, torch.float64):
        x, adv = x.float(), adv.float()
    delta = (adv - x).flatten(1)
    if norm == "linf":
        return delta.abs().amax(dim=1).double()
    return delta.double().norm(dim=1)


def project(x: torch.Tensor, adv: torch.Tensor, eps: float, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Repair candidates: (valid candidates, N bools marking those that needed repair).

    Non-finite samples become the clean image; the rest are projected onto the ε-ball (L∞:
    clamp; L2: radial scaling) and then clipped to [0, 1], which keeps them in the ball.
    """
    return project_per_sample(x, adv, float(eps), norm)


def project_per_sample(x: torch.Tensor, adv: torch.Tensor, eps: torch.Tensor | float,
                       norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`project` with one budget per sample (``eps``: (N,) or one number, pixel units; ∞ allowed).

    Every candidate is checked — inside [0, 1] (which a NaN or ±∞ pixel fails), within ε in
    ``norm`` — with two reductions over the pixels and one host synchronisation. Only when some
    candidate is invalid is anything copied or repaired; valid candidates come back as they are.
    """
    shape = (-1, *[1] * (x.dim() - 1))
    adv = adv.detach().to(x.dtype)
    if not isinstance(eps, torch.Tensor) and len(x):
        # one budget for the batch: whole-batch extremes decide in six operations whether every
        # candidate is valid (the usual case); otherwise fall through to the per-sample check
        low_all, high_all = torch.aminmax(adv)
        delta = adv - x if x.dtype in (torch.float32, torch.float64) else adv.float() - x.float()
        worst = delta.abs().max() if norm == "linf" else delta.flatten(1).double().norm(dim=1).max()
        low_v, high_v, worst_v = torch.stack([low_all.double(), high_all.double(), worst.double()]).tolist()
        if low_v >= 0 and high_v <= 1 and worst_v <= float(eps) * (1 + 1e-6) + NORM_ATOL:
            return adv, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    low, high = torch.aminmax(adv.flatten(1), dim=1)  # NaN propagates, ±inf shows: both fail the box test
    in_box = (low >= 0) & (high <= 1)
    dist = distances(x, adv, norm)
    if isinstance(eps, torch.Tensor):
        eps64: torch.Tensor | float = eps.detach().to(x.device, torch.float64)
    else:
        eps64 = float(eps)
    within = dist <= eps64 * (1 + 1e-6) + NORM_ATOL
    valid = in_box & within
    if bool(valid.all()):
        return adv, ~valid
    finite = torch.isfinite(low) & torch.isfinite(high)
    over = finite & ~within
    adv = torch.where(finite.view(shape), adv, x)
    if bool(over.any()):
        eps_t = torch.as_tensor(eps64, dtype=torch.float64, device=x.device).expand(len(x))
        e = eps_t.clamp(max=1e30).to(x.dtype).view(shape)
        if norm == "linf":
            repaired = torch.minimum(torch.maximum(adv, x - e), x + e)
        else:
            scale = torch.clamp(eps_t / dist.clamp_min(1e-30), max=1.0).to(x.dtype).view(shape)
            repaired = x + (adv - x) * scale
        adv = torch.where(over.view(shape), repaired, adv)
    adv = adv.clamp(0.0, 1.0)
    return adv, ~valid


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
    """:class:`Scored` from logits N×K (computed in float64, returned on CPU).

    N×K is tiny next to the forward pass that made it, so this runs in NumPy, where each step
    costs microseconds instead of a torch dispatch each.
    """
    z = logits.detach().to("cpu", torch.float64).numpy()
    labels = y.detach().cpu().numpy()
    rows = np.arange(len(labels))
    true = z[rows, labels]
    others = z.copy()
    others[rows, labels] = -np.inf
    top = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))  # log Σ exp z, stable
    return Scored(correct=torch.from_numpy(z.argmax(axis=1) == labels),
                  loss=torch.from_numpy(lse - true), margin=torch.from_numpy(true - others.max(axis=1)))


def forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x`` (no grad), left on the device: callers batch them up for :func:`score_logits`."""
    with torch.no_grad():
        return model(x).detach()


def predicts_correctly(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """N bools on the device: the model's argmax on ``x`` (no grad) equals ``y``."""
    with torch.no_grad():
        return model(x).argmax(dim=1) == y


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Scored:
    """Forward ``x`` (no grad) through ``model`` and score it against ``y``."""
    with torch.no_grad():
        return score_logits(model(x), y)
