"""ε-monotone sweeps and per-sample random streams (issue #17).

A sample not robust at ε_i keeps that verified example at every larger ε of the sweep, and only the
samples still standing are attacked. Each sample's random start comes from its own stream (audit
seed, purpose, ε, sample id), so its attack does not depend on its batch mates: the skipping path
then attacks every standing sample exactly as the full path does, and its table is the full path's
closed under "broken at ε_i ⇒ broken at ε_j > ε_i".
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks

from attack_models import Periodic, centred_inputs, demo, linear_problem, run_probe, subset, two_class
from robaudit.data.audit_data import AuditData
from robaudit.attack_outcomes import build_outcome_table, to_json_text
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.iterative import PGDLinfProbe
from robaudit.probes.attacks.single_step import FGSMProbe
from robaudit.probes.seeding import derive_seed, sample_seeds

SWEEP = [0.02, 0.05, 0.08, 0.11, 0.14, 0.2]


def _success(result, eps: list[float]) -> np.ndarray:  # noqa: ANN001
    """(E, N) bools from a sweep result's success columns."""
    keys = sorted((k for k in result.per_sample if k.startswith("success_eps_")), key=lambda k: float(k[12:]))
    assert len(keys) == len(eps)
    return np.stack([np.asarray(result.per_sample[k], dtype=bool) for k in keys])


@pytest.mark.parametrize("knobs", [{"method": "pgd", "steps": 20, "step_fraction": 0.25}, {"steps": 20}],
                         ids=["pgd", "apgd-ce"])
def test_linear_model_outcomes_are_the_closed_form_with_and_without_skipping(knobs: dict) -> None:
    """On a linear model broken exactly beyond its closed-form L∞ distance, the skipping sweep's
    outcome table equals the full sweep's, and both equal d_inf ≤ ε wherever ε is not within 3 %
    of a sample's distance."""
    model, data, d_inf, _ = linear_problem(n=24, k=4)
    tables, success = [], []
    for monotone in (True, False):
        result = run_probe(PGDLinfProbe, model, data, eps=SWEEP, sanity_checks=False, monotone=monotone, **knobs)
        tables.append(to_json_text(build_outcome_table({"attack.pgd_linf": result}, len(d_inf))))
        success.append(_success(result, SWEEP))
    assert tables[0] == tables[1]
    exact = d_inf.numpy()[None, :] <= np.asarray(SWEEP)[:, None]
    clear = np.abs(d_inf.numpy()[None, :] / np.asarray(SWEEP)[:, None] - 1) > 0.03
    assert clear.sum() > 0.9 * clear.size
    np.testing.assert_array_equal(success[0][clear], exact[clear])
    assert 0 < exact.sum() < exact.size  # the sweep has broken and robust samples


@pytest.mark.parametrize(("probe", "knobs"), [(FGSMProbe, {}), (PGDLinfProbe, {"method": "pgd", "steps": 5}),
                                              (PGDLinfProbe, {"steps": 5})], ids=["fgsm", "pgd", "apgd-ce"])
def test_skipping_equals_the_full_sweep_closed_under_larger_budgets(probe: type, knobs: dict) -> None:
    """Demo CNN: with skipping, success at ε_k is exactly "the full sweep broke the sample at some
    ε_i ≤ ε_k"; where the full sweep is already monotone the tables are identical; a standing
    sample's loss and margin are the full sweep's (to float32 round-off), a skipped one's are carried from the ε that broke it."""
    model, data = demo()
    data = subset(data, 96)
    eps = [0.03, 0.06, 0.1, 0.15]
    skip = run_probe(probe, model, data, eps=eps, sanity_checks=False, batch_size=40, **knobs)
    full = run_probe(probe, model, data, eps=eps, sanity_checks=False, batch_size=40, monotone=False, **knobs)
    s_skip, s_full = _success(skip, eps), _success(full, eps)
    np.testing.assert_array_equal(s_skip, np.logical_or.accumulate(s_full, axis=0))
    monotone_rows = (np.diff(s_full.astype(int), axis=0) >= 0).all(axis=0)
    np.testing.assert_array_equal(s_skip[:, monotone_rows], s_full[:, monotone_rows])
    assert s_skip[-1].sum() > s_skip[0].sum()  # samples fall along the sweep
    for k, e in enumerate(eps):
        key = f"{e:g}"
        attacked = np.ones(len(data.y), dtype=bool) if k == 0 else ~s_skip[k - 1]
        for column in ("loss_eps_", "margin_eps_"):
            ours, theirs = skip.per_sample[column + key], full.per_sample[column + key]
            # the same example; its re-check forward ran in another batch (float32 round-off only, of
            # logits up to ~10 in size: a few ulps of 1e-6 each, so 1e-5 absolute on a loss or margin)
            np.testing.assert_allclose(ours[attacked], theirs[attacked], rtol=1e-5, atol=1e-5)
            if k:
                np.testing.assert_array_equal(ours[~attacked], skip.per_sample[column + f"{eps[k - 1]:g}"][~attacked])


def test_fgsm_failing_at_a_larger_budget_is_still_broken_there() -> None:
    """FGSM is not monotone in ε on a periodic decision function: it breaks every sample at 0.1 and
    none at 0.2. The full sweep reports them robust at 0.2, although the verified example from 0.1
    lies inside that ball; the skipping sweep reports them broken, and the example FGSM finds at 0.1
    is re-verified here to be misclassified and within 0.1 ≤ 0.2."""
    model, data = two_class(Periodic(), centred_inputs(12))
    eps = [0.1, 0.2]
    full = _success(run_probe(FGSMProbe, model, data, eps=eps, sanity_checks=False, monotone=False), eps)
    skip = _success(run_probe(FGSMProbe, model, data, eps=eps, sanity_checks=False), eps)
    assert full[0].all() and not full[1].any()
    assert skip.all()
    with ta.attack_session(model, torch.device("cpu")) as target:
        adv = ta.fgsm(target, data.x, data.y, 0.1, seed=0).adv
    with torch.no_grad():
        assert (model(adv).argmax(1) != data.y).all()
    assert float((adv - data.x).abs().amax()) <= 0.1 + 1e-6


@pytest.mark.parametrize("attack", ["pgd", "apgd", "pgd_l2"])
def test_a_samples_attack_does_not_depend_on_its_batch_mates(attack: str) -> None:
    """With one seed per sample, sample k's adversarial example is the same in a batch of 40, in a
    batch of 3 and alone; and it equals stock torchattacks run on that sample alone with the global
    generator seeded with its seed (the per-sample stream is torch's own generator). Bitwise for the
    signed L∞ steps; PGD L2 normalises the gradient of the batch-*mean* loss, whose 1/N scale changes
    its float32 rounding (≤ 1e-6 pixel units)."""
    model, data = demo()
    x, y = data.x[:40], data.y[:40]
    seeds = sample_seeds(11, data.ids[:40], "attack", "0.1")

    tol = {"atol": 1e-6, "rtol": 0} if attack == "pgd_l2" else {"atol": 0, "rtol": 0}

    def run(rows: list[int]) -> torch.Tensor:
        xs, ys, ss = x[rows], y[rows], [seeds[i] for i in rows]
        if attack == "pgd":
            return ta.pgd_linf(target, xs, ys, 0.1, alpha=0.025, steps=10, random_start=True, seed=ss).adv
        if attack == "pgd_l2":
            return ta.pgd_l2(target, xs, ys, 0.8, alpha=0.2, steps=10, random_start=True, seed=ss).adv
        return ta.apgd(target, xs, ys, 0.1, "linf", steps=10, seed=ss).adv

    with ta.attack_session(model, torch.device("cpu")) as target:
        whole = run(list(range(40)))
        part = run([7, 19, 33])
        torch.testing.assert_close(part, whole[[7, 19, 33]], **tol)
        for k in (7, 19, 33):
            torch.testing.assert_close(run([k]), whole[k:k + 1], **tol)
            ta.seed_global(seeds[k], x.device)
            if attack == "pgd":
                stock = torchattacks.PGD(target, eps=0.1, alpha=0.025, steps=10, random_start=True)(x[k:k + 1], y[k:k + 1])
            elif attack == "pgd_l2":
                stock = torchattacks.PGDL2(target, eps=0.8, alpha=0.2, steps=10, random_start=True,
                                           eps_for_division=ta.L2_DIVISION_FLOOR)(x[k:k + 1], y[k:k + 1])
            else:
                stock = torchattacks.APGD(target, norm="Linf", eps=0.1, steps=10, n_restarts=1, seed=seeds[k],
                                          loss="ce", eot_iter=1, rho=0.75)(x[k:k + 1], y[k:k + 1])
                with torch.no_grad():
                    if bool(model(stock).argmax(1) == y[k]):  # not broken: stock returns the clean image
                        continue
            torch.testing.assert_close(stock, whole[k:k + 1], **tol)


def test_per_sample_draws_refuse_what_they_cannot_attribute() -> None:
    """A random draw whose first dimension is not the batch, or an unsupported random function,
    raises inside the per-sample mode instead of silently using the global generator."""
    with ta.PerSampleDraws([1, 2, 3]):
        assert torch.rand(3, 4).shape == (3, 4)
        with pytest.raises(RuntimeError, match="first dimension 5"):
            torch.rand(5, 4)
        with pytest.raises(RuntimeError, match="no per-sample stream"):
            torch.randint(0, 3, (3,))
    with ta.PerSampleDraws([1, 2, 3]):
        a = torch.empty(3, 4).uniform_(-1, 1)
    b = torch.stack([torch.empty(4).uniform_(-1, 1, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)])
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_sweep_seeds_depend_on_the_sample_id_and_budget_only() -> None:
    """The probe's per-sample seeds: a sample keeps its stream when the sample set shrinks."""
    ids = ["test:1", "test:5", "test:9"]
    assert sample_seeds(4, ids, "attack", "0.1")[1:] == sample_seeds(4, ids[1:], "attack", "0.1")
    assert sample_seeds(4, ids, "attack", "0.1")[0] == derive_seed(4, "attack", "0.1", "test:1")
    assert sample_seeds(4, ids, "attack", "0.1") != sample_seeds(4, ids, "attack", "0.2")


def test_a_sample_is_attacked_the_same_under_another_id() -> None:
    """The random streams are seeded from the pixels: the same images renamed (a tensor file's
    ``test:i`` vs a notebook's ``memory:i``) and reversed give every sample the same APGD outcome;
    seeding from ids once made ``robaudit.audit`` on tensors differ from the CLI on the same file."""
    model, data = demo()
    data = subset(data, 24)
    order = list(range(len(data)))[::-1]
    renamed = AuditData(data.x[order], data.y[order], [f"memory:{i}" for i in range(len(data))], data.info)
    assert renamed.content_keys() == [data.content_keys()[i] for i in order]
    assert len(set(data.content_keys())) == len(data)
    first = run_probe(PGDLinfProbe, model, data, eps=[0.05, 0.1], steps=5, sanity_checks=False, seed=3)
    second = run_probe(PGDLinfProbe, model, renamed, eps=[0.05, 0.1], steps=5, sanity_checks=False, seed=3)
    for column in ("success_eps_0.05", "success_eps_0.1"):
        np.testing.assert_array_equal(np.asarray(second.per_sample[column]), np.asarray(first.per_sample[column])[order])



def test_the_per_sample_mode_leaves_after_the_first_gradient_step() -> None:
    """The mode dispatches every torch call through Python; the sweeps' attacks draw only before
    their first gradient step, so it retires there: of an APGD-10 call's forward passes (a clean
    check and 11 gradient steps), only the first two run their convolutions through the mode, and
    the result is still bitwise the same as torchattacks' APGD on each sample alone (the test above)."""
    model, data = demo()
    x, y = data.x[:12], data.y[:12]
    seeds = sample_seeds(5, data.content_keys()[:12], "attack", "0.1")
    seen: list[object] = []
    dispatch = ta.PerSampleDraws.__torch_function__

    def spy(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN202
        seen.append(func)
        return dispatch(self, func, types, args, kwargs)

    ta.PerSampleDraws.__torch_function__ = spy
    try:
        with ta.attack_session(model, torch.device("cpu")) as target:
            ta.apgd(target, x, y, 0.1, "linf", steps=10, seed=seeds)
    finally:
        ta.PerSampleDraws.__torch_function__ = dispatch
    convolutions = model.net.features[0], model.net.features[2]
    assert sum(f is torch.conv2d for f in seen) == 2 * len(convolutions)
    assert len(seen) < 200  # the whole call routed ~1,000 calls through the mode before


def test_a_draw_after_the_mode_retired_raises() -> None:
    """A draw from the global generator after the first gradient step (which the retired mode no
    longer sees) is caught when the call ends, instead of silently using the global generator."""
    model, data = demo()
    x = data.x[:3]
    with ta.attack_session(model, torch.device("cpu")) as target:
        with pytest.raises(RuntimeError, match="after its first gradient step"):
            with ta.PerSampleDraws([1, 2, 3]) as draws:
                target.draws = draws
                target(x.clone().requires_grad_(True))
                assert draws.retired
                torch.rand(3, 4)
        target.draws = None


def test_a_network_that_draws_keeps_the_per_sample_streams() -> None:
    """A network that draws random numbers in its forward pass keeps the mode for the whole call:
    its draws stay per sample, so a sample's APGD result does not depend on its batch mates."""
    from helpers import audit_model

    model, data = demo()
    from helpers import Noisy
    noisy = audit_model(Noisy(model), 10)
    x, y = data.x[:10], data.y[:10]
    seeds = sample_seeds(2, data.content_keys()[:10], "attack", "0.1")
    with ta.attack_session(noisy, torch.device("cpu")) as target:
        whole = ta.apgd(target, x, y, 0.1, "linf", steps=5, seed=seeds).adv
        part = ta.apgd(target, x[[2, 7]], y[[2, 7]], 0.1, "linf", steps=5, seed=[seeds[2], seeds[7]]).adv
    torch.testing.assert_close(part, whole[[2, 7]], atol=0, rtol=0)


class _RandomDefence(torch.nn.Module):
    """The demo CNN behind draws no per-sample stream covers: a scalar noise scale (``rand(1)``)
    and a random shift (``randint``), as randomised input-transformation defences draw them; with
    ``late``, only in passes without an input gradient (after the per-sample mode retired)."""

    def __init__(self, net: torch.nn.Module, late: bool = False) -> None:
        super().__init__()
        self.net, self.late = net, late

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.late and x.requires_grad:
            return self.net(x)
        scale = 0.02 * torch.rand(1, device=x.device)
        shift = int(torch.randint(0, 2, (1,)))
        return self.net(torch.roll(x + scale, shifts=shift, dims=-1))


@pytest.mark.parametrize("late", [False, True], ids=["every-pass", "after-retirement"])
def test_a_network_with_its_own_draws_is_attacked_not_refused(late: bool) -> None:
    """A randomised defence's own draws (not batch-shaped, or functions the attack streams never
    use) come from torch's global generator as they would outside robaudit: the per-sample APGD
    runs to the end and returns valid adversarial candidates. The old adapter raised a
    RuntimeError on the first such draw (an exit-3 "robaudit bug" for the user's model), or, for
    draws after the mode retired, on exit."""
    from helpers import audit_model

    model, data = demo()
    noisy = audit_model(_RandomDefence(model, late=late), 10)
    x, y = data.x[:8], data.y[:8]
    seeds = sample_seeds(2, data.content_keys()[:8], "attack", "0.1")
    with ta.attack_session(noisy, torch.device("cpu")) as target:
        adv = ta.apgd(target, x, y, 0.1, "linf", steps=5, seed=seeds).adv
    assert adv.shape == x.shape
    assert float((adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_an_attack_draw_after_retirement_is_still_caught_when_the_network_is_deterministic() -> None:
    """The exit check stays on for a network that never draws: a global draw made between the
    attack's steps (after the mode retired) raises instead of silently escaping the streams."""
    model, data = demo()
    x, y = data.x[:4], data.y[:4]
    with ta.attack_session(model, torch.device("cpu")) as target:
        with pytest.raises(RuntimeError, match="after its first gradient step"):
            with ta.PerSampleDraws([1, 2, 3, 4]) as draws:
                target.draws = draws
                target(x.clone().requires_grad_(True)).sum().backward()
                assert draws.retired
                torch.rand(4)
                target(x)
