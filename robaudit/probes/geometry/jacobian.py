"""Batched logit Jacobians and first-order input geometry with ``torch.func``.

One forward pass through the model gives a VJP function; K backward passes through it (one per
cotangent, all samples at once; ``vmap``-batched off the CPU) return K rows of every sample's
logit Jacobian (eval mode: samples do not interact, so the batch-summed VJP with a per-sample
cotangent gives each sample's own row). No Python loop runs over samples.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LogitGeometry:
    """First-order geometry of a batch of N samples with input dimension D (= C·H·W).

    Attributes:
        logits: N×c logits, float64.
        probs: N×c softmax probabilities, float64 (computed from the float64 logits).
        classes: N×m class indices of the Jacobian rows, by descending probability.
        rest_mass: N probability outside ``classes`` (0 when m = c), summed without cancellation.
        jacobian: N×m×D rows ∂z_k/∂x of the selected classes, in the model's dtype.
        loss_grad: N×D ∇x of the cross-entropy loss (nats per pixel unit).
        decision: N values of Yu's d(x) = z_y − max_{i≠y} z_i (logit units), float64.
        runner_up: N indices j* = argmax_{i≠y} z_i.
        decision_grad: N×D ∇x d = ∇z_y − ∇z_{j*}.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    classes: torch.Tensor
    rest_mass: torch.Tensor
    jacobian: torch.Tensor
    loss_grad: torch.Tensor
    decision: torch.Tensor
    runner_up: torch.Tensor
    decision_grad: torch.Tensor

    @property
    def full(self) -> bool:
        """Whether the Jacobian holds every class (m = c)."""
        return self.classes.shape[1] == self.logits.shape[1]

    def selected_probs(self) -> torch.Tensor:
        """N×m probabilities of the selected classes (float64)."""
        return self.probs.gather(1, self.classes)


def resolve_top_m(num_classes: int, top_m: int | None, max_full: int) -> int:
    """How many classes the Jacobian keeps: all when c ≤ ``max_full`` (or ``top_m`` ≥ c), else ``top_m``."""
    if top_m is None:
        return num_classes if num_classes <= max_full else min(num_classes, 10)
    return min(num_classes, top_m)


def decision_function(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Yu's d(x) = z_y − max_{i≠y} z_i and the runner-up class j*; logits N×c, y N."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    best = others.max(dim=1)
    return true - best.values, best.indices


def select_top_classes(probs: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The m most probable classes per sample and the probability mass outside them.

    Returns:
        (N×m class indices by descending probability, N rest mass summed over the excluded
        classes directly, so it stays accurate when it is tiny).
    """
    order = probs.argsort(dim=1, descending=True)
    sorted_p = probs.gather(1, order)
    rest = sorted_p[:, m:].sum(dim=1) if m < probs.shape[1] else torch.zeros(len(probs), dtype=probs.dtype)
    return order[:, :m], rest


def batched_vjp(vjp_fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], cotangents: torch.Tensor) -> torch.Tensor:
    """Rows wᵀ J_z of every sample for K cotangents w (K×N×c) from one VJP function: K×N×C×H×W.

    On the CPU the K backward passes run one after another through the one forward pass: with bitwise
    equal rows, measured 1.5× faster than ``vmap``'s batched pass on the quarter-width ResNet-18 (float32
    and float64, one thread) and as fast or faster on the demo CNN (``benchmarks/geometry_precision.py``).
    Elsewhere ``vmap`` runs them as one batched pass; an op without a batching rule falls back to one VJP
    per row.
    """
    if cotangents.device.type != "cpu":
        try:
            (rows,) = torch.func.vmap(vjp_fn)(cotangents)
            return rows
        except (RuntimeError, NotImplementedError) as exc:
            log.debug("vmap over the VJP failed (%s); computing the %d rows one by one", exc, len(cotangents))
    return torch.stack([vjp_fn(c)[0] for c in cotangents])


def logit_geometry(model: nn.Module, x: torch.Tensor, y: torch.Tensor, m: int,
                   logits_model: nn.Module | None = None) -> LogitGeometry:
    """Jacobian rows of the m most probable classes, ∇x CE, d(x) and ∇x d for a batch.

    One forward pass (``torch.func.vjp``) gives the logits and the VJP function. When m = c the
    loss and decision gradients are contractions of the Jacobian; otherwise two more cotangents
    (p − e_y and e_y − e_{j*}) ride along through the same VJP function.

    Args:
        model: the working model (its dtype sets the Jacobian's dtype).
        x: N×C×H×W pixels in [0, 1] (converted to the model's dtype).
        y: N labels.
        m: number of classes to keep (1 ≤ m ≤ c).
        logits_model: a float64 copy for the logits when ``model`` is float32: confident samples'
            1 − p_top ≈ e^{−Δz} inherits the logits' rounding relatively, so the probabilities
            behind the c×c step come from a float64 forward pass (one, against c backward ones).
    """
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    raw, vjp_fn = torch.func.vjp(model, x.to(dtype))
    if logits_model is None:
        logits64 = raw.detach().double()
    else:
        with torch.no_grad():
            logits64 = logits_model(x.to(torch.float64)).double()
    c = logits64.shape[1]
    probs = logits64.softmax(dim=1)
    classes, rest = select_top_classes(probs, m)
    decision, runner_up = decision_function(logits64, y)
    onehot_y = F.one_hot(y, c).double()
    loss_cot = probs - onehot_y
    decision_cot = onehot_y - F.one_hot(runner_up, c).double()
    full = m == c
    cot = F.one_hot(classes, c).double().transpose(0, 1)  # m×N×c
    if not full:
        cot = torch.cat([cot, loss_cot[None], decision_cot[None]])
    rows = batched_vjp(vjp_fn, cot.to(raw.dtype))
    n = len(x)
    flat = rows.reshape(rows.shape[0], n, -1).transpose(0, 1)  # N×K×D
    jac = flat[:, :m]
    if full:
        loss_grad = torch.einsum("nk,nkd->nd", loss_cot.gather(1, classes).to(jac.dtype), jac)
        decision_grad = torch.einsum("nk,nkd->nd", decision_cot.gather(1, classes).to(jac.dtype), jac)
    else:
        loss_grad, decision_grad = flat[:, m], flat[:, m + 1]
    return LogitGeometry(logits64, probs, classes, rest, jac, loss_grad, decision, runner_up, decision_grad)


def decision_gradient(model: nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d(x), ∇x d (N×C×H×W, model dtype) and the logits (float64) from one forward and one VJP."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.to(dtype)
    logits, vjp_fn = torch.func.vjp(model, x)
    z = logits.detach().double()
    d, runner_up = decision_function(z, y)
    c = z.shape[1]
    cot = F.one_hot(y, c) - F.one_hot(runner_up, c)
    (grad,) = vjp_fn(cot.to(logits.dtype))
    return d, grad, z


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇x of the per-sample cross-entropy (N×C×H×W, model dtype) from one forward and one VJP."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.to(dtype)
    logits, vjp_fn = torch.func.vjp(model, x)
    p = logits.detach().double().softmax(dim=1)
    (grad,) = vjp_fn((p - F.one_hot(y, p.shape[1]).double()).to(logits.dtype))
    return grad
