"""docs/trust-model.md and its CI section in docs/ci-gate.md stay true: the pinned-configuration
workflow takes only the checkpoint from the pull request and calls real robaudit options."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from demo import REPO
from robaudit.cli.main import cli

DOCS = REPO / "docs"


def _pinned_workflow() -> dict:
    text = (DOCS / "ci-gate.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "pull_request_target" in b]
    return yaml.safe_load(block)


def test_pinned_workflow_reads_only_the_checkpoint_from_the_pull_request() -> None:
    workflow = _pinned_workflow()
    assert list(workflow[True]) == ["pull_request_target"]  # YAML 1.1 reads the key "on" as True
    assert workflow["permissions"] == {"contents": "read"}
    steps = workflow["jobs"]["gate"]["steps"]
    checkouts = {s["with"]["path"]: s["with"] for s in steps if s.get("uses", "").startswith("actions/checkout")}
    assert checkouts["trusted"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkouts["candidate"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert all(c["persist-credentials"] is False for c in checkouts.values())
    for step in steps:  # nothing from the head is installed or executed
        assert "candidate/" not in step.get("run", "").replace("../candidate/models/classifier.safetensors", "")

    audit = next(s for s in steps if "robaudit" in s.get("run", "") and " run" in s["run"])
    assert audit["working-directory"] == "trusted"
    args = shlex.split(audit["run"].replace("\\\n", " "))
    args = args[next(i for i, a in enumerate(args) if a.endswith("robaudit")) + 1:]
    assert args[:2] == ["--config", "robustness/robaudit.toml"] and args[2] == "run"
    cli.make_context("robaudit", args[:2] + ["probes"], resilient_parsing=False)  # --config is a group option
    run = cli.get_command(None, "run").make_context("run", args[3:])  # raises on an unknown option or bad value
    assert run.params["model"] == "../candidate/models/classifier.safetensors"
    assert run.params["arch"] == "models/net.py:Net" and run.params["trust_checkpoint"] is False
    assert run.params["gate_rules"] == Path("robustness/gate.toml")


def test_trust_model_page_is_linked_and_names_the_code_the_user_chose() -> None:
    page = (DOCS / "trust-model.md").read_text(encoding="utf-8")
    for needle in ("--arch path/to/file.py:Class", "imports code exactly as `--arch` does", "installed plugins",
                   "--trust-checkpoint", "TorchScript archives", "results files"):
        assert needle in page, needle
    assert "(docs/trust-model.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "(trust-model.md)" in (DOCS / "ci-gate.md").read_text(encoding="utf-8")
