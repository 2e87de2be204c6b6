"""Summaries of per-sample quantities: robust statistics per group and histograms for the report."""
from __future__ import annotations

from typing import Any

import numpy as np

from robaudit.probes.geometry.groups import SampleGroups

QUANTILES = (("q05", 0.05), ("q25", 0.25), ("q75", 0.75), ("q95", 0.95))
GROUPS = ("all", "correct", "incorrect", "robust", "non_robust")
"""The groups of :func:`by_group` (``robust`` and ``non_robust`` only with attack results)."""
STATISTICS = ("n", "mean", "median", *(k for k, _ in QUANTILES))
"""The keys of :func:`describe`."""


def grouped_keys(*names: str) -> tuple[tuple[str, ...], ...]:
    """The summary key paths that :func:`by_group` writes under each of ``names``: (name, group, statistic)."""
    return tuple((name, group, stat) for name in names for group in GROUPS for stat in STATISTICS)


def describe(values: np.ndarray) -> dict[str, Any]:
    """n (finite values), mean, median and the 5/25/75/95 % quantiles; NaN entries are ignored."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, **{k: None for k, _ in QUANTILES}}
    out: dict[str, Any] = {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v))}
    out.update({k: float(np.quantile(v, q)) for k, q in QUANTILES})
    return out


def by_group(values: np.ndarray, groups: SampleGroups) -> dict[str, Any]:
    """:func:`describe` of ``values`` within every group (``all``, ``correct``, … ``non_robust``)."""
    v = np.asarray(values, dtype=np.float64)
    return {name: describe(v[mask]) for name, mask in groups.masks.items()}


def histogram(values: np.ndarray, groups: SampleGroups, bins: int = 30, log: bool | None = None) -> dict[str, Any]:
    """Counts per group on common bins (plot data for the report).

    Args:
        values: N per-sample values (NaN ignored).
        bins: number of bins between the 0.5 % and 99.5 % quantiles; values outside land in
            the end bins.
        log: logarithmic bins; ``None`` picks log when every finite value is positive and they
            span more than two decades.

    Returns:
        ``{"scale": "log"|"linear", "edges": [...], "counts": {group: [...]}}``; empty edges
        when there is no finite value.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"scale": "linear", "edges": [], "counts": {}}
    if log is None:
        pos = finite[finite > 0]
        log = bool(finite.size == pos.size and pos.size and np.quantile(pos, 0.995) > 100 * np.quantile(pos, 0.005))
    data = np.log10(finite[finite > 0]) if log else finite
    if data.size == 0:
        return {"scale": "linear", "edges": [], "counts": {}}
    lo, hi = np.quantile(data, 0.005), np.quantile(data, 0.995)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = {}
    for name, mask in groups.masks.items():
        sel = v[mask]
        sel = sel[np.isfinite(sel)]
        if log:
            sel = np.log10(sel[sel > 0])
        idx = np.clip(np.searchsorted(edges, sel, side="right") - 1, 0, bins - 1)
        counts[name] = np.bincount(idx, minlength=bins).astype(int).tolist()
    shown = 10 ** edges if log else edges
    return {"scale": "log" if log else "linear", "edges": [float(e) for e in shown], "counts": counts}
