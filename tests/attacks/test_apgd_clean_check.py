"""APGD's clean check, reused from the audit's shared clean logits (issue #17, attack overhead).

torchattacks' APGD starts with a forward pass of the clean batch to pick the samples it attacks; the
sweeps already hold that verdict (the audit's shared clean logits). Inside ``AttackTarget.known_clean``
the adapter attacks the samples it names and skips that pass, but only where no number can change: with
per-sample seeds and a network seen not to draw random numbers. Oracle: the same call with APGD's own
clean forward pass, bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_models import demo, run_probe, subset
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.iterative import PGDLinfProbe
from robaudit.probes.seeding import sample_seeds


def _no_grad_forwards(model: torch.nn.Module) -> tuple[list[int], list]:
    """A counter of the model's forward passes whose input needs no gradient (batch sizes), and its hook handle."""
    sizes: list[int] = []
    handle = model.register_forward_hook(lambda _m, inputs, _out: None if inputs[0].requires_grad
                                         else sizes.append(len(inputs[0])))
    return sizes, handle


def _batch_with_a_wrong_sample(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of n samples, the first of them misclassified clean (so the clean check matters)."""
    with torch.no_grad():
        wrong = torch.nonzero(model(x).argmax(1) != y).flatten()
    assert len(wrong), "the demo CNN misclassifies some digits"
    rest = [i for i in range(len(x)) if i != int(wrong[0])][:n - 1]
    return torch.tensor([int(wrong[0]), *rest])


def test_apgd_skips_its_clean_forward_and_returns_the_same_bits() -> None:
    model, data = demo()
    rows = _batch_with_a_wrong_sample(model, data.x, data.y, 24)
    x, y = data.x[rows], data.y[rows]
    seeds = sample_seeds(3, [data.content_keys()[int(i)] for i in rows], "attack", "0.1")
    with torch.no_grad():
        correct = model(x).argmax(1) == y

    with ta.attack_session(model, torch.device("cpu")) as target:
        reference = ta.apgd(target, x, y, 0.1, "linf", steps=10, seed=seeds)  # APGD's own clean check
        assert target.network_draws is False  # learnt from that call
        sizes, handle = _no_grad_forwards(model)
        try:
            with target.known_clean(correct, x, y):
                reused = ta.apgd(target, x, y, 0.1, "linf", steps=10, seed=seeds)
        finally:
            handle.remove()
    assert sizes == []  # the clean forward pass is gone (APGD makes no other pass without a gradient)
    assert torch.equal(reused.adv, reference.adv)
    assert torch.equal(reused.first_grad_bad, reference.first_grad_bad)
    assert torch.equal(reused.adv[0], x[0])  # the misclassified sample comes back unchanged, as before


def test_the_samples_named_are_the_ones_attacked() -> None:
    """The verdict passed in decides which samples APGD attacks: a correct sample named wrong comes back
    clean, and every other sample is attacked exactly as before."""
    model, data = demo()
    x, y = data.x[:16], data.y[:16]
    seeds = sample_seeds(4, data.content_keys()[:16], "attack", "0.2")
    with ta.attack_session(model, torch.device("cpu")) as target:
        reference = ta.apgd(target, x, y, 0.2, "linf", steps=10, seed=seeds)
        with torch.no_grad():
            named = model(x).argmax(1) == y
        k = int(torch.nonzero(named & (reference.adv != x).flatten(1).any(1)).flatten()[0])  # attacked, moved
        named[k] = False
        with target.known_clean(named, x, y):
            out = ta.apgd(target, x, y, 0.2, "linf", steps=10, seed=seeds)
    assert torch.equal(out.adv[k], x[k])
    others = torch.arange(16) != k
    assert torch.equal(out.adv[others], reference.adv[others])


def test_the_first_call_of_a_session_and_a_network_that_draws_keep_the_clean_forward() -> None:
    """Skipping the pass would advance no stream only for a network known not to draw: the session's
    first call (nothing known yet) and every call on a randomised network keep APGD's clean forward,
    and their results are those of the call without the verdict."""
    from helpers import audit_model

    model, data = demo()
    from helpers import Noisy
    noisy = audit_model(Noisy(model), 10)
    x, y = data.x[:10], data.y[:10]
    seeds = sample_seeds(2, data.content_keys()[:10], "attack", "0.1")
    for net in (model, noisy):
        with ta.attack_session(net, torch.device("cpu")) as target:
            reference = ta.apgd(target, x, y, 0.1, "linf", steps=5, seed=seeds).adv
        with ta.attack_session(net, torch.device("cpu")) as target:
            sizes, handle = _no_grad_forwards(net)
            try:
                with target.known_clean(torch.ones(10, dtype=torch.bool), x, y):
                    first = ta.apgd(target, x, y, 0.1, "linf", steps=5, seed=seeds).adv
                    second = ta.apgd(target, x, y, 0.1, "linf", steps=5, seed=seeds).adv
            finally:
                handle.remove()
        assert torch.equal(first, reference)
        assert torch.equal(second, reference)
        assert target.network_draws is (net is noisy)
        assert sizes == ([10] if net is model else [10, 10])


def test_a_verdict_of_another_length_is_a_bug_not_a_guess() -> None:
    model, data = demo()
    x, y = data.x[:6], data.y[:6]
    seeds = sample_seeds(1, data.content_keys()[:6], "attack", "0.1")
    with ta.attack_session(model, torch.device("cpu")) as target:
        ta.apgd(target, x, y, 0.1, "linf", steps=2, seed=seeds)
        with target.known_clean(torch.ones(5, dtype=torch.bool), x, y), pytest.raises(ValueError, match="5 samples"):
            ta.apgd(target, x, y, 0.1, "linf", steps=2, seed=seeds)


@pytest.mark.parametrize("restarts", [1, 2])
def test_the_sweep_prints_the_same_numbers_with_fewer_forward_passes(restarts: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """attack.pgd_linf (APGD-CE, sanity checks on: the box-covering re-attack too) on 200 digits in
    batches of 64: every per-sample value and summary number equals the run with APGD's own clean check
    (``known_clean`` made a no-op), and it makes one clean forward pass per batch fewer, all but the
    session's first."""
    model, data = demo()
    data = subset(data, 200)

    def run() -> tuple[object, list[int]]:
        sizes, handle = _no_grad_forwards(model)
        try:
            return run_probe(PGDLinfProbe, model, data, seed=7, batch_size=64, steps=10, restarts=restarts), sizes
        finally:
            handle.remove()

    new, new_sizes = run()
    with monkeypatch.context() as m:
        m.setattr(ta.AttackTarget, "known_clean", lambda self, *args: _unchanged())
        old, old_sizes = run()
    assert new.per_sample.keys() == old.per_sample.keys()
    for key in old.per_sample:
        np.testing.assert_array_equal(np.asarray(new.per_sample[key]), np.asarray(old.per_sample[key]), err_msg=key)
    assert new.summary == old.summary
    assert [f.id for f in new.flags] == [f.id for f in old.flags]
    apgd_calls = sum(1 for s in old_sizes) - sum(1 for s in new_sizes)
    assert apgd_calls >= 5  # ≥ 1 batch per budget skipped its clean pass (restarts add their own calls)
    assert sum(old_sizes) - sum(new_sizes) >= 200 - 64  # every attacked sample but the first batch's


def _unchanged():  # noqa: ANN202 - a context manager doing nothing: the old path
    import contextlib

    return contextlib.nullcontext()


class _Float64Linear(torch.nn.Module):
    """A float64 linear model whose classes 0 and 1 share their weights and differ in bias by 1e-12: class 1
    wins in float64, while float32 (the audit's shared clean logits) rounds the two logits to a tie."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.randn(2, 16, generator=g, dtype=torch.float64)
        self.weight = torch.nn.Parameter(torch.stack([w[0], w[0], w[1]]))
        self.bias = torch.nn.Parameter(torch.tensor([0.0, 1e-12, -0.5], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().flatten(1) @ self.weight.T + self.bias


def test_a_float64_network_keeps_its_own_clean_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared clean logits are float32: for a float64 network two logits a float32 rounding ties can give
    another argmax than APGD's own float64 check. The sweep's numbers must still be those of APGD's own
    clean check (known_clean made a no-op), bit for bit."""
    from helpers import audit_data, audit_model

    net = _Float64Linear()
    x = 0.3 + 0.4 * torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = net(x)
    y = logits.argmax(1)
    tied = (y == 1) & (logits.float().argmax(1) == 0)
    assert int(tied.sum()) >= 3  # samples the float32 verdict calls wrong and the model's own calls right
    model, data = audit_model(net, 3), audit_data(x, y, 3)

    new = run_probe(PGDLinfProbe, model, data, seed=5, batch_size=16, steps=5, eps=[0.05, 0.1])
    with monkeypatch.context() as m:
        m.setattr(ta.AttackTarget, "known_clean", lambda self, *args: _unchanged())
        old = run_probe(PGDLinfProbe, model, data, seed=5, batch_size=16, steps=5, eps=[0.05, 0.1])
    for key in old.per_sample:
        np.testing.assert_array_equal(np.asarray(new.per_sample[key]), np.asarray(old.per_sample[key]), err_msg=key)
    assert new.summary == old.summary


class _AgainstPrediction(PGDLinfProbe):
    """A plugin's sweep attack that runs APGD against the model's own clean prediction instead of the label
    (so every sample, misclassified or not, is attacked): its inputs to APGD are not the sweep's (x, y)."""

    name = "plugin.apgd_prediction"

    def attack(self, target: ta.AttackTarget, x: torch.Tensor, y: torch.Tensor, eps: float,
               seed: ta.Seeds) -> ta.AttackOutput:
        with torch.no_grad():
            predicted = target.model(x).argmax(1)
        return ta.apgd(target, x, predicted, eps, "linf", steps=self.config.steps, seed=seed)


def test_a_plugin_calling_apgd_on_other_labels_keeps_apgd_s_own_clean_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's verdict describes its own batch (x, y); an attack that hands APGD other labels (or other
    pixels) must get APGD's own clean check, so its numbers are those with known_clean a no-op."""
    from robaudit.data.audit_data import AuditData

    model, data = demo()
    with torch.no_grad():
        wrong = torch.nonzero(model(data.x).argmax(1) != data.y).flatten().tolist()
    assert len(wrong) >= 2
    right = [i for i in range(128) if i not in wrong]
    rows = right[:32] + wrong[:2] + right[32:46]
    data = AuditData(data.x[rows], data.y[rows], [data.ids[i] for i in rows], data.info, data.provenance)
    # the misclassified samples sit in the second batch: the session's first call has made its clean check

    new = run_probe(_AgainstPrediction, model, data, seed=3, batch_size=32, steps=5, eps=[0.1])
    with monkeypatch.context() as m:
        m.setattr(ta.AttackTarget, "known_clean", lambda self, *args: _unchanged())
        old = run_probe(_AgainstPrediction, model, data, seed=3, batch_size=32, steps=5, eps=[0.1])
    for key in old.per_sample:
        np.testing.assert_array_equal(np.asarray(new.per_sample[key]), np.asarray(old.per_sample[key]), err_msg=key)
    assert new.summary == old.summary
