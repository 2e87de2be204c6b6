"""Shared fixtures for the model-loading tests: thread count, datasets, a tiny arch file."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from robaudit.data.audit_data import DatasetInfo

TINY_ARCH_SOURCE = textwrap.dedent(
    '''
    """Tiny test architectures (written by tests/models/conftest.py)."""
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 4):
            super().__init__()
            self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(width)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.pool(torch.relu(self.bn1(self.conv1(x)))).flatten(1))


    class FixedNet(nn.Module):
        """Takes no num_classes: always 10 logits."""

        def __init__(self, width: int = 4):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, padding=1)
            self.fc = nn.Linear(width, 10)

        def forward(self, x):
            return self.fc(self.conv1(x).mean(dim=(2, 3)))


    class Broken(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            raise ValueError("width must be even")


    def make_tiny(num_classes: int = 10, width: int = 4):
        return TinyNet(num_classes=num_classes, width=width)


    class AttnNet(nn.Module):
        """Patch embedding + one nn.MultiheadAttention layer (uses scaled_dot_product_attention)."""

        def __init__(self, num_classes: int = 10, dim: int = 8):
            super().__init__()
            self.embed = nn.Conv2d(3, dim, 8, stride=8)
            self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
            self.fc = nn.Linear(dim, num_classes)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = t + self.attn(t, t, t, need_weights=False)[0]
            return self.fc(t.mean(dim=1))
    '''
)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def cifar_info() -> DatasetInfo:
    """A CIFAR-10-like dataset: 10 classes, 3×32×32, conventional mean/std."""
    return DatasetInfo(
        name="cifar10",
        num_classes=10,
        channels=3,
        image_size=(32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )


@pytest.fixture
def plain_info() -> DatasetInfo:
    """A 10-class 3×32×32 dataset without conventional normalisation."""
    return DatasetInfo(name="tensors", num_classes=10, channels=3, image_size=(32, 32))


@pytest.fixture
def tiny_arch(tmp_path: Path) -> Path:
    """Path of a Python file defining TinyNet, FixedNet, Broken, make_tiny and AttnNet."""
    path = tmp_path / "tiny_models.py"
    path.write_text(TINY_ARCH_SOURCE)
    return path


@pytest.fixture
def tiny_module(tiny_arch: Path) -> Iterator[ModuleType]:
    """The tiny arch file imported independently of robaudit (to build reference nets)."""
    name = f"tiny_models_ref_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, tiny_arch)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)
