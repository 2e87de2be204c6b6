"""Noise allowances: is a regression beyond the allowed margin real, or sampling noise?

Every metric rule is reduced to one *worse-ness* W, where larger is worse, and a limit:
an absolute bound t gives W = s·(t − v) with limit 0; a regression bound δ gives
W = s·(v_baseline − v_candidate) with limit δ; a ratio bound r gives W = v_c / v_b (lower is
better) or v_b / v_c (higher is better) with limit r. Here s = +1 when higher is better, −1 when
lower is better.

Without a noise allowance a rule fails when W > limit. With one, it fails only when the data
reject, at one-sided level α, the hypothesis that the true W is at most the limit. So when the
truth sits exactly on the limit, the gate fails with probability at most α (a false fail), and
a regression well beyond the limit fails with high probability. Three methods:

- ``two-proportion``: for accuracies (k successes of n) from two runs. A one-sided score test of
  H0: p_b − p_c ≤ δ against H1: p_b − p_c > δ, with the variance taken at the restricted maximum
  likelihood estimate under H0 (Farrington & Manning 1990; for δ = 0 it is the pooled
  two-proportion z-test, whose square is the 2×2 chi-square statistic).
- ``wilson``: Newcombe's hybrid score interval for p_b − p_c built from the two Wilson intervals
  (Newcombe 1998, method 10); the rule fails when its one-sided lower bound exceeds δ. For an
  absolute bound on one accuracy, the rule fails when the one-sided Wilson upper bound is below t.
- ``bootstrap``: for statistics of per-sample values (mean or median of a per-sample column): a
  percentile bootstrap of W (paired over sample ids when both runs cover the same samples,
  independent resampling otherwise); the rule fails when the one-sided lower bound exceeds the limit.

These tests treat baseline and candidate as independent samples (two-proportion and Wilson) even
when they cover the same sample ids; shared samples make the two accuracies positively correlated,
which only makes the tests conservative (fewer false fails, slightly less power).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr, ndtri, xlogy
from scipy.stats import bootstrap

from robaudit.probes.base import wilson_interval


@dataclass(frozen=True)
class NoiseResult:
    """The outcome of one noise test.

    Attributes:
        method: ``two-proportion``, ``wilson`` or ``bootstrap``.
        level: the one-sided significance level α.
        significant: whether W exceeds the limit significantly (the rule then fails).
        bound: the one-sided (1 − α) lower confidence bound of W (None for two-proportion).
        statistic: the test statistic (z for two-proportion), else None.
        p_value: the one-sided p-value (two-proportion), else None.
        detectable: the smallest W − limit that the test detects with 80 % power (two-proportion
            only; an approximation at the observed baseline accuracy), else None.
    """

    method: str
    level: float
    significant: bool
    bound: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    detectable: float | None = None

    def to_json(self) -> dict[str, object]:
        """As a JSON object (non-finite numbers become None)."""
        def clean(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {"method": self.method, "level": self.level, "significant": self.significant,
                "bound": clean(self.bound), "statistic": clean(self.statistic), "p_value": clean(self.p_value),
                "detectable": clean(self.detectable)}


def restricted_mle(k_b: int, n_b: int, k_c: int, n_c: int, margin: float) -> tuple[float, float]:
    """Maximum-likelihood (p_b, p_c) of two binomials under the constraint p_b − p_c = margin.

    Args:
        k_b, n_b: baseline successes and trials.
        k_c, n_c: candidate successes and trials.
        margin: the difference δ fixed by the null hypothesis, in (−1, 1).
    """
    lo, hi = max(0.0, -margin), min(1.0, 1.0 - margin)

    def neg_loglik(p_c: float) -> float:
        p_b = p_c + margin
        return -float(xlogy(k_b, p_b) + xlogy(n_b - k_b, 1 - p_b) + xlogy(k_c, p_c) + xlogy(n_c - k_c, 1 - p_c))

    # The log-likelihood is concave in p_c; bounded Brent finds its maximum on [lo, hi].
    res = minimize_scalar(neg_loglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    p_c = float(res.x)
    for edge in (lo, hi):  # Brent never evaluates the end points; the maximum may sit on one
        if neg_loglik(edge) < neg_loglik(p_c):
            p_c = edge
    return p_c + margin, p_c


def two_proportion_test(k_b: int, n_b: int, k_c: int, n_c: int, margin: float, level: float) -> NoiseResult:
    """One-sided score test of H0: p_b − p_c ≤ margin (the candidate is at most ``margin`` worse).

    Args:
        k_b, n_b: baseline correct count and sample count (higher is better).
        k_c, n_c: candidate correct count and sample count.
        margin: allowed regression δ ≥ 0, in proportion units (0.02 = 2 points).
        level: one-sided significance level α.
    """
    p_b, p_c = k_b / n_b, k_c / n_c
    pt_b, pt_c = restricted_mle(k_b, n_b, k_c, n_c, margin)
    var = pt_b * (1 - pt_b) / n_b + pt_c * (1 - pt_c) / n_c
    diff = p_b - p_c - margin
    if var <= 0:
        z = math.inf if diff > 1e-12 else -math.inf if diff < -1e-12 else 0.0
    else:
        z = diff / math.sqrt(var)
    p_value = float(ndtr(-z))
    se_b = math.sqrt(max(p_b * (1 - p_b), 1e-12) * (1 / n_b + 1 / n_c))
    detectable = float((ndtri(1 - level) + ndtri(0.8)) * se_b)
    return NoiseResult("two-proportion", level, p_value < level, statistic=z, p_value=p_value, detectable=detectable)


def wilson_bounds(k: int, n: int, level: float) -> tuple[float, float]:
    """The Wilson score interval of k/n whose each side has one-sided level α = ``level``.

    That is :func:`robaudit.probes.base.wilson_interval` at two-sided coverage 1 − 2α.
    """
    interval = wilson_interval(k, n, 1 - 2 * level)
    return float(interval.low), float(interval.high)


def newcombe_lower_bound(k_b: int, n_b: int, k_c: int, n_c: int, level: float) -> float:
    """One-sided (1 − α) lower confidence bound of p_b − p_c (Newcombe's hybrid Wilson score method)."""
    low_b, _ = wilson_bounds(k_b, n_b, level)
    _, high_c = wilson_bounds(k_c, n_c, level)
    p_b, p_c = k_b / n_b, k_c / n_c
    return p_b - p_c - math.sqrt((p_b - low_b) ** 2 + (high_c - p_c) ** 2)


def wilson_regression_test(k_b: int, n_b: int, k_c: int, n_c: int, margin: float, level: float) -> NoiseResult:
    """Fail when Newcombe's one-sided lower bound of p_b − p_c exceeds ``margin``."""
    bound = newcombe_lower_bound(k_b, n_b, k_c, n_c, level)
    return NoiseResult("wilson", level, bound > margin + 1e-12, bound=bound)


def wilson_threshold_test(k: int, n: int, threshold: float, level: float) -> NoiseResult:
    """Absolute bound p ≥ threshold: fail when the one-sided (1 − α) Wilson upper bound is below it.

    Returns:
        a result whose ``bound`` is the lower bound of W = threshold − p.
    """
    _, upper = wilson_bounds(k, n, level)
    return NoiseResult("wilson", level, upper < threshold - 1e-12, bound=threshold - upper)


def bootstrap_lower_bound(samples: Sequence[np.ndarray], worse: Callable[..., np.ndarray], *, paired: bool,
                          level: float, n_resamples: int, seed: int) -> float:
    """One-sided (1 − α) percentile-bootstrap lower bound of ``worse(*samples)``.

    Args:
        samples: one or two 1-D arrays of per-sample values (candidate first).
        worse: the worse-ness statistic, vectorised over the last axis.
        paired: resample the arrays jointly (same sample ids, same order) or independently.
        level: one-sided α; the two-sided (1 − 2α) percentile interval's lower end is the bound.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling generator (results are reproducible).
    """
    if any(len(s) < 2 for s in samples):
        return float(worse(*[np.asarray(s)[None, :] for s in samples])[0])
    res = bootstrap(tuple(samples), worse, paired=paired, vectorized=True, n_resamples=n_resamples,
                    confidence_level=1 - 2 * level, method="percentile", axis=-1,
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low)


def bootstrap_test(samples: Sequence[np.ndarray], worse: Callable[..., np.ndarray], limit: float, *, paired: bool,
                   level: float, n_resamples: int, seed: int) -> NoiseResult:
    """Fail when the bootstrap lower bound of W exceeds ``limit``."""
    bound = bootstrap_lower_bound(samples, worse, paired=paired, level=level, n_resamples=n_resamples, seed=seed)
    return NoiseResult("bootstrap", level, bool(bound > limit + 1e-12 * max(1.0, abs(limit))), bound=bound)


STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "mean": lambda x, axis=-1: np.mean(x, axis=axis),
    "median": lambda x, axis=-1: np.median(x, axis=axis),
}
"""Statistics of a per-sample column that a rule can bound (vectorised over ``axis``)."""
