"""Fixtures of the plugin's tests. Torch's thread count is pinned to 2 (the CI machine's cores)."""
from __future__ import annotations

import pytest
import torch

from soa_helpers import THREADS, audit_data, audit_model, tiny_cnn
from robaudit.data.audit_data import AuditData
from robaudit.models.audit_model import AuditModel


@pytest.fixture(autouse=True)
def _pin_threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="module")
def cnn_setup() -> tuple[AuditModel, AuditData]:
    """A tiny ReLU CNN that classifies about half of 48 random 6×6 images correctly (labels from a
    perturbed copy of its own predictions), so attacks have correct samples to break."""
    net = tiny_cnn()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(48, 1, 6, 6, generator=gen)
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    flip = torch.rand(48, generator=gen) < 0.3
    y = torch.where(flip, (y + 1) % 5, y)
    model = audit_model(net, 5)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, audit_data(x, y, 5)
