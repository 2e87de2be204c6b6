"""``adv_landscape``: the loss landscape of the adversarial loss (Liu et al. 2020, "On the loss
landscape of adversarial training").

Two measurements on the audited model:

1. **Spectrum vs ε.** The top-k eigenvalues of ∇²_θ L_ε(θ), L_ε(θ) = (1/N) Σ CE(f_θ(x + δ*(θ)), y), for
   each ε of a list that includes 0 (ε = 0 is the clean loss, the same operator as
   ``curvature.topk``). δ* is found by PGD at θ and held fixed in the second derivative
   (Danskin's approximation; see :mod:`robaudit_adversarial_landscape.operator`). Liu et al.'s
   smoothness analysis predicts that the spectrum grows with ε; ``monotone_in_eps`` records whether
   λ1 rises strictly from each ε to the next, and the ``adv_curvature_not_monotone`` info flag says
   when it does not.
2. **Perturbation consistency.** For each step a, PGD at θ + a·s·v and at θ − a·s·v (same seed),
   the mean cosine similarity of the two perturbations, and clean and adversarial errors on each
   side; v is the top eigenvector of ∇²_θ L_ε (unit norm) and a seeded random unit direction.
   Liu et al. found cosines near 0.05 at a = 1 along the eigenvector but near 0.95 along a random
   direction (ResNet18, CIFAR-10).

Units: eigenvalues in nats per unit² of Euclidean parameter displacement; ε in [0, 1] pixel units
(L∞ or L2 over all C·H·W pixels); a in the unit named by ``a_unit`` (``absolute``: ‖step‖₂ = a,
Liu et al.'s; ``relative``: ‖step‖₂ = a·‖θ‖₂). Cosines are unitless.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.plugin import (
    KAMATH,
    WHICH,
    Column,
    Cost,
    CurvatureKnobs,
    CurvatureProbe,
    EigenPairs,
    Flag,
    ProbeContext,
    ProbeError,
    ProbeResult,
    SampleSet,
    Severity,
    ThreatModel,
    Unknown,
    certificate_flag,
    check_norm,
    check_sets,
    derive_seed,
    eps_key,
    lanczos_hvp_estimate,
    negative_flag,
    topk,
)

from robaudit_adversarial_landscape.consistency import UNITS, perturbation_consistency, unit_random_direction
from robaudit_adversarial_landscape.operator import PGD, AdversarialHessianOperator

DIRECTIONS = ("eigenvector", "random")

DANSKIN = ("Danskin's approximation: δ*(θ) is found by PGD at θ and then held fixed, so each eigenvalue is one "
           "of ∇²_θ L(θ, x + δ*) at constant δ*; the dependence of δ* on θ is ignored in the second derivative. "
           "The gradient is exact under Danskin's theorem (unique maximiser); the omitted second-order term "
           "H_θδ·dδ*/dθ vanishes on coordinates pinned at the ε-ball or the pixel box and is positive "
           "semi-definite for coordinates at an interior strict maximum, so under those assumptions the reported "
           "eigenvalues are lower bounds of the total second derivative's.")
ONCE_PER_THETA = ("δ* is computed once per ε at θ rather than inside every Hessian-vector product: all products "
                  "of one Lanczos run are taken at the same θ and seeded PGD is a deterministic function of "
                  "(θ, x, y, seed), so recomputing it per product would return the same δ* and the same H·v; "
                  "check_determinism reruns PGD once per ε to confirm it (recompute_max_abs_diff).")
COMMON_RANDOM = ("Perturbation consistency uses the same PGD seed at θ + a·v and θ − a·v, so a = 0 gives a cosine "
                 "of exactly 1 and every drop is caused by the parameter step (Liu et al.'s a = 0 cosines of "
                 "0.86–0.98 reflect independent random starts).")


def check_eps(eps: list[float] | None, norm: str) -> None:
    """Validate a configured ε list (0 allowed): ValueError when wrong."""
    if eps is None:
        return
    if len(eps) == 0:
        raise ValueError("eps must list at least one budget (or be omitted for the run's threat model)")
    for e in eps:
        if not math.isfinite(e) or e < 0:
            raise ValueError(f"every eps must be a non-negative number of pixel units, got {e}")
        if norm == "linf" and e > 1:
            raise ValueError(f"an L∞ eps is in [0, 1] pixel units; {e} is larger than the whole pixel range")


def _contains(values: list[float], e: float) -> bool:
    return any(math.isclose(e, v, rel_tol=1e-9, abs_tol=1e-12) for v in values)


class AdversarialLandscape(CurvatureProbe):
    """Hessian spectrum of the adversarial loss vs ε, and consistency of adversarial examples under
    parameter perturbations along the top eigenvector and a random direction (Liu et al. 2020).

    Summary: ``lambda_1 › <ε>`` (λ1 of ∇²_θ L_ε), ``lambda_1_clean`` (ε = 0),
    ``lambda_1_growth › <ε>`` (λ1(ε)/λ1(0), when ε = 0 is in the list and λ1(0) > 0), ``monotone_in_eps``,
    ``adv_loss › <ε>`` and ``adv_error › <ε>`` at θ, ``spectra › <ε>`` (eigenvalues, certificates,
    HVPs, determinism), ``consistency › <ε> › eigenvector | random › <a>`` (cosine, errors per side),
    and the headline cosines ``cosine_eigenvector › <ε>`` / ``cosine_random › <ε>`` at a = ``per_sample_a``.
    Per sample (audit samples): the cosines at the largest consistency ε and a = ``per_sample_a``.
    """

    name = "adv_landscape"
    version = "2"
    description = ("Hessian top eigenvalues of the adversarial loss vs ε (Danskin, δ* fixed) and consistency of "
                   "PGD perturbations at θ ± a·v, v = top eigenvector or random (Liu et al. 2020)")
    standard = False
    needs_input_grad = True  # PGD inside: unlike the other curvature probes it needs input gradients
    higher_is_better: ClassVar = {
        ("lambda_1",): False, ("lambda_1_clean",): False, ("lambda_1_growth",): False,
        ("adv_loss",): False, ("adv_error",): False,
        ("cosine_eigenvector",): True, ("cosine_random",): True,
    }
    summary_keys: ClassVar = (
        ("lambda_1", "*"), ("lambda_1_clean",), ("lambda_1_growth", "*"), ("monotone_in_eps",), ("adv_loss", "*"),
        ("adv_error", "*"), ("cosine_eigenvector", "*"), ("cosine_random", "*"), ("eps", "*"), ("eps_source",),
        ("norm",), ("k",), ("which",), ("hessian_set",), ("a", "*"), ("a_unit",), ("per_sample_a",),
        ("consistency_eps", "*"), ("theta_norm",), ("operator", "**"), ("spectra", "**"), ("consistency", "**"),
    )
    columns: ClassVar = {
        "cosine_eigenvector": Column("cos(δ(θ + a·v1), δ(θ − a·v1)), v1 the top eigenvector of ∇²_θ L_ε",
                                     role="indicator", unit="", scale_invariant=False),
        "cosine_random": Column("cos(δ(θ + a·u), δ(θ − a·u)), u a random unit direction", role="indicator",
                                unit="", scale_invariant=False),
    }
    report_template = "robaudit_adversarial_landscape:templates/adv_landscape.html.j2"
    report_title = "Adversarial loss landscape (Liu et al. 2020)"

    @dataclass
    class Config(CurvatureKnobs):
        """Knobs of ``adv_landscape`` (plus the shared curvature knobs: dtype, batch_size, reuse_graph …)."""

        eps: list[float] | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Budgets ε in [0, 1] pixel units, 0 allowed (the clean loss); ``None``: 0 and the run's
        threat-model budgets up to its reference (digits L∞: 0, 0.05, 0.1; CIFAR: 0, 2/255, 0.01, 4/255, 0.02,
        8/255); a list replaces it for this probe."""
        norm: str = field(default="linf", metadata={"unit": "choice"})
        """Threat model of PGD: ``linf`` or ``l2``."""
        steps: int = field(default=10, metadata={"unit": "steps"})
        """PGD steps."""
        step_fraction: float | None = field(default=None, metadata={"unit": "fraction of ε"})
        """PGD step size as a fraction of ε; ``None``: 2.5/steps (Madry et al., robaudit's PGD default)."""
        random_start: bool = True
        """Start PGD from a seeded uniformly random point of the ε-ball."""
        k: int = field(default=5, metadata={"unit": "eigenpairs"})
        """Eigenpairs per ε."""
        which: str = field(default="LM", metadata={"unit": "choice"})
        """``LM``: largest magnitude, signed (as curvature.topk); ``LA``: largest algebraic."""
        tol: float = field(default=1e-6, metadata={"unit": "relative residual"})
        """ARPACK's relative tolerance on Ritz residuals."""
        certify_tol: float = field(default=1e-3, metadata={"unit": "relative residual"})
        """Raise ``eigenpairs_not_certified`` above this relative residual (with dtype auto: redo in float64)."""
        ncv: int | None = field(default=None, metadata={"unit": "Lanczos vectors"})
        """Lanczos basis size (``None``: scipy's)."""
        maxiter: int | None = field(default=None, metadata={"unit": "iterations"})
        """ARPACK restart limit (``None``: scipy's)."""
        hessian_set: str = field(default="audit", metadata={"unit": "sample-set name"})
        """Sample set of the Hessian: ``audit``, ``train`` or ``NAME:B_H`` (curvature.topk's sets). The
        consistency part always uses the audit samples."""
        check_determinism: bool = True
        """Rerun PGD at θ once per ε and compare with the stored δ* (the once-per-θ shortcut relies on it)."""
        consistency: bool = True
        """Run the perturbation-consistency part."""
        consistency_eps: list[float] | None = field(default=None, metadata={"unit": "pixel units ([0, 1])"})
        """Budgets of the consistency part (each must be in ``eps``); ``None``: every non-zero ε."""
        a: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 1.0], metadata={"unit": "a_unit (parameter-norm units, or a fraction of ‖θ‖₂)"})
        """Steps a ≥ 0 along each direction, in ``a_unit`` (Liu et al.'s CIFAR table: 0, 0.1, 0.3, 0.5, 1)."""
        a_unit: str = field(default="absolute", metadata={"unit": "choice"})
        """``absolute``: θ ± a·v with ‖v‖₂ = 1, the step's Euclidean length is a (Liu et al.);
        ``relative``: θ ± a·‖θ‖₂·v, a is a fraction of the parameter norm."""
        directions: list[str] = field(default_factory=lambda: list(DIRECTIONS), metadata={"unit": "direction names"})
        """Directions: ``eigenvector`` (top eigenvector of ∇²_θ L_ε at that ε) and/or ``random`` (seeded, unit norm)."""
        per_sample_a: float | None = field(default=None, metadata={"unit": "a_unit"})
        """The a of the per-sample cosine columns and the headline cosines; ``None``: the largest a."""

        def __post_init__(self) -> None:
            self._validate_common()
            self.norm = check_norm(self.norm)
            check_eps(self.eps, self.norm)
            check_eps(self.consistency_eps, self.norm)
            if self.eps is not None and self.consistency_eps is not None:
                missing = [e for e in self.consistency_eps if not _contains(self.eps, e)]
                if missing:
                    raise ValueError(f"consistency_eps {missing} are not in eps {self.eps}: the eigenvector "
                                     "direction comes from the Hessian at the same ε")
            if self.consistency_eps is not None and any(e == 0 for e in self.consistency_eps):
                raise ValueError("consistency_eps must be positive (at ε = 0 there is no perturbation)")
            if self.steps < 1:
                raise ValueError(f"steps must be at least 1, got {self.steps}")
            if self.step_fraction is not None and not 0 < self.step_fraction <= 2:
                raise ValueError(f"step_fraction is a fraction of eps in (0, 2], got {self.step_fraction}")
            if self.k < 1:
                raise ValueError(f"k must be at least 1, got {self.k}")
            if self.which not in WHICH:
                raise ValueError(f"which must be one of {WHICH}, got {self.which!r}")
            if self.tol < 0 or self.certify_tol <= 0:
                raise ValueError("tol must be ≥ 0 and certify_tol > 0")
            check_sets([self.hessian_set])
            if not self.a or any(not math.isfinite(a) or a < 0 for a in self.a):
                raise ValueError(f"a must list non-negative finite steps, got {self.a}")
            self.a = sorted({float(a) for a in self.a})
            if self.a_unit not in UNITS:
                raise ValueError(f"a_unit must be one of {UNITS}, got {self.a_unit!r}")
            bad = [d for d in self.directions if d not in DIRECTIONS]
            if bad or not self.directions:
                raise ValueError(f"directions must be a non-empty subset of {DIRECTIONS}, got {self.directions}")
            if self.per_sample_a is not None and not _contains(self.a, self.per_sample_a):
                raise ValueError(f"per_sample_a = {self.per_sample_a} is not one of the steps a = {self.a}")

    # -- budgets ------------------------------------------------------------------------------

    @staticmethod
    def eps_list(config: Any, threat_model: ThreatModel) -> list[float]:
        """The ε list (ascending, distinct): ``config.eps``, else 0 and the threat model's budgets up to
        its reference."""
        if config.eps is not None:
            return sorted({float(e) for e in config.eps})
        # the clean loss (ε = 0) and the run's threat-model budgets up to its reference: beyond it a natural
        # model is broken outright, PGD's δ* saturates the loss and the spectrum stops telling ε apart
        reference = threat_model.reference(config.norm)
        return [0.0, *(e for e in threat_model.eps(config.norm) if e <= reference)]

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost | Unknown:
        """Per ε, on the Hessian set (n_H samples): PGD at θ (``steps`` forward+backward passes per
        sample; ε = 0 none) and its determinism rerun (``check_determinism``); the operator
        (robaudit's :meth:`operator_cost`: the gradient, the 3 check HVPs and
        :func:`lanczos_hvp_estimate` (k, ``ncv``) solver HVPs, the typical count without restarts or the
        ``dtype = auto`` float64 redo); one forward per sample for the adversarial error. Per consistency ε,
        on the audit samples: for each direction, each a and both signs, PGD at the shifted θ and
        two error forwards. The a = 0 row is shared between directions, so that part is an upper bound."""
        n_h = cls.set_size(config.hessian_set, n_samples, config.train_samples)
        if isinstance(n_h, Unknown):
            return n_h
        eps_list = cls.eps_list(config, threat_model)
        consistency_eps = ([] if not config.consistency else
                           [e for e in eps_list if e > 0] if config.consistency_eps is None
                           else [float(e) for e in config.consistency_eps if e > 0])
        operator = cls.operator_cost(n_h, lanczos_hvp_estimate(config.k, config.ncv, 5), config.check_operator)
        pgd = Cost(backward=config.steps)
        total = Cost()
        for eps in eps_list:
            runs = (1 + int(config.check_determinism)) if eps > 0 else 0
            total = total + operator + n_h * (runs * pgd + Cost(forward=1))
            if any(math.isclose(eps, c) for c in consistency_eps):
                sides = len(config.directions) * len(config.a) * 2
                total = total + (n_samples * sides) * (pgd + Cost(forward=2))
        return total


    def budgets(self, ctx: ProbeContext) -> tuple[list[float], str]:
        """The ε list (ascending, distinct) and where it came from."""
        cfg = self.config
        source = "config" if cfg.eps is not None else f"threat model ({ctx.threat_model.source(cfg.norm)})"
        return self.eps_list(cfg, ctx.threat_model), source

    def _step_fraction(self) -> float:
        cfg = self.config
        return cfg.step_fraction if cfg.step_fraction is not None else 2.5 / cfg.steps

    def _attack(self, ctx: ProbeContext, eps: float, batch_size: int) -> PGD | None:
        if eps == 0:
            return None
        cfg = self.config
        return PGD(cfg.norm, float(eps), cfg.steps, self._step_fraction(), cfg.random_start,
                   derive_seed(ctx.seed, "pgd", eps_key(eps)), batch_size)

    def _adv_operator(self, ctx: ProbeContext, samples: SampleSet, attack: PGD | None, dtype: str,
                      adversarial_x: torch.Tensor | None = None) -> AdversarialHessianOperator:
        op = self._operator(ctx, samples, dtype, operator_class=AdversarialHessianOperator, attack=attack,
                            adversarial_x=adversarial_x)
        assert isinstance(op, AdversarialHessianOperator)
        return op

    def _solve(self, op: AdversarialHessianOperator, ctx: ProbeContext) -> EigenPairs:
        cfg = self.config
        return topk(op, min(int(cfg.k), op.size - 1), which=cfg.which, tol=cfg.tol, seed=ctx.seed, ncv=cfg.ncv,
                    maxiter=cfg.maxiter)

    # -- run ----------------------------------------------------------------------------------

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps_list, eps_source = self.budgets(ctx)
        if cfg.consistency_eps is not None:
            missing = [e for e in cfg.consistency_eps if not _contains(eps_list, e)]
            if missing:
                raise ProbeError(f"consistency_eps {missing} are not among the Hessian budgets {eps_list}",
                                 fix="add them to adv_landscape.eps or drop them from consistency_eps")
            consistency_eps = sorted({float(e) for e in cfg.consistency_eps})
        else:
            consistency_eps = [e for e in eps_list if e > 0]
        if not cfg.consistency:
            consistency_eps = []
        headline_a = cfg.per_sample_a if cfg.per_sample_a is not None else max(cfg.a)
        batch_size = cfg.batch_size or ctx.batch_size

        flags: list[Flag] = []
        notes: list[str] = [DANSKIN, ONCE_PER_THETA]
        if consistency_eps:
            notes.append(COMMON_RANDOM)
        notes.append(KAMATH)
        (hessian_set,) = self._sets(ctx, [cfg.hessian_set])
        audit_x, audit_y = ctx.data.x, ctx.data.y
        spectra: dict[str, Any] = {}
        lambda_1: dict[str, float | None] = {}
        adv_loss: dict[str, float] = {}
        adv_error: dict[str, float] = {}
        consistency: dict[str, Any] = {}
        cos_headline: dict[str, dict[str, float]] = {d: {} for d in DIRECTIONS}
        per_sample: dict[str, np.ndarray] = {}
        operator_info: dict[str, Any] | None = None
        theta_norm: float | None = None
        random_seed = derive_seed(ctx.seed, "random_direction")

        for eps in eps_list:
            key = eps_key(eps)
            label = f"{hessian_set.name}, ε = {key}"
            attack = self._attack(ctx, eps, batch_size)
            dtype = cfg.dtype if cfg.dtype != "auto" else "float32"
            op = self._adv_operator(ctx, hessian_set, attack, dtype)
            recompute = op.recompute_difference() if cfg.check_determinism else None
            checks = self._checks(ctx, op, label, flags)
            pairs = self._solve(op, ctx)
            escalated = None
            if cfg.dtype == "auto" and not pairs.summary(cfg.certify_tol)["certified"]:
                # the same δ* (found at the same θ in float32), differentiated in float64
                escalated = {"from": "float32", "max_residual": pairs.summary(cfg.certify_tol)["max_residual"],
                             "hvps": op.hvps, "delta": "the float32 δ*, held fixed"}
                notes.append(self._operator_note(label, op, "float32 eigenpairs failed the certificate"))
                adversarial_x = op.adversarial_x
                op.release()
                op = self._adv_operator(ctx, hessian_set, attack, "float64", adversarial_x=adversarial_x)
                checks = self._checks(ctx, op, label, flags)
                pairs = self._solve(op, ctx)
            delta = op.delta.flatten(1).double()
            entry = pairs.summary(cfg.certify_tol)
            entry.update(
                eps=eps, dtype=str(op.dtype).replace("torch.", ""), escalated=escalated, n=len(hessian_set),
                loss=op.loss(), gradient_norm=float(op.gradient().norm()), adv_error=op.adversarial_error(),
                delta_linf_mean=float(delta.abs().amax(dim=1).mean()) if len(delta) else None,
                delta_l2_mean=float(delta.norm(dim=1).mean()) if len(delta) else None,
                attack=attack.describe() if attack is not None else None,
                recompute_max_abs_diff=recompute, checks=checks,
            )
            spectra[key] = entry
            lambda_1[key] = float(pairs.values[0]) if pairs.k else None
            adv_loss[key] = entry["loss"]
            adv_error[key] = entry["adv_error"]
            if recompute is not None and recompute > 0:
                flags.append(self._flag("adv_example_nondeterministic", Severity.WARNING,
                                        f"at ε = {key}, rerunning seeded PGD at the same θ moved x + δ* by up to "
                                        f"{recompute:.3g} pixel units; the once-per-θ δ* is then not exactly what a "
                                        "per-HVP recomputation would use, and consistency cosines at a = 0 fall "
                                        "below 1"))
            for flag in (negative_flag(self.name, label, pairs),
                         certificate_flag(self.name, label, pairs, cfg.certify_tol)):
                if flag is not None:
                    flags.append(flag)
            notes.append(self._operator_note(label, op, f"top-{pairs.k} in {pairs.hvps_solver} solver + "
                                                        f"{pairs.hvps_certificate} certificate HVPs, "
                                                        f"{pairs.seconds:.2f} s; PGD runs: {op.attack_runs}"))
            if operator_info is None:
                operator_info = op.describe()
                theta_norm = float(op.parameters_vector().double().norm())

            if _contains(consistency_eps, eps) and attack is not None:
                consistency[key] = self._consistency(ctx, op, attack, pairs, eps, audit_x, audit_y, headline_a,
                                                     random_seed, cos_headline, per_sample, flags,
                                                     last=eps == max(consistency_eps))
            op.release()

        monotone, growth = self._trend(eps_list, lambda_1)
        if monotone is False:
            shown = ", ".join(f"ε = {k}: {v:.4g}" for k, v in lambda_1.items() if v is not None)
            flags.append(self._flag("adv_curvature_not_monotone", Severity.INFO,
                                    f"λ1 of the adversarial-loss Hessian does not rise strictly with ε ({shown}); "
                                    "Liu et al.'s smoothness analysis predicts growth with ε. PGD's δ* is approximate "
                                    "and the Hessian ignores dδ*/dθ (Danskin), so this is an observation about this "
                                    "model, not a contradiction of the theory"))
        summary: dict[str, Any] = {
            "eps": eps_list, "norm": cfg.norm, "eps_source": eps_source,
            "lambda_1": lambda_1,
            "lambda_1_clean": lambda_1.get(eps_key(0.0)) if 0.0 in eps_list else None,
            "lambda_1_growth": growth,
            "monotone_in_eps": monotone,
            "adv_loss": adv_loss, "adv_error": adv_error,
            "k": cfg.k, "which": cfg.which, "hessian_set": cfg.hessian_set,
            "theta_norm": theta_norm,
            "a_unit": cfg.a_unit, "a": list(cfg.a), "per_sample_a": headline_a,
            "consistency_eps": consistency_eps,
            "cosine_eigenvector": cos_headline["eigenvector"] if "eigenvector" in cfg.directions else {},
            "cosine_random": cos_headline["random"] if "random" in cfg.directions else {},
            "consistency": consistency,
            "operator": operator_info,
            "spectra": spectra,
        }
        artifacts = {"hessian_set": hessian_set.describe(), "random_direction_seed": random_seed,
                     "per_sample_eps": max(consistency_eps) if consistency_eps else None}
        return ProbeResult(summary=summary, per_sample=per_sample, flags=flags, artifacts=artifacts, notes=notes)

    def _consistency(self, ctx: ProbeContext, op: AdversarialHessianOperator, attack: PGD, pairs: EigenPairs,
                     eps: float, x: torch.Tensor, y: torch.Tensor, headline_a: float, random_seed: int,
                     cos_headline: dict[str, dict[str, float]], per_sample: dict[str, np.ndarray],
                     flags: list[Flag], last: bool) -> dict[str, Any]:
        cfg = self.config
        key = eps_key(eps)
        out: dict[str, Any] = {}
        # the consistency part attacks the audit samples (the Hessian set may be another one)
        audit_attack = dataclasses.replace(attack, seed=derive_seed(ctx.seed, "consistency", key))
        zero_row = None
        for name in cfg.directions:
            if name == "eigenvector":
                if not pairs.k:
                    continue
                direction = pairs.vectors[0]
            else:
                direction = unit_random_direction(op.size, random_seed)
            rows = perturbation_consistency(op, audit_attack, direction, list(cfg.a), cfg.a_unit, x, y,
                                            progress=ctx.progress, label=f"{name}, ε = {key}", zero_row=zero_row)
            zero = next((r for r in rows if r.a == 0), None)
            exact = zero is None or bool(np.all(zero.cosine[np.isfinite(zero.cosine)] == 1.0))
            if zero is not zero_row and not exact:
                flags.append(self._flag(
                    "adv_example_nondeterministic", Severity.WARNING,
                    f"at ε = {key}, two seeded PGD runs at the same θ gave perturbations with cosine down to "
                    f"{float(np.nanmin(zero.cosine)):.6g} (it should be exactly 1)"))
            zero_row = zero
            out[name] = {eps_key(r.a): r.summary() for r in rows}
            head = next(r for r in rows if _contains([r.a], headline_a))
            cos_headline[name][key] = out[name][eps_key(head.a)]["cosine"]
            if last:
                per_sample[f"cosine_{name}"] = head.cosine
        if "eigenvector" in out and "random" in out:
            a_key = eps_key(headline_a)
            out["eigenvector_less_consistent"] = bool(out["eigenvector"][a_key]["cosine"]
                                                      < out["random"][a_key]["cosine"])
        return out

    def _flag(self, flag_id: str, severity: Severity, message: str) -> Flag:
        """A flag of this probe, documented in the plugin's README."""
        return Flag(flag_id, severity, message, self.name,
                    docs=f"plugins/robaudit-adversarial-landscape/README.md#{flag_id.replace('_', '-')}")

    @staticmethod
    def _trend(eps_list: list[float], lambda_1: dict[str, float | None]
               ) -> tuple[bool | None, dict[str, float] | None]:
        """(whether λ1 rises strictly from each ε to the next, λ1(ε)/λ1(0) per ε > 0 when λ1(0) > 0)."""
        values = [lambda_1.get(eps_key(e)) for e in eps_list]
        if len(values) < 2 or any(v is None for v in values):
            return None, None
        monotone = all(b > a for a, b in zip(values, values[1:]))
        growth = None
        if eps_list[0] == 0 and values[0] is not None and values[0] > 0:
            growth = {eps_key(e): float(v) / float(values[0]) for e, v in zip(eps_list[1:], values[1:])}
        return monotone, growth

    @classmethod
    def report_context(cls, entry: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        from robaudit_adversarial_landscape.report import build_context

        return build_context(entry)


__all__ = ["DIRECTIONS", "AdversarialLandscape"]
