"""benchmarks/attacks_identical.py: what it ignores (timings, paths, the machine) and what it must catch
(any other value, a type change, a missing key), on results.json-shaped data and real files."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "attacks_identical.py"


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201 - the benchmark module, loaded from its file (benchmarks/ is not a package)
    spec = importlib.util.spec_from_file_location("attacks_identical", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


RESULTS = {
    "schema_version": 3, "created": "2026-12-06T10:44:40+00:00", "command": "robaudit run x --out a",
    "config": {"out": "a"}, "environment": {"python": "3.11"}, "cost_estimate": {"seconds_per_fwd_bwd": 4.8e-05},
    "model": {"checkpoint_path": "/x/digits_cnn.safetensors"},
    "probes": {
        "attack.pgd_linf": {"started": "2026-12-06T10:44:41+00:00", "duration_s": 2.7,
                            "summary": {"robust_accuracy": {"0.1": {"value": 0.497, "n": 360}},
                                        "mean_loss": {"0.3": math.nan}},
                            "notes": ["APGD-CE-20 over 5 budgets"]},
        "curvature.topk": {"started": "t", "duration_s": 1.5,
                           "notes": ["audit: top-5 in 16 solver + 1 certificate HVPs, 1.36 s; 20 HVPs in 1.63 s "
                                     "(81.3 ms per HVP, graph reused, 360 samples, 38282 parameters)"]},
    },
}


def test_timings_paths_and_the_machine_are_ignored(bench) -> None:
    other = copy.deepcopy(RESULTS)
    other.update(created="later", command="robaudit run x --out b", config={"out": "b"},
                 environment={"python": "3.12"}, cost_estimate={"seconds_per_fwd_bwd": 9e-05})
    other["probes"]["attack.pgd_linf"].update(started="later", duration_s=3.1)
    other["probes"]["curvature.topk"]["notes"] = [RESULTS["probes"]["curvature.topk"]["notes"][0]
                                                  .replace("1.36 s", "1.47 s").replace("81.3 ms", "87.5 ms")]
    assert bench.differences(bench.comparable(RESULTS), bench.comparable(other)) == []


@pytest.mark.parametrize(("where", "change"), [
    (("probes", "attack.pgd_linf", "summary", "robust_accuracy", "0.1", "value"), 0.4970000000000001),
    (("probes", "attack.pgd_linf", "summary", "robust_accuracy", "0.1", "n"), 360.0),  # int → float
    (("probes", "attack.pgd_linf", "summary", "mean_loss", "0.3"), 1.0),  # NaN → a number
    (("model", "checkpoint_path"), "/y/digits_cnn.safetensors"),
    (("schema_version",), None),
])
def test_any_other_change_is_reported_with_its_path(bench, where: tuple, change: object) -> None:
    other = copy.deepcopy(RESULTS)
    node = other
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = change
    found = bench.differences(bench.comparable(RESULTS), bench.comparable(other))
    assert len(found) == 1 and found[0].startswith("/" + "/".join(where) + ":")


def test_a_note_that_differs_in_words_or_counts_is_reported(bench) -> None:
    other = copy.deepcopy(RESULTS)
    other["probes"]["curvature.topk"]["notes"][0] = other["probes"]["curvature.topk"]["notes"][0].replace(
        "16 solver", "17 solver")
    assert bench.differences(bench.comparable(RESULTS), bench.comparable(other)) == [
        f"/probes/curvature.topk/notes[0]: {bench.comparable(RESULTS)['probes']['curvature.topk']['notes'][0]!r} != "
        f"{bench.comparable(other)['probes']['curvature.topk']['notes'][0]!r}"]
    del other["probes"]["attack.pgd_linf"]
    assert "/probes/attack.pgd_linf: only in first" in bench.differences(bench.comparable(RESULTS),
                                                                          bench.comparable(other))


def test_directories_compare_the_table_byte_for_byte(bench, tmp_path: Path) -> None:
    for name, table in (("old", "sample_id,x\ntest:0,0.5\n"), ("new", "sample_id,x\ntest:0,0.50\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "per_sample.csv").write_text(table)
        (tmp_path / name / "results.json").write_text(json.dumps(RESULTS))
    assert bench.compare(tmp_path / "old", tmp_path / "new") == ["per_sample.csv differs"]
    (tmp_path / "new" / "per_sample.csv").write_text("sample_id,x\ntest:0,0.5\n")
    assert bench.compare(tmp_path / "old", tmp_path / "new") == []
