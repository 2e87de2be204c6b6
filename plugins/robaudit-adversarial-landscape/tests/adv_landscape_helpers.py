"""Helpers of the plugin's tests (a uniquely named module, unlike conftest): a tiny smooth model on real
digits, a probe context without the engine, and a dense oracle.

The oracle is ``torch.func.hessian`` (forward-over-reverse, all samples in one batch, float64) of
the mean cross-entropy at *given* inputs, with respect to the flattened parameters — independent of
robaudit's operator (reverse-over-reverse, batch by batch).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robaudit.data import DataRequest, load_data
from robaudit.data.audit_data import AuditData
from robaudit.engine.progress import make_progress
from robaudit.models.audit_model import AuditModel, DataConfig, ModelProvenance, Normalisation
from robaudit.probes.base import ProbeContext

REPO = Path(__file__).resolve().parents[3]
DEMO_CHECKPOINT = REPO / "examples" / "digits_cnn.safetensors"
DEMO_ARCH = f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN"


class TinyNet(nn.Module):
    """Linear(64, 16) → tanh → Linear(16, 10): 1,210 parameters, smooth (so H has negative eigenvalues)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def audit_model(net: nn.Module, num_classes: int = 10, channels: int = 1) -> AuditModel:
    """``net`` wrapped as an audit model with identity normalisation."""
    norm = Normalisation((0.0,) * channels, (1.0,) * channels, "cli")
    prov = ModelProvenance(source="test", arch="test", arch_source="cli", num_classes=num_classes,
                           num_classes_source="arch_kwargs", normalisation=norm)
    return AuditModel(net, norm, DataConfig(), prov, in_channels=channels)


def context(model: AuditModel, data: AuditData, seed: int = 0, batch_size: int = 16) -> ProbeContext:
    """A CPU probe context (the engine's fields, without the engine)."""
    return ProbeContext(model=model, data=data, device=torch.device("cpu"), batch_size=batch_size, seed=seed,
                        generator=torch.Generator().manual_seed(seed), logger=logging.getLogger("test"),
                        progress=make_progress(quiet=True), previous={}, dataset="digits")


def trained_tiny(seed: int = 0, steps: int = 80) -> TinyNet:
    """TinyNet briefly trained on 300 digits train samples (a non-trivial minimum-ish point)."""
    torch.manual_seed(seed)
    net = TinyNet()
    train = load_data(DataRequest("digits", split="train", n_samples=300, seed=seed), 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(train.x), train.y).backward()
        opt.step()
    return net.eval()


def tiny_setup() -> tuple[AuditModel, AuditData]:
    """The trained tiny model (audit model) and 24 digits test samples."""
    data = load_data(DataRequest("digits", split="test", n_samples=24, seed=0), 1)
    return audit_model(trained_tiny()), data


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
