"""``geometry.input_hessian``: the input-Hessian spectrum of the CE loss, Yao's Theorem 1 and Yu's indicator."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from robaudit.probes.base import (
    ATTACK_OUTCOMES,
    Column,
    Flag,
    Probe,
    ProbeContext,
    ProbeResult,
    Requirement,
    Severity,
    wilson_interval,
)
from robaudit.probes import memory
from robaudit.probes.geometry import common
from robaudit.probes.geometry.curvature import (
    InputCurvature,
    ggn_vp_by_jvp,
    rounding_floor,
    ggn_vp_from_jacobian,
    rademacher,
    relative_residual,
    second_order_vps,
)
from robaudit.probes.geometry.groups import SampleGroups, sample_groups
from robaudit.probes.geometry.jacobian import logit_geometry, resolve_top_m
from robaudit.probes.geometry.lanczos import batched_lanczos
from robaudit.probes.geometry.spectrum import ce_hessian_factor, exact_spectrum, jacobian_gram, numerical_rank
from robaudit.probes.geometry.stats import STATISTICS, by_group, describe, grouped_keys, histogram
from robaudit.probes.cost import Cost, Unknown, class_count_unknown
from robaudit.threat_model import ThreatModel

METHOD_EXACT = "exact_cxc"
METHOD_LANCZOS = "lanczos_hvp"


@dataclass
class _BatchOut:
    """Per-sample results of one batch (float64 numpy arrays, length B)."""

    columns: dict[str, np.ndarray]
    top: np.ndarray  # B×k eigenvalues, descending, NaN-padded


class InputHessian(Probe):
    """Input-Hessian spectrum of the cross-entropy loss per sample, with a run-time method check.

    For each batch the probe compares H_x·v (double backward) with GGN·v = J_zᵀ H_L J_z v for
    ``check_vectors`` random ±1 vectors per sample. A float32 screen runs first (``screen_check``):
    the difference R·v = Σ_k (p_k − y_k) ∇²x z_k·v computed directly is exactly zero on a
    piecewise-linear net, and only samples where it is not get the float64 comparison (their
    ``ggn_residual`` as before; 0, its exact value, for the others). Where they agree (``ggn_residual`` ≤
    ``ggn_rtol``) the net is piecewise linear at that sample, H_x = J_zᵀ H_L J_z exactly
    (Yao's Theorem 1), and every non-zero eigenvalue comes from the c×c problem
    Aᵀ J_z J_zᵀ A in float64 (``method_exact`` = 1). Elsewhere (GELU, SiLU, attention) the
    top eigenvalues come from batched Lanczos on HVPs (``method_exact`` = 0).

    Per sample: ``lambda_1`` … ``lambda_k`` (descending; nats per squared pixel unit),
    ``lambda_min``, ``trace`` (exact for the c×c method; GGN trace plus a Hutchinson estimate
    of the remainder otherwise), ``rank`` (numerical, c×c method only), ``psd`` (λ_min ≥
    −psd_rtol·λ1), ``ggn_residual`` (max ‖Hv − GGNv‖/‖Hv‖), ``method_exact``, and Yu's
    indicator at the audit's ε: ``decision`` d(x), ``decision_grad_l1``,
    ``decision_hessian_max_abs`` (max |λ(∇²x d)|; 0 where the net is piecewise linear),
    ``yu_bound`` = ε‖∇x d‖₁ + ½ε²·D·max|λ(∇²x d)|, ``yu_slack`` = d − bound and ``yu_safe``
    (bound < d).
    """

    name = "geometry.input_hessian"
    version = "4"  # 4: the float32 R·v screen (ggn_residual exactly 0 where R·v = 0; everything else as in 3)
    # 3: float64 H·v check in every precision; batches sized by memory (other check vectors)
    # 2: the robust split reads the attack-outcome table (distance attacks count at any ε)
    description = ("input-Hessian spectrum of the CE loss (exact c×c method in float64, checked at run time; "
                   "Lanczos fallback), PSD/rank test of Yao's Theorem 1, Yu's robustness indicator")
    needs_grad = True
    needs_double_backward = True
    standard = True
    requires = (Requirement(ATTACK_OUTCOMES, optional=True),)  # the robust / non-robust split
    columns: ClassVar = {
        "lambda_1": Column("input-Hessian top eigenvalue λ1^x", "indicator", "nats per squared L2 pixel", False),
        "lambda_*": Column("input-Hessian eigenvalue", "other", "nats per squared L2 pixel", False),
        "lambda_min": Column("input-Hessian smallest eigenvalue", "other", "nats per squared L2 pixel", False),
        "trace": Column("input-Hessian trace", "indicator", "nats per squared L2 pixel", False),
        "rank": Column("input-Hessian numerical rank", "other", "", None),
        "psd": Column("input Hessian PSD (1/0)", "other", "", None),
        "method_exact": Column("exact c×c method used (1) or Lanczos (0)", "other", "", None),
        "ggn_residual": Column("‖Hv − GGNv‖/‖Hv‖", "other", "", None),
        "decision": Column("decision function d(x)", "other", "logits", False),
        "decision_grad_l1": Column("decision-gradient norm ‖∇x d‖₁", "other", "logits per L∞ pixel", False),
        "decision_hessian_max_abs": Column("max |λ(∇²x d)|", "other", "logits per squared L2 pixel", False),
        "yu_bound": Column("Yu's bound on |Δd| over the ε-ball", "other", "logits", False),
        "yu_slack": Column("Yu's indicator d − bound", "indicator", "logits", False),
        "yu_safe": Column("safe under Yu's quadratic model (1/0)", "other", "", True),
    }
    higher_is_better: ClassVar = {
        ("lambda_1", "all", "median"): False,
        ("trace", "all", "median"): False,
        ("yu_slack", "correct", "median"): True,
        ("yu_safe_fraction",): True,
    }
    summary_keys: ClassVar = (
        *grouped_keys("lambda_1", "lambda_min", "trace", "rank", "ggn_residual", "decision_hessian_max_abs",
                      "yu_bound", "yu_slack"),
        *(("theorem1", "ggn_residual", stat) for stat in STATISTICS),
        *(("theorem1", key) for key in ("holds", "verdict", "piecewise_linear_fraction", "psd_fraction",
                                        "min_lambda_relative", "rank_bound", "rank_max", "rank_rtol", "module_swaps")),
        ("yu_safe_fraction",), ("hessian_eigenvalue_sparsity", "lower_bound"), ("hessian_eigenvalue_sparsity", "statement"),
        ("eigenvalue_columns",), ("group_sizes", "*"), ("input_dim",), ("num_classes",), ("hessian_classes",),
        ("precision",), ("methods", "*"), ("epsilon",), ("epsilon_source",), ("robustness_source", "**"),
    )

    @dataclass
    class Config(common.ClassSubsetConfig):
        """Knobs of ``geometry.input_hessian`` (ε: Yu's indicator; top_m: the classes of the c×c problem,
        which is float64 whatever the precision)."""

        precision: str = field(default="float64", metadata={"unit": "choice"})
        """``float64`` (default: every eigenvalue to 1e-6 relative of dense float64 autograd), or ``mixed``:
        float32 Jacobian, float64 c×c solve, H·v check and Lanczos fallback (about 1.2× faster than float64 on the
        demo CNN and a ResNet-18, both screened;
        eigenvalues within about 1e-6·λ1 of float64, so small ones lose their relative accuracy)."""
        top_k: int = field(default=10, metadata={"unit": "eigenvalues"})
        """Eigenvalues stored per sample as columns lambda_1 … lambda_k (capped by the rank bound)."""
        check_vectors: int = field(default=2, metadata={"unit": "vectors"})
        """Random ±1 vectors per sample for the H·v = GGN·v check."""
        screen_check: bool = True
        """Screen the check first with R·v = H·v − GGN·v computed directly on a float32 copy (exactly zero on
        a piecewise-linear net, in any precision): the float64 H·v check then runs only on samples where it is
        not zero, and the others get ``ggn_residual`` = 0 (their exact residual). ``false``: the float64 check
        on every sample (version 3; their residuals are autograd's rounding, ~1e-12). Eigenvalues, methods,
        traces and verdicts are the same either way."""
        ggn_rtol: float | None = field(default=None, metadata={"unit": "relative (‖Hv − GGNv‖/‖Hv‖)"})
        """Largest ‖Hv − GGNv‖/‖Hv‖ accepted as piecewise linear; default 1e-6 (the check runs in float64 in
        every precision)."""
        rank_rtol: float | None = field(default=None, metadata={"unit": "fraction of λ1"})
        """Eigenvalues above rank_rtol·λ1 count towards the rank; default 1e-9 (float64) or 1e-5 (mixed: float32 Jacobian)."""
        psd_rtol: float = field(default=1e-6, metadata={"unit": "fraction of λ1"})
        """A sample is PSD when λ_min ≥ −psd_rtol·λ1."""
        lanczos_steps: int = field(default=32, metadata={"unit": "Lanczos steps"})
        """Krylov dimension of the Lanczos fallback (capped at the input dimension)."""
        decision_hessian: bool = True
        """Run Lanczos on ∇²x d too where the net is not piecewise linear (Yu's second-order term)."""

        def __post_init__(self) -> None:
            super().__post_init__()
            for name in ("top_k", "check_vectors", "lanczos_steps"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
            for name in ("ggn_rtol", "rank_rtol", "psd_rtol"):
                value = getattr(self, name)
                if value is not None and not 0 < value < 1:
                    raise ValueError(f"{name} must be in (0, 1), got {value}")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset(), *, num_classes: int | None = None) -> Cost | Unknown:
        """Per sample: the Jacobian (:func:`~robaudit.probes.geometry.gradient_probe.jacobian_cost`);
        with ``screen_check``, the float32 screen: ∇x(rᵀz) with its graph (one forward+backward) and one
        input HVP per check vector; the float64 check: the loss gradient with its graph (one
        forward+backward), then per check vector one input HVP (a second backward through that graph;
        and one Jacobian-vector product pair, counted as a forward+backward, when m < K); and the Lanczos
        fallback for samples where H·v ≠ GGN·v: the gradient graph again (and ∇x d's with
        ``decision_hessian``), min(``lanczos_steps``, D) HVPs on the loss and as many on d(x). An upper
        bound: the float64 check and the fallback are counted for every sample (after the screen, a
        piecewise-linear net needs neither for any sample)."""
        from robaudit.probes.geometry.gradient_probe import jacobian_cost

        if num_classes is None:
            return class_count_unknown()
        m = resolve_top_m(num_classes, config.top_m, config.max_full_classes)
        checks = Cost(backward=1) + Cost(hvp=1, backward=0 if m == num_classes else 1) * config.check_vectors
        if config.screen_check:
            checks = checks + Cost(backward=1, hvp=config.check_vectors)
        dim = math.prod(threat_model.image_shape)
        graphs = 2 if config.decision_hessian else 1
        fallback = Cost(backward=graphs, hvp=min(config.lanczos_steps, dim) * graphs)
        return n_samples * (jacobian_cost(config, num_classes) + checks + fallback)

    def run(self, ctx: ProbeContext) -> ProbeResult:
        cfg = self.config
        eps, eps_source = common.resolve_epsilon(cfg.epsilon, ctx.threat_model)
        ggn_rtol = cfg.ggn_rtol if cfg.ggn_rtol is not None else 1e-6
        rank_rtol = cfg.rank_rtol if cfg.rank_rtol is not None else (1e-9 if cfg.precision == "float64" else 1e-5)
        model = common.working_model(ctx.model, cfg.precision)
        model64 = common.logits_model(ctx.model, cfg.precision)
        screen_model = None
        if cfg.screen_check:  # float32 whatever the precision: R·v's zeros are exact in any dtype
            screen_model = model if model64 is not None else common.working_model(ctx.model, "float32")
        n = len(ctx.data)
        c = ctx.model.num_classes
        dim = int(np.prod(ctx.data.x.shape[1:]))
        m = resolve_top_m(c, cfg.top_m, cfg.max_full_classes)
        rank_bound = c - 1 if m == c else m
        k = max(1, min(cfg.top_k, rank_bound, dim))
        # outputs, plus the larger of the Jacobian phase (vmapped VJP: K + 1 activation copies in the working
        # dtype; fewer with the CPU's row-by-row VJPs, which keep these batches) and the float64 check (forward,
        # backward with graph, double backward, JVP: about 4 copies; the float32 screen holds as many float32
        # copies, fewer bytes)
        x1 = ctx.data.x[:1].to(ctx.device)
        act = memory.activation_bytes(model, x1)
        act64 = memory.activation_bytes(model64, x1) if model64 is not None else act
        per_sample_bytes = (m + 4 + cfg.check_vectors) * dim * 8 * 3 + max((m + 3) * act, 4 * act64)
        budget = memory.working_budget(ctx.device)

        columns: dict[str, np.ndarray] = {}
        top = np.full((n, k), np.nan)
        rows_iter = common.batch_rows(n, ctx.batch_size, per_sample_bytes, budget)
        total = common.n_batches(n, ctx.batch_size, per_sample_bytes, budget)
        for rows in ctx.progress(rows_iter, "input Hessian", total):
            out = self._batch(ctx, model, model64, screen_model, rows, m, k, eps, ggn_rtol, rank_rtol, dim)
            for key, values in out.columns.items():
                columns.setdefault(key, np.full(n, np.nan))[rows] = values
            top[rows] = out.top
        for j in range(k):
            columns[f"lambda_{j + 1}"] = top[:, j]

        groups = sample_groups(ctx, eps)
        exact = columns["method_exact"] == 1
        summary = self._summary(columns, groups, exact, eps, eps_source, c, m, dim, rank_bound, k,
                                ggn_rtol, rank_rtol, ctx)
        artifacts = {
            "histograms": {key: histogram(columns[key], groups, cfg.histogram_bins)
                           for key in ("lambda_1", "trace", "ggn_residual", "yu_slack")},
            "median_spectrum": {
                "index": list(range(1, k + 1)),
                **{g: [float(np.nanmedian(top[mask & exact, j])) if (mask & exact).any() else None for j in range(k)]
                   for g, mask in groups.masks.items()},
            },
        }
        flags, notes = self._flags_and_notes(summary, columns, exact, ctx, m, c)
        return ProbeResult(summary=summary, per_sample=columns, flags=flags, artifacts=artifacts, notes=notes)

    def _batch(self, ctx: ProbeContext, model: torch.nn.Module, model64: torch.nn.Module | None,
               screen_model: torch.nn.Module | None, rows: slice, m: int, k: int, eps: float, ggn_rtol: float,
               rank_rtol: float, dim: int) -> _BatchOut:
        cfg = self.config
        x = ctx.data.x[rows].to(ctx.device)
        y = ctx.data.y[rows].to(ctx.device)
        b = len(y)
        geo = logit_geometry(model, x, y, m, model64)
        p_sel = geo.selected_probs()
        gram = jacobian_gram(geo.jacobian)
        eig = exact_spectrum(geo.jacobian, p_sel, geo.rest_mass, gram)  # B×m, float64
        factor = ce_hessian_factor(p_sel, geo.rest_mass)
        spectral_sq = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0)
        xd = x.to(geo.jacobian.dtype)
        # The H·v = GGN·v check decides which method is exact, so it runs in float64 in every precision: a
        # float32 check passes non-piecewise-linear samples below its rounding floor (GELU digits CNN: 4 of 6).
        # The float32 screen is not such a check: it computes R·v = H·v − GGN·v itself, which is exactly zero
        # on piecewise-linear nets (no rounding enters) and sends every other sample to the float64 check.
        check_model = model if model64 is None else model64
        x64 = x.to(torch.float64)
        vectors = torch.stack([rademacher((b, dim), ctx.generator) for _ in range(cfg.check_vectors)]).to(x.device)
        residual = torch.zeros(b, dtype=torch.float64, device=x.device)
        passed = torch.ones(b, dtype=torch.bool, device=x.device)
        hutch = torch.zeros(b, dtype=torch.float64, device=x.device)
        curv: InputCurvature | None = None
        try:
            if screen_model is not None:
                # R·v = H·v − GGN·v directly; r is scaled to max |r_k| = 1 so float32 cannot underflow it
                r = geo.probs - F.one_hot(y, geo.probs.shape[1]).double()
                r = r / r.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
                rv = second_order_vps(screen_model, x, r, vectors)
                checked = (rv != 0).any(dim=2).any(dim=0)
            else:
                checked = torch.ones(b, dtype=torch.bool, device=x.device)
            chk = checked.nonzero().squeeze(1)
            if len(chk):
                sub_x = x64[chk]
                curv = InputCurvature(check_model, sub_x, y[chk])
                jac = geo.jacobian[chk]
                for v_all in vectors:
                    v = v_all[chk]
                    hv = curv.loss_hvp(v).double()
                    if geo.full and model64 is None:
                        gv = ggn_vp_from_jacobian(jac, geo.probs[chk].gather(1, geo.classes[chk]), v)
                    else:  # restricted classes, or a float32 Jacobian: GGN·v from float64 JVP + VJP
                        gv = ggn_vp_by_jvp(check_model, sub_x, geo.probs[chk], v)
                    residual[chk] = torch.maximum(residual[chk], relative_residual(hv, gv))
                    floor = rounding_floor(spectral_sq[chk], v.norm(dim=1), torch.float64)
                    passed[chk] &= ((hv - gv).norm(dim=1)
                                    <= ggn_rtol * torch.maximum(hv.norm(dim=1), gv.norm(dim=1)) + floor)
                    u = torch.einsum("nmd,nd->nm", jac.double(), v)  # restricted-GGN quadratic form
                    ggn_quad = (torch.einsum("nij,ni->nj", factor[chk], u) ** 2).sum(dim=1)
                    hutch[chk] += ((v * hv).sum(dim=1) - ggn_quad) / cfg.check_vectors
        except RuntimeError as exc:
            raise common.second_order_error(exc) or exc
        exact = passed

        lam1 = eig[:, 0]
        top = torch.full((b, k), float("nan"), dtype=torch.float64)
        top[:, : min(k, eig.shape[1])] = eig[:, :k].cpu()
        lam_min = eig[:, -1].clamp_max(0.0) if dim > eig.shape[1] else eig[:, -1]
        trace = eig.sum(dim=1)
        rank = numerical_rank(eig, rank_rtol).double()
        d_hess = torch.zeros(b, dtype=torch.float64)
        lam_min, trace, rank, lam1 = lam_min.cpu(), trace.cpu(), rank.cpu(), lam1.cpu()

        fallback = (~exact).nonzero().squeeze(1)
        if len(fallback):
            sub_x, sub_y = x64[fallback], y[fallback]
            steps = min(cfg.lanczos_steps, dim)
            try:
                # the check's graph when it ran on exactly these samples (a non-piecewise-linear net)
                same = curv is not None and torch.equal(chk, fallback)
                sub = curv if same else InputCurvature(check_model, sub_x, sub_y)
                start = torch.randn(len(fallback), dim, generator=ctx.generator, dtype=torch.float64).to(x.device)
                lz = batched_lanczos(sub.loss_hvp, start, steps)
                if cfg.decision_hessian:
                    start_d = torch.randn(len(fallback), dim, generator=ctx.generator, dtype=torch.float64).to(x.device)
                    lzd = batched_lanczos(sub.decision_hvp, start_d, steps)
            except RuntimeError as exc:
                raise common.second_order_error(exc) or exc
            idx = fallback.cpu()
            ritz = lz.ritz.cpu()
            kk = min(k, ritz.shape[1])
            top[idx] = float("nan")
            top[idx, :kk] = ritz[:, :kk]
            lam1[idx] = ritz[:, 0]
            lam_min[idx] = torch.from_numpy(np.nanmin(ritz.numpy(), axis=1))
            trace[idx] = (trace.to(x.device)[fallback] + hutch[fallback]).cpu()
            rank[idx] = float("nan")
            if cfg.decision_hessian:
                d_hess[idx] = torch.from_numpy(np.nanmax(np.abs(lzd.ritz.cpu().numpy()), axis=1))
            else:
                d_hess[idx] = float("nan")

        # eigenvalue noise: the Jacobian's dtype for the c×c method, float64 for the Lanczos fallback
        noise = torch.where(exact, rounding_floor(spectral_sq, torch.ones_like(spectral_sq), xd.dtype),
                            rounding_floor(spectral_sq, torch.ones_like(spectral_sq), torch.float64)).cpu()
        psd = lam_min >= -(cfg.psd_rtol * lam1.clamp_min(0) + noise)
        d = geo.decision.cpu()
        dg1 = geo.decision_grad.double().abs().sum(dim=1).cpu()
        bound = eps * dg1 + 0.5 * eps**2 * dim * d_hess
        columns = {
            "method_exact": exact.cpu().numpy().astype(np.float64),
            "ggn_residual": residual.cpu().numpy(),
            "lambda_min": lam_min.numpy(),
            "trace": trace.numpy(),
            "rank": rank.numpy(),
            "psd": psd.numpy().astype(np.float64),
            "decision": d.numpy(),
            "decision_grad_l1": dg1.numpy(),
            "decision_hessian_max_abs": d_hess.numpy(),
            "yu_bound": bound.numpy(),
            "yu_slack": (d - bound).numpy(),
            "yu_safe": (bound < d).numpy().astype(np.float64),
        }
        return _BatchOut(columns, top.numpy())

    def _summary(self, cols: dict[str, np.ndarray], groups: SampleGroups, exact: np.ndarray, eps: float, eps_source: str,
                 c: int, m: int, dim: int, rank_bound: int, k: int, ggn_rtol: float, rank_rtol: float,
                 ctx: ProbeContext) -> dict[str, Any]:
        n = len(exact)
        lam1 = cols["lambda_1"]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_min = np.where(lam1 > 0, cols["lambda_min"] / lam1, np.nan)
        ranks = cols["rank"][exact]
        all_pl = bool(exact.all())
        psd_all = bool((cols["psd"] == 1).all())
        rank_ok = bool(ranks.size == 0 or np.nanmax(ranks) <= rank_bound)
        holds = all_pl and psd_all and rank_ok
        if holds:
            verdict = (f"holds on all {n} samples: H_x·v = J_zᵀ H_L J_z·v to {ggn_rtol:g} relative (or autograd's "
                       f"rounding floor) for random v, so H_x is PSD with rank ≤ {rank_bound}")
        elif exact.any():
            verdict = (f"does not hold everywhere: the net is not piecewise linear at {int((~exact).sum())} of {n} "
                       f"samples (H ≠ GGN), and {int((cols['psd'] == 0).sum())} samples have negative eigenvalues")
        else:
            verdict = (f"does not hold: H ≠ GGN at every sample (the net is not piecewise linear), and "
                       f"{int((cols['psd'] == 0).sum())} of {n} samples have negative eigenvalues")
        sparsity_bound = 1.0 - rank_bound / dim
        correct = groups.masks["correct"]
        safe = int(((cols["yu_safe"] == 1) & correct).sum())
        summary: dict[str, Any] = {
            "epsilon": eps, "epsilon_source": eps_source, "precision": self.config.precision,
            "num_classes": c, "hessian_classes": m, "input_dim": dim, "eigenvalue_columns": k,
            "group_sizes": {g: int(v.sum()) for g, v in groups.masks.items()},
            "robustness_source": groups.robustness_source,
            "methods": {METHOD_EXACT: int(exact.sum()), METHOD_LANCZOS: int((~exact).sum()),
                        "ggn_rtol": ggn_rtol, "check_vectors": self.config.check_vectors,
                        "lanczos_steps": min(self.config.lanczos_steps, dim)},
            "theorem1": {
                "holds": holds,
                "verdict": verdict,
                "piecewise_linear_fraction": float(exact.mean()) if n else None,
                "ggn_residual": describe(cols["ggn_residual"]),
                "psd_fraction": float((cols["psd"] == 1).mean()) if n else None,
                "min_lambda_relative": float(np.nanmin(rel_min)) if np.isfinite(rel_min).any() else None,
                "rank_bound": rank_bound,
                "rank_max": float(np.nanmax(ranks)) if ranks.size else None,
                "rank_rtol": rank_rtol,
                "module_swaps": len(ctx.model.provenance.module_swaps),
            },
            "hessian_eigenvalue_sparsity": {
                "lower_bound": sparsity_bound,
                "statement": (f"for a piecewise-linear net at most {rank_bound} of the {dim} eigenvalues of H_x are "
                              f"non-zero, so its eigenvalue sparsity is ≥ {sparsity_bound:.4f} by the rank bound, "
                              "and ∇²x d = 0: neither number can separate models"),
            },
            "yu_safe_fraction": wilson_interval(safe, int(correct.sum())),
        }
        for key in ("lambda_1", "lambda_min", "trace", "rank", "ggn_residual", "decision_hessian_max_abs",
                    "yu_bound", "yu_slack"):
            summary[key] = by_group(cols[key], groups)
        return summary

    def _flags_and_notes(self, summary: dict[str, Any], cols: dict[str, np.ndarray], exact: np.ndarray,
                         ctx: ProbeContext, m: int, c: int) -> tuple[list[Flag], list[str]]:
        flags = []
        n = len(exact)
        if (~exact).any():
            flags.append(Flag(
                "input_hessian_fallback", Severity.INFO,
                f"H·v differs from GGN·v at {int((~exact).sum())} of {n} samples (median residual "
                f"{np.nanmedian(cols['ggn_residual']):.3g}): the net is not piecewise linear there, so their "
                f"eigenvalues come from Lanczos on HVPs, not the exact c×c problem", self.name))
        not_psd = cols["psd"] == 0
        if not_psd.any():
            flags.append(Flag(
                "input_hessian_indefinite", Severity.INFO,
                f"the input Hessian of the loss has negative eigenvalues at {int(not_psd.sum())} of {n} samples "
                f"(min λ_min/λ1 = {summary['theorem1']['min_lambda_relative']:.3g}): Yao's Theorem 1 does not "
                f"hold on this model", self.name))
        notes = [f"Yao's Theorem 1 {summary['theorem1']['verdict']}."]
        if ctx.model.provenance.module_swaps:
            notes.append("second derivatives through exact-equivalent module swaps: "
                         + "; ".join(ctx.model.provenance.module_swaps[:5])
                         + (" …" if len(ctx.model.provenance.module_swaps) > 5 else ""))
        if m < c:
            notes.append(f"the c×c problem keeps the {m} most probable of {c} classes (knob top_m)")
        return flags, notes
