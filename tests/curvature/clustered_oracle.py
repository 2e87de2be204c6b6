"""Two Hessians with clustered spectra whose eigenvalues are known exactly.

* :class:`MatrixOperator`: a symmetric P×P matrix Q diag(λ) Qᵀ built from a chosen spectrum (a
  closed-form oracle), exposing the ``HessianOperator`` interface that ``topk`` uses.
* :func:`build_clustered_net`: a 5,635-parameter tanh MLP on digits (the held-out kind: about
  5,650 parameters, the top-20 reaching into the clustered bulk), with its dense float64 Hessian.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from curvature_oracle import dense_hessian
from helpers import audit_model
from robaudit.data import DataRequest, load_data
from robaudit.data.audit_data import AuditData
from robaudit.models.audit_model import AuditModel
from robaudit.probes.curvature.samples import SampleSet


class MatrixOperator:
    """H·v for an explicit symmetric matrix, counting products like ``HessianOperator``."""

    def __init__(self, eigenvalues: torch.Tensor, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        p = len(eigenvalues)
        q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
        self.eigenvalues = eigenvalues.to(torch.float64)
        self.matrix = (q * self.eigenvalues) @ q.T
        self.matrix = (self.matrix + self.matrix.T) / 2
        self.size, self.hvps = p, 0
        self.device, self.dtype = torch.device("cpu"), torch.float64

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.hvps += 1
        return self.matrix @ v.to(torch.float64).reshape(-1)


def clustered_spectrum(p: int = 400) -> torch.Tensor:
    """Descending eigenvalues: 16 spread outliers, a cluster of 8 spaced 1 % apart around λ20
    (λ17…λ24), then a bulk decaying from 1 — and one exactly repeated eigenvalue (λ5 = λ6)."""
    top = torch.logspace(3, 1.2, 16, dtype=torch.float64)
    top[5] = top[4]  # exact multiplicity 2: single-vector Lanczos only ever sees one copy
    cluster = 10.0 * (1 + 1e-2 * torch.arange(8, 0, -1, dtype=torch.float64))
    bulk = torch.linspace(1.0, 1e-3, p - 24, dtype=torch.float64)
    return torch.cat([top, cluster, bulk])


class ClusterNet(nn.Module):
    """8×8 digits → 75 tanh units → 10 classes: 5,635 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 75), nn.Tanh(), nn.Linear(75, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@dataclass
class ClusteredNet:
    """ClusterNet as an audit model on 120 digits test samples, with its dense float64 Hessian."""

    model: AuditModel
    data: AuditData
    eigenvalues: torch.Tensor  # ascending

    def set(self) -> SampleSet:
        return SampleSet("audit", "audit", None, self.data.x, self.data.y, list(self.data.ids))


def build_clustered_net(seed: int = 0, steps: int = 40) -> ClusteredNet:
    """ClusterNet briefly trained on 300 digits train samples, with the dense spectrum of its test loss."""
    torch.manual_seed(seed)
    net = ClusterNet()
    train = load_data(DataRequest("digits", split="train", n_samples=300, seed=seed), 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(train.x), train.y).backward()
        opt.step()
    model = audit_model(net.eval(), 10)
    data = load_data(DataRequest("digits", n_samples=120, seed=seed), 1)
    h = dense_hessian(copy.deepcopy(model), data.x, data.y)
    return ClusteredNet(model, data, torch.linalg.eigvalsh(h))
