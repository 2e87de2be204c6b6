"""The cost model: each attack probe's declared passes against the passes it really makes.

The oracle is a counting wrapper around the network: every call adds its batch size to the
forward count, and a gradient hook on the call's input adds it to the backward count when a
backward pass actually reaches that input. Forward-only passes are the calls no backward reached.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from attack_models import SHAPE, Linear, linear_problem
from demo import DEMO_ARCH, DEMO_CHECKPOINT
from helpers import audit_data, audit_model, context
from robaudit.config import build_probe_config
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.iterative import BIMProbe, PGDL2Probe, PGDLinfProbe
from robaudit.probes.attacks.min_eps import MinEpsProbe
from robaudit.probes.attacks.single_step import FGSMProbe, L2GradProbe
from robaudit.probes.attacks.worst_case import WorstCaseProbe
from robaudit.probes.cost import Cost, estimate_audit_cost, time_fwd_bwd

REPO = Path(__file__).resolve().parents[2]


class Counting(nn.Module):
    """Counts per-sample passes through ``net``: all forwards, and those a backward reached."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls = 0
        self.backward = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = int(x.shape[0])
        self.calls += b
        if x.requires_grad:
            x.register_hook(lambda g: self._reached(b))
        return self.net(x)

    def _reached(self, b: int) -> None:
        self.backward += b

    def measured(self) -> Cost:
        return Cost(forward=self.calls - self.backward, backward=self.backward)


def unbreakable(n: int = 20, k: int = 3) -> tuple[Counting, object, object]:
    """A linear model that no perturbation in the [0, 1] box can flip: class 0 leads by 100 logits,
    and the weights (|w| ≤ 0.01, 16 pixels) move a logit by at most 0.16. Every sample is
    clean-correct and survives every budget, so the data-dependent upper bounds are attained."""
    g = torch.Generator().manual_seed(0)
    weight = (torch.rand(k, 16, generator=g) * 2 - 1) * 0.01
    bias = torch.tensor([100.0] + [0.0] * (k - 1))
    counter = Counting(Linear(weight, bias))
    x = torch.rand(n, *SHAPE, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return counter, audit_model(counter, k), audit_data(x, y, k)


def count(cls: type, model, data, counter: Counting, previous: dict | None = None, every_clean_check: bool = False,
          **knobs: object) -> tuple[Cost, Cost | None]:
    """(passes made by ``cls.run``, the passes it declared), the shared clean forward excluded.

    ``every_clean_check``: APGD makes its own clean check on every call, as for a network that draws
    random numbers (the declared upper bound); otherwise it reuses the audit's clean verdict after the
    session's first call.
    """
    ctx = context(model, data, batch_size=8, previous=previous)
    ctx.clean_logits()  # shared by the audit: counted once, outside every probe
    counter.calls = counter.backward = 0
    config = build_probe_config(cls, knobs)
    selected = frozenset(previous or ())
    declared = cls.estimate_cost(config, len(data), ctx.threat_model, selected)
    torch.manual_seed(0)
    with torch.enable_grad(), pytest.MonkeyPatch.context() as patch:
        if every_clean_check:
            patch.setattr(ta.AttackTarget, "known_clean", lambda self, *args: contextlib.nullcontext())
        cls(config).run(ctx)
    return counter.measured(), declared


def reuses_the_clean_check(cls: type, knobs: dict) -> bool:
    """Whether the probe runs APGD, whose clean check the sweeps skip after the first call."""
    return cls is PGDLinfProbe and knobs.get("method", "apgd-ce") == "apgd-ce"


SWEEPS = [
    (FGSMProbe, {}),
    (L2GradProbe, {}),
    (BIMProbe, {"steps": 4}),
    (PGDLinfProbe, {"steps": 5}),
    (PGDLinfProbe, {"steps": 3, "restarts": 3}),
    (PGDL2Probe, {"steps": 4, "restarts": 2}),
]
MIN_EPS = [(MinEpsProbe, {"steps": 3}), (MinEpsProbe, {"steps": 2, "norm": "l2"})]


@pytest.mark.parametrize(("cls", "knobs"), SWEEPS, ids=lambda v: getattr(v, "name", str(v)))
def test_sweep_estimate_is_attained_when_no_sample_breaks(cls: type, knobs: dict) -> None:
    """A sweep's upper bound (restarts and the large-ε re-attack on survivors) is exact when every
    sample is clean-correct and never broken (tolerance 0)."""
    counter, model, data = unbreakable()
    measured, declared = count(cls, model, data, counter, every_clean_check=True, **knobs)
    assert declared == measured
    reused, _ = count(cls, model, data, counter, **knobs)
    assert reused.backward == measured.backward
    if reuses_the_clean_check(cls, knobs):
        # APGD's clean check: only the first call's batch of 8, of (5 budgets + the box-covering budget)
        # × restarts calls on all 20 samples
        restarts = int(knobs.get("restarts", 1))
        assert measured.forward - reused.forward == restarts * 6 * 20 - 8
    else:
        assert reused == measured


@pytest.mark.parametrize(("cls", "knobs"), MIN_EPS, ids=lambda v: getattr(v, "name", str(v)))
def test_min_eps_estimate_is_attained_when_every_sample_is_bisected(cls: type, knobs: dict) -> None:
    """The bisection's upper bound is exact when every sample is clean-correct and broken at ε_max
    (the linear problem: labels are the predictions, boundaries within 0.2 in L∞)."""
    net_model, data, _, _ = linear_problem(n=20)
    counter = Counting(net_model.net)
    model = audit_model(counter, 4)
    ctx = context(model, data)
    with torch.enable_grad():
        found = cls(build_probe_config(cls, knobs)).run(ctx).per_sample["min_eps_found"]
    assert found.all()  # the premise: PGD breaks every sample at ε_max
    measured, declared = count(cls, model, data, counter, **knobs)
    assert declared == measured


@pytest.mark.parametrize(("cls", "knobs"), SWEEPS + MIN_EPS, ids=lambda v: getattr(v, "name", str(v)))
def test_estimate_bounds_the_passes_on_a_breakable_model(cls: type, knobs: dict) -> None:
    """On a model the attacks do break, the declared counts bound the real ones from above."""
    net_model, data, _, _ = linear_problem(n=20)
    counter = Counting(net_model.net)
    model = audit_model(counter, 4)
    measured, declared = count(cls, model, data, counter, **knobs)
    assert measured.backward > 0
    assert measured.forward <= declared.forward and measured.backward <= declared.backward


@pytest.mark.parametrize("cls", [FGSMProbe, BIMProbe, PGDLinfProbe, PGDL2Probe])
def test_sweeps_without_sanity_passes_are_exact_on_any_model(cls: type) -> None:
    """No restarts, no sanity passes and no ε-monotone skipping: nothing depends on the data, so the
    counts are exact; with skipping (the default) they are bounded by the same declaration."""
    net_model, data, _, _ = linear_problem(n=20)
    counter = Counting(net_model.net)
    measured, declared = count(cls, audit_model(counter, 4), data, counter, sanity_checks=False, monotone=False,
                               every_clean_check=True)
    assert declared == measured
    reused, _ = count(cls, audit_model(counter, 4), data, counter, sanity_checks=False, monotone=False)
    assert reused.backward == measured.backward
    assert measured.forward - reused.forward == (5 * 20 - 8 if reuses_the_clean_check(cls, {}) else 0)
    skipping, declared_skipping = count(cls, audit_model(counter, 4), data, counter, sanity_checks=False)
    assert declared_skipping == declared
    assert skipping.backward < measured.backward and skipping.forward <= measured.forward


def test_single_step_peer_result_is_reused_and_not_counted() -> None:
    counter, model, data = unbreakable()
    fgsm = FGSMProbe(build_probe_config(FGSMProbe, {}))
    with torch.enable_grad():
        peer = fgsm.run(context(model, data, batch_size=8))
    measured, declared = count(PGDLinfProbe, model, data, counter, previous={"attack.fgsm": peer}, steps=3,
                               every_clean_check=True)
    assert declared == measured
    _, alone = count(PGDLinfProbe, model, data, counter, steps=3)
    assert alone.backward > declared.backward


def test_audit_total_is_the_sum_with_the_shared_clean_forward_and_undeclared_probes() -> None:
    counter, model, data = unbreakable()
    tm = context(model, data).threat_model
    probes = [FGSMProbe(), WorstCaseProbe()]

    class Silent(FGSMProbe):
        name = "example.silent"

        @classmethod
        def estimate_cost(cls, *args, **kwargs):  # the documented default of Probe
            return None

    audit = estimate_audit_cost([*probes, Silent()], len(data), tm, seconds_per_fwd_bwd=0.5)
    fgsm = FGSMProbe.estimate_cost(FGSMProbe.Config(), len(data), tm)
    assert list(audit.omitted) == ["example.silent"]
    assert audit.total == fgsm + Cost(forward=len(data))
    assert audit.seconds(audit.total) == pytest.approx(0.5 * audit.total.fwd_bwd_equivalents())


def test_run_prints_and_records_the_estimate(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    proc = subprocess.run(
        [sys.executable, "-m", "robaudit", "run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits",
         "--n-samples", "16", "--probes", "clean,attack.fgsm", "--out", str(out), "--no-report"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "cost estimate" in ln]
    assert [ln.split("cost estimate ")[1].split(":")[0] for ln in lines] == [
        "clean logits (shared)", "clean", "attack.fgsm", "total"]
    assert proc.stderr.index("cost estimate total") < proc.stderr.index("probe clean: running")
    results = json.loads((out / "results.json").read_text())
    record = results["cost_estimate"]
    assert record["n_samples"] == 16 and record["seconds_per_fwd_bwd"] > 0
    # FGSM over the digits L∞ sweep: per ε and sample, the attack step, the re-check and the noise forward
    n_eps = len(results["threat_model"]["norms"]["linf"]["eps"])
    assert record["probes"]["attack.fgsm"]["backward"] == 16 * n_eps
    assert record["probes"]["attack.fgsm"]["forward"] == 16 * 2 * n_eps


def test_min_eps_bound_holds_when_started_from_the_sweep_brackets() -> None:
    """With a selected sweep the declared bound shrinks to the sweep's widest gap, and still holds."""
    net_model, data, _, _ = linear_problem(n=20)
    counter = Counting(net_model.net)
    model = audit_model(counter, 4)
    with torch.enable_grad():
        sweep = PGDLinfProbe(build_probe_config(PGDLinfProbe, {"steps": 5})).run(context(model, data))
    measured, declared = count(MinEpsProbe, model, data, counter, previous={"attack.pgd_linf": sweep}, steps=3)
    _, alone = count(MinEpsProbe, model, data, counter, steps=3)
    assert declared.backward < alone.backward
    assert measured.forward <= declared.forward and measured.backward <= declared.backward


def test_timing_survives_a_model_without_an_input_gradient() -> None:
    """A detached model (preflight flags it, attacks are skipped) must not crash the estimate."""
    class Detached(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.flatten(1)[:, :2], x.flatten(1)[:, :1]], dim=1).detach()

    x = torch.rand(4, *SHAPE)
    assert time_fwd_bwd(audit_model(Detached(), 3), x, torch.zeros(4, dtype=torch.long)) >= 0


def test_timing_takes_the_fastest_pass_so_one_stalled_pass_cannot_inflate_the_estimate() -> None:
    """The demo's estimate once came out ~15× its run time: its one timed pass stalled while another
    process held a core. A model whose first timed pass stalls 0.3 s must still be timed at its speed."""
    class Stalls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(int(torch.tensor(SHAPE).prod()), 3)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 2:  # the first pass after the untimed warm-up
                time.sleep(0.3)
            return self.lin(x.flatten(1))

    x = torch.rand(4, *SHAPE)
    net = Stalls()
    seconds = time_fwd_bwd(audit_model(net, 3), x, torch.zeros(4, dtype=torch.long))
    assert net.calls >= 3
    assert seconds * 4 < 0.1
