"""Helpers of the plugin's tests (a uniquely named module, unlike conftest): a tiny smooth model on real
digits (scikit-learn's bundled 8×8 digits), a probe context without the engine, and a dense oracle.

The oracle is ``torch.func.hessian`` (forward-over-reverse, all samples in one batch, float64) of
the mean cross-entropy at *given* inputs, with respect to the flattened parameters — independent of
robaudit's operator (reverse-over-reverse, batch by batch).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from robaudit.plugin import AuditModel, ProbeContext, ProbeRegistry, make_test_context

REPO = Path(__file__).resolve().parents[3]
DEMO_CHECKPOINT = REPO / "examples" / "digits_cnn.safetensors"
DEMO_ARCH = f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN"
BUILTIN = ProbeRegistry(autoload_plugins=False)
"""robaudit's own probes, whatever else is installed."""


class TinyNet(nn.Module):
    """Linear(64, 16) → tanh → Linear(16, 10): 1,210 parameters, smooth (so H has negative eigenvalues)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def digits(split: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (N×1×8×8 in [0, 1]) and labels of the digits ``train`` or ``test`` split (360 test images,
    stratified), drawn without replacement with ``seed``."""
    bunch = load_digits()
    train, test = train_test_split(np.arange(len(bunch.target)), test_size=360, stratify=bunch.target, random_state=0)
    rows = np.sort(np.random.default_rng(seed).choice(train if split == "train" else test, n, replace=False))
    x = torch.from_numpy((bunch.images[rows] / 16.0).astype(np.float32))[:, None]
    return x, torch.from_numpy(bunch.target[rows]).long()


def context(model: AuditModel, data, seed: int = 0, batch_size: int = 16) -> ProbeContext:  # noqa: ANN001
    """A CPU probe context on the digits (the engine's fields, without the engine)."""
    return make_test_context(model, data, seed=seed, batch_size=batch_size, dataset="digits")


def trained_tiny(seed: int = 0, steps: int = 80) -> TinyNet:
    """TinyNet briefly trained on 300 digits train samples (a non-trivial minimum-ish point)."""
    torch.manual_seed(seed)
    net = TinyNet()
    x, y = digits("train", 300, seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def tiny_setup() -> tuple[AuditModel, object]:
    """The trained tiny model (audit model) and 24 digits test samples (audit data)."""
    x, y = digits("test", 24)
    ctx = make_test_context(trained_tiny(), x, y, num_classes=10, dataset="digits")
    return ctx.model, ctx.data


def flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], torch.Tensor]:
    named = list(model.named_parameters())
    return [n for n, _ in named], [p.shape for _, p in named], torch.cat([p.detach().reshape(-1) for _, p in named])


def dense_hessian(model: AuditModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇²_θ mean CE(f_θ(x), y) at the given (constant) inputs, P×P float64, by ``torch.func.hessian``."""
    net = model.audit_copy().double().eval()
    names, shapes, flat = flat_params(net)
    x = x.detach().double()

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            n = int(torch.Size(shape).numel())
            params[name] = theta[offset:offset + n].view(shape)
            offset += n
        return F.cross_entropy(torch.func.functional_call(net, params, (x,)), y)

    return torch.func.hessian(loss)(flat.double())
