"""The exact, sample-weighted Hessian-vector product operator.

For a sample set S of N samples and parameters θ (all P parameters of the audit model),

    J(θ) = (1/N) Σ_{i∈S} CE(f_θ(x_i), y_i)        H = ∇²_θ J        (P×P, never formed)

Every batch contributes ``sum of its per-sample losses / N``, so the result is the exact mean
whatever the batch sizes (hessian-eigenthings 1.0.0a5 averages batch means with equal weight:
6 % error with a short last batch, measured). Under ``torch.distributed`` each rank takes a
contiguous shard of S and the per-rank sums are all-reduced, which is exact for unequal shards
too (the library's DDP operator averages rank means with equal weight).

When S is small enough (``reuse_graph``), the gradient graph of the whole set is built once with
``create_graph=True`` and every HVP is one backward pass through it (as PyHessian's "data" mode
does); otherwise each HVP streams the batches (forward, gradient with graph, backward), so
memory is bounded by one batch.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robaudit.models.audit_model import AuditModel
from robaudit.probes.curvature.audit_net import (
    audit_copy,
    flat_parameters,
    no_autocast,
    reject_reentrant_checkpoint,
    second_order_error,
)
from robaudit.probes.curvature.samples import SampleSet
from robaudit.probes import memory

logger = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any], str, int | None], Iterator[Any]]

# Tolerances of the operator checks, relative (see OperatorChecks).
CHECK_TOL = {torch.float32: {"determinism": 1e-5, "symmetry": 1e-4},
             torch.float64: {"determinism": 1e-12, "symmetry": 1e-10}}


def _no_progress(iterable: Iterable[Any], label: str, total: int | None = None) -> Iterator[Any]:
    yield from iterable


@dataclass
class OperatorChecks:
    """Numerical checks of the operator, run on seeded random unit vectors u, v.

    Attributes:
        determinism: ‖Hv − Hv'‖ / ‖Hv‖ for two products with the same v (0 when bitwise equal).
        symmetry: |uᵀHv − vᵀHu| / (‖Hu‖ + ‖Hv‖) (H is symmetric, so 0 up to rounding).
        deterministic, symmetric: whether each is within the dtype's tolerance (``CHECK_TOL``).
        hvps: the products spent (3).
    """

    determinism: float
    symmetry: float
    deterministic: bool
    symmetric: bool
    hvps: int = 3


class HessianOperator:
    """H·v for the mean cross-entropy over a sample set, on a private copy of the audit model.

    Args:
        model: the audit model (left unchanged; the products run on an eval-mode copy).
        samples: the sample set S.
        dtype: ``torch.float32`` or ``torch.float64`` (the copy, the data and the vectors).
        batch_size: samples per forward pass.
        device: where to compute (default: the model's device).
        reuse_graph: keep the gradient graph of all of S and reuse it for every product
            (fast; memory grows with N). ``None`` reuses it when this rank's share of S has at most
            ``reuse_graph_max_samples`` samples and its graph (about 3× the activations autograd saves)
            fits :func:`robaudit.probes.memory.working_budget`; otherwise each product streams batches.
        reuse_graph_max_samples: with ``reuse_graph=None``, reuse only when this rank's share of S has
            at most this many samples.
        group: a ``torch.distributed`` process group (or ``None`` for the default group when one is
            initialised); each rank processes a contiguous shard and the sums are all-reduced.
        distributed: shard across ranks when ``torch.distributed`` is initialised (``False`` keeps
            the whole set on every process).
        progress: ``progress(iterable, label, total)`` for passes over the data.

    Attributes:
        size: P, the number of parameters (length of every vector).
        hvps: Hessian-vector products computed so far.
        hvp_seconds: wall time spent in them.
        checked_products: the (v, H·v) pairs of the last :meth:`check` (float64, CPU; unit v), which
            :func:`~robaudit.probes.curvature.eigen.topk` reuses as its start vectors.
    """

    def __init__(
        self,
        model: AuditModel,
        samples: SampleSet,
        *,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 128,
        device: torch.device | None = None,
        reuse_graph: bool | None = None,
        reuse_graph_max_samples: int = 2048,
        group: Any = None,
        distributed: bool = True,
        progress: Progress | None = None,
    ) -> None:
        if len(samples) == 0:
            raise ValueError("the sample set is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = device if device is not None else next(model.parameters()).device
        self.dtype = dtype
        self.samples = samples
        self.batch_size = batch_size
        self.progress = progress or _no_progress
        self.net = audit_copy(model, dtype, self.device)
        self.names, self.params = flat_parameters(self.net)
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.size = int(sum(self.numels))
        self.n_total = len(samples)

        self.group = group
        self.world, self.rank = 1, 0
        if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.world = torch.distributed.get_world_size(group)
            self.rank = torch.distributed.get_rank(group)
        shard = np.array_split(np.arange(self.n_total), self.world)[self.rank]
        self.lo, self.hi = (int(shard[0]), int(shard[-1]) + 1) if len(shard) else (0, 0)
        local = self.hi - self.lo
        if reuse_graph is None:  # auto: keep the graph only while it fits the working budget (memory flat in N)
            graph_bytes = 3 * local * memory.activation_bytes(self.net, samples.x[:1].to(self.device)) if local else 0
            reuse_graph = local <= reuse_graph_max_samples and graph_bytes <= memory.working_budget(self.device)
        self.reuse_graph = bool(reuse_graph)

        self.hvps = 0
        self.checked_products: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
        self.hvp_seconds = 0.0
        self.unused: list[str] | None = None
        self._graph_checked = False
        self._graph: list[torch.Tensor] | None = None
        self._gradient: torch.Tensor | None = None
        self._loss: float | None = None

    # -- data ---------------------------------------------------------------------------------

    def replace_inputs(self, x: torch.Tensor) -> None:
        """Evaluate the loss at other inputs for the same labels from now on (N×C×H×W, [0, 1] pixels).

        For losses at transformed inputs held fixed, e.g. adversarial examples x + δ* found at θ
        (the adversarial-landscape plugin). Drops the cached gradient graph, gradient and loss.

        Raises:
            ValueError: ``x`` does not have the sample set's shape.
        """
        if tuple(x.shape) != tuple(self.samples.x.shape):
            raise ValueError(f"replacement inputs have shape {tuple(x.shape)}, the sample set {tuple(self.samples.x.shape)}")
        self.samples = replace(self.samples, x=x.detach())
        self._graph, self._gradient, self._loss = None, None, None

    def _batches(self, label: str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = range(self.lo, self.hi, self.batch_size)
        it: Iterable[int] = starts if label is None else self.progress(starts, label, len(starts))
        for start in it:
            stop = min(start + self.batch_size, self.hi)
            # Inputs that require grad put reentrant activation checkpointing into the graph, where
            # reject_reentrant_checkpoint finds it; with constant inputs the checkpointed block would
            # silently be a constant. Input gradients are never computed (not asked for).
            x = self.samples.x[start:stop].to(self.device, self.dtype).requires_grad_(True)
            y = self.samples.y[start:stop].to(self.device)
            yield x, y

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_{i in batch} CE_i / N: the batch's exact share of the mean loss over the whole set."""
        return F.cross_entropy(self.net(x), y, reduction="sum") / self.n_total

    def _grad_with_graph(self, loss: torch.Tensor) -> list[torch.Tensor]:
        if not self._graph_checked:
            reject_reentrant_checkpoint(loss)
            self._graph_checked = True
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        if self.unused is None:
            self.unused = [name for name, g in zip(self.names, grads) if g is None]
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)]

    # -- products -----------------------------------------------------------------------------

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """A flat P-vector as one tensor per parameter (views)."""
        return [chunk.view(shape) for chunk, shape in zip(torch.split(v, self.numels), self.shapes)]

    def flatten(self, parts: list[torch.Tensor | None]) -> torch.Tensor:
        """One tensor per parameter (``None`` = zeros) → a flat P-vector."""
        return torch.cat([
            (torch.zeros(n, dtype=self.dtype, device=self.device) if t is None else t.reshape(-1))
            for t, n in zip(parts, self.numels)
        ])

    def _second_backward(self, grads: list[torch.Tensor], v_parts: list[torch.Tensor], retain: bool) -> torch.Tensor:
        keep = [i for i, g in enumerate(grads) if g.requires_grad]
        if not keep:
            return torch.zeros(self.size, dtype=self.dtype, device=self.device)
        hv = torch.autograd.grad([grads[i] for i in keep], self.params, grad_outputs=[v_parts[i] for i in keep],
                                 retain_graph=retain, allow_unused=True)
        return self.flatten(list(hv))

    def _build_graph(self) -> None:
        total: list[torch.Tensor] | None = None
        loss_sum = 0.0
        for x, y in self._batches("curvature: gradient graph"):
            loss = self._batch_loss(x, y)
            grads = self._grad_with_graph(loss)
            loss_sum += float(loss.detach())
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        self._graph = total if total is not None else [torch.zeros_like(p) for p in self.params]  # empty shard
        self._gradient = self._reduce(self.flatten([g.detach() for g in self._graph]))
        self._loss = float(self._reduce(torch.tensor([loss_sum], dtype=torch.float64, device=self.device))[0])

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=self.group)
        return t

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H·v for a flat P-vector ``v`` (any float dtype/device; returned in the operator's dtype/device).

        Raises:
            ProbeError: the model has no second derivative (fused attention, checkpointing …).
        """
        v = v.to(self.device, self.dtype).reshape(-1)
        if v.numel() != self.size:
            raise ValueError(f"expected a vector of {self.size} entries, got {v.numel()}")
        start = time.perf_counter()
        parts = self.split(v)
        try:
            with torch.enable_grad(), no_autocast(self.device):
                if self.reuse_graph:
                    if self._graph is None:
                        self._build_graph()
                    assert self._graph is not None
                    out = self._second_backward(self._graph, parts, retain=True)
                else:
                    out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
                    for x, y in self._batches():
                        grads = self._grad_with_graph(self._batch_loss(x, y))
                        out += self._second_backward(grads, parts, retain=False)
        except RuntimeError as exc:
            problem = second_order_error(exc)
            if problem is not None:
                raise problem from exc
            raise
        out = self._reduce(out)
        self.hvps += 1
        self.hvp_seconds += time.perf_counter() - start
        return out

    __call__ = matvec

    def matvec_numpy(self, v: np.ndarray) -> np.ndarray:
        """H·v with float64 numpy vectors in and out (for scipy)."""
        out = self.matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).reshape(-1))
        return out.detach().to("cpu", torch.float64).numpy()

    def linear_operator(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64, P×P, symmetric) over :meth:`matvec`."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.size, self.size), matvec=self.matvec_numpy, rmatvec=self.matvec_numpy,
                              dtype=np.float64)

    # -- first order --------------------------------------------------------------------------

    def _first_order(self) -> None:
        if self.reuse_graph:
            if self._graph is None:
                with torch.enable_grad(), no_autocast(self.device):
                    self._build_graph()
            return
        grad = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        loss_sum = 0.0
        with torch.enable_grad(), no_autocast(self.device):
            for x, y in self._batches("curvature: gradient"):
                loss = self._batch_loss(x, y)
                g = torch.autograd.grad(loss, self.params, allow_unused=True)
                grad += self.flatten(list(g))
                loss_sum += float(loss.detach())
        self._gradient = self._reduce(grad)
        self._loss = float(self._reduce(torch.tensor([loss_sum], dtype=torch.float64, device=self.device))[0])

    def gradient(self) -> torch.Tensor:
        """∇_θ J, the flat P-vector gradient of the mean loss over the set."""
        if self._gradient is None:
            self._first_order()
        assert self._gradient is not None
        return self._gradient

    def loss(self) -> float:
        """J(θ), the mean cross-entropy over the set (nats)."""
        if self._loss is None:
            self._first_order()
        assert self._loss is not None
        return self._loss

    def parameters_vector(self) -> torch.Tensor:
        """θ as a flat P-vector (a detached copy, in the operator's dtype)."""
        return self.flatten([p.detach() for p in self.params]).clone()

    # -- checks -------------------------------------------------------------------------------

    def check(self, seed: int) -> OperatorChecks:
        """Determinism (same v twice) and symmetry (uᵀHv = vᵀHu) on seeded random unit vectors (3 HVPs)."""
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(self.size, generator=gen, dtype=torch.float64)
        v = torch.randn(self.size, generator=gen, dtype=torch.float64)
        u, v = u / u.norm(), v / v.norm()
        hv = self.matvec(v).double().cpu()
        hv2 = self.matvec(v).double().cpu()
        hu = self.matvec(u).double().cpu()
        scale = float(hv.norm())
        det = float((hv - hv2).norm()) / scale if scale > 0 else float((hv - hv2).norm())
        denom = float(hu.norm() + hv.norm())
        sym = abs(float(u @ hv) - float(v @ hu)) / denom if denom > 0 else 0.0
        self.checked_products = ((v, hv), (u, hu))
        tol = CHECK_TOL[self.dtype]
        return OperatorChecks(det, sym, det <= tol["determinism"], sym <= tol["symmetry"])

    def describe(self) -> dict[str, Any]:
        """JSON description of the operator (no timings: those go to the probe's notes)."""
        return {
            "parameters": self.size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "samples": self.n_total,
            "batch_size": self.batch_size,
            "reuse_graph": self.reuse_graph,
            "world_size": self.world,
            "parameters_without_gradient": list(self.unused or [])[:20],
            "loss": "mean cross-entropy over the set (nats); eval mode; no autocast",
        }

    def release(self) -> None:
        """Drop the stored gradient graph (frees its memory)."""
        self._graph = None


def rayleigh(op: HessianOperator, d: torch.Tensor) -> float:
    """dᵀHd / dᵀd: the curvature of J along direction ``d`` (1 HVP)."""
    d = d.to(op.device, op.dtype)
    nrm2 = float(d @ d)
    return float(d @ op.matvec(d)) / nrm2 if nrm2 > 0 else math.nan
