"""Every probe's cost estimate against the passes it really makes, and the estimate's coverage.

The oracle is a counting module around a tiny network (:class:`Counting`): every call adds its
batch size to a global tally (global, so that the private copies probes make — geometry's working
model, the curvature operator's copy — count too), and a gradient hook on the call's input adds
the batch size to the backward tally when a backward pass reaches that input through ordinary
autograd. Hessian-vector products of the parameter Hessian are counted by the operator: each
:meth:`HessianOperator.matvec` is one HVP per sample of its set.

A declared :class:`Cost` must bound what was measured (every declared pass starts with one
forward; a backward that reaches the input is a forward+backward pass or part of an HVP), and
must not overstate it by more than the factor stated per probe: 1 where the count is fixed by the
knobs, more where the declared count is the cap of an adaptive loop (each factor says why).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import audit_data, audit_model, context
from robaudit.config import build_probe_config
from robaudit.probes.cost import Cost, Unknown, declares_estimate, estimate_audit_cost
from robaudit.probes.curvature.operator import HessianOperator
from robaudit.probes.registry import ProbeRegistry

SHAPE = (1, 4, 4)
K = 4
N = 12
TALLY = {"calls": 0, "reached_calls": 0, "reached": 0, "hvps": 0}


def rows_of(grad: torch.Tensor) -> int:
    """How many cotangents a gradient carries: 1, or the vmapped batch of a ``torch.func`` VJP."""
    rows = 1
    while torch._C._functorch.is_batchedtensor(grad):
        bdim = torch._C._functorch.maybe_get_bdim(grad)
        grad = torch._C._functorch.get_unwrapped(grad)
        rows *= int(grad.shape[bdim])
    return rows


class Counting(nn.Module):
    """``net`` with every per-sample forward call, and every backward reaching the input, tallied."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = int(x.shape[0])
        TALLY["calls"] += b
        if x.requires_grad:
            first = [True]

            def reached(g: torch.Tensor) -> None:
                TALLY["reached"] += b * rows_of(g)
                if first[0]:
                    TALLY["reached_calls"] += b
                    first[0] = False

            x.register_hook(reached)
        return self.net(x)


def tiny_problem(seed: int = 0, unbreakable: bool = False) -> tuple:
    """A 16-8-4 tanh network (not piecewise linear: the input-Hessian fallback runs) on N images,
    labelled with its own predictions (every sample clean-correct). ``unbreakable``: class 0 leads
    by 100 logits and the weights are small, so no perturbation in the pixel box flips a sample
    and every data-dependent upper bound (survivors re-attacked, queries until success) is attained."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, K))
    if unbreakable:
        with torch.no_grad():
            for layer in (net[1], net[3]):
                layer.weight.mul_(0.01)
            net[3].bias.copy_(torch.tensor([100.0] + [0.0] * (K - 1)))
    model = audit_model(Counting(net), K)
    x = torch.rand(N, *SHAPE, generator=g)
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    return model, audit_data(x, y, K)


@pytest.fixture
def counted_hvps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count each parameter HVP as one per sample of the operator's set."""
    original = HessianOperator.matvec

    def matvec(self: HessianOperator, v: torch.Tensor) -> torch.Tensor:
        TALLY["hvps"] += self.hi - self.lo
        return original(self, v)

    monkeypatch.setattr(HessianOperator, "matvec", matvec)
    monkeypatch.setattr(HessianOperator, "__call__", matvec)


def registry() -> ProbeRegistry:
    return ProbeRegistry(autoload_plugins=True)


GRADIENT_UNSEEN = ("the parameter-gradient pass is invisible to the input hook (seen as a forward); "
                   "the HVPs are compared exactly")
# (probe, knobs, unbreakable model, factor: how far the declared forward+backward equivalents may
#  exceed the measured ones, and why; exact_hvps: the declared HVPs equal the operator's count)
CASES = [
    ("geometry.gradients", {}, False, 1.0, "exact", False),
    ("geometry.gradients", {"precision": "float64", "top_m": 2}, False, 1.0, "exact", False),
    ("geometry.input_hessian", {"lanczos_steps": 4, "check_vectors": 2}, False, 2.0,
     "an input HVP is a second backward through the stored gradient graph, which the oracle sees as one "
     "backward; the estimate counts it as an HVP (two forward+backward equivalents)", False),
    ("geometry.surfaces", {"samples": 2, "resolution": 5}, False, 1.0, "exact", False),
    ("geometry.surfaces", {"samples": 2, "resolution": 5, "direction": "pgd", "pgd_steps": 3}, False, 1.0,
     "exact", False),
    ("geometry.boundary", {"random_directions": 2, "search_points": 6, "max_refine": 8}, False, 3.0,
     "the grid stops at the first crossing and refinement at rtol", False),
    ("curvature.topk", {"k": 2, "maxiter": 1, "ncv": 6, "check_steps": 2, "dtype": "float64"}, False, 4.0,
     "Lanczos converges inside its first basis here; the declared basis of ncv products is filled only when needed", False),
    ("curvature.power", {"k": 2, "max_iter": 10, "dtype": "float64"}, False, 1.05,
     "power iteration stops at tol; " + GRADIENT_UNSEEN, False),
    ("curvature.trace", {"num_matvecs": 9}, False, 1.05, GRADIENT_UNSEEN, True),
    ("curvature.density", {"runs": 2, "steps": 6}, False, 1.05, GRADIENT_UNSEEN, True),
    ("curvature.landscape", {"curve_sets": ["audit"], "points": 3, "plane_points": 3, "fit_points": 3}, False, 40.0,
     "the top-2 Lanczos converges in far fewer products than its default basis (the knobs do not expose ncv)", False),
    ("attack.cw_l2", {"steps": 6, "binary_search_steps": 2}, False, 2.0, "C&W stops a sample whose loss stalls",
     False),
    ("attack.fab", {"steps": 3}, False, 1.0, "exact", False),
    ("attack.fab", {"steps": 2, "norm": "l2", "restarts": 2}, False, 2.0,
     "the second restart attacks only the samples the first left unbroken (none here)", False),
    ("attack.fab", {"steps": 2, "norm": "l2", "restarts": 2}, True, 1.0, "exact when no sample breaks", False),
    ("attack.autoattack", {"preset": "fast", "square_queries": 20}, False, 2.0,
     "each component attacks only the survivors of the earlier ones", False),
    ("attack.autoattack", {"preset": "fast", "square_queries": 20}, True, 1.05, "exact when no sample breaks",
     False),
    ("attack.fhsm", {}, False, 1.15,
     "the class-count forward runs on one sample per batch and the Gauss–Newton check's JVP and VJP are "
     "counted as full passes", False),
    ("attack.l2hess", {"method": "cg", "cg_max_iter": 3, "steps": 2}, False, 2.0, "CG stops at cg_tol", False),
    ("adv_landscape", {"eps": [0.0, 0.05], "steps": 2, "k": 1, "maxiter": 1, "ncv": 4, "a": [0.0, 0.2],
                       "dtype": "float64"}, False, 6.0, "Lanczos converges inside its first basis here",
     False),
]


def measure(name: str, knobs: dict, unbreakable: bool) -> tuple[dict[str, int], Cost]:
    """(the tallies of one real ``run`` on the tiny problem, the probe's declared cost)."""
    cls = registry().get(name)
    model, data = tiny_problem(unbreakable=unbreakable)
    config = build_probe_config(cls, knobs)
    ctx = context(model, data, batch_size=8)
    ctx.clean_logits()  # shared by the audit: counted once, outside every probe
    declared = estimate_audit_cost([cls(config)], len(data), ctx.threat_model, 1.0, names=[name],
                                   num_classes=K).per_probe[name]
    assert isinstance(declared, Cost), declared
    for key in TALLY:
        TALLY[key] = 0
    torch.manual_seed(0)
    with torch.enable_grad():
        cls(config).run(ctx)
    return dict(TALLY), declared


@pytest.mark.slow
@pytest.mark.parametrize(("name", "knobs", "unbreakable", "factor", "why", "exact_hvps"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_estimate_bounds_the_real_passes(name: str, knobs: dict, unbreakable: bool, factor: float, why: str,
                                         exact_hvps: bool, counted_hvps: None) -> None:
    measured, declared = measure(name, knobs, unbreakable)
    assert measured["calls"] > 0
    # every declared pass begins with one forward through the network
    assert measured["calls"] <= declared.forward + declared.backward + declared.hvp
    assert measured["reached"] <= declared.backward + declared.hvp
    assert measured["hvps"] <= declared.hvp
    if exact_hvps:
        assert measured["hvps"] == declared.hvp
    # the declared work against the measured: forwards no backward reached, backward passes (one
    # per cotangent row), and the operator's HVPs
    real = Cost(forward=measured["calls"] - measured["reached_calls"], backward=measured["reached"],
                hvp=measured["hvps"])
    assert declared.fwd_bwd_equivalents() <= factor * real.fwd_bwd_equivalents() + 1e-9, (why, declared, real)


def test_every_built_in_and_bundled_plugin_probe_declares_an_estimate() -> None:
    """Nothing can silently drop out of the estimate: every registered probe overrides
    ``estimate_cost`` and returns a Cost for its default settings on a known class count."""
    reg = registry()
    names = reg.names()
    assert {"attack.fhsm", "attack.l2hess", "adv_landscape"} <= set(names)  # the plugins are installed
    model, data = tiny_problem()
    tm = context(model, data).threat_model
    for name in names:
        cls = reg.get(name)
        assert declares_estimate(cls), name
    audit = estimate_audit_cost([reg.get(n)() for n in names], 100, tm, 1e-3, names=names, num_classes=10)
    assert audit.omitted == {}


def test_an_unknown_cost_is_named_in_the_total_line() -> None:
    reg = registry()
    model, data = tiny_problem()
    tm = context(model, data).threat_model
    fgsm = reg.get("attack.fgsm")

    class Silent(fgsm):  # the documented default of Probe: no estimate
        name = "example.silent"

        @classmethod
        def estimate_cost(cls, *args, **kwargs):
            return None

    topk = reg.get("curvature.topk")
    probes = [fgsm(), Silent(), topk(build_probe_config(topk, {"sets": ["train"]})),
              reg.get("geometry.gradients")()]
    audit = estimate_audit_cost(probes, N, tm, 0.5, names=["attack.fgsm", "example.silent", "curvature.topk",
                                                            "geometry.gradients"])
    assert set(audit.omitted) == {"example.silent", "curvature.topk", "geometry.gradients"}
    assert "train split" in audit.omitted["curvature.topk"]
    assert "class count" in audit.omitted["geometry.gradients"]
    total = audit.lines()[-1]
    assert total.endswith("estimate omits example.silent, curvature.topk, geometry.gradients")
    assert audit.total == fgsm.estimate_cost(fgsm.Config(), N, tm) + Cost(forward=N)
    record = audit.to_json()
    assert record["probes"]["example.silent"] is None
    assert record["omitted"]["example.silent"] == "the probe declares no estimate_cost"


def test_an_older_plugin_signature_without_num_classes_still_works() -> None:
    """Plugins written before ``num_classes`` existed are called without it."""
    reg = registry()
    model, data = tiny_problem()
    tm = context(model, data).threat_model
    fgsm = reg.get("attack.fgsm")

    class Old(fgsm):
        name = "example.old"

        @classmethod
        def estimate_cost(cls, config, n_samples, threat_model, selected=frozenset()):
            return Cost(forward=n_samples)

    audit = estimate_audit_cost([Old()], N, tm, 1.0, names=["example.old"], num_classes=K)
    assert audit.per_probe["example.old"] == Cost(forward=N)


def test_the_train_set_cost_is_known_once_capped() -> None:
    reg = registry()
    model, data = tiny_problem()
    tm = context(model, data).threat_model
    trace = reg.get("curvature.trace")
    capped = trace.estimate_cost(build_probe_config(trace, {"sets": ["train", "audit:5"], "train_samples": 50,
                                                            "num_matvecs": 9}), N, tm)
    # the gradient and (9 + 3 check) HVPs per sample of each set
    assert capped == Cost(backward=55, hvp=55 * 12)
    assert isinstance(trace.estimate_cost(build_probe_config(trace, {"sets": ["train"]}), N, tm), Unknown)
