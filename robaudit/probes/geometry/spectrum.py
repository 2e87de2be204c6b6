"""The exact input-Hessian spectrum of the cross-entropy loss from a c×c problem (float64).

For a piecewise-linear net, H_x = J_zᵀ H_L J_z with H_L = diag(p) − ppᵀ (Yao et al. Thm 1).
Write H_L = A·Aᵀ with A = (I − p1ᵀ)·diag(√p). Then H_x = B·Bᵀ with B = J_zᵀA (D×c), and the
non-zero eigenvalues of H_x are those of the c×c matrix BᵀB = Aᵀ (J_z J_zᵀ) A.

Restricted to the m most probable classes (probability mass s = Σ p_sel < 1), the block
diag(p_m) − p_m p_mᵀ factors as A = (I − α p_m 1ᵀ) diag(√p_m) with α = 1 / (1 + √(1 − s)):
then A·Aᵀ = diag(p_m) − (2α − α² s) p_m p_mᵀ and 2α − α² s = 1. α = 1 when m = c.

Everything after the Jacobian runs in float64. In float32, 1 − p_top underflows for confident
samples (1 − p_top ≈ 1e-7) and λ1 errs by up to 7 % (science.md §2); here the diagonal of A
uses 1 − p_j summed from the other classes' probabilities, so no cancellation occurs.
"""
from __future__ import annotations

import torch


def ce_hessian_factor(probs: torch.Tensor, rest_mass: torch.Tensor) -> torch.Tensor:
    """A with A·Aᵀ = diag(p) − ppᵀ over the selected classes.

    Args:
        probs: N×m probabilities of the selected classes, the most probable first.
        rest_mass: N probability outside them (0 when every class is selected).

    Returns:
        N×m×m float64 factor A = (I − α p 1ᵀ) diag(√p).
    """
    p = probs.double()
    rest = rest_mass.double()
    root_rest = rest.clamp_min(0).sqrt()
    alpha = 1.0 / (1.0 + root_rest)
    # 1 − p_j without cancellation: for the top class it is the sum of everything else.
    one_minus = 1.0 - p
    one_minus[:, 0] = p[:, 1:].sum(dim=1) + rest
    sqrt_p = p.clamp_min(0).sqrt()
    factor = -alpha[:, None, None] * p[:, :, None] * sqrt_p[:, None, :]
    diag = sqrt_p * (one_minus + root_rest[:, None]) * alpha[:, None]  # √p_j (1 − α p_j)
    idx = torch.arange(p.shape[1])
    factor[:, idx, idx] = diag
    return factor


def jacobian_gram(jacobian: torch.Tensor) -> torch.Tensor:
    """N×m×m Gram matrices J_z J_zᵀ in float64 from N×m×D Jacobian rows."""
    j = jacobian.double()
    return j @ j.transpose(1, 2)


def exact_spectrum(jacobian: torch.Tensor, probs: torch.Tensor, rest_mass: torch.Tensor,
                   gram: torch.Tensor | None = None) -> torch.Tensor:
    """Non-zero eigenvalues of J_zᵀ H_L J_z, from the m×m problem Aᵀ (J_z J_zᵀ) A.

    Args:
        jacobian: N×m×D logit-Jacobian rows of the selected classes.
        probs: N×m their probabilities (most probable first); rest_mass: N.
        gram: the N×m×m Gram matrices when already computed.

    Returns:
        N×m eigenvalues (float64, in the loss's nats per squared pixel unit), descending.
        With m = c one of them is 0 up to rounding (H_L 1 = 0), so the rank is ≤ c − 1.
    """
    g = jacobian_gram(jacobian) if gram is None else gram
    a = ce_hessian_factor(probs, rest_mass)
    small = a.transpose(1, 2) @ g @ a
    small = 0.5 * (small + small.transpose(1, 2))
    return torch.linalg.eigvalsh(small).flip(-1)


def numerical_rank(eigenvalues: torch.Tensor, rtol: float) -> torch.Tensor:
    """Count of eigenvalues above ``rtol`` × the largest one, per row (N×k → N)."""
    top = eigenvalues.max(dim=1).values.clamp_min(0)
    return (eigenvalues > rtol * top[:, None]).sum(dim=1)


def ce_logit_hessian(probs: torch.Tensor) -> torch.Tensor:
    """H_L = diag(p) − ppᵀ per sample (N×c → N×c×c, float64)."""
    p = probs.double()
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
