"""The report's Attacks section: the robust-accuracy table, curves with Wilson bands, distributions.

``build(results)`` reads only ``results.json`` (summaries and artifacts of the ``attack.*``
probes) and returns the template context: table rows, inline SVG figures, the minimal-ε and
distance summaries, AutoAttack's component breakdown and the attack flags.
"""
from __future__ import annotations

from typing import Any

from robaudit.report import figures

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
NORM_TITLES = {"linf": "L∞", "l2": "L2"}


def _svg(fig: Any) -> str:
    return figures.svg(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(probes: dict[str, Any], worst: dict[str, Any] | None, norm: str) -> list[dict[str, Any]]:
    """One curve per probe of ``norm`` (plus the worst case): eps, value, low, high lists."""
    curves = []
    for name, p in probes.items():
        s = p["summary"]
        if s.get("norm") != norm or "robust_accuracy" not in s:
            continue
        eps = s["eps"]
        est = [s["robust_accuracy"][k] for k in _keys(s)]
        curves.append({"name": name, "eps": eps, "value": [e["value"] for e in est],
                       "low": [e["low"] for e in est], "high": [e["high"] for e in est]})
    if worst and norm in worst:
        w = worst[norm]
        est = [w["robust_accuracy"][k] for k in _keys(w)]
        curves.append({"name": "worst case", "eps": w["eps"], "value": [e["value"] for e in est],
                       "low": [e["low"] for e in est], "high": [e["high"] for e in est], "worst": True})
    return curves


def _keys(summary: dict[str, Any]) -> list[str]:
    """The ε keys of a summary in the order of its ``eps`` list (keys are stored as written)."""
    keys = list(summary["robust_accuracy"])
    return keys[:len(summary["eps"])]


def curve_figure(curves: list[dict[str, Any]], norm: str) -> str:
    """SVG: robust accuracy (all samples) vs ε per attack, with 95 % Wilson bands."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=100)
    figures.fixed_layout(fig)
    for i, c in enumerate(curves):
        colour = "black" if c.get("worst") else COLOURS[i % len(COLOURS)]
        ax.fill_between(c["eps"], [v if v is not None else 0 for v in c["low"]],
                        [v if v is not None else 1 for v in c["high"]], color=colour, alpha=0.12, lw=0)
        ax.plot(c["eps"], c["value"], marker="o", ms=3, color=colour, lw=2.2 if c.get("worst") else 1.4,
                ls="--" if c.get("worst") else "-", label=c["name"])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"ε ({NORM_TITLES.get(norm, norm)}, pixel units)")
    ax.set_ylabel("robust accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    return _svg(fig)


def histogram_figure(dist: dict[str, Any], xlabel: str, note: str) -> str:
    """SVG bar chart of a stored histogram (edges, counts)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.8), dpi=100)
    figures.fixed_layout(fig, left=0.7, top=0.3)
    edges, counts = dist["edges"], dist["counts"]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4c72b0", edgecolor="white", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    if note:
        ax.set_title(note, fontsize=8)
    return _svg(fig)


def _eps_label(eps: float, norm: str) -> str:
    text = f"{eps:.4g}"
    if norm == "linf" and abs(eps * 255 - round(eps * 255)) < 1e-6 and eps < 0.2:
        text += f" ({round(eps * 255)}/255)"
    return text


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items())


def build(results: dict[str, Any]) -> dict[str, Any]:
    """The Attacks section's context (see module docstring)."""
    all_probes = results.get("probes", {})
    order = results.get("probe_order") or list(all_probes)
    ok = {n: all_probes[n] for n in order if n in all_probes and n.startswith("attack.")
          and all_probes[n].get("status") == "ok"}
    sweeps = {n: p for n, p in ok.items() if "robust_accuracy" in p["summary"]}
    worst = ok.get("attack.worst_case", {}).get("summary")

    rows = []
    for name, p in sweeps.items():
        s = p["summary"]
        for i, (key, e) in enumerate(zip(_keys(s), s["eps"])):
            rows.append({
                "span": len(s["eps"]) if i == 0 else 0,  # the probe and its settings: one cell per attack
                "probe": name, "norm": NORM_TITLES.get(s["norm"], s["norm"]), "eps": _eps_label(e, s["norm"]),
                "robust": s["robust_accuracy"][key], "robust_cc": s["robust_accuracy_clean_correct"][key],
                "noise": (s.get("noise_accuracy") or {}).get(key),
                "settings": _settings_text(s.get("settings", {})) + (f", preset {s['preset']}" if "preset" in s else ""),
            })
    worst_rows = []
    for norm in ("linf", "l2"):
        if worst and norm in worst:
            w = worst[norm]
            for key, e in zip(_keys(w), w["eps"]):
                worst_rows.append({"norm": NORM_TITLES[norm], "eps": _eps_label(e, norm), "robust": w["robust_accuracy"][key],
                                   "robust_cc": w["robust_accuracy_clean_correct"][key],
                                   "attacks": ", ".join(w["attacks"].get(key, []))})

    figures = []
    for norm in ("linf", "l2"):
        curves = _curves(sweeps, worst, norm)
        if curves:
            figures.append({"svg": curve_figure(curves, norm),
                            "caption": f"Robust accuracy over all samples vs {NORM_TITLES[norm]} budget, with 95 % "
                                       "Wilson bands; the dashed black line is the per-sample worst case over every "
                                       "attack of this audit."})

    distributions = []
    min_eps = ok.get("attack.min_eps")
    min_eps_info = None
    if min_eps:
        s, a = min_eps["summary"], min_eps.get("artifacts", {})
        min_eps_info = {"norm": NORM_TITLES.get(s["norm"], s["norm"]), "tolerance": s["tolerance"], "eps_max": s["eps_max"],
                        "quantiles": s["min_eps_quantiles"], "found": s["found_fraction"], "cost": s["cost"],
                        "steps": s["settings"]["steps"], "not_found": a.get("not_found", 0)}
        if a.get("distribution", {}).get("n"):
            distributions.append({"svg": histogram_figure(a["distribution"], f"minimal ε ({min_eps_info['norm']})",
                                                          f"{a.get('not_found', 0)} not broken below ε_max = {s['eps_max']:.3g}"),
                                  "caption": "Per-sample minimal adversarial ε (PGD bisection) of clean-correct samples."})
    for name, label in (("attack.cw_l2", "C&W L2 distance"), ("attack.fab", "FAB distance")):
        p = ok.get(name)
        if p and p.get("artifacts", {}).get("distribution", {}).get("n"):
            a = p["artifacts"]
            distributions.append({"svg": histogram_figure(a["distribution"], label, f"{a.get('not_found', 0)} not found"),
                                  "caption": f"Per-sample {label} of the closest verified adversarial example "
                                             "(clean-correct samples)."})

    autoattack = None
    if "attack.autoattack" in ok:
        s = ok["attack.autoattack"]["summary"]
        autoattack = {"preset": s["preset"], "components": s["components"], "broken_by": s["broken_by"],
                      "version": s.get("torchattacks_version")}

    attack_flags = [f for f in results.get("flags", []) if str(f.get("source", "")).startswith("attack.")]
    return {"rows": rows, "worst_rows": worst_rows, "figures": figures, "distributions": distributions,
            "min_eps": min_eps_info, "autoattack": autoattack, "flags": attack_flags,
            "probes": list(ok), "failed": [n for n in all_probes if n.startswith("attack.") and n not in ok]}
