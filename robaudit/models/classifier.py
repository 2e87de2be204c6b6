"""Finding a network's classifier layer, its class count K and its input channels C.

Works on ordinary modules and on TorchScript modules (whose submodules are all
``RecursiveScriptModule`` but keep their ``original_name``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from robaudit.models.audit_model import first_conv_in_channels
from robaudit.models.messages import one_line

logger = logging.getLogger(__name__)


def _is(module: nn.Module, cls: type[nn.Module]) -> bool:
    return isinstance(module, cls) or getattr(module, "original_name", None) == cls.__name__


def last_layer_weight_key(net: nn.Module) -> str | None:
    """State-dict key of the last ``Linear`` weight (else the last ``Conv2d``, as in squeezenet)."""
    last_linear = last_conv = None
    for path, module in net.named_modules():
        if _is(module, nn.Linear):
            last_linear = path
        elif _is(module, nn.Conv2d):
            last_conv = path
    last = last_linear if last_linear is not None else last_conv
    return None if last is None else (f"{last}.weight" if last else "weight")


def checkpoint_num_classes(state_dict: Mapping[str, torch.Tensor], keys: list[str]) -> tuple[int, str] | None:
    """``(K, key)`` from the first classifier weight in ``keys`` present in the checkpoint."""
    for key in keys:
        value = state_dict.get(key)
        if value is not None and value.dim() >= 1:
            return int(value.shape[0]), key
    return None


def model_num_classes(net: nn.Module, keys: list[str], input_shape: tuple[int, int, int] | None) -> int | None:
    """K, the number of logits.

    Read from the classifier weight (``keys``, else the last linear layer); if there is
    none, from one forward pass of a zero input of ``input_shape`` (C, H, W) on the CPU.
    Returns ``None`` when neither works.
    """
    state = net.state_dict()
    for key in [*keys, last_layer_weight_key(net)]:
        if key and key in state and state[key].dim() >= 1:
            return int(state[key].shape[0])
    if input_shape is None:
        return None
    try:
        param = next(iter(net.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        was_training = net.training
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros((1, *input_shape), dtype=dtype))
        net.train(was_training)
    except Exception as exc:  # noqa: BLE001 - any model may fail on a probe input
        logger.debug("forward pass to count classes failed: %s", one_line(exc))
        return None
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return int(out.shape[1])
    return None


def in_channels(net: nn.Module) -> int | None:
    """C, the ``in_channels`` of the first convolution (TorchScript modules included)."""
    found = first_conv_in_channels(net)
    if found is not None:
        return found
    for module in net.modules():
        if getattr(module, "original_name", None) in ("Conv1d", "Conv2d", "Conv3d"):
            value = getattr(module, "in_channels", None)
            if isinstance(value, int):
                return value
    return None
