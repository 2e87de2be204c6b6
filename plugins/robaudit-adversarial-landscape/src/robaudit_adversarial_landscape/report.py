"""Tables and figures of the ``adv_landscape`` report section, from the saved results entry only."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _float(text: Any) -> float:
    return float(text)


def _sorted_keys(table: Mapping[str, Any]) -> list[str]:
    return sorted((k for k in table if _is_number(k)), key=_float)


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def spectrum_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per ε: loss, adversarial error, eigenvalues, certificate, HVPs, determinism."""
    spectra = summary.get("spectra") or {}
    rows = []
    for key in _sorted_keys(spectra):
        s = spectra[key]
        rows.append({
            "eps": key, "loss": s.get("loss"), "adv_error": s.get("adv_error"),
            "eigenvalues": list(s.get("eigenvalues") or []), "max_residual": s.get("max_residual"),
            "certified": s.get("certified"), "dtype": s.get("dtype"), "hvps": (s.get("hvps") or {}).get("total"),
            "recompute": s.get("recompute_max_abs_diff"), "gradient_norm": s.get("gradient_norm"),
            "delta_linf": s.get("delta_linf_mean"), "delta_l2": s.get("delta_l2_mean"),
        })
    return rows


def consistency_tables(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One table per consistency ε: rows over a with each direction's cosine and errors."""
    out = []
    table = summary.get("consistency") or {}
    for key in _sorted_keys(table):
        by_dir = table[key]
        directions = [d for d in ("eigenvector", "random") if isinstance(by_dir.get(d), Mapping)]
        a_keys = sorted({a for d in directions for a in by_dir[d]}, key=_float)
        rows = []
        for a in a_keys:
            first = next(by_dir[d][a] for d in directions if a in by_dir[d])
            rows.append({"a": a, "step_norm": first.get("step_norm"), "relative_step": first.get("relative_step"),
                         "by_direction": {d: by_dir[d].get(a) for d in directions}})
        out.append({"eps": key, "directions": directions, "rows": rows,
                    "eigenvector_less_consistent": by_dir.get("eigenvector_less_consistent")})
    return out


def _mpl() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spectrum_figure(rows: list[dict[str, Any]], norm: str) -> str | None:
    """SVG: the top-k eigenvalues λ_i against ε (one line per i)."""
    if len(rows) < 1 or not any(r["eigenvalues"] for r in rows):
        return None
    from robaudit.plugin import svg

    plt = _mpl()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=100)
    k = max(len(r["eigenvalues"]) for r in rows)
    for i in range(k):
        pts = [(float(r["eps"]), r["eigenvalues"][i]) for r in rows
               if len(r["eigenvalues"]) > i and r["eigenvalues"][i] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1.6 if i == 0 else 0.9,
                    label=f"λ{i + 1}", alpha=1.0 if i == 0 else 0.7)
    ax.set_xlabel(f"ε ({norm}, pixel units)")
    ax.set_ylabel("eigenvalue of ∇²_θ L_ε (nats / unit²)")
    ax.set_title("Top Hessian eigenvalues of the adversarial loss", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return svg(fig)


def consistency_figure(tables: list[dict[str, Any]], quantity: str, unit: str) -> str | None:
    """SVG: the mean cosine (``quantity = "cosine"``) or mean adversarial error against a, per ε and
    direction (eigenvector solid, random dashed)."""
    if not tables:
        return None
    from robaudit.plugin import svg

    plt = _mpl()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, t in enumerate(tables):
        for d in t["directions"]:
            xs, ys = [], []
            for r in t["rows"]:
                cell = r["by_direction"].get(d)
                if not cell:
                    continue
                value = cell.get("cosine") if quantity == "cosine" else (cell.get("adv_error") or {}).get("mean")
                if value is not None:
                    xs.append(float(r["a"]))
                    ys.append(value)
            if xs:
                ax.plot(xs, ys, marker="o" if d == "eigenvector" else "s", ms=3,
                        ls="-" if d == "eigenvector" else "--", color=colors[i % len(colors)],
                        label=f"ε = {t['eps']}, {d}")
    ax.set_xlabel(f"a ({unit} step)")
    if quantity == "cosine":
        ax.set_ylabel("mean cos(δ(θ + a·v), δ(θ − a·v))")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        ax.set_title("Consistency of PGD perturbations", fontsize=9)
    else:
        ax.set_ylabel("adversarial error (mean of θ ± a·v)")
        ax.set_ylim(0, 1.02)
        ax.set_title("Adversarial error at θ ± a·v", fontsize=9)
    ax.legend(fontsize=6, frameon=False)
    return svg(fig)


def build_context(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Template variables: ``spectrum`` rows, ``k``, ``consistency`` tables, ``figures`` (SVG markup)."""
    summary = entry.get("summary") or {}
    rows = spectrum_rows(summary)
    tables = consistency_tables(summary)
    unit = summary.get("a_unit") or "absolute"
    figures = {
        "spectrum": spectrum_figure(rows, summary.get("norm") or ""),
        "cosine": consistency_figure(tables, "cosine", unit),
        "error": consistency_figure(tables, "adv_error", unit),
    }
    return {
        "spectrum": rows,
        "k": max((len(r["eigenvalues"]) for r in rows), default=0),
        "consistency": tables,
        "figures": {k: v for k, v in figures.items() if v},
        "unit": unit,
    }
