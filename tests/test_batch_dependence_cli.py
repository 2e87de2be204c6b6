"""The real CLI flags a model whose logits depend on its batch mates, and not the demo CNN."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import torch

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main

ARCH = textwrap.dedent(
    '''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class BatchStatNet(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            h = F.batch_norm(self.conv(x), None, None, training=True)  # statistics of the batch, not stored ones
            return self.fc(torch.relu(h).mean(dim=(2, 3)))
    '''
)


def _flags(out: Path) -> list[str]:
    return [f["id"] for f in json.loads((out / "results.json").read_text())["flags"]]


def test_batch_statistics_model_gets_the_flag(tmp_path: Path, capsys) -> None:
    arch = tmp_path / "batchstat.py"
    arch.write_text(ARCH)
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(ARCH, str(arch), "exec"), ns)  # noqa: S102 - the test's own architecture, for its state dict
    ckpt = tmp_path / "batchstat.pt"
    torch.save(ns["BatchStatNet"]().state_dict(), ckpt)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).random((12, 3, 8, 8), dtype=np.float32), y=np.arange(12) % 10)
    out = tmp_path / "audit"
    code = main(["run", str(ckpt), "--arch", f"{arch}:BatchStatNet", "--dataset", str(data), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25", "--probes", "clean", "--out", str(out), "-q"])
    capsys.readouterr()
    assert code == 0
    flags = json.loads((out / "results.json").read_text())["flags"]
    flag = next(f for f in flags if f["id"] == "batch_dependent_outputs")
    assert flag["severity"] == "warning" and "--batch-size" in flag["message"]


def test_demo_cnn_does_not_get_the_flag(tmp_path: Path, capsys) -> None:
    out = tmp_path / "audit"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--probes", "clean",
                 "--out", str(out), "-q"])
    capsys.readouterr()
    assert code == 0
    assert "batch_dependent_outputs" not in _flags(out)
    stats = json.loads((out / "results.json").read_text())["preflight"]["stats"]["batch_dependence"]
    assert stats["ran"] is True and stats["relative_gap"] < stats["tolerance"]
