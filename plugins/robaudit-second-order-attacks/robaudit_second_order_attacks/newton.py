"""The damped Newton direction d = (H_x + μI)⁻¹ g of the cross-entropy loss in input space.

g = ∇x CE(z(x), y) and H_x = ∇²x CE per sample (N samples at once, flattened to D = C·H·W).
Two solvers, both in the working model's precision (float64 by default):

* :func:`exact_newton` — for the Gauss–Newton matrix J_zᵀ H_L J_z (H_L = diag p − ppᵀ), which *is*
  H_x for piecewise-linear nets (Yao et al. Thm 1). With H_L = AAᵀ (A from robaudit's
  ``ce_hessian_factor``) and B = J_zᵀA (D×c), g = B t with t = r/√p (r = p − e_y), so the push-through
  identity gives d = (BBᵀ + μI)⁻¹ B t = J_zᵀ A (AᵀGA + μI)⁻¹ t with G = J_z J_zᵀ: one batched Jacobian
  and a c×c solve in float64, no 1/μ and no cancellation. Where p_y underflows (t_y = ∞) the Woodbury
  form d = (g − B(μI + BᵀB)⁻¹Bᵀg)/μ is used instead.
* :func:`conjugate_gradient` — CG on (H + μI) d = g with batched curvature-vector products
  (``torch.func``), every sample's own system at once with a per-sample convergence mask.
  :class:`GGNOperator` multiplies by J_zᵀ H_L J_z (one JVP + one VJP per product);
  :class:`HessianOperator` by the full H_x (reverse-over-reverse ``torch.func.vjp`` of
  ``torch.func.grad``). H_x + μI has at most c distinct eigenvalues when H_x has rank ≤ c − 1, so CG
  converges in ≤ c steps in exact arithmetic.

Numerics. Softmax probabilities near 1 lose their complement: autograd computes p_y − 1 with an
absolute error of about 1e-16, which is the whole gradient of a sample with 1 − p_y ≈ 1e-16. Here
r = p − e_y takes r_y = −Σ_{k≠y} p_k, and H_L·u is formed as p ⊙ (v − p·v) with v = u − u_top, so the
top class never enters as 1 − p_top. The damping μ is either absolute or relative to
ρ = gᵀH_x g / gᵀg, the curvature along the gradient (both solvers get it exactly: one product).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robaudit.plugin import ce_hessian_factor, logit_geometry

ATTAINABLE_RESIDUAL = 1e-9
"""A CG solve counts as converged when its recomputed relative residual is within 10·tol or below this
floor: with float64 products and condition numbers up to ~1e7 (small relative damping) the true
residual stalls around 1e-11…1e-10 even where CG's recursive residual is far smaller."""
PUSH_THROUGH_MIN_PY = 1e-200
"""Below this p_y, t_y = r_y/√p_y is not representable and the exact solver uses the Woodbury form."""


@dataclass
class NewtonSolve:
    """One batch of Newton directions (all tensors have N rows, float64).

    Attributes:
        direction: N×D d = (H + μI)⁻¹ g (the gradient itself where ``fallback``).
        gradient: N×D g = ∇x CE, computed without cancellation.
        damping: N values of μ (nats per squared pixel unit).
        curvature_along_gradient: N values ρ = gᵀHg / gᵀg (0 where g = 0).
        iterations: N CG iterations (0 for the exact solver).
        residual: N true relative residuals ‖(H + μI)d − g‖ / ‖g‖ (0 where g = 0).
        converged: N bools: residual ≤ tolerance (always True for the exact solver).
        negative_curvature: N bools: CG met pᵀ(H + μI)p ≤ 0 (``HessianOperator`` on non-convex nets).
        fallback: N bools: no Newton direction could be formed; ``direction`` is g.
    """

    direction: torch.Tensor
    gradient: torch.Tensor
    damping: torch.Tensor
    curvature_along_gradient: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    negative_curvature: torch.Tensor
    fallback: torch.Tensor


def stable_residual(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, r = p − e_y) in float64 from N×c logits; r_y = −Σ_{k≠y} p_k, so r keeps its relative
    accuracy for confident samples where 1 − p_y is below float64's resolution."""
    p = logits.detach().double().softmax(dim=1)
    onehot = F.one_hot(y, p.shape[1]).bool()
    others = p.masked_fill(onehot, 0.0).sum(dim=1, keepdim=True)
    return p, torch.where(onehot, -others, p)


def stable_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇x CE per sample (N×D, float64) as J_zᵀ r with the cancellation-free r of :func:`stable_residual`:
    one forward pass and one VJP in the model's dtype."""
    logits, vjp_fn = torch.func.vjp(model, x.detach().to(_model_dtype(model)))
    _, r = stable_residual(logits, y)
    return vjp_fn(r.to(logits.dtype))[0].detach().flatten(1).double()


def apply_logit_hessian(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(diag p − ppᵀ)·u per row without cancellation: p ⊙ (v − p·v) with v = u − u_top."""
    top = p.argmax(dim=1, keepdim=True)
    v = u - u.gather(1, top)
    return p * (v - (p * v).sum(dim=1, keepdim=True))


def _damping(rho: torch.Tensor, damping: float, relative: bool) -> torch.Tensor:
    """μ per sample; a relative μ of a zero-gradient sample (ρ = 0) becomes the tiny positive
    float64 so every system stays non-singular (its direction is 0 anyway)."""
    mu = damping * rho if relative else torch.full_like(rho, float(damping))
    return mu.clamp_min(torch.finfo(torch.float64).tiny)


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters()), torch.float32)


# ----------------------------------------------------------------------------- exact c×c solve

def exact_newton(model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float, relative: bool) -> NewtonSolve:
    """Newton directions for the Gauss–Newton matrix J_zᵀ H_L J_z from a c×c solve per sample.

    Args:
        model: the working model (frozen parameters; its dtype sets the Jacobian's).
        x: N×C×H×W pixels; y: N labels.
        damping: μ, absolute or relative to ρ = gᵀHg/gᵀg.
        relative: whether ``damping`` is relative.
    """
    n = len(x)
    geo = logit_geometry(model, x, y, m=num_classes(model, x))
    c = geo.classes.shape[1]
    jac = geo.jacobian.detach().double()                                    # N×c×D, rows in ``classes`` order
    p_all, r_all = stable_residual(geo.logits, y)
    p = p_all.gather(1, geo.classes)                               # most probable first
    r = r_all.gather(1, geo.classes)
    ypos = (geo.classes == y[:, None]).double().argmax(dim=1)
    onehot = F.one_hot(ypos, c).bool()
    gram = jac @ jac.transpose(1, 2)                               # G = J Jᵀ
    a = ce_hessian_factor(p, torch.zeros(n, dtype=torch.float64, device=p.device))
    m = a.transpose(1, 2) @ gram @ a
    m = 0.5 * (m + m.transpose(1, 2))                              # BᵀB
    g_r = torch.einsum("nij,nj->ni", gram, r)
    btg = torch.einsum("nji,nj->ni", a, g_r)                       # Bᵀg = Aᵀ G r
    g_sq = (r * g_r).sum(dim=1).clamp_min(0)                       # ‖g‖²
    rho = torch.where(g_sq > 0, (btg**2).sum(dim=1) / g_sq.clamp_min(torch.finfo(torch.float64).tiny),
                      torch.zeros_like(g_sq))
    mu = _damping(rho, damping, relative)
    eye = torch.eye(c, dtype=torch.float64, device=p.device)
    k = m + mu[:, None, None] * eye
    p_y = p.gather(1, ypos[:, None]).squeeze(1)
    push = p_y > PUSH_THROUGH_MIN_PY
    sqrt_p = p.clamp_min(0).sqrt()
    t = torch.where(onehot, r / sqrt_p.clamp_min(PUSH_THROUGH_MIN_PY**0.5), sqrt_p)
    coef_push = torch.einsum("nij,nj->ni", a, torch.linalg.solve(k, t))
    w = torch.linalg.solve(k, btg)
    coef_wood = (r - torch.einsum("nij,nj->ni", a, w)) / mu[:, None]
    coef = torch.where(push[:, None], coef_push, coef_wood)
    direction = torch.einsum("nc,ncd->nd", coef, jac)
    gradient = torch.einsum("nc,ncd->nd", r, jac)
    # True residual in coefficient space: (H + μI)d − g = Jᵀ e, ‖Jᵀe‖² = eᵀGe.
    g_coef = torch.einsum("nij,nj->ni", gram, coef)
    e = torch.einsum("nij,nj->ni", a, torch.einsum("nji,nj->ni", a, g_coef)) + mu[:, None] * coef - r
    e_sq = (e * torch.einsum("nij,nj->ni", gram, e)).sum(dim=1).clamp_min(0)
    residual = torch.where(g_sq > 0, (e_sq / g_sq.clamp_min(torch.finfo(torch.float64).tiny)).sqrt(),
                           torch.zeros_like(g_sq))
    bad = ~torch.isfinite(direction).all(dim=1)
    direction = torch.where(bad[:, None], gradient, direction)
    zeros = torch.zeros(n, dtype=torch.bool, device=p.device)
    return NewtonSolve(direction, gradient, mu, rho, torch.zeros(n, dtype=torch.long, device=p.device),
                       residual, torch.ones_like(zeros), zeros, bad)


def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int):
        return classes
    with torch.no_grad():
        return int(model(x[:1].to(_model_dtype(model))).shape[1])


# ----------------------------------------------------------------------- curvature operators, CG

class GGNOperator:
    """u ↦ J_zᵀ (diag p − ppᵀ) J_z u per sample (equal to H_x·u for piecewise-linear nets).

    One forward pass (``torch.func.vjp``) at construction gives the logits, the VJP function and
    the gradient g = J_zᵀ r; each product is one JVP (forward mode) and one VJP. Samples do not
    interact (eval mode), so the batch is one call.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model = model
        self.dtype = _model_dtype(model)
        self.x = x.detach().to(self.dtype)
        self.y = y
        logits, self._vjp = torch.func.vjp(model, self.x)
        self.probs, r = stable_residual(logits, y)
        self.gradient = self._vjp(r.to(logits.dtype))[0].detach().flatten(1).double()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """J_z v per sample (N×c, float64) for v N×D."""
        _, u = torch.func.jvp(self.model, (self.x,), (v.reshape(self.x.shape).to(self.dtype),))
        return u.detach().double()

    def from_jvp(self, u: torch.Tensor) -> torch.Tensor:
        """J_zᵀ H_L u for u = J_z v (N×c) → N×D."""
        w = apply_logit_hessian(self.probs, u)
        return self._vjp(w.to(self.dtype))[0].detach().flatten(1).double()

    def ggn(self, v: torch.Tensor) -> torch.Tensor:
        """J_zᵀ H_L J_z v per sample (N×D → N×D, float64)."""
        return self.from_jvp(self.jvp(v))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.ggn(v)


class HessianOperator(GGNOperator):
    """u ↦ H_x u with the full input Hessian of the summed CE (reverse over reverse, ``torch.func``).

    The right-hand side g is still the cancellation-free gradient of :class:`GGNOperator`. For
    confident samples autograd's own product carries an absolute error of about ε_mach·‖J_z‖²·‖u‖
    (softmax backward), which can exceed H_x itself; prefer :class:`GGNOperator` on
    piecewise-linear nets, where the two matrices are equal.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(model, x, y)

        def loss(xx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(xx), y, reduction="sum")

        _, self._hvp = torch.func.vjp(torch.func.grad(loss), self.x)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        (out,) = self._hvp(v.reshape(self.x.shape).to(self.dtype))
        return out.detach().flatten(1).double()


def conjugate_gradient(operator: GGNOperator, damping: float, relative: bool, tol: float,
                       max_iter: int) -> NewtonSolve:
    """Solve (H + μI) d = g for every sample of the batch at once by conjugate gradients.

    Each sample runs until its own residual ‖r_k‖ ≤ tol·‖g‖ (then its updates stop: a per-sample
    mask), or until ``max_iter``. A sample whose search direction has pᵀ(H + μI)p ≤ 0 (possible
    only with :class:`HessianOperator`) stops there, keeping its iterate (the gradient if at the
    first step). The returned residual is recomputed with one more product, not CG's recursion;
    ``converged`` means the recursion met ``tol`` and the recomputed residual is within
    max(10·tol, :data:`ATTAINABLE_RESIDUAL`).
    """
    g = operator.gradient
    n = len(g)
    g_norm = g.norm(dim=1)
    hg = operator(g)
    rho = torch.where(g_norm > 0, (g * hg).sum(dim=1) / g_norm.clamp_min(1e-300) ** 2, torch.zeros_like(g_norm))
    mu = _damping(rho.abs() if relative else rho, damping, relative)
    sol = torch.zeros_like(g)
    res = g.clone()
    direc = g.clone()
    rs = (res * res).sum(dim=1)
    active = g_norm > 0
    iterations = torch.zeros(n, dtype=torch.long, device=g.device)
    negative = torch.zeros(n, dtype=torch.bool, device=g.device)
    fallback = torch.zeros(n, dtype=torch.bool, device=g.device)
    reached = g_norm == 0
    product = hg + mu[:, None] * g
    for step in range(max_iter):
        if step > 0:
            product = operator(direc) + mu[:, None] * direc
        curv = (direc * product).sum(dim=1)
        bad = active & ~(curv > 0)
        if bool(bad.any()):
            negative |= bad
            fallback |= bad & (iterations == 0)
            active &= ~bad
        alpha = torch.where(active, rs / curv.clamp_min(1e-300), torch.zeros_like(rs))
        sol = sol + alpha[:, None] * direc
        res = res - alpha[:, None] * product
        rs_new = (res * res).sum(dim=1)
        iterations += active.long()
        done = active & (rs_new.sqrt() <= tol * g_norm)
        reached |= done
        active &= ~done
        if not bool(active.any()):
            break
        beta = torch.where(active, rs_new / rs.clamp_min(1e-300), torch.zeros_like(rs))
        direc = torch.where(active[:, None], res + beta[:, None] * direc, direc)
        rs = torch.where(active, rs_new, rs)
    sol = torch.where(fallback[:, None], g, sol)
    true_res = operator(sol) + mu[:, None] * sol - g
    residual = torch.where(g_norm > 0, true_res.norm(dim=1) / g_norm.clamp_min(1e-300), torch.zeros_like(g_norm))
    converged = reached & ~negative & (residual <= max(10 * tol, ATTAINABLE_RESIDUAL))
    return NewtonSolve(sol, g, mu, rho, iterations, residual, converged, negative, fallback)


def hessian_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                  rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Compare H_x·v (double backward) with J_zᵀH_LJ_z·v for one random ±1 vector v per sample.

    Returns:
        (N relative residuals ‖Hv − GGNv‖ / max(‖Hv‖, ‖GGNv‖), N bools: equal within ``rtol`` or
        within autograd's rounding floor 10·ε_mach·‖J_z v‖²·‖v‖ (‖J_z v‖² estimates ‖J_z‖_F² ≥ ‖J_z‖₂²).
    """
    op = HessianOperator(model, x, y)
    dim = op.gradient.shape[1]
    v = (torch.randint(0, 2, (len(x), dim), generator=generator) * 2 - 1).double().to(op.gradient.device)
    hv = op(v)
    u = op.jvp(v)
    gv = op.from_jvp(u)
    diff = (hv - gv).norm(dim=1)
    scale = torch.maximum(hv.norm(dim=1), gv.norm(dim=1))
    rel = torch.where(scale > 0, diff / scale.clamp_min(1e-300), torch.zeros_like(diff))
    floor = 10 * torch.finfo(op.dtype).eps * (u**2).sum(dim=1) * v.norm(dim=1)
    return rel, diff <= rtol * scale + floor
