"""Models, data and contexts for the input-geometry tests (a uniquely named module, unlike conftest)."""
from __future__ import annotations

import importlib.util
import sys
from typing import Any

import torch
from torch import nn

from demo import DEMO_CHECKPOINT, REPO
from helpers import audit_data, audit_model, context
from robaudit.data.digits import DIGITS_MEAN, DIGITS_STD, digits_split
from robaudit.models.audit_model import AuditModel, DataConfig, ModelProvenance, Normalisation
from robaudit.probes.base import ProbeContext, ProbeResult


def _digits_cnn_class() -> type[nn.Module]:
    name = "geometry_test_digits_cnn"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples" / "digits_cnn.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].DigitsCNN


def digits_net(activation: str = "relu") -> nn.Module:
    """The trained demo DigitsCNN; ``gelu`` swaps every ReLU for GELU (same weights: not piecewise linear)."""
    from safetensors.torch import load_file

    net = _digits_cnn_class()()
    net.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    if activation == "gelu":
        for parent in net.modules():
            for child_name, child in parent.named_children():
                if isinstance(child, nn.ReLU):
                    setattr(parent, child_name, nn.GELU())
    return net.eval()


def digits_model(activation: str = "relu") -> AuditModel:
    """The demo CNN as an audit model with the digits normalisation folded in."""
    norm = Normalisation(DIGITS_MEAN, DIGITS_STD, "checkpoint")
    prov = ModelProvenance(source="test", arch="DigitsCNN", arch_source="cli", num_classes=10,
                           num_classes_source="arch", normalisation=norm)
    return AuditModel(digits_net(activation), norm, DataConfig(), prov, in_channels=1)


def digits_context(model: AuditModel, n: int, start: int = 0, batch_size: int = 32, seed: int = 0,
                   previous: dict[str, ProbeResult] | None = None) -> ProbeContext:
    """A context over ``n`` digits test samples from ``start`` (dataset name ``digits``)."""
    x, y, _ = digits_split("test")
    data = audit_data(torch.from_numpy(x[start:start + n]), torch.from_numpy(y[start:start + n]), 10)
    data.info.name = "digits"
    return context(model, data, seed=seed, batch_size=batch_size, previous=previous)


def linear_setup(n: int = 12, c: int = 5, shape: tuple[int, int, int] = (1, 4, 4), seed: int = 0,
                 scale: float = 1.0) -> tuple[AuditModel, ProbeContext, torch.Tensor, torch.Tensor]:
    """A linear classifier z = W·vec(x) + b (identity normalisation) on random [0, 1] inputs.

    Returns:
        (audit model, context, W as c×D float64, b as c float64).
    """
    g = torch.Generator().manual_seed(seed)
    d = shape[0] * shape[1] * shape[2]
    lin = nn.Linear(d, c)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(c, d, generator=g) * scale)
        lin.bias.copy_(torch.randn(c, generator=g) * scale)
    net = nn.Sequential(nn.Flatten(), lin)
    model = audit_model(net, c, channels=shape[0])
    x = torch.rand(n, *shape, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    ctx = context(model, audit_data(x, y, c), batch_size=5)
    return model, ctx, lin.weight.detach().double(), lin.bias.detach().double()


def run_probe(probe: Any, ctx: ProbeContext) -> ProbeResult:
    """Run a probe with autograd on, as the engine does for ``needs_grad`` probes."""
    with torch.enable_grad():
        return probe.run(ctx)
