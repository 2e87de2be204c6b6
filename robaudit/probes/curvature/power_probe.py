"""``curvature.power``: Yao et al.'s deflated power iteration — the paper-reproduction mode."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from robaudit.probes.base import Flag, ProbeContext, ProbeResult, Requirement, Severity
from robaudit.probes.curvature.eigen import EigenPairs
from robaudit.probes.curvature.power import deflated_power
from robaudit.probes.cost import Cost, Unknown
from robaudit.threat_model import ThreatModel
from robaudit.probes.curvature.probe_base import (
    KAMATH,
    CurvatureProbe,
    EigenKnobs,
    check_sets,
    negative_flag,
    put,
    set_keys,
)


class CurvaturePower(CurvatureProbe):
    """Yao-compatible deflated power iteration (paper reproduction), with the same residual certificates.

    Summary per set: signed eigenvalues (ordered by |λ|), relative residuals, iterations per pair,
    whether each met the relative-change tolerance, HVP counts; and, when ``curvature.topk`` ran on
    the same set, the relative difference to its Lanczos eigenvalues.
    """

    name = "curvature.power"
    version = "2"
    description = "Yao et al.'s deflated power iteration (relative tolerance 1e-4): paper-reproduction mode"
    standard = False
    requires = (Requirement("curvature.topk", optional=True),)  # compared against its Lanczos pairs
    higher_is_better: ClassVar = {("lambda_1",): False}
    summary_keys: ClassVar = (("lambda_1",), ("lambda_1_set",), ("k",), ("mode",), ("tol",), ("preset",), ("sets", "**"))
    indicator_keys: ClassVar = (("sets", "*", "*", "eigenvalues", "0"),)  # λ1 of every Hessian set

    @dataclass
    class Config(EigenKnobs):
        """Knobs of ``curvature.power``."""

        tol: float = field(default=1e-4, metadata={"unit": "relative change of λ"})
        """Relative change of the eigenvalue estimate that stops each pair (Yao: 1e-4)."""
        max_iter: int = field(default=100, metadata={"unit": "iterations"})
        """Iterations per pair before giving up (PyHessian: 100)."""
        certify_tol: float = field(default=1e-3, metadata={"unit": "relative residual"})
        """Raise ``eigenpairs_not_certified`` when a relative residual exceeds this."""

        def __post_init__(self) -> None:
            self._validate_common()
            self._apply_preset()
            if self.k < 1 or self.max_iter < 2 or self.tol <= 0 or self.certify_tol <= 0:
                raise ValueError("k ≥ 1, max_iter ≥ 2, tol > 0 and certify_tol > 0 are required")
            check_sets(self.sets)

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """Per set (:meth:`sets_cost`): at most ``max_iter`` power iterations for each of the k pairs
        and one certificate HVP per pair. An upper bound: iterations stop at ``tol``."""
        return cls.sets_cost(config, n_samples, config.k * (config.max_iter + 1))

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        flags: list[Flag] = []
        notes = ["Paper-reproduction mode: Yao et al.'s power iteration stops when the eigenvalue estimate changes by "
                 f"less than {cfg.tol:g} (relative), which can stop early on near-degenerate pairs; the residuals show "
                 "how accurate each pair is. curvature.topk (restarted Lanczos) is the accurate solver.", KAMATH]
        spectra: dict[str, Any] = {}
        lambda_1 = None
        lanczos = ctx.previous.get("curvature.topk")
        for samples in self._sets(ctx, list(cfg.sets)):
            op = self._operator(ctx, samples)
            checks = self._checks(ctx, op, samples.name, flags)
            pairs = deflated_power(op, min(int(cfg.k), op.size - 1), tol=cfg.tol, max_iter=cfg.max_iter, seed=ctx.seed)
            entry = pairs.summary(cfg.certify_tol)
            entry.update(n=len(samples), b_h=samples.b_h, checks=checks,
                         lanczos_relative_difference=_compare(lanczos, samples.name, pairs))
            put(spectra, samples.name, entry)
            if not all(pairs.extra["met_tolerance"]):
                missed = pairs.extra["met_tolerance"].count(False)
                flags.append(Flag("power_not_converged", Severity.WARNING,
                                  f"on set '{samples.name}', {missed} of {pairs.k} eigenpairs hit "
                                  f"max_iter = {cfg.max_iter} "
                                  f"before their relative change fell below {cfg.tol:g}", self.name))
            for flag in (negative_flag(self.name, samples.name, pairs),):
                if flag is not None:
                    flags.append(flag)
            what = f"{pairs.k} pairs in {pairs.hvps_solver} power-iteration + {pairs.hvps_certificate} certificate HVPs"
            notes.append(self._operator_note(samples.name, op, what))
            if lambda_1 is None:
                lambda_1 = float(pairs.values[0])
            op.release()
        return ProbeResult(summary={"lambda_1": lambda_1, "lambda_1_set": cfg.sets[0], "k": cfg.k,
                                    "tol": cfg.tol, "preset": cfg.preset, "mode": "paper reproduction",
                                    "sets": spectra},
                           flags=flags, notes=notes)


def _compare(lanczos: ProbeResult | None, spec: str, pairs: EigenPairs) -> list[float] | None:
    """Relative differences |λ_power − λ_lanczos| / |λ_lanczos| for the pairs both found (same set, LM order)."""
    if lanczos is None:
        return None
    base, sub = set_keys(spec)
    other = lanczos.summary.get("sets", {}).get(base, {}).get(sub)
    if not other or other.get("which") != "LM":
        return None
    ref = other["eigenvalues"]
    n = min(len(ref), pairs.k)
    return [abs(float(pairs.values[i]) - ref[i]) / abs(ref[i]) if ref[i] else None for i in range(n)]
