"""The attack-outcome table on the closed-form linear model: minimum-distance attacks (C&W, FAB) count
in the robust / non-robust split wherever their norm matches — in attack.worst_case and in the
geometry groups alike — and never break a sample whose exact distance exceeds ε."""
from __future__ import annotations

import numpy as np
import pytest

from attack_models import linear_problem, run_probe
from helpers import context
from robaudit.attack_outcomes import build_outcome_table
from robaudit.probes.attacks.cw import CWL2Probe
from robaudit.probes.attacks.fab import FABProbe
from robaudit.probes.attacks.worst_case import WorstCaseProbe, worst_case_key
from robaudit.probes.base import ProbeResult
from robaudit.probes.geometry.groups import sample_groups
from robaudit.results import store


@pytest.fixture(scope="module")
def linear() -> tuple:
    return linear_problem(n=24, k=4)


def _persisted(result):  # noqa: ANN001, ANN202
    """The result as the engine hands it to later probes (float64 columns, JSON summary)."""
    from robaudit.results.serialise import to_jsonable

    entry = {"name": "x", "summary": to_jsonable(result.summary), "artifacts": {}, "notes": [],
             "per_sample_columns": [f"x/{k}" for k in result.per_sample]}
    return store.persisted_result(entry, {f"x/{k}": store.persisted_column(v) for k, v in result.per_sample.items()})


def test_cw_l2_distances_break_samples_at_every_l2_budget_of_the_worst_case(linear: tuple) -> None:
    model, data, _, d_2 = linear
    exact = d_2.numpy()
    eps = float(np.median(exact))
    cw = run_probe(CWL2Probe, model, data, eps=[eps / 4], steps=200, binary_search_steps=6, lr=0.005)
    # the only attack run *at* ε, and one that found nothing there: every break at ε is C&W's distance
    weak = ProbeResult(summary={"norm": "l2", "eps": [eps]},
                       per_sample={f"success_eps_{eps:.6g}": np.zeros(len(exact), dtype=bool)})
    previous = {"attack.cw_l2": _persisted(cw), "attack.l2grad": _persisted(weak)}
    distance = cw.per_sample["distance"]
    expected = distance <= eps
    table = build_outcome_table(previous, len(exact))
    broken, attacks = table.broken_at("l2", eps)
    np.testing.assert_array_equal(broken, expected)
    assert attacks == ("attack.cw_l2", "attack.l2grad")
    assert expected.any() and not expected.all()
    assert not (broken & (exact > eps * (1 + 1e-6))).any(), "no sample is broken beyond its exact L2 distance"
    worst = run_probe(WorstCaseProbe, model, data, previous=previous)
    np.testing.assert_array_equal(worst.per_sample[worst_case_key("l2", eps)], expected)
    assert worst.summary["l2"]["robust_accuracy"][f"{eps:.6g}"].value == pytest.approx(1 - expected.mean())


def test_fab_linf_distances_split_the_geometry_groups_at_an_eps_fab_never_ran_at(linear: tuple) -> None:
    model, data, d_inf, _ = linear
    exact = d_inf.numpy()
    eps = float(np.median(exact))
    fab = run_probe(FABProbe, model, data, norm="linf", steps=20, eps=[eps / 2])
    ctx = context(model, data, previous={"attack.fab": _persisted(fab)})
    groups = sample_groups(ctx, eps)
    correct = groups.masks["correct"]
    assert correct.all()  # labels are the model's predictions
    np.testing.assert_array_equal(groups.masks["non_robust"], fab.per_sample["distance"] <= eps)
    clear = np.abs(exact - eps) > 0.02 * eps  # FAB is within 1 % of the exact distance
    np.testing.assert_array_equal(groups.masks["non_robust"][clear], (exact <= eps)[clear])
    assert groups.robustness_source == {"probes": ["attack.fab"], "epsilon": eps, "norm": "linf"}
