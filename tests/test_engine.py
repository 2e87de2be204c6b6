"""The engine end to end on the demo: results on disk, schema, resume, Ctrl-C, failures, the probe contract."""
from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

import probe_fixtures
from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from robaudit.config import AuditConfig
from robaudit.engine import run_audit
from robaudit.engine.runner import prepare, select_probes
from robaudit.exitcodes import ExitCode
from robaudit.errors import ProbeError
from robaudit.models.audit_model import same_state
from robaudit.probes.base import ATTACK_OUTCOMES, Probe, ProbeResult
from robaudit.plugin import derive_seed, make_test_context, undeclared_summary_keys
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry
from robaudit.results import schema_text, store
from robaudit.results.serialise import to_jsonable


def _registry(*extra: tuple[str, str]) -> ProbeRegistry:
    class Dist:
        name, version = "robaudit", "0"

    eps = [EntryPoint(n, v, ENTRY_POINT_GROUP)._for(Dist()) for n, v in (
        ("clean", "robaudit.probes.clean:CleanAccuracy"),
        ("calibration", "robaudit.probes.calibration:Calibration"),
        *extra)]
    return ProbeRegistry(entry_point_list=eps)


def _config(out: Path, **kw: object) -> AuditConfig:
    base = dict(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=60, out=out, threads=THREADS)
    base.update(kw)
    return AuditConfig(**base)


def test_results_validate_against_the_published_schema(demo_run: Path) -> None:
    results = json.loads((demo_run / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    assert results["status"] == "complete"
    assert results["environment"]["threads"] == THREADS
    assert results["model"]["normalisation"]["source"] == "checkpoint"
    assert results["data"]["n_used"] == 120


def test_schema_rejects_compound_and_missing_fields(demo_run: Path) -> None:
    schema = json.loads(schema_text())
    results = json.loads((demo_run / "results.json").read_text())
    broken = json.loads(json.dumps(results))
    del broken["model"]["checkpoint_sha256"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = json.loads(json.dumps(results))
    broken["flags"].append({"id": "Bad Id", "severity": "fatal", "message": "", "source": "", "docs": ""})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_per_sample_table_matches_results_and_model(demo_run: Path) -> None:
    results = json.loads((demo_run / "results.json").read_text())
    ids, cols = store.read_per_sample(demo_run)
    assert len(ids) == len(set(ids)) == 120 and all(i.startswith("test:") for i in ids)
    assert set(results["per_sample"]["columns"]) <= set(cols)
    acc = results["probes"]["clean"]["summary"]["accuracy"]["value"]
    assert np.mean(cols["clean/correct"]) == pytest.approx(acc)
    assert ((cols["clean/logit_margin"] > 0) == (cols["clean/correct"] == 1)).all()


def test_same_seed_reproduces_every_per_sample_value(tmp_path: Path) -> None:
    a = run_audit(_config(tmp_path / "a", probes=["clean", "calibration"]), _registry(), quiet=True)
    b = run_audit(_config(tmp_path / "b", probes=["clean", "calibration"]), _registry(), quiet=True)
    assert a.exit_code == b.exit_code == ExitCode.OK
    assert (tmp_path / "a" / "per_sample.csv").read_bytes() == (tmp_path / "b" / "per_sample.csv").read_bytes()
    assert a.results["probes"]["calibration"]["summary"] == b.results["probes"]["calibration"]["summary"]


def test_resume_skips_finished_probes_and_reruns_changed_ones(tmp_path: Path) -> None:
    registry = _registry(("test.counting", "probe_fixtures:CountingProbe"))
    probe_fixtures.CountingProbe.runs = 0
    cfg = _config(tmp_path / "r", probes=["clean", "test.counting"])
    first = run_audit(cfg, registry, quiet=True)
    assert probe_fixtures.CountingProbe.runs == 1
    again = run_audit(_config(tmp_path / "r", probes=["clean", "test.counting"], resume=True), registry, quiet=True)
    assert probe_fixtures.CountingProbe.runs == 1, "a finished probe with the same settings must be skipped"
    assert again.results["probes"]["test.counting"]["summary"] == first.results["probes"]["test.counting"]["summary"]
    _, cols = store.read_per_sample(tmp_path / "r")
    assert "test.counting/label_twice" in cols and "clean/correct" in cols
    changed = _config(tmp_path / "r", probes=["clean", "test.counting"], resume=True,
                      probe_config={"test.counting": {"scale": 2.0}})
    run_audit(changed, registry, quiet=True)
    assert probe_fixtures.CountingProbe.runs == 2, "changed knobs must re-run the probe"


def test_resume_hands_reused_results_to_later_probes_and_reruns_readers_of_changed_inputs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reused result reaches the probes that require it (in its persisted form), and a reader whose
    input changed re-runs, with the reason in the log."""
    registry = _registry(("test.counting", "probe_fixtures:CountingProbe"),
                         ("test.reads_counting", "probe_fixtures:ReadsCounting"))
    probe_fixtures.ReadsCounting.runs = 0
    names = ["test.reads_counting", "test.counting"]
    first = run_audit(_config(tmp_path / "r", probes=names), registry, quiet=True)
    assert first.results["probe_order"] == ["test.counting", "test.reads_counting"]
    read = first.results["probes"]["test.reads_counting"]["summary"]
    assert read["noise_read"] == first.results["probes"]["test.counting"]["summary"]["noise"]
    assert read["label_sum"] == 2 * float(np.sum(json.loads(json.dumps(list(map(int, store.read_per_sample(
        tmp_path / "r")[1]["label"]))))))
    # drop the reader's result: on resume it must read test.counting's *reused* result
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    del results["probes"]["test.reads_counting"]
    store.write_results(tmp_path / "r", results)
    again = run_audit(_config(tmp_path / "r", probes=names, resume=True), registry, quiet=True)
    assert probe_fixtures.ReadsCounting.runs == 2
    assert again.results["probes"]["test.reads_counting"]["summary"] == read
    # new knobs for the upstream probe that leave its result unchanged (the first pixel is 0 on digits):
    # it re-runs, and its reader's saved result stays valid
    caplog.set_level("INFO", logger="robaudit")
    same = _config(tmp_path / "r", probes=names, resume=True, probe_config={"test.counting": {"scale": 3.0}})
    run_audit(same, registry, quiet=True)
    assert probe_fixtures.ReadsCounting.runs == 2
    # knobs that change the upstream result: the reader re-runs too, and the log says why
    changed = _config(tmp_path / "r", probes=names, resume=True, probe_config={"test.counting": {"offset": 1}})
    rerun = run_audit(changed, registry, quiet=True)
    assert probe_fixtures.ReadsCounting.runs == 3
    assert rerun.results["probes"]["test.reads_counting"]["summary"]["label_sum"] == read["label_sum"] + 60
    assert "probe test.reads_counting: re-running, the saved result is stale (the threat model or the results " \
           "it read changed)" in caplog.text
    assert "probe test.counting: re-running, the saved result is stale (its knobs changed)" in caplog.text


def test_resume_keeps_every_saved_result_on_disk_while_it_runs(tmp_path: Path) -> None:
    """Issue #12: an interrupted --resume must not lose what the first run finished."""
    registry = _registry(("test.counting", "probe_fixtures:CountingProbe"),
                         ("test.interrupt", "probe_fixtures:InterruptingProbe"))
    run_audit(_config(tmp_path / "r", probes=["clean", "test.counting", "calibration"]), registry, quiet=True)
    before = json.loads((tmp_path / "r" / "results.json").read_text())
    _, cols_before = store.read_per_sample(tmp_path / "r")
    # the resume re-runs calibration first (new knobs), then is interrupted before reaching the rest
    with pytest.raises(KeyboardInterrupt):
        run_audit(_config(tmp_path / "r", probes=["calibration", "test.interrupt", "clean", "test.counting"],
                          resume=True, probe_config={"calibration": {"bins": 7}}), registry, quiet=True)
    during = json.loads((tmp_path / "r" / "results.json").read_text())
    assert during["status"] == "interrupted"
    for name in ("clean", "test.counting"):
        assert during["probes"][name] == before["probes"][name]
    assert during["probes"]["calibration"]["config"]["bins"] == 7
    _, cols = store.read_per_sample(tmp_path / "r")
    np.testing.assert_array_equal(cols["test.counting/label_twice"], cols_before["test.counting/label_twice"])
    np.testing.assert_array_equal(cols["clean/correct"], cols_before["clean/correct"])


@pytest.mark.parametrize(("probe", "message"), [
    ("test.mutate", "probe 'test.mutate' changed the audit model's state"),
    ("test.train_mode", "probe 'test.train_mode' changed the audit model's training mode"),
])
def test_the_engine_fails_a_probe_that_changes_the_model(tmp_path: Path, probe: str, message: str) -> None:
    registry = _registry(("test.mutate", "probe_fixtures:MutatingProbe"),
                         ("test.train_mode", "probe_fixtures:ModeSwitchingProbe"))
    outcome = run_audit(_config(tmp_path / "m", probes=[probe, "clean"]), registry, quiet=True)
    entry = outcome.results["probes"][probe]
    assert entry["status"] == "failed" and entry["error"]["internal"] is True
    assert message in entry["error"]["message"]
    assert outcome.exit_code == ExitCode.INTERNAL


def test_requirements_refuse_cycles_and_missing_mandatory_inputs(tmp_path: Path) -> None:
    registry = _registry(("test.cycle_a", "probe_fixtures:CycleA"), ("test.cycle_b", "probe_fixtures:CycleB"),
                         ("test.reads_counting", "probe_fixtures:ReadsCounting"))
    with pytest.raises(ProbeError, match="require each other's results"):
        select_probes(_config(tmp_path, probes=["test.cycle_a", "test.cycle_b"]), registry)
    with pytest.raises(ProbeError, match="'test.cycle_b' requires probe 'test.cycle_a', which is not selected"):
        select_probes(_config(tmp_path, probes=["test.cycle_b"]), registry)
    # an optional requirement that is not selected is fine
    assert [s.name for s in select_probes(_config(tmp_path, probes=["test.cycle_a"]), registry)] == ["test.cycle_a"]
    with pytest.raises(ProbeError, match="'attack.worst_case' requires attack outcomes, which no selected probe "
                                         "provides.*e.g. attack.fgsm"):
        select_probes(_config(tmp_path, probes=["attack.worst_case"]), ProbeRegistry(autoload_plugins=False))


def test_resume_refuses_other_samples(tmp_path: Path) -> None:
    run_audit(_config(tmp_path / "r", probes=["clean"]), _registry(), quiet=True)
    from robaudit.errors import UsageError

    with pytest.raises(UsageError, match="different samples"):
        run_audit(_config(tmp_path / "r", probes=["clean"], n_samples=30, resume=True), _registry(), quiet=True)


def test_ctrl_c_leaves_finished_probes_on_disk(tmp_path: Path) -> None:
    registry = _registry(("test.interrupt", "probe_fixtures:InterruptingProbe"),
                         ("test.counting", "probe_fixtures:CountingProbe"))
    with pytest.raises(KeyboardInterrupt):  # no requirements: the listed order
        run_audit(_config(tmp_path / "i", probes=["clean", "test.interrupt", "test.counting"]), registry, quiet=True)
    results = json.loads((tmp_path / "i" / "results.json").read_text())
    assert results["status"] == "interrupted"
    assert results["probes"]["clean"]["status"] == "ok"
    assert "test.counting" not in results["probes"]
    _, cols = store.read_per_sample(tmp_path / "i")
    assert "clean/correct" in cols
    assert (tmp_path / "i" / "report.html").is_file()


def test_a_crashing_probe_keeps_the_others_and_exits_internal(tmp_path: Path) -> None:
    registry = _registry(("test.crash", "probe_fixtures:CrashingProbe"))
    outcome = run_audit(_config(tmp_path / "c", probes=["test.crash", "clean"]), registry, quiet=True)
    assert outcome.exit_code == ExitCode.INTERNAL
    assert outcome.results["probes"]["test.crash"]["status"] == "failed"
    assert "KeyError" in outcome.results["probes"]["test.crash"]["error"]["message"]
    assert outcome.results["probes"]["clean"]["status"] == "ok"
    assert outcome.results["status"] == "partial"


def test_nothing_ran_exit_code(tmp_path: Path) -> None:
    registry = _registry(("test.crash", "probe_fixtures:CrashingProbe"))
    outcome = run_audit(_config(tmp_path / "n", probes=["test.crash"]), registry, quiet=True)
    assert outcome.exit_code == ExitCode.INTERNAL  # a crash outranks "nothing ran"


MANDATORY_INPUT = {ATTACK_OUTCOMES: "attack.fgsm"}


@pytest.mark.parametrize("name", ProbeRegistry(autoload_plugins=False).names())
def test_probe_contract(name: str, tmp_path: Path) -> None:
    """Every registered probe: deterministic under a seed, leaves the model unchanged, round-trips through JSON."""
    registry = ProbeRegistry(autoload_plugins=False)
    cls = registry.get(name)
    # a mandatory input (attack.worst_case needs attack outcomes) comes from one cheap provider
    upstream = [MANDATORY_INPUT.get(r.target, r.target) for r in cls.requires if not r.optional]
    cfg = _config(tmp_path, probes=[*upstream, name], n_samples=40)
    selected = select_probes(cfg, registry)
    sel = selected[-1]
    device, _, model, data = prepare(cfg, selected)
    before = model.state_fingerprint()

    def run_probe(probe: Probe, needs_grad: bool, previous: dict) -> ProbeResult:
        seed = derive_seed(0, probe.name)
        torch.manual_seed(seed)
        ctx = make_test_context(model, data, batch_size=16, seed=seed, device=device, previous=previous)
        with torch.set_grad_enabled(needs_grad):
            return probe.run(ctx)

    previous = {s.name: run_probe(s.probe, s.cls.needs_grad, {}) for s in selected[:-1]}

    def run_once() -> dict:
        result = run_probe(sel.probe, sel.cls.needs_grad, previous)
        return {"summary": to_jsonable(result.summary), "artifacts": to_jsonable(result.artifacts),
                "per_sample": to_jsonable(result.per_sample), "flags": [f.to_json() for f in result.flags]}

    first, second = run_once(), run_once()
    assert not undeclared_summary_keys(sel.cls, first["summary"]), "summary keys missing from summary_keys"
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert json.loads(json.dumps(first, allow_nan=False)) == first
    assert same_state(before, model.state_fingerprint()), "the probe changed the model"


def test_probes_run_in_declared_order_and_standard_expands(tmp_path: Path) -> None:
    """attack.worst_case reads the attacks' results, so it must run after them whatever the listed order."""
    registry = ProbeRegistry(autoload_plugins=False)
    selected = select_probes(_config(tmp_path / "o", probes=["attack.worst_case", "attack.fgsm", "clean"]), registry)
    assert [s.name for s in selected] == ["attack.fgsm", "attack.worst_case", "clean"]
    assert [s.inputs for s in selected] == [[], ["attack.fgsm"], []]
    expanded = [s.name for s in select_probes(_config(tmp_path / "s", probes=["standard", "attack.cw_l2"]), registry)]
    assert set(expanded) == set(registry.standard_set()) | {"attack.cw_l2"}
    with pytest.raises(ProbeError, match="listed twice"):
        select_probes(_config(tmp_path / "d", probes=["standard", "clean"]), registry)
