"""Batched symmetric Lanczos with full reorthogonalisation (B independent operators at once).

hessian-eigenthings' ``lanczos`` runs one operator at a time; here each of B samples has its
own input Hessian, and one batched HVP advances all B Krylov spaces together, so the
fallback keeps the "no Python loop over samples" rule. Reorthogonalisation is done twice per
step (classical Gram-Schmidt, "twice is enough"), which keeps ghost eigenvalues away at the
step counts used here (≤ a few dozen).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LanczosResult:
    """Ritz values of B operators.

    Attributes:
        ritz: B×s Ritz values, descending, NaN-padded where a sample's Krylov space closed early.
        steps: B Lanczos steps actually taken per sample (its Krylov dimension).
        residual: B last off-diagonal β (0 when the Krylov space is invariant: Ritz values exact).
    """

    ritz: torch.Tensor
    steps: torch.Tensor
    residual: torch.Tensor


def batched_lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int,
                    breakdown_rtol: float = 1e-10) -> LanczosResult:
    """Run ``steps`` Lanczos iterations on B operators in parallel.

    Args:
        matvec: maps B×D vectors to B×D products (row b with operator b).
        start: B×D start vectors (non-zero).
        steps: Krylov dimension (≤ D).
        breakdown_rtol: a sample stops when β falls below this × its largest |α| or β so far.

    Returns:
        :class:`LanczosResult` (float64).
    """
    start = start.double()
    b, d = start.shape
    steps = max(1, min(steps, d))
    basis = torch.zeros(steps, b, d, dtype=torch.float64, device=start.device)
    alphas = torch.zeros(b, steps, dtype=torch.float64, device=start.device)
    betas = torch.zeros(b, steps, dtype=torch.float64, device=start.device)
    active = torch.ones(b, dtype=torch.bool, device=start.device)
    taken = torch.zeros(b, dtype=torch.long, device=start.device)
    scale = torch.zeros(b, dtype=torch.float64, device=start.device)
    q = start / start.norm(dim=1, keepdim=True)
    for j in range(steps):
        basis[j] = q
        taken += active.long()
        w = matvec(q).double()
        alpha = (q * w).sum(dim=1)
        alphas[:, j] = torch.where(active, alpha, torch.zeros_like(alpha))
        for _ in range(2):  # full reorthogonalisation against every stored vector
            coeff = torch.einsum("jbd,bd->jb", basis[: j + 1], w)
            w = w - torch.einsum("jb,jbd->bd", coeff, basis[: j + 1])
        beta = w.norm(dim=1)
        scale = torch.maximum(scale, torch.maximum(alpha.abs(), beta))
        betas[:, j] = beta
        active = active & (beta > breakdown_rtol * scale)
        if j + 1 == steps or not bool(active.any()):
            break
        q = torch.where(active[:, None], w / beta.clamp_min(torch.finfo(torch.float64).tiny)[:, None],
                        torch.zeros_like(w))
    ritz = torch.full((b, steps), float("nan"), dtype=torch.float64, device=start.device)
    for k in torch.unique(taken).tolist():  # group samples by Krylov dimension, eigen-solve each group at once
        rows = (taken == k).nonzero().squeeze(1)
        t = torch.diag_embed(alphas[rows, :k])
        if k > 1:
            off = betas[rows, : k - 1]
            t = t + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        ritz[rows, :k] = torch.linalg.eigvalsh(t).flip(-1)
    residual = betas.gather(1, (taken - 1).clamp_min(0)[:, None]).squeeze(1)
    residual = torch.where(taken < steps, torch.zeros_like(residual), residual)
    return LanczosResult(ritz, taken, residual)
