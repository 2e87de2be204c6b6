"""Render ``zoo/zoo.html`` from ``zoo/zoo.json``: self-contained and offline (inline CSS, and one small
inline script that sorts the leaderboard by a clicked column; no network)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robaudit.report.render import environment
from robaudit.results import store
from robaudit.zoo.table import ZOO_JSON

ZOO_TEMPLATE = "zoo.html.j2"
ZOO_HTML = "zoo.html"
CURVATURE_PREFIX = "curvature."


def leaderboard(document: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The leaderboard's columns and rows: name, status, clean accuracy, robust accuracy at each
    (norm, ε), every indicator, tags, wall time. Cells are numbers (sortable) or strings."""
    models = document["models"]
    robust_cols = sorted({(norm, key, cell["eps"]) for m in models for norm, by in m["robust_accuracy"].items()
                          for key, cell in by.items()}, key=lambda c: (c[0], c[2]))
    indicators = sorted({k for m in models for k in m["indicators"]})
    tags = sorted({k for m in models for k in m["tags"]})
    columns = (["model", "status", "clean accuracy"] + [f"robust {n} ε={k}" for n, k, _ in robust_cols]
               + indicators + [f"tag {t}" for t in tags] + ["wall s"])
    rows = []
    for m in models:
        clean = (m["clean_accuracy"] or {}).get("value")
        row: list[Any] = [m["name"], m["status"], clean]
        row += [(m["robust_accuracy"].get(n, {}).get(k) or {}).get("value") for n, k, _ in robust_cols]
        row += [m["indicators"].get(i) for i in indicators]
        row += [m["tags"].get(t) for t in tags]
        row.append(m["cost"]["wall_s"])
        rows.append(row)
    return columns, rows


def render_zoo(out: Path) -> Path:
    """Write ``out/zoo.html`` from ``out/zoo.json``."""
    from robaudit import __version__
    from robaudit.report import figures

    document = json.loads((Path(out) / ZOO_JSON).read_text(encoding="utf-8"))
    columns, rows = leaderboard(document)
    analysis = document.get("analysis") or {}
    scatters = _scatters(document, analysis)
    archs = {m.get("arch") for m in document["models"] if m.get("arch")}
    html = environment().get_template(ZOO_TEMPLATE).render(
        z=document, columns=columns, rows=rows, analysis=analysis, scatters=scatters, version=__version__,
        cross_arch=len(archs) > 1, figures=figures)
    path = Path(out) / ZOO_HTML
    store.atomic_write_text(path, html)
    return path


def _scatters(document: dict[str, Any], analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """Indicator vs robust accuracy points per tested (indicator, outcome) pair, as inline SVG."""
    metrics = {m["id"]: m for m in analysis.get("metrics", [])}
    names = [r["name"] for r in analysis.get("runs", [])]
    out = []
    for row in analysis.get("correlations", []):
        x, y = metrics.get(row["indicator"]), metrics.get(row["outcome"])
        if x is None or y is None:
            continue
        points = [(name, a, b) for name, a, b in zip(names, x["values"], y["values"])
                  if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
        if len(points) >= 2:
            out.append({"indicator": row["indicator"], "outcome": row["outcome"], "svg": _svg(points, row)})
    return out


def _svg(points: list[tuple[str, float, float]], row: dict[str, Any]) -> str:
    from xml.sax.saxutils import escape

    w, h, pad = 320, 200, 30
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    dots = "".join(
        f'<circle cx="{pad + (x - x0) / (x1 - x0) * (w - 2 * pad):.1f}" cy="{h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad):.1f}" '
        f'r="4"><title>{escape(name)}: {x:.4g}, {y:.4g}</title></circle>' for name, x, y in points)
    label = escape(f"{row['indicator']} (x) vs {row['outcome']} (y)")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{label}">'
            f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>'
            f'{dots}<text x="{pad}" y="{h - 8}" font-size="10">{x0:.3g} … {x1:.3g}</text>'
            f'<text x="2" y="{pad - 8}" font-size="10">{y0:.3g} … {y1:.3g}</text></svg>')
