"""The minimal-ε bisection started from the brackets of the audit's earlier attacks.

Oracle: the closed-form minimal L∞ / L2 distance of the linear model (``attack_models.linear_problem``):
the bracket-started search must still enclose it to the tolerance, for less attack work.
"""
from __future__ import annotations

import numpy as np
import pytest

from attack_models import linear_problem, run_probe
from robaudit.probes.attacks.iterative import PGDL2Probe, PGDLinfProbe
from robaudit.probes.attacks.min_eps import MinEpsProbe

SETUP = {
    "linf": (PGDLinfProbe, [0.05, 0.1, 0.15, 0.2], 0.4, 0.002),
    "l2": (PGDL2Probe, [0.25, 0.5, 1.0], 2.0, 0.01),
}


@pytest.fixture(scope="module")
def linear() -> tuple:
    return linear_problem(n=24)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_bracket_started_bisection_encloses_the_exact_distance(linear: tuple, norm: str) -> None:
    model, data, d_inf, d_2 = linear
    exact = (d_inf if norm == "linf" else d_2).numpy()
    sweep_cls, eps, eps_max, tol = SETUP[norm]
    step = {} if norm == "linf" else {"step_fraction": 0.05}  # L∞: the default APGD-CE sets its own steps
    sweep = run_probe(sweep_cls, model, data, eps=eps, steps=60, **step)
    knobs = {"norm": norm, "steps": 60, "step_fraction": 0.05, "eps_max": eps_max, "tolerance": tol}
    bracketed = run_probe(MinEpsProbe, model, data, previous={sweep_cls.name: sweep}, **knobs)
    full = run_probe(MinEpsProbe, model, data, **knobs)

    found, lower = bracketed.per_sample["min_eps"], bracketed.per_sample["min_eps_lower"]
    assert bracketed.per_sample["min_eps_found"].all()
    assert (found - lower <= tol + 1e-12).all(), "each final bracket is no wider than the tolerance"
    assert (found >= exact - 1e-6).all(), "min_eps is a verified adversarial budget: never below the exact distance"
    np.testing.assert_allclose(found, exact, atol=tol + 1e-6)
    assert bracketed.summary["cost"]["bracketed_by_earlier_attacks"] > 0
    assert bracketed.summary["cost"]["attack_steps"] < full.summary["cost"]["attack_steps"]


def test_brackets_off_is_the_full_search(linear: tuple) -> None:
    """``brackets=False`` ignores the earlier attacks: the same numbers as a search with none."""
    model, data, _, _ = linear
    sweep = run_probe(PGDLinfProbe, model, data, eps=[0.05, 0.1])
    knobs = {"steps": 5, "eps_max": 0.4, "tolerance": 0.01}
    off = run_probe(MinEpsProbe, model, data, previous={"attack.pgd_linf": sweep}, brackets=False, **knobs)
    alone = run_probe(MinEpsProbe, model, data, **knobs)
    for key in ("min_eps", "min_eps_lower", "min_eps_found"):
        np.testing.assert_array_equal(off.per_sample[key], alone.per_sample[key])
    assert off.summary["rounds"] == alone.summary["rounds"] == int(np.ceil(np.log2(0.4 / 0.01)))


def test_clean_misclassified_samples_are_not_searched_from_the_table(linear: tuple) -> None:
    """The outcome table counts a clean-misclassified sample as broken at every ε; the search must
    still leave it out (min_eps 0) and count found samples among the clean-correct only."""
    from attack_models import subset
    from helpers import audit_data

    model, data, _, _ = linear
    y = data.y.clone()
    y[:3] = (y[:3] + 1) % 4  # three samples the model now gets wrong
    wrong = subset(data, len(y))
    wrong = audit_data(wrong.x, y, 4)
    sweep = run_probe(PGDLinfProbe, model, wrong, eps=[0.05, 0.1, 0.15, 0.2], steps=10)
    result = run_probe(MinEpsProbe, model, wrong, previous={"attack.pgd_linf": sweep}, steps=5, eps_max=0.4,
                       tolerance=0.01)
    assert result.summary["clean_correct"] == len(y) - 3
    assert result.summary["found_fraction"].n == len(y) - 3
    assert result.summary["found_fraction"].value <= 1.0
    np.testing.assert_array_equal(result.per_sample["min_eps"][:3], 0.0)
