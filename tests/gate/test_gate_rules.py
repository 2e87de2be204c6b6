"""Parsing rules: selectors and numbers survive TOML, ids, defaults and the three file locations."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from robaudit.gate import GateRulesError, load_rules, parse_rules
from robaudit.gate.rules import FlagRule, MetricRule

TEXT = """
level = 0.01
noise = "none"
[[rule]]
metric = ["probes", "attack.pgd_linf", "summary", "robust_accuracy", {eps = 0.1, norm = "linf"}, "value"]
threshold = 0.4
[[rule]]
metric = ["probes", "attack.pgd_linf", "summary", "robust_accuracy", {eps = 0.1, norm = "linf"}, "value"]
threshold = 0.4
[[rule]]
metric = ["probes", "clean", "summary", "accuracy"]
max_regression = 0.02
noise = "two-proportion"
level = 0.1
[[rule]]
flags = ["zero_*"]
sources = "preflight"
"""


def test_rules_keep_path_segments_and_resolve_defaults() -> None:
    rules = parse_rules(tomllib.loads(TEXT))
    first, second, third, flag = rules.rules
    assert isinstance(first, MetricRule) and isinstance(flag, FlagRule)
    assert first.metric is not None and first.metric[4] == {"eps": 0.1, "norm": "linf"}
    assert (first.noise, first.level, first.kind, first.relative) == ("none", 0.01, "threshold", False)
    assert second.id == f"{first.id} #2"  # derived ids are made unique
    assert (third.kind, third.limit, third.noise, third.level, third.relative) == ("max_regression", 0.02,
                                                                                  "two_proportion", 0.1, True)
    assert flag.sources == ("preflight",) and flag.min_severity is None and not flag.relative
    assert rules.needs_baseline and rules.level == 0.01


def test_explicit_ids_must_be_unique() -> None:
    table = {"rule": [{"id": "a", "flags": ["x"]}, {"id": "a", "flags": ["y"]}]}
    with pytest.raises(GateRulesError, match="repeats the id 'a'"):
        parse_rules(table)


@pytest.mark.parametrize(("name", "text"), [
    ("gate.toml", '[[rule]]\nflags = ["x"]\n'),
    ("robaudit.toml", 'dataset = "digits"\n[gate]\nbaseline = "b"\n[[gate.rule]]\nflags = ["x"]\n'),
    ("pyproject.toml", '[project]\nname = "p"\n[tool.robaudit.gate]\nbaseline = "b"\n[[tool.robaudit.gate.rule]]\nflags = ["x"]\n'),
])
def test_three_places_for_rules(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    rules = load_rules(path)
    assert [r.target for r in rules.rules] == ["x"]
    assert rules.baseline == (None if name == "gate.toml" else tmp_path / "b")  # relative to the file
    assert rules.sha256 is not None and len(rules.sha256) == 64


def test_pyproject_without_a_gate_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n')
    with pytest.raises(GateRulesError, match=r"no \[tool.robaudit.gate\] table"):
        load_rules(tmp_path / "pyproject.toml")
