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

# scipy.stats (which imports scipy.sparse) is imported inside the functions that use it, so that
# `robaudit validate` and `--version` never load it.


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


def bootstrap_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities of a paired bootstrap: row r counts how often each of the n samples is drawn
    (n draws with replacement), shape ``(n_resamples, n)``."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (idx + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of each resampled multiset, without sorting it again.

    Row r of ``weights`` says how often each value is drawn; the returned rank of value i in row r
    is the average rank (ties averaged, as ``scipy.stats.rankdata``) that every copy of it gets in
    the multiset of row r. One sort of ``values`` serves all rows: O(R·n) instead of O(R·n log n).

    Args:
        values: the n values, shape ``(n,)``.
        weights: multiplicities, shape ``(R, n)``.

    Returns:
        Ranks, shape ``(R, n)`` (meaningless where the weight is 0).
    """
    n = len(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1  # tie group of each sorted value
    ends = np.r_[np.nonzero(starts)[0][1:], n] - 1
    through = np.cumsum(weights[:, order], axis=1)[:, ends]  # copies up to the end of each group
    before = np.concatenate([np.zeros((len(weights), 1)), through[:, :-1]], axis=1)
    group_rank = before + (through - before + 1) / 2
    ranks = np.empty_like(weights)
    ranks[:, order] = group_rank[:, group]
    return ranks


def _weighted_centre(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a - (w * a).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson's r of each row's multiset (row weights = multiplicities)."""
    a, b = _weighted_centre(a, w), _weighted_centre(b, w)
    denom = np.sqrt((w * a * a).sum(axis=-1) * (w * b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (w * a * b).sum(axis=-1) / denom, np.nan)


def weighted_residual(r: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Residual of ``r`` after weighted least squares on ``z`` with intercept (rows independent), shape (R, n)."""
    rc, zc = _weighted_centre(r, w), _weighted_centre(z, w)
    denom = (w * zc * zc).sum(axis=-1, keepdims=True)
    beta = np.divide((w * rc * zc).sum(axis=-1, keepdims=True), denom, out=np.zeros_like(denom), where=denom > 0)
    return rc - beta * zc


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN when either variable is constant."""
    from scipy import stats
    return float(_pearson_last_axis(stats.rankdata(x), stats.rankdata(y)))


def percentile_interval(value: float, boot: np.ndarray, level: float) -> Interval:
    """``value`` with the percentile interval of its bootstrap replicates ``boot`` (non-finite ones dropped)."""
    boot = boot[np.isfinite(boot)]
    if math.isnan(value) or len(boot) == 0:
        return Interval(value, math.nan, math.nan, level)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(value, float(lo), float(hi), level)


def spearman_replicates(rx: np.ndarray, ry: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of Spearman's ρ from :func:`weighted_ranks` of x and y under weights ``w``."""
    return _weighted_pearson(rx, ry, w)


def partial_spearman_replicates(rx: np.ndarray, ry: np.ndarray, rz: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the partial Spearman ρ (x, y controlling for z) from weighted ranks."""
    return _weighted_pearson(weighted_residual(rx, rz, w), weighted_residual(ry, rz, w), w)


def spearman_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int = 1000,
                level: float = 0.95) -> Interval:
    """Spearman's ρ with a paired percentile-bootstrap interval (samples resampled with replacement)."""
    rho = spearman(x, y)
    if len(x) < 3 or math.isnan(rho):
        return Interval(rho, math.nan, math.nan, level)
    w = bootstrap_weights(len(x), n_resamples, rng)
    return percentile_interval(rho, spearman_replicates(weighted_ranks(x, w), weighted_ranks(y, w), w), level)


def permutation_p(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int = 2000) -> float:
    """Two-sided permutation p-value of Spearman's ρ (pairings permuted; exact for n ≤ 8)."""
    from scipy import stats
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    if len(x) <= 8:  # exact: permute y's order only (n! pairings; permuting both samples would enumerate n!²)
        res = stats.permutation_test((ry,), lambda b, axis=-1: _pearson_last_axis(rx, b), permutation_type="pairings",
                                     vectorized=True, n_resamples=np.inf, alternative="two-sided")
        return float(res.pvalue)
    res = stats.permutation_test(
        (rx, ry), lambda a, b, axis=-1: _pearson_last_axis(a, b), permutation_type="pairings",
        vectorized=True, n_resamples=n_resamples, alternative="two-sided", rng=rng,
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
    from scipy import stats
    rz = stats.rankdata(z)
    return float(_pearson_last_axis(_residualise(stats.rankdata(x), rz), _residualise(stats.rankdata(y), rz)))


def partial_spearman_ci(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator,
                        n_resamples: int = 1000, level: float = 0.95) -> Interval:
    """:func:`partial_spearman` with a paired percentile-bootstrap interval."""
    value = partial_spearman(x, y, z)
    if len(x) < 4 or math.isnan(value):
        return Interval(value, math.nan, math.nan, level)
    w = bootstrap_weights(len(x), n_resamples, rng)
    boot = partial_spearman_replicates(weighted_ranks(x, w), weighted_ranks(y, w), weighted_ranks(z, w), w)
    return percentile_interval(value, boot, level)


def auroc_ci(score: np.ndarray, label: np.ndarray, rng: np.random.Generator, n_resamples: int = 1000,
             level: float = 0.95) -> Interval:
    """AUROC of ``score`` for the positive class of binary ``label`` (0.5 = no information;
    below 0.5 = the indicator ranks the other way), with a stratified percentile bootstrap."""
    label = label.astype(bool)
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return Interval(math.nan, math.nan, math.nan, level)
    return percentile_interval(auroc(score, label), auroc_replicates(score, label, stratified_weights(label, n_resamples, rng)),
                               level)


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """AUROC of ``score`` for the positive class of binary ``label`` (NaN when a class is empty)."""
    from scipy import stats
    label = label.astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    u = stats.rankdata(score)[label].sum() - n_pos * (n_pos + 1) / 2  # Mann–Whitney U of the positives
    return float(u / (n_pos * n_neg))


def stratified_weights(label: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap multiplicities that resample positives and negatives separately (class sizes fixed),
    shape ``(n_resamples, n)``."""
    label = label.astype(bool)
    w = np.zeros((n_resamples, len(label)))
    w[:, label] = bootstrap_weights(int(label.sum()), n_resamples, rng)
    w[:, ~label] = bootstrap_weights(int((~label).sum()), n_resamples, rng)
    return w


def auroc_replicates(score: np.ndarray, label: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the AUROC under multiplicities ``w`` (from :func:`stratified_weights`).

    AUROC = P(score_pos > score_neg) + ½P(tie), via the Mann–Whitney U of each resample.
    """
    label = label.astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    ranks = weighted_ranks(score, w)
    u = (w[:, label] * ranks[:, label]).sum(axis=1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc_p(score: np.ndarray, label: np.ndarray) -> float:
    """Two-sided p-value of AUROC ≠ 0.5 (Mann–Whitney U test, exact for small samples)."""
    from scipy import stats
    label = label.astype(bool)
    if label.all() or not label.any():
        return math.nan
    return float(stats.mannwhitneyu(score[label], score[~label], alternative="two-sided").pvalue)


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false-discovery rate); NaNs stay NaN."""
    from scipy import stats
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out.tolist()
