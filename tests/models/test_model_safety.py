"""Loading is safe by default: no checkpoint can run code unless the user opts in."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from model_helpers import assert_same_weights, save_torchscript, seeded_tiny
from robaudit.errors import ModelLoadError
from robaudit.models import ModelRequest, load_model


class _OpenFile:
    """Unpickling this calls open(path, "w"), creating the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _System:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.mark.parametrize(("payload", "global_name"), [(_OpenFile, "open"), (_System, "system")])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, tiny_arch, tiny_module, plain_info, payload, global_name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": seeded_tiny(tiny_module).state_dict(), "extra": payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)
    assert not marker.exists()
    line = err.value.one_line()
    assert "refusing to unpickle" in line
    assert "arbitrary code" in line
    assert global_name in err.value.message  # names the offending global (io.open / posix.system)
    assert "--trust-checkpoint" in err.value.fix


def _sequential(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    ).eval()


def test_pickled_module_refused_without_flag(tmp_path, plain_info):
    path = tmp_path / "whole_model.pt"
    torch.save(_sequential(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path)), plain_info)
    assert "pickled nn.Module" in err.value.message
    assert "torch.nn.modules" in err.value.message
    assert "--trust-checkpoint" in err.value.fix


def test_trusted_pickled_module_loads(tmp_path, plain_info):
    ref = _sequential()
    path = tmp_path / "whole_model.pt"
    torch.save(ref, path)
    model = load_model(ModelRequest(source=str(path), trust_checkpoint=True), plain_info)
    prov = model.provenance
    assert prov.load_report.format == "pickled_module"
    assert prov.arch_source == "pickled_module"
    assert prov.arch == "torch.nn.modules.container:Sequential"
    assert prov.trusted_pickle is True
    assert prov.num_classes == 10
    assert any("without weights_only" in w for w in prov.load_report.warnings)
    assert_same_weights(model.net, ref.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(model.normalise(x)))


def test_trusted_pickled_module_inside_wrapper(tmp_path, plain_info):
    ref = _sequential(seed=3)
    path = tmp_path / "wrapped_module.pt"
    torch.save({"model": ref, "epoch": 2}, path)
    model = load_model(ModelRequest(source=str(path), trust_checkpoint=True), plain_info)
    assert model.provenance.load_report.format == "pickled_module"
    assert model.provenance.load_report.weights_key == "model"
    assert_same_weights(model.net, ref.state_dict())


def test_trust_flag_does_not_unpickle_plain_state_dicts_unsafely(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "weights.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", trust_checkpoint=True), plain_info)
    assert not any("without weights_only" in w for w in model.provenance.load_report.warnings)


@pytest.mark.parametrize("name", ["scripted.pt", "scripted.safetensors", "scripted.bin", "scripted"])
def test_torchscript_needs_trust_whatever_its_name(tmp_path, tiny_module, plain_info, name):
    path = tmp_path / name
    save_torchscript(seeded_tiny(tiny_module), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path)), plain_info)
    assert "TorchScript archive contains code that runs when it is loaded" in err.value.message
    assert "--trust-checkpoint" in err.value.fix
    model = load_model(ModelRequest(source=str(path), trust_checkpoint=True), plain_info)
    assert model.provenance.load_report.format == "torchscript"
    assert model.provenance.trusted_pickle is True


def test_torch_save_archives_are_not_mistaken_for_torchscript(tmp_path, tiny_module):
    from robaudit.models.checkpoint import is_torchscript_archive

    plain, scripted = tmp_path / "code.pt", tmp_path / "s.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), plain)  # archive folder named "code/"
    save_torchscript(seeded_tiny(tiny_module), scripted)
    assert (is_torchscript_archive(plain), is_torchscript_archive(scripted)) == (False, True)


def test_checkpoint_metadata_cannot_choose_a_file_to_import(tmp_path, tiny_module, plain_info):
    marker = tmp_path / "imported"
    evil = tmp_path / "evil_arch.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\nclass Net:\n    pass\n")
    for arch in (f"{evil}:Net", "evil_arch.py:Net", "os.path:join"):
        path = tmp_path / "ckpt.pt"
        torch.save({"arch": arch, "state_dict": seeded_tiny(tiny_module).state_dict()}, path)
        with pytest.raises(ModelLoadError) as err:
            load_model(ModelRequest(source=str(path)), plain_info)
        assert "never imports a file or module chosen by a checkpoint" in err.value.message
        assert f"--arch {arch}" in err.value.fix
    assert not marker.exists()


def test_safetensors_metadata_cannot_choose_a_module(tmp_path, tiny_module, plain_info):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file(seeded_tiny(tiny_module).state_dict(), str(path), metadata={"arch": "subprocess:Popen"})
    with pytest.raises(ModelLoadError, match="not a timm or torchvision model name"):
        load_model(ModelRequest(source=str(path)), plain_info)
