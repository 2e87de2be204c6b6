"""The curvature tests' oracle: a tiny model whose Hessian is formed densely in float64.

The oracle is ``torch.func.hessian`` of the mean cross-entropy with respect to the flattened
parameters — an independent computation (forward-over-reverse through ``functional_call``, all
samples in one batch) from robaudit's operator (reverse-over-reverse, batch by batch).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers import audit_model
from robaudit.data import DataRequest, load_data
from robaudit.data.audit_data import AuditData
from robaudit.models.audit_model import AuditModel
from robaudit.plugin import ProbeContext, make_test_context
from robaudit.probes.curvature.samples import SampleSet

N_AUDIT = 60


class OracleNet(nn.Module):
    """Linear(64, 20) → BatchNorm1d → tanh → Linear(20, 10): 1,550 parameters; smooth, so H has
    negative eigenvalues, and eval-mode BatchNorm is part of the function."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 20)
        self.bn = nn.BatchNorm1d(20)
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.bn(self.fc1(x.flatten(1)))))


@dataclass
class Oracle:
    """The tiny model, its audit data (digits test split) and the dense float64 Hessian."""

    model: AuditModel
    data: AuditData
    hessian: torch.Tensor
    eigenvalues: torch.Tensor  # ascending

    def set(self) -> SampleSet:
        return SampleSet("audit", "audit", None, self.data.x, self.data.y, list(self.data.ids))


def trained_oracle_net(seed: int = 0, steps: int = 60) -> OracleNet:
    """OracleNet briefly trained on digits train samples (so BatchNorm statistics are not trivial)."""
    torch.manual_seed(seed)
    net = OracleNet()
    train = load_data(DataRequest("digits", split="train", n_samples=300, seed=seed), 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(train.x), train.y).backward()
        opt.step()
    return net.eval()


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇²_θ of the mean cross-entropy, P×P float64, by ``torch.func.hessian`` (eval mode)."""
    net = model.double().eval()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            n = int(torch.Size(shape).numel())
            params[name] = theta[offset:offset + n].view(shape)
            offset += n
        return F.cross_entropy(torch.func.functional_call(net, params, (x.double(),)), y)

    return torch.func.hessian(loss)(flat)


def build_oracle() -> Oracle:
    """OracleNet as an audit model on 60 digits test samples, with its dense Hessian."""
    net = trained_oracle_net()
    data = load_data(DataRequest("digits", n_samples=N_AUDIT, seed=0), 1)
    model = audit_model(net, 10)
    h = dense_hessian(copy.deepcopy(model), data.x, data.y)
    return Oracle(model, data, h, torch.linalg.eigvalsh(h))


def make_ctx(model: AuditModel, data: AuditData, seed: int = 0, batch_size: int = 7,
             previous: dict | None = None) -> ProbeContext:
    """A CPU probe context (batch size 7 by default: 60 samples give a short last batch)."""
    return make_test_context(model, data, seed=seed, batch_size=batch_size, previous=previous)


def top_by_magnitude(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k entries of largest magnitude, signed, ordered by |λ| descending."""
    return values[values.abs().argsort(descending=True)[:k]]
