"""Loading a state dict into an architecture, reporting every mismatch.

Strict by default: any missing, unexpected or wrong-shaped key is an error naming them.
With ``--non-strict`` the matching keys are loaded and the rest are recorded in the
:class:`~robaudit.models.audit_model.LoadReport` and as a warning; ``strict=False`` is
never used silently.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from robaudit.errors import ModelLoadError
from robaudit.models.audit_model import LoadReport
from robaudit.models.checkpoint import prefix_stages
from robaudit.models.messages import list_some, one_line

logger = logging.getLogger(__name__)

# BatchNorm's counter: old checkpoints lack it, and it does not affect eval-mode outputs.
_BENIGN_MISSING_SUFFIX = "num_batches_tracked"


@dataclass
class KeyMismatch:
    """How a checkpoint's keys differ from a model's.

    Attributes:
        missing: keys the model has and the checkpoint lacks.
        unexpected: keys the checkpoint has and the model lacks.
        mismatched: ``(key, checkpoint shape, model shape)`` for keys in both.
        matched: number of keys present in both with equal shapes.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    matched: int = 0

    @property
    def ok(self) -> bool:
        """True when every key matches."""
        return not (self.missing or self.unexpected or self.mismatched)

    def shape_strings(self) -> list[str]:
        """``"key: checkpoint [a, b] vs model [c, d]"`` for each wrong-shaped key."""
        return [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in self.mismatched]


def compare_keys(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> KeyMismatch:
    """Compare ``state_dict`` with ``net.state_dict()`` by key and shape (nothing is loaded)."""
    model_sd = net.state_dict()
    result = KeyMismatch()
    for key, value in model_sd.items():
        if key not in state_dict:
            if not key.endswith(_BENIGN_MISSING_SUFFIX):
                result.missing.append(key)
            continue
        ck_shape = tuple(state_dict[key].shape)
        if ck_shape != tuple(value.shape):
            result.mismatched.append((key, ck_shape, tuple(value.shape)))
        else:
            result.matched += 1
    result.unexpected = [k for k in state_dict if k not in model_sd]
    return result


def match_prefixes(net: nn.Module, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The checkpoint's keys with wrapper prefixes (``module.``, ``_orig_mod.``) removed only where that fits ``net``.

    A DataParallel or ``torch.compile`` checkpoint of a plain network loses its prefixes; a
    network whose own parameters are named ``module.…`` (a wrapper kept as ``self.module``)
    keeps them. Among :func:`~robaudit.models.checkpoint.prefix_stages`, the first whose keys
    all match the model wins, else the one matching most keys, else the unstripped keys.

    Returns:
        The state dict to load and the prefixes removed, in order.
    """
    best: tuple[dict[str, torch.Tensor], list[str]] | None = None
    best_score = (False, -1)
    for stage, stripped in prefix_stages(state_dict):
        diff = compare_keys(net, stage)
        score = (diff.ok, diff.matched)
        if score > best_score:
            best, best_score = (stage, stripped), score
    assert best is not None  # prefix_stages always yields the unstripped keys
    return best


def load_weights(
    net: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    report: LoadReport,
    non_strict: bool,
    arch: str,
    checkpoint_name: str,
) -> None:
    """Load ``state_dict`` into ``net`` in place and fill ``report``.

    Raises:
        ModelLoadError: keys differ and ``non_strict`` is off (the message lists them and
        diagnoses a CIFAR-style ResNet stem), or no key matches at all.
    """
    diff = compare_keys(net, state_dict)
    report.strict = not non_strict
    report.missing_keys = diff.missing
    report.unexpected_keys = diff.unexpected
    report.mismatched_shapes = diff.shape_strings()
    if diff.matched == 0:
        raise ModelLoadError(
            f"no key of checkpoint '{checkpoint_name}' matches architecture {arch} "
            f"(checkpoint keys: {list_some(list(state_dict), 4)}; model keys: {list_some(list(net.state_dict()), 4)})",
            fix="pass the architecture the checkpoint was saved from with --arch",
        )
    if not diff.ok and not non_strict:
        raise ModelLoadError(
            _mismatch_message(diff, arch, checkpoint_name, state_dict, net),
            fix=_mismatch_fix(diff, state_dict, net),
        )

    _refuse_non_float(state_dict, net, arch, checkpoint_name)
    model_sd = net.state_dict()
    to_load = _copy_with_metadata(state_dict, {k: v for k, v in state_dict.items() if k in model_sd})
    for key, _, _ in diff.mismatched:
        del to_load[key]
    for key, value in model_sd.items():
        if key.endswith(_BENIGN_MISSING_SUFFIX) and key not in to_load:
            to_load[key] = value
    converted = sorted(
        {
            str(v.dtype).replace("torch.", "")
            for k, v in to_load.items()
            if v.is_floating_point() and model_sd[k].is_floating_point() and v.dtype != model_sd[k].dtype
        }
    )
    if converted:
        report.warnings.append(
            f"checkpoint tensors of dtype {', '.join(converted)} were converted to the model's parameter dtype"
        )
    try:
        net.load_state_dict(to_load, strict=diff.ok)
    except Exception as exc:  # noqa: BLE001 - custom _load_from_state_dict hooks may raise
        raise ModelLoadError(
            f"loading checkpoint '{checkpoint_name}' into {arch} failed: {one_line(exc)}",
            fix="check that --arch is the architecture the checkpoint was saved from",
        ) from exc
    if not diff.ok:
        note = (
            f"non-strict load of '{checkpoint_name}' into {arch}: {len(diff.missing)} missing, "
            f"{len(diff.unexpected)} unexpected and {len(diff.mismatched)} wrong-shaped keys were not loaded "
            f"({list_some(diff.missing + [k for k, _, _ in diff.mismatched] + diff.unexpected, 4)}); "
            "the missing and wrong-shaped weights keep their random initialisation"
        )
        report.warnings.append(note)
        logger.warning(note)


def _refuse_non_float(state_dict: Mapping[str, torch.Tensor], net: nn.Module, arch: str, name: str) -> None:
    """Refuse integer, boolean or complex checkpoint tensors for the model's floating-point weights.

    ``load_state_dict`` would cast them silently: quantised int8 weights without their scales, or
    weights rounded to integers, would load as a different network that still runs.
    """
    model_sd = net.state_dict()
    bad = [f"{k} ({str(v.dtype).replace('torch.', '')})" for k, v in state_dict.items()
           if k in model_sd and model_sd[k].is_floating_point() and isinstance(v, torch.Tensor)
           and (not v.is_floating_point()) and tuple(v.shape) == tuple(model_sd[k].shape)]
    if bad:
        raise ModelLoadError(
            f"checkpoint '{name}' holds non-floating-point values for {len(bad)} floating-point weight(s) of {arch} "
            f"({list_some(bad, 3)}); loading would cast them and audit a different network",
            fix="save the network's floating-point state dict (dequantise a quantised model first), or pass the "
                "architecture the checkpoint was saved from with --arch",
        )


def looks_like_cifar_resnet(state_dict: Mapping[str, torch.Tensor], net: nn.Module) -> bool:
    """True when a CIFAR-style ResNet checkpoint meets an ImageNet-stem ResNet.

    CIFAR ResNets use a 3×3 stride-1 ``conv1`` and no max-pool; the ImageNet stem is a
    7×7 stride-2 ``conv1`` followed by a max-pool. kuangliu-style CIFAR ResNets also name
    the classifier ``linear`` and the projection ``shortcut``.
    """
    model_sd = net.state_dict()
    ck, mk = state_dict.get("conv1.weight"), model_sd.get("conv1.weight")
    if ck is not None and mk is not None and ck.dim() == 4 and mk.dim() == 4:
        if tuple(ck.shape[-2:]) == (3, 3) and tuple(mk.shape[-2:]) == (7, 7):
            return True
    has_maxpool = any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    kuangliu = "linear.weight" in state_dict and any(".shortcut." in k for k in state_dict)
    return kuangliu and has_maxpool and "fc.weight" in model_sd


def _mismatch_message(
    diff: KeyMismatch, arch: str, name: str, state_dict: Mapping[str, torch.Tensor], net: nn.Module
) -> str:
    parts = []
    if diff.mismatched:
        parts.append(f"{len(diff.mismatched)} wrong-shaped ({list_some(diff.shape_strings(), 3)})")
    if diff.missing:
        parts.append(f"{len(diff.missing)} missing ({list_some(diff.missing)})")
    if diff.unexpected:
        parts.append(f"{len(diff.unexpected)} unexpected ({list_some(diff.unexpected)})")
    text = f"checkpoint '{name}' does not match architecture {arch}: keys " + "; ".join(parts)
    if looks_like_cifar_resnet(state_dict, net):
        text += (
            "; this looks like a CIFAR-style ResNet checkpoint (3×3 stride-1 conv1, no max-pool) loaded into "
            "an ImageNet-stem ResNet (7×7 stride-2 conv1 and max-pool)"
        )
    return text


def _mismatch_fix(diff: KeyMismatch, state_dict: Mapping[str, torch.Tensor], net: nn.Module) -> str:
    if looks_like_cifar_resnet(state_dict, net):
        return (
            "pass a CIFAR-style ResNet class with --arch, e.g. --arch my_models.py:ResNet18 "
            "(3×3 stride-1 conv1, no max-pool, the same layer names as the checkpoint)"
        )
    return (
        "pass the architecture the checkpoint was saved from with --arch (and --arch-kwargs), or --non-strict "
        "to load only the matching keys (the rest stay randomly initialised, which is recorded)"
    )


def _copy_with_metadata(original: Mapping[str, torch.Tensor], items: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = _WithMetadata(items)
    metadata = getattr(original, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


class _WithMetadata(dict):
    """A dict carrying ``_metadata`` (module versions), as ``load_state_dict`` expects."""
