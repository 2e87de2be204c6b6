"""The report's figures: each is drawn once (no ``tight_layout`` or ``bbox_inches="tight"`` pass) and
still shows all of its text — matplotlib's own tight bounding box of every figure (axes, tick labels,
axis labels, titles, legends, colorbars) lies inside the figure's canvas."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.figure import Figure

from robaudit.report import figures
from robaudit.report.render import render_report

matplotlib.use("Agg")


def test_each_figure_is_drawn_once(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[Figure] = []
    draws: list[Figure] = []
    original_draw, original_svg, original_png = Figure.draw, figures._svg, figures.png_data_uri

    def draw(self: Figure, renderer: Any) -> None:
        draws.append(self)
        original_draw(self, renderer)

    def svg(fig: Figure) -> str:
        saved.append(fig)
        return original_svg(fig)

    def png(fig: Figure, dpi: int = 110) -> str:
        saved.append(fig)
        return original_png(fig, dpi)

    monkeypatch.setattr(Figure, "draw", draw)
    monkeypatch.setattr(figures, "_svg", svg)
    monkeypatch.setattr(figures, "png_data_uri", png)
    render_report(demo_copy)
    assert len(saved) >= 20  # the standard audit's report: attacks, geometry, indicators, calibration …
    assert [id(f) for f in draws] == [id(f) for f in saved]


def test_every_figure_keeps_its_text_inside_the_canvas(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overflow: dict[int, dict[str, float]] = {}
    seen: list[str] = []
    original_svg, original_png = figures._svg, figures.png_data_uri

    def inspect(fig: Figure) -> None:
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, everything matplotlib draws
        width, height = fig.get_size_inches()
        over = {"left": -box.x0, "bottom": -box.y0, "right": box.x1 - width, "top": box.y1 - height}
        texts = [t.get_text() for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text()]
        seen.append(" | ".join(texts))
        if max(over.values()) > 0.01:
            overflow[len(seen)] = {k: round(v, 3) for k, v in over.items() if v > 0.01}

    def svg(fig: Figure) -> str:
        inspect(fig)
        return original_svg(fig)

    def png(fig: Figure, dpi: int = 110) -> str:
        inspect(fig)
        return original_png(fig, dpi)

    monkeypatch.setattr(figures, "_svg", svg)
    monkeypatch.setattr(figures, "png_data_uri", png)
    render_report(demo_copy)
    assert len(seen) >= 20
    assert not overflow, {seen[i - 1]: sides for i, sides in overflow.items()}


def test_the_correlation_matrix_grows_around_long_labels_of_few_indicators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two indicators with long names (a plugin's): fixed margins wider than the default canvas once
    raised matplotlib's 'left cannot be >= right' (exit 3); now the canvas grows and every label fits."""
    from robaudit.report.sections import indicators

    boxes: list[tuple[float, float, float, float, float, float]] = []
    original = figures._svg

    def svg(fig: Figure) -> str:
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        boxes.append((box.x0, box.y0, box.x1, box.y1, *fig.get_size_inches()))
        return original(fig)

    monkeypatch.setattr(figures, "_svg", svg)
    names = ["adversarial-loss Hessian λ1 at ε = 0.05 (adv_landscape, Danskin approximation)",
             "perturbation consistency along v1 at a = 0.2 (adv_landscape)"]
    out = indicators._matrix_svg({"columns": names, "rho": [[1.0, -0.3], [-0.3, 1.0]]}, {})
    assert out.lstrip().startswith("<svg") or "<svg" in out[:500]
    x0, y0, x1, y1, width, height = boxes[0]
    assert min(x0, y0) > -0.01 and x1 < width + 0.01 and y1 < height + 0.01
