"""Models and data for the attack tests: linear models with closed-form distances, and models
built to trigger each sanity flag (softmax output, torch.round, non-differentiable steps)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from helpers import audit_data, audit_model
from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.data.audit_data import AuditData
from robaudit.models import ModelRequest, load_model
from robaudit.models.audit_model import AuditModel

SHAPE = (1, 4, 4)
D = 16


class Linear(nn.Module):
    """z = W·vec(x) + b (K×d weights), the multinomial linear model."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def exact_distances(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimal L∞ and L2 distances to the decision boundary of a linear model, ignoring the box:
    min_j (z_y − z_j)/‖w_y − w_j‖₁ and min_j (z_y − z_j)/‖w_y − w_j‖₂ (float64)."""
    w, b = weight.double(), bias.double()
    z = x.double().flatten(1) @ w.T + b
    n, k = z.shape
    d_inf = torch.full((n,), math.inf, dtype=torch.float64)
    d_2 = torch.full((n,), math.inf, dtype=torch.float64)
    for i in range(n):
        for j in range(k):
            if j == int(y[i]):
                continue
            diff = w[y[i]] - w[j]
            gap = z[i, y[i]] - z[i, j]
            d_inf[i] = min(d_inf[i], gap / diff.abs().sum())
            d_2[i] = min(d_2[i], gap / diff.norm())
    return d_inf, d_2


def linear_problem(n: int = 24, k: int = 4, seed: int = 0, scale: float = 8.0) -> tuple[AuditModel, AuditData, torch.Tensor, torch.Tensor]:
    """A K-class linear model on 1×4×4 inputs in [0.3, 0.7], labels = its predictions, with
    boundaries close enough (L∞ distance ≤ 0.2) that the [0, 1] box never binds.

    Returns (model, data, exact L∞ distances, exact L2 distances).
    """
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(k, D, generator=g) * scale
    bias = torch.randn(k, generator=g)
    x = 0.3 + 0.4 * torch.rand(n * 4, *SHAPE, generator=g)
    z = x.flatten(1) @ weight.T + bias
    y = z.argmax(dim=1)
    d_inf, d_2 = exact_distances(weight, bias, x, y)
    keep = torch.nonzero((d_inf < 0.2) & (d_inf > 0.01)).flatten()[:n]
    x, y, d_inf, d_2 = x[keep], y[keep], d_inf[keep], d_2[keep]
    return audit_model(Linear(weight, bias), k), audit_data(x, y, k), d_inf, d_2


def demo() -> tuple[AuditModel, AuditData]:
    """The demo CNN and all 360 digits test samples, through the real loaders."""
    info = describe_dataset(DataRequest(source="digits"))
    model = load_model(ModelRequest(source=str(DEMO_CHECKPOINT), arch=DEMO_ARCH), info)
    data = load_data(DataRequest(source="digits"), model.in_channels, model.data_config)
    return model, data


def subset(data: AuditData, n: int) -> AuditData:
    """The first n samples of ``data`` (same ids, same info)."""
    return AuditData(data.x[:n], data.y[:n], data.ids[:n], data.info, data.provenance)


# -------------------------------------------------------------- models that trigger the flags

class ScaledSoftmax(nn.Module):
    """Returns softmax(scale·z): probabilities, saturated to exact one-hots for confident samples."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scale * z, dim=1)


class RoundPixels(nn.Module):
    """Quantises pixels to ``levels`` steps with torch.round: zero gradient almost everywhere."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


def softmax_output(model: AuditModel, scale: float = 1000.0) -> AuditModel:
    """``model`` followed by a (temperature-sharpened) softmax: outputs probabilities."""
    return audit_model(nn.Sequential(model, ScaledSoftmax(scale)), model.num_classes, model.in_channels)


def rounded_input(model: AuditModel, levels: int = 4) -> AuditModel:
    """``model`` behind a torch.round quantisation of its input pixels."""
    return audit_model(nn.Sequential(RoundPixels(levels), model), model.num_classes, model.in_channels)


class KinkStep(nn.Module):
    """Two classes; class 1's logit along u = (mean pixel − 0.5)/ε₀ is
    g(u) = −1 + u − 2·relu(u − 0.3) + 2·[u > 0.9] (a non-differentiable step).

    The gradient points towards class 1 until u = 0.3 and away after it, so small steps stall
    near u = 0.3 (g ≈ −0.7, still class 0) while one step of ε₀ lands at u = 1 (g = 0.6, class 1):
    FGSM succeeds where BIM and PGD fail.
    """

    def __init__(self, eps0: float = 0.1) -> None:
        super().__init__()
        self.eps0 = eps0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.flatten(1).mean(dim=1) - 0.5) / self.eps0
        g = -1 + u - 2 * torch.relu(u - 0.3) + 2 * (u > 0.9).to(x.dtype)
        return torch.stack([torch.zeros_like(g), g], dim=1)


class Periodic(nn.Module):
    """Two classes; class 1's logit is −cos(π(u + 0.01)/0.1) with u = mean pixel − 0.5.

    FGSM moves u by exactly ε: class 1 (wrong) at ε = 0.1, class 0 (right) again at ε = 0.2,
    so robust accuracy rises with ε.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.flatten(1).mean(dim=1) - 0.5
        g = -torch.cos(math.pi * (u + 0.01) / 0.1)
        return torch.stack([torch.zeros_like(g), g], dim=1)


class Binarised(nn.Module):
    """Two classes from the fraction f of pixels above 0.5 (a non-differentiable threshold):
    class 1's logit is 10·(f − 0.6). Zero input gradient everywhere; random noise rarely lifts
    60 % of the pixels over the threshold, a black-box search does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (x.flatten(1) > 0.5).to(x.dtype).mean(dim=1)
        return torch.stack([torch.zeros_like(f), 10 * (f - 0.6)], dim=1)


def centred_inputs(n: int, seed: int = 0, centre: float = 0.5, spread: float = 0.2) -> torch.Tensor:
    """n×1×4×4 pixels around ``centre`` with zero-mean jitter in [−spread, spread] (mean exactly ``centre``)."""
    g = torch.Generator().manual_seed(seed)
    jitter = (torch.rand(n, D, generator=g) * 2 - 1) * spread
    jitter = jitter - jitter.mean(dim=1, keepdim=True)
    return (centre + jitter.clamp(-spread, spread)).view(n, *SHAPE)


def two_class(net: nn.Module, x: torch.Tensor) -> tuple[AuditModel, AuditData]:
    """An audit model/data pair for a two-class toy model whose samples all belong to class 0."""
    y = torch.zeros(len(x), dtype=torch.int64)
    return audit_model(net, 2), audit_data(x, y, 2)


def run_probe(cls: type, model: AuditModel, data: AuditData, seed: int = 0, batch_size: int = 64,
              previous: dict | None = None, **knobs: object):
    """Run probe class ``cls`` with knobs (validated like ``--set``) on ``model``/``data`` (grad on)."""
    from helpers import context
    from robaudit.config import build_probe_config

    ctx = context(model, data, seed=seed, batch_size=batch_size, previous=previous)
    torch.manual_seed(seed)
    with torch.enable_grad():
        return cls(build_probe_config(cls, knobs)).run(ctx)


def flag_ids(result) -> set[str]:
    """The ids of the flags a probe result raised."""
    return {f.id for f in result.flags}


def foolbox_success(model: nn.Module, data: AuditData, attack: object, eps: list[float],
                    device: str = "cpu") -> np.ndarray:
    """Foolbox's attack on ``data`` at each ε, on ``device``, with matched settings (float64 logits, as
    robaudit's attacks see them): success per (ε, sample), shape (len(eps), N), bool."""
    import foolbox as fb

    class Float64Logits(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).double()

    fmodel = fb.PyTorchModel(Float64Logits(model).eval(), bounds=(0.0, 1.0), device=device)
    x, y = data.x.to(device), data.y.to(device)
    _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
    out = []
    for adv in clipped:
        assert adv.device.type == torch.device(device).type
        with torch.no_grad():
            out.append((model(adv).argmax(dim=1) != y).cpu().numpy())
    return np.stack(out)

