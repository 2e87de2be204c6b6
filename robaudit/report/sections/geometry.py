"""Report section, input geometry: headline medians by group, Yao's Theorem 1 verdict, Yu's
indicator, distributions split by correct / robust, decision and loss surfaces, Jacobian heat-maps.

Everything comes from ``results.json`` (summaries and artifacts of the ``geometry.*`` probes), so
``robaudit report`` redraws it without recomputing.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from robaudit.analysis.ranking import rank_indicators
from robaudit.report import figures

GRADIENTS = "geometry.gradients"
HESSIAN = "geometry.input_hessian"
BOUNDARY = "geometry.boundary"
SURFACES = "geometry.surfaces"

GROUP_ORDER = ("all", "correct", "incorrect", "robust", "non_robust")
GROUP_LABELS = {"all": "all", "correct": "correct", "incorrect": "wrong", "robust": "robust",
                "non_robust": "non-robust"}
GROUP_COLOURS = {"all": "#888888", "correct": "#2f5da8", "incorrect": "#b3261e", "robust": "#2e7d32",
                 "non_robust": "#e08a00"}

# (probe, summary key, label, unit) of the headline table, in display order.
HEADLINE = (
    (GRADIENTS, "loss_grad_l2", "‖∇x J‖₂ (Yao)", "nats / L2 px"),
    (GRADIENTS, "loss_grad_l1", "‖∇x J‖₁", "nats / L∞ px"),
    (GRADIENTS, "logit_jacobian_spectral", "‖J_z‖₂", "logits / L2 px"),
    (GRADIENTS, "decision", "d(x) = z_y − max z_i (Yu)", "logits"),
    (GRADIENTS, "decision_grad_l1", "‖∇x d‖₁", "logits / L∞ px"),
    (GRADIENTS, "linear_margin_linf", "d/‖∇x d‖₁ (linearised L∞ margin)", "L∞ px"),
    (GRADIENTS, "linear_margin_l2", "d/‖∇x d‖₂ (linearised L2 margin)", "L2 px"),
    (HESSIAN, "lambda_1", "λ1^x of the CE input Hessian (Yao)", "nats / L2 px²"),
    (HESSIAN, "trace", "trace of the input Hessian", "nats / L2 px²"),
    (HESSIAN, "yu_slack", "d − Yu's bound at ε", "logits"),
    (BOUNDARY, "linf_gradient", "boundary distance along −sign ∇x d", "L∞ px"),
    (BOUNDARY, "linf_random_median", "… along random ±1 directions (median)", "L∞ px"),
    (BOUNDARY, "l2_gradient", "boundary distance along −∇x d", "L2 px"),
    (BOUNDARY, "l2_random_median", "… along random directions (median)", "L2 px"),
)

HISTOGRAM_LABELS = {
    "loss_grad_l1": "‖∇x J‖₁", "logit_jacobian_spectral": "‖J_z‖₂", "decision_grad_l1": "‖∇x d‖₁",
    "linear_margin_linf": "d/‖∇x d‖₁ (L∞ px)", "lambda_1": "λ1^x", "trace": "tr H_x",
    "ggn_residual": "‖Hv − GGNv‖/‖Hv‖", "yu_slack": "d − Yu bound (logits)",
    "linf_gradient": "boundary distance, −sign ∇x d (L∞ px)",
    "linf_random_median": "boundary distance, random ±1 (L∞ px)",
    "l2_gradient": "boundary distance, −∇x d (L2 px)", "l2_ratio": "random / gradient distance (L2)",
}


def build(results: dict[str, Any]) -> dict[str, Any]:
    """Context for ``sections/geometry.html.j2`` from the finished ``geometry.*`` probes."""
    probes = {name: p for name, p in results.get("probes", {}).items()
              if name.startswith("geometry.") and p.get("status") == "ok"}
    groups = _groups_present(probes)
    ctx: dict[str, Any] = {
        "probes": sorted(probes),
        "groups": [{"id": g, "label": GROUP_LABELS[g]} for g in groups],
        "headline": _headline(probes, groups),
        "epsilon": _first(probes, "epsilon"),
        "robustness_source": _first(probes, "robustness_source"),
        "theorem1": None, "yu": None, "sparsity": None, "methods": None,
        "histograms": [], "spectrum_svg": None, "surfaces": [], "boundary": None,
        "surface_direction": None, "surface_clip": False,
    }
    featured = featured_indicators(results)
    for name, p in sorted(probes.items()):
        for key, hist in p.get("artifacts", {}).get("histograms", {}).items():
            if hist.get("edges"):
                ctx["histograms"].append({"key": key, "probe": name, "svg": _histogram_svg(hist, _label(key)),
                                          "featured": f"{name}/{key}" in featured})
    if HESSIAN in probes:
        s = probes[HESSIAN]["summary"]
        ctx["theorem1"] = s.get("theorem1")
        ctx["methods"] = s.get("methods")
        ctx["sparsity"] = s.get("hessian_eigenvalue_sparsity")
        ctx["yu"] = {"safe": s.get("yu_safe_fraction"), "epsilon": s.get("epsilon")}
        spectrum = probes[HESSIAN].get("artifacts", {}).get("median_spectrum")
        if spectrum and any(v is not None for g in groups for v in spectrum.get(g, [])):
            ctx["spectrum_svg"] = _spectrum_svg(spectrum, groups)
    if BOUNDARY in probes:
        s = probes[BOUNDARY]["summary"]
        ctx["boundary"] = {"found": s.get("found"), "within": s.get("linf_gradient_within_epsilon"),
                           "ratio_linf": _median(s, "linf_ratio"), "ratio_l2": _median(s, "l2_ratio"),
                           "t_max": s.get("t_max")}
    if SURFACES in probes:
        art = probes[SURFACES].get("artifacts", {})
        heat = {h["sample_id"]: h for h in art.get("heatmaps", [])}
        for surf in art.get("surfaces", []):
            ctx["surfaces"].append({
                "sample_id": surf["sample_id"], "label": surf["label"], "pred": surf["pred"],
                "group": GROUP_LABELS.get(surf["group"], surf["group"]),
                "inside": surf.get("min_decision_in_ball") is not None and surf["min_decision_in_ball"] <= 0,
                "png": _surface_png(surf, heat.get(surf["sample_id"]), art.get("direction", "sign_gradient")),
            })
        ctx["surface_direction"] = art.get("direction")
        ctx["surface_clip"] = bool(art.get("clip"))
    return ctx


def featured_indicators(results: dict[str, Any], k: int = 3) -> list[str]:
    """The per-sample columns of the top ``k`` rows of the report's ranked indicator table: their
    histograms stay open, the rest go into a collapsed block."""
    analysis = results.get("analysis") or {}
    return [row["indicator"] for row in rank_indicators(analysis)[:k]] if analysis.get("tests") else []


def _label(key: str) -> str:
    if key.startswith("jacobian_sparsity_"):
        return f"Jacobian sparsity of ∇x d at t = {key.rsplit('_', 1)[1]}"
    return HISTOGRAM_LABELS.get(key, key)


def _groups_present(probes: dict[str, Any]) -> list[str]:
    present: set[str] = set()
    for p in probes.values():
        present.update(p.get("summary", {}).get("group_sizes", {}) or {})
    return [g for g in GROUP_ORDER if g in present]


def _first(probes: dict[str, Any], key: str) -> Any:
    for name in (GRADIENTS, HESSIAN, BOUNDARY, SURFACES):
        if name in probes and probes[name].get("summary", {}).get(key) is not None:
            return probes[name]["summary"][key]
    return None


def _median(summary: dict[str, Any], key: str) -> float | None:
    return (summary.get(key) or {}).get("correct", {}).get("median")


def _headline(probes: dict[str, Any], groups: list[str]) -> list[dict[str, Any]]:
    rows = []
    for probe, key, label, unit in HEADLINE:
        node = probes.get(probe, {}).get("summary", {}).get(key)
        if not isinstance(node, dict):
            continue
        rows.append({"label": label, "unit": unit, "key": f"{probe}/{key}",
                     "medians": [(node.get(g) or {}).get("median") for g in groups]})
    return rows


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    return figures.svg(fig)


def _histogram_svg(hist: dict[str, Any], title: str) -> str:
    """Step histograms per group (density within each group, so group sizes do not hide shapes)."""
    plt = _plt()
    edges = np.asarray(hist["edges"], dtype=float)
    fig, ax = plt.subplots(figsize=(3.4, 2.4), dpi=100)
    figures.fixed_layout(fig, left=0.6, bottom=0.45, right=0.12, top=0.1)
    for g in GROUP_ORDER:
        counts = hist["counts"].get(g)
        if g == "all" or not counts or sum(counts) == 0:
            continue
        c = np.asarray(counts, dtype=float)
        ax.stairs(c / c.sum(), edges, color=GROUP_COLOURS[g], lw=1.4, label=f"{GROUP_LABELS[g]} ({int(c.sum())})")
    if hist.get("scale") == "log":
        ax.set_xscale("log")
    ax.set_xlabel(title, fontsize=8)
    ax.set_ylabel("fraction of group", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False)
    return _svg(fig)


def _spectrum_svg(spectrum: dict[str, Any], groups: list[str]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 2.4), dpi=100)
    figures.fixed_layout(fig, left=0.7, bottom=0.45, right=0.12, top=0.1)
    idx = spectrum["index"]
    for g in groups:
        vals = [v if v is not None and v > 0 else np.nan for v in spectrum.get(g, [])]
        if g == "all" or not np.isfinite(vals).any():
            continue
        ax.plot(idx[: len(vals)], vals, "o-", ms=3, color=GROUP_COLOURS[g], label=GROUP_LABELS[g])
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index k", fontsize=8)
    ax.set_ylabel("median λ_k of H_x", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False)
    return _svg(fig)


def _surface_png(surf: dict[str, Any], heat: dict[str, Any] | None, direction: str) -> str:
    """PNG data URI: decision surface with d = 0 and the ε-ball's trace; CE-loss surface; image and ∇x d."""
    plt = _plt()
    coords = np.asarray(surf["coords"], dtype=float)
    dec = np.asarray(surf["decision"], dtype=float)
    loss = np.asarray(surf["loss"], dtype=float)
    ball = np.asarray(surf["linf_over_epsilon"], dtype=float)
    panels = 4 if heat else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.0 * panels, 2.8), dpi=100)
    figures.fixed_layout(fig, left=0.5, bottom=0.45, right=0.5, top=0.25, gap=0.85)
    axis_u = "PGD δ" if direction == "pgd" else "ε·sign ∇x J"
    for ax, grid, title, cmap in ((axes[0], dec, "decision surface d", "RdBu"),
                                  (axes[1], loss, "CE-loss surface", "viridis")):
        if cmap == "RdBu":
            lim = float(np.nanmax(np.abs(grid))) or 1.0
            cs = ax.contourf(coords, coords, grid, levels=21, cmap=cmap, vmin=-lim, vmax=lim)
            if np.nanmin(grid) < 0 < np.nanmax(grid):
                ax.contour(coords, coords, grid, levels=[0.0], colors="k", linewidths=1.6)
        else:
            cs = ax.contourf(coords, coords, grid, levels=21, cmap=cmap)
        ax.contour(coords, coords, ball, levels=[1.0], colors="w" if cmap == "viridis" else "#333",
                   linewidths=1.0, linestyles="--")
        ax.plot([0], [0], "k+", ms=8)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(f"a (× {axis_u})", fontsize=7)
        ax.set_ylabel("b (× random, same L2 norm)", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(cs, ax=ax, fraction=0.046).ax.tick_params(labelsize=6)
    if heat:
        img = np.asarray(heat["image"], dtype=float)
        jac = np.asarray(heat["decision_grad"], dtype=float)
        if img.shape[0] == 3:
            axes[2].imshow(np.clip(img.transpose(1, 2, 0), 0, 1))
        else:
            axes[2].imshow(img.mean(axis=0), cmap="gray", vmin=0, vmax=1)
        axes[2].set_title(f"input (label {heat['label']})", fontsize=8)
        j = jac.sum(axis=0)
        lim = float(np.abs(j).max()) or 1.0
        im = axes[3].imshow(j, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[3].set_title("∇x d (summed over channels)", fontsize=8)
        fig.colorbar(im, ax=axes[3], fraction=0.046).ax.tick_params(labelsize=6)
        for ax in axes[2:]:
            ax.set_xticks([])
            ax.set_yticks([])
    return figures.png_data_uri(fig, dpi=90)  # filled contours and images: far smaller as PNG than as SVG
