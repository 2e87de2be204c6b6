"""Builders for audit models, data and probe contexts without the loaders (for probe unit tests)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from robaudit.data.audit_data import AuditData, DatasetInfo
from robaudit.models.audit_model import AuditModel, DataConfig, ModelProvenance, Normalisation
from robaudit.plugin import ProbeContext, make_test_context


def audit_model(net: nn.Module, num_classes: int, channels: int = 1) -> AuditModel:
    """Wrap ``net`` with identity normalisation (mean 0, std 1)."""
    norm = Normalisation((0.0,) * channels, (1.0,) * channels, "cli")
    prov = ModelProvenance(source="test", arch="test", arch_source="cli", num_classes=num_classes,
                           num_classes_source="arch_kwargs", normalisation=norm)
    return AuditModel(net, norm, DataConfig(), prov, in_channels=channels)


def audit_data(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> AuditData:
    """Samples with ids ``test:i``."""
    info = DatasetInfo("tensors", num_classes, x.shape[1], tuple(x.shape[2:]))
    return AuditData(x, y, [f"test:{i}" for i in range(len(y))], info, {"source": "test"})


def context(model: AuditModel, data: AuditData, seed: int = 0, batch_size: int = 32,
            previous: dict | None = None) -> ProbeContext:
    """A probe context on CPU; ``previous`` (results by probe name) also feeds its attack-outcome table."""
    return make_test_context(model, data, seed=seed, batch_size=batch_size, previous=previous)


class FixedLogits(nn.Module):
    """Returns the logits stored for each sample, looked up by the sample's first pixel value (its index/1000)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.round(x[:, 0, 0, 0] * 1000).long()
        return self.table[idx]


def fixed_logits_setup(logits: torch.Tensor, y: torch.Tensor) -> tuple[AuditModel, AuditData]:
    """An audit model that returns exactly ``logits`` (N×K) on the N audit samples."""
    n, k = logits.shape
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    return audit_model(FixedLogits(logits), k), audit_data(x, y, k)


def error_line(capsys: "pytest.CaptureFixture[str]") -> str:
    """The one line a CLI error left on stderr (no traceback, nothing else besides INFO logging)."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("robaudit: INFO:")]
    assert len(lines) == 1 and lines[0].startswith("robaudit: error: "), err
    assert "Traceback" not in err
    return lines[0]


class Noisy(nn.Module):
    """``net`` behind Gaussian input noise (σ = 0.02 pixels) drawn in every forward pass (a randomised defence)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.02 * torch.randn_like(x))
