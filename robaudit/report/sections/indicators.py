"""Report section, indicator tests: the AUROC grids (one small table per attack, ε across), a
correlation heat-map of the ranked indicators (the full matrix as a collapsed table), scatter plots
of the top indicators against the robustness outcome, and every verdict line and test collapsed
(from ``analysis``). The ranked table itself sits in section 1 (``robaudit.analysis.ranking``)."""
from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from robaudit.analysis.ranking import distinct_labels, rank_indicators
from robaudit.report import figures

SCATTERS = 3  # scatter plots for the top indicators only
HEATMAP = 10  # the ranked table's indicators (top five and worst five)


def build(results: dict[str, Any]) -> dict[str, Any]:
    """Context for ``sections/indicators.html.j2``; empty when the analysis did not run."""
    analysis = results.get("analysis") or {}
    if not analysis.get("tests"):
        return {}
    labels = distinct_labels(analysis.get("labels", {}))
    tests = sorted(analysis["tests"], key=lambda t: (t["p_adjusted"] is None, t["p_adjusted"] or 1.0))
    continuous = sorted((t for t in tests if t["kind"] == "spearman"), key=lambda t: t["outcome"])  # stable: by p within
    ranked = [row["indicator"] for row in rank_indicators(analysis)]
    shown = ranked[:HEATMAP // 2] + ranked[HEATMAP // 2:][-(HEATMAP // 2):]
    matrix = analysis.get("matrix")
    return {
        "analysis": analysis,
        "tests": tests,
        "headline": continuous or tests[:20],
        "auroc_grids": _auroc_grids(analysis["tests"], analysis.get("method", {}).get("alpha", 0.05), ranked),
        "labels": labels,
        "matrix_svg": _matrix_svg(_sub_matrix(matrix, [*shown, analysis.get("confounder"),
                                                        (analysis.get("scatter") or {}).get("outcome")]), labels)
        if matrix else None,
        "matrix_table": _matrix_table(matrix, labels) if matrix else None,
        "scatter_png": _scatter_png(analysis["scatter"], labels, ranked[:SCATTERS]) if analysis.get("scatter") else None,
    }


def _eps_of(outcome: str) -> str:
    """``0.05`` for ``attack.fgsm/success_eps_0.05`` (the budget part of a success column)."""
    return outcome.rsplit("eps_", 1)[1] if "eps_" in outcome else outcome


def _auroc_grids(tests: list[dict[str, Any]], alpha: float, ranked: list[str]) -> list[dict[str, Any]]:
    """One grid per attack: indicators (in ranked order) × its budgets, AUROC per cell, marked when its
    Benjamini–Hochberg-adjusted p is below ``alpha``; the worst case first."""
    binary = [t for t in tests if t["kind"] == "auroc"]
    cells = {(t["indicator"], t["outcome"]): t for t in binary}
    attacks: dict[str, list[str]] = {}
    for t in binary:
        attack = t["outcome"].split("/", 1)[0] + ("/" + t["outcome"].split("_eps_")[0].split("success_")[-1]
                                                 if "success_l" in t["outcome"] else "")
        outs = attacks.setdefault(attack, [])
        if t["outcome"] not in outs:
            outs.append(t["outcome"])
    indicators = [i for i in ranked if any(t["indicator"] == i for t in binary)]
    grids = []
    for attack, outcomes in sorted(attacks.items(), key=lambda kv: (not kv[0].startswith("attack.worst_case"), kv[0])):
        rows = []
        for ind in indicators:
            row = []
            for out in outcomes:
                t = cells.get((ind, out))
                value = ((t or {}).get("estimate") or {}).get("value")
                row.append({"value": value,
                            "significant": bool(t and t["p_adjusted"] is not None and t["p_adjusted"] < alpha),
                            "strength": None if value is None else min(1.0, abs(value - 0.5) * 2)})
            rows.append({"indicator": ind, "cells": row})
        grids.append({"attack": attack, "outcomes": outcomes, "eps": [_eps_of(o) for o in outcomes], "rows": rows})
    return grids


def _sub_matrix(matrix: dict[str, Any], keep: list[str]) -> dict[str, Any]:
    """The correlation matrix cut to the columns in ``keep`` (in the matrix's order)."""
    chosen = [i for i, c in enumerate(matrix["columns"]) if c in keep]
    return {"columns": [matrix["columns"][i] for i in chosen], "rho": [[matrix["rho"][i][j] for j in chosen] for i in chosen]}


def _matrix_table(matrix: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """The full correlation matrix as table rows (value and a colour strength per cell)."""
    names = [labels.get(c, c) for c in matrix["columns"]]
    rows = [{"name": n, "cells": [{"value": v, "strength": None if v is None else min(1.0, abs(v))} for v in row]}
            for n, row in zip(names, matrix["rho"])]
    return {"names": names, "rows": rows}


def _matrix_svg(matrix: dict[str, Any], labels: dict[str, str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [labels.get(c, c) for c in matrix["columns"]]
    rho = np.array([[np.nan if v is None else v for v in row] for row in matrix["rho"]], dtype=float)
    size = 2.5 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=100)
    wide = figures.text_width(fig, names, 9)  # the tick labels are indicator names, of any length
    left, bottom, right, top = wide + 0.2, wide * 0.643 + 0.35, 0.9, 0.1  # sin 40°
    # the cells keep their size whatever the labels' length: the canvas grows around them
    fig.set_size_inches(max(size + 1.5, left + right + 0.55 * len(names) + 1.0),
                        max(size, bottom + top + 0.55 * len(names) + 0.5))
    figures.fixed_layout(fig, left=left, bottom=bottom, right=right, top=top)
    im = ax.imshow(rho, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(rho[i, j]):
                ax.text(j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(rho[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="Spearman ρ")
    return figures.svg(fig)


def _scatter_png(scatter: dict[str, Any], labels: dict[str, str], top: list[str]) -> str:
    """PNG of the ``top`` indicators (or the first few stored) against the scatter outcome, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: scatter["series"][k] for k in top if k in scatter["series"]} or dict(list(scatter["series"].items())[:SCATTERS])
    cols = len(series)
    fig, axes = plt.subplots(1, cols, figsize=(4.6 * cols, 3.8), dpi=100, squeeze=False)
    figures.fixed_layout(fig, left=0.95, bottom=0.75, top=0.15, gap=1.0)
    for ax, (name, pts) in zip(axes.flat, series.items()):
        x, y = np.asarray(pts["x"]), np.asarray(pts["y"])
        ax.scatter(x, y, s=6, alpha=0.5, color="#2f5da8", linewidths=0)
        if len(x) and np.all(x > 0) and x.max() / max(x.min(), 1e-300) > 100:
            ax.set_xscale("log")  # heavy-tailed indicators spread over decades
        # wrapped to the fixed margins (a label longer than the panel would leave the canvas)
        ax.set_xlabel(textwrap.fill(labels.get(name, name), 56), fontsize=10)
        ax.set_ylabel(textwrap.fill(labels.get(scatter["outcome"], scatter["outcome"]), 40), fontsize=10)
        ax.tick_params(labelsize=9)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    return figures.png_data_uri(fig)
