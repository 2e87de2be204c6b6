"""What every curvature probe shares: the common knobs, sample-set bookkeeping, the operator and its
checks, the flags about eigenpairs, and the caveat every report carries.

Units: eigenvalues, traces and curvatures are in nats per unit² of Euclidean parameter displacement
(the loss is the mean cross-entropy in nats). Summaries nest per sample set as
``sets › <base> › full | b_h_<B_H>`` (plain keys, no compound strings).

Caveat carried into every report (Kamath et al.): λ1^θ is not invariant to reparametrisation,
and a higher λ1^θ does not always mean lower robustness; robaudit tests the link on the models
given and never asserts it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robaudit.probes.base import Flag, Probe, ProbeContext, Severity
from robaudit.probes.curvature.audit_net import parse_dtype
from robaudit.probes.curvature.eigen import EigenPairs
from robaudit.probes.curvature.operator import HessianOperator, OperatorChecks
from robaudit.probes.curvature.samples import SampleSet, parse_set, resolve_sets
from robaudit.probes.cost import Cost, Unknown

REUSE = ("auto", "always", "never")
PRESETS = {
    "standard": {"k": 5, "sets": ["audit"]},
    "paper": {"k": 20, "sets": ["train", "train:320", "train:1", "audit"]},
}
KAMATH = ("λ1 of the parameter Hessian is not invariant to reparametrisation (rescaling layers changes it without "
          "changing the function), and Kamath et al. found models whose λ1 rises with the training batch size while "
          "their robustness rises too. robaudit tests the link between curvature and robustness on the models given; "
          "it does not assert it.")


def check_sets(sets: list[str]) -> None:
    if not sets:
        raise ValueError("sets must name at least one sample set")
    for spec in sets:
        parse_set(spec)
    keys = [set_keys(s) for s in sets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sets {sets} name the same sample set twice")


def set_keys(spec: str) -> tuple[str, str]:
    """``"train:320"`` → ``("train", "b_h_320")``; ``"audit"`` → ``("audit", "full")`` (summary keys)."""
    base, b_h = parse_set(spec)
    return base, ("full" if b_h is None else f"b_h_{b_h}")


def put(tree: dict[str, Any], spec: str, value: Any) -> None:
    base, sub = set_keys(spec)
    tree.setdefault(base, {})[sub] = value


@dataclass
class CurvatureKnobs:
    """Knobs shared by every curvature probe."""

    dtype: str = field(default="auto", metadata={"unit": "choice"})
    """Precision of the model copy, the data and the vectors: ``float32``, ``float64`` or ``auto`` (float32;
    ``curvature.topk`` recomputes a set in float64 when its float32 eigenpairs fail the certificate)."""
    batch_size: int | None = field(default=None, metadata={"unit": "samples"})
    """Samples per forward pass in HVPs; ``None``: the run's --batch-size."""
    reuse_graph: str = field(default="auto", metadata={"unit": "choice"})
    """Keep the whole set's gradient graph for all HVPs: ``auto`` (when the set has at most
    ``reuse_graph_max_samples`` samples and its graph fits the working memory budget of
    :mod:`robaudit.probes.memory`), ``always`` or ``never`` (stream batches; memory bounded by one batch)."""
    reuse_graph_max_samples: int = field(default=2048, metadata={"unit": "samples"})
    """Largest set whose gradient graph is kept with ``reuse_graph = auto``."""
    train_samples: int | None = field(default=None, metadata={"unit": "samples"})
    """How many train-split samples the ``train`` set holds (stratified, seeded); ``None``: all of them."""
    check_operator: bool = True
    """Check determinism (H·v twice) and symmetry (uᵀHv = vᵀHu) of the operator on each set (3 HVPs)."""

    def _validate_common(self) -> None:
        if self.dtype != "auto":
            parse_dtype(self.dtype)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.reuse_graph not in REUSE:
            raise ValueError(f"reuse_graph must be one of {REUSE}, got {self.reuse_graph!r}")
        if self.reuse_graph_max_samples < 0:
            raise ValueError("reuse_graph_max_samples must be non-negative")
        if self.train_samples is not None and self.train_samples < 1:
            raise ValueError(f"train_samples must be at least 1, got {self.train_samples}")


@dataclass
class EigenKnobs(CurvatureKnobs):
    """Knobs of the eigenvalue probes: how many eigenpairs, on which sample sets, by preset."""

    preset: str = field(default="standard", metadata={"unit": "choice"})
    """``standard`` (k = 5 on the audit set) or ``paper`` (Yao: k = 20 on train, train:320, train:1 and audit)."""
    k: int | None = field(default=None, metadata={"unit": "eigenpairs"})
    """Eigenpairs per set; ``None``: the preset's."""
    sets: list[str] | None = field(default=None, metadata={"unit": "sample-set names"})
    """Sample sets (``audit``, ``train``, ``NAME:B_H``); ``None``: the preset's."""

    def _apply_preset(self) -> None:
        """Fill ``k`` and ``sets`` left at ``None`` from ``preset``."""
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.k is None:
            self.k = int(PRESETS[self.preset]["k"])
        if self.sets is None:
            self.sets = list(PRESETS[self.preset]["sets"])


class CurvatureProbe(Probe):
    """Shared machinery: sample sets, operators, operator checks, the unchanged-model guard."""

    needs_grad = True
    needs_double_backward = True
    needs_input_grad = False  # parameter Hessians: a model masked at its input still has them

    def _sets(self, ctx: ProbeContext, specs: list[str]) -> list[SampleSet]:
        return resolve_sets(ctx, specs, self.config.train_samples)

    def _operator(self, ctx: ProbeContext, samples: SampleSet, dtype: str | None = None, *,
                  operator_class: type[HessianOperator] = HessianOperator, **extra: Any) -> HessianOperator:
        """The operator on ``samples`` with this probe's knobs (dtype, batch size, graph reuse).

        Plugins pass their own ``operator_class`` (a :class:`HessianOperator` subclass) and its
        extra keyword arguments in ``extra``.
        """
        cfg = self.config
        reuse = {"auto": None, "always": True, "never": False}[cfg.reuse_graph]
        name = dtype or (cfg.dtype if cfg.dtype != "auto" else "float32")
        return operator_class(ctx.model, samples, **extra, dtype=parse_dtype(name),
                              batch_size=cfg.batch_size or ctx.batch_size, device=ctx.device, reuse_graph=reuse,
                              reuse_graph_max_samples=cfg.reuse_graph_max_samples, progress=ctx.progress)

    @staticmethod
    def set_size(spec: str, n_samples: int, train_samples: int | None) -> int | Unknown:
        """The size of sample set ``spec`` (at most; the train split may be smaller than asked), or
        :class:`Unknown` for the whole train split with no ``train_samples`` cap."""
        base, b_h = parse_set(spec)
        full: int | None = n_samples if base == "audit" else train_samples
        if full is None:
            return b_h if b_h is not None else Unknown(
                f"set '{spec}' is the whole train split, whose size is read at run time (set train_samples)")
        return min(full, b_h) if b_h is not None else full

    @staticmethod
    def operator_cost(n_set: int, matvecs: int, check_operator: bool) -> Cost:
        """One operator on a set of ``n_set`` samples: the gradient (one forward+backward per sample,
        the graph that reused HVPs differentiate again), ``matvecs`` products of ``n_set`` per-sample
        HVPs each, and the 3 of the operator checks. Streamed products recompute the graph; with a
        reused graph an HVP is a second backward only, so this bounds both."""
        return Cost(backward=n_set, hvp=n_set * (matvecs + (3 if check_operator else 0)))

    @classmethod
    def sets_cost(cls, config: Any, n_samples: int, matvecs: int) -> Cost | Unknown:
        """:meth:`operator_cost` summed over ``config.sets``, ``matvecs`` products on each."""
        total = Cost()
        for spec in config.sets:
            n_set = cls.set_size(spec, n_samples, config.train_samples)
            if isinstance(n_set, Unknown):
                return n_set
            total = total + cls.operator_cost(n_set, matvecs, config.check_operator)
        return total

    def _checks(self, ctx: ProbeContext, op: HessianOperator, spec: str, flags: list[Flag]) -> dict[str, Any] | None:
        if not self.config.check_operator:
            return None
        checks: OperatorChecks = op.check(ctx.seed)
        if not checks.symmetric:
            flags.append(Flag("hvp_asymmetric", Severity.ERROR,
                              f"on set '{spec}', |uᵀHv − vᵀHu| is {checks.symmetry:.2g} of ‖Hu‖ + ‖Hv‖: the "
                              "Hessian-vector product is not symmetric, so the curvature numbers are unreliable",
                              self.name))
        if not checks.deterministic:
            flags.append(Flag("hvp_nondeterministic", Severity.WARNING,
                              f"on set '{spec}', two Hessian-vector products with the same vector differ by "
                              f"{checks.determinism:.2g} (relative); curvature results will not reproduce exactly",
                              self.name))
        return dataclasses.asdict(checks)

    @staticmethod
    def _operator_note(spec: str, op: HessianOperator, what: str) -> str:
        per = op.hvp_seconds / op.hvps if op.hvps else float("nan")
        return (f"{spec}: {what}; {op.hvps} HVPs in {op.hvp_seconds:.2f} s ({1000 * per:.1f} ms per HVP, "
                f"{'graph reused' if op.reuse_graph else 'streamed'}, {op.n_total} samples, {op.size} parameters)")


def negative_flag(name: str, spec: str, pairs: EigenPairs) -> Flag | None:
    neg = [v for v in pairs.values if v < 0]
    if not neg:
        return None
    return Flag("negative_curvature", Severity.INFO,
                f"the Hessian on set '{spec}' has {len(neg)} negative eigenvalue(s) among its {pairs.k} largest in "
                f"magnitude (most negative {min(neg):.4g} vs λ1 = {pairs.values[0]:.4g}): the loss on that set is not "
                "locally convex but curves down along some directions (Yao et al. found this for single samples, "
                "B_H = 1, with a non-zero gradient: Figs 6 and 12)",
                name)


def certificate_flag(name: str, spec: str, pairs: EigenPairs, certify_tol: float) -> Flag | None:
    worst = float(np.max(pairs.residuals)) if pairs.k else math.inf
    if pairs.converged and worst <= certify_tol:
        return None
    return Flag("eigenpairs_not_certified", Severity.WARNING,
                f"on set '{spec}', the largest relative residual ‖Hv − λv‖/|λ| is {worst:.2g} "
                f"(tolerance {certify_tol:g})"
                f"{'' if pairs.converged else ' and the solver stopped before converging'}; the eigenvalues may be "
                "inaccurate", name)
