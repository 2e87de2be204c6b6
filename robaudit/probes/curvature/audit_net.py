"""The private copy of the audit model that Hessian-vector products run on, and its guards.

Double backward breaks or lies on some models (measured; see ``docs/curvature.md``):

* BatchNorm in train mode runs but gives a 71× different HVP and overwrites the running
  statistics — the copy is put in eval mode and every module is checked after the switch;
* under bf16 autocast the HVP runs with 1.9 % error — HVPs run with autocast disabled;
* ``torch.compile`` graphs have no reliable double backward, and reentrant activation
  checkpointing runs its block without a graph, so ``autograd.grad`` silently returns no gradient
  for the block's parameters — such models are rejected with a :class:`~robaudit.errors.ProbeError`
  (non-reentrant checkpointing is exact and allowed);
* timm fused attention and ``Hardsigmoid`` / ``Hardswish`` have no double backward — the loader
  turns fused attention off and swaps the modules for exactly equal forms when a probe declares
  ``needs_double_backward``; if a second derivative still fails, :func:`second_order_error`
  turns the autograd error into one line with the fix.

The caller's model is never touched; the engine proves it around every probe
(:class:`robaudit.engine.model_guard.ModelGuard`).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from robaudit.errors import InternalError, ProbeError
from robaudit.models.audit_model import AuditModel

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

_CHECKPOINT_ATTRS = ("grad_checkpointing", "gradient_checkpointing")
_CHECKPOINT_MESSAGES = ("checkpointing is not compatible",)
_NO_SECOND_DERIVATIVE = ("derivative for", "not implemented", "does not require grad", "double backward")


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` → the torch dtype (ValueError otherwise)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def reject_unsupported(model: nn.Module) -> None:
    """Raise :class:`ProbeError` for compiled or gradient-checkpointed models.

    ``torch.compile`` wrappers (``OptimizedModule``) and modules with a ``grad_checkpointing`` /
    ``gradient_checkpointing`` flag set (timm, Hugging Face) are detected here; checkpointing done
    inside ``forward`` is only visible when the second backward fails (see
    :func:`second_order_error`).
    """
    for path, module in model.named_modules():
        if type(module).__name__ == "OptimizedModule" or hasattr(module, "_orig_mod"):
            raise ProbeError(
                f"the model (at '{path or 'root'}') is wrapped by torch.compile, whose graphs have no reliable "
                "double backward",
                fix="audit the uncompiled model (load its state dict with --arch; robaudit strips '_orig_mod.')",
            )
        for attr in _CHECKPOINT_ATTRS:
            if getattr(module, attr, False) is True:
                raise ProbeError(
                    f"the model uses gradient checkpointing ('{path or 'root'}.{attr}' is on); reentrant "
                    "checkpointing has no double backward",
                    fix="load the model with checkpointing off (timm: model.set_grad_checkpointing(False))",
                )


def second_order_error(exc: RuntimeError) -> ProbeError | None:
    """A :class:`ProbeError` explaining a failed second derivative, or ``None`` if ``exc`` is another error."""
    text = str(exc)
    first = (text.splitlines() or [""])[0]
    lowered = text.lower()
    if any(m in lowered for m in _CHECKPOINT_MESSAGES):
        return ProbeError(
            f"the model uses activation checkpointing, which has no double backward ({first})",
            fix="audit the model with checkpointing turned off",
        )
    if "scaled_dot_product" in lowered or "attention" in lowered:
        return ProbeError(
            f"fused attention has no double backward ({first})",
            fix="let robaudit build the model (timm sources get fused attention off for curvature probes), "
            "or set the attention modules' fused_attn = False",
        )
    if any(m in lowered for m in _NO_SECOND_DERIVATIVE):
        return ProbeError(
            f"the model has no second derivative ({first})",
            fix="replace the module without a double backward by an exactly equal differentiable form "
            "(robaudit swaps Hardsigmoid/Hardswish itself)",
        )
    return None


def reject_reentrant_checkpoint(loss: torch.Tensor) -> None:
    """Raise :class:`ProbeError` if the autograd graph of ``loss`` contains reentrant checkpointing.

    Reentrant ``torch.utils.checkpoint`` runs its block without a graph, so ``autograd.grad`` with
    respect to the parameters silently returns no gradient for the block's parameters (non-reentrant
    checkpointing is exact and allowed). The graph is walked once per operator.
    """
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if "CheckpointFunction" in type(node).__name__:
            raise ProbeError(
                "the model uses reentrant activation checkpointing (torch.utils.checkpoint with use_reentrant=True), "
                "whose parameters get no second derivative",
                fix="audit the model with checkpointing off, or use checkpoint(..., use_reentrant=False)",
            )
        stack.extend(fn for fn, _ in node.next_functions)


@contextlib.contextmanager
def no_autocast(device: torch.device) -> Iterator[None]:
    """Disable any ambient autocast on ``device``'s type (HVPs must run in the copy's dtype)."""
    try:
        ctx = torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def audit_copy(model: AuditModel, dtype: torch.dtype, device: torch.device) -> AuditModel:
    """A private copy in eval mode, cast to ``dtype``, on ``device``, with every parameter requiring grad.

    Raises:
        ProbeError: the model is compiled or checkpointed (see :func:`reject_unsupported`).
        InternalError: a module stays in training mode after ``eval()`` (its ``train``/``eval``
            is overridden), which would make BatchNorm use batch statistics.
    """
    reject_unsupported(model)
    net = model.audit_copy() if isinstance(model, AuditModel) else copy.deepcopy(model)
    net = net.to(device=device, dtype=dtype)
    net.eval()
    training = [path or "root" for path, m in net.named_modules() if m.training]
    if training:
        raise InternalError(f"modules stay in training mode after eval(): {', '.join(training[:3])}")
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def flat_parameters(net: nn.Module) -> tuple[list[str], list[torch.nn.Parameter]]:
    """The names and parameters θ of ``net``, in ``named_parameters`` order (the HVP vector layout)."""
    names, params = [], []
    for name, p in net.named_parameters():
        names.append(name)
        params.append(p)
    return names, params
