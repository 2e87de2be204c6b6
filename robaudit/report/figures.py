"""Small charts for the report, drawn with matplotlib and inlined as SVG (no network, no JS)."""
from __future__ import annotations

import io
from typing import Any


# Text stays text (the browser draws it): small charts come out about 5x smaller than with glyph paths.
# A fixed hash salt and no date keep the bytes reproducible: matplotlib otherwise salts its SVG ids
# with a random UUID and stamps the creation date into the metadata.
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "robaudit"}


def fixed_layout(fig: Any, *, left: float = 0.62, bottom: float = 0.5, right: float = 0.15, top: float = 0.12,
                 gap: float | None = None) -> None:
    """Place ``fig``'s subplot grid by fixed margins instead of measuring its text.

    ``tight_layout`` and ``bbox_inches="tight"`` each lay out every label once more before the figure
    is drawn (about a third of a report's rendering time); the margins here are sized for the labels
    each figure draws (tests/test_report_figures.py checks that every text stays inside the canvas).

    Args:
        left, bottom, right, top: margins in inches from the figure's edges.
        gap: the space between side-by-side panels in inches (default: matplotlib's).
    """
    width, height = fig.get_size_inches()
    params: dict[str, float] = {"left": left / width, "right": 1 - right / width,
                                "bottom": bottom / height, "top": 1 - top / height}
    panels = max((ax.get_subplotspec().get_gridspec().ncols for ax in fig.axes if ax.get_subplotspec()), default=1)
    if gap is not None and panels > 1:
        cell = (width - left - right - (panels - 1) * gap) / panels
        params["wspace"] = gap / cell
    fig.subplots_adjust(**params)


def text_width(fig: Any, labels: list[str], size: float) -> float:
    """The width in inches of the widest of ``labels`` at font ``size`` (points), as drawn on ``fig``."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=size)
    widths = [renderer.get_text_width_height_descent(s, prop, ismath=False)[0] for s in labels]
    return max(widths, default=0.0) / fig.dpi


def _svg(fig: Any) -> str:
    import matplotlib
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog so the SVG can sit inside HTML


def reliability_diagram(bins: list[dict[str, Any]]) -> str:
    """SVG of accuracy vs confidence per bin, bar width ∝ bin, with the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
    fixed_layout(fig)
    filled = [b for b in bins if b["count"]]
    ax.bar([(b["low"] + b["high"]) / 2 for b in filled], [b["accuracy"] for b in filled],
           width=[(b["high"] - b["low"]) * 0.9 for b in filled], color="#4c72b0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="#888", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (p_top)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    return _svg(fig)


def confusion_matrix(matrix: list[list[int]]) -> str:
    """SVG heat-map of a K×K confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    k = m.shape[0]
    size = min(6.0, 2.0 + 0.25 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=100)
    fixed_layout(fig, left=0.6, bottom=0.5)
    ax.imshow(m, cmap="Blues")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return _svg(fig)


def png_data_uri(fig: Any, dpi: int = 110) -> str:
    """A figure as a ``data:image/png;base64,…`` URI (for dense scatters, where SVG would be large)."""
    import base64

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def svg(fig: Any) -> str:
    """A figure as inline SVG markup (public alias of the module's SVG writer)."""
    return _svg(fig)


def robust_accuracy_curves(curves: list[dict[str, Any]], title: str) -> str:
    """SVG of robust accuracy vs ε for several runs, each with its 95 % CI band.

    Args:
        curves: ``[{"run": name, "points": [{"eps", "value", "low", "high"}, ...]}, ...]``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=100)
    fixed_layout(fig, top=0.3)
    for curve in curves:
        pts = curve["points"]
        eps = [p["eps"] for p in pts]
        line, = ax.plot(eps, [p["value"] for p in pts], marker="o", ms=3, lw=1.4, label=curve["run"])
        if all(p.get("low") is not None and p.get("high") is not None for p in pts):
            ax.fill_between(eps, [p["low"] for p in pts], [p["high"] for p in pts], color=line.get_color(), alpha=0.18)
    ax.set_ylim(0, 1)
    ax.set_xlabel("ε (pixel units)")
    ax.set_ylabel("robust accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def loss_path(t: list[float], losses: dict[str, list[float]], start: str = "audit model",
              end: str = "other checkpoint") -> str:
    """SVG of Yao's Fig 5: the mean CE loss (nats) along (1 − t)·θ_start + t·θ_end, one line per sample set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0), dpi=100)
    fixed_layout(fig, left=0.7)
    for name, values in losses.items():
        ax.plot(t, values, "-", lw=1.4, label=f"{name} set")
    for edge in (0.0, 1.0):
        ax.axvline(edge, color="#999", lw=0.6, ls="--")
    ax.set_xlabel(f"t (0: {start}, 1: {end})")
    ax.set_ylabel("mean CE loss J (nats)")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
