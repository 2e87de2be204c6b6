"""Making a model twice differentiable without changing a single output bit.

``torch`` has no derivative for ``hardsigmoid_backward``, so any second-order probe
(Hessian-vector products, input Hessians) fails on MobileNetV3-style nets. The modules
here compute exactly the same numbers (the CPU kernels evaluate ``clamp(x + 3, 0, 6) / 6``)
through ``relu6``, which autograd can differentiate twice.

Fused attention (``F.scaled_dot_product_attention``'s flash/efficient kernels) has no
double backward either: timm's attention modules carry a ``fused_attn`` flag that is
turned off here, and the audit model runs SDPA calls on the math kernel.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


class ReLU6Hardsigmoid(nn.Module):
    """``relu6(x + 3) / 6``: equal to ``nn.Hardsigmoid`` and twice differentiable a.e.

    Shape: any; elementwise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class ReLU6Hardswish(nn.Module):
    """``x * relu6(x + 3) / 6``: equal to ``nn.Hardswish`` and twice differentiable a.e.

    Shape: any; elementwise.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


# Exact types only: a subclass may override forward, so it is not known to be equal.
_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Hardsigmoid: ReLU6Hardsigmoid,
    nn.Hardswish: ReLU6Hardswish,
}


def swap_second_order_modules(net: nn.Module) -> list[str]:
    """Replace, in place, modules without a second derivative by exactly equal ones.

    Returns:
        One ``"path: Hardsigmoid → ReLU6Hardsigmoid"`` string per replaced module.
    """
    swaps: list[str] = []
    for parent_path, parent in list(net.named_modules()):
        for child_name, child in list(parent.named_children()):
            replacement = _SWAPS.get(type(child))
            if replacement is None:
                continue
            setattr(parent, child_name, replacement())
            path = f"{parent_path}.{child_name}" if parent_path else child_name
            swaps.append(f"{path}: {type(child).__name__} → {replacement.__name__}")
    if swaps:
        logger.info("swapped %d modules for twice-differentiable equivalents", len(swaps))
    return swaps


def disable_fused_attention(net: nn.Module) -> list[str]:
    """Turn off the ``fused_attn`` flag of every (timm) attention module, in place.

    Returns:
        The module paths whose flag was on.
    """
    changed = []
    for path, module in net.named_modules():
        flag = getattr(module, "fused_attn", None)
        if isinstance(flag, (bool, int)) and flag:
            module.fused_attn = False
            changed.append(path)
    return changed


def torchscript_blockers(net: nn.Module) -> list[str]:
    """Paths of Hardsigmoid modules inside a TorchScript model (they cannot be swapped)."""
    return [
        path
        for path, module in net.named_modules()
        if getattr(module, "original_name", None) == "Hardsigmoid"
    ]
