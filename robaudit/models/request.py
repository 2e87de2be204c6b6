"""What the user asked for: the model source, its architecture and how to load it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelRequest:
    """A request to build an :class:`~robaudit.models.audit_model.AuditModel`.

    Attributes:
        source: ``timm:NAME[.TAG]``, ``torchvision:NAME``, ``hf-hub:ORG/NAME`` (always with
            its pretrained weights) or the path of a checkpoint file.
        arch: the architecture for a checkpoint: ``timm:NAME``, ``torchvision:NAME``,
            ``path/to/file.py:ClassName`` or ``package.module:ClassName``; ``None`` to infer
            it from the checkpoint's metadata or file name.
        arch_kwargs: keyword arguments for the architecture's builder (``--arch-kwargs``
            JSON); they apply to timm and torchvision builders too.
        trust_checkpoint: allow unpickling arbitrary Python objects (a whole ``nn.Module``)
            from the checkpoint (``--trust-checkpoint``). Unpickling can run arbitrary code.
        non_strict: load the keys that match and record the missing, unexpected and
            wrong-shaped ones as warnings instead of failing (``--non-strict``).
        use_ema: load the EMA weights (``state_dict_ema`` …); an error if there are none.
        mean, std: per-channel normalisation in [0, 1] pixel units (``--mean``/``--std``),
            overriding every other source; both or neither.
        second_order: a selected probe needs double backward: build timm models without
            fused attention and swap modules that have no second derivative.
        device: a torch device string (``cpu``, ``cuda:0`` …), already resolved.
        pretrained: ``timm:NAME.TAG --pretrained``: load timm's published weights from the
            Hugging Face Hub cache.
        weights: ``torchvision:NAME --weights DEFAULT|ENUM``: load torchvision's published
            weights from the torch hub cache.
        download: allow fetching missing zoo weights (``--download``); otherwise offline.
        num_classes: ``--num-classes K``: the class count to build with; for pretrained
            weights whose head has another count, the head is re-initialised (random).
        normalisation: ``check`` (default: a guessed normalisation is checked at
            preflight and a clearly better one stops the audit) or ``auto`` (take the best).
    """

    source: str
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_checkpoint: bool = False
    non_strict: bool = False
    use_ema: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    second_order: bool = False
    device: str = "cpu"
    pretrained: bool = False
    weights: str | None = None
    download: bool = False
    num_classes: int | None = None
    normalisation: str = "check"
