"""Rule paths are checked against the summary keys each probe declares, ``optional`` or not, and every
rules example in the docs names declared keys that resolve in a real audit's results.json."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from demo import REPO
from gate_helpers import cli, error_line, write_rules
from robaudit.exitcodes import ExitCode
from robaudit.gate import GateRulesError, check_declared_paths, check_rule_paths, parse_rules
from robaudit.gate.paths import PathError, as_number, resolve
from robaudit.gate.rules import MetricRule
from robaudit.probes.base import ANY_KEY, summary_key_matches, validate_probe_class
from robaudit.probes.registry import ProbeRegistry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "plugins").glob("*/README.md")])
REGISTRY = ProbeRegistry()


def _rule_blocks() -> list[tuple[str, str]]:
    """(doc name, toml text) of every TOML block in the docs that holds gate rules."""
    blocks = []
    for doc in DOCS:
        for text in re.findall(r"```toml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            if "rule]]" in text:
                blocks.append((str(doc.relative_to(REPO)), text))
    return blocks


def _rules(text: str):  # noqa: ANN202
    table = tomllib.loads(text)
    table = table.get("tool", {}).get("robaudit", {}).get("gate", table.get("gate", table))
    return parse_rules(table, base_dir=Path("robustness"))


def test_the_docs_have_rules_examples_in_several_files() -> None:
    docs = {name for name, _ in _rule_blocks()}
    assert {"docs/ci-gate.md", "docs/writing-a-probe.md"} <= docs and len(_rule_blocks()) >= 4


@pytest.mark.parametrize(("doc", "text"), _rule_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_every_docs_rule_names_a_declared_key_that_resolves(doc: str, text: str, demo_run: Path) -> None:
    rules = _rules(text)
    metric_rules = [r for r in rules.rules if isinstance(r, MetricRule) and r.metric is not None]
    for rule in metric_rules:
        probe = rule.probe()
        assert probe in REGISTRY.names(), f"{doc}: rule '{rule.id}' names an unregistered probe"
        assert REGISTRY.get(probe).summary_keys is not None
    check_declared_paths(rules)  # raises GateRulesError on an undeclared key
    results = json.loads((demo_run / "results.json").read_text())
    for rule in metric_rules:
        if rule.probe() not in results["probes"]:
            continue  # an opt-in probe: checked against its declaration only
        try:
            resolve(results, rule.metric)
        except PathError as exc:  # only an ε that the digits audit does not sweep may be absent
            keys = rule.metric[3:]
            declared = REGISTRY.get(rule.probe()).summary_keys
            at = exc.depth - 3
            assert as_number(keys[at]) is not None and any(
                len(p) > at and p[at] == ANY_KEY and summary_key_matches(p, keys) for p in declared), \
                f"{doc}: {exc.describe()}"


def test_the_docs_lambda_1_rule_is_evaluated_not_skipped(demo_copy: Path, tmp_path: Path) -> None:
    """The ci-gate.md example gates curvature.topk's λ1 with optional = true: it must read a real value."""
    (text,) = [t for d, t in _rule_blocks() if d == "docs/ci-gate.md" and "curvature.topk" in t]
    (rule,) = [r for r in re.split(r"(?=\[\[rule\]\])", text) if "curvature.topk" in r]
    code, out, err = cli(["gate", str(demo_copy), "--rules", str(write_rules(tmp_path / "g.toml", rule))])
    gate = json.loads((demo_copy / "results.json").read_text())["gate"]
    assert gate["rules"][0]["status"] in ("passed", "failed"), gate["rules"][0]
    lam1 = json.loads((demo_copy / "results.json").read_text())["probes"]["curvature.topk"]["summary"]["lambda_1"]
    assert gate["rules"][0]["value"] == pytest.approx(lam1)
    assert code == (ExitCode.OK if lam1 <= 50 else ExitCode.GATE_FAILED)


@pytest.mark.parametrize(("metric", "expected"), [
    ('["probes", "clean", "summary", "acuracy"]', ["probes › clean › summary › acuracy", "did you mean 'accuracy'"]),
    ('["probes", "curvature.topk", "summary", "lambda_max"]', ["did you mean 'lambda_1'", "optional = true"]),
    ('["probes", "attack.pgd_linf", "summary", "robust_acuracy", 0.1]', ["did you mean 'robust_accuracy'"]),
    ('["probes", "attack.pgd_linf", "summary", "robust_accuracy"]', ["not a number but a table", "add a key below"]),
])
def test_an_undeclared_key_is_a_rules_error_even_when_optional(candidate: Path, tmp_path: Path, metric: str,
                                                               expected: list[str]) -> None:
    """Before, an optional rule on a misspelt key was skipped for ever (exit 5 or 0)."""
    rules = write_rules(tmp_path / "r.toml", f"[[rule]]\nmetric = {metric}\nthreshold = 0.1\noptional = true\n")
    code, _, err = cli(["gate", str(candidate), "--rules", str(rules)])
    assert code == ExitCode.USAGE
    line = error_line(err)
    assert "unknown metric path" in line and all(e in line for e in expected), line
    assert json.loads((candidate / "results.json").read_text())["gate"] is None  # nothing evaluated


def test_run_refuses_an_undeclared_key_before_the_audit(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nmetric = ["probes", "clean", "summary", "acc"]\n'
                                             'threshold = 0.5\noptional = true\n')
    out = tmp_path / "audit"
    code, _, err = cli(["run", str(REPO / "examples" / "digits_cnn.safetensors"), "--arch",
                        f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN", "--n-samples", "20", "--probes", "clean",
                        "--out", str(out), "--gate", str(rules), "-q"])
    assert code == ExitCode.USAGE and "unknown metric path" in error_line(err)
    assert not (out / "results.json").exists()


def test_a_missing_probe_is_still_only_skipped_when_optional(candidate: Path, tmp_path: Path) -> None:
    """optional = true keeps its meaning for a declared key of a probe that did not run."""
    rules = write_rules(tmp_path / "r.toml", '[[rule]]\nmetric = ["probes", "curvature.topk", "summary", "lambda_1"]\n'
                                             'threshold = 50\noptional = true\n[[rule]]\n'
                                             'metric = ["probes", "clean", "summary", "accuracy"]\nthreshold = 0.1\n')
    code, _, _ = cli(["gate", str(candidate), "--rules", str(rules)])
    gate = json.loads((candidate / "results.json").read_text())["gate"]
    assert code == ExitCode.OK and [r["status"] for r in gate["rules"]] == ["skipped", "passed"]


def test_probes_without_a_declaration_are_not_checked() -> None:
    class Undeclared:
        summary_keys = None

    rules = parse_rules({"rule": [{"metric": ["probes", "x", "summary", "anything"], "threshold": 1}]})
    check_rule_paths(rules, {"x": Undeclared})
    with pytest.raises(GateRulesError, match="did you mean 'accuracy'"):
        check_rule_paths(parse_rules({"rule": [{"metric": ["probes", "clean", "summary", "accurac"], "threshold": 1}]}),
                         {"clean": REGISTRY.get("clean")})


def test_every_registered_probe_declares_its_summary_keys() -> None:
    for name in REGISTRY.names():
        cls = REGISTRY.get(name)
        assert cls.summary_keys, f"{name} declares no summary_keys"
        assert validate_probe_class(cls) == []


def test_the_contract_check_refuses_inconsistent_declarations() -> None:
    base = REGISTRY.get("clean")
    bad_direction = type("BadDirection", (base,), {"higher_is_better": {("acuracy",): True}})
    assert any("'higher_is_better' names ['acuracy']" in p for p in validate_probe_class(bad_direction))
    bad_wildcard = type("BadWildcard", (base,), {"summary_keys": (("**", "accuracy"), ("accuracy",), ("mean_loss",))})
    assert any("uses '**' before the end" in p for p in validate_probe_class(bad_wildcard))
    bad_type = type("BadType", (base,), {"summary_keys": ("accuracy",)})
    assert any("'summary_keys' must be a tuple" in p for p in validate_probe_class(bad_type))


def test_summary_key_matching() -> None:
    assert summary_key_matches(("robust_accuracy", "*"), ("robust_accuracy", "0.1"))
    assert summary_key_matches(("robust_accuracy", "*"), ("robust_accuracy", 0.1, "low"))  # an estimate's field
    assert summary_key_matches(("per_class_accuracy", "*"), ("per_class_accuracy", 3))
    assert summary_key_matches(("sets", "**"), ("sets", "audit", "full", "eigenvalues", 0))
    assert not summary_key_matches(("robust_accuracy", "*"), ("robust_accuracy",))
    assert not summary_key_matches(("robust_accuracy", "*"), ("robust_accuracy", "0.1", "median"))
    assert not summary_key_matches(("lambda_1",), ("lambda_max",))


def test_the_demo_audits_summaries_are_fully_declared(demo_run: Path) -> None:
    from robaudit.probes.base import undeclared_summary_keys

    results = json.loads((demo_run / "results.json").read_text())
    assert len(results["probes"]) >= 8
    for name, entry in results["probes"].items():
        assert undeclared_summary_keys(REGISTRY.get(name), entry["summary"]) == [], name


def test_check_copes_with_a_broken_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that cannot load leaves the rules unchecked here; the evaluation still reports them."""
    import robaudit.probes.registry as registry_module

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no registry")

    monkeypatch.setattr(registry_module, "ProbeRegistry", broken)
    check_declared_paths(parse_rules({"rule": [{"metric": ["probes", "clean", "summary", "x"], "threshold": 1}]}))
