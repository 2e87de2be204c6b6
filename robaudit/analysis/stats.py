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


def _count_dtype(n: int) -> type:
    """The narrowest integer type that holds n·(2n + 1) (a multiplicity times a doubled rank)."""
    return np.int32 if n * (2 * n + 1) < 2**31 else np.int64


@dataclass(frozen=True)
class RankIndex:
    """Each column's sort, for ranking many resamples of it with one sort (:func:`rank_index`).

    ``orders``: each column's stable sort order, flattened, shape ``(K·n,)``; ``first`` and ``after``: for each
    value (flattened ``(K, n)``, in the columns' own order), where its tie group starts and ends in its column's
    prefix sums of the sorted multiplicities (flat indices into ``(K, n + 1)``), so that the copies drawn
    before the group are ``prefix[first]`` and those up to its end ``prefix[after]``.
    """

    orders: np.ndarray
    first: np.ndarray
    after: np.ndarray
    shape: tuple[int, int]


def rank_index(columns: np.ndarray) -> RankIndex:
    """The :class:`RankIndex` of ``columns`` (shape ``(K, n)``, finite)."""
    columns = np.asarray(columns, dtype=np.float64)
    k, n = columns.shape
    orders = np.argsort(columns, axis=1, kind="stable")
    ordered = np.take_along_axis(columns, orders, axis=1)
    starts = np.ones((k, n), bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones((k, n), bool)
    ends[:, :-1] = starts[:, 1:]
    position = np.broadcast_to(np.arange(n), (k, n))
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)  # sorted position → its group's start
    last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
    sorted_at = np.empty_like(orders)  # the inverse permutation: value → its sorted position
    np.put_along_axis(sorted_at, orders, position, axis=1)
    row = (np.arange(k) * (n + 1))[:, None]
    return RankIndex(orders.ravel(), (np.take_along_axis(first, sorted_at, axis=1) + row).ravel(),
                     (np.take_along_axis(last, sorted_at, axis=1) + 1 + row).ravel(), (k, n))


def weighted_ranks_columns(columns: np.ndarray, weights: np.ndarray, index: RankIndex | None = None) -> np.ndarray:
    """:func:`weighted_ranks` of K columns under the same multiplicities: shape ``(R, K, n)``.

    Integer arithmetic throughout (so exact): twice the average rank of a tie group is
    ``before + through + 1``, where ``before`` and ``through`` count the copies drawn before the group and up
    to its end, read from each column's prefix sums of its sorted multiplicities.

    Args:
        columns: shape ``(K, n)``.
        weights: multiplicities, shape ``(R, n)`` (non-negative integers, as floats or ints).
        index: ``rank_index(columns)``, when the caller ranks several chunks of resamples of the same columns.
    """
    index = rank_index(columns) if index is None else index
    k, n = index.shape
    r = len(weights)
    dtype = _count_dtype(n)
    drawn = np.take(weights.astype(dtype), index.orders, axis=1).reshape(r, k, n)
    prefix = np.zeros((r, k, n + 1), dtype)
    np.cumsum(drawn, axis=-1, dtype=dtype, out=prefix[:, :, 1:])
    prefix = prefix.reshape(r, k * (n + 1))
    doubled = np.take(prefix, index.first, axis=1)
    doubled += np.take(prefix, index.after, axis=1)
    doubled += 1
    return np.multiply(doubled, 0.5).reshape(r, k, n)


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of each resampled multiset, without sorting it again.

    Row r of ``weights`` says how often each value is drawn; the returned rank of value i in row r
    is the average rank (ties averaged, as ``scipy.stats.rankdata``) that every copy of it gets in
    the multiset of row r. One sort of ``values`` serves all rows: O(R·n) instead of O(R·n log n).
    Ranks are half-integers computed in integer arithmetic, so they are exact.

    Args:
        values: the n values, shape ``(n,)``.
        weights: multiplicities, shape ``(R, n)``.

    Returns:
        Ranks, shape ``(R, n)`` (meaningless where the weight is 0).
    """
    return weighted_ranks_columns(np.asarray(values)[None, :], weights)[:, 0]


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
    """Two-sided permutation p-value of Spearman's ρ (y's order permuted against x; exact for n ≤ 8).

    The same test as ``scipy.stats.permutation_test((ry,), lambda b: pearson(rx, b),
    permutation_type="pairings")`` on the ranks, with the same draws from ``rng``; see
    :func:`rank_permutation_p`.
    """
    from scipy import stats
    return rank_permutation_p(stats.rankdata(x), stats.rankdata(y), rng, n_resamples)


def rank_permutation_p(rx: np.ndarray, ry: np.ndarray, rng: np.random.Generator, n_resamples: int = 2000) -> float:
    """:func:`permutation_p` from the average ranks ``rx``, ``ry`` (shape (n,)); NaN when either is constant.

    The test permutes one sample's order and keeps the other fixed, scipy's documented form of a
    correlation test: ``scipy.stats.permutation_test((ry,), lambda b: pearson(rx, b),
    permutation_type="pairings", n_resamples=n_resamples, rng=rng, vectorized=True,
    alternative="two-sided")``. Its null distribution is exactly that of permuting both samples (scipy's
    two-sample form, used before): with π0, π1 independent and uniform, Σ_i a_{π0(i)} b_{π1(i)} =
    Σ_j a_j b_{π(j)} with j = π0(i) and π = π1∘π0⁻¹, and π is uniform (for each fixed π0, π1∘π0⁻¹ is a
    uniform permutation), so the statistic has the same law with half the random draws.

    Above 8 samples (and below n! resamples) this is that call computed in one batch: the same
    ``rng.permuted`` draw of y's order, the null as one matrix-vector product of the centred ranks
    (half-integers, so every sum is exact in any order and the null equals scipy's bit for bit), and
    scipy's p-value rule (ties within 100 ulp of the observed ρ count as extreme; +1 in numerator and
    denominator). Otherwise scipy's exact test over all n! orders of y.
    """
    from scipy import stats
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    n = len(rx)
    # exact, as scipy is whenever n_resamples covers every order (20! > 2e18: no larger n can qualify)
    if n <= 8 or (n <= 20 and n_resamples >= math.factorial(n)):
        res = stats.permutation_test((ry,), lambda b, axis=-1: _pearson_last_axis(rx, b), permutation_type="pairings",
                                     vectorized=True, n_resamples=np.inf, alternative="two-sided")
        return float(res.pvalue)
    order = rng.permuted(np.tile(np.arange(n), (n_resamples, 1, 1)), axis=-1)[:, 0]  # scipy's draw: (resample, 1, i)
    a, b = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    observed = (a * b).sum() / denom
    null = (np.take(b, order) @ a) / denom  # exact in any summation order: products of half-integers
    gamma = abs(np.finfo(np.float64).eps * 100 * observed)
    less = (np.count_nonzero(null <= observed + gamma) + 1) / (n_resamples + 1)
    greater = (np.count_nonzero(null >= observed - gamma) + 1) / (n_resamples + 1)
    return float(np.clip(min(less, greater) * 2, 0.0, 1.0))


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
    """Bootstrap replicates of the AUROC under multiplicities ``w`` (from :func:`stratified_weights`), shape (R,).

    AUROC = P(score_pos > score_neg) + ½P(tie), via the Mann–Whitney U of each resample.
    """
    return auroc_replicates_columns(np.asarray(score)[None, :], label, w)[:, 0]


def auroc_replicates_columns(scores: np.ndarray, label: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`auroc_replicates` of K score columns against one binary ``label`` under the same ``w``.

    Twice the Mann–Whitney U of a resample is Σ over positives of (multiplicity × (the negatives'
    multiplicity strictly below it + that at or below it)): a tie counts ½. Both are read from a prefix sum
    of the negatives' multiplicities in each column's sort order, at each positive's place among them
    (``np.searchsorted``, left and right); or, when the positives are fewer, the other way round (twice
    U = 2·(positives drawn)·(negatives drawn) − the same sum over negatives of the positives below them).
    Integer arithmetic throughout, so U is exact and equals ranking every resample with
    ``scipy.stats.rankdata``.

    Args:
        scores: shape ``(K, n)``, finite.
        label: shape ``(n,)``, 0/1 or bool.
        w: stratified multiplicities, shape ``(R, n)``.

    Returns:
        AUROC replicates, shape ``(R, K)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    counts = w.astype(_count_dtype(len(label)))
    if n_neg <= n_pos:
        twice_u = _draws_below(scores[:, ~label], counts[:, ~label], scores[:, label], counts[:, label])
    else:
        drawn = counts[:, label].sum(axis=1, dtype=np.int64) * counts[:, ~label].sum(axis=1, dtype=np.int64)
        twice_u = 2 * drawn[:, None] - _draws_below(scores[:, label], counts[:, label], scores[:, ~label],
                                                    counts[:, ~label])
    return twice_u / 2 / (n_pos * n_neg)


def _draws_below(values: np.ndarray, counts: np.ndarray, queries: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ over queries of (its multiplicity × (the values' multiplicity strictly below it + that at or below
    it)), per resample and column: shape (R, K), int64.

    Args:
        values: shape ``(K, a)``; ``counts``: their multiplicities, shape ``(R, a)``.
        queries: shape ``(K, b)``; ``weights``: their multiplicities, shape ``(R, b)``.
    """
    (k, a), (r, b) = values.shape, weights.shape
    orders = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, orders, axis=1)
    row = (np.arange(k) * (a + 1))[:, None]  # each column's offset in the flattened prefix sums
    below = np.stack([np.searchsorted(o, q, side="left") for o, q in zip(ordered, queries)]) + row
    through = np.stack([np.searchsorted(o, q, side="right") for o, q in zip(ordered, queries)]) + row
    prefix = np.zeros((r, k, a + 1), counts.dtype)
    np.cumsum(np.take(counts, orders.ravel(), axis=1).reshape(r, k, a), axis=-1, dtype=counts.dtype,
              out=prefix[:, :, 1:])
    prefix = prefix.reshape(r, k * (a + 1))
    total = _weighted_rows(np.take(prefix, below.ravel(), axis=1).reshape(r, k, b), weights)
    tied = (below != through).any(axis=1)  # a query ties with a value
    if tied.any():
        total[:, tied] += _weighted_rows(np.take(prefix, through[tied].ravel(), axis=1).reshape(r, -1, b), weights)
    total[:, ~tied] *= 2
    return total


def _weighted_rows(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_p ``weights[r, p]`` × ``values[r, k, p]``, shape (R, K), as int64 (exact: with stratified
    multiplicities each sum is at most 2·n_pos·n_neg < n², which the count type holds)."""
    return np.einsum("rkp,rp->rk", values, weights).astype(np.int64)


def auroc_p(score: np.ndarray, label: np.ndarray) -> float:
    """Two-sided p-value of AUROC ≠ 0.5 (Mann–Whitney U test, exact for small samples)."""
    from scipy import stats
    label = label.astype(bool)
    if label.all() or not label.any():
        return math.nan
    return float(stats.mannwhitneyu(score[label], score[~label], alternative="two-sided").pvalue)


def auroc_p_columns(scores: np.ndarray, label: np.ndarray) -> np.ndarray:
    """:func:`auroc_p` of K score columns (shape ``(K, n)``) against one ``label``, shape (K,).

    One ``scipy.stats.mannwhitneyu`` call over all columns where scipy's method choice cannot depend
    on the other columns (both classes larger than 8: the asymptotic test); per column otherwise.
    """
    from scipy import stats
    scores = np.asarray(scores, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(len(scores), math.nan)
    if n_pos <= 8 or n_neg <= 8:  # scipy picks exact or asymptotic from ties over the whole batch
        return np.array([auroc_p(s, label) for s in scores])
    res = stats.mannwhitneyu(scores[:, label], scores[:, ~label], alternative="two-sided", axis=1)
    return np.asarray(res.pvalue, dtype=np.float64).reshape(len(scores))


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false-discovery rate); NaNs stay NaN."""
    from scipy import stats
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out.tolist()
