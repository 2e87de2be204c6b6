"""Second-order readiness: exact module swaps and attention without fused kernels."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from model_helpers import save_torchscript
from robaudit.models import ModelRequest, ReLU6Hardsigmoid, ReLU6Hardswish, load_model, swap_second_order_modules

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)


def _input_hvp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """H_x·v of the mean cross-entropy by double backward (v fixed and seeded)."""
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (hvp,) = torch.autograd.grad((grad * v).sum(), x)
    return hvp


def _mobilenet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=10).eval()


def test_elementwise_replacements_are_exact():
    x = torch.linspace(-8, 8, 100_001)
    x = torch.cat([x, torch.tensor([-3.0, 3.0, -0.0, 0.0]), torch.randn(10_000) * 4])
    assert torch.equal(ReLU6Hardsigmoid()(x), nn.Hardsigmoid()(x))
    assert torch.equal(ReLU6Hardswish()(x), nn.Hardswish()(x))


def test_mobilenet_swap_is_bit_identical_and_enables_double_backward():
    net = _mobilenet()
    x, y = _inputs()
    with torch.no_grad():
        before = net(x)
    with pytest.raises(RuntimeError, match="hardsigmoid_backward"):
        _input_hvp(net, x, y)

    swapped = copy.deepcopy(net)
    swaps = swap_second_order_modules(swapped)
    assert not any(isinstance(m, (nn.Hardsigmoid, nn.Hardswish)) for m in swapped.modules())
    assert "features.1.block.1.scale_activation: Hardsigmoid → ReLU6Hardsigmoid" in swaps
    assert any(s.endswith("Hardswish → ReLU6Hardswish") for s in swaps)
    assert swapped.state_dict().keys() == net.state_dict().keys()
    with torch.no_grad():
        after = swapped(x)
    assert torch.equal(before, after)
    hvp = _input_hvp(swapped, x, y)
    assert torch.isfinite(hvp).all() and hvp.abs().sum() > 0


def test_load_model_second_order_swaps_and_records(plain_info):
    torch.manual_seed(0)
    plain = load_model(ModelRequest(source="torchvision:mobilenet_v3_small"), plain_info)
    torch.manual_seed(0)
    ready = load_model(ModelRequest(source="torchvision:mobilenet_v3_small", second_order=True), plain_info)
    prov = ready.provenance
    assert len(prov.module_swaps) > 0 and prov.fused_attention is False
    assert all("→ ReLU6Hard" in s for s in prov.module_swaps)
    assert plain.provenance.module_swaps == []
    x, y = _inputs(2)
    with torch.no_grad():
        assert torch.equal(plain(x), ready(x))
    with pytest.raises(RuntimeError, match="hardsigmoid_backward"):
        _input_hvp(plain, x, y)
    assert torch.isfinite(_input_hvp(ready, x, y)).all()


def test_timm_vit_second_order_turns_fused_attention_off(plain_info):
    from timm.layers import use_fused_attn

    flag_before = use_fused_attn()
    ready = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT, second_order=True), plain_info)
    assert use_fused_attn() == flag_before  # the global flag was restored
    assert ready.provenance.fused_attention is False
    attn = [m for m in ready.net.modules() if hasattr(m, "fused_attn")]
    assert attn and not any(m.fused_attn for m in attn)
    x, y = _inputs(3)
    hvp = _input_hvp(ready, x, y)
    assert torch.isfinite(hvp).all() and hvp.abs().sum() > 0


def test_timm_vit_without_second_order_keeps_fused_attention(plain_info):
    from timm.layers import use_fused_attn

    if not use_fused_attn():
        pytest.skip("timm fused attention is disabled in this environment")
    plain = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT), plain_info)
    assert plain.provenance.fused_attention is True
    x, y = _inputs(3)
    with pytest.raises(RuntimeError, match="scaled_dot_product"):
        _input_hvp(plain, x, y)


def test_custom_multihead_attention_gets_the_math_kernel(tmp_path, tiny_arch, tiny_module, plain_info):
    torch.manual_seed(0)
    ref = tiny_module.AttnNet()
    path = tmp_path / "attn.pt"
    torch.save(ref.state_dict(), path)
    request = dict(source=str(path), arch=f"{tiny_arch}:AttnNet")
    plain = load_model(ModelRequest(**request), plain_info)
    ready = load_model(ModelRequest(**request, second_order=True), plain_info)
    x, y = _inputs(4)
    with torch.no_grad():
        assert torch.allclose(plain(x), ready(x), atol=1e-6)
    with pytest.raises(RuntimeError, match="scaled_dot_product"):
        _input_hvp(plain, x, y)
    assert torch.isfinite(_input_hvp(ready, x, y)).all()
    assert ready.audit_copy().math_attention is True


def test_torchscript_hardsigmoid_cannot_be_swapped_and_says_so(tmp_path, plain_info):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardsigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    path = tmp_path / "scripted.pt"
    save_torchscript(net.eval(), path)
    model = load_model(ModelRequest(source=str(path), second_order=True, trust_checkpoint=True), plain_info)
    assert model.provenance.module_swaps == []
    assert any("cannot be swapped" in w for w in model.provenance.load_report.warnings)
