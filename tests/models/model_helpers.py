"""Helpers shared by the model-loading tests (a distinct name, to not clash with other test folders)."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from types import ModuleType

import torch


def seeded_tiny(module: ModuleType, num_classes: int = 10, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A TinyNet with seeded weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = module.TinyNet(num_classes=num_classes, **kwargs)
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 1.5)
    return net.eval()


def assert_same_weights(net: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    """Every tensor of ``reference`` is bitwise equal in ``net``'s state dict."""
    state = net.state_dict()
    assert set(reference) <= set(state)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, computed independently of robaudit."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_torchscript(net: torch.nn.Module, path: Path) -> None:
    """Trace ``net`` on a 1×3×32×32 input and save it as a TorchScript archive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream
        torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 32, 32)), str(path))
