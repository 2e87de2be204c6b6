"""The attack probes' plumbing: the adapter, re-checking, reproducibility, the worst case,
budgets and knobs, and an end-to-end audit with its report."""
from __future__ import annotations

import csv
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attack_models import demo, linear_problem, run_probe, subset
from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from helpers import audit_data, audit_model, fixed_logits_setup
from robaudit.config import build_probe_config
from robaudit.errors import ProbeError
from robaudit.probes.attacks import torchattacks_adapter as ta
from robaudit.probes.attacks.autoattack import AutoAttackProbe
from robaudit.probes.attacks.budgets import Budgets, eps_key, probe_budgets
from robaudit.probes.attacks.cw import CWL2Probe
from robaudit.probes.attacks.fab import FABProbe
from robaudit.probes.attacks.iterative import BIMProbe, PGDL2Probe, PGDLinfProbe
from robaudit.probes.attacks.min_eps import MinEpsProbe
from robaudit.probes.attacks.single_step import FGSMProbe, L2GradProbe
from robaudit.probes.attacks.verify import project
from robaudit.probes.attacks.worst_case import WorstCaseProbe
from robaudit.probes.base import ProbeResult, column_meta, validate_probe_class
from robaudit.threat_model import resolve_threat_model


# ----------------------------------------------------------------------------------------- adapter

def test_adapter_keywords_exist_in_the_pinned_torchattacks() -> None:
    import torchattacks

    used = {
        torchattacks.FGSM: {"eps"}, torchattacks.BIM: {"eps", "alpha", "steps"},
        torchattacks.PGD: {"eps", "alpha", "steps", "random_start"},
        torchattacks.PGDL2: {"eps", "alpha", "steps", "random_start", "eps_for_division"},
        torchattacks.CW: {"c", "kappa", "steps", "lr"},
        torchattacks.APGD: {"norm", "eps", "steps", "n_restarts", "seed", "loss", "eot_iter", "rho", "verbose"},
        torchattacks.APGDT: {"norm", "eps", "steps", "n_restarts", "seed", "eot_iter", "rho", "verbose", "n_classes"},
        torchattacks.FAB: {"norm", "eps", "steps", "n_restarts", "alpha_max", "eta", "beta", "verbose", "seed",
                           "multi_targeted", "n_classes"},
        torchattacks.Square: {"norm", "eps", "n_queries", "n_restarts", "p_init", "loss", "resc_schedule", "seed",
                              "verbose"},
    }
    for cls, keywords in used.items():
        assert keywords <= set(inspect.signature(cls).parameters), cls.__name__
    # the keyword its docs show for PGD (``iters=``) is rejected: calls must go through the adapter
    with pytest.raises(TypeError):
        torchattacks.PGD(nn.Linear(1, 1), iters=40)


def test_an_unsupported_torchattacks_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchattacks

    assert ta.torchattacks_version().startswith("3.5.")
    monkeypatch.setattr(torchattacks, "__version__", "3.6.0")
    model, data = demo()
    with pytest.raises(ProbeError, match="3.5.x"):
        run_probe(PGDLinfProbe, model, subset(data, 4), eps=[0.1], steps=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_sample_pgd_equals_torchattacks_pgd_at_a_shared_budget(norm: str) -> None:
    model, data = demo()
    x, y = data.x[:32], data.y[:32]
    eps = 0.1 if norm == "linf" else 0.8
    with ta.attack_session(model, torch.device("cpu")) as target:
        plain = (ta.pgd_linf if norm == "linf" else ta.pgd_l2)(target, x, y, eps, alpha=0.25 * eps, steps=8,
                                                              random_start=True, seed=3)
        per_sample = ta.pgd_per_sample(target, x, y, torch.full((32,), eps), 0.25, 8, True, norm, seed=3)
    torch.testing.assert_close(per_sample.adv, plain.adv, atol=1e-6, rtol=0)


def test_stock_pgd_l2_stalls_on_confident_samples_and_ours_does_not() -> None:
    import torchattacks

    model, data, _, d_2 = linear_problem(n=24, k=4)
    eps = float(d_2.max()) * 3  # far beyond every sample's exact distance
    with ta.attack_session(model, torch.device("cpu")) as target:
        ours = ta.pgd_l2(target, data.x, data.y, eps, alpha=0.05 * eps, steps=60, random_start=True, seed=1).adv
        torch.manual_seed(1)
        stock = torchattacks.PGDL2(target, eps=eps, alpha=0.05 * eps, steps=60, random_start=True)(data.x, data.y)
    with torch.no_grad():
        assert (model(ours).argmax(dim=1) != data.y).all()
        assert (model(stock).argmax(dim=1) == data.y).any(), "torchattacks' 1e-10 division floor stalls some samples"


def test_session_leaves_the_model_as_it_was() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                        nn.Linear(64, 3))
    model = audit_model(net, 3)
    model.net[0].weight.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    data = audit_data(torch.rand(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g), 3)
    before = model.state_fingerprint()
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    run_probe(FABProbe, model, data, steps=5, eps=[0.1])
    assert [m.training for m in model.modules()] == modes == [False] * len(modes), "torchattacks must not switch modes"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "FAB's .backward() must not fill parameter gradients"
    after = model.state_fingerprint()
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1])


def test_reference_autoattack_builds_the_standard_composition_at_100_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``reference`` preset hands torchattacks Croce & Hein's standard settings (100 iterations,
    min(9, K−1) targets, 5000 Square queries, one restart each) and records the preset."""
    import torchattacks

    built: dict[str, list] = {}
    for name in ("APGD", "APGDT", "FAB", "Square"):
        original = getattr(torchattacks, name)

        def make(original: type = original, name: str = name) -> type:
            class Recorder(original):  # type: ignore[misc, valid-type]
                def __init__(self, *args: object, **kwargs: object) -> None:
                    super().__init__(*args, **kwargs)
                    built.setdefault(name, []).append(self)
            return Recorder
        monkeypatch.setattr(torchattacks, name, make())
    model, data, d_inf, _ = linear_problem(n=6, k=12)
    result = run_probe(AutoAttackProbe, model, data, eps=[float(d_inf.max()) * 1.03])
    assert result.summary["preset"] == "reference"
    assert result.summary["components"] == [
        {"name": "apgd-ce", "steps": 100}, {"name": "apgd-t", "steps": 100, "target_classes": 9},
        {"name": "fab-t", "steps": 100, "target_classes": 9}, {"name": "square", "queries": 5000}]
    (apgd,), (apgdt,), (fab,), (square,) = built["APGD"], built["APGDT"], built["FAB"], built["Square"]
    assert (apgd.steps, apgd.n_restarts, apgd.loss) == (100, 1, "ce")
    assert (apgdt.steps, apgdt.n_restarts, apgdt.n_target_classes) == (100, 1, 9)
    assert (fab.steps, fab.n_restarts, fab.n_target_classes, fab.multi_targeted) == (100, 1, 9, True)
    assert (square.n_queries, square.n_restarts) == (5000, 1)
    assert result.per_sample["success_eps_" + eps_key(float(d_inf.max()) * 1.03)].all()
    assert ta.AUTOATTACK_PRESETS["fast"]["steps"] == 10


# ------------------------------------------------------------------------------------ re-checking

def test_projection_repairs_exactly_what_is_invalid() -> None:
    x = torch.full((4, 1, 2, 2), 0.5)
    adv = x.clone()
    adv[0] += 0.05                     # valid
    adv[1, 0, 0, 0] = float("nan")     # non-finite → clean image
    adv[2] += 0.3                      # outside the L∞ ball of 0.1 → clamped to the ball
    adv[3, 0, 0, 0] = 1.2              # outside the box and the ball
    fixed, invalid = project(x, adv, 0.1, "linf")
    assert invalid.tolist() == [False, True, True, True]
    torch.testing.assert_close(fixed[0], adv[0])
    torch.testing.assert_close(fixed[1], x[1])
    torch.testing.assert_close(fixed[2], x[2] + 0.1)
    assert float((fixed - x).abs().max()) <= 0.1 + 1e-7 and float(fixed.max()) <= 1.0
    fixed2, invalid2 = project(x, x + 0.2, 0.25, "l2")  # ‖δ‖₂ = 0.4 > 0.25 → scaled onto the sphere
    assert invalid2.all()
    np.testing.assert_allclose((fixed2 - x).flatten(1).norm(dim=1).numpy(), 0.25, rtol=1e-6)


# -------------------------------------------------------------------------------- reproducibility

def test_same_seed_reproduces_every_per_sample_result() -> None:
    """Every attack probe, twice with one seed (the global RNG disturbed in between): every
    per-sample value is bitwise identical; a different seed changes the random-start attacks."""
    model, data = demo()
    data = subset(data, 24)
    for cls, knobs in ((FGSMProbe, {"eps": [0.05, 0.1]}), (BIMProbe, {"eps": [0.1], "steps": 3}),
                       (L2GradProbe, {"eps": [0.5]}),
                       (PGDLinfProbe, {"eps": [0.05, 0.1], "steps": 5}), (PGDL2Probe, {"eps": [0.5], "steps": 5}),
                       (MinEpsProbe, {"steps": 3}),
                       (CWL2Probe, {"eps": [0.5], "steps": 10, "binary_search_steps": 2}),
                       (FABProbe, {"eps": [0.1], "steps": 5}),
                       (AutoAttackProbe, {"eps": [0.2], "preset": "fast", "square_queries": 50})):
        part = subset(data, 16) if cls in (AutoAttackProbe, CWL2Probe, FABProbe) else data
        a = run_probe(cls, model, part, seed=7, batch_size=16, **knobs)
        torch.manual_seed(12345)
        torch.rand(1000)  # the global RNG state must not matter: every draw is seeded from the probe seed
        b = run_probe(cls, model, part, seed=7, batch_size=16, **knobs)
        c = run_probe(cls, model, part, seed=8, batch_size=16, **knobs)
        assert a.per_sample.keys() == b.per_sample.keys()
        for key in a.per_sample:
            np.testing.assert_array_equal(a.per_sample[key], b.per_sample[key], err_msg=f"{cls.name}/{key}")
        if cls in (PGDLinfProbe, PGDL2Probe, MinEpsProbe):  # random starts depend on the seed
            assert any(not np.array_equal(a.per_sample[k], c.per_sample[k], equal_nan=True) for k in a.per_sample), cls.name


# ------------------------------------------------------------------------------------- worst case

def test_worst_case_is_the_per_sample_union_of_verified_successes() -> None:
    rng = np.random.default_rng(0)
    n = 50
    logits = torch.tensor(rng.normal(size=(n, 3)))
    y = torch.tensor(rng.integers(0, 3, n))
    model, data = fixed_logits_setup(logits, y)
    correct = (logits.argmax(1) == y).numpy()
    a = {e: rng.random(n) < p for e, p in ((0.1, 0.3), (0.2, 0.6))}
    b = rng.random(n) < 0.4
    min_eps = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 0.3, n))
    cw = np.where(rng.random(n) < 0.5, np.nan, rng.uniform(0, 2, n))
    previous = {
        "attack.fgsm": ProbeResult(summary={"norm": "linf", "eps": [0.1, 0.2]},
                                   per_sample={f"success_eps_{eps_key(e)}": (s | ~correct) for e, s in a.items()}),
        "attack.pgd_linf": ProbeResult(summary={"norm": "linf", "eps": [0.2]},
                                       per_sample={"success_eps_0.2": b | ~correct}),
        "attack.min_eps": ProbeResult(summary={"norm": "linf"}, per_sample={"min_eps": min_eps}),
        "attack.cw_l2": ProbeResult(summary={"norm": "l2", "eps": [1.0]},
                                    per_sample={"distance": cw, "success_eps_1": ~correct | (cw <= 1.0)}),
        "clean": ProbeResult(summary={"accuracy": 0.5}),
    }
    result = run_probe(WorstCaseProbe, model, data, previous=previous)
    with np.errstate(invalid="ignore"):
        expect_01 = ~correct | a[0.1] | (min_eps <= 0.1)
        expect_02 = ~correct | a[0.2] | b | (min_eps <= 0.2)
        expect_l2 = ~correct | (cw <= 1.0)
    np.testing.assert_array_equal(result.per_sample["success_linf_eps_0.1"], expect_01)
    np.testing.assert_array_equal(result.per_sample["success_linf_eps_0.2"], expect_02)
    np.testing.assert_array_equal(result.per_sample["success_l2_eps_1"], expect_l2)
    assert result.summary["linf"]["robust_accuracy"]["0.2"].value == pytest.approx(np.mean(~expect_02))
    assert result.summary["linf"]["robust_accuracy_clean_correct"]["0.1"].value == pytest.approx(
        np.sum(~expect_01) / correct.sum())
    assert result.summary["linf"]["attacks"]["0.1"] == ["attack.fgsm", "attack.min_eps"]
    alone = run_probe(WorstCaseProbe, model, data)  # run by hand without attacks (the engine refuses this)
    assert alone.summary == {"sources": []}


# ------------------------------------------------------------------------------- budgets and knobs

def test_probe_budgets_come_from_the_threat_model_unless_a_knob_replaces_them() -> None:
    digits = resolve_threat_model("digits", (1, 8, 8))
    assert probe_budgets(None, "linf", digits).eps == (0.05, 0.1, 0.15, 0.2, 0.3)
    cifar = probe_budgets(None, "linf", resolve_threat_model("cifar10", (3, 32, 32)))
    assert cifar.eps == (2 / 255, 0.01, 4 / 255, 0.02, 8 / 255) and cifar.source == "default:cifar-like"
    big = resolve_threat_model("imagefolder", (3, 224, 224))
    assert probe_budgets(None, "linf", big).eps == (1 / 255, 2 / 255, 4 / 255)
    assert probe_budgets(None, "l2", resolve_threat_model("tensors", (1, 28, 28))).source == "default:mnist-like"
    knob = probe_budgets([0.2, 0.1, 0.2], "linf", digits)
    assert knob.eps == (0.1, 0.2) and knob.source == "probe knob"
    assert probe_budgets(None, "linf", resolve_threat_model("cifar10", (3, 32, 32)), reference_only=True).eps == \
        (8 / 255,)  # AutoAttack's
    configured = resolve_threat_model("digits", (1, 8, 8), {"linf": [0.2, 0.05]})
    assert probe_budgets(None, "linf", configured) == Budgets("linf", (0.05, 0.2), "config")
    assert [eps_key(e) for e in (0.1, 8 / 255, 2.8, 1.0)] == ["0.1", "0.0313725", "2.8", "1"]


@pytest.mark.parametrize(("cls", "knobs", "message"), [
    (PGDLinfProbe, {"eps": [0.1, -0.1]}, "positive"),
    (PGDLinfProbe, {"eps": [2.0]}, "pixel range"),
    (PGDLinfProbe, {"step_fraction": 0.0}, "step_fraction"),
    (MinEpsProbe, {"norm": "l1"}, "norm"),
    (AutoAttackProbe, {"preset": "quick"}, "preset"),
    (PGDLinfProbe, {"stpes": 10}, "did you mean"),
    (PGDLinfProbe, {"method": "apgd"}, "apgd-ce, pgd"),
    (PGDLinfProbe, {"step_fraction": 0.25}, "method = \"pgd\""),
])
def test_bad_knobs_fail_before_anything_runs(cls: type, knobs: dict, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        build_probe_config(cls, knobs)


def test_step_size_scales_with_eps_unlike_torchattacks_defaults() -> None:
    """torchattacks' PGD defaults (2/255 per step, 10 steps) cannot leave a ball of 20/255 ≈ 0.078."""
    import torchattacks

    model, data = demo()
    data = subset(data, 120)
    ours = run_probe(PGDLinfProbe, model, data, eps=[0.1], sanity_checks=False, method="pgd")
    with ta.attack_session(model, torch.device("cpu")) as target:
        torch.manual_seed(0)
        stock = torchattacks.PGD(target, eps=0.1)(data.x, data.y)
        with torch.no_grad():
            stock_robust = (model(stock).argmax(1) == data.y).float().mean().item()
    assert ours.summary["settings"]["step_fraction"] == pytest.approx(2.5 / 20)
    assert ours.summary["robust_accuracy"]["0.1"].value <= stock_robust - 0.1


# ------------------------------------------------------------------------------- column metadata

ATTACK_PROBES = (FGSMProbe, BIMProbe, PGDLinfProbe, L2GradProbe, PGDL2Probe, CWL2Probe, MinEpsProbe,
                 AutoAttackProbe, FABProbe, WorstCaseProbe)


def test_every_attack_column_has_metadata_for_the_analysis_stage() -> None:
    expect = {
        (FGSMProbe, "success_eps_0.1"): "attack_success", (FGSMProbe, "loss_eps_0.1"): "other",
        (FGSMProbe, "margin_eps_0.1"): "other", (FGSMProbe, "gradient_vanished"): "other",
        (PGDLinfProbe, "success_eps_0.0313725"): "attack_success", (PGDL2Probe, "success_eps_1"): "attack_success",
        (BIMProbe, "success_eps_0.3"): "attack_success", (L2GradProbe, "margin_eps_0.5"): "other",
        (MinEpsProbe, "min_eps"): "robustness", (MinEpsProbe, "min_eps_lower"): "other",
        (MinEpsProbe, "min_eps_found"): "other",
        (CWL2Probe, "distance"): "robustness", (CWL2Probe, "found"): "other",
        (CWL2Probe, "success_eps_0.5"): "attack_success", (FABProbe, "distance"): "robustness",
        (AutoAttackProbe, "success_eps_0.3"): "attack_success", (AutoAttackProbe, "broken_by_eps_0.3"): "other",
        (AutoAttackProbe, "loss_eps_0.3"): "other",
        (WorstCaseProbe, "success_linf_eps_0.1"): "attack_success", (WorstCaseProbe, "success_l2_eps_1"): "attack_success",
        (WorstCaseProbe, "clean_correct"): "other",
    }
    for (cls, key), role in expect.items():
        meta = column_meta(cls, key)
        assert meta is not None and meta.role == role, (cls.name, key, meta)
        assert meta.label, (cls.name, key)
    assert column_meta(FGSMProbe, "success_eps_0.1").label == "FGSM success at ε = 0.1"  # a default budget
    assert column_meta(FGSMProbe, "success_eps_0.123").label == "FGSM success at ε"  # any other budget
    assert column_meta(PGDLinfProbe, "success_eps_0.123").role == "attack_success"
    assert column_meta(FGSMProbe, "loss_eps_0.1").unit == "nats"
    assert column_meta(CWL2Probe, "distance").unit == "L2 pixels"
    assert "L∞ or L2" in column_meta(MinEpsProbe, "min_eps").unit  # the norm is a knob: see summary › norm
    assert column_meta(WorstCaseProbe, "success_linf_eps_0.1").label != column_meta(WorstCaseProbe, "success_l2_eps_1").label
    for cls in ATTACK_PROBES:
        assert validate_probe_class(cls) == [], cls.name


def test_every_per_sample_key_an_attack_writes_is_declared() -> None:
    model, data = demo()
    data = subset(data, 12)
    results = {}
    for cls, knobs in ((FGSMProbe, {"eps": [0.1]}), (PGDL2Probe, {"eps": [0.5], "steps": 2}),
                       (MinEpsProbe, {"steps": 2, "tolerance": 0.1}),
                       (CWL2Probe, {"eps": [0.5], "steps": 5, "binary_search_steps": 1}),
                       (FABProbe, {"eps": [0.1], "steps": 2}),
                       (AutoAttackProbe, {"eps": [0.2], "preset": "fast", "square_queries": 5})):
        results[cls.name] = run_probe(cls, model, data, **knobs)
    results["attack.worst_case"] = run_probe(WorstCaseProbe, model, data, previous=dict(results))
    by_name = {cls.name: cls for cls in ATTACK_PROBES}
    for name, result in results.items():
        for key in result.per_sample:
            assert column_meta(by_name[name], key) is not None, f"{name}/{key} has no Column metadata"


# ------------------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_every_attack_runs_from_an_audit_into_results_table_and_report(tmp_path: Path) -> None:
    import robaudit

    probes = ["clean", "attack.fgsm", "attack.bim", "attack.pgd_linf", "attack.l2grad", "attack.pgd_l2",
              "attack.cw_l2", "attack.min_eps", "attack.autoattack", "attack.fab", "attack.worst_case"]
    knobs = {"attack.cw_l2": {"steps": 10, "binary_search_steps": 2},
             "attack.autoattack": {"preset": "fast", "square_queries": 20, "eps": [0.2]},
             "attack.fab": {"steps": 5}, "attack.min_eps": {"steps": 3}, "attack.bim": {"steps": 3},
             "attack.pgd_linf": {"steps": 5}, "attack.pgd_l2": {"steps": 5}}
    out = tmp_path / "audit"
    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=30, out=out,
                             threads=THREADS, probes=probes, probe_config=knobs)
    assert outcome.exit_code == 0, {n: p["error"] for n, p in outcome.results["probes"].items() if p["error"]}
    results = json.loads((out / "results.json").read_text())
    assert all(results["probes"][p]["status"] == "ok" for p in probes)
    pgd = results["probes"]["attack.pgd_linf"]
    assert pgd["higher_is_better"]["robust_accuracy"] is True
    assert set(pgd["summary"]["robust_accuracy"]) == {"0.05", "0.1", "0.15", "0.2", "0.3"}
    assert results["probes"]["attack.autoattack"]["summary"]["preset"] == "fast"
    with (out / "per_sample.csv").open() as fh:
        header = next(csv.reader(fh))
    for column in ("attack.pgd_linf/success_eps_0.1", "attack.pgd_linf/margin_eps_0.1", "attack.min_eps/min_eps",
                   "attack.cw_l2/distance", "attack.fab/distance", "attack.autoattack/broken_by_eps_0.2",
                   "attack.worst_case/success_linf_eps_0.1", "attack.worst_case/success_l2_eps_1",
                   "attack.bim/loss_eps_0.3", "attack.l2grad/success_eps_0.25"):
        assert column in header, column
    # every attack column carries its role for the analysis stage
    assert results["probes"]["attack.min_eps"]["columns"]["attack.min_eps/min_eps"]["role"] == "robustness"
    assert results["probes"]["attack.fgsm"]["columns"]["attack.fgsm/success_eps_0.1"]["role"] == "attack_success"
    assert results["probes"]["attack.worst_case"]["columns"]["attack.worst_case/success_linf_eps_0.1"]["role"] == \
        "attack_success"
    assert results["probes"]["attack.cw_l2"]["columns"]["attack.cw_l2/distance"]["unit"] == "L2 pixels"
    for p in probes[1:]:
        for column, meta in results["probes"][p]["columns"].items():
            assert meta["label"] != column.split("/", 1)[1], f"{column} has no declared metadata"
    # the worst case is never above any single attack's robust accuracy at a shared budget
    worst = results["probes"]["attack.worst_case"]["summary"]["linf"]["robust_accuracy"]
    for name in ("attack.fgsm", "attack.bim", "attack.pgd_linf"):
        for key, est in results["probes"][name]["summary"]["robust_accuracy"].items():
            assert worst[key]["value"] <= est["value"] + 1e-12
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="attacks">'):html.index("</section>", html.index('<section id="attacks">'))]
    assert section.count("<svg") >= 4  # L∞ and L2 curves, minimal-ε and distance histograms
    assert "attack.autoattack" in section and "Worst case over all attacks" in section
    assert "http://" not in section.replace("http://www.w3.org", "").replace("http://purl.org", "").replace(
        "http://creativecommons.org", "").replace("http://matplotlib.org", "")
    assert math.isfinite(results["probes"]["attack.min_eps"]["summary"]["cost"]["attack_steps_per_attacked_sample"])


def test_report_section_copes_with_failed_and_partial_attack_results() -> None:
    from robaudit.report.sections.attacks import build

    est = {"value": 0.5, "low": 0.4, "high": 0.6, "level": 0.95, "method": "wilson", "n": 40}
    results = {
        "probe_order": ["attack.pgd_linf", "attack.min_eps", "attack.worst_case"],
        "probes": {
            "attack.pgd_linf": {"status": "failed", "summary": {}, "notes": []},
            "attack.min_eps": {"status": "ok", "notes": [], "summary": {
                "norm": "linf", "tolerance": 1 / 255, "eps_max": 0.5, "found_fraction": est,
                "min_eps_quantiles": {"q10": 0.05, "q25": 0.08, "q50": 0.1, "q75": None, "q90": None},
                "cost": {"attack_steps_per_attacked_sample": 80.0}, "settings": {"steps": 10}},
                "artifacts": {"distribution": {"edges": [0, 0.25, 0.5], "counts": [3, 1], "n": 4}, "not_found": 2}},
            "attack.worst_case": {"status": "ok", "notes": [], "summary": {"sources": []}},
        },
        "flags": [{"id": "large_eps_not_broken", "severity": "error", "message": "m", "source": "attack.pgd_linf"}],
    }
    ctx = build(results)
    assert ctx["failed"] == ["attack.pgd_linf"] and not ctx["rows"] and not ctx["figures"]
    assert ctx["min_eps"]["quantiles"]["q75"] is None and len(ctx["distributions"]) == 1
    assert [f["id"] for f in ctx["flags"]] == ["large_eps_not_broken"]


def test_the_report_names_the_default_linf_attack_apgd_ce() -> None:
    """The verdict sentence names the attack that ran: APGD-CE by default, PGD behind method = "pgd"."""
    from robaudit.report.verdict import attack_name

    def results(settings: dict) -> dict:
        return {"probes": {"attack.pgd_linf": {"summary": {"settings": settings}}}}

    assert attack_name("attack.pgd_linf", results({"method": "apgd-ce", "steps": 20})) == "APGD-CE-20"
    assert attack_name("attack.pgd_linf", results({"method": "pgd", "steps": 20})) == "PGD-20"
    assert attack_name("attack.pgd_l2", {"probes": {"attack.pgd_l2": {"summary": {"settings": {"steps": 20}}}}}) == \
        "PGD L2-20"
