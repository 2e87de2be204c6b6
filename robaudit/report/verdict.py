"""The verdict sentence: the worst-case robust accuracy at the reference budget, from ``results.json``.

One owner for the sentence that the report's ``#verdict`` and the console summary both print.
"""
from __future__ import annotations

import math
from typing import Any

from robaudit.probes.base import wilson_interval
from robaudit.threat_model import same_eps

NORM_LABELS = {"linf": "L∞", "l2": "L2"}
"""How a norm is written for people."""

AUTOATTACK = "attack.autoattack"


def worst_case_rows(results: dict[str, Any], level: float = 0.95) -> list[dict[str, Any]]:
    """Worst-case robust accuracy per (norm, ε) over every attack that ran at that budget.

    A sample counts as robust at ε when it is clean-correct and no attack broke it within ε
    (``results["attack_outcomes"]``), so the value is ``(n − broken) / n`` with a Wilson interval.

    Returns:
        One dict per (norm, ε) in the order of the outcome table: ``norm``, ``eps`` (pixels in [0, 1]
        images, in that norm), ``estimate`` (value/low/high, fractions in [0, 1]) and ``attacks``.
    """
    table = results.get("attack_outcomes") or {}
    n = int(table.get("n") or 0)
    rows = []
    for norm, block in (table.get("norms") or {}).items():
        for entry in block.get("by_eps", []):
            if n == 0:
                continue
            estimate = wilson_interval(n - int(entry["broken"]), n, level)
            rows.append({"norm": norm, "eps": float(entry["eps"]), "attacks": list(entry.get("attacks", [])),
                         "estimate": {"value": estimate.value, "low": estimate.low, "high": estimate.high}})
    return rows


def verdict_sentence(results: dict[str, Any]) -> str:
    """One sentence: the worst-case robust accuracy at the reference budget, with its 95 % CI,
    where the budget comes from, which attacks the worst case covers, and whether AutoAttack ran.

    Args:
        results: the content of ``results.json``.
    """
    rows = worst_case_rows(results)
    if not rows:
        return "No attack ran, so this audit says nothing about adversarial robustness."
    norms = (results.get("threat_model") or {}).get("norms") or {}
    norm = "linf" if any(r["norm"] == "linf" for r in rows) else rows[0]["norm"]
    spec = norms.get(norm) or {}
    reference = spec.get("reference")
    label = NORM_LABELS.get(norm, norm)
    at_ref = [r for r in rows if r["norm"] == norm and reference is not None and same_eps(r["eps"], float(reference))]
    if not at_ref:
        return (f"No attack ran at the {label} reference budget ε = {_eps_text(reference)}; "
                "see the worst-case table for the budgets that ran.")
    row = at_ref[0]
    est = row["estimate"]
    source = spec.get("source", "")
    origin = "set by --eps" if source == "config" else f"the default for {_family(results)} data"
    ci = "" if est["low"] is None or math.isnan(est["value"]) else f" [{100 * est['low']:.1f}, {100 * est['high']:.1f}]"
    attacks = " + ".join(row["attacks"])
    tail = ("AutoAttack is included." if AUTOATTACK in row["attacks"] else
            "AutoAttack was not run, so this is an upper bound.")
    return (f"Under {label} ε = {_eps_text(reference)} (the reference budget, {origin}), worst-case robust accuracy "
            f"is {100 * est['value']:.1f} %{ci} over {attacks}; {tail}")


def _family(results: dict[str, Any]) -> str:
    return str((results.get("threat_model") or {}).get("family") or "this")


def _eps_text(eps: Any) -> str:
    """ε as a fraction of 255 when it is one (8/255), else as a short decimal."""
    if eps is None:
        return "?"
    value = float(eps)
    k = value * 255
    if k >= 1 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{value:.4g}"
