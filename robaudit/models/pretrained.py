"""Zoo models with their pretrained weights: ``timm:NAME.TAG --pretrained``, ``hf-hub:ORG/NAME``,
``torchvision:NAME --weights DEFAULT|ENUM``.

The weights file is found (or, with ``--download``, fetched) and checked by
:mod:`robaudit.models.hub_cache`; the network is then built by the zoo's own code
(timm's ``pretrained=True``, torchvision's weights API). The data config (mean/std, input
size, crop, interpolation) comes with the weights and is *stated*, not guessed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from robaudit.errors import ModelLoadError
from robaudit.models import hub_cache, timm_adapter, torchvision_adapter
from robaudit.models.arch_spec import ArchSpec
from robaudit.models.audit_model import DataConfig, LoadReport
from robaudit.models.checkpoint import prefix_stages, read_checkpoint

HF_HUB_PREFIX = "hf-hub:"


@dataclass
class PretrainedNet:
    """A zoo network with its pretrained weights loaded.

    Attributes:
        net: the network (weights loaded, head re-initialised only if ``num_classes`` asked).
        spec: the architecture (``timm:resnet18``, ``torchvision:resnet18``).
        weights: the exact file (see :class:`~robaudit.models.hub_cache.ZooWeights`).
        norm_source: the normalisation source (``timm_pretrained:resnet18.a1_in1k`` …).
        mean, std: the weights' normalisation, in [0, 1] pixel units.
        data_config: the weights' input size, crop and interpolation (source ``pretrained``).
        channels: C from the weights' config.
        head_reinitialised: ``--num-classes`` replaced the pretrained head (random weights).
    """

    net: nn.Module
    spec: ArchSpec
    weights: hub_cache.ZooWeights
    norm_source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_config: DataConfig
    channels: int
    head_reinitialised: bool = False


def load_timm_pretrained(
    source: str, num_classes: int | None, kwargs: dict[str, Any], *, download: bool, trust: bool, second_order: bool
) -> PretrainedNet:
    """``timm:NAME[.TAG]`` (with ``--pretrained``) or ``hf-hub:ORG/NAME``, through timm's ``pretrained=True``.

    Raises:
        ModelLoadError: unknown name or tag, weights neither cached nor allowed to download,
        only pickle weights without ``--trust-checkpoint``, or a failed build.
    """
    if source.startswith(HF_HUB_PREFIX):
        repo = source[len(HF_HUB_PREFIX):].strip()
        if repo.count("/") != 1 or not all(repo.split("@")[0].split("/")):
            raise ModelLoadError(f"'{source}' does not name a hub repo", fix="write hf-hub:ORG/NAME, e.g. hf-hub:timm/resnet18.a1_in1k")
        _require_cached_config(repo, download, source)
        weights = hub_cache.resolve_hf_weights(repo, download=download, trust=trust, what=source)
        model_name, norm_source = f"{HF_HUB_PREFIX}{repo}", f"hf_hub:{repo}"
    else:
        name = source.split(":", 1)[1].strip()
        repo, full = timm_adapter.pretrained_weights_name(name)
        weights = hub_cache.resolve_hf_weights(repo, download=download, trust=trust, what=f"timm:{full}")
        model_name, norm_source = full, f"timm_pretrained:{full}"
    net = timm_adapter.build_timm_pretrained(model_name, num_classes, kwargs, allow_download=download,
                                             fused_attn=not second_order)
    normalisation = timm_adapter.normalisation(net)
    config = timm_adapter.data_config(net, kwargs)
    if normalisation is None or config is None or config.input_size is None:
        raise ModelLoadError(f"the pretrained config of {source} gives no mean/std or input size",
                             fix="pass --mean/--std and --resize explicitly")
    config.source = "pretrained"
    arch = str(getattr(net, "pretrained_cfg", {}).get("architecture") or model_name.split(".")[0])
    pretrained_k = int((getattr(net, "pretrained_cfg", {}) or {}).get("num_classes") or 0)
    return PretrainedNet(net, ArchSpec("timm", arch), weights, norm_source, *normalisation, config,
                         config.input_size[0], head_reinitialised=num_classes is not None and num_classes != pretrained_k)


def _require_cached_config(repo: str, download: bool, what: str) -> None:
    """An ``hf-hub:`` repo needs its ``config.json`` (timm's model config) in the cache too."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = hub_cache.split_revision(repo)
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(hub_cache.hf_cache_dir()), revision=revision)
    if not isinstance(found, str) and not download:
        raise ModelLoadError(
            f"{what}: the hub repo's config.json is not in the Hugging Face cache ({hub_cache.hf_cache_dir()})",
            fix=f"pass --download to fetch it, or run 'huggingface-cli download {repo_id}' and copy the cache",
        )


def load_torchvision_weights(
    source: str, weights_name: str, kwargs: dict[str, Any], report: LoadReport, *, download: bool
) -> PretrainedNet:
    """``torchvision:NAME --weights DEFAULT|ENUM`` from the torch hub cache, read with ``weights_only=True``.

    Raises:
        ModelLoadError: unknown weights, not cached and not allowed to download, a hash
        prefix that does not match, or weights that do not fit the architecture.
    """
    name = source.split(":", 1)[1].strip()
    weights = torchvision_adapter.resolve_weights(name, weights_name)
    enum_name = f"{type(weights).__name__}.{weights.name}"
    record = hub_cache.resolve_torch_hub_file(weights.url, download=download, what=source, enum_name=enum_name)
    ckpt = read_checkpoint(record.path)  # weights_only=True; never unpickles code
    report.format = ckpt.format
    state_dict = prefix_stages(ckpt.state_dict or {})[-1][0]  # torchvision's own names never start with module.
    net = torchvision_adapter.build_torchvision_pretrained(name, weights, state_dict, kwargs)
    normalisation = torchvision_adapter.weights_normalisation(weights)
    config = torchvision_adapter.data_config(name, kwargs, 3, weights=weights)
    if normalisation is None or config is None:
        raise ModelLoadError(f"the weights {enum_name} carry no mean/std or crop size",
                             fix="pass --mean/--std and --resize explicitly")
    config.source = "pretrained"
    return PretrainedNet(net, ArchSpec("torchvision", name), record, f"torchvision_weights:{enum_name}",
                         *normalisation, config, 3)
