"""Everything robaudit needs from timm, behind one module (timm's quirks stay here).

* Models are built with ``pretrained=False``, except ``timm:NAME.TAG --pretrained`` and
  ``hf-hub:ORG/NAME``, which load through timm's own ``pretrained=True`` from the Hugging
  Face Hub cache once :mod:`robaudit.models.hub_cache` has checked the file (offline unless
  ``--download``).
* ``pretrained_cfg`` supplies the classifier name, mean/std and the data config.
* Fused attention (``F.scaled_dot_product_attention``) has no double backward, so
  second-order audits build with it off; timm reads the flag when a module is built.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from torch import nn

from robaudit.errors import ModelLoadError, did_you_mean
from robaudit.models import hub_cache
from robaudit.models.audit_model import DataConfig
from robaudit.models.messages import hint, one_line

logger = logging.getLogger(__name__)

# Keyword arguments that would make timm fetch or read weights behind robaudit's back.
_REFUSED_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")


def is_timm_model(name: str) -> bool:
    """True when ``name`` (optionally with a ``.tag``) is a registered timm model."""
    import timm

    # ``hf-hub:`` / ``local-dir:`` names fetch configs; they are never registered names.
    return ":" not in name and "/" not in name and bool(timm.is_model(name))


def timm_model_names() -> list[str]:
    """All registered timm model names (for suggestions)."""
    import timm

    return list(timm.list_models())


def timm_suggestion(name: str) -> str:
    """A "did you mean" for an unknown timm name, or ``""``."""
    import timm

    return did_you_mean(name, timm.list_models())


@contextlib.contextmanager
def fused_attention(enabled: bool) -> Iterator[None]:
    """Set timm's fused-attention flag inside the block and restore the previous value after."""
    from timm.layers import config as timm_config
    from timm.layers import set_fused_attn

    # timm exposes a setter but no getter for the raw level (0 off, 1 on, 2 experimental).
    previous = getattr(timm_config, "_USE_FUSED_ATTN", None)
    set_fused_attn(enabled)
    try:
        yield
    finally:
        if previous is not None:
            set_fused_attn(previous > 0, experimental=previous > 1)


def build_timm(name: str, num_classes: int, kwargs: dict[str, Any], fused_attn: bool = True) -> nn.Module:
    """Build ``timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)``.

    Args:
        name: a registered timm model name.
        num_classes: K, the number of logits.
        kwargs: extra keyword arguments for the model (``--arch-kwargs``).
        fused_attn: ``False`` builds attention without the fused kernel (double backward).

    Raises:
        ModelLoadError: the name is unknown, a kwarg would load weights, or the build fails.
    """
    import timm

    if not is_timm_model(name):
        raise ModelLoadError(
            f"'{name}' is not a timm model{hint(timm_suggestion(name))}",
            fix="pick a name from timm.list_models(), e.g. timm:resnet18",
        )
    refused = [k for k in _REFUSED_KWARGS if k in kwargs]
    if refused:
        raise ModelLoadError(
            f"--arch-kwargs sets {', '.join(refused)}, which would make timm load or download weights",
            fix="drop it and pass the weights file as the model source instead",
        )
    try:
        with fused_attention(fused_attn):
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any builder failure is the user's arch/kwargs
        raise ModelLoadError(
            f"timm could not build '{name}' with num_classes={num_classes} and arch kwargs {kwargs}: {one_line(exc)}",
            fix="check --arch-kwargs against the model's constructor",
        ) from exc


def pretrained_weights_name(name: str) -> tuple[str, str]:
    """(Hugging Face repo id, full ``ARCH.TAG``) of timm's pretrained weights for ``name``.

    A name without a tag gets timm's default tag (``resnet18`` → ``resnet18.a1_in1k``).

    Raises:
        ModelLoadError: unknown model or tag, or weights that timm does not publish on the Hub.
    """
    from timm.models import get_pretrained_cfg

    if not is_timm_model(name):
        raise ModelLoadError(
            f"'{name}' is not a timm model{hint(timm_suggestion(name))}",
            fix="pick a name from timm.list_pretrained(), e.g. timm:resnet18.a1_in1k",
        )
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:
        arch = name.split(".", 1)[0]
        raise ModelLoadError(f"timm has no pretrained weights '{name}' ({one_line(exc)})",
                             fix=f"pick a tag from timm.list_pretrained('{arch}.*')") from exc
    if cfg is None:
        raise ModelLoadError(f"timm has no pretrained weights for '{name}'", fix="pick a name from timm.list_pretrained()")
    full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    if not cfg.hf_hub_id:
        raise ModelLoadError(
            f"the pretrained weights of timm:{full} are not published on the Hugging Face Hub"
            f"{f' (only at {cfg.url})' if cfg.url else ''}; robaudit reads timm weights from the Hub cache",
            fix=f"download the file yourself and pass it as a checkpoint with --arch timm:{cfg.architecture}",
        )
    return str(cfg.hf_hub_id), full


def build_timm_pretrained(
    model_name: str, num_classes: int | None, kwargs: dict[str, Any], *, allow_download: bool, fused_attn: bool = True
) -> nn.Module:
    """``timm.create_model(model_name, pretrained=True)`` from the Hugging Face Hub cache.

    Args:
        model_name: ``ARCH.TAG`` or ``hf-hub:ORG/NAME`` (the weights were already checked
            by :func:`robaudit.models.hub_cache.resolve_hf_weights`).
        num_classes: ``None`` keeps the pretrained head; a number re-initialises it (timm
            drops the pretrained classifier when the count differs).
        kwargs: extra constructor arguments (``--arch-kwargs``).
        allow_download: ``--download``; otherwise huggingface_hub runs offline.
        fused_attn: ``False`` builds attention without the fused kernel (double backward).

    Raises:
        ModelLoadError: a kwarg would load other weights, or timm fails to build or load.
    """
    import timm

    refused = [k for k in _REFUSED_KWARGS if k in kwargs and k != "pretrained"]
    if refused or "pretrained" in kwargs:
        raise ModelLoadError(
            f"--arch-kwargs sets {', '.join(refused or ['pretrained'])}, which would change the weights timm loads",
            fix="drop it; --pretrained loads the weights named by the model source",
        )
    extra: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    try:
        with fused_attention(fused_attn), hub_cache.hf_hub_mode(allow_download):
            return timm.create_model(model_name, pretrained=True, **extra, **kwargs)
    except Exception as exc:  # noqa: BLE001 - builder, hub and state-dict failures all end here
        raise ModelLoadError(
            f"timm could not build '{model_name}' with its pretrained weights and arch kwargs {kwargs}: {one_line(exc)}",
            fix="check the model name, --arch-kwargs and the Hugging Face cache (pass --download to refetch)",
        ) from exc


def pretrained_cfg(net: nn.Module) -> dict[str, Any] | None:
    """The model's ``pretrained_cfg`` as a dict, if it has one (any timm-built module)."""
    cfg = getattr(net, "pretrained_cfg", None)
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        return cfg
    to_dict = getattr(cfg, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def classifier_weight_keys(net: nn.Module) -> list[str]:
    """State-dict keys of the classifier weights named by ``pretrained_cfg['classifier']``."""
    cfg = pretrained_cfg(net) or {}
    names = cfg.get("classifier")
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    return [f"{n}.weight" for n in names]


def normalisation(net: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` from ``pretrained_cfg``, in [0, 1] pixel units, or ``None``."""
    cfg = pretrained_cfg(net) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def data_config(net: nn.Module, kwargs: dict[str, Any]) -> DataConfig | None:
    """The input the model expects, after ``pretrained_cfg``.

    ``pretrained_cfg`` keeps the registered input size even when the model was built
    with another ``img_size``/``in_chans``, so the built model's patch embedding (or the
    kwargs) take precedence for ``input_size``.
    """
    cfg = pretrained_cfg(net)
    if not cfg:
        return None
    size = cfg.get("input_size")
    input_size = tuple(int(v) for v in size) if size else None
    embed_size = getattr(getattr(net, "patch_embed", None), "img_size", None)
    hw: tuple[int, int] | None = None
    if isinstance(embed_size, (tuple, list)) and len(embed_size) == 2:
        hw = (int(embed_size[0]), int(embed_size[1]))
    elif "img_size" in kwargs:
        value = kwargs["img_size"]
        hw = (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))
    channels = int(kwargs["in_chans"]) if "in_chans" in kwargs else (input_size[0] if input_size else 3)
    if hw is not None:
        input_size = (channels, *hw)
    elif input_size is not None:
        input_size = (channels, input_size[1], input_size[2])
    return DataConfig(
        input_size=input_size,  # type: ignore[arg-type]
        interpolation=str(cfg.get("interpolation") or "bilinear"),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
    )

