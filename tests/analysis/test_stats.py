"""The indicator statistics on synthetic data with known answers, against closed forms and enumeration."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from robaudit.analysis import stats as st


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 80).astype(float)
    y = x + rng.normal(size=80)
    assert st.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_monotone_relation_is_found_with_a_tight_ci() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=300)  # heavy-tailed, like gradient norms
    y = -np.log(x) + 0.3 * rng.normal(size=300)
    ci = st.spearman_ci(x, y, rng)
    assert ci.value < -0.8 and ci.high < -0.7 and ci.low < ci.value < ci.high
    assert st.permutation_p(x, y, rng, n_resamples=999) <= 2 / 1000 + 1e-12  # the two-sided floor


def test_ci_covers_zero_on_independent_data_at_about_the_nominal_rate() -> None:
    covered = 0
    for seed in range(120):
        rng = np.random.default_rng(seed)
        ci = st.spearman_ci(rng.normal(size=60), rng.normal(size=60), rng, n_resamples=400)
        covered += ci.low <= 0 <= ci.high
    assert 0.85 <= covered / 120 <= 1.0


def test_permutation_p_is_uniform_under_independence() -> None:
    ps = [st.permutation_p(*np.random.default_rng(s).normal(size=(2, 40)), np.random.default_rng(s + 1000),
                           n_resamples=300) for s in range(200)]
    rate = np.mean(np.array(ps) < 0.05)
    assert 0.01 <= rate <= 0.10


def test_exact_permutation_p_equals_enumeration() -> None:
    x = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0])
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.5, 8.5])
    rho = st.spearman(x, y)
    perms = [st.spearman(x, y[list(p)]) for p in itertools.permutations(range(6))]
    expected = np.mean(np.abs(perms) >= abs(rho) - 1e-12)
    assert st.permutation_p(x, y, np.random.default_rng(0)) == pytest.approx(expected)


def test_exact_permutation_p_at_eight_samples_enumerates_the_orderings_of_one_variable() -> None:
    """8 samples: the exact p over the 8! = 40,320 orderings of y (it used to enumerate 8!² pairings: out of memory)."""
    x = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.6, 5.3])
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.5, 8.5, 2.0, 3.0])
    perms = np.array(list(itertools.permutations(range(8))))
    rx, ry = stats.rankdata(x), stats.rankdata(y)[perms]
    null = ((ry - ry.mean(axis=1, keepdims=True)) @ (rx - rx.mean())) / np.sqrt(
        ((rx - rx.mean()) ** 2).sum() * ((ry - ry.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
    rho = st.spearman(x, y)
    gamma = 1e-14 * max(1.0, abs(rho))
    expected = min(1.0, 2 * min(np.mean(null <= rho + gamma), np.mean(null >= rho - gamma)))
    assert st.permutation_p(x, y, np.random.default_rng(0)) == pytest.approx(expected, abs=1e-12)


def test_partial_spearman_matches_the_closed_form_and_removes_a_confounder() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=400)  # confidence-like confounder drives both
    x = z + 0.5 * rng.normal(size=400)
    y = z + 0.5 * rng.normal(size=400)
    rxy, rxz, ryz = st.spearman(x, y), st.spearman(x, z), st.spearman(y, z)
    closed = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert st.partial_spearman(x, y, z) == pytest.approx(closed, abs=1e-10)
    assert rxy > 0.6
    ci = st.partial_spearman_ci(x, y, z, rng)
    assert ci.low <= 0 <= ci.high and abs(ci.value) < 0.12


def test_auroc_matches_pair_counting() -> None:
    rng = np.random.default_rng(3)
    score = np.round(rng.normal(size=50), 1)  # ties
    label = rng.random(50) < 0.4
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    ci = st.auroc_ci(score, label, rng)
    assert ci.value == pytest.approx(pairs)
    assert ci.low <= ci.value <= ci.high


def test_heavy_tails_fool_pearson_but_not_auroc() -> None:
    """science.md §4: point-biserial r was 0.16 where AUROC was 0.95."""
    rng = np.random.default_rng(4)
    label = np.arange(400) < 200
    score = np.where(label, rng.lognormal(1.5, 1.0, 400), rng.lognormal(0.0, 1.0, 400))
    score[~label][:2] *= 1e4  # two huge outliers among the negatives
    score[np.flatnonzero(~label)[:2]] = 1e5
    assert abs(stats.pearsonr(score, label).statistic) < 0.2
    assert st.auroc_ci(score, label, rng).value > 0.8


def test_benjamini_hochberg_matches_the_step_up_formula() -> None:
    p = [0.01, 0.04, 0.03, 0.2, float("nan"), 0.005]
    adj = st.benjamini_hochberg(p)
    finite = np.array([0.01, 0.04, 0.03, 0.2, 0.005])
    order = np.argsort(finite)
    m = len(finite)
    stepped = np.minimum.accumulate((finite[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expected = np.empty(m)
    expected[order] = np.minimum(stepped, 1)
    np.testing.assert_allclose([a for a in adj if not np.isnan(a)], expected)
    assert np.isnan(adj[4])


def test_weighted_bootstrap_ranks_equal_ranking_every_resample() -> None:
    """The O(R·n) multiplicity path gives the same bootstrap statistics as rankdata on x[idx]."""
    from robaudit.analysis.stats import _weighted_pearson, bootstrap_weights, weighted_ranks

    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=40), 1)  # many ties
    y = x + rng.normal(size=40)
    idx = np.random.default_rng(9).integers(0, 40, size=(50, 40))
    w = bootstrap_weights(40, 50, np.random.default_rng(9))
    assert (w.sum(axis=1) == 40).all()
    for r in range(50):
        ranks = weighted_ranks(x, w[r:r + 1])[0]
        expected = stats.rankdata(x[idx[r]])
        np.testing.assert_allclose(ranks[idx[r]], expected, rtol=0, atol=1e-12)
    naive = [stats.spearmanr(x[i], y[i]).statistic for i in idx]
    fast = _weighted_pearson(weighted_ranks(x, w), weighted_ranks(y, w), w)
    np.testing.assert_allclose(fast, naive, rtol=1e-10)
    from robaudit.analysis.stats import weighted_residual

    z = np.round(x + rng.normal(size=40), 1)
    rz = weighted_ranks(z, w)
    partial = _weighted_pearson(weighted_residual(weighted_ranks(x, w), rz, w),
                                weighted_residual(weighted_ranks(y, w), rz, w), w)
    np.testing.assert_allclose(partial, [st.partial_spearman(x[i], y[i], z[i]) for i in idx], rtol=1e-10)
