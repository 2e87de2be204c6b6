"""Fixtures of the plugin's tests. Torch's thread count is pinned to 2 (the CI machine's cores)."""
from __future__ import annotations

import pytest
import torch

from soa_helpers import THREADS, tiny_cnn
from robaudit.plugin import AuditModel, make_test_context


@pytest.fixture(autouse=True)
def _pin_threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="module")
def cnn_setup() -> tuple[AuditModel, object]:
    """A tiny ReLU CNN that classifies about half of 48 random 6×6 images correctly (labels from a
    perturbed copy of its own predictions), so attacks have correct samples to break."""
    net = tiny_cnn()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(48, 1, 6, 6, generator=gen)
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    flip = torch.rand(48, generator=gen) < 0.3
    y = torch.where(flip, (y + 1) % 5, y)
    ctx = make_test_context(net, x, y, num_classes=5)
    for p in ctx.model.parameters():
        p.requires_grad_(False)
    return ctx.model, ctx.data
