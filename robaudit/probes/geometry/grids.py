"""Decision- and loss-surface grids on a 2-D plane through a sample (Yu et al. Figs 4, 6, 7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robaudit.probes.geometry.jacobian import decision_function


@torch.no_grad()
def plane_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               coords: torch.Tensor, batch_size: int, clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """d and the CE loss at x + a·u + b·v for every (a, b) in ``coords`` × ``coords``.

    Args:
        x, u, v: S×C×H×W samples and plane directions (the model's dtype); y: S labels.
        coords: G grid coordinates (a along u, b along v).
        batch_size: inputs per forward pass.
        clip: clamp every grid point to the valid pixel range [0, 1] (as attacks do).

    Returns:
        (S×G×G decision values, S×G×G losses in nats), float64; entry [s, i, j] is at a = coords[j],
        b = coords[i] (rows follow b, as an image's y axis).
    """
    s, g = len(x), len(coords)
    c = coords.to(x.dtype).to(x.device)
    b_grid, a_grid = torch.meshgrid(c, c, indexing="ij")
    a_flat, b_flat = a_grid.reshape(-1), b_grid.reshape(-1)
    bshape = (-1,) + (1,) * (x.dim() - 1)
    decisions, losses = [], []
    for i in range(s):
        d_parts, l_parts = [], []
        for start in range(0, g * g, batch_size):
            a = a_flat[start:start + batch_size].reshape(bshape)
            b = b_flat[start:start + batch_size].reshape(bshape)
            pts = x[i:i + 1] + a * u[i:i + 1] + b * v[i:i + 1]
            if clip:
                pts = pts.clamp(0.0, 1.0)
            z = model(pts).double()
            yy = y[i:i + 1].expand(len(pts))
            d_parts.append(decision_function(z, yy)[0])
            l_parts.append(F.cross_entropy(z, yy, reduction="none"))
        decisions.append(torch.cat(d_parts).reshape(g, g))
        losses.append(torch.cat(l_parts).reshape(g, g))
    return torch.stack(decisions).cpu(), torch.stack(losses).cpu()


def linf_extent(u: torch.Tensor, v: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """‖a·u + b·v‖∞ on the grid (S×G×G, float64), to draw the ε-ball's trace on the plane.

    Only the distinct pixel pairs (u_i, v_i) matter, so they are de-duplicated first (a sign
    direction has at most 9), then the max over pixels runs in chunks to bound memory.
    """
    c = coords.double()
    b_grid, a_grid = torch.meshgrid(c, c, indexing="ij")
    a_flat, b_flat = a_grid.reshape(-1, 1), b_grid.reshape(-1, 1)
    out = []
    for ui, vi in zip(u.reshape(len(u), -1).double().cpu(), v.reshape(len(v), -1).double().cpu()):
        pairs = torch.unique(torch.stack([ui, vi], dim=1), dim=0)
        best = torch.zeros(len(a_flat), dtype=torch.float64)
        for start in range(0, len(pairs), 2048):
            chunk = pairs[start:start + 2048]
            vals = (a_flat * chunk[:, 0][None] + b_flat * chunk[:, 1][None]).abs().max(dim=1).values
            best = torch.maximum(best, vals)
        out.append(best.reshape(len(c), len(c)))
    return torch.stack(out)


def downsample(t: torch.Tensor, max_side: int) -> torch.Tensor:
    """Average-pool a C×H×W map so neither side exceeds ``max_side`` (unchanged if already small)."""
    h, w = t.shape[-2:]
    if max(h, w) <= max_side:
        return t
    size = (max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w))))
    return F.adaptive_avg_pool2d(t[None].double(), size)[0]
