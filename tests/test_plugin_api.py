"""The public plugin API: plugins import only ``robaudit.plugin`` (and top-level ``robaudit`` names),
``make_test_context`` builds the context the engine would, and the examples of docs/writing-a-probe.md run."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest
import torch
from torch import nn

import robaudit
import robaudit.plugin
from demo import REPO
from robaudit.plugin import AuditModel, make_test_context

PLUGIN_SOURCES = sorted(p for p in (REPO / "plugins").glob("*/**/*.py") if ".venv" not in p.parts)
ALLOWED_TOP_LEVEL = {"plugin", *robaudit.__all__}


def internal_imports(source: str) -> list[str]:
    """Every ``robaudit.<module>`` that ``source`` imports, other than ``robaudit.plugin`` (ast-based)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] if node.module != "robaudit" else \
                [f"robaudit.{alias.name}" for alias in node.names if alias.name not in ALLOWED_TOP_LEVEL]
        else:
            continue
        found += [m for m in modules if m.startswith("robaudit.") and m.split(".")[1] != "plugin"]
    return found


def test_the_scan_sees_every_spelling_of_an_internal_import() -> None:
    source = ("import robaudit.probes.base\nfrom robaudit.models.audit_model import AuditModel\n"
              "from robaudit import errors\nfrom robaudit import audit, plugin\nfrom robaudit.plugin import Probe\n"
              "def f():\n    from robaudit.report.figures import svg\n")
    assert internal_imports(source) == ["robaudit.probes.base", "robaudit.models.audit_model", "robaudit.errors",
                                        "robaudit.report.figures"]


def test_plugins_import_only_the_public_api() -> None:
    assert len(PLUGIN_SOURCES) >= 10 and any("tests" in p.parts for p in PLUGIN_SOURCES)
    offenders = {str(p.relative_to(REPO)): internal_imports(p.read_text(encoding="utf-8")) for p in PLUGIN_SOURCES}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_exported_name_exists() -> None:
    assert [n for n in robaudit.plugin.__all__ if not hasattr(robaudit.plugin, n)] == []
    assert len(set(robaudit.plugin.__all__)) == len(robaudit.plugin.__all__)


def test_make_test_context_wraps_a_plain_network_like_the_engine() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x = torch.rand(9, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(9) % 4
    ctx = make_test_context(net, x, y, batch_size=4, seed=5)
    assert isinstance(ctx.model, AuditModel) and not ctx.model.training
    assert ctx.model.num_classes == 4 and ctx.model.in_channels == 3
    assert ctx.data.ids == [f"test:{i}" for i in range(9)] and ctx.dataset == "tensors" and ctx.previous == {}
    assert (ctx.seed, ctx.batch_size, ctx.device) == (5, 4, torch.device("cpu"))
    assert torch.equal(ctx.generator.get_state(), torch.Generator().manual_seed(5).get_state())
    with torch.no_grad():
        torch.testing.assert_close(ctx.clean_logits(), net(x))  # identity normalisation, 3 batches
    batches = list(ctx.data.batches(ctx.batch_size))
    assert [len(b[2]) for b in batches] == [4, 4, 1]


def test_make_test_context_reuses_audit_models_and_data() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    first = make_test_context(net, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), dataset="digits")
    again = make_test_context(first.model, first.data, previous={"clean": None}, seed=1)
    assert again.model is first.model and again.data is first.data
    assert first.dataset == "digits" and again.dataset == "tensors" and set(again.previous) == {"clean"}
    with pytest.raises(TypeError, match="not both"):
        make_test_context(net, first.data, first.data.y)
    with pytest.raises(TypeError, match="labels y"):
        make_test_context(net, first.data.x)


# ---- docs/writing-a-probe.md ----

GUIDE = (REPO / "docs" / "writing-a-probe.md").read_text(encoding="utf-8")


def _runnable_examples() -> list[str]:
    """The guide's complete Python examples: the blocks that start with their imports."""
    return [b for b in re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
            if b.startswith(("from ", "import "))]


def test_the_guide_imports_only_the_public_api() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    assert blocks and all(internal_imports(b) == [] for b in blocks if "..." not in b)
    assert "robaudit.plugin" in GUIDE


def test_the_guides_examples_run() -> None:
    examples = _runnable_examples()
    assert len(examples) >= 2
    namespace: dict = {}
    for code in examples:
        exec(compile(code, "docs/writing-a-probe.md", "exec"), namespace)  # noqa: S102 - our own docs
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests
    for test in tests:
        test()


def test_the_guides_example_probe_against_its_oracle() -> None:
    namespace: dict = {}
    exec(compile(_runnable_examples()[0], "docs/writing-a-probe.md", "exec"), namespace)  # noqa: S102
    probe_cls = namespace["TopTwoMargin"]
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.5, 0.2], [1.0, 1.0, -2.0], [0.0, 0.0, 4.0]])

    class Table(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return logits[(x[:, 0, 0, 0] * 10).round().long()]  # sample i is the pixel i/10

    ctx = make_test_context(Table(), torch.arange(4.0).view(4, 1, 1, 1) / 10, torch.zeros(4, dtype=torch.long))
    result = probe_cls(probe_cls.Config(bound=1.0)).run(ctx)
    np.testing.assert_allclose(result.per_sample["margin"], [2.0, 0.3, 0.0, 4.0], rtol=1e-6)
    assert result.summary["small_margin_fraction"].value == pytest.approx(0.5)
