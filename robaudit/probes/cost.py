"""What an audit will cost, before it runs: model passes per probe, and a time from one timed pass.

Units: a :class:`Cost` counts **per-sample passes** through the model — one sample through the
network once. A batch of 128 samples pushed forward once is 128 forward passes. Three kinds:

* ``forward`` — forward-only passes (no autograd graph: re-checking adversarial examples, clean
  logits, noise baselines);
* ``backward`` — forward+backward passes (a forward that builds a graph, then one backward through
  it: one attack step);
* ``hvp`` — Hessian-vector products (a double backward).

The time estimate multiplies by one timed forward+backward of the model on this device (input
gradient of the cross-entropy on a real batch, the pass an attack step makes), with a forward-only
pass counted as :data:`FORWARD_SHARE` of it and a Hessian-vector product as :data:`HVP_FACTOR`.

A probe declares its cost with :meth:`robaudit.probes.base.Probe.estimate_cost`. It returns
:class:`Unknown` (with the reason) when the cost cannot be known before the run, e.g. a sample set
whose size is only known once it is read; the default (``None``) means "not declared". Either way
the probe is listed as unknown, left out of the total, and the total's line says "estimate omits
NAME", so no probe is ever silently missing from the estimate. Probes whose work depends on the
data (restarts on survivors, bisection on broken samples, early stopping) declare an **upper
bound**: every sample clean-correct, never broken early, every adaptive loop run to its iteration
cap. Krylov eigensolvers are the exception: their caps are 10–100× what they use, so they declare
the typical count, one Krylov basis (:func:`~robaudit.probes.curvature.topk_probe.lanczos_hvp_estimate`),
and say in their docstrings what it leaves out.
"""
from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from robaudit.probes.base import Probe
    from robaudit.threat_model import ThreatModel

FORWARD_SHARE = 1.0 / 3.0
"""A forward-only pass, in forward+backward passes (backward ≈ twice the forward)."""
HVP_FACTOR = 2.0
"""A Hessian-vector product, in forward+backward passes (Pearlmutter's double backward)."""
SHARED = "clean logits (shared)"
"""The row of the shared clean forward pass (:meth:`ProbeContext.clean_logits`, once per audit)."""


@dataclass(frozen=True)
class Cost:
    """Model passes, in per-sample units (see the module docstring).

    Attributes:
        forward: forward-only passes.
        backward: forward+backward passes.
        hvp: Hessian-vector products.
    """

    forward: float = 0.0
    backward: float = 0.0
    hvp: float = 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.forward + other.forward, self.backward + other.backward, self.hvp + other.hvp)

    def __mul__(self, k: float) -> "Cost":
        return Cost(self.forward * k, self.backward * k, self.hvp * k)

    __rmul__ = __mul__

    def fwd_bwd_equivalents(self) -> float:
        """The cost in forward+backward passes (forward-only and HVPs converted by the documented factors)."""
        return self.backward + FORWARD_SHARE * self.forward + HVP_FACTOR * self.hvp

    def to_json(self) -> dict[str, float]:
        """The three counts and their forward+backward equivalents."""
        return {"forward": self.forward, "backward": self.backward, "hvp": self.hvp,
                "fwd_bwd_equivalents": self.fwd_bwd_equivalents()}


@dataclass(frozen=True)
class Unknown:
    """A cost that cannot be estimated before the run.

    Attributes:
        reason: why, in words (ends up in the log line and in ``results.json``).
    """

    reason: str


NOT_DECLARED = "the probe declares no estimate_cost"
"""The :class:`Unknown` reason of a probe whose ``estimate_cost`` returns ``None``."""


@dataclass
class AuditCost:
    """An audit's estimated cost.

    Attributes:
        n_samples: the audit's sample count N.
        seconds_per_fwd_bwd: seconds of one forward+backward of one sample on this device.
        per_probe: each selected probe's cost (:class:`Unknown` where it cannot be estimated),
            plus the :data:`SHARED` clean forward.
    """

    n_samples: int
    seconds_per_fwd_bwd: float
    per_probe: dict[str, Cost | Unknown] = field(default_factory=dict)

    @property
    def total(self) -> Cost:
        """The sum over every known cost."""
        out = Cost()
        for cost in self.per_probe.values():
            if isinstance(cost, Cost):
                out = out + cost
        return out

    @property
    def omitted(self) -> dict[str, str]:
        """Probes whose cost is unknown (left out of :attr:`total`), with the reason."""
        return {name: cost.reason for name, cost in self.per_probe.items() if isinstance(cost, Unknown)}

    def seconds(self, cost: Cost) -> float:
        """Estimated seconds of ``cost`` on this device."""
        return cost.fwd_bwd_equivalents() * self.seconds_per_fwd_bwd

    def to_json(self) -> dict[str, Any]:
        """The estimate as recorded in ``results.json`` (``cost_estimate``)."""
        return {
            "units": "per-sample passes: forward-only, forward+backward, Hessian-vector products",
            "n_samples": self.n_samples,
            "seconds_per_fwd_bwd": self.seconds_per_fwd_bwd,
            "forward_share": FORWARD_SHARE, "hvp_factor": HVP_FACTOR,
            "probes": {name: ({**cost.to_json(), "seconds": self.seconds(cost)} if isinstance(cost, Cost) else None)
                       for name, cost in self.per_probe.items()},
            "total": {**self.total.to_json(), "seconds": self.seconds(self.total),
                      "per_sample_fwd_bwd_equivalents": (self.total.fwd_bwd_equivalents() / self.n_samples
                                                         if self.n_samples else 0.0)},
            "omitted": self.omitted,
        }

    def lines(self) -> list[str]:
        """One line per probe and one for the total, for the log."""
        out = []
        for name, cost in self.per_probe.items():
            if isinstance(cost, Unknown):
                out.append(f"cost estimate {name}: unknown ({cost.reason})")
            else:
                out.append(f"cost estimate {name}: {cost.forward:.0f} forward, {cost.backward:.0f} forward+backward, "
                           f"{cost.hvp:.0f} HVP passes ≈ {self.seconds(cost):.1f} s")
        total = self.total
        per = total.fwd_bwd_equivalents() / self.n_samples if self.n_samples else 0.0
        note = f"; estimate omits {', '.join(self.omitted)}" if self.omitted else ""
        out.append(f"cost estimate total: {total.forward:.0f} forward, {total.backward:.0f} forward+backward, "
                   f"{total.hvp:.0f} HVP passes = {per:.0f} forward+backward-equivalents per sample "
                   f"≈ {self.seconds(total):.1f} s{note}")
        return out


def estimate_audit_cost(probes: Sequence["Probe"], n_samples: int, threat_model: "ThreatModel",
                        seconds_per_fwd_bwd: float, names: Sequence[str] | None = None,
                        num_classes: int | None = None) -> AuditCost:
    """The estimated cost of running ``probes`` (instances, with their configs) on ``n_samples`` samples.

    Args:
        probes: the selected probes.
        n_samples: N, the audit's sample count.
        threat_model: the run's ε budgets.
        seconds_per_fwd_bwd: seconds per sample of one forward+backward (:func:`time_fwd_bwd`).
        names: the registry names of ``probes`` (default: each class's ``name``).
        num_classes: K, the model's class count, handed to every probe whose ``estimate_cost``
            takes a ``num_classes`` keyword (Jacobian rows, FAB's per-class gradients).

    Returns:
        per-probe costs (:class:`Unknown` where a probe declares none or cannot know it) and the
        shared clean forward.
    """
    names = list(names) if names is not None else [type(p).name for p in probes]
    selected = frozenset(names)
    audit = AuditCost(n_samples, seconds_per_fwd_bwd)
    audit.per_probe[SHARED] = Cost(forward=float(n_samples))
    for name, probe in zip(names, probes):
        estimate = type(probe).estimate_cost
        extra = {"num_classes": num_classes} if takes_num_classes(estimate) else {}
        cost = estimate(probe.config, n_samples, threat_model, selected, **extra)
        audit.per_probe[name] = Unknown(NOT_DECLARED) if cost is None else cost
    return audit


def takes_num_classes(estimate: Any) -> bool:
    """Whether an ``estimate_cost`` accepts the ``num_classes`` keyword (older plugins' do not)."""
    try:
        params = inspect.signature(estimate).parameters
    except (TypeError, ValueError):
        return False
    return "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def declares_estimate(probe_cls: type["Probe"]) -> bool:
    """Whether ``probe_cls`` overrides :meth:`Probe.estimate_cost` (the base's returns ``None``)."""
    from robaudit.probes.base import Probe

    return getattr(probe_cls.estimate_cost, "__func__", None) is not Probe.estimate_cost.__func__


def class_count_unknown() -> Unknown:
    """The :class:`Unknown` of a probe whose passes scale with K when no class count was given."""
    return Unknown("the model's class count was not given")


def time_fwd_bwd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 5,
                 budget_s: float = 0.5) -> float:
    """Seconds per sample of one forward+backward of ``model`` on the batch ``x`` (N×C×H×W, labels ``y``).

    The pass an attack step makes: cross-entropy, gradient with respect to the input only (no
    parameter ``.grad`` is written). One untimed pass first, so lazy initialisation is not timed;
    then the fastest of up to ``repeats`` timed passes (fewer once ``budget_s`` seconds are spent),
    as ``timeit`` does: a single pass was measured up to 30× slow when another process held a core.
    """
    def one() -> float:
        xi = x.detach().clone().requires_grad_(True)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(model(xi).float(), y)
            if loss.requires_grad:  # a model with no gradient path (preflight flags it) times its forward
                torch.autograd.grad(loss, xi, allow_unused=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - start

    one()
    times: list[float] = []
    while len(times) < max(1, repeats) and sum(times) < budget_s:
        times.append(one())
    return min(times) / max(1, len(x))
