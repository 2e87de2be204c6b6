"""Builders for the plugin's tests (a uniquely named module, so it cannot clash with robaudit's own
``tests/helpers.py`` or ``conftest.py`` when both test trees run in one pytest session).

They use robaudit's public classes only (AuditModel, AuditData, ProbeContext).
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from robaudit.data.audit_data import AuditData, DatasetInfo
from robaudit.engine.progress import make_progress
from robaudit.models.audit_model import AuditModel, DataConfig, ModelProvenance, Normalisation
from robaudit.probes.base import ProbeContext

THREADS = 2


def audit_model(net: nn.Module, num_classes: int, channels: int = 1) -> AuditModel:
    """``net`` as an audit model with identity normalisation (mean 0, std 1)."""
    norm = Normalisation((0.0,) * channels, (1.0,) * channels, "cli")
    prov = ModelProvenance(source="test", arch="test", arch_source="cli", num_classes=num_classes,
                           num_classes_source="arch_kwargs", normalisation=norm)
    return AuditModel(net, norm, DataConfig(), prov, in_channels=channels)


def audit_data(x: torch.Tensor, y: torch.Tensor, num_classes: int, name: str = "tensors") -> AuditData:
    """Samples with ids ``test:i``."""
    info = DatasetInfo(name, num_classes, x.shape[1], tuple(x.shape[2:]))
    return AuditData(x, y, [f"test:{i}" for i in range(len(y))], info, {"source": "test"})


def context(model: AuditModel, data: AuditData, seed: int = 0, batch_size: int = 16, previous=None) -> ProbeContext:
    """A probe context on CPU."""
    return ProbeContext(model=model, data=data, device=torch.device("cpu"), batch_size=batch_size, seed=seed,
                        generator=torch.Generator().manual_seed(seed), logger=logging.getLogger("test"),
                        progress=make_progress(quiet=True), previous=dict(previous or {}), dataset=data.info.name)


def tiny_cnn(classes: int = 5, seed: int = 0) -> nn.Module:
    """A piecewise-linear CNN on 1×6×6 inputs (conv, ReLU, max-pool, linear)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, classes))
