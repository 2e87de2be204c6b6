"""Sample groups for summaries: clean-correct vs wrong always; robust vs non-robust when attacks ran.

Attack results are optional inputs read from ``ctx.previous`` at the audit's L∞ ε. A correctly
classified sample is non-robust when any L∞ attack broke it there: ``success_linf_eps_<ε>``
(``attack.worst_case``), ``success_eps_<ε>`` of an ``attack.*`` probe whose summary says
``norm = linf``, or ``min_eps`` ≤ ε of a minimal-ε probe with ``norm = linf`` (NaN = never
broken). L2 attacks are ignored: their budgets are not comparable. Nothing breaks when no
attack ran; ε keys match to a relative 1e-3 (the attack probes print six significant digits).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robaudit.probes.base import ProbeContext, ProbeResult

LINF_SUCCESS_PREFIX = "success_linf_eps_"
SUCCESS_PREFIX = "success_eps_"
MIN_EPS_COLUMN = "min_eps"
EPS_RTOL = 1e-3


@dataclass
class SampleGroups:
    """Boolean masks (length N) of the summary groups, and where robustness came from.

    Attributes:
        masks: ``all``, ``correct``, ``incorrect`` always; ``robust`` and ``non_robust`` (both
            subsets of ``correct``) when attack results at the audit's ε were found.
        robustness_source: ``{"probes", "columns", "epsilon", "norm"}`` or ``None``.
        available_attack_eps: every L∞ ε found in attack success columns (to explain a missing split).
    """

    masks: dict[str, np.ndarray]
    robustness_source: dict[str, Any] | None = None
    available_attack_eps: list[float] = field(default_factory=list)

    @property
    def has_robustness(self) -> bool:
        """Whether the robust / non-robust split is available."""
        return "robust" in self.masks


def sample_groups(ctx: ProbeContext, epsilon: float) -> SampleGroups:
    """Groups of the audit samples: correctness from the audit's clean logits, robustness from attacks."""
    logits = ctx.clean_logits()
    correct = (logits.argmax(dim=1) == ctx.data.y).numpy()
    masks = {"all": np.ones(len(correct), dtype=bool), "correct": correct, "incorrect": ~correct}
    non_robust, source, seen = attack_outcomes(ctx.previous, epsilon, len(correct))
    groups = SampleGroups(masks, None, sorted(seen))
    if non_robust is not None:
        masks["non_robust"] = correct & non_robust
        masks["robust"] = correct & ~non_robust
        groups.robustness_source = source
    return groups


def attack_outcomes(previous: Mapping[str, ProbeResult], epsilon: float,
                    n: int) -> tuple[np.ndarray | None, dict[str, Any] | None, set[float]]:
    """Per-sample "some L∞ attack broke it at ε" from earlier ``attack.*`` results.

    Returns:
        (N booleans or ``None`` when no usable column exists, the source description, every
        L∞ ε seen in success columns).
    """
    hits: list[np.ndarray] = []
    used: list[str] = []
    columns: list[str] = []
    seen: set[float] = set()
    for name, result in previous.items():
        if not name.startswith("attack.") or result is None:
            continue
        linf = str(result.summary.get("norm", "")).lower() == "linf"
        for key, values in result.per_sample.items():
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim != 1 or len(arr) != n:
                continue
            eps = None
            if key.startswith(LINF_SUCCESS_PREFIX):
                eps = _parse(key[len(LINF_SUCCESS_PREFIX):])
            elif linf and key.startswith(SUCCESS_PREFIX):
                eps = _parse(key[len(SUCCESS_PREFIX):])
            elif linf and key == MIN_EPS_COLUMN:
                hits.append(np.nan_to_num(arr, nan=np.inf) <= epsilon * (1 + EPS_RTOL))
                used.append(name)
                columns.append(f"{name}/{key}")
                continue
            if eps is None:
                continue
            seen.add(eps)
            if math.isclose(eps, epsilon, rel_tol=EPS_RTOL):
                hits.append(np.nan_to_num(arr, nan=0.0) > 0.5)
                used.append(name)
                columns.append(f"{name}/{key}")
    if not hits:
        return None, None, seen
    source = {"probes": sorted(set(used)), "columns": columns, "epsilon": epsilon, "norm": "linf"}
    return np.logical_or.reduce(hits), source, seen


def _parse(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
