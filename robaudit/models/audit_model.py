"""The model contract: every loaded model becomes an :class:`AuditModel`.

An audit model takes N×C×H×W float pixels in [0, 1] and returns logits N×K. It is in
eval mode, folds the normalisation ``(x − mean) / std`` in, and carries its data config
and provenance. Every probe and every attack library sees only this.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from robaudit.errors import UsageError
from robaudit.models.messages import exit_call


STATED_SOURCES = ("cli", "checkpoint")
PRETRAINED_SOURCE_PREFIXES = ("timm_pretrained:", "torchvision_weights:", "hf_hub:")


@dataclass
class Normalisation:
    """Per-channel mean and std applied inside the model, in [0, 1] pixel units.

    ``source`` says where the values came from: ``cli``, ``checkpoint``,
    ``timm_pretrained:ARCH.TAG`` / ``hf_hub:ORG/NAME`` / ``torchvision_weights:ENUM`` (the
    config of the pretrained weights loaded), ``timm_pretrained_cfg`` /
    ``torchvision_weights`` (an architecture's zoo default, weights not from the zoo),
    ``dataset``, ``identity`` or ``none``; ``auto:SOURCE`` when ``--normalisation auto``
    picked it at preflight. ``explicit`` is true when the user, the checkpoint or the
    pretrained weights stated it; otherwise it is a guess that preflight checks.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def explicit(self) -> bool:
        """Whether the values were stated (user, checkpoint, pretrained weights' config), not guessed."""
        return self.source in STATED_SOURCES or self.source.startswith(PRETRAINED_SOURCE_PREFIXES)


@dataclass
class DataConfig:
    """The input the model expects, after timm's ``pretrained_cfg``.

    Attributes:
        input_size: (C, H, W) the model was built for, or ``None`` if unknown/flexible.
        interpolation: resize interpolation for image folders (``bilinear``, ``bicubic``).
        crop_pct: centre-crop fraction for image folders (resize to size / crop_pct, crop).
        source: ``pretrained`` (the config of pretrained zoo weights that were loaded: a
            size mismatch is worth a warning), ``architecture`` (an architecture's registered
            default: the weights may have been trained at another size) or ``data``.
    """

    input_size: tuple[int, int, int] | None = None
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    source: str = "architecture"


@dataclass
class LoadReport:
    """What happened while matching a checkpoint to the architecture.

    Attributes:
        format: ``state_dict``, ``wrapped_state_dict``, ``safetensors``, ``torchscript``,
            ``pickled_module``, ``live_module`` (an ``nn.Module`` given to :func:`robaudit.audit`) or
            ``none`` (no checkpoint: randomly initialised).
        weights_key: the key the state dict was found under (``state_dict``, ``model`` …).
        stripped_prefixes: prefixes removed from keys (``module.``, ``_orig_mod.``).
        missing_keys, unexpected_keys: as reported by ``load_state_dict``.
        mismatched_shapes: ``"key: checkpoint [..] vs model [..]"`` strings.
        strict: whether mismatches were errors (``False`` with ``--non-strict``).
        warnings: human-readable notes recorded in the results.
    """

    format: str = "none"
    weights_key: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    mismatched_shapes: list[str] = field(default_factory=list)
    strict: bool = True
    ema: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class ModelProvenance:
    """Where the audit model came from; written to ``results.json`` under ``model``.

    Attributes:
        source: the source string as given (``timm:resnet18``, a path …).
        arch: the architecture used (``timm:resnet18``, ``file.py:Class`` …).
        arch_source: how the arch was chosen: ``cli``, ``checkpoint_metadata``,
            ``file_stem``, ``source`` or ``torchscript``/``pickled_module``.
        arch_kwargs: keyword arguments passed to the builder.
        num_classes: K, the number of logits.
        num_classes_source: ``checkpoint`` (classifier shape), ``dataset``, ``arch_kwargs``
            or ``arch`` (fixed by an architecture that takes no ``num_classes``).
        checkpoint_path: absolute path, or ``None``.
        checkpoint_sha256: hex digest of the checkpoint file, or ``None``.
        checkpoint_bytes: size of the checkpoint file.
        load_report: see :class:`LoadReport`.
        normalisation: see :class:`Normalisation`.
        module_swaps: exact-equivalent module replacements made on the audit copy
            (e.g. ``Hardsigmoid → relu6(x+3)/6``), as ``"path: Old → New"``.
        fused_attention: ``False`` when fused attention was turned off for second-order
            probes (timm's flag off, and ``scaled_dot_product_attention`` on the math
            kernel); ``True`` for a timm model built with it on; ``None`` otherwise.
        trusted_pickle: whether the user opted into unpickling (``--trust-checkpoint``).
        arch_kwargs_source: for each key of ``arch_kwargs``, ``cli`` (``--arch-kwargs``/
            ``--num-classes``) or ``checkpoint_metadata`` (``model_kwargs``/``arch_kwargs``).
        in_channels_source: where C came from: ``timm_pretrained_cfg``,
            ``torchvision_weights``, ``first_layer``, ``dataset`` or ``default``.
        weights: the pretrained zoo weights file (hub, repo id, revision, sha256), or ``None``.
        normalisation_candidates: the normalisations preflight compares when the chosen
            one is a guess (the chosen one first); empty when it was stated.
        normalisation_mode: ``check`` or ``auto`` (``--normalisation``).
        state_sha256: the sha256 of the network's state dict (:func:`robaudit.models.live.state_dict_sha256`)
            when no file or zoo weights identify it: a live ``nn.Module`` given to :func:`robaudit.audit`,
            or a builder source built with its random initialisation (seeded: ``loader.INIT_SEED``);
            ``None`` otherwise.
    """

    source: str
    arch: str
    arch_source: str
    num_classes: int
    num_classes_source: str
    normalisation: Normalisation
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_bytes: int | None = None
    load_report: LoadReport = field(default_factory=LoadReport)
    module_swaps: list[str] = field(default_factory=list)
    fused_attention: bool | None = None
    trusted_pickle: bool = False
    arch_kwargs_source: dict[str, str] = field(default_factory=dict)
    in_channels_source: str = "first_layer"
    weights: dict[str, Any] | None = None
    normalisation_candidates: list[Normalisation] = field(default_factory=list)
    normalisation_mode: str = "check"
    state_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The provenance as a JSON-serialisable dict."""
        out = asdict(self)
        out["normalisation"]["mean"] = list(self.normalisation.mean)
        out["normalisation"]["std"] = list(self.normalisation.std)
        out["normalisation"]["explicit"] = self.normalisation.explicit
        for cand in out["normalisation_candidates"]:
            cand["mean"], cand["std"] = list(cand["mean"]), list(cand["std"])
        return out


class ModelForwardExit(UsageError):
    """The network's forward called ``sys.exit``: the model's fault (exit 2), recorded like any forward that raises."""


class AuditModel(nn.Module):
    """Wraps a network so it takes [0, 1] pixels and applies mean/std inside.

    Args:
        net: the network; receives normalised inputs, returns logits N×K.
        normalisation: the per-channel mean/std (length C, or 1 to broadcast).
        data_config: the expected input, see :class:`DataConfig`.
        provenance: see :class:`ModelProvenance`.
        in_channels: C, the number of input channels the network expects.
        math_attention: run the network with ``scaled_dot_product_attention`` restricted
            to its math kernel, the only one with a double backward (second-order probes).
    """

    def __init__(
        self,
        net: nn.Module,
        normalisation: Normalisation,
        data_config: DataConfig,
        provenance: ModelProvenance,
        in_channels: int,
        math_attention: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        c = len(normalisation.mean)
        self.register_buffer("mean", torch.tensor(normalisation.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(normalisation.std, dtype=torch.float32).view(1, c, 1, 1))
        self.data_config = data_config
        self.provenance = provenance
        self.in_channels = in_channels
        self.math_attention = math_attention
        self.eval()

    @property
    def num_classes(self) -> int:
        """K, the number of logits."""
        return self.provenance.num_classes

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] pixels (N×C×H×W) to the network's normalised input."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def set_normalisation(self, normalisation: Normalisation) -> None:
        """Fold in another mean/std (``--normalisation auto``); the provenance records it."""
        c = len(normalisation.mean)
        self.mean = torch.tensor(normalisation.mean, dtype=self.mean.dtype, device=self.mean.device).view(1, c, 1, 1)
        self.std = torch.tensor(normalisation.std, dtype=self.std.dtype, device=self.std.device).view(1, c, 1, 1)
        self.provenance.normalisation = normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits N×K for pixels ``x`` in [0, 1], shape N×C×H×W.

        Raises:
            ModelForwardExit: the network's forward called ``sys.exit`` (which would otherwise end robaudit
                with the model's exit code, 0 included, and no results).
        """
        try:
            if self.math_attention:
                with sdpa_kernel([SDPBackend.MATH]):
                    return self.net(self.normalise(x))
            return self.net(self.normalise(x))
        except SystemExit as exc:
            raise ModelForwardExit(f"the model's forward called {exit_call(exc)}",
                                   fix="remove the sys.exit call from the model's forward") from None

    def audit_copy(self) -> "AuditModel":
        """A deep copy a probe may modify (e.g. cast to float64) without touching this one."""
        return copy.deepcopy(self)

    def state_fingerprint(self) -> tuple[bool, dict[str, torch.Tensor]]:
        """(training flag, cloned state dict): compare before/after to prove a probe changed nothing."""
        return self.training, {k: v.detach().clone() for k, v in self.state_dict().items()}


def same_state(a: tuple[bool, dict[str, torch.Tensor]], b: tuple[bool, dict[str, torch.Tensor]]) -> bool:
    """True when two :meth:`AuditModel.state_fingerprint` results are identical (bitwise)."""
    if a[0] != b[0] or a[1].keys() != b[1].keys():
        return False
    return all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def first_conv_in_channels(net: nn.Module) -> int | None:
    """The ``in_channels`` of the first convolution (or the first layer with ``in_channels``)."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return int(module.in_channels)
    return None
