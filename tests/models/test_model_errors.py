"""Every bad input gives one ModelLoadError line saying what is wrong and how to fix it."""
from __future__ import annotations

import pytest
import torch

from model_helpers import assert_same_weights, seeded_tiny
from robaudit.data.audit_data import DatasetInfo
from robaudit.errors import ModelLoadError
from robaudit.models import ModelRequest, load_model


def _one_line(excinfo: pytest.ExceptionInfo[ModelLoadError]) -> str:
    line = excinfo.value.one_line()
    assert "\n" not in line and excinfo.value.fix
    return line


def test_missing_file(tmp_path, plain_info):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(tmp_path / "nope.pt")), plain_info)
    assert "nope.pt" in err.value.message and "does not exist" in err.value.message
    _one_line(err)


def test_directory_source(tmp_path, plain_info):
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(ModelRequest(source=str(tmp_path)), plain_info)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_checkpoint(tmp_path, tiny_arch, tiny_module, plain_info, legacy):
    full = tmp_path / "full.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), full, _use_new_zipfile_serialization=not legacy)
    cut = tmp_path / "cut.pt"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(cut), arch=f"{tiny_arch}:TinyNet"), plain_info)
    assert "cut.pt" in err.value.message and "truncated" in err.value.message
    assert len(_one_line(err)) < 500


def test_truncated_safetensors(tmp_path, tiny_arch, tiny_module, plain_info):
    from safetensors.torch import save_file

    full = tmp_path / "full.safetensors"
    save_file(seeded_tiny(tiny_module).state_dict(), str(full))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[:-40])
    with pytest.raises(ModelLoadError, match="safetensors file: it looks truncated"):
        load_model(ModelRequest(source=str(cut), arch=f"{tiny_arch}:TinyNet"), plain_info)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint\n"])
def test_empty_or_garbage_file(tmp_path, tiny_arch, plain_info, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="empty|truncated, corrupt"):
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("timm:resnet1", "'resnet18'"), ("torchvision:resnet1", "'resnet18'"), ("timm:vit_tiny_patch16", "vit_tiny_patch16_224")],
)
def test_unknown_builder_name_suggests(plain_info, source, expected):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=source), plain_info)
    assert "did you mean" in err.value.message and expected in err.value.message
    _one_line(err)


def test_non_classification_torchvision_model(plain_info):
    with pytest.raises(ModelLoadError, match="not an image classifier"):
        load_model(ModelRequest(source="torchvision:fasterrcnn_resnet50_fpn"), plain_info)


def test_unknown_source_prefix(plain_info):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source="torchvison:resnet18"), plain_info)
    assert "unknown prefix 'torchvison:'" in err.value.message and "'torchvision'" in err.value.message


def test_hub_names_are_not_fetched(plain_info):
    with pytest.raises(ModelLoadError, match="not a timm model"):
        load_model(ModelRequest(source="timm:hf-hub:timm/resnet18.a1_in1k"), plain_info)
    with pytest.raises(ModelLoadError, match="download"):
        load_model(ModelRequest(source="timm:resnet18", arch_kwargs={"pretrained": True}), plain_info)
    with pytest.raises(ModelLoadError, match="download"):
        load_model(ModelRequest(source="torchvision:resnet18", arch_kwargs={"weights": "DEFAULT"}), plain_info)


def test_arch_given_as_source(tiny_arch, plain_info):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source="my_models.py:Net"), plain_info)
    assert "names an architecture, not weights" in err.value.message and "--arch" in err.value.fix


def test_bad_builder_kwargs_name_the_cause(plain_info):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source="timm:resnet18", arch_kwargs={"no_such_kwarg": 1}), plain_info)
    assert "no_such_kwarg" in err.value.message and "TypeError" in err.value.message


def test_class_count_mismatch_from_checkpoint(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "hundred.pt"
    torch.save(seeded_tiny(tiny_module, num_classes=100).state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)
    msg = err.value.message
    assert "outputs 100 classes" in msg and "fc.weight" in msg and "has 10 classes" in msg and "'tensors'" in msg
    assert "100 classes" in err.value.fix


def test_class_count_mismatch_from_arch_kwargs(plain_info):
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source="torchvision:resnet18", arch_kwargs={"num_classes": 5}), plain_info)
    assert "outputs 5 classes" in err.value.message and "num_classes in --arch-kwargs" in err.value.message
    assert "drop num_classes" in err.value.fix


def test_class_count_mismatch_fixed_arch(tmp_path, tiny_arch, tiny_module):
    torch.manual_seed(0)
    path = tmp_path / "fixed.pt"
    torch.save(tiny_module.FixedNet().state_dict(), path)
    seven = DatasetInfo(name="imagefolder", num_classes=7, channels=3, image_size=(32, 32))
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:FixedNet"), seven)
    assert "outputs 10 classes" in err.value.message and "has 7 classes" in err.value.message


def test_missing_and_unexpected_keys_listed_and_truncated(tmp_path, tiny_arch, tiny_module, plain_info):
    state = dict(seeded_tiny(tiny_module).state_dict())
    del state["fc.bias"]
    for i in range(9):
        state[f"extra.layer{i}.weight"] = torch.zeros(1)
    path = tmp_path / "messy.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)
    msg = err.value.message
    assert "1 missing (fc.bias)" in msg
    assert "9 unexpected" in msg and "extra.layer0.weight" in msg and "… and 4 more" in msg
    assert "extra.layer8.weight" not in msg
    assert "--non-strict" in err.value.fix


def test_wrong_shapes_listed(tmp_path, tiny_arch, tiny_module, plain_info):
    path = tmp_path / "wide.pt"
    torch.save(seeded_tiny(tiny_module, width=6).state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet"), plain_info)
    assert "conv1.weight: checkpoint [6, 3, 3, 3] vs model [4, 3, 3, 3]" in err.value.message
    assert "wrong-shaped" in err.value.message


def test_non_strict_loads_matching_keys_and_records_the_rest(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    state = dict(ref.state_dict())
    del state["fc.bias"]
    state["conv1.weight"] = torch.zeros(4, 3, 5, 5)
    state["stray.weight"] = torch.ones(2)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", non_strict=True), plain_info)
    report = model.provenance.load_report
    assert report.strict is False
    assert report.missing_keys == ["fc.bias"]
    assert report.unexpected_keys == ["stray.weight"]
    assert report.mismatched_shapes == ["conv1.weight: checkpoint [4, 3, 5, 5] vs model [4, 3, 3, 3]"]
    assert any("non-strict" in w and "1 missing, 1 unexpected and 1 wrong-shaped" in w for w in report.warnings)
    loaded = {k: v for k, v in ref.state_dict().items() if k not in ("fc.bias", "conv1.weight")}
    assert_same_weights(model.net, loaded)
    assert not torch.equal(model.net.state_dict()["conv1.weight"], torch.zeros(4, 3, 3, 3))


def test_non_strict_still_refuses_a_checkpoint_with_nothing_in_common(tmp_path, tiny_arch, plain_info):
    path = tmp_path / "other.pt"
    torch.save({"encoder.w": torch.zeros(3)}, path)
    with pytest.raises(ModelLoadError, match="no key of checkpoint"):
        load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", non_strict=True), plain_info)


def test_cifar_resnet_stem_is_diagnosed(tmp_path, tiny_arch, plain_info):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    path = tmp_path / "cifar_resnet18.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch="torchvision:resnet18"), plain_info)
    msg = err.value.message
    assert "conv1.weight: checkpoint [64, 3, 3, 3] vs model [64, 3, 7, 7]" in msg
    assert "CIFAR-style ResNet" in msg and "max-pool" in msg
    assert "--arch my_models.py:ResNet18" in err.value.fix


def test_bad_mean_std_requests(tiny_arch, plain_info):
    with pytest.raises(ModelLoadError, match="--mean was given without --std"):
        load_model(ModelRequest(source="torchvision:resnet18", mean=(0.5,)), plain_info)
    with pytest.raises(ModelLoadError, match="do not fit the model's 3 input channel"):
        load_model(ModelRequest(source="torchvision:resnet18", mean=(0.5, 0.5), std=(0.2, 0.2)), plain_info)
    with pytest.raises(ModelLoadError, match="value <= 0"):
        load_model(ModelRequest(source="torchvision:resnet18", mean=(0.5,), std=(0.0,)), plain_info)
    with pytest.raises(ModelLoadError, match="0-255"):
        load_model(ModelRequest(source="torchvision:resnet18", mean=(125.3,), std=(63.0,)), plain_info)


def test_bad_device(plain_info):
    with pytest.raises(ModelLoadError, match="not a torch device"):
        load_model(ModelRequest(source="torchvision:resnet18", device="gpu0"), plain_info)
