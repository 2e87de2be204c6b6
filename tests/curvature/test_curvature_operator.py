"""The HVP operator against the dense float64 Hessian: exact weighting, eval mode, no autocast, guards."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from curvature_oracle import Oracle, OracleNet
from helpers import audit_model
from robaudit.engine.model_guard import ModelGuard
from robaudit.errors import InternalError, ProbeError
from robaudit.models.audit_model import same_state
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.curvature.samples import SampleSet


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("reuse_graph", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 60])
def test_hvp_equals_dense_hessian_whatever_the_batches(oracle: Oracle, reuse_graph: bool, batch_size: int) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=batch_size,
                         reuse_graph=reuse_graph)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        v = torch.randn(op.size, generator=gen, dtype=torch.float64)
        assert _rel(op.matvec(v), oracle.hessian @ v) < 1e-12
    assert op.hvps == 2 and op.reuse_graph is reuse_graph


def test_float32_hvp_is_close_and_records_checks(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float32, batch_size=7)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert op.matvec(v).dtype == torch.float32
    assert _rel(op.matvec(v), oracle.hessian @ v) < 1e-4
    checks = op.check(seed=0)
    assert checks.deterministic and checks.symmetric and checks.hvps == 3
    assert checks.determinism == 0.0 and checks.symmetry < 1e-5


def test_gradient_and_loss_match_autograd(oracle: Oracle) -> None:
    ref = copy.deepcopy(oracle.model).double()
    loss = F.cross_entropy(ref(oracle.data.x.double()), oracle.data.y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    flat = torch.cat([g.reshape(-1) for g in grads])
    for reuse in (True, False):
        op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7, reuse_graph=reuse)
        assert _rel(op.gradient(), flat) < 1e-12
        assert op.loss() == pytest.approx(float(loss.detach()), rel=1e-12)


def test_eval_mode_batchnorm_and_the_caller_is_untouched(oracle: Oracle) -> None:
    model = copy.deepcopy(oracle.model)
    model.train()  # the caller's flag must survive; the copy must still use running statistics
    before = model.state_fingerprint()
    op = HessianOperator(model, oracle.set(), dtype=torch.float64, batch_size=7)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert _rel(op.matvec(v), oracle.hessian @ v) < 1e-12  # the dense oracle is the eval-mode Hessian
    assert same_state(before, model.state_fingerprint()) and model.training
    assert not any(m.training for m in op.net.modules())


def test_train_mode_batchnorm_would_give_another_hessian(oracle: Oracle) -> None:
    """The trap the eval copy avoids: batch statistics change the function and its Hessian."""
    net = copy.deepcopy(oracle.model).double().train()
    loss = F.cross_entropy(net(oracle.data.x.double()), oracle.data.y)
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    parts = torch.split(v, [p.numel() for p in params])
    hv = torch.autograd.grad(grads, params, [c.view_as(p) for c, p in zip(parts, params)])
    train_hv = torch.cat([h.reshape(-1) for h in hv])
    assert _rel(train_hv, oracle.hessian @ v) > 0.05


def test_ambient_autocast_is_switched_off(oracle: Oracle) -> None:
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7, reuse_graph=False)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hv = op.matvec(v)
    assert _rel(hv, oracle.hessian @ v) < 1e-12


def test_operator_checks_catch_an_asymmetric_or_noisy_product(oracle: Oracle) -> None:
    class Skewed(HessianOperator):
        def matvec(self, v: torch.Tensor) -> torch.Tensor:
            out = super().matvec(v)
            return out + 0.1 * out.norm() * torch.roll(v.to(out.dtype), 1)  # adds a non-symmetric term

    class Noisy(HessianOperator):
        def matvec(self, v: torch.Tensor) -> torch.Tensor:
            out = super().matvec(v)
            return out + 1e-3 * out.norm() * torch.randn_like(out)

    skewed = Skewed(oracle.model, oracle.set(), dtype=torch.float64).check(seed=0)
    assert not skewed.symmetric and skewed.deterministic
    noisy = Noisy(oracle.model, oracle.set(), dtype=torch.float64).check(seed=0)
    assert not noisy.deterministic and noisy.determinism > 1e-4


def test_compiled_models_are_rejected(oracle: Oracle) -> None:
    compiled = audit_model(torch.compile(copy.deepcopy(oracle.model.net)), 10)
    with pytest.raises(ProbeError, match="torch.compile"):
        HessianOperator(compiled, oracle.set())


def test_checkpointing_flag_is_rejected(oracle: Oracle) -> None:
    net = copy.deepcopy(oracle.model.net)
    net.grad_checkpointing = True  # what timm's set_grad_checkpointing() sets
    with pytest.raises(ProbeError, match="gradient checkpointing"):
        HessianOperator(audit_model(net, 10), oracle.set())


class Checkpointed(OracleNet):
    """OracleNet whose first block runs under reentrant activation checkpointing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = checkpoint(lambda z: torch.tanh(self.bn(self.fc1(z.flatten(1)))), x, use_reentrant=True)
        return self.fc2(h)


def test_reentrant_checkpointing_fails_with_a_clear_message(oracle: Oracle) -> None:
    net = Checkpointed()
    net.load_state_dict(oracle.model.net.state_dict())
    op = HessianOperator(audit_model(net.eval(), 10), oracle.set(), dtype=torch.float64)
    with pytest.raises(ProbeError, match="checkpointing"):
        op.matvec(torch.ones(op.size, dtype=torch.float64))


def test_unused_parameters_contribute_zero_curvature(oracle: Oracle) -> None:
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = copy.deepcopy(oracle.model.net)
            self.spare = nn.Linear(3, 3)  # never used in forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    op = HessianOperator(audit_model(WithSpare().eval(), 10), oracle.set(), dtype=torch.float64)
    p = oracle.hessian.shape[0]
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    hv = op.matvec(v)
    assert _rel(hv[:p], oracle.hessian @ v[:p]) < 1e-12 and torch.all(hv[p:] == 0)


def test_guard_detects_in_place_changes_and_mode_switches(oracle: Oracle) -> None:
    model = copy.deepcopy(oracle.model)
    guard = ModelGuard(model)
    guard.check("test.probe")
    with torch.no_grad():
        model.net.fc1.weight.add_(0.0)  # an in-place write, even of zero, bumps the version counter
    with pytest.raises(InternalError, match="probe 'test.probe' changed the audit model's state: net.fc1.weight"):
        guard.check("test.probe")
    guard = ModelGuard(model)
    model.net.bn.train()
    with pytest.raises(InternalError, match="training mode: net.bn"):
        guard.check("test.probe")


def test_empty_set_is_refused(oracle: Oracle) -> None:
    empty = SampleSet("audit", "audit", None, oracle.data.x[:0], oracle.data.y[:0], [])
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(oracle.model, empty)


@pytest.mark.parametrize("reuse_graph", [True, False])
def test_replaced_inputs_give_the_dense_hessian_at_the_new_inputs(oracle: Oracle, reuse_graph: bool) -> None:
    """replace_inputs (the plugin hook for losses at fixed transformed inputs) drops every cached graph."""
    op = HessianOperator(oracle.model, oracle.set(), dtype=torch.float64, batch_size=7, reuse_graph=reuse_graph)
    v = torch.randn(op.size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    op.matvec(v), op.gradient()  # fill the caches at the old inputs
    shifted = (oracle.data.x.double() + 0.1 * torch.rand(oracle.data.x.shape, generator=torch.Generator().manual_seed(4),
                                                         dtype=torch.float64)).clamp(0, 1)
    op.replace_inputs(shifted)
    ref = copy.deepcopy(oracle.model).double().eval()
    params = dict(ref.named_parameters())

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(ref, p, (shifted,)), oracle.data.y)

    _, hvp = torch.func.jvp(lambda p: torch.func.grad(loss)(p), (params,), (dict(zip(params, op.split(v))),))
    assert _rel(op.matvec(v), op.flatten([hvp[k].detach() for k in params])) < 1e-12
    with pytest.raises(ValueError, match="shape"):
        op.replace_inputs(shifted[:3])
