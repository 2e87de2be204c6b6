"""``module.`` / ``_orig_mod.`` prefixes are removed only when the model's own keys do not carry them.

A network kept as ``self.module`` (a DataParallel-style wrapper in released research code)
saves ``module.…`` keys and must load its own checkpoint; a real DataParallel or
``torch.compile`` checkpoint of the plain network must load too, to the same weights.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from model_helpers import assert_same_weights
from robaudit.cli.main import main
from robaudit.models import ModelRequest, load_model

ARCH_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class Inner(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


    class Wrapper(nn.Module):
        """Keeps the network as ``self.module``: its own keys start with ``module.``."""

        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.module = Inner(num_classes)

        def forward(self, x):
            return self.module(x)
    '''
)


@pytest.fixture
def arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "wrapped_models.py"
    path.write_text(ARCH_SOURCE)
    return path


def _inner_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    net = torch.nn.Module()
    net.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    net.bn = torch.nn.BatchNorm2d(4)
    net.fc = torch.nn.Linear(4, 10)
    for p in net.bn.parameters():
        torch.nn.init.normal_(p)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _npz(tmp_path: Path) -> Path:
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((12, 3, 8, 8), dtype=np.float32), y=np.arange(12) % 10)
    return path


def test_wrapper_with_module_keys_loads_its_own_checkpoint_through_the_cli(tmp_path, arch_file, capsys):
    state = {f"module.{k}": v for k, v in _inner_state().items()}  # exactly Wrapper().state_dict()'s keys
    ckpt = tmp_path / "wrapped.pt"
    torch.save(state, ckpt)
    out = tmp_path / "audit"
    code = main(["run", str(ckpt), "--arch", f"{arch_file}:Wrapper", "--dataset", str(_npz(tmp_path)),
                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--probes", "clean", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    report = json.loads((out / "results.json").read_text())["model"]["load_report"]
    assert report["stripped_prefixes"] == [] and report["missing_keys"] == [] and report["unexpected_keys"] == []


@pytest.mark.parametrize("prefixes", [["module."], ["_orig_mod."], ["_orig_mod.", "module."]])
def test_both_spellings_load_the_same_weights(tmp_path, arch_file, prefixes):
    inner = _inner_state()
    # a DataParallel / torch.compile checkpoint of the plain network: the prefixes are the wrappers'
    wrapped = tmp_path / "ddp.pt"
    torch.save({"".join(prefixes) + k: v for k, v in inner.items()}, wrapped)
    plain = load_model(ModelRequest(source=str(wrapped), arch=f"{arch_file}:Inner"), _info())
    assert plain.provenance.load_report.stripped_prefixes == prefixes
    assert_same_weights(plain.net, inner)
    # the same weights saved by the Wrapper architecture itself: ``module.`` is its own
    own = tmp_path / "own.pt"
    torch.save({f"module.{k}": v for k, v in inner.items()}, own)
    wrapper = load_model(ModelRequest(source=str(own), arch=f"{arch_file}:Wrapper"), _info())
    assert wrapper.provenance.load_report.stripped_prefixes == []
    assert_same_weights(wrapper.net.module, inner)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(plain(x), wrapper(x))


def _info():
    from robaudit.data.audit_data import DatasetInfo

    return DatasetInfo(name="tensors", num_classes=10, channels=3, image_size=(8, 8))
