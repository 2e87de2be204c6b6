"""Robust / non-robust splits from attack results, summaries, and the batched Lanczos solver."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geometry_helpers import linear_setup, run_probe
from helpers import context
from robaudit.attack_outcomes import build_outcome_table
from robaudit.probes.base import ProbeResult
from robaudit.probes.geometry.gradient_probe import InputGradients
from robaudit.probes.geometry.groups import sample_groups
from robaudit.probes.geometry.lanczos import batched_lanczos
from robaudit.probes.geometry.stats import describe, histogram


def _attack(norm: str, eps: list[float] | None = None, **columns: np.ndarray) -> ProbeResult:
    return ProbeResult(summary={"norm": norm, "eps": eps or []}, per_sample=dict(columns))


def test_linf_success_columns_at_the_audit_epsilon_split_correct_samples():
    _, probe_ctx, _, _ = linear_setup(n=12)
    n = len(probe_ctx.data)
    broken = np.zeros(n, dtype=bool)
    broken[::3] = True
    previous = {
        "attack.fgsm": _attack("linf", [0.1, 0.2], **{"success_eps_0.1": broken, "success_eps_0.2": np.ones(n, bool)}),
        "attack.pgd_l2": _attack("l2", [0.1], **{"success_eps_0.1": np.ones(n, bool)}),  # L2: ignored
    }
    ctx = context(probe_ctx.model, probe_ctx.data, batch_size=5, previous=previous)
    correct = (ctx.clean_logits().argmax(1) == ctx.data.y).numpy()
    groups = sample_groups(ctx, 0.1)
    np.testing.assert_array_equal(groups.masks["non_robust"], correct & broken)
    np.testing.assert_array_equal(groups.masks["robust"], correct & ~broken)
    assert groups.robustness_source["probes"] == ["attack.fgsm"]
    assert groups.available_attack_eps == [0.1, 0.2]
    res = run_probe(InputGradients(InputGradients.Config(epsilon=0.1)), ctx)
    assert set(res.summary["loss_grad_l2"]) == {"all", "correct", "incorrect", "robust", "non_robust"}
    assert res.summary["loss_grad_l2"]["robust"]["n"] == int((correct & ~broken).sum())
    assert res.summary["group_sizes"]["non_robust"] == int((correct & broken).sum())
    assert set(res.artifacts["histograms"]["loss_grad_l1"]["counts"]) >= {"robust", "non_robust"}


def test_distances_and_fixed_budgets_are_unioned_in_one_table():
    """min_eps (and any distance) ≤ ε breaks a sample at ε, at any ε; an L2 distance never breaks at an L∞ ε."""
    n = 6
    min_eps = np.array([0.01, 0.05, np.nan, 0.2, 8 / 255, 1.0])
    pgd = np.array([0, 0, 1, 0, 0, 0], dtype=bool)
    table = build_outcome_table({"attack.min_eps": _attack("linf", min_eps=min_eps),
                                 "attack.pgd_linf": _attack("linf", [8 / 255], **{"success_eps_0.0313725": pgd})}, n)
    broken, attacks = table.broken_at("linf", 8 / 255)
    np.testing.assert_array_equal(broken, [True, False, True, False, True, False])
    assert attacks == ("attack.min_eps", "attack.pgd_linf")
    broken, attacks = table.broken_at("linf", 0.1)  # no fixed-budget attack there: distances alone answer
    np.testing.assert_array_equal(broken, [True, True, False, False, True, False])
    assert attacks == ("attack.min_eps",)
    assert build_outcome_table({}, n).broken_at("linf", 0.1) is None
    assert build_outcome_table({"attack.min_eps": _attack("l2", min_eps=min_eps)}, n).broken_at("linf", 0.1) is None


def test_without_attacks_only_correctness_splits():
    _, ctx, _, _ = linear_setup(n=12)
    res = run_probe(InputGradients(), ctx)
    assert set(res.summary["decision"]) == {"all", "correct", "incorrect"}
    assert res.summary["robustness_source"] is None
    # d > 0 exactly on the correctly classified samples
    correct = (ctx.clean_logits().argmax(1) == ctx.data.y).numpy()
    np.testing.assert_array_equal(res.per_sample["decision"] > 0, correct)


def test_describe_and_histogram_match_numpy():
    rng = np.random.default_rng(0)
    v = np.exp(rng.normal(size=200) * 3)
    v[5] = np.nan
    d = describe(v)
    finite = v[np.isfinite(v)]
    assert d["n"] == 199 and d["median"] == pytest.approx(np.median(finite))
    assert d["q95"] == pytest.approx(np.quantile(finite, 0.95))
    _, ctx, _, _ = linear_setup(n=200)
    groups = sample_groups(ctx, 0.1)
    h = histogram(v, groups, bins=10)
    assert h["scale"] == "log" and len(h["edges"]) == 11
    assert sum(h["counts"]["all"]) == 199
    assert sum(h["counts"]["correct"]) + sum(h["counts"]["incorrect"]) == 199


@pytest.mark.parametrize("rank", [None, 3])
def test_batched_lanczos_matches_dense_eigenvalues(rank):
    g = torch.Generator().manual_seed(0)
    b, d = 4, 40
    q, _ = torch.linalg.qr(torch.randn(b, d, d, generator=g, dtype=torch.float64))
    ev = torch.randn(b, d, generator=g, dtype=torch.float64) * torch.logspace(1, -2, d, dtype=torch.float64)
    if rank is not None:
        ev[:, rank:] = 0  # low rank: the Krylov space closes early (breakdown) at rank + 1
    mats = q @ torch.diag_embed(ev) @ q.transpose(1, 2)
    res = batched_lanczos(lambda v: torch.einsum("bij,bj->bi", mats, v),
                          torch.randn(b, d, generator=g, dtype=torch.float64), steps=d)
    for i in range(b):
        got = res.ritz[i][~res.ritz[i].isnan()]
        ref = torch.linalg.eigvalsh(mats[i]).flip(0)
        if rank is None:
            torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-10)
        else:
            assert res.steps[i] <= rank + 1 and res.residual[i] == 0
            nz = ref[ref.abs() > 1e-12]
            torch.testing.assert_close(got[got.abs() > 1e-9].sort().values, nz.sort().values, rtol=1e-8, atol=1e-10)
    # few steps: the extreme Ritz values converge first and never overshoot the spectrum
    few = batched_lanczos(lambda v: torch.einsum("bij,bj->bi", mats, v),
                          torch.randn(b, d, generator=g, dtype=torch.float64), steps=20)
    for i in range(b):
        ref = torch.linalg.eigvalsh(mats[i])
        assert few.ritz[i, 0] <= ref[-1] + 1e-10 and few.ritz[i, 0] == pytest.approx(float(ref[-1]), rel=1e-6)
        assert few.ritz[i][~few.ritz[i].isnan()].min() >= ref[0] - 1e-10
