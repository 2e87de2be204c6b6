"""Noise allowances, checked against independent references and by simulation.

- δ = 0: the score statistic squared is the 2×2 chi-square statistic (scipy.stats.chi2_contingency).
- δ > 0: the restricted MLE equals Farrington & Manning's closed-form cubic root (1990).
- Newcombe's hybrid Wilson interval reproduces his published examples (Stat Med 1998, Table II).
- Simulation through the gate's evaluation: equal true accuracies fail at most at the stated level,
  and a real drop of a stated size fails with high probability.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import chi2_contingency

from gate_helpers import sim_run
from robaudit.gate import evaluate_gate, parse_rules
from robaudit.gate import stats


@pytest.mark.parametrize("table", [(420, 500, 400, 500), (30, 60, 20, 60), (57, 60, 45, 60), (10, 40, 25, 80)])
def test_score_test_at_zero_margin_is_the_chi_square_test(table: tuple[int, int, int, int]) -> None:
    k_b, n_b, k_c, n_c = table
    result = stats.two_proportion_test(k_b, n_b, k_c, n_c, 0.0, 0.05)
    chi2 = chi2_contingency([[k_b, n_b - k_b], [k_c, n_c - k_c]], correction=False).statistic
    assert result.statistic is not None
    assert result.statistic ** 2 == pytest.approx(chi2, rel=1e-6)
    assert math.copysign(1, result.statistic) == math.copysign(1, k_b / n_b - k_c / n_c)


def _farrington_manning(x1: int, n1: int, x2: int, n2: int, d: float) -> tuple[float, float]:
    """Closed-form restricted MLE of (p1, p2) under p1 − p2 = d (Farrington & Manning 1990): a cubic's root."""
    p1, p2 = x1 / n1, x2 / n2
    th = n2 / n1
    a = 1 + th
    b = -(1 + th + p1 + th * p2 + d * (th + 2))
    c = d * d + d * (2 * p1 + th + 1) + p1 + th * p2
    e = -p1 * d * (1 + d)
    v = b ** 3 / (3 * a) ** 3 - b * c / (6 * a * a) + e / (2 * a)
    u = math.copysign(math.sqrt(b * b / (3 * a) ** 2 - c / (3 * a)), v)
    w = (math.pi + math.acos(v / u ** 3)) / 3
    q1 = 2 * u * math.cos(w) - b / (3 * a)
    return q1, q1 - d


@pytest.mark.parametrize("case", [(56, 70, 48, 80, 0.1), (420, 500, 400, 500, 0.02), (30, 60, 20, 60, 0.05),
                                  (500, 500, 480, 500, 0.02), (12, 50, 30, 90, 0.03)])
def test_restricted_mle_matches_farrington_manning(case: tuple[int, int, int, int, float]) -> None:
    ours = stats.restricted_mle(*case)
    assert ours == pytest.approx(_farrington_manning(*case), abs=1e-7)
    assert ours[0] - ours[1] == pytest.approx(case[4], abs=1e-12)


@pytest.mark.parametrize(("counts", "published"), [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
])
def test_newcombe_interval_matches_published_examples(counts: tuple[int, int, int, int],
                                                      published: tuple[float, float]) -> None:
    k1, n1, k2, n2 = counts
    low = stats.newcombe_lower_bound(k1, n1, k2, n2, 0.025)       # one-sided 2.5 % = two-sided 95 %
    high = -stats.newcombe_lower_bound(k2, n2, k1, n1, 0.025)
    assert (round(low, 4), round(high, 4)) == published


@pytest.mark.parametrize(("k", "n", "level"), [(0, 20, 0.025), (7, 20, 0.05), (20, 20, 0.025), (431, 500, 0.01)])
def test_one_sided_wilson_bounds_match_the_closed_form(k: int, n: int, level: float) -> None:
    z = float(ndtri(1 - level))  # each side at one-sided level α (Wilson 1927)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert stats.wilson_bounds(k, n, level) == pytest.approx((max(0.0, centre - half), min(1.0, centre + half)), abs=1e-12)


# ---- simulation through the gate's own evaluation ----

P_TRUE, N, DRAWS, ALPHA = 0.85, 500, 1500, 0.05


def _false_fail_bound(draws: int) -> float:
    """α plus three binomial standard errors of a rate estimated from ``draws`` draws."""
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / draws)


def _fail_rate(noise: str, margin: float, p_base: float, p_cand: float, draws: int, seed: int) -> float:
    rules = parse_rules({"level": ALPHA, "rule": [{"metric": ["probes", "clean", "summary", "accuracy"],
                                                    "max-regression": margin, "noise": noise}]})
    rng = np.random.default_rng(seed)
    kb, kc = rng.binomial(N, p_base, draws), rng.binomial(N, p_cand, draws)
    fails = 0
    for b, c in zip(kb, kc):
        outcome = evaluate_gate(sim_run("cand", int(c), N), rules, sim_run("base", int(b), N), known_probes=["clean"])
        fails += outcome.outcomes[0].status == "failed"
    return fails / draws


@pytest.mark.parametrize("noise", ["two-proportion", "wilson"])
@pytest.mark.parametrize("margin", [0.0, 0.02])
def test_equal_accuracy_fails_at_most_at_the_stated_level(noise: str, margin: float) -> None:
    # the truth sits exactly on the allowed regression: the hardest case for a false fail
    rate = _fail_rate(noise, margin, P_TRUE, P_TRUE - margin, DRAWS, seed=1)
    assert rate <= _false_fail_bound(DRAWS)
    if noise == "two-proportion":
        assert rate >= 0.02  # a score test is close to its nominal level, not vacuously strict


def test_without_an_allowance_noise_alone_fails_half_the_time() -> None:
    rate = _fail_rate("none", 0.0, P_TRUE, P_TRUE, 500, seed=2)
    assert 0.35 <= rate <= 0.55  # P(p̂_c < p̂_b) = (1 − P(tie)) / 2


@pytest.mark.parametrize("noise", ["two-proportion", "wilson"])
def test_a_real_drop_of_twelve_points_fails(noise: str) -> None:
    # 0.85 → 0.73 with 2 points allowed: the excess regression is 10 points at n = 500 each
    rate = _fail_rate(noise, 0.02, P_TRUE, P_TRUE - 0.12, 500, seed=3)
    assert rate >= 0.95


def _bootstrap_fail_rate(shift: float, draws: int, seed: int) -> float:
    rules = parse_rules({"level": ALPHA, "bootstrap-resamples": 1000, "rule": [
        {"per-sample": ["clean", "loss"], "max-regression": 0.0, "higher-is-better": False}]})
    rng = np.random.default_rng(seed)
    n = N  # an audit of 500 samples
    fails = 0
    for _ in range(draws):
        difficulty = rng.gamma(2.0, 0.5, n)                 # shared per sample: the two runs are paired
        base = difficulty * rng.gamma(10.0, 0.1, n)
        cand = difficulty * rng.gamma(10.0, 0.1, n) * shift
        outcome = evaluate_gate(sim_run("cand", 1, 1, cand), rules, sim_run("base", 1, 1, base), known_probes=["clean"])
        assert outcome.outcomes[0].noise is not None and outcome.outcomes[0].noise.method == "bootstrap"
        fails += outcome.outcomes[0].status == "failed"
    return fails / draws


def test_bootstrap_allowance_equal_means_fail_at_most_at_the_level() -> None:
    draws = 300
    assert _bootstrap_fail_rate(1.0, draws, seed=4) <= _false_fail_bound(draws)


def test_bootstrap_allowance_catches_a_ten_percent_rise_in_loss() -> None:
    assert _bootstrap_fail_rate(1.10, 100, seed=5) >= 0.95
