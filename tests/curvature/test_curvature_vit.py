"""A tiny timm ViT: exact HVPs with fused attention off (as the loader builds it for curvature probes),
and the documented error when fused attention is left on."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from curvature_oracle import make_ctx
from helpers import audit_data
from robaudit.config import build_probe_config
from robaudit.data.audit_data import DatasetInfo
from robaudit.errors import ProbeError
from robaudit.models import ModelRequest, load_model
from robaudit.models.audit_model import same_state
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.topk_probe import CurvatureTopK
from robaudit.probes.curvature.samples import SampleSet

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
INFO = DatasetInfo("tensors", 10, 3, (32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _vit(second_order: bool):  # noqa: ANN202
    torch.manual_seed(0)
    return load_model(ModelRequest("timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT, second_order=second_order), INFO)


def _data():  # noqa: ANN202
    gen = torch.Generator().manual_seed(0)
    return audit_data(torch.rand(10, 3, 32, 32, generator=gen), torch.randint(0, 10, (10,), generator=gen), 10)


def _central_difference_hvp(model, data, v: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:  # noqa: ANN001
    """Oracle: (∇J(θ + εv) − ∇J(θ − εv)) / 2ε in float64 (first derivatives only)."""
    def grad_at(shift: torch.Tensor) -> torch.Tensor:
        net = copy.deepcopy(model).double().eval()
        offset = 0
        with torch.no_grad():
            for p in net.parameters():
                p.add_(shift[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        loss = F.cross_entropy(net(data.x.double()), data.y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))])

    return (grad_at(eps * v) - grad_at(-eps * v)) / (2 * eps)


@pytest.mark.slow
def test_vit_with_fused_attention_off_gives_exact_hvps_and_runs_topk() -> None:
    model, data = _vit(second_order=True), _data()
    assert model.provenance.fused_attention is False and model.math_attention
    samples = SampleSet("audit", "audit", None, data.x, data.y, list(data.ids))
    ours = HessianOperator(model, samples, dtype=torch.float64, batch_size=3)
    v = torch.randn(ours.size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = _central_difference_hvp(model, data, v)
    assert float((ours.matvec(v) - want).norm() / want.norm()) < 1e-5  # the central difference's own error

    before = model.state_fingerprint()
    cfg = build_probe_config(CurvatureTopK, {"k": 2, "dtype": "float64"})
    result = CurvatureTopK(cfg).run(make_ctx(model, data, batch_size=4))
    assert same_state(before, model.state_fingerprint())
    spectrum = result.summary["sets"]["audit"]["full"]
    assert spectrum["certified"] and len(spectrum["eigenvalues"]) == 2
    # per-sample curvature along v1 (vmapped double backward through attention and LayerNorm) averages to λ1
    assert result.per_sample["v1_curvature"].mean() == pytest.approx(spectrum["eigenvalues"][0], rel=1e-8)


def test_vit_with_fused_attention_on_fails_with_the_documented_message() -> None:
    model, data = _vit(second_order=False), _data()
    assert model.provenance.fused_attention is True
    with pytest.raises(ProbeError, match="fused attention has no double backward"):
        CurvatureTopK(build_probe_config(CurvatureTopK, {"k": 2})).run(make_ctx(model, data, batch_size=4))
