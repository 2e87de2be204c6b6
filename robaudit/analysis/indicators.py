"""The analysis stage: does each per-sample indicator predict robustness on this model?

Inputs are the per-sample table and each column's declared role (``results.json`` →
``probes.<name>.columns``): ``indicator`` columns are tested against ``robustness``
outcomes (larger = more robust, e.g. the minimal adversarial ε) with Spearman's ρ, and
against ``attack_success`` outcomes (0/1) with AUROC. Each test gets a percentile-bootstrap
95 % CI and a permutation (Spearman) or Mann–Whitney (AUROC) p-value, Benjamini–Hochberg
adjusted across all tests of the run; continuous tests also get the partial Spearman ρ
controlling for the ``confounder`` column (confidence p_top), because much raw curvature
signal is a confidence proxy (science.md §4). Tests use the clean-correct samples only: a
misclassified sample has minimal ε = 0 by definition and would dominate the ranks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from robaudit.analysis import stats as st

CORRECT_COLUMN = "clean/correct"


@dataclass(frozen=True)
class AnalysisConfig:
    """Knobs of the analysis stage.

    Attributes:
        n_bootstrap: bootstrap resamples per interval.
        n_permutations: permutations per Spearman p-value.
        level: interval coverage.
        alpha: false-discovery rate for the verdict lines (after Benjamini–Hochberg).
        min_samples: below this many usable samples a test reports "too few samples".
    """

    n_bootstrap: int = 1000
    n_permutations: int = 2000
    level: float = 0.95
    alpha: float = 0.05
    min_samples: int = 20
    max_points: int = 1000
    """At most this many (indicator, outcome) points per scatter stored for the report."""


def column_roles(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Column name → metadata (label, role, unit, scale_invariant) for every finished probe."""
    roles: dict[str, dict[str, Any]] = {}
    for entry in results.get("probes", {}).values():
        if entry.get("status") == "ok":
            roles.update(entry.get("columns", {}))
    return roles


def analyse(results: dict[str, Any], columns: dict[str, np.ndarray], seed: int,
            config: AnalysisConfig = AnalysisConfig()) -> dict[str, Any] | None:
    """Test every (indicator, outcome) pair; ``None`` when there is no indicator or no outcome.

    Args:
        results: the run's ``results.json`` content (for column roles).
        columns: the per-sample table, column name → length-N float array.
        seed: seeds the bootstrap and permutation draws.

    Returns:
        The ``analysis`` section of ``results.json``: method, tests (one per pair) and verdicts.
    """
    meta = column_roles(results)
    present = {name: m for name, m in meta.items() if name in columns}
    indicators = [c for c, m in present.items() if m["role"] == "indicator"]
    outcomes = [c for c, m in present.items() if m["role"] in ("robustness", "attack_success")]
    if not indicators or not outcomes:
        return None
    confounders = [c for c, m in present.items() if m["role"] == "confounder"]
    confounder = confounders[0] if confounders else None
    keep = columns[CORRECT_COLUMN] == 1 if CORRECT_COLUMN in columns else np.ones(len(next(iter(columns.values()))), bool)
    rng = np.random.default_rng(seed)

    tests = []
    resampler = _Resampler(rng, config.n_bootstrap)
    for outcome in outcomes:
        for indicator in indicators:
            tests.append(_test_pair(indicator, outcome, confounder, present, columns, keep, resampler, config))
    adjusted = st.benjamini_hochberg([t["p"] if t["p"] is not None else math.nan for t in tests])
    for test, p_adj in zip(tests, adjusted):
        test["p_adjusted"] = None if math.isnan(p_adj) else p_adj
        test["verdict"] = _verdict(test, present, config)
    return {
        "method": {
            "samples": "clean-correct samples" if CORRECT_COLUMN in columns else "all samples",
            "continuous": f"Spearman ρ, percentile bootstrap {config.n_bootstrap} resamples, "
                          f"two-sided permutation p ({config.n_permutations} permutations)",
            "binary": "AUROC, stratified percentile bootstrap, two-sided Mann–Whitney U p",
            "partial": f"partial Spearman controlling for {present[confounder]['label']}" if confounder else None,
            "multiple_testing": "Benjamini–Hochberg",
            "alpha": config.alpha,
            "level": config.level,
        },
        "config": asdict(config),
        "confounder": confounder,
        "labels": {c: present[c]["label"] for c in [*indicators, *outcomes, *confounders]},
        "tests": tests,
        "verdicts": [t["verdict"] for t in tests],
        "matrix": _matrix([*indicators, *confounders, *outcomes], columns, keep),
        "scatter": _scatter(indicators, outcomes, present, columns, keep, rng, config),
    }


def _matrix(names: list[str], columns: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, Any]:
    """Pairwise Spearman ρ between the analysed columns (on samples where both are finite)."""
    rho = []
    for a in names:
        row = []
        for b in names:
            ok = keep & np.isfinite(columns[a]) & np.isfinite(columns[b])
            value = st.spearman(columns[a][ok], columns[b][ok]) if ok.sum() >= 3 else math.nan
            row.append(None if math.isnan(value) else round(value, 4))
        rho.append(row)
    return {"columns": names, "rho": rho}


def _scatter(indicators: list[str], outcomes: list[str], meta: dict[str, dict[str, Any]],
             columns: dict[str, np.ndarray], keep: np.ndarray, rng: np.random.Generator,
             config: AnalysisConfig) -> dict[str, Any] | None:
    """Points of each indicator against the first robustness outcome, sub-sampled for the report."""
    targets = [o for o in outcomes if meta[o]["role"] == "robustness"]
    if not targets:
        return None
    outcome = targets[0]
    series = {}
    for indicator in indicators:
        ok = np.flatnonzero(keep & np.isfinite(columns[indicator]) & np.isfinite(columns[outcome]))
        if len(ok) > config.max_points:
            ok = np.sort(rng.choice(ok, config.max_points, replace=False))
        series[indicator] = {"x": [float(v) for v in columns[indicator][ok]],
                             "y": [float(v) for v in columns[outcome][ok]]}
    return {"outcome": outcome, "series": series}


class _Resampler:
    """Bootstrap resamples shared by every test on the same samples, and the weighted ranks of each
    column under them, each computed once (common random numbers across tests: every interval is
    still a percentile bootstrap of its own statistic)."""

    def __init__(self, rng: np.random.Generator, n_resamples: int) -> None:
        self.rng, self.n_resamples = rng, n_resamples
        self._weights: dict[tuple[str, bytes], np.ndarray] = {}
        self._ranks: dict[tuple[str, bytes], np.ndarray] = {}

    def weights(self, ok: np.ndarray, strata: tuple[str, np.ndarray] | None = None) -> np.ndarray:
        """Paired multiplicities over the samples in ``ok``; stratified by a 0/1 column when given."""
        key = (strata[0] if strata else "", ok.tobytes())
        if key not in self._weights:
            self._weights[key] = (st.stratified_weights(strata[1][ok], self.n_resamples, self.rng) if strata else
                                  st.bootstrap_weights(int(ok.sum()), self.n_resamples, self.rng))
        return self._weights[key]

    def residual(self, name: str, values: np.ndarray, confounder: str, z: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Weighted ranks of ``name`` residualised on those of the confounder (for partial Spearman)."""
        key = (f"{name}|{confounder}", ok.tobytes())
        if key not in self._ranks:
            self._ranks[key] = st.weighted_residual(self.ranks(name, values, ok), self.ranks(confounder, z, ok),
                                                    self.weights(ok))
        return self._ranks[key]

    def ranks(self, name: str, values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Weighted ranks of column ``name`` restricted to ``ok``, under the paired :meth:`weights` of ``ok``."""
        key = (name, ok.tobytes())
        if key not in self._ranks:
            self._ranks[key] = st.weighted_ranks(values[ok], self.weights(ok))
        return self._ranks[key]



def _test_pair(indicator: str, outcome: str, confounder: str | None, meta: dict[str, dict[str, Any]],
               columns: dict[str, np.ndarray], keep: np.ndarray, resampler: _Resampler,
               config: AnalysisConfig) -> dict[str, Any]:
    x, y = columns[indicator], columns[outcome]
    ok = keep & np.isfinite(x) & np.isfinite(y)
    z = columns[confounder] if confounder and confounder != indicator else None
    if z is not None:
        ok &= np.isfinite(z)
    kind = "auroc" if meta[outcome]["role"] == "attack_success" else "spearman"
    test: dict[str, Any] = {"indicator": indicator, "outcome": outcome, "kind": kind, "n": int(ok.sum()),
                            "estimate": None, "p": None, "partial": None}
    if test["n"] < config.min_samples:
        return test
    xs, ys = x[ok], y[ok]
    level = config.level
    if kind == "auroc":
        label = ys.astype(bool)
        if label.all() or not label.any():
            est = st.Interval(math.nan, math.nan, math.nan, level)
        else:
            w = resampler.weights(ok, (outcome, y))
            est = st.percentile_interval(st.auroc(xs, label), st.auroc_replicates(xs, label, w), level)
        p = st.auroc_p(xs, ys)
        test["positives"] = int(ys.sum())
    else:
        rho = st.spearman(xs, ys)
        w = resampler.weights(ok)
        est = (st.Interval(rho, math.nan, math.nan, level) if math.isnan(rho) else
               st.percentile_interval(rho, st.spearman_replicates(resampler.ranks(indicator, x, ok),
                                                                  resampler.ranks(outcome, y, ok), w), level))
        p = st.permutation_p(xs, ys, resampler.rng, config.n_permutations)
    test["estimate"] = _interval(est)
    test["p"] = None if math.isnan(p) else p
    if z is not None:
        value = st.partial_spearman(xs, ys, z[ok])
        if math.isnan(value):
            partial = st.Interval(value, math.nan, math.nan, level)
        else:
            w = resampler.weights(ok)
            boot = st.spearman_replicates(resampler.residual(indicator, x, confounder, z, ok),
                                          resampler.residual(outcome, y, confounder, z, ok), w)
            partial = st.percentile_interval(value, boot, level)
        test["partial"] = _interval(partial)
    return test


def _interval(iv: st.Interval) -> dict[str, float | None]:
    clean = lambda v: None if v is None or math.isnan(v) else float(v)  # noqa: E731
    return {"value": clean(iv.value), "low": clean(iv.low), "high": clean(iv.high), "level": iv.level}


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _verdict(test: dict[str, Any], meta: dict[str, dict[str, Any]], config: AnalysisConfig) -> str:
    ind, out = meta[test["indicator"]]["label"], meta[test["outcome"]]["label"]
    if test["estimate"] is None or test["estimate"]["value"] is None:
        return (f"On this model, too few usable samples (n = {test['n']}, need {config.min_samples}) "
                f"to tell whether {ind} predicts {out}.")
    est = test["estimate"]
    pct = round(100 * est["level"])
    if test["kind"] == "auroc":
        stat = f"AUROC = {est['value']:.2f}, {pct} % CI [{est['low']:.2f}, {est['high']:.2f}]"
        effect = est["value"] - 0.5
        excludes = est["low"] > 0.5 or est["high"] < 0.5
    else:
        stat = f"ρ = {est['value']:+.2f}, {pct} % CI [{est['low']:+.2f}, {est['high']:+.2f}]"
        effect = est["value"]
        excludes = est["low"] > 0 or est["high"] < 0
    stat += f", {_fmt_p(test['p_adjusted'])} after Benjamini–Hochberg, n = {test['n']}"
    partial = test.get("partial")
    if partial and partial["value"] is not None:
        stat += f"; after controlling for confidence, {partial['value']:+.2f}"
    elif partial:
        stat += "; it ranks the samples exactly as confidence does, so it adds nothing beyond confidence"
    significant = excludes and test["p_adjusted"] is not None and test["p_adjusted"] < config.alpha
    if not significant:
        return f"On this model, the evidence that {ind} predicts {out} is too weak ({stat})."
    if test["kind"] == "auroc":
        direction = "a larger" if effect > 0 else "a smaller"
        return f"On this model, {direction} {ind} predicts {out} ({stat})."
    return f"On this model, a larger {ind} predicts a {'larger' if effect > 0 else 'smaller'} {out} ({stat})."
