"""Loss landscapes in parameter space (Yao et al. Figs 2, 3, 5, 7; Li et al. 2018).

All curves are the mean cross-entropy J (nats) over a sample set, evaluated on the eval-mode
copy the HVP operator owns, with the parameters replaced through ``torch.func.functional_call``
(the copy's own parameters are never written):

* :func:`line` — J(θ + a·d) for a direction d: the top eigenvector v1 (unit norm, so ``a`` is the
  Euclidean length of the parameter step) or a filter-normalised random direction;
* :func:`plane` — J(θ + a·v1 + b·v2);
* :func:`interpolation` — J((1 − t)·θ + t·θ') between the audit checkpoint θ and another θ' of the
  same architecture (Yao Fig 5: original → robust);
* :func:`quadratic_fit` — J(a) ≈ c0 + c1·a + ½·c2·a² by least squares; along v1, c2 should
  recover λ1 (the second directional derivative along a unit eigenvector).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.samples import SampleSet

Progress = Callable[[Iterable[Any], str, int | None], Iterator[Any]]


def _no_progress(iterable: Iterable[Any], label: str, total: int | None = None) -> Iterator[Any]:
    yield from iterable


class LossSurface:
    """Evaluates J at shifted parameters on the operator's private model copy.

    Args:
        op: the HVP operator (its eval-mode copy, dtype, device and batch size are used).
        progress: ``progress(iterable, label, total)`` for loops over grid points.
    """

    def __init__(self, op: HessianOperator, progress: Progress | None = None) -> None:
        self.op = op
        self.progress = progress or _no_progress
        self.theta = op.parameters_vector()
        self.evaluations = 0

    @torch.no_grad()
    def loss(self, samples: SampleSet, params: torch.Tensor | None = None,
             buffers: Mapping[str, torch.Tensor] | None = None) -> float:
        """J at flat parameters ``params`` (default θ) over ``samples``, in nats (mean over samples)."""
        op = self.op
        flat = self.theta if params is None else params.to(op.device, op.dtype)
        mapping: dict[str, torch.Tensor] = dict(zip(op.names, op.split(flat)))
        if buffers:
            mapping.update(buffers)
        total = 0.0
        for start in range(0, len(samples), op.batch_size):
            x = samples.x[start:start + op.batch_size].to(op.device, op.dtype)
            y = samples.y[start:start + op.batch_size].to(op.device)
            logits = torch.func.functional_call(op.net, mapping, (x,))
            total += float(F.cross_entropy(logits, y, reduction="sum").double())
        self.evaluations += 1
        return total / len(samples)

    def line(self, samples: SampleSet, direction: torch.Tensor, alphas: np.ndarray, label: str) -> list[float]:
        """J(θ + a·d) for each a in ``alphas`` (d as given, not renormalised)."""
        d = direction.to(self.op.device, self.op.dtype)
        return [self.loss(samples, self.theta + float(a) * d)
                for a in self.progress(alphas, f"curvature: {label}", len(alphas))]

    def plane(self, samples: SampleSet, d1: torch.Tensor, d2: torch.Tensor, alphas: np.ndarray,
              betas: np.ndarray) -> list[list[float]]:
        """J(θ + a·d1 + b·d2) as rows over b, columns over a."""
        d1 = d1.to(self.op.device, self.op.dtype)
        d2 = d2.to(self.op.device, self.op.dtype)
        points = [(b, a) for b in betas for a in alphas]
        values = [self.loss(samples, self.theta + float(a) * d1 + float(b) * d2)
                  for b, a in self.progress(points, "curvature: 2-D landscape", len(points))]
        return [values[i * len(alphas):(i + 1) * len(alphas)] for i in range(len(betas))]


def filter_normalised_direction(op: HessianOperator, generator: torch.Generator) -> torch.Tensor:
    """A random direction with each filter scaled to the norm of the same filter of θ (Li et al. 2018).

    A Gaussian direction is drawn for every parameter; for a weight with ≥ 2 dimensions, each
    slice along dimension 0 (a conv filter or a linear layer's output row) is rescaled to the
    norm of the corresponding slice of θ. One-dimensional parameters (biases, normalisation
    scales and shifts) get 0, as Li et al. do. Returns a flat P-vector (operator dtype, CPU).
    """
    parts = []
    for p in op.params:
        w = p.detach().to("cpu", torch.float64)
        if w.dim() <= 1:
            parts.append(torch.zeros(w.numel(), dtype=torch.float64))
            continue
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-30)
        w_norm = w.flatten(1).norm(dim=1)
        scale = (w_norm / d_norm).view(-1, *([1] * (w.dim() - 1)))
        parts.append((d * scale).reshape(-1))
    return torch.cat(parts).to(op.dtype)


@dataclass
class QuadraticFit:
    """Least-squares fit J(a) ≈ c0 + c1·a + ½·c2·a² on points a ∈ [−h, h].

    Attributes:
        curvature: c2, the fitted second derivative (nats per unit² of ``a``).
        slope: c1, the fitted first derivative (≈ dᵀ∇J).
        intercept: c0 (≈ J(θ)).
        radius: h.
        rms_residual: root-mean-square misfit of the quadratic (nats).
        points: how many points were fitted.
    """

    curvature: float
    slope: float
    intercept: float
    radius: float
    rms_residual: float
    points: int


def quadratic_fit(alphas: np.ndarray, losses: np.ndarray) -> QuadraticFit:
    """Fit J(a) ≈ c0 + c1·a + ½·c2·a² (at least 3 points)."""
    a = np.asarray(alphas, dtype=np.float64)
    j = np.asarray(losses, dtype=np.float64)
    design = np.stack([np.ones_like(a), a, 0.5 * a * a], axis=1)
    coef, *_ = np.linalg.lstsq(design, j, rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - j) ** 2)))
    return QuadraticFit(float(coef[2]), float(coef[1]), float(coef[0]), float(np.max(np.abs(a))), rms, len(a))


def auto_radius(curvature: float, rise: float) -> float:
    """The step h where ½·|λ|·h² = ``rise`` nats (the quadratic model's loss increase)."""
    return math.sqrt(2.0 * rise / abs(curvature)) if curvature else 1.0


def interpolation_state(op: HessianOperator, other: Mapping[str, torch.Tensor],
                        t: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Parameters and floating buffers of the network at (1 − t)·θ + t·θ'.

    ``other`` is the other network's state dict (keys of the audit model's ``net``). Floating
    buffers (BatchNorm running statistics) are interpolated too; integer buffers and the
    audit model's normalisation are kept from the audit model.
    """
    theta = op.parameters_vector()
    theta_other = _flat_other(op, other)
    params = (1.0 - t) * theta + t * theta_other
    buffers = {}
    for name, buf in op.net.named_buffers():
        key = name[len("net."):] if name.startswith("net.") else None
        if key is None or key not in other or not buf.is_floating_point():
            continue
        buffers[name] = (1.0 - t) * buf + t * other[key].to(buf.device, buf.dtype)
    return params, buffers


def _flat_other(op: HessianOperator, other: Mapping[str, torch.Tensor]) -> torch.Tensor:
    parts = []
    for name in op.names:
        key = name[len("net."):] if name.startswith("net.") else name
        parts.append(other[key].detach().to(op.device, op.dtype))
    return op.flatten(parts)
