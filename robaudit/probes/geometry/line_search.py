"""Distance to the decision boundary along given directions, by a batched line search on d.

Along x + t·u (t ≥ 0) the first t with d(x + t·u) ≤ 0 is bracketed on a geometric grid of
``points`` values in [t_max·1e-3, t_max], then refined by the Illinois variant of regula
falsi (a bisection step every fourth iteration guarantees progress) until the bracket is
narrower than ``rtol`` × t. On a piecewise-linear net d is piecewise linear along the line,
so the secant step is exact within a linear piece and a few forward passes suffice. Every
sample × direction pair advances together, and finished pairs drop out of the batch.
Inputs are not clipped to [0, 1]: this measures the geometry of d itself, as Yu's surfaces do.
"""
from __future__ import annotations

import torch
from torch import nn

from robaudit.probes.geometry.jacobian import decision_function


@torch.no_grad()
def decision_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """d(x) for N inputs (float64), evaluated ``batch_size`` at a time."""
    out = []
    for start in range(0, len(x), batch_size):
        z = model(x[start:start + batch_size]).double()
        out.append(decision_function(z, y[start:start + batch_size])[0])
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=x.device)


@torch.no_grad()
def first_crossing(model: nn.Module, x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor, t_max: float,
                   points: int = 12, rtol: float = 1e-6, max_refine: int = 40,
                   batch_size: int = 256) -> tuple[torch.Tensor, int]:
    """Smallest grid-bracketed t ∈ (0, t_max] with d(x + t·u) ≤ 0, per sample and direction.

    Args:
        model: the working model; x: N×C×H×W (its dtype); y: N labels.
        directions: N×R×C×H×W directions u (their norm sets the unit of t).
        t_max: the search range; points: geometric grid size.
        rtol: stop refining when the bracket is narrower than rtol·t.
        max_refine: most refinement steps.
        batch_size: inputs per forward pass.

    Returns:
        (N×R float64 distances t — the upper end of the final bracket, so d ≤ 0 there; NaN
        where d(x) ≤ 0 already (misclassified) or no crossing was found up to t_max — and the
        number of model evaluations per pair, averaged, rounded up).
    """
    n, r = directions.shape[:2]
    xr = x[:, None].expand(n, r, *x.shape[1:]).reshape(n * r, *x.shape[1:])
    yr = y[:, None].expand(n, r).reshape(-1)
    u = directions.reshape(n * r, *x.shape[1:]).to(x.dtype)
    shape = (-1,) + (1,) * (x.dim() - 1)
    dev = x.device
    f0 = decision_values(model, x, y, batch_size)[:, None].expand(n, r).reshape(-1)
    live = f0 > 0
    lo = torch.zeros(n * r, dtype=torch.float64, device=dev)
    f_lo = f0.clone()
    hi = torch.full((n * r,), float("nan"), dtype=torch.float64, device=dev)
    f_hi = torch.full((n * r,), float("nan"), dtype=torch.float64, device=dev)
    evals = 0

    def d_at(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return decision_values(model, xr[rows] + t.to(x.dtype).reshape(shape) * u[rows], yr[rows], batch_size)

    for t in (t_max * torch.logspace(-3, 0, points, dtype=torch.float64)).tolist():
        todo = (live & hi.isnan()).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        f = d_at(todo, torch.full((len(todo),), t, dtype=torch.float64, device=dev))
        evals += len(todo)
        crossed = f <= 0
        hi[todo[crossed]], f_hi[todo[crossed]] = t, f[crossed]
        lo[todo[~crossed]], f_lo[todo[~crossed]] = t, f[~crossed]

    side = torch.zeros(n * r, dtype=torch.long, device=dev)  # +1: hi moved last, −1: lo moved last
    for step in range(max_refine):
        rows = (live & ~hi.isnan() & ((hi - lo) > rtol * hi)).nonzero().squeeze(1)
        if len(rows) == 0:
            break
        a, b, fa, fb = lo[rows], hi[rows], f_lo[rows], f_hi[rows]
        secant = b - fb * (b - a) / (fb - fa)
        mid = 0.5 * (a + b)
        ok = torch.isfinite(secant) & (secant > a) & (secant < b) & torch.tensor(step % 4 != 3, device=dev)
        t = torch.where(ok, secant, mid)
        f = d_at(rows, t)
        evals += len(rows)
        crossed = f <= 0
        # Illinois: when the same end survives twice, halve its value so the other end moves too.
        s = side[rows]
        f_lo_new = torch.where(crossed & (s == 1), fa / 2, fa)
        f_hi_new = torch.where(~crossed & (s == -1), fb / 2, fb)
        lo[rows] = torch.where(crossed, a, t)
        f_lo[rows] = torch.where(crossed, f_lo_new, f)
        hi[rows] = torch.where(crossed, t, b)
        f_hi[rows] = torch.where(crossed, f, f_hi_new)
        side[rows] = torch.where(crossed, torch.ones_like(s), -torch.ones_like(s))
    return hi.reshape(n, r).cpu(), -(-evals // max(1, n * r))
