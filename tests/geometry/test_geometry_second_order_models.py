"""Second-order geometry on real architectures loaded through robaudit's loader.

MobileNetV3 (Hardsigmoid/Hardswish have no second derivative) works through the loader's exact
module swap, which is recorded; a tiny timm ViT works with fused attention off and fails with the
documented message when it is on. Neither net is piecewise linear, so the probe must fall back to
Lanczos; its λ1 is checked against hessian-eigenthings' Lanczos on the same per-sample HVP.
These run in float32 at 16×16 pixels on a quarter-width MobileNet: torch's double backward of
grouped convolutions loops over groups (≈ 1 s per Hessian-vector product even so, on CPU).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hessian_eigenthings import LambdaOperator, lanczos

from geometry_helpers import run_probe
from helpers import audit_data, context
from robaudit.data.audit_data import DatasetInfo
from robaudit.errors import ProbeError
from robaudit.models import ModelRequest, load_model
from robaudit.probes.geometry.common import working_model
from robaudit.probes.geometry.hessian_probe import InputHessian

TINY_VIT = {"img_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
INFO = DatasetInfo(name="tensors", num_classes=10, channels=3, image_size=(16, 16))
CONFIG = InputHessian.Config(precision="mixed", lanczos_steps=24, decision_hessian=False)
MOBILENET = {"width_mult": 0.25, "reduced_tail": True}


def _ctx(model, n: int = 2):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return context(model, audit_data(x, y, 10), batch_size=n)


def _reference_lambda1(model, x: torch.Tensor, y: torch.Tensor, steps: int = 40) -> float:
    """λ1 of one sample's input Hessian by hessian-eigenthings' Lanczos (``steps``, reorthogonalised, float32 HVPs)."""
    work = working_model(model, "float32")
    x0 = x[None]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        xx = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(work(xx), y[None]), xx, create_graph=True)
        (h,) = torch.autograd.grad(g, xx, grad_outputs=v.reshape(x0.shape))
        return h.reshape(-1)

    op = LambdaOperator(hvp, size=x0.numel(), dtype=torch.float32)
    return float(lanczos(op, k=1, max_iter=steps, which="LA", reorthogonalize=True, seed=0).eigenvalues[0])


@pytest.mark.slow
def test_mobilenet_v3_through_the_exact_module_swap():
    """The swap makes every second-order quantity computable, and it is recorded.

    The numbers themselves are checked against hessian-eigenthings on the ViT below and against
    dense Hessians on the GELU CNN; MobileNet's Hessian-vector products are too slow on CPU
    (grouped convolutions) for a reference solve here.
    """
    torch.manual_seed(0)
    model = load_model(ModelRequest(source="torchvision:mobilenet_v3_small", arch_kwargs=MOBILENET,
                                    second_order=True), INFO)
    swaps = model.provenance.module_swaps
    assert swaps and all("→ ReLU6Hard" in s for s in swaps)
    assert not any(type(m).__name__ in ("Hardsigmoid", "Hardswish") for m in model.modules())
    ctx = _ctx(model, 1)
    res = run_probe(InputHessian(InputHessian.Config(precision="mixed", lanczos_steps=4, check_vectors=1,
                                                     decision_hessian=False)), ctx)
    assert res.summary["theorem1"]["module_swaps"] == len(swaps)
    assert any("module swaps" in note for note in res.notes)
    # Hardswish is x·relu6(x + 3)/6 (quadratic pieces) and SE blocks multiply: not piecewise linear
    assert (res.per_sample["method_exact"] == 0).all() and res.summary["methods"]["lanczos_hvp"] == 1
    assert all(np.isfinite(res.per_sample[k]).all() for k in ("lambda_1", "lambda_min", "trace", "ggn_residual"))
    assert res.per_sample["lambda_1"][0] >= res.per_sample["lambda_min"][0]


def test_mobilenet_v3_without_the_swap_fails_with_advice():
    torch.manual_seed(0)
    model = load_model(ModelRequest(source="torchvision:mobilenet_v3_small", arch_kwargs=MOBILENET), INFO)
    assert model.provenance.module_swaps == []
    with pytest.raises(ProbeError, match="no second derivative.*hardsigmoid_backward.*swaps Hardsigmoid"):
        run_probe(InputHessian(CONFIG), _ctx(model, 1))


def test_tiny_vit_with_fused_attention_off():
    torch.manual_seed(0)
    model = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT, second_order=True), INFO)
    assert model.provenance.fused_attention is False
    ctx = _ctx(model, 1)
    res = run_probe(InputHessian(CONFIG), ctx)
    assert (res.per_sample["method_exact"] == 0).all()  # GELU and softmax attention
    for i in range(len(ctx.data)):
        ref = _reference_lambda1(model, ctx.data.x[i], ctx.data.y[i], steps=32)
        assert res.per_sample["lambda_1"][i] == pytest.approx(ref, rel=1e-3)


def test_tiny_vit_with_fused_attention_on_fails_with_the_documented_message():
    from timm.layers import use_fused_attn

    if not use_fused_attn():
        pytest.skip("timm fused attention is disabled in this environment")
    torch.manual_seed(0)
    model = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT), INFO)
    assert model.provenance.fused_attention is True
    with pytest.raises(ProbeError, match="fused attention.*Fix: build the model with fused attention off"):
        run_probe(InputHessian(CONFIG), _ctx(model))
