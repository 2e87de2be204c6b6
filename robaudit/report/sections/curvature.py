"""Report section: parameter curvature — the certified top-k spectrum per sample set, Yao's power
iteration beside it, the trace, the SLQ spectral density, the loss landscapes (1-D along v1 with the
quadratic model, the filter-normalised random cut, 2-D along v1 and v2, the checkpoint path), the
quadratic-fit check against λ1, and Kamath et al.'s caveat.

Everything is drawn from ``results.json`` (summaries and artifacts of the ``curvature.*`` probes),
so ``robaudit report`` redraws it without recomputing. Figures are inline SVG.
"""
from __future__ import annotations

import math
from typing import Any

from robaudit.report import figures

TOPK = "curvature.topk"
POWER = "curvature.power"
TRACE = "curvature.trace"
DENSITY = "curvature.density"
LANDSCAPE = "curvature.landscape"

KAMATH = ("λ1 of the parameter Hessian is not invariant to reparametrisation: rescaling the weights of "
          "consecutive ReLU layers changes it without changing a single prediction (Dinh et al.). Yao et al. "
          "found that models trained with larger batches have larger λ1 and are less robust; Kamath et al. "
          "trained a model (StdCNN on Fashion-MNIST, fixed learning rate) whose λ1 rose with the batch size "
          "while its robustness rose too. robaudit therefore reports curvature as a measurement and tests its "
          "link to robustness on the models given; it never asserts that link.")
COLOURS = ("#2f5da8", "#e08a00", "#2e7d32", "#b3261e", "#7b4fa0", "#555555")


def _svg(fig: Any) -> str:
    return figures.svg(fig)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _set_label(base: str, sub: str) -> str:
    return base if sub == "full" else f"{base}, B_H = {sub.removeprefix('b_h_')}"


def _sets(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(_set_label(base, sub), entry) for base, subs in summary.get("sets", {}).items()
            for sub, entry in subs.items() if isinstance(entry, dict)]


def build(results: dict[str, Any]) -> dict[str, Any]:
    """Context for ``sections/curvature.html.j2`` from the finished ``curvature.*`` probes."""
    all_probes = {n: p for n, p in results.get("probes", {}).items() if n.startswith("curvature.")}
    ok = {n: p for n, p in all_probes.items() if p.get("status") == "ok"}
    ctx: dict[str, Any] = {
        "kamath": KAMATH, "spectra": [], "spectrum_svg": None, "power": [], "trace": [], "density_svg": None,
        "density": [], "landscape": None, "not_ok": [
            {"name": n, "status": p.get("status"), "message": (p.get("error") or {}).get("message")}
            for n, p in sorted(all_probes.items()) if p.get("status") != "ok"],
        "notes": {n: [x for x in p.get("notes", []) if "Kamath" not in x] for n, p in sorted(ok.items())},
        "operator": None,
    }
    if TOPK in ok:
        s = ok[TOPK]["summary"]
        ctx["operator"] = s.get("operator")
        ctx["spectra"] = [_spectrum_row(label, e) for label, e in _sets(s)]
        ctx["spectrum_svg"] = _spectrum_svg(_sets(s), "restarted Lanczos") if ctx["spectra"] else None
    if POWER in ok:
        ctx["power"] = [_spectrum_row(label, e) for label, e in _sets(ok[POWER]["summary"])]
        if not ctx["spectrum_svg"] and ctx["power"]:
            ctx["spectrum_svg"] = _spectrum_svg(_sets(ok[POWER]["summary"]), "power iteration")
    if TRACE in ok:
        ctx["trace"] = [{"set": label, "trace": e.get("trace"), "stderr": e.get("stderr"),
                         "per_parameter": e.get("trace_per_parameter"), "method": e.get("method"), "hvps": e.get("hvps"),
                         "n": e.get("n")} for label, e in _sets(ok[TRACE]["summary"])]
    if DENSITY in ok:
        curves = ok[DENSITY].get("artifacts", {}).get("density", {})
        ctx["density"] = [{"set": label, **{k: e.get(k) for k in ("ritz_max", "ritz_min", "negative_weight", "trace_slq",
                                                                   "runs", "steps", "hvps", "sigma")}}
                          for label, e in _sets(ok[DENSITY]["summary"])]
        drawn = [(_set_label(b, sub), c) for b, subs in curves.items() for sub, c in subs.items() if c.get("grid")]
        ctx["density_svg"] = _density_svg(drawn) if drawn else None
    if LANDSCAPE in ok:
        ctx["landscape"] = _landscape(ok[LANDSCAPE])
    return ctx


def _spectrum_row(label: str, e: dict[str, Any]) -> dict[str, Any]:
    values = e.get("eigenvalues") or []
    return {
        "set": label, "n": e.get("n"), "eigenvalues": values, "residuals": e.get("residuals") or [],
        "max_residual": e.get("max_residual"), "certified": e.get("certified"), "negatives": e.get("negative_count"),
        "most_negative": e.get("most_negative"), "hvps": e.get("hvps") or {}, "gradient_norm": e.get("gradient_norm"),
        "loss": e.get("loss"), "solver": e.get("solver"), "checks": e.get("checks"),
        "lanczos_difference": max((d for d in e.get("lanczos_relative_difference") or [] if d is not None), default=None),
        "iterations": e.get("iterations"),
    }


def _spectrum_svg(sets: list[tuple[str, dict[str, Any]]], solver: str) -> str:
    """Yao Figs 1, 6, 12: |λ_i| against i on a log axis, one series per set; negative eigenvalues hollow."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=100)
    figures.fixed_layout(fig, left=0.9, top=0.3)
    for (label, e), colour in zip(sets, COLOURS * 4):
        values = e.get("eigenvalues") or []
        idx = list(range(1, len(values) + 1))
        pos = [(i, v) for i, v in zip(idx, values) if v > 0]
        neg = [(i, -v) for i, v in zip(idx, values) if v < 0]
        ax.plot(idx, [abs(v) if v else math.nan for v in values], "-", color=colour, lw=0.8, alpha=0.6)
        if pos:
            ax.plot(*zip(*pos), "o", color=colour, ms=4, label=label)
        if neg:
            ax.plot(*zip(*neg), "o", mfc="none", color=colour, ms=6, label=f"{label}: λ < 0")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("eigenvalue index i (by |λ|)")
    ax.set_ylabel("|λ_i| of ∇²_θ J")
    ax.set_title(f"Top eigenvalues ({solver})", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _density_svg(curves: list[tuple[str, dict[str, Any]]]) -> str:
    """SLQ density on a log scale (as Ghorbani et al. draw it)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.0), dpi=100)
    figures.fixed_layout(fig, left=0.9)
    for (label, c), colour in zip(curves, COLOURS * 4):
        dens = [max(d, 1e-12) for d in c["density"]]
        ax.plot(c["grid"], dens, color=colour, lw=1.2, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-8)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density φ(λ) (SLQ, smoothed)")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _landscape(p: dict[str, Any]) -> dict[str, Any]:
    s = p["summary"]
    a = p.get("artifacts", {})
    out: dict[str, Any] = {
        "lambda_1": s.get("lambda_1"), "lambda_2": s.get("lambda_2"), "hessian_set": s.get("hessian_set"),
        "radius": s.get("radius"), "radius_source": s.get("radius_source"), "fit": s.get("quadratic_fit"),
        "random": s.get("random_direction"), "loss_at_theta": s.get("loss_at_theta"),
        "max_rise": s.get("max_rise_along_v1"), "interpolation": s.get("interpolation"),
        "line_svg": None, "plane_svg": None, "path_svg": None, "fit_svg": None,
    }
    if a.get("lines"):
        out["line_svg"] = _line_svg(a["lines"], a.get("random"), s)
    if a.get("fit") and s.get("quadratic_fit"):
        out["fit_svg"] = _fit_svg(a["fit"], s["quadratic_fit"], s.get("loss_at_theta", {}).get(s.get("hessian_set")))
    if a.get("plane"):
        out["plane_svg"] = _plane_svg(a["plane"])
    if a.get("interpolation"):
        out["path_svg"] = _path_svg(a["interpolation"])
    return out


def _line_svg(lines: dict[str, Any], random: dict[str, Any] | None, s: dict[str, Any]) -> str:
    """Yao Fig 2 / 7: J(θ + a·v1) per set with the quadratic model, beside the filter-normalised random cut."""
    plt = _plt()
    panels = 2 if random else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.0), dpi=100, squeeze=False)
    figures.fixed_layout(fig, left=0.75, top=0.3, gap=0.8)
    ax = axes[0][0]
    lam1 = s.get("lambda_1")
    fit = s.get("quadratic_fit") or {}
    for (name, line), colour in zip(lines.items(), COLOURS * 4):
        ax.plot(line["alphas"], line["losses"], "-", color=colour, lw=1.4, label=f"{name} set")
    hs = s.get("hessian_set")
    if lam1 is not None and hs in lines:
        j0 = (s.get("loss_at_theta") or {}).get(hs)
        g = fit.get("gradient_along_v1") or 0.0
        xs = lines[hs]["alphas"]
        ax.plot(xs, [j0 + g * x + 0.5 * lam1 * x * x for x in xs], ":", color="#000", lw=1,
                label="J(θ) + a·v1ᵀ∇J + ½λ1a²")
    ax.set_xlabel("a (step along unit v1, parameter-norm units)")
    ax.set_ylabel("mean CE loss J (nats)")
    ax.legend(fontsize=7, frameon=False)
    if random:
        ax2 = axes[0][1]
        for (name, line), colour in zip(random.items(), COLOURS * 4):
            ax2.plot(line["alphas"], line["losses"], "-", color=colour, lw=1.4, label=f"{name} set")
        ax2.set_xlabel("a (filter-normalised random direction)")
        ax2.set_title("random direction (contrast)", fontsize=9)
        ax2.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _fit_svg(points: dict[str, Any], fit: dict[str, Any], j0: float | None) -> str:
    """The local quadratic fit along v1: the loss minus its fitted linear part, against ½·c2·a² and ½·λ1·a²."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 2.8), dpi=100)
    figures.fixed_layout(fig, left=1.0)
    xs, ys = points["alphas"], points["losses"]
    c0 = fit.get("intercept", j0 if j0 is not None else ys[len(ys) // 2])
    slope = fit.get("slope") or 0.0
    ax.plot(xs, [y - c0 - slope * x for x, y in zip(xs, ys)], "o", ms=4, color=COLOURS[0],
            label="J(θ + a·v1) − c0 − c1·a")
    ax.plot(xs, [0.5 * fit["curvature"] * x * x for x in xs], "-", color=COLOURS[1],
            label=f"½·c2·a², c2 = {fit['curvature']:.5g}")
    ax.plot(xs, [0.5 * fit["lambda_1"] * x * x for x in xs], ":", color="#000", label=f"½·λ1·a², λ1 = {fit['lambda_1']:.5g}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # labels such as −0.0005 need the room
    ax.set_xlabel("a (along unit v1)")
    ax.set_ylabel("curvature part of the loss (nats)")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def _plane_svg(plane: dict[str, Any]) -> str:
    """Yao Fig 3: contours of J(θ + a·v1 + b·v2)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.0, 3.4), dpi=100)
    figures.fixed_layout(fig, left=0.8, top=0.3, right=0.3)
    cs = ax.contourf(plane["alphas"], plane["betas"], plane["losses"], levels=14, cmap="viridis")
    ax.contour(plane["alphas"], plane["betas"], plane["losses"], levels=14, colors="white", linewidths=0.3)
    fig.colorbar(cs, ax=ax, label="J (nats)")
    ax.plot([0], [0], "+", color="white", ms=9)
    ax.set_xlabel("a (along v1)")
    ax.set_ylabel("b (along v2)")
    ax.set_title(f"{plane.get('set', '')} set", fontsize=9)
    return _svg(fig)


def _path_svg(path: dict[str, Any]) -> str:
    """Yao Fig 5: J((1 − t)·θ + t·θ') from the audit model (t = 0) to the other checkpoint (t = 1)."""
    return figures.loss_path(path["t"], path["losses"])
