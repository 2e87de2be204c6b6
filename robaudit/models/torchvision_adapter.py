"""Everything robaudit needs from torchvision, behind one module.

* Models are built with ``weights=None``: robaudit never downloads weights.
* Only classification models (``torchvision.models.list_models(module=torchvision.models)``)
  are accepted; detection, segmentation and video models do not return N×K logits.
* The default weights' ``transforms()`` give mean/std, crop and resize sizes without a
  download: they are plain attributes of the weights enum.
"""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from robaudit.errors import ModelLoadError, did_you_mean
from robaudit.models.audit_model import DataConfig
from robaudit.models.messages import hint, one_line

logger = logging.getLogger(__name__)

_REFUSED_KWARGS = ("weights", "weights_backbone")


def classification_models() -> list[str]:
    """Names of torchvision's image-classification models."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def is_torchvision_model(name: str) -> bool:
    """True when ``name`` is a torchvision classification model."""
    return name in classification_models()


def torchvision_suggestion(name: str) -> str:
    """A "did you mean" for an unknown torchvision name, or ``""``."""
    return did_you_mean(name, classification_models())


def build_torchvision(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """Build ``torchvision.models.get_model(name, weights=None, num_classes=K, **kwargs)``.

    Raises:
        ModelLoadError: the name is not a classification model, a kwarg would load
        weights, or the build fails.
    """
    import torchvision

    if not is_torchvision_model(name):
        if name in torchvision.models.list_models():
            raise ModelLoadError(
                f"torchvision model '{name}' is not an image classifier (it does not return N×K logits)",
                fix="pick a classification model from torchvision.models.list_models(module=torchvision.models)",
            )
        raise ModelLoadError(
            f"'{name}' is not a torchvision classification model{hint(torchvision_suggestion(name))}",
            fix="pick a name from torchvision.models.list_models(module=torchvision.models), e.g. torchvision:resnet18",
        )
    refused = [k for k in _REFUSED_KWARGS if k in kwargs]
    if refused:
        raise ModelLoadError(
            f"--arch-kwargs sets {', '.join(refused)}, which would make torchvision download weights",
            fix="drop it and pass the weights file as the model source instead",
        )
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any builder failure is the user's arch/kwargs
        raise ModelLoadError(
            f"torchvision could not build '{name}' with num_classes={num_classes} and arch kwargs {kwargs}: {one_line(exc)}",
            fix="check --arch-kwargs against the model's builder",
        ) from exc


def classifier_weight_keys(name: str, net: nn.Module) -> list[str]:
    """The classifier weight's state-dict key: the last ``nn.Linear`` (squeezenet: its 1×1 conv)."""
    if name.startswith("squeezenet"):
        return ["classifier.1.weight"]
    last = None
    for path, module in net.named_modules():
        if isinstance(module, nn.Linear):
            last = path
    return [f"{last}.weight"] if last is not None else []


def _default_transforms(name: str) -> Any | None:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        return weights.transforms()
    except Exception as exc:  # noqa: BLE001 - a model without registered weights has no defaults
        logger.debug("no default weights transforms for torchvision:%s (%s)", name, one_line(exc))
        return None


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` of the default weights' transforms, in [0, 1] pixel units, or ``None``."""
    transforms = _default_transforms(name)
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if mean is None or std is None:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def data_config(name: str, kwargs: dict[str, Any], channels: int = 3) -> DataConfig | None:
    """Crop size, resize size (as ``crop_pct``) and interpolation of the default weights.

    A model built with ``image_size`` in its kwargs (ViT) expects that size instead.
    """
    transforms = _default_transforms(name)
    if transforms is None:
        return None
    crop = _first_int(getattr(transforms, "crop_size", None))
    resize = _first_int(getattr(transforms, "resize_size", None))
    crop_pct = crop / resize if crop and resize else 0.875
    if "image_size" in kwargs:
        crop = int(kwargs["image_size"])
    interpolation = getattr(transforms, "interpolation", None)
    interp = str(getattr(interpolation, "value", interpolation or "bilinear"))
    return DataConfig(
        input_size=(channels, crop, crop) if crop else None,
        interpolation=interp,
        crop_pct=float(min(crop_pct, 1.0)),
    )


def _first_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return int(value)
