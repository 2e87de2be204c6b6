"""Attacks against independent oracles: the closed-form minimal distances of linear models, and
Foolbox (a peer library) on a small CNN with matched settings."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_models import demo, foolbox_success, linear_problem, run_probe, subset
from robaudit.probes.attacks.autoattack import AutoAttackProbe
from robaudit.probes.attacks.cw import CWL2Probe
from robaudit.probes.attacks.fab import FABProbe
from robaudit.probes.attacks.iterative import PGDL2Probe, PGDLinfProbe
from robaudit.probes.attacks.min_eps import MinEpsProbe
from robaudit.probes.attacks.single_step import FGSMProbe

MARGIN = 0.03  # "slightly above / below" the exact distance, relative


@pytest.fixture(scope="module")
def linear() -> tuple:
    return linear_problem(n=24, k=4)


def _per_sample_budgets(probe: type, model, data, budgets: torch.Tensor, norm_knobs: dict) -> np.ndarray:  # noqa: ANN001
    """Attack each sample alone at its own budget; True where it was broken."""
    from robaudit.data.audit_data import AuditData

    out = []
    for i, eps in enumerate(budgets.tolist()):
        one = AuditData(data.x[i:i + 1], data.y[i:i + 1], data.ids[i:i + 1], data.info)
        result = run_probe(probe, model, one, eps=[eps], sanity_checks=False, **norm_knobs)
        out.append(bool(next(v for k, v in result.per_sample.items() if k.startswith("success_eps_"))[0]))
    return np.array(out)


PGD_KNOBS = {"steps": 60, "step_fraction": 0.05}


@pytest.mark.parametrize(("probe", "norm_index", "knobs"), [
    # from some random starts (1–2 of 24 samples' own streams) 60 small steps end in a local maximum of
    # the cross-entropy (convex in x: its maxima over the ball sit at corners) that is not adversarial
    # at 1.03×; restarts, as in practice, find the boundary
    (PGDLinfProbe, 0, {**PGD_KNOBS, "method": "pgd", "restarts": 3}), (PGDLinfProbe, 0, {"steps": 60}),
    (PGDL2Probe, 1, {**PGD_KNOBS, "restarts": 3}),
], ids=["pgd-linf", "apgd-ce", "pgd-l2"])
def test_pgd_breaks_just_above_the_exact_distance_and_never_below(linear: tuple, probe: type, norm_index: int,
                                                                  knobs: dict) -> None:
    model, data, d_inf, d_2 = linear
    exact = (d_inf, d_2)[norm_index]
    above = _per_sample_budgets(probe, model, data, exact * (1 + MARGIN), knobs)
    below = _per_sample_budgets(probe, model, data, exact * (1 - MARGIN), knobs)
    assert above.all(), f"missed at 1.03× the exact distance: {np.flatnonzero(~above)}"
    assert not below.any(), "an 'adversarial example' inside the exact distance cannot exist"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_bisection_recovers_the_exact_distance_to_its_tolerance(linear: tuple, norm: str) -> None:
    model, data, d_inf, d_2 = linear
    exact = (d_inf if norm == "linf" else d_2).numpy()
    tol = 0.002 if norm == "linf" else 0.01
    eps_max = 0.4 if norm == "linf" else 2.0
    result = run_probe(MinEpsProbe, model, data, norm=norm, steps=60, step_fraction=0.05, eps_max=eps_max, tolerance=tol)
    found = result.per_sample["min_eps"]
    lower = result.per_sample["min_eps_lower"]
    assert result.per_sample["min_eps_found"].all()
    assert (found - lower <= tol + 1e-12).all(), "the final bracket must be no wider than the tolerance"
    assert (found >= exact - 1e-6).all(), "min_eps is a verified adversarial budget: never below the exact distance"
    np.testing.assert_allclose(found, exact, atol=tol + 1e-6)
    assert result.summary["rounds"] == int(np.ceil(np.log2(eps_max / tol)))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_exact_minimal_distance(linear: tuple, norm: str) -> None:
    model, data, d_inf, d_2 = linear
    exact = (d_inf if norm == "linf" else d_2).numpy()
    result = run_probe(FABProbe, model, data, norm=norm, steps=20, eps=[float(np.median(exact))])
    dist = result.per_sample["distance"]
    assert (dist >= exact - 1e-5).all(), "no adversarial example is closer than the exact distance"
    assert (dist <= exact * 1.01 + 1e-5).all(), "FAB overshoots the boundary by at most its eta = 1.05 step, then backtracks"


def test_cw_distance_approaches_the_exact_l2_distance(linear: tuple) -> None:
    model, data, _, d_2 = linear
    result = run_probe(CWL2Probe, model, data, eps=[0.1], steps=200, binary_search_steps=6, lr=0.005)
    dist = result.per_sample["distance"]
    exact = d_2.numpy()
    assert result.per_sample["found"].all()
    assert (dist >= exact - 1e-5).all(), "C&W cannot find an adversarial example closer than the exact distance"
    assert np.median(dist / exact) < 1.05


def test_autoattack_breaks_above_and_never_below_the_exact_distance(linear: tuple) -> None:
    model, data, d_inf, _ = linear
    lo, hi = float(d_inf.min()), float(d_inf.max())
    result = run_probe(AutoAttackProbe, model, data, eps=[lo * 0.97, hi * 1.03], preset="fast", square_queries=100)
    below, above = (result.per_sample[k] for k in sorted(k for k in result.per_sample if k.startswith("success_eps_")))
    assert not below.any()
    assert above.all()
    assert result.summary["preset"] == "fast"
    assert [c["name"] for c in result.summary["components"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_apgd_probe_equals_torchattacks_apgd_on_each_sample() -> None:
    """The default L∞ sweep (APGD-CE) against torchattacks' own APGD, called directly on each sample
    with that sample's seed (the probe draws each sample's random start from its own stream, which
    is torch's generator seeded the same way): the same samples are robust at every ε."""
    import torchattacks

    from robaudit.probes.attacks import torchattacks_adapter as ta
    from robaudit.probes.seeding import derive_seed

    model, data = demo()
    data = subset(data, 48)
    eps_list = [0.05, 0.1]
    result = run_probe(PGDLinfProbe, model, data, eps=eps_list, steps=10, sanity_checks=False, monotone=False, seed=5)
    assert result.summary["settings"]["method"] == "apgd-ce"
    with ta.attack_session(model, torch.device("cpu")) as target:
        for eps in eps_list:
            robust = []
            for i, key in enumerate(data.content_keys()):
                seed = derive_seed(derive_seed(5, "attack", f"{eps:g}", key), 0)
                attack = torchattacks.APGD(target, norm="Linf", eps=eps, steps=10, n_restarts=1, seed=seed, loss="ce",
                                           eot_iter=1, rho=0.75)
                x, y = data.x[i:i + 1], data.y[i:i + 1]
                adv = attack(x, y)
                with torch.no_grad():
                    robust.append(bool(model(x).argmax(1) == y) and bool(model(adv).argmax(1) == y))
            np.testing.assert_array_equal(result.per_sample[f"success_eps_{eps:g}"], ~np.array(robust),
                                          err_msg=f"eps={eps}")
            assert 0 < sum(robust) < len(robust)


def test_worst_case_is_at_most_every_attacks_robust_accuracy(tmp_path) -> None:  # noqa: ANN001
    """A real audit of the demo CNN with the default L∞ attacks: at every ε the worst case is no
    higher than FGSM's, APGD-CE's, or what the minimal-ε distances imply."""
    import robaudit
    from demo import DEMO_ARCH, DEMO_CHECKPOINT

    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=60,
                             probes=["clean", "attack.fgsm", "attack.pgd_linf", "attack.min_eps", "attack.worst_case"],
                             out=str(tmp_path / "audit"), report=False, quiet=True,
                             probe_config={"attack.pgd_linf": {"steps": 10}, "attack.min_eps": {"steps": 5}})
    probes = outcome.results["probes"]
    worst = probes["attack.worst_case"]["summary"]["linf"]
    for attack in ("attack.fgsm", "attack.pgd_linf"):
        summary = probes[attack]["summary"]
        for key, estimate in summary["robust_accuracy"].items():
            assert worst["robust_accuracy"][key]["value"] <= estimate["value"], (attack, key)
    assert probes["attack.pgd_linf"]["summary"]["settings"]["method"] == "apgd-ce"


# ------------------------------------------------------------------------------ Foolbox cross-check

@pytest.fixture(scope="module")
def cnn64() -> tuple:
    model, data = demo()
    return model, subset(data, 64)  # 64 = one batch and a power of two: mean-CE and sum-CE gradients share signs


def test_fgsm_matches_foolbox_sample_by_sample(cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cnn64
    eps = [0.05, 0.1, 0.2]
    ours = run_probe(FGSMProbe, model, data, eps=eps, sanity_checks=False)
    theirs = foolbox_success(model, data, fb.attacks.FGSM(random_start=False), eps)
    for k, e in enumerate(eps):
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{e:g}"], theirs[k], err_msg=f"eps={e}")
    assert 0 < theirs.mean() < 1


def test_pgd_matches_foolbox_sample_by_sample(cnn64: tuple) -> None:
    import foolbox as fb

    model, data = cnn64
    for eps in (0.05, 0.1):
        ours = run_probe(PGDLinfProbe, model, data, eps=[eps], steps=10, step_fraction=0.25, random_start=False, method="pgd",
                         sanity_checks=False)
        theirs = foolbox_success(model, data, fb.attacks.LinfPGD(abs_stepsize=0.25 * eps, steps=10, random_start=False),
                                 [eps])
        np.testing.assert_array_equal(ours.per_sample[f"success_eps_{eps:g}"], theirs[0], err_msg=f"eps={eps}")


def test_fgsm_keeps_the_true_class_gradient_of_confident_samples() -> None:
    """On a linear model with logit margins of 17–32 (float32 rounds p_y to exactly 1 there), FGSM's
    step is the sign of the exact CE gradient Σ_k p_k (w_k − w_y), computed in closed form in float64."""
    from robaudit.probes.attacks import torchattacks_adapter as ta

    gen = torch.Generator().manual_seed(0)
    k, d = 4, 16
    w = torch.randn(k, d, generator=gen)
    pool = torch.rand(4000, 1, 4, 4, generator=gen) * 0.5 + 0.25
    top2 = (pool.flatten(1) @ w.T).topk(2).values
    scale = 24.0 / float((top2[:, 0] - top2[:, 1]).median())
    x = pool[(17 < scale * (top2[:, 0] - top2[:, 1])) & (scale * (top2[:, 0] - top2[:, 1]) < 32)][:48]
    net = torch.nn.Linear(d, k, bias=False)
    net.weight.data = scale * w
    model = torch.nn.Sequential(torch.nn.Flatten(), net).eval()
    with torch.no_grad():
        z = model(x).double()
    y = z.argmax(1)
    assert len(x) == 48 and (torch.softmax(z.float(), 1).gather(1, y[:, None]) == 1).all()  # float32 loses p_y − 1
    grad = (torch.softmax(z, 1) - torch.nn.functional.one_hot(y, k).double()) @ net.weight.detach().double()
    eps = 0.01
    expected = (x.double().flatten(1) + eps * grad.sign()).clamp(0, 1)
    with ta.attack_session(model, torch.device("cpu")) as target:
        out = ta.fgsm(target, x, y, eps, seed=0)
    np.testing.assert_allclose(out.adv.detach().double().flatten(1).numpy(), expected.numpy(), atol=1e-6)
