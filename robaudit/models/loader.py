"""``load_model``: from a :class:`ModelRequest` to an :class:`AuditModel`.

Steps: resolve the source (a timm/torchvision name, or a checkpoint file read by
:mod:`robaudit.models.checkpoint`); choose the architecture (``--arch``, checkpoint
metadata, file stem); build it with the right class count; load and match the weights;
make it twice differentiable if asked; pick the normalisation and data config; wrap it.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robaudit.data.audit_data import DatasetInfo
from robaudit.errors import ModelLoadError, did_you_mean
from robaudit.models import timm_adapter, torchvision_adapter
from robaudit.models.arch_spec import BUILDER_PREFIXES, ArchSpec, parse_arch, parse_trusted_name
from robaudit.models.audit_model import AuditModel, DataConfig, LoadReport, ModelProvenance
from robaudit.models.checkpoint import Checkpoint, prefix_stages, read_checkpoint
from robaudit.models.classifier import checkpoint_num_classes, in_channels, last_layer_weight_key, model_num_classes
from robaudit.models.custom_arch import accepts_num_classes, build_custom, resolve_constructor
from robaudit.models.live import state_dict_sha256
from robaudit.models.messages import hint, one_line
from robaudit.models.normalisation import Candidate, resolve_normalisation
from robaudit.models.normalisation import candidates as norm_candidates
from robaudit.models.pretrained import HF_HUB_PREFIX, PretrainedNet, load_timm_pretrained, load_torchvision_weights
from robaudit.models.request import ModelRequest
from robaudit.models.scripted import ScriptedNetwork
from robaudit.models.second_order import disable_fused_attention, swap_second_order_modules, torchscript_blockers
from robaudit.models.state_matching import compare_keys, load_weights, match_prefixes

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][\w.+-]+):(?![\\/])")


@dataclass
class _Built:
    """An architecture built for a request (weights not loaded yet)."""

    net: nn.Module
    spec: ArchSpec
    classifier_keys: list[str]
    num_classes_source: str
    fused_attention: bool | None = None
    notes: list[str] = field(default_factory=list)


INIT_SEED = 0
"""Seed of torch's CPU generator while the network is built, so that weights left at their random
initialisation (a builder source such as ``timm:resnet18`` without ``--pretrained``, the missing keys of
``--non-strict``, a head re-initialised by ``--num-classes``) are the same in every run and process."""


def load_model(request: ModelRequest, dataset: DatasetInfo) -> AuditModel:
    """Build the audit model a request describes, for a dataset with ``dataset.num_classes`` classes.

    Args:
        request: what to load and how (see :class:`ModelRequest`).
        dataset: the dataset the model will be audited on; its class count is the default
            K and must equal the model's, and its mean/std are the last normalisation
            fallback.

    Returns:
        An :class:`AuditModel` in eval mode on ``request.device`` that takes N×C×H×W
        pixels in [0, 1] and returns N×K logits, with its provenance filled in.

    Raises:
        ModelLoadError: for every bad input, with one line saying what and how to fix it.
    """
    _validate_request(request)
    report = LoadReport()
    with torch.random.fork_rng(devices=[]):  # the caller's generator state is left as it was
        torch.default_generator.manual_seed(INIT_SEED)  # the CPU one only: networks are built on the CPU
        resolved = _resolve_network(request, dataset, report)
    net, built, ckpt, zoo = resolved.net, resolved.built, resolved.checkpoint, resolved.pretrained
    num_classes, num_classes_source = _check_class_count(resolved, request.source, dataset)
    swaps, fused = _prepare_second_order(resolved, request.second_order, report)

    kwargs = resolved.kwargs
    channels, channels_source = _input_channels(resolved, dataset)
    meta = ckpt.metadata if ckpt is not None else {}
    arch_defaults = ([(zoo.norm_source, zoo.mean, zoo.std)] if zoo is not None else _arch_normalisation(built, net))
    normalisation = resolve_normalisation(
        channels,
        cli=(request.mean, request.std),
        checkpoint=(meta.get("mean"), meta.get("std")),
        arch_defaults=arch_defaults,
        dataset=(dataset.mean, dataset.std),
        warnings=report.warnings,
    )
    candidates = ([] if normalisation.explicit
                  else norm_candidates(channels, normalisation, arch_defaults, (dataset.mean, dataset.std)))
    data_config = zoo.data_config if zoo is not None else _data_config(built, net, kwargs, channels, dataset)

    arch = str(built.spec) if built is not None else _module_arch(net, resolved.arch_source)
    provenance = ModelProvenance(
        source=request.source,
        arch=arch,
        arch_source=resolved.arch_source,
        num_classes=num_classes,
        num_classes_source=num_classes_source,
        normalisation=normalisation,
        arch_kwargs=dict(kwargs),
        checkpoint_path=str(ckpt.path) if ckpt is not None else None,
        checkpoint_sha256=ckpt.sha256 if ckpt is not None else None,
        checkpoint_bytes=ckpt.n_bytes if ckpt is not None else None,
        load_report=report,
        module_swaps=swaps,
        fused_attention=fused,
        trusted_pickle=request.trust_checkpoint,
        arch_kwargs_source=dict(resolved.kwargs_source),
        in_channels_source=channels_source,
        weights=zoo.weights.to_json() if zoo is not None else None,
        normalisation_candidates=candidates,
        normalisation_mode=request.normalisation,
        state_sha256=state_dict_sha256(net) if ckpt is None and zoo is None else None,
    )
    model = AuditModel(net, normalisation, data_config, provenance, channels, math_attention=request.second_order)
    try:
        model = model.to(torch.device(request.device))
    except Exception as exc:  # noqa: BLE001 - device errors come in many types
        raise ModelLoadError(
            f"cannot move the model to device '{request.device}': {one_line(exc)}",
            fix="pick an available device (e.g. --device cpu)",
        ) from exc
    model.eval()
    logger.info(
        "loaded %s (arch %s from %s, K=%d from %s, normalisation from %s)",
        request.source, arch, resolved.arch_source, num_classes, num_classes_source, normalisation.source,
    )
    return model


@dataclass
class _Resolved:
    """The network with its weights loaded, and how it was obtained."""

    net: nn.Module
    arch_source: str
    built: _Built | None = None
    checkpoint: Checkpoint | None = None
    pretrained: PretrainedNet | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    kwargs_source: dict[str, str] = field(default_factory=dict)


def _cli_kwargs(request: ModelRequest) -> dict[str, Any]:
    kwargs = dict(request.arch_kwargs)
    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    return kwargs


def _resolve_network(request: ModelRequest, dataset: DatasetInfo, report: LoadReport) -> _Resolved:
    """Build or read the network and load its weights, filling ``report``."""
    source = request.source.strip()
    kwargs = _cli_kwargs(request)
    from_cli = dict.fromkeys(kwargs, "cli")
    if source.startswith(HF_HUB_PREFIX) or request.pretrained or request.weights is not None:
        return _resolve_pretrained(request, source, kwargs, report)
    builder = _builder_source(source)
    if builder is not None:
        if request.arch is not None and str(parse_arch(request.arch)) != str(builder):
            raise ModelLoadError(
                f"--arch {request.arch} conflicts with model source '{source}', which already names the architecture",
                fix="drop --arch, or pass a checkpoint file as the source",
            )
        built = _build(builder, kwargs, None, dataset, request.second_order)
        return _Resolved(built.net, "source", built=built, kwargs=kwargs, kwargs_source=from_cli)

    ckpt = read_checkpoint(source, trust=request.trust_checkpoint, use_ema=request.use_ema)
    report.format = ckpt.format
    report.weights_key = ckpt.weights_key
    report.ema = ckpt.ema
    report.warnings.extend(ckpt.warnings)
    if ckpt.unrestricted_unpickle:
        report.warnings.append(f"'{ckpt.path.name}' was unpickled without weights_only (--trust-checkpoint)")
    if ckpt.module is not None:
        ignored = [f"--arch {request.arch}"] if request.arch else []
        ignored += ["--arch-kwargs"] if kwargs else []
        if ignored:
            report.warnings.append(
                f"{' and '.join(ignored)} ignored: the {ckpt.format} checkpoint carries its own architecture"
            )
        net = ScriptedNetwork(ckpt.module) if ckpt.format == "torchscript" else ckpt.module
        return _Resolved(net, ckpt.format, checkpoint=ckpt)

    state_dict = ckpt.state_dict or {}
    kwargs, kwargs_source = _merge_metadata_kwargs(request, ckpt, kwargs, report)
    built, arch_source = _build_for_checkpoint(request, ckpt, state_dict, kwargs, dataset)
    report.warnings.extend(built.notes)
    state_dict, ckpt.stripped_prefixes = match_prefixes(built.net, state_dict)
    report.stripped_prefixes = list(ckpt.stripped_prefixes)
    load_weights(built.net, state_dict, report, request.non_strict, str(built.spec), ckpt.path.name)
    return _Resolved(built.net, arch_source, built=built, checkpoint=ckpt, kwargs=kwargs, kwargs_source=kwargs_source)


def _resolve_pretrained(request: ModelRequest, source: str, kwargs: dict[str, Any], report: LoadReport) -> _Resolved:
    """A zoo model with its published weights (``--pretrained``, ``--weights``, ``hf-hub:``)."""
    if request.arch is not None:
        raise ModelLoadError(f"--arch cannot be combined with pretrained zoo weights ('{source}')",
                             fix="drop --arch: the model source names the architecture")
    kind = "hf-hub" if source.startswith(HF_HUB_PREFIX) else source.split(":", 1)[0]
    if kind in ("timm", "hf-hub"):
        if request.weights is not None:
            raise ModelLoadError(f"--weights is for torchvision models, not '{source}'",
                                 fix="use --pretrained for timm:NAME.TAG (hf-hub: sources always load their weights)")
        num_classes = kwargs.pop("num_classes", None)
        zoo = load_timm_pretrained(source, num_classes, kwargs, download=request.download,
                                   trust=request.trust_checkpoint, second_order=request.second_order)
        report.format = "safetensors" if zoo.weights.filename.endswith(".safetensors") else "state_dict"
    elif kind == "torchvision":
        if request.pretrained and request.weights is None:
            raise ModelLoadError(f"--pretrained is for timm models; torchvision weights are chosen by name ('{source}')",
                                 fix="pass --weights DEFAULT (or an enum name such as IMAGENET1K_V1)")
        zoo = load_torchvision_weights(source, request.weights or "DEFAULT", kwargs, report, download=request.download)
    else:
        raise ModelLoadError(
            f"--pretrained/--weights load zoo weights, but '{source}' is not a timm: or torchvision: model name",
            fix="drop --pretrained/--weights for a checkpoint file, or write timm:NAME.TAG / torchvision:NAME",
        )
    report.weights_key = None
    if zoo.head_reinitialised:
        report.warnings.append(f"--num-classes re-initialised the classifier of {source}: its head has random weights")
    keys = _classifier_keys(zoo.spec, zoo.net)
    k_source = "num_classes_option" if zoo.head_reinitialised else "pretrained_weights"
    built = _Built(zoo.net, zoo.spec, keys, k_source, False if request.second_order else None)
    if zoo.spec.kind == "timm" and not request.second_order:
        built.fused_attention = _timm_fused_default()
    return _Resolved(zoo.net, "source", built=built, pretrained=zoo, kwargs=kwargs,
                     kwargs_source=dict.fromkeys(kwargs, "cli"))


def _merge_metadata_kwargs(
    request: ModelRequest, ckpt: Checkpoint, cli: dict[str, Any], report: LoadReport
) -> tuple[dict[str, Any], dict[str, str]]:
    """Constructor kwargs: the checkpoint's ``model_kwargs``/``arch_kwargs`` metadata, overridden key by key by the CLI.

    Metadata kwargs go only to timm/torchvision builders: with ``--arch`` naming a file or
    module they are ignored (a checkpoint never passes arguments to user code).
    """
    key = next((k for k in ("model_kwargs", "arch_kwargs") if k in ckpt.metadata), None)
    sources = dict.fromkeys(cli, "cli")
    if key is None:
        return cli, sources
    meta = _plain_json_kwargs(ckpt.metadata[key], f"the '{key}' metadata of checkpoint '{ckpt.path.name}'")
    if request.arch is not None and not parse_arch(request.arch).is_builder:
        report.warnings.append(f"checkpoint metadata '{key}' ignored: it is passed only to timm/torchvision builders, "
                               f"not to --arch {request.arch}")
        return cli, sources
    merged = {**meta, **cli}
    sources = {k: ("cli" if k in cli else "checkpoint_metadata") for k in merged}
    return merged, sources


def _plain_json_kwargs(value: Any, origin: str) -> dict[str, Any]:
    """The kwargs if they are a JSON object of plain values (no objects a pickle could smuggle in)."""
    def plain(v: Any) -> bool:
        if v is None or isinstance(v, (bool, int, float, str)):
            return True
        if isinstance(v, (list, tuple)):
            return all(plain(i) for i in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(i) for k, i in v.items())
        return False

    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value) or not plain(value):
        raise ModelLoadError(
            f"{origin} is not a JSON object of plain values (numbers, strings, booleans, lists, objects): {value!r:.120}",
            fix="re-save it as plain JSON, or pass the kwargs with --arch-kwargs",
        )
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}


def _check_class_count(resolved: _Resolved, source: str, dataset: DatasetInfo) -> tuple[int, str]:
    """K and where it came from; an error unless K equals the dataset's class count."""
    built = resolved.built
    keys = built.classifier_keys if built is not None else []
    num_classes = model_num_classes(resolved.net, keys, _probe_shape(resolved, dataset))
    if num_classes is None:
        raise ModelLoadError(
            f"cannot tell how many classes model '{source}' outputs (no linear classifier and a test forward pass failed)",
            fix="check that the model returns N×K logits for the dataset's images",
        )
    k_source = built.num_classes_source if built is not None else "checkpoint"
    if num_classes != dataset.num_classes:
        raise ModelLoadError(
            _class_count_message(num_classes, k_source, dataset, keys),
            fix=_class_count_fix(num_classes, k_source, dataset),
        )
    return num_classes, k_source


def _prepare_second_order(resolved: _Resolved, second_order: bool, report: LoadReport) -> tuple[list[str], bool | None]:
    """Exact-equivalent swaps and fused attention off when asked; returns (swaps, fused_attention)."""
    fused = resolved.built.fused_attention if resolved.built is not None else None
    if not second_order:
        return [], fused
    net = resolved.net
    if isinstance(net, ScriptedNetwork):
        blockers = torchscript_blockers(net)
        if blockers:
            report.warnings.append(
                f"TorchScript model has Hardsigmoid modules ({', '.join(blockers[:3])}) that cannot be swapped; "
                "second-order probes will be skipped if it cannot double-backward (load a state dict with --arch instead)"
            )
        return [], False
    swaps = swap_second_order_modules(net)
    swaps += [f"{path}: fused_attn=True → fused_attn=False" for path in disable_fused_attention(net)]
    return swaps, False


def _validate_request(request: ModelRequest) -> None:
    if not isinstance(request.source, str) or not request.source.strip():
        raise ModelLoadError("no model source given", fix="pass timm:NAME, torchvision:NAME or a checkpoint path")
    if request.num_classes is not None and (isinstance(request.num_classes, bool) or request.num_classes < 1):
        raise ModelLoadError(f"--num-classes must be a positive integer, got {request.num_classes!r}",
                             fix="pass --num-classes K with K >= 1")
    if request.normalisation not in ("check", "auto"):
        raise ModelLoadError(f"unknown --normalisation '{request.normalisation}'", fix="use --normalisation check or auto")
    if not isinstance(request.arch_kwargs, dict) or not all(isinstance(k, str) for k in request.arch_kwargs):
        raise ModelLoadError(
            f"--arch-kwargs must be a JSON object with string keys, got {request.arch_kwargs!r}",
            fix='write e.g. --arch-kwargs \'{"drop_rate": 0.0}\'',
        )
    if (request.mean is None) != (request.std is None):
        raise ModelLoadError(
            f"--{'mean' if request.mean is not None else 'std'} was given without --{'std' if request.mean is not None else 'mean'}",
            fix="give both --mean and --std, or neither",
        )
    try:
        torch.device(request.device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"'{request.device}' is not a torch device: {one_line(exc)}", fix="use e.g. cpu, cuda or cuda:0"
        ) from exc


def _builder_source(source: str) -> ArchSpec | None:
    """The builder spec if ``source`` is ``timm:NAME``/``torchvision:NAME``; errors for other schemes."""
    if any(source.startswith(p + ":") for p in BUILDER_PREFIXES):
        return parse_arch(source)
    match = _SCHEME.match(source)
    if match is None or Path(source).expanduser().exists():
        return None
    scheme = match.group(1)
    if scheme.endswith(".py") or "." in scheme:
        raise ModelLoadError(
            f"model source '{source}' names an architecture, not weights",
            fix=f"pass the checkpoint file as the source and --arch {source}",
        )
    raise ModelLoadError(
        f"model source '{source}' has an unknown prefix '{scheme}:'{hint(did_you_mean(scheme, BUILDER_PREFIXES))}",
        fix="use timm:NAME, torchvision:NAME, hf-hub:ORG/NAME or the path of a checkpoint file",
    )


def _build(
    spec: ArchSpec,
    kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
    dataset: DatasetInfo,
    second_order: bool,
) -> _Built:
    """Build ``spec`` with the class count from ``num_classes`` in kwargs, the checkpoint or the dataset."""
    kw = dict(kwargs)
    fixed = kw.pop("num_classes", None) if spec.is_builder else kw.get("num_classes")
    if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 1):
        raise ModelLoadError(
            f"--arch-kwargs num_classes is {fixed!r}, not a positive integer", fix="give num_classes as an integer"
        )

    def make(k: int) -> tuple[nn.Module, bool]:
        if spec.kind == "timm":
            return timm_adapter.build_timm(spec.name, k, kw, fused_attn=not second_order), True
        if spec.kind == "torchvision":
            return torchvision_adapter.build_torchvision(spec.name, k, kw), True
        takes = "num_classes" not in kw and accepts_num_classes(resolve_constructor(spec))
        return build_custom(spec, kw, k if takes else None), takes or "num_classes" in kw

    k0 = fixed if fixed is not None else dataset.num_classes
    net, sets_k = make(k0)
    keys = _classifier_keys(spec, net)
    source = "arch_kwargs" if fixed is not None else ("dataset" if sets_k else "arch")
    if state_dict is not None and fixed is None:
        found = next((f for stage, _ in prefix_stages(state_dict) if (f := checkpoint_num_classes(stage, keys))), None)
        if found is not None:
            k_ckpt, key = found
            if sets_k:
                source = "checkpoint"
                if k_ckpt != k0:
                    logger.info("checkpoint classifier %s has %d classes; rebuilding %s", key, k_ckpt, spec)
                    net, _ = make(k_ckpt)
    fused: bool | None = None
    if spec.kind == "timm":
        fused = False if second_order else _timm_fused_default()
    return _Built(net, spec, keys, source, fused)


def _timm_fused_default() -> bool:
    from timm.layers import use_fused_attn

    return bool(use_fused_attn())


def _classifier_keys(spec: ArchSpec, net: nn.Module) -> list[str]:
    if spec.kind == "timm":
        keys = timm_adapter.classifier_weight_keys(net)
    elif spec.kind == "torchvision":
        keys = torchvision_adapter.classifier_weight_keys(spec.name, net)
    else:
        keys = []
    last = last_layer_weight_key(net)
    return keys + ([last] if last and last not in keys else [])


def _build_for_checkpoint(
    request: ModelRequest,
    ckpt: Checkpoint,
    state_dict: dict[str, torch.Tensor],
    kwargs: dict[str, Any],
    dataset: DatasetInfo,
) -> tuple[_Built, str]:
    """Choose the architecture for a state-dict checkpoint and build it (weights not loaded)."""
    if request.arch is not None:
        return _build(parse_arch(request.arch), kwargs, state_dict, dataset, request.second_order), "cli"

    name = ckpt.path.name
    if "arch" in ckpt.metadata:
        parsed = parse_trusted_name(ckpt.metadata["arch"], f"the 'arch' metadata of checkpoint '{name}'")
        arch_source, origin = "checkpoint_metadata", f"checkpoint metadata arch '{ckpt.metadata['arch']}'"
    else:
        stem = ckpt.path.stem
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", stem):
            raise ModelLoadError(
                f"cannot infer the architecture of '{name}': it has no 'arch' metadata and its file name is not a model name",
                fix="pass --arch timm:NAME, torchvision:NAME or path/to/file.py:ClassName",
            )
        parsed, arch_source, origin = stem, "file_stem", f"file name '{name}'"

    if isinstance(parsed, ArchSpec):
        candidates = [parsed]
    else:
        candidates = []
        if timm_adapter.is_timm_model(parsed):
            candidates.append(ArchSpec("timm", parsed))
        if torchvision_adapter.is_torchvision_model(parsed):
            candidates.append(ArchSpec("torchvision", parsed))
        if not candidates:
            names = timm_adapter.timm_model_names() + torchvision_adapter.classification_models()
            raise ModelLoadError(
                f"cannot infer the architecture of '{name}': {origin} is neither a timm nor a torchvision model"
                + hint(did_you_mean(parsed, names)),
                fix="pass --arch timm:NAME, torchvision:NAME or path/to/file.py:ClassName",
            )

    # A bare name may exist in both libraries with different layer names: take the
    # first whose keys match the checkpoint, else the first (its mismatch is reported).
    first = _build(candidates[0], kwargs, state_dict, dataset, request.second_order)
    for spec in candidates[1:]:
        if compare_keys(first.net, match_prefixes(first.net, state_dict)[0]).ok:
            break
        other = _build(spec, kwargs, state_dict, dataset, request.second_order)
        if compare_keys(other.net, match_prefixes(other.net, state_dict)[0]).ok:
            first = other
    first.notes.append(f"architecture {first.spec} inferred from {origin}")
    if len(candidates) > 1 and first.spec != candidates[0]:
        first.notes.append(f"{candidates[0]} did not match the checkpoint's keys; {first.spec} did")
    return first, arch_source


def _probe_shape(resolved: _Resolved, dataset: DatasetInfo) -> tuple[int, int, int] | None:
    channels, _ = _input_channels(resolved, dataset)
    if dataset.image_size is not None:
        return (channels, *dataset.image_size)
    return (channels, 224, 224)


def _input_channels(resolved: _Resolved, dataset: DatasetInfo) -> tuple[int, str]:
    """C and where it came from: the zoo's config first, the first layer's weight as a fallback.

    A timm architecture's ``pretrained_cfg['input_size']`` (with ``in_chans`` from the
    kwargs) and torchvision's weights (always RGB) know C even when the first convolution
    in module order is not the stem.
    """
    if resolved.pretrained is not None:
        return resolved.pretrained.channels, resolved.pretrained.norm_source
    built = resolved.built
    if built is not None and built.spec.kind == "timm":
        config = timm_adapter.data_config(resolved.net, resolved.kwargs)
        if config is not None and config.input_size is not None:
            return int(config.input_size[0]), "timm_pretrained_cfg"
    if built is not None and built.spec.kind == "torchvision" and torchvision_adapter.normalisation(built.spec.name):
        return 3, "torchvision_weights"
    found = in_channels(resolved.net)
    if found is not None:
        return found, "first_layer"
    if dataset.channels is not None:
        return dataset.channels, "dataset"
    return 3, "default"


def _arch_normalisation(built: _Built | None, net: nn.Module) -> list[Candidate]:
    out: list[Candidate] = []
    if built is not None and built.spec.kind == "torchvision":
        found = torchvision_adapter.normalisation(built.spec.name)
        if found is not None:
            out.append(("torchvision_weights", *found))
    # Any timm-built module carries pretrained_cfg (timm sources, custom archs wrapping
    # timm, pickled timm models).
    found = timm_adapter.normalisation(net)
    if found is not None:
        out.append(("timm_pretrained_cfg", *found))
    return out


def _data_config(
    built: _Built | None, net: nn.Module, kwargs: dict[str, Any], channels: int, dataset: DatasetInfo
) -> DataConfig:
    config: DataConfig | None = None
    if built is not None and built.spec.kind == "torchvision":
        config = torchvision_adapter.data_config(built.spec.name, kwargs, channels)
    if config is None:
        config = timm_adapter.data_config(net, kwargs if built is not None else {})
    if config is None:
        size = (channels, *dataset.image_size) if dataset.image_size is not None else None
        return DataConfig(input_size=size, source="data")  # type: ignore[arg-type]
    if config.input_size is not None:
        config.input_size = (channels, config.input_size[1], config.input_size[2])
    return config


def _module_arch(net: nn.Module, arch_source: str) -> str:
    if isinstance(net, ScriptedNetwork):
        return f"torchscript:{getattr(net.scripted, 'original_name', type(net.scripted).__name__)}"
    return f"{type(net).__module__}:{type(net).__qualname__}"


def _class_count_message(k: int, source: str, dataset: DatasetInfo, keys: list[str]) -> str:
    origin = {
        "checkpoint": "its checkpoint's classifier" + (f" ({keys[0]})" if keys else ""),
        "arch_kwargs": "num_classes in --arch-kwargs",
        "arch": "its architecture",
        "dataset": "the dataset",
        "pretrained_weights": "its pretrained head",
        "num_classes_option": "--num-classes",
    }.get(source, source)
    return (
        f"the model outputs {k} classes (from {origin}) but dataset '{dataset.name}' has "
        f"{dataset.num_classes} classes"
    )


def _class_count_fix(k: int, source: str, dataset: DatasetInfo) -> str:
    if source == "pretrained_weights":
        return (f"audit on a {k}-class dataset (e.g. ImageNet for in1k weights), or pass --num-classes "
                f"{dataset.num_classes} to re-initialise the head on purpose (its weights are then random)")
    if source == "arch_kwargs":
        return f"drop num_classes from --arch-kwargs or set it to {dataset.num_classes}"
    if source == "arch":
        return f"give the architecture num_classes={dataset.num_classes} via --arch-kwargs, or audit on a {k}-class dataset"
    return f"audit on a dataset with {k} classes, or use a checkpoint trained on the {dataset.num_classes} classes of '{dataset.name}'"
