"""Input-space Hessian-vector products and the run-time piecewise-linearity check.

H·v comes from double backward through the model (the per-sample losses are summed, so one
pass gives every sample's own H_n v_n). GGN·v = J_zᵀ H_L J_z v comes either from the
Jacobian already computed (m = c) or from one JVP and one VJP (top-m runs), so the check
always compares H with the full Gauss-Newton term. For a piecewise-linear net the two agree
to rounding (‖H − GGN‖/‖H‖ ≈ 1e-12 in float64); otherwise the Σ_k (p_k − y_k) ∇²z_k term shows.

:func:`second_order_vps` computes that remainder R·v = Σ_k r_k ∇²x z_k·v directly, without the
softmax: on a piecewise-linear net every second-derivative formula autograd meets (ReLU, max-pool,
eval BatchNorm, conv, linear) is a literal zero, so R·v is exactly 0 in any precision, and the
float64 H·v check is needed only where it is not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robaudit.probes.geometry.jacobian import decision_function


class InputCurvature:
    """Second-order access to one batch: H_x·v of the CE loss and ∇²x d·v of Yu's d.

    Args:
        model: the working model (frozen parameters).
        x: N×C×H×W inputs in the model's dtype.
        y: N labels.

    Raises:
        RuntimeError: from autograd when the model has no second derivative (the probe turns
            it into a ProbeError with advice).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.y = y
        self.logits = model(self.x)
        loss = F.cross_entropy(self.logits, y, reduction="sum")
        (self.loss_grad,) = torch.autograd.grad(loss, self.x, create_graph=True)
        self._decision_grad: torch.Tensor | None = None

    @property
    def decision_grad(self) -> torch.Tensor:
        """∇x d of every sample (with a graph for second derivatives)."""
        if self._decision_grad is None:
            d, _ = decision_function(self.logits, self.y)
            (self._decision_grad,) = torch.autograd.grad(d.sum(), self.x, create_graph=True, retain_graph=True)
        return self._decision_grad

    def loss_hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H_x v per sample; v and the result are N×D (flattened)."""
        return self._hvp(self.loss_grad, v)

    def decision_hvp(self, v: torch.Tensor) -> torch.Tensor:
        """∇²x d · v per sample; N×D."""
        return self._hvp(self.decision_grad, v)

    def _hvp(self, grad: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v = v.reshape(grad.shape).to(grad.dtype)
        (out,) = torch.autograd.grad(grad, self.x, grad_outputs=v, retain_graph=True)
        return out.reshape(len(out), -1)


def second_order_vps(model: nn.Module, x: torch.Tensor, r: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """R·v = Σ_k r_k ∇²x z_k · v per sample for each v: the part of H_x·v that J_zᵀ H_L J_z·v leaves out.

    With r = p − e_y (held fixed) this is exactly H_x·v − GGN·v. It is the input HVP of rᵀz(x), by
    double backward through one forward pass (measured cheaper on CPU than forward-over-reverse or
    reverse-over-forward on the demo CNN and a ResNet-18). No softmax is differentiated, so there is
    no cancellation: on a piecewise-linear net the result is exactly zero whatever the dtype.

    Args:
        model: the working model (frozen parameters); its dtype sets the computation's.
        x: N×C×H×W inputs.
        r: N×c fixed logit weights (any scale: only which entries of R·v are zero is scale-free).
        vectors: V×N×D directions.

    Returns:
        V×N×D products in the model's dtype (exact zeros where the second derivative vanishes).
    """
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    xx = x.detach().to(dtype).clone().requires_grad_(True)
    z = model(xx)
    (grad,) = torch.autograd.grad(z, xx, grad_outputs=r.to(z.dtype), create_graph=True)
    out = torch.zeros(len(vectors), len(x), xx[0].numel(), dtype=dtype, device=x.device)
    if not grad.requires_grad:  # ∇x(rᵀz) does not depend on x at all (a linear model): R = 0
        return out
    for i, v in enumerate(vectors):
        (rv,) = torch.autograd.grad(grad, xx, grad_outputs=v.reshape(xx.shape).to(dtype), retain_graph=True,
                                    allow_unused=True)
        if rv is not None:
            out[i] = rv.reshape(len(x), -1)
    return out


def ggn_vp_from_jacobian(jacobian: torch.Tensor, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J_zᵀ (diag p − ppᵀ) J_z v per sample from the full Jacobian (N×c×D), probs N×c, v N×D."""
    j = jacobian.double()
    u = torch.einsum("ncd,nd->nc", j, v.double())
    p = probs.double()
    w = p * u - p * (p * u).sum(dim=1, keepdim=True)
    return torch.einsum("ncd,nc->nd", j, w)


def ggn_vp_by_jvp(model: nn.Module, x: torch.Tensor, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J_zᵀ (diag p − ppᵀ) J_z v per sample via one JVP and one VJP (no Jacobian needed); N×D."""
    dtype = x.dtype
    tangent = v.reshape(x.shape).to(dtype)
    _, u = torch.func.jvp(model, (x,), (tangent,))
    p = probs.double()
    u = u.double()
    w = p * u - p * (p * u).sum(dim=1, keepdim=True)
    _, vjp_fn = torch.func.vjp(model, x)
    (out,) = vjp_fn(w.to(dtype))
    return out.reshape(len(x), -1).double()


ROUNDING_FACTOR = 10.0


def rounding_floor(spectral_sq: torch.Tensor, v_norm: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Absolute error of autograd's own H·v: ROUNDING_FACTOR · ε_mach · ‖J_z‖₂² · ‖v‖ per sample.

    Autograd's softmax backward subtracts nearly equal numbers when 1 − p_top is tiny, so H·v
    carries an absolute error of about ε_mach‖J_z‖₂²‖v‖ however small H is (measured ≤ 0.22 of
    that on the demo CNN in float64). Residuals below this floor cannot tell H from GGN.
    """
    return ROUNDING_FACTOR * torch.finfo(dtype).eps * spectral_sq.double() * v_norm.double()


def relative_residual(h_v: torch.Tensor, g_v: torch.Tensor) -> torch.Tensor:
    """‖Hv − GGNv‖ / max(‖Hv‖, ‖GGNv‖) per row (0 when both vanish)."""
    h = h_v.double()
    g = g_v.double()
    num = (h - g).norm(dim=1)
    den = torch.maximum(h.norm(dim=1), g.norm(dim=1))
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(num))


def rademacher(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """±1 entries with equal probability (CPU, from ``generator``)."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(dtype)
