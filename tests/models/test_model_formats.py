"""Every checkpoint format, written for real in tmp_path and loaded through load_model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_helpers import assert_same_weights, save_torchscript, seeded_tiny, sha256_of
from robaudit.errors import ModelLoadError
from robaudit.models import AuditModel, ModelRequest, load_model


def _request(path: Path, tiny_arch: Path, **kwargs) -> ModelRequest:
    return ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", **kwargs)


def _check_logits(model: AuditModel, reference: torch.nn.Module) -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(model.normalise(x))
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_plain_state_dict(tmp_path, tiny_arch, tiny_module, plain_info, suffix):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / f"weights{suffix}"
    torch.save(ref.state_dict(), path)
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    _check_logits(model, ref)
    prov = model.provenance
    assert prov.load_report.format == "state_dict"
    assert prov.load_report.weights_key is None
    assert prov.checkpoint_sha256 == sha256_of(path)
    assert prov.checkpoint_bytes == path.stat().st_size
    assert prov.checkpoint_path == str(path.resolve())
    assert prov.arch == f"{tiny_arch}:TinyNet" and prov.arch_source == "cli"
    assert not model.training and not model.net.training


def test_legacy_non_zip_torch_save(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "legacy.pt"
    torch.save(ref.state_dict(), path, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK")
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_wrapped_state_dict(tmp_path, tiny_arch, tiny_module, plain_info, key):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "ckpt.pth"
    torch.save({key: ref.state_dict(), "epoch": 7, "best_acc": 0.9, "optimizer": {"lr": 0.1}}, path)
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert model.provenance.load_report.format == "wrapped_state_dict"
    assert model.provenance.load_report.weights_key == key


def test_timm_style_checkpoint_with_argparse_namespace_needs_no_trust(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "checkpoint-12.pth.tar"
    torch.save({"epoch": 12, "arch": "tiny", "state_dict": ref.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert model.provenance.load_report.warnings == []


@pytest.mark.parametrize(
    ("prefixes", "wrap"),
    [(["module."], False), (["_orig_mod."], True), (["_orig_mod.", "module."], False)],
)
def test_prefixes_are_stripped_and_recorded(tmp_path, tiny_arch, tiny_module, plain_info, prefixes, wrap):
    ref = seeded_tiny(tiny_module)
    joined = "".join(prefixes)
    state = {joined + k: v for k, v in ref.state_dict().items()}
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": state} if wrap else state, path)
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert model.provenance.load_report.stripped_prefixes == prefixes


def test_partial_prefix_is_not_stripped(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    state = dict(ref.state_dict())
    state["module.fc.weight"] = state.pop("fc.weight")
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(_request(path, tiny_arch), plain_info)
    assert "module.fc.weight" in err.value.one_line() and "fc.weight" in err.value.message


def _ema_checkpoint(tmp_path: Path, tiny_module) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    regular, ema = seeded_tiny(tiny_module, seed=0), seeded_tiny(tiny_module, seed=1)
    path = tmp_path / "ema.pth"
    torch.save({"state_dict": regular.state_dict(), "state_dict_ema": ema.state_dict()}, path)
    return path, regular, ema


def test_ema_selected_only_when_asked(tmp_path, tiny_arch, tiny_module, plain_info):
    path, regular, ema = _ema_checkpoint(tmp_path, tiny_module)
    with_ema = load_model(_request(path, tiny_arch, use_ema=True), plain_info)
    assert_same_weights(with_ema.net, ema.state_dict())
    assert with_ema.provenance.load_report.ema is True
    assert with_ema.provenance.load_report.weights_key == "state_dict_ema"

    without = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(without.net, regular.state_dict())
    report = without.provenance.load_report
    assert report.ema is False and report.weights_key == "state_dict"
    assert any("EMA weights" in w and "--use-ema" in w for w in report.warnings)


def test_ema_asked_but_absent(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "no_ema.pt"
    torch.save({"state_dict": seeded_tiny(tiny_module).state_dict()}, path)
    with pytest.raises(ModelLoadError, match="--use-ema") as err:
        load_model(_request(path, tiny_arch, use_ema=True), plain_info)
    assert "no EMA weights" in err.value.message and "state_dict_ema" in err.value.message
    plain = tmp_path / "plain.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), plain)
    with pytest.raises(ModelLoadError, match="no EMA weights"):
        load_model(_request(plain, tiny_arch, use_ema=True), plain_info)


def test_only_ema_weights_need_the_flag(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "only_ema.pt"
    torch.save({"state_dict_ema": seeded_tiny(tiny_module).state_dict()}, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(_request(path, tiny_arch), plain_info)
    assert "only EMA weights" in err.value.message and "--use-ema" in err.value.fix


def test_wrapper_without_weights_lists_its_keys(tmp_path, tiny_arch, plain_info):
    path = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "weights_v2": {"a": 1}}, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(_request(path, tiny_arch), plain_info)
    assert "epoch" in err.value.message and "weights_v2" in err.value.message


def test_safetensors_with_metadata(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "model.safetensors"
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()},
        str(path),
        metadata={"mean": json.dumps([0.1, 0.2, 0.3]), "std": json.dumps([0.4, 0.5, 0.6]), "format": "pt"},
    )
    model = load_model(_request(path, tiny_arch), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    _check_logits(model, ref)
    assert model.provenance.load_report.format == "safetensors"
    assert model.provenance.normalisation.mean == (0.1, 0.2, 0.3)
    assert model.provenance.normalisation.std == (0.4, 0.5, 0.6)
    assert model.provenance.normalisation.source == "checkpoint"
    assert model.provenance.checkpoint_sha256 == sha256_of(path)


def test_safetensors_detected_by_content_not_suffix(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "weights.bin"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = load_model(_request(path, tiny_arch), plain_info)
    assert model.provenance.load_report.format == "safetensors"
    assert_same_weights(model.net, ref.state_dict())


def test_safetensors_bad_metadata_json(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in seeded_tiny(tiny_module).state_dict().items()}, str(path),
              metadata={"mean": "0.5, 0.5"})
    with pytest.raises(ModelLoadError, match="not JSON"):
        load_model(_request(path, tiny_arch), plain_info)


def test_torchscript_archive(tmp_path, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "scripted.pt"
    save_torchscript(ref, path)
    model = load_model(ModelRequest(source=str(path), trust_checkpoint=True), plain_info)
    prov = model.provenance
    assert prov.load_report.format == "torchscript"
    assert prov.arch_source == "torchscript"
    assert prov.arch == "torchscript:TinyNet"
    assert prov.num_classes == 10 and prov.num_classes_source == "checkpoint"
    assert model.in_channels == 3
    assert_same_weights(model.net.scripted, ref.state_dict())
    _check_logits(model, ref)


def test_torchscript_ignores_arch_with_warning(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "scripted.pt"
    save_torchscript(ref, path)
    model = load_model(_request(path, tiny_arch, trust_checkpoint=True), plain_info)
    assert model.provenance.load_report.format == "torchscript"
    assert any("--arch" in w and "ignored" in w for w in model.provenance.load_report.warnings)

