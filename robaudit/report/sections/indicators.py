"""Report section 6, indicator tests: verdict lines for the continuous robustness outcomes (minimal
ε, distances), an AUROC grid of indicators × attack success, every test in a collapsed table, a
correlation matrix and scatter plots of each indicator against the robustness outcome (from ``analysis``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from robaudit.report import figures


def build(results: dict[str, Any]) -> dict[str, Any]:
    """Context for ``sections/indicators.html.j2``; empty when the analysis did not run."""
    analysis = results.get("analysis") or {}
    if not analysis.get("tests"):
        return {}
    labels = analysis.get("labels", {})
    tests = sorted(analysis["tests"], key=lambda t: (t["p_adjusted"] is None, t["p_adjusted"] or 1.0))
    continuous = sorted((t for t in tests if t["kind"] == "spearman"), key=lambda t: t["outcome"])  # stable: by p within
    return {
        "analysis": analysis,
        "tests": tests,
        "headline": continuous or tests[:20],
        "auroc_grid": _auroc_grid(analysis["tests"], analysis.get("method", {}).get("alpha", 0.05)),
        "labels": labels,
        "matrix_svg": _matrix_svg(analysis["matrix"], labels) if analysis.get("matrix") else None,
        "scatter_png": _scatter_png(analysis["scatter"], labels) if analysis.get("scatter") else None,
    }


def _auroc_grid(tests: list[dict[str, Any]], alpha: float) -> dict[str, Any] | None:
    """Indicators × binary outcomes (attack success at each budget): AUROC per cell, marked when its
    Benjamini–Hochberg-adjusted p is below ``alpha``. ``None`` without binary outcomes."""
    binary = [t for t in tests if t["kind"] == "auroc"]
    if not binary:
        return None
    indicators = list(dict.fromkeys(t["indicator"] for t in binary))
    outcomes = list(dict.fromkeys(t["outcome"] for t in binary))
    cells = {(t["indicator"], t["outcome"]): t for t in binary}
    rows = []
    for ind in indicators:
        row = []
        for out in outcomes:
            t = cells.get((ind, out))
            est = (t or {}).get("estimate") or {}
            value = est.get("value")
            row.append({"value": value, "significant": bool(t and t["p_adjusted"] is not None and t["p_adjusted"] < alpha),
                        "strength": None if value is None else min(1.0, abs(value - 0.5) * 2)})
        rows.append({"indicator": ind, "cells": row})
    return {"outcomes": outcomes, "rows": rows}


def _matrix_svg(matrix: dict[str, Any], labels: dict[str, str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [labels.get(c, c) for c in matrix["columns"]]
    rho = np.array([[np.nan if v is None else v for v in row] for row in matrix["rho"]], dtype=float)
    size = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    im = ax.imshow(rho, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(rho[i, j]):
                ax.text(j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(rho[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="Spearman ρ")
    return figures.svg(fig)


def _scatter_png(scatter: dict[str, Any], labels: dict[str, str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = scatter["series"]
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), dpi=100, squeeze=False)
    for ax, (name, pts) in zip(axes.flat, series.items()):
        x, y = np.asarray(pts["x"]), np.asarray(pts["y"])
        ax.scatter(x, y, s=6, alpha=0.5, color="#2f5da8", linewidths=0)
        if len(x) and np.all(x > 0) and x.max() / max(x.min(), 1e-300) > 100:
            ax.set_xscale("log")  # heavy-tailed indicators spread over decades
        ax.set_xlabel(labels.get(name, name), fontsize=8)
        ax.set_ylabel(labels.get(scatter["outcome"], scatter["outcome"]), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    return figures.png_data_uri(fig)
