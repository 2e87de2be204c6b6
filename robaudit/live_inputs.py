"""Live objects for :func:`robaudit.audit`: an ``nn.Module`` as the model, ``(x, y)`` tensors, a torch
``Dataset`` or a ``DataLoader`` as the data, beside the path/name spellings of the command line.

:func:`split_live_options` takes them out of the options (the config echoes a description:
``memory:<module>:<Class>``, ``memory:tensors`` …); :meth:`LiveInputs.load` turns them into the audit
model and data (:mod:`robaudit.models.live`, :mod:`robaudit.data.live`); :meth:`LiveInputs.guard`
proves afterwards that the caller's module was left exactly as it was (the engine's
:class:`~robaudit.engine.model_guard.ModelGuard`).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

from robaudit.config import AuditConfig
from robaudit.data import describe_dataset, load_data
from robaudit.data.audit_data import AuditData
from robaudit.data.live import (
    convert_live,
    describe_live_data,
    is_live_data,
    live_audit_data,
    live_dataset_info,
    read_live_data,
)
from robaudit.engine.model_guard import ModelGuard
from robaudit.errors import ConfigError, ModelLoadError
from robaudit.models import load_model
from robaudit.models.audit_model import AuditModel
from robaudit.models.classifier import in_channels
from robaudit.models.live import MEMORY_PREFIX, live_audit_model, module_class, state_dict_sha256

MODEL_ONLY_OPTIONS = ("arch", "arch_kwargs", "trust_checkpoint", "non_strict", "ema", "pretrained", "weights",
                      "num_classes")
"""Options that load a model from a path or name, so do not apply to a live module."""
DATA_ONLY_OPTIONS = {"data_dir": None, "split": "test", "skip_bad_images": False}
"""Options (with their defaults) that read a dataset from disk, so do not apply to in-memory data."""


@dataclass
class LiveInputs:
    """The live model and/or data of one :func:`robaudit.audit` call (``None``: given by name/path)."""

    model: nn.Module | None = None
    data: Any = None

    def check_config(self, config: AuditConfig) -> None:
        """Refuse options that cannot apply to the live objects (one line naming the option).

        Raises:
            ConfigError: e.g. ``arch=`` with a live module, ``split="train"`` with in-memory data.
        """
        if self.model is not None:
            for name in MODEL_ONLY_OPTIONS:
                value = getattr(config, name)
                if value not in (None, False, {}, ()):
                    raise ConfigError(f"{name}= does not apply to a live nn.Module: it is audited as it is",
                                      fix=f"drop {name}=, or pass the checkpoint's path as model= to load it")
        if self.data is not None:
            for name, default in DATA_ONLY_OPTIONS.items():
                if getattr(config, name) != default:
                    raise ConfigError(f"{name}= does not apply to in-memory data", fix=f"drop {name}=")

    def load(self, config: AuditConfig, *, second_order: bool, device: str) -> tuple[AuditModel, AuditData]:
        """The audit model and data: each from its live object, or from ``config`` as the CLI loads it.

        Raises:
            RobauditError: bad data or a model that does not fit it (one line each).
        """
        from robaudit.engine.runner import data_request, model_request

        if self.data is not None:
            samples = read_live_data(self.data, config.n_samples, config.seed)
            if self.model is not None:
                x, applied = convert_live(samples, config.convert_channels, config.resize, in_channels(self.model))
                model = _live_model(self.model, config, x, second_order, device)
            else:
                info = live_dataset_info(samples, config.convert_channels, config.resize)
                model = load_model(model_request(config, second_order, device), info)
                x, applied = convert_live(samples, config.convert_channels, config.resize, model.in_channels)
            return model, live_audit_data(samples, x, applied, model.num_classes, config.n_samples)
        request = data_request(config)
        info = describe_dataset(request)
        module = self.model
        if module is None:  # neither is live: the engine loads both itself
            raise ConfigError("no live model or data to load", fix="pass model= or data= as live objects")
        data = load_data(request, in_channels(module), None)
        model = _live_model(module, config, data.x, second_order, device)
        if model.num_classes != info.num_classes:
            raise ModelLoadError(f"the model returns {model.num_classes} logits but dataset '{info.name}' has "
                                 f"{info.num_classes} classes", fix=f"audit it on a {model.num_classes}-class dataset")
        return model, data

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around the audit: on a normal exit, raise :class:`~robaudit.errors.InternalError` if the
        caller's module changed (training flags, requires_grad, weights and buffers in place, device)."""
        if self.model is None:
            yield
            return
        guard = ModelGuard(self.model)
        yield
        guard.check_by("the audit", subject="your model",
                       fix="report this robaudit bug; it must audit a copy of a live module")


def _live_model(module: nn.Module, config: AuditConfig, x: Any, second_order: bool, device: str) -> AuditModel:
    return live_audit_model(module, x, mean=config.mean, std=config.std, normalisation_mode=config.normalisation,
                            second_order=second_order, device=device, state_sha256=state_dict_sha256(module))


def split_live_options(options: dict[str, Any]) -> tuple[dict[str, Any], LiveInputs | None]:
    """Take live objects out of :func:`robaudit.audit`'s keyword options.

    ``model=`` may be an ``nn.Module``; ``data=`` (or ``dataset=``) may be ``(x, y)`` tensors, a torch
    ``Dataset`` or ``DataLoader``, or a name/path as ``--dataset`` takes. Their places in the options
    get the descriptions the results echo (``memory:<module>:<Class>``, ``memory:tensors`` …).

    Returns:
        (the options for :class:`AuditConfig`, the live objects or ``None`` when there are none).

    Raises:
        ConfigError: both ``data=`` and ``dataset=``, or a model/data of a type robaudit does not take.
    """
    options = dict(options)
    live = LiveInputs()
    if "data" in options:
        if "dataset" in options:
            raise ConfigError("data= and dataset= name the same thing", fix="pass one of them")
        options["dataset"] = options.pop("data")
    model = options.get("model")
    if isinstance(model, nn.Module):
        live.model = model
        options["model"] = f"{MEMORY_PREFIX}{module_class(model)}"
    elif model is not None and not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model= got a {type(model).__name__}",
                          fix="pass a torch.nn.Module, a checkpoint path, timm:NAME or torchvision:NAME")
    elif model is not None:
        options["model"] = os.fspath(model)
    data = options.get("dataset")
    if is_live_data(data):
        live.data = data
        options["dataset"] = describe_live_data(data)
    elif data is not None and not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data= got a {type(data).__name__}" + (f" of {len(data)}" if isinstance(data, (tuple, list))
                                                                    else ""),
                          fix="pass (x, y) tensors (x: N×C×H×W float in [0, 1], y: N class indices), a torch Dataset "
                              "or DataLoader yielding (x, y), or a dataset name or path")
    elif data is not None:
        options["dataset"] = os.fspath(data)
    return options, (live if live.model is not None or live.data is not None else None)
