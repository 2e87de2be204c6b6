"""Everything robaudit needs from torchvision, behind one module.

* Models are built with ``weights=None``, except ``torchvision:NAME --weights DEFAULT|ENUM``:
  then the file comes from the torch hub cache (hash-checked by
  :mod:`robaudit.models.hub_cache`), is read with ``weights_only=True`` by robaudit's own
  checkpoint reader, and is handed to torchvision's builder, which applies its
  model-specific fixes (class count, densenet key names …) exactly as with a download.
* Only classification models (``torchvision.models.list_models(module=torchvision.models)``)
  are accepted; detection, segmentation and video models do not return N×K logits.
* The default weights' ``transforms()`` give mean/std, crop and resize sizes without a
  download: they are plain attributes of the weights enum.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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


def resolve_weights(name: str, weights: str) -> Any:
    """The weights enum member for ``--weights`` (``DEFAULT``, ``IMAGENET1K_V1`` or ``ResNet18_Weights.IMAGENET1K_V1``).

    Raises:
        ModelLoadError: the model has no registered weights, or no weights of that name.
    """
    import torchvision

    if not is_torchvision_model(name):
        raise ModelLoadError(
            f"'{name}' is not a torchvision classification model{hint(torchvision_suggestion(name))}",
            fix="pick a name from torchvision.models.list_models(module=torchvision.models), e.g. torchvision:resnet18",
        )
    try:
        enum = torchvision.models.get_model_weights(name)
    except Exception as exc:  # noqa: BLE001 - a builder without a weights annotation
        raise ModelLoadError(f"torchvision:{name} has no published weights ({one_line(exc)})",
                             fix="drop --weights, or pass a checkpoint file") from exc
    member = weights.split(".")[-1] if weights.startswith(enum.__name__ + ".") else weights
    names = ["DEFAULT", *enum.__members__]
    if member not in names:
        raise ModelLoadError(
            f"torchvision:{name} has no weights '{weights}'{hint(did_you_mean(member, names))}",
            fix=f"pass --weights one of {', '.join(names)}",
        )
    return enum.DEFAULT if member == "DEFAULT" else enum[member]


@contextlib.contextmanager
def _serving(weights: Any, state_dict: dict[str, Any]) -> Iterator[None]:
    # torchvision's builders fetch weights through ``weights.get_state_dict`` (a download
    # with an unrestricted torch.load); serve the state dict robaudit already read safely.
    weights.get_state_dict = lambda *args, **kwargs: state_dict
    try:
        yield
    finally:
        del weights.get_state_dict


def build_torchvision_pretrained(name: str, weights: Any, state_dict: dict[str, Any], kwargs: dict[str, Any]) -> nn.Module:
    """``torchvision.models.get_model(name, weights=weights, **kwargs)`` with the state dict given.

    Raises:
        ModelLoadError: a kwarg conflicts with the weights, or the weights do not fit.
    """
    import torchvision

    refused = [k for k in _REFUSED_KWARGS if k in kwargs]
    if refused:
        raise ModelLoadError(f"--arch-kwargs sets {', '.join(refused)}, which conflicts with --weights",
                             fix="drop it from --arch-kwargs")
    try:
        with _serving(weights, state_dict):
            return torchvision.models.get_model(name, weights=weights, **kwargs)
    except Exception as exc:  # noqa: BLE001 - builder and load_state_dict failures
        raise ModelLoadError(
            f"torchvision could not build '{name}' with weights {weights} and arch kwargs {kwargs}: {one_line(exc)}",
            fix="drop conflicting --arch-kwargs (torchvision fixes num_classes to the weights' categories)",
        ) from exc


def weights_normalisation(weights: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` of these weights' ``transforms()``, in [0, 1] pixel units, or ``None``."""
    transforms = weights.transforms()
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if mean is None or std is None:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def classifier_weight_keys(name: str, net: nn.Module) -> list[str]:
    """The classifier weight's state-dict key: the last ``nn.Linear`` (squeezenet: its 1×1 conv)."""
    if name.startswith("squeezenet"):
        return ["classifier.1.weight"]
    last = None
    for path, module in net.named_modules():
        if isinstance(module, nn.Linear):
            last = path
    return [f"{last}.weight"] if last is not None else []


def _default_transforms(name: str, weights: Any | None = None) -> Any | None:
    import torchvision

    if weights is not None:
        return weights.transforms()
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


def data_config(name: str, kwargs: dict[str, Any], channels: int = 3, weights: Any | None = None) -> DataConfig | None:
    """Crop size, resize size (as ``crop_pct``) and interpolation of ``weights`` (default: the DEFAULT weights).

    A model built with ``image_size`` in its kwargs (ViT) expects that size instead.
    """
    transforms = _default_transforms(name, weights)
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
