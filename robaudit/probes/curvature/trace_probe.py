"""``curvature.trace``: tr(H) by Hutch++ or Hutchinson with a standard error, per sample set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from robaudit.probes.base import Estimate, Flag, ProbeContext, ProbeResult
from robaudit.probes.curvature import eigenthings
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel
from robaudit.probes.curvature.probe_base import (
    CurvatureKnobs,
    CurvatureProbe,
    check_sets,
    put,
)


class CurvatureTrace(CurvatureProbe):
    """tr(H) by Hutch++ (or Hutchinson) with a standard error, per sample set.

    Summary per set: ``trace`` as an estimate with a normal 95 % interval (±1.96 standard errors),
    the standard error, ``trace_per_parameter`` (tr(H)/P, the mean eigenvalue) and HVPs spent.
    """

    name = "curvature.trace"
    version = "1"
    description = "trace of the parameter Hessian by Hutch++ / Hutchinson with a standard error"
    standard = False
    higher_is_better: ClassVar = {("trace",): False}
    summary_keys: ClassVar = (("trace",), ("trace_set",), ("sets", "**"))
    indicator_keys: ClassVar = (("sets", "*", "*", "trace"),)  # the trace of every Hessian set

    @dataclass
    class Config(CurvatureKnobs):
        """Knobs of ``curvature.trace``."""

        method: str = field(default="hutch++", metadata={"unit": "choice"})
        """``hutch++`` (Meyer et al. 2021; lower variance) or ``hutchinson``."""
        num_matvecs: int = field(default=60, metadata={"unit": "HVPs"})
        """HVPs per set."""
        distribution: str = field(default="rademacher", metadata={"unit": "choice"})
        """Probe vectors for Hutchinson: ``rademacher`` or ``gaussian`` (Hutch++ always uses Rademacher)."""
        sets: list[str] = field(default_factory=lambda: ["audit"], metadata={"unit": "sample-set names"})
        """Sample sets (``audit``, ``train``, ``NAME:B_H``)."""

        def __post_init__(self) -> None:
            self._validate_common()
            if self.method not in eigenthings.TRACE_METHODS:
                raise ValueError(f"method must be one of {eigenthings.TRACE_METHODS}, got {self.method!r}")
            if self.distribution not in ("rademacher", "gaussian"):
                raise ValueError(f"distribution must be rademacher or gaussian, got {self.distribution!r}")
            if self.num_matvecs < (6 if self.method == "hutch++" else 2):
                raise ValueError(f"num_matvecs is too small for {self.method}: {self.num_matvecs}")
            check_sets(self.sets)

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """Per set (:meth:`sets_cost`): ``num_matvecs`` HVPs (Hutchinson or Hutch++). Exact."""
        return cls.sets_cost(config, n_samples, config.num_matvecs)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        flags: list[Flag] = []
        notes: list[str] = []
        out: dict[str, Any] = {}
        headline = None
        for samples in self._sets(ctx, list(cfg.sets)):
            op = self._operator(ctx, samples)
            checks = self._checks(ctx, op, samples.name, flags)
            est = eigenthings.trace(op, method=cfg.method, num_matvecs=cfg.num_matvecs,
                                    distribution=cfg.distribution, seed=ctx.seed)
            interval = Estimate(est.value, est.value - 1.96 * est.stderr, est.value + 1.96 * est.stderr, 0.95,
                                f"{est.method} ± 1.96 standard errors", len(est.samples))
            put(out, samples.name, {
                "trace": interval, "stderr": est.stderr, "trace_per_parameter": est.value / op.size,
                "method": est.method, "distribution": est.distribution, "hvps": est.hvps, "n": len(samples),
                "b_h": samples.b_h, "checks": checks,
            })
            notes.append(self._operator_note(samples.name, op, f"{est.method} trace from {est.hvps} HVPs"))
            if headline is None:
                headline = interval
            op.release()
        return ProbeResult(summary={"trace": headline, "trace_set": cfg.sets[0], "sets": out}, flags=flags,
                           notes=notes)
