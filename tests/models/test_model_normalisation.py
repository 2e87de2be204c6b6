"""Normalisation precedence (cli > checkpoint > arch defaults > dataset > none) and data configs."""
from __future__ import annotations

import json

import pytest
import torch

from model_helpers import seeded_tiny
from robaudit.data.audit_data import DatasetInfo
from robaudit.models import ModelRequest, load_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.fixture
def wrapped_with_stats(tmp_path, tiny_module):
    """A wrapped checkpoint carrying mean/std metadata."""
    path = tmp_path / "stats.pth"
    torch.save({"state_dict": seeded_tiny(tiny_module).state_dict(), "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1]}, path)
    return path


def test_cli_beats_checkpoint(wrapped_with_stats, tiny_arch, cifar_info):
    model = load_model(
        ModelRequest(source=str(wrapped_with_stats), arch=f"{tiny_arch}:TinyNet", mean=(0.5,), std=(0.25,)), cifar_info
    )
    norm = model.provenance.normalisation
    assert norm.source == "cli" and norm.mean == (0.5, 0.5, 0.5) and norm.std == (0.25, 0.25, 0.25)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.normalise(x), (x - 0.5) / 0.25)


def test_checkpoint_beats_dataset(wrapped_with_stats, tiny_arch, cifar_info):
    model = load_model(ModelRequest(source=str(wrapped_with_stats), arch=f"{tiny_arch}:TinyNet"), cifar_info)
    norm = model.provenance.normalisation
    assert norm.source == "checkpoint" and norm.mean == (0.1, 0.2, 0.3) and norm.std == (0.3, 0.2, 0.1)
    assert torch.equal(model.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_checkpoint_beats_timm_pretrained_cfg(tmp_path, cifar_info):
    import timm

    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, **kwargs)
    path = tmp_path / "vit.safetensors"
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(path),
        metadata={"arch": "timm:vit_tiny_patch16_224", "mean": json.dumps([0.25]), "std": json.dumps([0.5])},
    )
    model = load_model(ModelRequest(source=str(path), arch_kwargs=kwargs), cifar_info)
    norm = model.provenance.normalisation
    assert norm.source == "checkpoint" and norm.mean == (0.25,) * 3 and norm.std == (0.5,) * 3


def test_timm_pretrained_cfg_beats_dataset(cifar_info):
    model = load_model(ModelRequest(source="timm:resnet18"), cifar_info)
    norm = model.provenance.normalisation
    assert norm.source == "timm_pretrained_cfg" and norm.mean == IMAGENET_MEAN and norm.std == IMAGENET_STD
    assert model.data_config.interpolation == "bicubic"
    assert model.data_config.input_size == (3, 224, 224) and model.data_config.crop_pct == pytest.approx(0.95)


def test_timm_vit_data_config_follows_img_size(cifar_info):
    kwargs = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
    model = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=kwargs), cifar_info)
    assert model.provenance.normalisation.mean == (0.5, 0.5, 0.5)
    assert model.data_config.input_size == (3, 32, 32)
    assert model.data_config.crop_pct == pytest.approx(0.9)


def test_torchvision_weights_beat_dataset(cifar_info):
    model = load_model(ModelRequest(source="torchvision:resnet18"), cifar_info)
    norm = model.provenance.normalisation
    assert norm.source == "torchvision_weights" and norm.mean == IMAGENET_MEAN and norm.std == IMAGENET_STD
    cfg = model.data_config
    assert cfg.input_size == (3, 224, 224) and cfg.crop_pct == pytest.approx(224 / 256)
    assert cfg.interpolation == "bilinear"


def test_dataset_normalisation_for_custom_arch(tmp_path, tiny_arch, tiny_module, cifar_info):
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), cifar_info)
    norm = model.provenance.normalisation
    assert norm.source == "dataset" and norm.mean == cifar_info.mean and norm.std == cifar_info.std
    assert model.data_config.input_size == (3, 32, 32)


def test_no_normalisation_anywhere(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)
    norm = model.provenance.normalisation
    assert norm.source == "none" and norm.mean == (0.0,) * 3 and norm.std == (1.0,) * 3
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.normalise(x), x)


def test_one_channel_dataset_stats_broadcast_to_three_channels(tmp_path, tiny_arch, tiny_module):
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    info = DatasetInfo(name="mnist", num_classes=10, channels=1, image_size=(28, 28), mean=(0.1307,), std=(0.3081,))
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), info)
    assert model.provenance.normalisation.mean == (0.1307,) * 3
    assert model.mean.shape == (1, 3, 1, 1)


def test_arch_default_that_does_not_fit_is_skipped_with_warning(cifar_info):
    # timm's pretrained_cfg keeps 3-channel ImageNet stats for a 1-channel build.
    gray = DatasetInfo(name="mnist", num_classes=10, channels=1, image_size=(28, 28), mean=(0.1307,), std=(0.3081,))
    model = load_model(ModelRequest(source="timm:resnet18", arch_kwargs={"in_chans": 1}), gray)
    norm = model.provenance.normalisation
    assert model.in_channels == 1
    assert norm.source == "dataset" and norm.mean == (0.1307,)
    assert any("timm pretrained_cfg" in w and "skipped" in w for w in model.provenance.load_report.warnings)
    assert model.data_config.input_size == (1, 224, 224)
