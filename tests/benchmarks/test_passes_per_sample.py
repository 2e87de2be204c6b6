"""benchmarks/passes_per_sample.py: its fixed/marginal split and per-probe rows against closed forms, and its
per-probe CPU meter against the engine's own list of probes on a real audit."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "passes_per_sample.py"


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201 - the benchmark module, loaded from its file (benchmarks/ is not a package)
    spec = importlib.util.spec_from_file_location("passes_per_sample", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_two_sizes_split_exactly_into_marginal_and_fixed(bench) -> None:
    # audit − clean = 7.5 CPU-s fixed + 180 plain passes' worth of CPU per sample; P(N) not proportional to N
    passes = [0.0061, 0.0180]
    costs = [7.5 + 180 * p for p in passes]
    split = bench.split_fixed(costs, passes)
    assert split.marginal == pytest.approx(180, rel=1e-12)
    assert split.fixed == pytest.approx(7.5, rel=1e-12)
    for c, p in zip(costs, passes):  # (a) at N = (b) + F / P(N), exactly
        assert split.per_sample(p) == pytest.approx(c / p, rel=1e-12)


def test_more_sizes_give_the_least_squares_line(bench) -> None:
    passes = np.array([0.08, 0.15, 0.31, 0.33])
    costs = np.array([21.0, 30.5, 54.0, 55.1])
    split = bench.split_fixed(list(costs), list(passes))
    slope = np.sum((passes - passes.mean()) * (costs - costs.mean())) / np.sum((passes - passes.mean()) ** 2)
    assert split.marginal == pytest.approx(slope, rel=1e-10)
    assert split.fixed == pytest.approx(costs.mean() - slope * passes.mean(), rel=1e-10)


@pytest.mark.parametrize(("costs", "passes"), [([1.0], [0.1]), ([1.0, 2.0], [0.1, 0.1]), ([1.0, 2.0], [0.1])])
def test_split_refuses_what_has_no_line(bench, costs: list[float], passes: list[float]) -> None:
    with pytest.raises(ValueError):
        bench.split_fixed(costs, passes)


def test_rows_sum_to_audit_minus_clean_with_the_clean_probe_as_its_difference(bench) -> None:
    clean = bench.Audit(cpu=2.0, probes={"clean": 0.3})
    audit = bench.Audit(cpu=10.0, probes={"clean": 0.25, "attack.fgsm": 1.5, "curvature.topk": 4.0})
    rows = bench.rows(audit, clean)
    assert rows["clean"] == pytest.approx(-0.05)
    assert rows["attack.fgsm"] == 1.5 and rows["curvature.topk"] == 4.0
    assert rows[bench.OUTSIDE] == pytest.approx((10.0 - 5.75) - (2.0 - 0.3))
    assert sum(rows.values()) == pytest.approx(audit.cpu - clean.cpu)


def test_repeated_audits_give_per_entry_medians_and_a_consistent_outside(bench) -> None:
    runs = [bench.Audit(5.0, {"clean": 0.2, "attack.fgsm": 1.0}, {"analysis": 2.0}),
            bench.Audit(9.0, {"clean": 0.4, "attack.fgsm": 3.0}, {"analysis": 1.0}),
            bench.Audit(6.0, {"clean": 0.3, "attack.fgsm": 2.0}, {"analysis": 4.0, "writes": 0.5})]
    median = bench.Audit.median(runs)
    assert median.cpu == 6.0 and median.probes == {"clean": 0.3, "attack.fgsm": 2.0}
    assert median.steps == {"analysis": 2.0, "writes": 0.0}  # a step missing from a run counts 0 there
    assert median.outside == pytest.approx(6.0 - 2.3)


def test_cpu_meter_times_every_probe_the_engine_ran_and_puts_the_engine_back(bench, tmp_path: Path) -> None:
    from robaudit.engine import runner

    original = runner._run_one
    options = {"model": str(DEMO_CHECKPOINT), "arch": DEMO_ARCH, "dataset": "digits", "n_samples": 12,
               "threads": THREADS, "probes": ["clean", "attack.fgsm"], "out": str(tmp_path / "run")}
    audit, results = bench.cpu_audit(options)
    assert runner._run_one is original
    assert list(audit.probes) == results["probe_order"] == ["clean", "attack.fgsm"]
    assert all(v > 0 for v in audit.probes.values())
    assert {"analysis", "writes", "cost estimate"} <= set(audit.steps)
    assert 0 < sum(audit.probes.values()) + sum(audit.steps.values()) <= audit.cpu
