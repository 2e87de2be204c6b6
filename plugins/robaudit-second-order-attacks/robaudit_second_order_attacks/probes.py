"""The probes ``attack.fhsm`` and ``attack.l2hess``: Yao et al.'s second-order attacks (Table 5).

FHSM (L∞):   x' = clip(x + ε·sign(d))          d = (H_x + μI)⁻¹ g,  g = ∇x CE
L2HESS (L2): x' = clip(x + ε·d/‖d‖₂)

Both subclass robaudit's :class:`~robaudit.plugin.SweepAttack`, so the ε sweep, the
dataset-aware default budgets, the re-check of every candidate (projection into the ε-ball and
[0, 1], predictions recomputed), Wilson intervals, the noise baseline and the sanity flags are
robaudit's own, and the per-sample columns have the names ``attack.worst_case`` combines
(``success_eps_<key>``). On top, each probe records how the Newton systems were solved (method,
μ, CG tolerance and iterations, residuals) and compares itself with the gradient attack of the same
step schedule at the same budgets — FGSM / FGSM-k (BIM) for FHSM, L2GRAD / L2GRAD-k for L2HESS —
reusing that probe's results when it ran earlier in the audit (Yao et al. Tables 3 and 4) — and with a
*control*: the same schedule along the gradient computed with the Newton solve's own numerics, which
separates the effect of the direction from that of float32 autograd in robaudit's gradient attacks.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from robaudit.plugin import (
    Column,
    Cost,
    Flag,
    ProbeContext,
    ProbeError,
    ProbeResult,
    Requirement,
    Severity,
    SweepAttack,
    SweepConfig,
    ThreatModel,
    Unknown,
    batch_rows,
    check_eps_list,
    check_precision,
    class_count_unknown,
    clean_correct,
    derive_seed,
    eps_key,
    probe_budgets,
    project,
    score,
    second_order_error,
    success_key,
    wilson_interval,
    working_budget,
    working_model,
)
from robaudit.plugin import torchattacks_adapter as ta

from robaudit_second_order_attacks import newton
from robaudit_second_order_attacks.report import context as section_context

METHODS = ("auto", "exact", "cg")
CURVATURES = ("ggn", "hessian")
DAMPING_MODES = ("relative", "absolute")
CACHE_BYTES = 256 << 20
"""At most this many bytes of clean-point step directions are kept between budgets (CPU)."""
HESSIAN_CHECK_RTOL = {"float64": 1e-6, "float32": 1e-3}
DOCS = "plugins/robaudit-second-order-attacks/README.md#flags"
SIGNIFICANCE = 0.05
"""Two-sided level of the exact McNemar test behind ``comparison.significant``."""


@dataclass
class NewtonConfig(SweepConfig):
    """Knobs shared by FHSM and L2HESS (besides the sweep's ``eps``, ``sanity_checks``, ``ci_level``)."""

    monotone: bool = False
    """The sweep's ε-monotone skipping (robaudit's default) is off here: the clean-point Newton solve
    is cached per batch and shared by every ε, and the gradient control attacks every sample at
    every ε, so both sides compare the same samples."""
    method: str = field(default="auto", metadata={"unit": "choice"})
    """Newton solver: ``exact`` (c×c solve on the Gauss–Newton factorisation, float64), ``cg``
    (conjugate gradient with batched curvature-vector products) or ``auto`` (exact when
    ``curvature`` is ``ggn`` and c ≤ ``max_exact_classes``, else cg)."""
    curvature: str = field(default="ggn", metadata={"unit": "choice"})
    """The matrix: ``ggn`` = J_zᵀ(diag p − ppᵀ)J_z, which is H_x for piecewise-linear nets (checked at
    run time) and PSD for every net; ``hessian`` = the full H_x by double backward (cg only)."""
    damping: float = field(default=1e-3, metadata={"unit": "fraction of ρ (relative) or nats per pixel unit² (absolute)"})
    """μ of (H_x + μI): with ``damping_mode = relative`` a fraction of ρ = gᵀH_x g/gᵀg (the curvature
    along the gradient, per sample); with ``absolute`` in nats per squared pixel unit."""
    damping_mode: str = field(default="relative", metadata={"unit": "choice"})
    """``relative`` or ``absolute`` (see ``damping``)."""
    cg_tol: float = field(default=1e-6, metadata={"unit": "fraction of ‖g‖"})
    """CG stops for a sample when ‖(H + μI)d − g‖ ≤ cg_tol·‖g‖."""
    cg_max_iter: int | None = field(default=None, metadata={"unit": "iterations"})
    """CG iteration cap per solve; ``None`` means 2c + 10 (CG needs at most c in exact arithmetic)."""
    steps: int = field(default=1, metadata={"unit": "steps"})
    """Newton steps: 1 is Yao's single-step attack; k > 1 iterates k steps of step_fraction·ε from the
    clean image, projecting onto the ε-ball ∩ [0, 1] after each (like FGSM-10 / BIM)."""
    step_fraction: float | None = field(default=None, metadata={"unit": "fraction of ε"})
    """Step size as a fraction of ε; ``None`` means 1/steps."""
    precision: str = field(default="float64", metadata={"unit": "choice"})
    """Working precision of the model copy that computes directions (the c×c step is always float64)."""
    max_exact_classes: int = field(default=100, metadata={"unit": "classes"})
    """Largest class count for which ``method = auto`` picks the exact solver (its Jacobian is c×D per sample)."""
    check_hessian: bool = True
    """Compare H_x·v with the Gauss–Newton product for one random v per sample at the clean point."""
    gradient_control: bool = True
    """Also run the same step schedule along the gradient g computed exactly as the Newton solve's
    right-hand side (working precision, p − e_y without cancellation), so the comparison separates the
    effect of the Newton direction from that of numerics (robaudit's gradient attacks use float32 autograd)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("method", METHODS), ("curvature", CURVATURES), ("damping_mode", DAMPING_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.method == "exact" and self.curvature != "ggn":
            raise ValueError("method 'exact' solves with the Gauss–Newton factorisation: use curvature 'ggn', "
                             "or method 'cg' for the full Hessian")
        if not (math.isfinite(self.damping) and self.damping > 0):
            raise ValueError(f"damping must be a positive number, got {self.damping}")
        if not 0 < self.cg_tol < 1:
            raise ValueError(f"cg_tol must be in (0, 1), got {self.cg_tol}")
        if self.cg_max_iter is not None and self.cg_max_iter < 1:
            raise ValueError(f"cg_max_iter must be at least 1, got {self.cg_max_iter}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.step_fraction is not None and not 0 < self.step_fraction <= 2:
            raise ValueError(f"step_fraction is the step size as a fraction of eps, in (0, 2]; got {self.step_fraction}")
        check_precision(self.precision)
        if self.max_exact_classes < 2:
            raise ValueError(f"max_exact_classes must be at least 2, got {self.max_exact_classes}")


def _second_order_advice(exc: RuntimeError) -> None:
    """Re-raise a missing-second-derivative error as robaudit's ProbeError with its advice, else as is."""
    advice = second_order_error(exc)
    if advice is None:
        raise exc
    raise advice from exc


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass
class _Clean:
    """What the probe keeps of one batch's solve at the clean point."""

    step: torch.Tensor | None      # N×C×H×W step direction (sign or unit vector), CPU; None if evicted
    iterations: np.ndarray
    residual: np.ndarray
    damping: np.ndarray
    cosine: np.ndarray             # cos(d, g)
    sign_agreement: np.ndarray     # fraction of pixels with sign(d) = sign(g)
    zero_gradient: np.ndarray
    check_residual: np.ndarray     # H·v vs GGN·v (NaN when not checked)
    check_passed: np.ndarray


class _NewtonAttack(SweepAttack):
    """Shared machinery of FHSM and L2HESS; subclasses set the name, norm and Config."""

    needs_grad = True
    needs_double_backward = True
    single_step_peer = None  # the Newton-vs-gradient comparison is reported separately, not as a flag
    gradient_peers: ClassVar[dict[str, str]] = {}
    """Gradient attack of the same schedule: ``single`` (steps = 1) and ``iterated`` probe names."""
    gradient_names: ClassVar[dict[str, str]] = {}
    report_template = "robaudit_second_order_attacks:templates/second_order.html.j2"
    columns: ClassVar = {
        # The outcome columns every robaudit attack writes, with the same roles (attack.worst_case and the
        # analysis stage read them); the newton_* diagnostics are "other": not candidate indicators.
        "success_eps_*": Column("Newton attack success at ε (1 = not robust)", "attack_success", ""),
        "loss_eps_*": Column("cross-entropy after the Newton attack at ε", "other", "nats", False),
        "margin_eps_*": Column("logit margin z_y − max z_j after the Newton attack at ε", "other", "logits", False),
        "gradient_vanished": Column("zero or non-finite input gradient at the clean point (1/0)", "other", ""),
        "newton_iterations": Column("CG iterations of the clean-point Newton solve (0: exact)", "other", "", None),
        "newton_residual": Column("‖(H_x + μI)d − g‖/‖g‖ at the clean point", "other", "", None),
        "newton_damping": Column("damping μ at the clean point", "other", "nats per squared pixel", False),
        "newton_gradient_cosine": Column("cos(H⁻¹g, g) at the clean point", "other", "", None),
        "newton_sign_agreement": Column("fraction of pixels with sign(H⁻¹g) = sign(g)", "other", "", None),
    }
    higher_is_better: ClassVar = {
        **SweepAttack.higher_is_better,
        ("comparison", "gradient_robust_accuracy"): True,
        ("comparison", "both_robust_accuracy"): True,
        ("comparison", "control", "robust_accuracy"): True,
        ("newton", "converged_fraction"): True,
        ("newton", "residual", "max"): False,
    }
    summary_keys: ClassVar = (
        *SweepAttack.summary_keys,
        *(("comparison", key) for key in ("alpha", "gradient_attack", "peer_probe", "source")),
        *(("comparison", key, "*") for key in ("gradient_robust_accuracy", "both_robust_accuracy", "difference",
                                               "broken_only_by_gradient", "broken_only_by_newton", "mcnemar_p",
                                               "significant", "stronger")),
        ("comparison", "control", "description"),
        *(("comparison", "control", key, "*") for key in ("robust_accuracy", "broken_only_by_control",
                                                          "broken_only_by_newton", "mcnemar_p", "significant",
                                                          "stronger")),
        *(("comparison", "control", "vs_peer", key, "*") for key in ("broken_only_by_control", "broken_only_by_peer",
                                                                     "mcnemar_p", "significant", "stronger")),
        *(("newton", key) for key in ("method", "curvature", "precision", "converged", "converged_fraction", "solves",
                                      "samples_per_solve", "fallback_to_gradient")),
        ("newton", "residual", "max"), ("newton", "residual", "median"), ("newton", "cg", "**"),
        *(("newton", "damping", key) for key in ("mode", "reference", "value")),
        *(("newton", key, stat) for key in ("gradient_cosine_clean", "sign_agreement_clean")
          for stat in ("min", "median", "max", "n")),
        *(("newton", "damping", "mu_clean", stat) for stat in ("min", "median", "max", "n")),
        *(("newton", "hessian_check", key) for key in ("checked", "passed", "rtol", "max_relative_residual",
                                                       "ggn_equals_hessian_fraction")),
    )

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.iterative = self.config.steps > 1  # iterated variants get the large-ε sanity pass
        self._method = "exact"
        self._model: torch.nn.Module | None = None
        self._clean: dict[str, _Clean] = {}
        self._cached: OrderedDict[str, int] = OrderedDict()
        self._stats: dict[str, list[np.ndarray]] = {}
        self._generator: torch.Generator | None = None

    @classmethod
    def report_context(cls, entry: Any, results: Any) -> dict[str, Any]:
        """The section's tables, built from the saved ``results.json`` entry only (``robaudit report`` redraws it)."""
        return section_context(entry, results)

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per sample: the clean-point Newton solve (shared by every ε) and, with ``check_hessian``, one
        input HVP and one Gauss–Newton product; per ε, ``steps`` − 1 further solves, the sweep's
        re-check forward and (``sanity_checks``) its noise forward, the gradient comparison attack
        (``steps`` forward+backward passes and a re-check forward; free when its peer probe is
        selected and can be reused) and (``gradient_control``) the control's ``steps`` − 1 gradients
        and re-check, plus its clean-point gradient; for ``steps`` > 1 with ``sanity_checks`` the
        large-ε re-attack of the survivors (counted for every sample).

        A solve is, for ``exact``, one forward for the class count, one forward and K backward
        passes (the Jacobian); for ``cg``, the operator's forward and gradient, then at most
        ``cg_max_iter`` (2K + 10) + 2 products, each a forward+backward and a forward
        (Gauss–Newton: a JVP and a VJP) or an HVP (``curvature = hessian``). An upper bound: CG
        stops at ``cg_tol``."""
        if num_classes is None:
            return class_count_unknown()
        method = config.method
        if method == "auto":
            method = "exact" if config.curvature == "ggn" and num_classes <= config.max_exact_classes else "cg"
        if method == "exact":
            solve = Cost(forward=2, backward=num_classes)
        else:
            products = (config.cg_max_iter if config.cg_max_iter is not None else 2 * num_classes + 10) + 2
            product = Cost(hvp=1) if config.curvature == "hessian" else Cost(forward=1, backward=1)
            solve = Cost(forward=1, backward=1) + products * product
        check = Cost(hvp=1, forward=2, backward=2) if config.check_hessian else Cost()
        clean = solve + check
        steps = config.steps
        n_eps = len(probe_budgets(config.eps, cls.norm, threat_model).eps)
        per_eps = (steps - 1) * solve + Cost(forward=1)
        if config.sanity_checks:
            per_eps = per_eps + Cost(forward=1)
        peer = cls.gradient_peers["single" if steps == 1 else "iterated"]
        if not (steps == 1 and config.eps is None and peer in selected):
            per_eps = per_eps + Cost(forward=1, backward=steps)
        total = clean + n_eps * per_eps
        if config.gradient_control:
            total = total + Cost(backward=1) + n_eps * Cost(forward=1, backward=steps - 1)
        if steps > 1 and config.sanity_checks:
            total = total + clean + (steps - 1) * solve + Cost(forward=1)
        return n_samples * total

    # -- settings ---------------------------------------------------------------------------

    def _fraction(self) -> float:
        cfg = self.config
        return cfg.step_fraction if cfg.step_fraction is not None else 1.0 / cfg.steps

    def resolve_method(self, num_classes: int) -> str:
        """The solver this run uses (``auto`` resolved)."""
        cfg = self.config
        if cfg.method != "auto":
            return cfg.method
        return "exact" if cfg.curvature == "ggn" and num_classes <= cfg.max_exact_classes else "cg"

    def settings(self) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {"steps": cfg.steps, "step_fraction": self._fraction(), "method": self._method,
                               "curvature": cfg.curvature, "damping": cfg.damping, "damping_mode": cfg.damping_mode}
        if self._method == "cg":
            out["cg_tol"] = cfg.cg_tol
        return out

    # -- directions -------------------------------------------------------------------------

    def solve(self, x: torch.Tensor, y: torch.Tensor) -> newton.NewtonSolve:
        """Newton directions of one batch with the configured solver, in sub-batches that fit memory."""
        cfg = self.config
        model = self._model
        if model is None:
            raise ProbeError("the Newton attack was called outside run()", fix="call the probe's run(ctx)")
        relative = cfg.damping_mode == "relative"
        dim = int(np.prod(x.shape[1:]))
        c = newton.num_classes(model, x)
        per_sample = (c + 4) * dim * 8 * 3 if self._method == "exact" else 12 * dim * 8
        parts = []
        try:
            for rows in batch_rows(len(x), len(x), per_sample, working_budget(x.device)):
                xs, ys = x[rows], y[rows]
                if self._method == "exact":
                    parts.append(newton.exact_newton(model, xs, ys, cfg.damping, relative))
                else:
                    op_cls = newton.GGNOperator if cfg.curvature == "ggn" else newton.HessianOperator
                    max_iter = cfg.cg_max_iter if cfg.cg_max_iter is not None else 2 * c + 10
                    parts.append(newton.conjugate_gradient(op_cls(model, xs, ys), cfg.damping, relative,
                                                           cfg.cg_tol, max_iter))
        except RuntimeError as exc:
            _second_order_advice(exc)
        sol = newton.NewtonSolve(*[torch.cat([getattr(p, f) for p in parts]) for f in newton.NewtonSolve.__dataclass_fields__])
        self._record(sol)
        return sol

    def _record(self, sol: newton.NewtonSolve) -> None:
        for key, value in (("iterations", sol.iterations), ("residual", sol.residual), ("converged", sol.converged),
                           ("negative_curvature", sol.negative_curvature), ("fallback", sol.fallback)):
            self._stats.setdefault(key, []).append(value.detach().cpu().numpy())

    def step_direction(self, d: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """The step's unit direction from d (N×D): sign(d) (L∞) or d/‖d‖₂ (L2; 0 where d = 0)."""
        if self.norm == "linf":
            step = d.sign()
        else:
            step = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
        return step.reshape(shape).to(dtype)

    def _clean_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, _Clean]:
        """The step direction at the clean images (solved once per batch, reused for every ε)."""
        key = _fingerprint(x, y)
        info = self._clean.get(key)
        if info is not None and info.step is not None:
            self._cached.move_to_end(key)
            return info.step.to(x.device), info
        sol = self.solve(x, y)
        step = self.step_direction(sol.direction, x.shape, x.dtype)
        g, d = sol.gradient, sol.direction
        g_norm, d_norm = g.norm(dim=1), d.norm(dim=1)
        cosine = (g * d).sum(dim=1) / (g_norm * d_norm).clamp_min(1e-300)
        agree = (d.sign() == g.sign()).double().mean(dim=1)
        check_res = np.full(len(x), np.nan)
        check_ok = np.zeros(len(x), dtype=bool)
        if self.config.check_hessian and self._generator is not None:
            try:
                rel, ok = newton.hessian_check(self._model, x, y, self._generator,
                                               HESSIAN_CHECK_RTOL[self.config.precision])
                check_res, check_ok = rel.cpu().numpy(), ok.cpu().numpy()
            except RuntimeError as exc:
                _second_order_advice(exc)
        info = _Clean(step=None, iterations=sol.iterations.cpu().numpy(), residual=sol.residual.cpu().numpy(),
                      damping=sol.damping.cpu().numpy(), cosine=cosine.cpu().numpy(), sign_agreement=agree.cpu().numpy(),
                      zero_gradient=((g_norm == 0) | ~torch.isfinite(g).all(dim=1)).cpu().numpy(),
                      check_residual=check_res, check_passed=check_ok)
        self._clean[key] = info
        nbytes = step.numel() * step.element_size()
        if sum(self._cached.values()) + nbytes <= CACHE_BYTES:
            info.step = step.detach().cpu()
            self._cached[key] = nbytes
        return step, info

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> ta.AttackOutput:
        """``steps`` Newton steps of ``step_fraction``·ε from the clean image, projected onto the
        ε-ball ∩ [0, 1] after each (one step of ε: Yao's FHSM / L2HESS)."""
        x0 = x.detach()
        alpha = self._fraction() * eps
        step, info = self._clean_step(x0, y)
        adv = self._project(x0, x0 + alpha * step, eps)
        for _ in range(1, self.config.steps):
            sol = self.solve(adv, y)
            adv = self._project(x0, adv + alpha * self.step_direction(sol.direction, x.shape, x.dtype), eps)
        return ta.AttackOutput(adv.detach(), torch.as_tensor(info.zero_gradient))

    def _project(self, x0: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
        """Onto the ε-ball around x0 (L∞: clamp; L2: radial scaling), then [0, 1] (which stays in the ball)."""
        if self.norm == "linf":
            adv = torch.minimum(torch.maximum(adv, x0 - eps), x0 + eps)
        else:
            delta = adv - x0
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-30)
            factor = torch.clamp(eps / norms, max=1.0).view(-1, *[1] * (x0.dim() - 1))
            adv = x0 + delta * factor
        return adv.clamp(0.0, 1.0)

    # -- the run ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, ctx: ProbeContext) -> Iterator[_NewtonAttack]:
        """Set up what :meth:`attack` needs (the working model copy, caches) for the duration of the block;
        :meth:`run` uses it, and tests call ``attack`` inside it directly."""
        self._method = self.resolve_method(ctx.model.num_classes)
        self._model = working_model(ctx.model, self.config.precision)
        self._generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "hessian-check"))
        self._clean, self._cached, self._stats = {}, OrderedDict(), {}
        try:
            yield self
        finally:
            self._model = None
            self._cached.clear()

    def run(self, ctx: ProbeContext) -> ProbeResult:
        with self.session(ctx):
            result = super().run(ctx)
            clean = self._per_sample_clean(ctx)
            eps_list = [float(e) for e in result.summary["eps"]]
            control = self._control(ctx, eps_list) if self.config.gradient_control else None
        n = len(ctx.data)
        for key, column in (("iterations", "newton_iterations"), ("residual", "newton_residual"),
                            ("damping", "newton_damping"), ("cosine", "newton_gradient_cosine"),
                            ("sign_agreement", "newton_sign_agreement")):
            result.per_sample[column] = clean[key]
        if "gradient_vanished" not in result.per_sample:
            result.per_sample["gradient_vanished"] = clean["zero_gradient"]
        robust = np.stack([~np.asarray(result.per_sample[success_key(e)], dtype=bool) for e in eps_list])
        correct = clean_correct(ctx)
        result.summary["newton"] = self._newton_summary(clean)
        result.summary["comparison"] = self._comparison(ctx, eps_list, robust, correct, control)
        result.flags.extend(self._flags(result.summary["newton"], n))
        result.flags.extend(self._control_flags(result.summary["comparison"]))
        result.notes.extend(self._notes(result.summary))
        result.artifacts["clean_point_iterations"] = _counts(clean["iterations"])
        return result

    def _per_sample_clean(self, ctx: ProbeContext) -> dict[str, np.ndarray]:
        """Clean-point diagnostics aligned to the audit samples (solved again only if a batch was never seen)."""
        n = len(ctx.data)
        out = {k: np.full(n, np.nan) for k in ("iterations", "residual", "damping", "cosine", "sign_agreement",
                                               "check_residual")}
        out["zero_gradient"] = np.zeros(n, dtype=bool)
        out["check_passed"] = np.zeros(n, dtype=bool)
        for rows, xb, yb in ctx.data.batches(ctx.batch_size):
            xb, yb = xb.to(ctx.device), yb.to(ctx.device)
            info = self._clean.get(_fingerprint(xb, yb))
            if info is None:
                _, info = self._clean_step(xb, yb)
            for key, values in out.items():
                values[rows] = getattr(info, key)
        return out

    def _newton_summary(self, clean: dict[str, np.ndarray]) -> dict[str, Any]:
        cfg = self.config
        stats = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self._stats.items()}
        residual = stats.get("residual", np.zeros(0))
        iterations = stats.get("iterations", np.zeros(0))
        solves = int(residual.size)
        summary: dict[str, Any] = {
            "method": self._method,
            "curvature": cfg.curvature,
            "precision": cfg.precision,
            "damping": {"mode": cfg.damping_mode, "value": cfg.damping,
                        "reference": "rho = g'Hg/g'g, the curvature along the gradient" if cfg.damping_mode == "relative"
                        else "absolute (nats per squared pixel unit)",
                        "mu_clean": _describe(clean["damping"])},
            "solves": solves,
            "samples_per_solve": "one Newton system per sample per step; the clean-point solve is shared by every eps",
            "converged": int(stats["converged"].sum()) if solves else 0,
            "converged_fraction": float(stats["converged"].mean()) if solves else None,
            "residual": {"median": float(np.median(residual)) if solves else None,
                         "max": float(residual.max()) if solves else None},
            "fallback_to_gradient": int(stats.get("fallback", np.zeros(0)).sum()),
            "gradient_cosine_clean": _describe(clean["cosine"]),
            "sign_agreement_clean": _describe(clean["sign_agreement"]),
        }
        if self._method == "cg":
            summary["cg"] = {"tol": cfg.cg_tol,
                             "max_iter": cfg.cg_max_iter if cfg.cg_max_iter is not None else "2c+10",
                             "iterations": {"min": int(iterations.min()) if solves else None,
                                            "median": float(np.median(iterations)) if solves else None,
                                            "mean": float(iterations.mean()) if solves else None,
                                            "max": int(iterations.max()) if solves else None},
                             "iterations_clean": _describe(clean["iterations"]),
                             "not_converged": int((~stats["converged"]).sum()) if solves else 0,
                             "negative_curvature": int(stats["negative_curvature"].sum()) if solves else 0}
        checked = np.isfinite(clean["check_residual"])
        summary["hessian_check"] = {
            "checked": int(checked.sum()),
            "passed": int(clean["check_passed"][checked].sum()),
            "rtol": HESSIAN_CHECK_RTOL[cfg.precision],
            "ggn_equals_hessian_fraction": float(clean["check_passed"][checked].mean()) if checked.any() else None,
            "max_relative_residual": float(clean["check_residual"][checked].max()) if checked.any() else None,
        }
        return summary

    # -- comparison with the gradient attack -------------------------------------------------

    def _peer(self) -> tuple[str, str]:
        kind = "single" if self.config.steps == 1 else "iterated"
        return self.gradient_peers[kind], self.gradient_names[kind].format(k=self.config.steps)

    def _reusable(self, ctx: ProbeContext, eps_list: list[float]) -> np.ndarray | None:
        """The peer probe's per-sample robustness from earlier in this audit, if it ran with the same
        schedule at every one of these budgets."""
        name, _ = self._peer()
        previous = ctx.previous.get(name)
        if previous is None or not all(success_key(e) in previous.per_sample for e in eps_list):
            return None
        if self.config.steps > 1:
            s = previous.summary.get("settings", {})
            same = (s.get("steps") == self.config.steps and math.isclose(s.get("step_fraction", -1), self._fraction())
                    and not s.get("random_start", False) and s.get("restarts", 1) == 1)
            if not same:
                return None
        return np.stack([~np.asarray(previous.per_sample[success_key(e)], dtype=bool) for e in eps_list])

    def _gradient_attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float,
                         seed: int) -> ta.AttackOutput:
        steps, alpha = self.config.steps, self._fraction() * eps
        if self.norm == "linf":
            if steps == 1:
                return ta.fgsm(target, x, y, eps, seed) if math.isclose(alpha, eps) else \
                    ta.bim(target, x, y, eps, alpha=alpha, steps=1, seed=seed)
            return ta.bim(target, x, y, eps, alpha=alpha, steps=steps, seed=seed)
        return ta.pgd_l2(target, x, y, eps, alpha=alpha, steps=steps, random_start=False, seed=seed)

    def _control(self, ctx: ProbeContext, eps_list: list[float]) -> np.ndarray:
        """Per-sample robustness (ε × N) under the same step schedule along the cancellation-free gradient
        of the working model (the Newton solve's right-hand side), re-checked and re-scored like the attack."""
        correct = clean_correct(ctx)
        robust = np.zeros((len(eps_list), len(correct)), dtype=bool)
        frac, steps = self._fraction(), self.config.steps
        for rows, xb, yb in ctx.data.batches(ctx.batch_size):
            x0, yb = xb.to(ctx.device), yb.to(ctx.device)
            g0 = self.step_direction(newton.stable_gradient(self._model, x0, yb), x0.shape, x0.dtype)
            for k, eps in enumerate(eps_list):
                adv = self._project(x0, x0 + frac * eps * g0, eps)
                for _ in range(1, steps):
                    g = newton.stable_gradient(self._model, adv, yb)
                    adv = self._project(x0, adv + frac * eps * self.step_direction(g, x0.shape, x0.dtype), eps)
                adv, _ = project(x0, adv, eps, self.norm)
                robust[k, rows] = correct[rows] & score(ctx.model, adv, yb).correct.numpy()
        return robust

    def _comparison(self, ctx: ProbeContext, eps_list: list[float], robust: np.ndarray, correct: np.ndarray,
                    control: np.ndarray | None) -> dict[str, Any]:
        cfg = self.config
        peer, label = self._peer()
        peer_robust = self._reusable(ctx, eps_list)
        source = "previous"
        if peer_robust is None:
            source = "computed"
            peer_robust = np.zeros_like(robust)
            batches = list(enumerate(ctx.data.batches(ctx.batch_size)))
            with ta.attack_session(ctx.model, ctx.device) as target:
                for k, eps in enumerate(eps_list):
                    for b, (rows, xb, yb) in batches:
                        xb, yb = xb.to(ctx.device), yb.to(ctx.device)
                        out = self._gradient_attack(target, xb, yb, eps, derive_seed(ctx.seed, "gradient-peer", k, b))
                        adv, _ = project(xb, out.adv, eps, self.norm)
                        peer_robust[k, rows] = correct[rows] & score(ctx.model, adv, yb).correct.numpy()
        n = len(correct)
        keys = [eps_key(e) for e in eps_list]
        out: dict[str, Any] = {"gradient_attack": label, "peer_probe": peer, "source": source, "alpha": SIGNIFICANCE,
                               "gradient_robust_accuracy": {}, "both_robust_accuracy": {}, "difference": {}}
        for k, key in enumerate(keys):
            out["gradient_robust_accuracy"][key] = wilson_interval(int(peer_robust[k].sum()), n, cfg.ci_level)
            out["both_robust_accuracy"][key] = wilson_interval(int((peer_robust[k] & robust[k]).sum()), n, cfg.ci_level)
            out["difference"][key] = float((robust[k].sum() - peer_robust[k].sum()) / n) if n else None
        paired = _paired(keys, robust, peer_robust, "newton", "gradient")
        out.update(paired)
        if control is not None:
            out["control"] = {
                "description": (f"{label.split(' ')[0]} schedule along the gradient computed like the Newton solve's "
                                f"right-hand side ({cfg.precision}, p − e_y without cancellation)"),
                "robust_accuracy": {key: wilson_interval(int(control[k].sum()), n, cfg.ci_level) for k, key in enumerate(keys)},
                **_paired(keys, robust, control, "newton", "control"),
                "vs_peer": _paired(keys, control, peer_robust, "control", "peer"),
            }
        return out

    # -- flags and notes ---------------------------------------------------------------------

    def _flags(self, s: dict[str, Any], n: int) -> list[Flag]:
        flags = []
        cg = s.get("cg")
        if cg and cg["not_converged"] > cg["negative_curvature"]:
            flags.append(Flag(
                "newton_cg_not_converged", Severity.WARNING,
                f"{self.name}: {cg['not_converged'] - cg['negative_curvature']} of {s['solves']} Newton systems did not "
                f"reach the CG tolerance {cg['tol']:g} within the iteration cap (max residual {s['residual']['max']:.3g}); "
                "raise cg_max_iter or damping, or use method=exact", self.name, DOCS))
        if cg and cg["negative_curvature"]:
            flags.append(Flag(
                "newton_negative_curvature", Severity.INFO,
                f"{self.name}: CG met negative curvature of the full input Hessian in {cg['negative_curvature']} of "
                f"{s['solves']} systems (the net is not piecewise linear there); those iterates stopped early "
                f"({s['fallback_to_gradient']} fell back to the gradient direction)", self.name, DOCS))
        check = s["hessian_check"]
        if self.config.curvature == "ggn" and check["checked"] and check["ggn_equals_hessian_fraction"] < 1:
            bad = check["checked"] - round(check["ggn_equals_hessian_fraction"] * check["checked"])
            flags.append(Flag(
                "newton_gauss_newton_differs", Severity.INFO,
                f"{self.name}: H_x·v differs from the Gauss–Newton product at {bad} of {check['checked']} samples "
                f"(max relative residual {check['max_relative_residual']:.3g}): the net is not piecewise linear, so "
                "the direction is the Gauss–Newton one; curvature=hessian with method=cg uses the full H_x",
                self.name, DOCS))
        return flags

    def _control_flags(self, comp: dict[str, Any]) -> list[Flag]:
        """Flag a gradient attack of robaudit's that the plugin's own gradient step beats significantly."""
        control = comp.get("control")
        if not control:
            return []
        vs = control["vs_peer"]
        worse = [k for k in vs["mcnemar_p"] if vs["stronger"][k] == "control" and vs["significant"][k]]
        if not worse:
            return []
        key = max(worse, key=lambda k: vs["broken_only_by_control"][k] - vs["broken_only_by_peer"][k])
        return [Flag(
            "gradient_attack_understated", Severity.WARNING,
            f"{self.name}: the same {comp['gradient_attack']} step along a cancellation-free {self.config.precision} "
            f"gradient breaks {vs['broken_only_by_control'][key]} samples that {comp['peer_probe']} leaves robust (and "
            f"{vs['broken_only_by_peer'][key]} the other way) at eps={key} (McNemar p = {vs['mcnemar_p'][key]:.2g}; "
            f"significant at eps {', '.join(worse)}); the likely cause is float32 autograd rounding p_y − 1 to 0 on "
            f"confident samples, which drops the true class from the cross-entropy gradient; {comp['peer_probe']}'s "
            "robust accuracy is then an overstatement",
            self.name, DOCS)]

    def _notes(self, summary: dict[str, Any]) -> list[str]:
        s, comp = summary["newton"], summary["comparison"]
        mu = s["damping"]["mu_clean"]["median"]
        solver = ("exact c×c solve (float64)" if s["method"] == "exact" else
                  f"conjugate gradient (tolerance {self.config.cg_tol:g}, median "
                  f"{s['cg']['iterations']['median']:.3g} iterations)")
        matrix = "Gauss–Newton matrix" if s["curvature"] == "ggn" else "full input Hessian"
        scale = "ρ" if self.config.damping_mode == "relative" else "one"
        notes = [(f"Newton direction (H_x + μI)⁻¹g by {solver} on the {matrix}; μ = {self.config.damping:g} × {scale} "
                  f"(median μ {mu:.3g}); max relative residual {s['residual']['max']:.3g}.")]
        stronger = [k for k, v in comp["stronger"].items() if v == "newton"]
        weaker = [k for k, v in comp["stronger"].items() if v == "gradient"]
        significant = [k for k, v in comp["significant"].items() if v]
        notes.append(f"Against {comp['gradient_attack']} ({comp['source']}): the Newton attack breaks more samples at "
                     f"eps {', '.join(stronger) or 'none'} and fewer at eps {', '.join(weaker) or 'none'}; the "
                     f"difference is significant (exact McNemar, p < {SIGNIFICANCE:g}) at eps "
                     f"{', '.join(significant) or 'none'}.")
        control = comp.get("control")
        if control:
            better = [k for k, v in control["stronger"].items() if v == "newton" and control["significant"][k]]
            worse = [k for k, v in control["stronger"].items() if v == "control" and control["significant"][k]]
            notes.append(f"Against the same schedule along the plugin's own gradient (identical numerics, so only the "
                         f"direction differs): the Newton attack is significantly stronger at eps {', '.join(better) or 'none'} "
                         f"and significantly weaker at eps {', '.join(worse) or 'none'}.")
        return notes


def _paired(keys: list[str], robust_a: np.ndarray, robust_b: np.ndarray, a: str, b: str) -> dict[str, Any]:
    """Per ε: samples only attack ``a`` breaks, only ``b`` breaks, the exact McNemar p on them, which
    breaks more, and whether that is significant at :data:`SIGNIFICANCE`."""
    from scipy.stats import binomtest  # here, not at import: the registry imports this module for `robaudit validate`

    out: dict[str, Any] = {f"broken_only_by_{a}": {}, f"broken_only_by_{b}": {}, "mcnemar_p": {}, "stronger": {},
                           "significant": {}}
    for k, key in enumerate(keys):
        only_a = int(np.sum(robust_b[k] & ~robust_a[k]))
        only_b = int(np.sum(robust_a[k] & ~robust_b[k]))
        p = float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
        out[f"broken_only_by_{a}"][key] = only_a
        out[f"broken_only_by_{b}"][key] = only_b
        out["mcnemar_p"][key] = p
        out["stronger"][key] = a if only_a > only_b else b if only_b > only_a else "tie"
        out["significant"][key] = bool(p < SIGNIFICANCE)
    return out


def _describe(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": int(v.size), "min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def _counts(values: np.ndarray) -> dict[str, int]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)].astype(int)
    keys, counts = np.unique(v, return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, counts)}


class FHSMProbe(_NewtonAttack):
    """FHSM: x' = clip(x + ε·sign((H_x + μI)⁻¹ g)), g = ∇x CE, over an L∞ ε sweep (Yao et al. Table 5)."""

    name = "attack.fhsm"
    version = "1"
    description = ("FHSM (Yao's second-order L∞ attack: sign of the damped Newton direction, exact c×c or CG) over an "
                   "L∞ ε sweep, compared with FGSM / FGSM-k")
    norm = "linf"
    report_title = "FHSM: second-order L∞ attack vs FGSM"
    gradient_peers: ClassVar = {"single": "attack.fgsm", "iterated": "attack.bim"}
    requires = (Requirement("attack.fgsm", optional=True), Requirement("attack.bim", optional=True))
    gradient_names: ClassVar = {"single": "FGSM", "iterated": "FGSM-{k} (BIM)"}

    @dataclass
    class Config(NewtonConfig):
        """Knobs of FHSM: the ε list (L∞, pixel units), the Newton solver and the step schedule."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "linf")


class L2HessProbe(_NewtonAttack):
    """L2HESS: x' = clip(x + ε·d/‖d‖₂), d = (H_x + μI)⁻¹ g, over an L2 ε sweep (Yao et al. Table 5)."""

    name = "attack.l2hess"
    version = "1"
    description = ("L2HESS (Yao's second-order L2 attack: normalised damped Newton direction, exact c×c or CG) over an "
                   "L2 ε sweep, compared with L2GRAD")
    norm = "l2"
    report_title = "L2HESS: second-order L2 attack vs L2GRAD"
    gradient_peers: ClassVar = {"single": "attack.l2grad", "iterated": "attack.pgd_l2"}
    requires = (Requirement("attack.l2grad", optional=True), Requirement("attack.pgd_l2", optional=True))
    gradient_names: ClassVar = {"single": "L2GRAD", "iterated": "L2GRAD-{k} (PGD L2 without random start)"}

    @dataclass
    class Config(NewtonConfig):
        """Knobs of L2HESS: the ε list (L2, pixel units), the Newton solver and the step schedule."""

        def __post_init__(self) -> None:
            super().__post_init__()
            check_eps_list(self.eps, "l2")

