"""Rank the indicators of one audit by how well they predict robustness (the report's ``#top-indicators``).

A plain function of the ``analysis`` section of ``results.json``; the rule is documented in
docs/analysis.md ("Ranked indicators"):

* **effect size** of a test: |ρ| for a Spearman test, |2·AUROC − 1| (Somers' D, on ρ's 0–1 scale) for
  an AUROC test;
* **the outcome it predicts best**: the indicator's test with the largest effect among those whose
  Benjamini–Hochberg-adjusted p is below α (among all its tests when none is);
* **verdict word**: *does not predict* when no test of the indicator has adjusted p < α and an interval
  excluding no association; else *only through confidence* when its continuous test has a partial ρ
  (controlling for confidence) whose interval contains 0, or none because the indicator ranks samples
  exactly as confidence does; else *predicts*;
* **order**: *predicts* first, then *only through confidence*, then *does not predict*; within each, by
  the best effect size, largest first.
"""
from __future__ import annotations

import math
from typing import Any

PREDICTS = "predicts"
THROUGH_CONFIDENCE = "only through confidence"
DOES_NOT_PREDICT = "does not predict"
VERDICT_ORDER = (PREDICTS, THROUGH_CONFIDENCE, DOES_NOT_PREDICT)


def effect_size(test: dict[str, Any]) -> float | None:
    """|ρ| of a Spearman test or |2·AUROC − 1| of an AUROC test; None when untestable."""
    value = (test.get("estimate") or {}).get("value")
    if value is None or not math.isfinite(value):
        return None
    return abs(2 * value - 1) if test["kind"] == "auroc" else abs(value)


def _excludes_null(test: dict[str, Any]) -> bool:
    est = test.get("estimate") or {}
    null = 0.5 if test["kind"] == "auroc" else 0.0
    low, high = est.get("low"), est.get("high")
    return low is not None and high is not None and (low > null or high < null)


def is_significant(test: dict[str, Any], alpha: float) -> bool:
    """Adjusted p below ``alpha`` and an interval that excludes no association."""
    p = test.get("p_adjusted")
    return p is not None and p < alpha and _excludes_null(test)


def _partial_contains_zero(test: dict[str, Any]) -> bool:
    partial = test.get("partial") or {}
    if partial.get("value") is None:
        return True  # ranks samples exactly as confidence does
    low, high = partial.get("low"), partial.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return False  # no interval: judged by the raw test
    return low <= 0 <= high


def rank_indicators(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per indicator, best first (see the module docstring).

    Each row: ``indicator`` (column), ``outcome`` (the column it predicts best), ``effect``,
    ``rho`` and ``partial`` (intervals of its strongest Spearman test, or None), ``auroc`` (interval of
    its strongest AUROC test, or None), ``p_adjusted`` (of the best test) and ``verdict`` (a word of
    :data:`VERDICT_ORDER`).
    """
    alpha = (analysis.get("method") or {}).get("alpha", 0.05)
    has_confounder = bool((analysis.get("method") or {}).get("partial"))
    by_indicator: dict[str, list[dict[str, Any]]] = {}
    for test in analysis.get("tests", []):
        by_indicator.setdefault(test["indicator"], []).append(test)
    rows = []
    for indicator, tests in by_indicator.items():
        scored = [t for t in tests if effect_size(t) is not None]
        if not scored:
            continue
        significant = [t for t in scored if is_significant(t, alpha)]
        best = max(significant or scored, key=lambda t: (effect_size(t), -(t.get("p_adjusted") or 1.0)))
        spearman = max((t for t in scored if t["kind"] == "spearman"), key=effect_size, default=None)
        auroc = max((t for t in scored if t["kind"] == "auroc"), key=effect_size, default=None)
        if not significant:
            word = DOES_NOT_PREDICT
        elif has_confounder and spearman is not None and _partial_contains_zero(spearman):
            word = THROUGH_CONFIDENCE
        else:
            word = PREDICTS
        rows.append({"indicator": indicator, "outcome": best["outcome"], "effect": effect_size(best),
                     "rho": spearman["estimate"] if spearman else None,
                     "partial": spearman.get("partial") if spearman else None,
                     "auroc": auroc["estimate"] if auroc else None,
                     "p_adjusted": best.get("p_adjusted"), "verdict": word})
    rows.sort(key=lambda r: (VERDICT_ORDER.index(r["verdict"]), -r["effect"]))
    return rows


def distinct_labels(labels: dict[str, str]) -> dict[str, str]:
    """``labels`` with every label shared by several columns suffixed by the column's last name part
    (``… (jacobian_sparsity_0.01)``): results written before the probes gave such columns their own labels."""
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {col: f"{label} ({col.rsplit('/', 1)[-1]})" if seen[label] > 1 else label for col, label in labels.items()}


def top_and_worst(rows: list[dict[str, Any]], k: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``k`` rows and the last ``k`` of the rest (no row twice)."""
    top = rows[:k]
    return top, rows[k:][-k:]
