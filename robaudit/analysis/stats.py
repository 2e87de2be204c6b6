"""Rank statistics for "does this indicator predict robustness?", per sample and across models.

Everything is rank-based (Spearman, Kendall, AUROC): indicators such as gradient norms and
curvatures are heavy-tailed, and Pearson / point-biserial correlations on them mislead
(science.md §4 measured r = 0.16 where AUROC was 0.95). Intervals are percentile
bootstraps over samples; p-values are permutation p-values (exact when the count is small).
All randomness comes from the ``rng`` argument, so results reproduce under a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided ``level`` interval (NaN bounds when undefined)."""

    value: float
    low: float
    high: float
    level: float


def _pearson_last_axis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=-1) / denom, np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN when either variable is constant."""
    return float(_pearson_last_axis(stats.rankdata(x), stats.rankdata(y)))


def spearman_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int = 1000,
                level: float = 0.95) -> Interval:
    """Spearman's ρ with a paired percentile-bootstrap interval (samples resampled with replacement)."""
    rho = spearman(x, y)
    n = len(x)
    if n < 3 or math.isnan(rho):
        return Interval(rho, math.nan, math.nan, level)
    idx = rng.integers(0, n, size=(n_resamples, n))
    boot = _pearson_last_axis(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(rho, float(lo), float(hi), level)


def permutation_p(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int = 2000) -> float:
    """Two-sided permutation p-value of Spearman's ρ (pairings permuted; exact for n ≤ 8)."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    exact = len(x) <= 8
    res = stats.permutation_test(
        (rx, ry), lambda a, b, axis=-1: _pearson_last_axis(a, b), permutation_type="pairings",
        vectorized=True, n_resamples=np.inf if exact else n_resamples, alternative="two-sided", rng=rng,
    )
    return float(res.pvalue)


def _residualise(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Residual of ``r`` after least-squares regression on ``z`` with intercept (last axis)."""
    zc = z - z.mean(axis=-1, keepdims=True)
    rc = r - r.mean(axis=-1, keepdims=True)
    denom = (zc * zc).sum(axis=-1, keepdims=True)
    beta = np.divide((rc * zc).sum(axis=-1, keepdims=True), denom, out=np.zeros_like(denom), where=denom > 0)
    return rc - beta * zc


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman's ρ between x and y controlling for z: the correlation of rank residuals after
    regressing the ranks of x and of y on the ranks of z."""
    rz = stats.rankdata(z)
    return float(_pearson_last_axis(_residualise(stats.rankdata(x), rz), _residualise(stats.rankdata(y), rz)))


def partial_spearman_ci(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator,
                        n_resamples: int = 1000, level: float = 0.95) -> Interval:
    """:func:`partial_spearman` with a paired percentile-bootstrap interval."""
    value = partial_spearman(x, y, z)
    n = len(x)
    if n < 4 or math.isnan(value):
        return Interval(value, math.nan, math.nan, level)
    idx = rng.integers(0, n, size=(n_resamples, n))
    rz = stats.rankdata(z[idx], axis=1)
    boot = _pearson_last_axis(_residualise(stats.rankdata(x[idx], axis=1), rz),
                              _residualise(stats.rankdata(y[idx], axis=1), rz))
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(lo), float(hi), level)


def auroc_ci(score: np.ndarray, label: np.ndarray, rng: np.random.Generator, n_resamples: int = 1000,
             level: float = 0.95) -> Interval:
    """AUROC of ``score`` for the positive class of binary ``label`` (0.5 = no information;
    below 0.5 = the indicator ranks the other way), with a stratified percentile bootstrap."""
    label = label.astype(bool)
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return Interval(math.nan, math.nan, math.nan, level)
    value = float(roc_auc_score(label, score))
    bp = pos[rng.integers(0, len(pos), size=(n_resamples, len(pos)))]
    bn = neg[rng.integers(0, len(neg), size=(n_resamples, len(neg)))]
    # AUROC = P(score_pos > score_neg) + ½P(tie), via the Mann–Whitney U of each resample.
    both = np.concatenate([bp, bn], axis=1)
    ranks = stats.rankdata(both, axis=1)[:, : len(pos)]
    u = ranks.sum(axis=1) - len(pos) * (len(pos) + 1) / 2
    boot = u / (len(pos) * len(neg))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(lo), float(hi), level)


def auroc_p(score: np.ndarray, label: np.ndarray) -> float:
    """Two-sided p-value of AUROC ≠ 0.5 (Mann–Whitney U test, exact for small samples)."""
    label = label.astype(bool)
    if label.all() or not label.any():
        return math.nan
    return float(stats.mannwhitneyu(score[label], score[~label], alternative="two-sided").pvalue)


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false-discovery rate); NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out.tolist()


def rank_correlation_exact(x: np.ndarray, y: np.ndarray, method: str, rng: np.random.Generator,
                           n_resamples: int = 9999) -> tuple[float, float]:
    """(coefficient, two-sided permutation p) of Kendall's τ-b or Spearman's ρ across few models.

    The permutation distribution is enumerated exactly for up to 8 models, else sampled.
    """
    func = {"kendall": lambda a, b: stats.kendalltau(a, b).statistic,
            "spearman": lambda a, b: stats.spearmanr(a, b).statistic}[method]
    value = float(func(x, y))
    if len(x) < 3 or math.isnan(value):
        return value, math.nan
    res = stats.permutation_test((x, y), func, permutation_type="pairings", vectorized=False,
                                 n_resamples=np.inf if len(x) <= 8 else n_resamples,
                                 alternative="two-sided", rng=rng)
    return value, float(res.pvalue)
