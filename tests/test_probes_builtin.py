"""Clean accuracy and calibration against independent oracles (scikit-learn, scipy, closed forms)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from helpers import fixed_logits_setup, context
from robaudit.probes.base import wilson_interval
from robaudit.probes.calibration import Calibration, expected_calibration_error
from robaudit.probes.clean import CleanAccuracy


def _random_logits(n: int = 300, k: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, k, (n,), generator=g)
    return logits.float(), y


def test_clean_accuracy_matches_sklearn_and_per_sample_quantities() -> None:
    logits, y = _random_logits()
    model, data = fixed_logits_setup(logits, y)
    result = CleanAccuracy().run(context(model, data))
    pred = logits.argmax(1).numpy()
    assert result.summary["accuracy"].value == pytest.approx(accuracy_score(y.numpy(), pred))
    np.testing.assert_array_equal(result.per_sample["pred"], pred)
    probs = torch.softmax(logits.double(), 1).numpy()
    assert result.summary["mean_loss"] == pytest.approx(log_loss(y.numpy(), probs, labels=range(5)), rel=1e-9)
    z = logits.double().numpy()
    yy = y.numpy()
    true = z[np.arange(len(yy)), yy]
    others = z.copy()
    others[np.arange(len(yy)), yy] = -np.inf
    np.testing.assert_allclose(result.per_sample["logit_margin"], true - others.max(1), rtol=1e-12)
    assert ((result.per_sample["logit_margin"] > 0) == result.per_sample["correct"]).all()
    for c in range(5):
        mask = yy == c
        assert result.summary["per_class_accuracy"][c] == pytest.approx((pred[mask] == c).mean())


@pytest.mark.parametrize(("k", "n"), [(0, 10), (7, 10), (10, 10), (912, 1000)])
def test_wilson_interval_matches_closed_form(k: int, n: int) -> None:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    est = wilson_interval(k, n)
    assert est.low == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert est.high == pytest.approx(min(1.0, centre + half), abs=1e-12)


@pytest.mark.parametrize(("k", "n", "published"), [
    (81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)), (1, 29, (0.0061, 0.1718)),
])
def test_wilson_interval_matches_newcombes_published_intervals(k: int, n: int, published: tuple[float, float]) -> None:
    """Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score, 95 %)."""
    est = wilson_interval(k, n, 0.95)
    assert (round(est.low, 4), round(est.high, 4)) == published


def test_ece_closed_form() -> None:
    # 10 samples at confidence 0.9 with 8 correct, 10 at 0.55 with 6 correct:
    # ECE = 0.5·|0.8 − 0.9| + 0.5·|0.6 − 0.55| = 0.075
    conf = np.array([0.9] * 10 + [0.55] * 10)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 6 + [0] * 4, dtype=float)
    assert expected_calibration_error(conf, correct, bins=10) == pytest.approx(0.075)
    # vectorised over a leading axis, as the bootstrap calls it
    batch = expected_calibration_error(np.stack([conf, conf]), np.stack([correct, correct]), bins=10)
    np.testing.assert_allclose(batch, [0.075, 0.075])


def test_calibration_nll_brier_and_ci() -> None:
    logits, y = _random_logits(seed=1)
    model, data = fixed_logits_setup(logits, y)
    result = Calibration().run(context(model, data, seed=3))
    probs = torch.softmax(logits.double(), 1).numpy()
    onehot = np.eye(5)[y.numpy()]
    assert result.summary["nll"] == pytest.approx(log_loss(y.numpy(), probs, labels=range(5)), rel=1e-9)
    assert result.summary["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-12)
    ece = result.summary["ece"]
    assert ece.low <= ece.value <= ece.high
    again = Calibration().run(context(model, data, seed=3)).summary["ece"]
    assert (again.low, again.high) == (ece.low, ece.high)
    diagram = result.artifacts["reliability_diagram"]
    assert sum(b["count"] for b in diagram) == len(y)


def test_overconfident_flag_both_ways() -> None:
    y = torch.zeros(100, dtype=torch.long)
    confident_wrong = torch.tensor([[0.0, 5.0]]).repeat(100, 1)
    confident_wrong[:50] = torch.tensor([5.0, 0.0])  # half right at p≈0.993
    model, data = fixed_logits_setup(confident_wrong, y)
    assert [f.id for f in Calibration().run(context(model, data)).flags] == ["overconfident"]
    honest = torch.tensor([[0.0, 0.0]]).repeat(100, 1)  # p = 0.5, and argmax = class 0 = always right
    model, data = fixed_logits_setup(honest, y)
    assert Calibration().run(context(model, data)).flags == []
