"""The indicator analysis the way it was computed before it was batched (robaudit a719e77): one
(indicator, outcome) pair at a time, scipy's ``rankdata``, ``permutation_test`` and ``mannwhitneyu`` per
pair, and the weighted ranks of each resample from a cumulative sum over the multiplicities. Kept only as
the oracle of ``tests/analysis/test_indicators_batched.py``; it draws from the generator in the same order.

Since then (issue #17): the permutation test permutes one sample (scipy's one-sample ``pairings`` form),
and by default attack success is tested at each norm's reference budget only; both are followed here,
the budgets read from ``results.json`` on their own (the column names as the probes write them).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from robaudit.analysis import stats as st
from robaudit.analysis.indicators import CORRECT_COLUMN, AnalysisConfig, _interval, column_roles


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of each resampled multiset (rows of ``weights`` = multiplicities), shape (R, n)."""
    n = len(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    ends = np.r_[np.nonzero(starts)[0][1:], n] - 1
    through = np.cumsum(weights[:, order], axis=1)[:, ends]
    before = np.concatenate([np.zeros((len(weights), 1)), through[:, :-1]], axis=1)
    group_rank = before + (through - before + 1) / 2
    ranks = np.empty_like(weights)
    ranks[:, order] = group_rank[:, group]
    return ranks


def _centre(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a - (w * a).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)


def weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    a, b = _centre(a, w), _centre(b, w)
    denom = np.sqrt((w * a * a).sum(axis=-1) * (w * b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (w * a * b).sum(axis=-1) / denom, np.nan)


def auroc_replicates(score: np.ndarray, label: np.ndarray, w: np.ndarray) -> np.ndarray:
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    ranks = weighted_ranks(score, w)
    return ((w[:, label] * ranks[:, label]).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def permutation_p(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int) -> float:
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    if len(rx) <= 8:
        n_resamples = np.inf  # exact
    res = stats.permutation_test((ry,), lambda b, axis=-1: st._pearson_last_axis(rx, b),
                                 permutation_type="pairings", vectorized=True, n_resamples=n_resamples,
                                 alternative="two-sided", rng=rng)
    return float(res.pvalue)


def tested_success(results: dict[str, Any], success: list[str], auroc_budgets: str) -> list[str]:
    """The attack-success columns tested: all, or those at their norm's reference budget (and those whose
    budget the results do not state)."""
    if auroc_budgets == "all":
        return success
    reference = {norm: b["reference"] for norm, b in (results.get("threat_model") or {}).get("norms", {}).items()}
    budget: dict[str, tuple[str, float]] = {}
    for name, entry in results["probes"].items():
        summary = entry.get("summary", {}) if entry.get("status") == "ok" else {}
        for e in summary.get("eps", []) if summary.get("norm") in ("linf", "l2") else []:
            budget[f"{name}/success_eps_{e:.6g}"] = (summary["norm"], e)
        for norm in ("linf", "l2"):
            for e in summary.get(norm, {}).get("eps", []) if isinstance(summary.get(norm), dict) else []:
                budget[f"{name}/success_{norm}_eps_{e:.6g}"] = (norm, e)
    return [c for c in success if c not in budget or budget[c][0] not in reference
            or math.isclose(budget[c][1], reference[budget[c][0]], rel_tol=1e-9)]


def analyse_tests(results: dict[str, Any], columns: dict[str, np.ndarray], seed: int,
                  config: AnalysisConfig) -> tuple[list[dict[str, Any]], list[list[float | None]]]:
    """(the tests without p_adjusted and verdict, the Spearman matrix) of the per-pair computation."""
    present = {n: m for n, m in column_roles(results).items() if n in columns}
    indicators = [c for c, m in present.items() if m["role"] == "indicator"]
    success = tested_success(results, [c for c, m in present.items() if m["role"] == "attack_success"],
                             config.auroc_budgets)
    outcomes = [c for c, m in present.items() if m["role"] == "robustness" or c in success]
    confounders = [c for c, m in present.items() if m["role"] == "confounder"]
    confounder = confounders[0] if confounders else None
    keep = columns[CORRECT_COLUMN] == 1
    rng = np.random.default_rng(seed)
    weights: dict[tuple[str, bytes], np.ndarray] = {}
    ranks: dict[tuple[str, bytes], np.ndarray] = {}

    def w_of(ok: np.ndarray, strata: tuple[str, np.ndarray] | None = None) -> np.ndarray:
        key = (strata[0] if strata else "", ok.tobytes())
        if key not in weights:
            weights[key] = (st.stratified_weights(strata[1][ok], config.n_bootstrap, rng) if strata else
                            st.bootstrap_weights(int(ok.sum()), config.n_bootstrap, rng))
        return weights[key]

    def ranks_of(name: str, ok: np.ndarray) -> np.ndarray:
        if (name, ok.tobytes()) not in ranks:
            ranks[name, ok.tobytes()] = weighted_ranks(columns[name][ok], w_of(ok))
        return ranks[name, ok.tobytes()]

    def residual_of(name: str, ok: np.ndarray) -> np.ndarray:
        key = (f"{name}|{confounder}", ok.tobytes())
        if key not in ranks:
            ranks[key] = st.weighted_residual(ranks_of(name, ok), ranks_of(confounder, ok), w_of(ok))
        return ranks[key]

    tests = []
    for outcome in outcomes:
        for indicator in indicators:
            x, y = columns[indicator], columns[outcome]
            ok = keep & np.isfinite(x) & np.isfinite(y)
            z = columns[confounder] if confounder and confounder != indicator else None
            if z is not None:
                ok &= np.isfinite(z)
            kind = "auroc" if present[outcome]["role"] == "attack_success" else "spearman"
            test: dict[str, Any] = {"indicator": indicator, "outcome": outcome, "kind": kind, "n": int(ok.sum()),
                                    "estimate": None, "p": None, "partial": None}
            tests.append(test)
            if test["n"] < config.min_samples:
                continue
            xs, ys = x[ok], y[ok]
            if kind == "auroc":
                label = ys.astype(bool)
                if label.all() or not label.any():
                    est, p = st.Interval(math.nan, math.nan, math.nan, config.level), math.nan
                else:
                    u = stats.mannwhitneyu(xs[label], xs[~label], alternative="two-sided")
                    value = float(u.statistic / (label.sum() * (~label).sum()))
                    boot = auroc_replicates(xs, label, w_of(ok, (outcome, y)))
                    est, p = st.percentile_interval(value, boot, config.level), float(u.pvalue)
                test["positives"] = int(ys.sum())
            else:
                rho = float(st._pearson_last_axis(stats.rankdata(xs), stats.rankdata(ys)))
                w = w_of(ok)
                est = (st.Interval(rho, math.nan, math.nan, config.level) if math.isnan(rho) else
                       st.percentile_interval(rho, weighted_pearson(ranks_of(indicator, ok), ranks_of(outcome, ok), w),
                                              config.level))
                p = permutation_p(xs, ys, rng, config.n_permutations)
            test["estimate"] = _interval(est)
            test["p"] = None if math.isnan(p) else p
            if z is not None:
                value = st.partial_spearman(xs, ys, z[ok])
                if math.isnan(value):
                    partial = st.Interval(value, math.nan, math.nan, config.level)
                else:
                    w = w_of(ok)
                    boot = weighted_pearson(residual_of(indicator, ok), residual_of(outcome, ok), w)
                    partial = st.percentile_interval(value, boot, config.level)
                test["partial"] = _interval(partial)

    names = [*indicators, *confounders, *outcomes]
    matrix = []
    for a in names:
        row = []
        for b in names:
            ok = keep & np.isfinite(columns[a]) & np.isfinite(columns[b])
            value = (float(st._pearson_last_axis(stats.rankdata(columns[a][ok]), stats.rankdata(columns[b][ok])))
                     if ok.sum() >= 3 else math.nan)
            row.append(None if math.isnan(value) else round(value, 4))
        matrix.append(row)
    return tests, matrix
