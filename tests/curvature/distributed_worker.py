"""The worker of the torch.distributed test: one gloo rank computing curvature on its shard."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from robaudit.probes.curvature import eigenthings
from robaudit.probes.curvature.eigen import topk
from robaudit.probes.curvature.operator import HessianOperator


def curvature_numbers(model: Any, samples: Any, v: torch.Tensor) -> dict[str, Any]:
    """HVP, gradient, loss, top-5 and a Hutchinson trace (float64, batches of 7) — the same in every process."""
    op = HessianOperator(model, samples, dtype=torch.float64, batch_size=7)
    out = {"hvp": op.matvec(v), "gradient": op.gradient(), "loss": op.loss(), "shard": (op.lo, op.hi)}
    pairs = topk(op, 5, tol=1e-10, seed=0)
    out["eigenvalues"] = torch.from_numpy(pairs.values)
    out["trace"] = eigenthings.trace(op, method="hutchinson", num_matvecs=8, seed=0).value
    out["hvps"] = op.hvps
    return out


def worker(rank: int, world: int, port: int, folder: str) -> None:
    """Join the gloo group on localhost:port, compute on this rank's shard, save the numbers."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        inputs = torch.load(Path(folder) / "inputs.pt", weights_only=False)
        out = curvature_numbers(inputs["model"], inputs["samples"], inputs["v"])
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
