"""The plugin's report section: Newton vs gradient attack by budget (Yao et al. Tables 3/4) and solver diagnostics.

:func:`context` reads only the saved ``results.json`` (the probe's entry and the other attack
entries), so ``robaudit report DIR`` redraws the section without recomputing anything. robaudit's
own Attacks section already lists this probe's robust accuracies and curves next to every other
attack; this section is about the comparison and how the Newton systems were solved.
"""
from __future__ import annotations

from typing import Any

NORM_TITLES = {"linf": "L∞", "l2": "L2"}


def _keys(summary: dict[str, Any]) -> list[str]:
    return list(summary.get("robust_accuracy", {}))[: len(summary.get("eps", []))]


def _other_attacks(entry: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Other finished fixed-budget attacks of the same norm (Yao's table columns), in run order."""
    probes = results.get("probes", {})
    order = results.get("probe_order") or list(probes)
    peer = entry["summary"].get("comparison", {}).get("peer_probe")
    out = []
    for name in order:
        p = probes.get(name, {})
        if (name == entry.get("name") or name == peer or not name.startswith("attack.") or p.get("status") != "ok"
                or p.get("summary", {}).get("norm") != entry["summary"].get("norm")
                or "robust_accuracy" not in p.get("summary", {})):
            continue
        out.append(name)
    return out


def context(entry: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Template variables: comparison rows, other attacks at the same budgets, the worst case and solver facts."""
    s = entry["summary"]
    comp = s.get("comparison", {})
    probes = results.get("probes", {})
    others = _other_attacks(entry, results)
    worst = probes.get("attack.worst_case", {})
    worst_norm = (worst.get("summary", {}) or {}).get(s["norm"]) if worst.get("status") == "ok" else None
    rows = []
    for key, eps in zip(_keys(s), s["eps"]):
        other_values = []
        for name in others:
            ra = probes[name]["summary"]["robust_accuracy"]
            other_values.append(ra[key]["value"] if key in ra else None)
        worst_value = None
        if worst_norm and key in worst_norm.get("robust_accuracy", {}):
            worst_value = worst_norm["robust_accuracy"][key]["value"]
        rows.append({
            "eps": eps, "key": key,
            "newton": s["robust_accuracy"][key],
            "gradient": comp.get("gradient_robust_accuracy", {}).get(key),
            "both": comp.get("both_robust_accuracy", {}).get(key),
            "difference": comp.get("difference", {}).get(key),
            "newton_only": comp.get("broken_only_by_newton", {}).get(key),
            "gradient_only": comp.get("broken_only_by_gradient", {}).get(key),
            "p": comp.get("mcnemar_p", {}).get(key),
            "stronger": comp.get("stronger", {}).get(key, "—"),
            "significant": comp.get("significant", {}).get(key, False),
            "others": other_values, "worst": worst_value,
        })
    control_rows = []
    control = comp.get("control")
    if control:
        vs = control["vs_peer"]
        for key, eps in zip(_keys(s), s["eps"]):
            control_rows.append({
                "eps": eps, "control": control["robust_accuracy"].get(key),
                "peer": comp.get("gradient_robust_accuracy", {}).get(key), "newton": s["robust_accuracy"][key],
                "newton_only": control["broken_only_by_newton"].get(key),
                "control_only": control["broken_only_by_control"].get(key),
                "p": control["mcnemar_p"].get(key), "stronger": control["stronger"].get(key, "tie"),
                "significant": control["significant"].get(key, False),
                "control_vs_peer": vs["broken_only_by_control"].get(key), "peer_vs_control": vs["broken_only_by_peer"].get(key),
                "p_peer": vs["mcnemar_p"].get(key),
            })
    n = s.get("newton", {})
    settings = s.get("settings", {})
    iterations = entry.get("artifacts", {}).get("clean_point_iterations", {})
    check = dict(n.get("hessian_check", {}))
    if "passed" not in check and check.get("checked"):
        check["passed"] = round((check.get("ggn_equals_hessian_fraction") or 0) * check["checked"])
    return {
        "alpha": comp.get("alpha", 0.05),
        "converged": n.get("converged", round((n.get("converged_fraction") or 0) * n.get("solves", 0))),
        "norm": NORM_TITLES.get(s["norm"], s["norm"]),
        "attack": "FHSM" if s["norm"] == "linf" else "L2HESS",
        "steps": settings.get("steps", 1),
        "rows": rows, "control_rows": control_rows, "control": control, "others": others, "has_worst": worst_norm is not None,
        "comparison": comp, "newton": n,
        "cg": n.get("cg"), "check": check,
        "iterations": sorted(((int(k), v) for k, v in iterations.items()), key=lambda t: t[0]),
        "notes": entry.get("notes", []),
        "flags": [f for f in entry.get("flags", []) if f.get("source") == entry.get("name")],
    }
