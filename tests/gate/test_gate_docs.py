"""docs/ci-gate.md stays true: its rules files parse, and its workflow and hooks call real options."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from demo import REPO
from robaudit.cli.main import cli
from robaudit.gate import parse_rules

DOC = (REPO / "docs" / "ci-gate.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


@pytest.mark.parametrize("text", _blocks("toml"), ids=lambda t: t.splitlines()[0][:40])
def test_every_rules_example_parses(text: str) -> None:
    import tomllib

    rules = parse_rules(tomllib.loads(text), base_dir=Path("robustness"))
    assert rules.rules


def _parse_robaudit_command(command: str) -> click.Context:
    args = shlex.split(command.replace("\\\n", " "))
    args = args[args.index(next(a for a in args if a.endswith("robaudit"))) + 1:]
    parent = cli.make_context("robaudit", list(args), resilient_parsing=False)
    sub = cli.get_command(parent, args[0])
    assert sub is not None, args[0]
    return sub.make_context(args[0], args[1:], parent=parent)  # raises on an unknown option or bad value


def test_github_workflow_is_complete_and_calls_real_options() -> None:
    workflow_text = next(b for b in _blocks("yaml") if "jobs:" in b)  # the first; trust-model docs test the other
    workflow = yaml.safe_load(workflow_text)
    steps = workflow["jobs"]["gate"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert {"actions/checkout", "actions/cache", "actions/upload-artifact"} <= set(uses)
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache") and s["with"]["path"] == ".venv")
    assert "hashFiles" in cache["with"]["key"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "audit/report.html" in upload["with"]["path"]
    audit = next(s for s in steps if "robaudit run" in s.get("run", ""))
    ctx = _parse_robaudit_command(audit["run"])
    assert ctx.params["gate_rules"] == Path("robustness/gate.toml")
    assert ctx.params["out"] == Path("audit")


def test_local_hooks_call_real_options() -> None:
    (precommit,) = [b for b in _blocks("yaml") if "repos:" in b]
    hook = yaml.safe_load(precommit)["repos"][0]["hooks"][0]
    assert _parse_robaudit_command(hook["entry"]).params["gate_rules"] == Path("robustness/gate.toml")
    (script,) = [b for b in _blocks("bash") if "pre-push" in DOC and "robaudit run" in b and "status" in b]
    command = script.split("\nstatus=")[0].split("\n", 1)[1]
    assert _parse_robaudit_command(command).params["gate_rules"] == Path("robustness/gate.toml")
