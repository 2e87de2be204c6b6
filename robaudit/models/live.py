"""A live ``nn.Module`` from the Python API as an :class:`AuditModel`, leaving the caller's module alone.

The audit works on a deep copy: the copy is put in eval mode, cast to float32 and moved to the audit
device, its parameters require grad (as a freshly loaded checkpoint's do), and second-order probes may
swap its modules; the caller's module keeps its mode, flags, weights and device.

Its normalisation is the caller's ``mean``/``std`` (stated, source ``cli``), else none: the module is
assumed to take [0, 1] pixels (source ``identity``, a guess that preflight checks against the audit
samples' own per-channel statistics and, for a timm module, its ``pretrained_cfg``).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import sys
from collections.abc import Sequence

import torch
from torch import nn

from robaudit.errors import ModelLoadError
from robaudit.models import timm_adapter
from robaudit.models.audit_model import AuditModel, DataConfig, LoadReport, ModelProvenance, Normalisation
from robaudit.models.classifier import in_channels
from robaudit.models.messages import one_line
from robaudit.models.normalisation import candidates as norm_candidates
from robaudit.models.normalisation import resolve_normalisation
from robaudit.models.second_order import disable_fused_attention, swap_second_order_modules
from robaudit.out_of_memory import first_line, is_out_of_memory

logger = logging.getLogger(__name__)

MEMORY_PREFIX = "memory:"
"""The model source of a live module: ``memory:<module>:<QualName>``."""


def module_class(module: nn.Module) -> str:
    """``package.module:QualName`` of the module's class (the ``--arch`` spelling of a class)."""
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 of the module's state dict, defined as: for each entry in key order (sorted by name), the
    UTF-8 bytes of ``"<name>\\0<dtype>\\0<shape>\\0"`` (dtype as torch prints it without ``torch.``,
    e.g. ``float32``; shape as comma-separated sizes, empty for a scalar), then the tensor's
    elements in C order as little-endian bytes. Independent of device and memory layout."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach()
        dtype = str(t.dtype).replace("torch.", "")
        shape = ",".join(str(s) for s in t.shape)
        h.update(f"{name}\0{dtype}\0{shape}\0".encode())
        h.update(_le_bytes(t))
    return h.hexdigest()


def _le_bytes(t: torch.Tensor) -> bytes:
    raw = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    if t.element_size() == 1 or not _big_endian():
        return raw
    width = t.element_size()  # byte-swap each element on a big-endian host
    return b"".join(raw[i:i + width][::-1] for i in range(0, len(raw), width))


def _big_endian() -> bool:
    return sys.byteorder == "big"


def live_audit_model(module: nn.Module, sample: torch.Tensor, *, mean: Sequence[float] | None,
                     std: Sequence[float] | None, normalisation_mode: str, second_order: bool, device: str,
                     state_sha256: str) -> AuditModel:
    """The :class:`AuditModel` of a copy of ``module``; K is the width of its logits on ``sample``.

    Args:
        module: the caller's module; it is read, never changed.
        sample: audit pixels (n×C×H×W in [0, 1], as the probes will see them, on the CPU): C and H×W come
            from them, K from one forward pass of the first two, and a guessed normalisation is checked
            against their per-channel statistics (no model call).
        mean, std: the module's normalisation in [0, 1] pixel units, or ``None`` for none (see the module docstring).
        normalisation_mode: ``check`` or ``auto`` (``normalisation=``).
        second_order: a selected probe needs double backward (exact module swaps on the copy).
        device: the audit device.
        state_sha256: :func:`state_dict_sha256` of ``module``, computed before the audit.

    Raises:
        ModelLoadError: the module cannot be copied or moved, takes another channel count, or does not
            return n×K logits for the audit samples.
    """
    channels = int(sample.shape[1])
    first = in_channels(module)
    if first is not None and first != channels:
        raise ModelLoadError(f"the model's first layer takes {first} channel(s) but the data has {channels}",
                             fix="pass data with the model's channel count, or convert_channels='rgb'/'gray'")
    try:
        net = copy.deepcopy(module)
    except Exception as exc:  # noqa: BLE001 - any attribute of a module may refuse deepcopy
        raise ModelLoadError(f"cannot copy the model ({module_class(module)}) for the audit: {one_line(exc)}",
                             fix="make it deep-copyable, or save its state dict and audit the checkpoint with --arch") \
            from exc
    report = LoadReport(format="live_module")
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in net.state_dict().values()
                     if t.is_floating_point() and t.dtype != torch.float32})
    if dtypes:
        report.warnings.append(f"the module's {', '.join(dtypes)} tensors were cast to float32 for the audit "
                               "(as a checkpoint's are when loaded)")
    net = net.float().eval()
    net.zero_grad(set_to_none=True)
    for p in net.parameters():
        p.requires_grad_(True)
    swaps: list[str] = []
    if second_order:
        swaps = swap_second_order_modules(net)
        swaps += [f"{path}: fused_attn=True → fused_attn=False" for path in disable_fused_attention(net)]
    arch_default = timm_adapter.normalisation(net)
    arch_defaults = [("timm_pretrained_cfg", *arch_default)] if arch_default is not None else []
    if mean is not None or std is not None:
        norm = resolve_normalisation(channels, cli=(mean, std), checkpoint=(None, None), arch_defaults=[],
                                     dataset=(None, None), warnings=report.warnings)
        candidates: list[Normalisation] = []
    else:
        norm = Normalisation((0.0,) * channels, (1.0,) * channels, "identity")
        candidates = norm_candidates(channels, norm, arch_defaults, _channel_stats(sample))
    try:
        net = net.to(torch.device(device))
    except Exception as exc:  # noqa: BLE001 - device errors come in many types
        raise ModelLoadError(f"cannot move the model to device '{device}': {one_line(exc)}",
                             fix="pick an available device (e.g. device='cpu')") from exc
    num_classes = _count_logits(net, norm, sample, module_class(module))
    provenance = ModelProvenance(
        source=f"{MEMORY_PREFIX}{module_class(module)}", arch=module_class(module), arch_source="live_module",
        num_classes=num_classes, num_classes_source="logits", normalisation=norm, load_report=report,
        module_swaps=swaps, fused_attention=False if second_order else None, in_channels_source="data",
        normalisation_candidates=candidates, normalisation_mode=normalisation_mode, state_sha256=state_sha256,
    )
    data_config = DataConfig(input_size=(channels, int(sample.shape[2]), int(sample.shape[3])), source="data")
    model = AuditModel(net, norm, data_config, provenance, channels, math_attention=second_order)
    model = model.to(torch.device(device)).eval()
    logger.info("auditing a copy of the live module %s (K=%d, normalisation %s)", module_class(module),
                num_classes, norm.source)
    return model


COUNT_SAMPLES = 2
"""Audit images in the one forward pass that counts the logits (two, so the batch axis is checked too;
more would only risk running out of memory before ``--batch-size`` applies)."""


def _count_logits(net: nn.Module, norm: Normalisation, sample: torch.Tensor, name: str) -> int:
    """K, the width of the logits ``net`` returns for the first :data:`COUNT_SAMPLES` normalised images of
    ``sample``.

    Raises:
        ModelLoadError: the forward pass fails or does not return an n×K tensor.
    """
    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    c = len(norm.mean)
    few = sample[:COUNT_SAMPLES]
    x = (few.to(device) - torch.tensor(norm.mean, device=device).view(1, c, 1, 1)) / \
        torch.tensor(norm.std, device=device).view(1, c, 1, 1)
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # noqa: BLE001 - any model may fail on the data
        if is_out_of_memory(exc):
            raise ModelLoadError(f"out of memory running the model ({name}) on {len(few)} audit images of shape "
                                 f"{tuple(sample.shape[1:])} on {device}: {first_line(exc)}",
                                 fix="free memory on the device, or audit on another one (device='cpu')") from exc
        raise ModelLoadError(f"the model ({name}) fails on the audit images of shape {tuple(sample.shape[1:])}: "
                             f"{one_line(exc)}", fix="pass images of the size and channel count the model takes") \
            from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(few):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModelLoadError(f"the model ({name}) returns {got} for {len(few)} images, not {len(few)}×K "
                             "logits", fix="wrap it so that forward returns the N×K logits")
    return int(out.shape[1])


def _channel_stats(sample: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the audit pixels (the "dataset" candidate of the check)."""
    x = sample.to(torch.float64).transpose(0, 1).reshape(sample.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-6)
    return tuple(float(v) for v in x.mean(dim=1)), tuple(float(v) for v in std)
