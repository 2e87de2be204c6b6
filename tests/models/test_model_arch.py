"""Architectures: timm/torchvision names, custom files and modules, and inference from checkpoints."""
from __future__ import annotations

import textwrap
import uuid

import pytest
import torch
import torchvision

from model_helpers import assert_same_weights, seeded_tiny
from robaudit.data.audit_data import DatasetInfo
from robaudit.errors import ModelLoadError
from robaudit.models import ModelRequest, load_model

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def test_timm_source_with_arch_kwargs(plain_info):
    model = load_model(ModelRequest(source="timm:vit_tiny_patch16_224", arch_kwargs=TINY_VIT), plain_info)
    assert len(model.net.blocks) == 1 and model.net.embed_dim == 32
    assert model.num_classes == 10
    prov = model.provenance
    assert prov.arch == "timm:vit_tiny_patch16_224" and prov.arch_source == "source"
    assert prov.num_classes_source == "dataset" and prov.arch_kwargs == TINY_VIT
    assert prov.load_report.format == "none" and prov.checkpoint_sha256 is None
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert not model.training


def test_torchvision_source(plain_info):
    model = load_model(ModelRequest(source="torchvision:mobilenet_v3_small", arch_kwargs={"dropout": 0.0}), plain_info)
    assert isinstance(model.net, torchvision.models.MobileNetV3)
    assert model.net.classifier[-1].out_features == 10
    assert model.provenance.arch == "torchvision:mobilenet_v3_small"
    assert model.in_channels == 3


def test_source_and_conflicting_arch(plain_info):
    with pytest.raises(ModelLoadError, match="conflicts with model source"):
        load_model(ModelRequest(source="timm:resnet18", arch="torchvision:resnet18"), plain_info)


def test_custom_arch_from_file_with_kwargs(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module, width=6)
    path = tmp_path / "w.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", arch_kwargs={"width": 6}), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert type(model.net).__name__ == "TinyNet"
    assert model.provenance.num_classes_source == "checkpoint"


def test_custom_factory_function(tmp_path, tiny_arch, tiny_module, plain_info):
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "w.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:make_tiny"), plain_info)
    assert_same_weights(model.net, ref.state_dict())


def test_num_classes_not_passed_to_constructor_without_it(tmp_path, tiny_arch, tiny_module, plain_info):
    torch.manual_seed(0)
    ref = tiny_module.FixedNet()
    path = tmp_path / "fixed.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:FixedNet"), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert model.provenance.num_classes_source == "arch"


def test_custom_arch_from_module(tmp_path, tiny_arch, tiny_module, plain_info, monkeypatch):
    package = f"robaudit_test_pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "nets.py").write_text(tiny_arch.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = seeded_tiny(tiny_module)
    path = tmp_path / "w.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch=f"{package}.nets:TinyNet"), plain_info)
    assert_same_weights(model.net, ref.state_dict())
    assert type(model.net).__module__ == f"{package}.nets"
    assert model.provenance.arch == f"{package}.nets:TinyNet"


def test_custom_file_can_import_its_siblings(tmp_path, tiny_module, plain_info):
    (tmp_path / "sibling_blocks_xyz.py").write_text("from torch import nn\nWIDTH = 4\n")
    arch = tmp_path / "uses_sibling.py"
    arch.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from sibling_blocks_xyz import WIDTH

            class Net(nn.Module):
                def __init__(self, num_classes=10):
                    super().__init__()
                    self.conv1 = nn.Conv2d(3, WIDTH, 3)
                    self.fc = nn.Linear(WIDTH, num_classes)

                def forward(self, x):
                    return self.fc(self.conv1(x).mean(dim=(2, 3)))
            """
        )
    )
    torch.manual_seed(0)
    state = {"conv1.weight": torch.randn(4, 3, 3, 3), "conv1.bias": torch.randn(4), "fc.weight": torch.randn(10, 4),
             "fc.bias": torch.randn(10)}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    model = load_model(ModelRequest(source=str(path), arch=f"{arch}:Net"), plain_info)
    assert_same_weights(model.net, state)


@pytest.mark.parametrize(
    ("arch", "fragments"),
    [
        ("{dir}/no_such_file.py:Net", ["no_such_file.py", "does not exist"]),
        ("{file}:TinyNett", ["no class or function 'TinyNett'", "did you mean 'TinyNet'"]),
        ("{file}:Broken", ["Broken", "ValueError: width must be even"]),
        ("no_such_package_abc.models:Net", ["cannot import module 'no_such_package_abc.models'", "ModuleNotFoundError"]),
        ("resnet18", ["no 'kind:' prefix", "timm:resnet18"]),
        ("{file}:not-a-name", ["not a Python class or function name"]),
    ],
)
def test_bad_custom_arch(tmp_path, tiny_arch, tiny_module, plain_info, arch, fragments):
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    arch = arch.format(dir=tmp_path, file=tiny_arch)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=arch), plain_info)
    line = err.value.one_line()
    for fragment in fragments:
        assert fragment in line
    assert "\n" not in line and err.value.fix


def test_arch_file_that_fails_to_import(tmp_path, tiny_module, plain_info):
    arch = tmp_path / "broken_import.py"
    arch.write_text("import torch\nraise RuntimeError('cuda toolkit missing')\n")
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch=f"{arch}:Net"), plain_info)
    assert "importing architecture file" in err.value.message
    assert "RuntimeError: cuda toolkit missing" in err.value.message


def _tv_resnet18(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes).eval()


def test_arch_from_checkpoint_metadata(tmp_path, plain_info):
    ref = _tv_resnet18()
    path = tmp_path / "checkpoint_best.pth"
    torch.save({"arch": "torchvision:resnet18", "state_dict": ref.state_dict(), "epoch": 90}, path)
    model = load_model(ModelRequest(source=str(path)), plain_info)
    assert model.provenance.arch == "torchvision:resnet18"
    assert model.provenance.arch_source == "checkpoint_metadata"
    assert isinstance(model.net, torchvision.models.ResNet)
    assert_same_weights(model.net, ref.state_dict())


def test_arch_from_safetensors_metadata_bare_name(tmp_path, plain_info):
    from safetensors.torch import save_file

    ref = _tv_resnet18()
    path = tmp_path / "weights.safetensors"
    save_file(ref.state_dict(), str(path), metadata={"arch": "resnet18"})
    model = load_model(ModelRequest(source=str(path)), plain_info)
    # timm is tried first; its resnet18 uses torchvision's layer names, so it matches.
    assert model.provenance.arch == "timm:resnet18"
    assert model.provenance.arch_source == "checkpoint_metadata"
    assert_same_weights(model.net, ref.state_dict())


def test_arch_from_file_stem_falls_back_to_torchvision(tmp_path, plain_info):
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    path = tmp_path / "mobilenet_v3_small.pt"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path)), plain_info)
    assert model.provenance.arch == "torchvision:mobilenet_v3_small"
    assert model.provenance.arch_source == "file_stem"
    assert any("inferred from file name" in w for w in model.provenance.load_report.warnings)
    assert_same_weights(model.net, ref.state_dict())


def test_file_stem_in_both_libraries_picks_the_one_whose_keys_match(tmp_path, plain_info):
    torch.manual_seed(0)
    ref = torchvision.models.efficientnet_b0(num_classes=10).eval()
    path = tmp_path / "efficientnet_b0.pth"
    torch.save(ref.state_dict(), path)
    model = load_model(ModelRequest(source=str(path)), plain_info)
    assert model.provenance.arch == "torchvision:efficientnet_b0"
    warnings = model.provenance.load_report.warnings
    assert any("timm:efficientnet_b0 did not match" in w for w in warnings)
    assert_same_weights(model.net, ref.state_dict())


def test_arch_cannot_be_inferred(tmp_path, tiny_module, plain_info):
    path = tmp_path / "resnet18_cifar.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path)), plain_info)
    assert "cannot infer the architecture of 'resnet18_cifar.pt'" in err.value.message
    assert "--arch" in err.value.fix


def test_class_count_inferred_from_checkpoint(tmp_path):
    """A 7-class checkpoint on a 7-class dataset: the count comes from the classifier shape."""
    ref = _tv_resnet18(num_classes=7)
    path = tmp_path / "resnet18.pt"
    torch.save(ref.state_dict(), path)
    seven = DatasetInfo(name="imagefolder", num_classes=7, channels=3, image_size=None)
    model = load_model(ModelRequest(source=str(path), arch="torchvision:resnet18"), seven)
    assert model.num_classes == 7 and model.provenance.num_classes_source == "checkpoint"
    assert_same_weights(model.net, ref.state_dict())


def test_timm_class_count_rebuilt_from_checkpoint_classifier(tmp_path, plain_info):
    """The checkpoint's 1000-class head makes the loader rebuild, so the error names the real count."""
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000, **TINY_VIT)
    path = tmp_path / "vit.pt"
    torch.save({"arch": "timm:vit_tiny_patch16_224", "state_dict": net.state_dict()}, path)
    with pytest.raises(ModelLoadError) as err:
        load_model(ModelRequest(source=str(path), arch_kwargs=TINY_VIT), plain_info)
    assert "outputs 1000 classes" in err.value.message and "(head.weight)" in err.value.message
    assert "wrong-shaped" not in err.value.message


def test_single_channel_model(tmp_path, tiny_arch, tiny_module):
    ref = seeded_tiny(tiny_module, in_chans=1)
    path = tmp_path / "gray.pt"
    torch.save(ref.state_dict(), path)
    digits = DatasetInfo(name="digits", num_classes=10, channels=1, image_size=(8, 8), mean=(0.3054,), std=(0.3761,))
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", arch_kwargs={"in_chans": 1}), digits)
    assert model.in_channels == 1
    assert model.data_config.input_size == (1, 8, 8)
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_squeezenet_class_count_from_classifier_conv(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.squeezenet1_1(num_classes=7).eval()
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(ref.state_dict(), path)
    seven = DatasetInfo(name="imagefolder", num_classes=7, channels=3, image_size=(64, 64))
    model = load_model(ModelRequest(source=str(path)), seven)
    assert model.provenance.arch == "torchvision:squeezenet1_1" and model.provenance.arch_source == "file_stem"
    assert model.num_classes == 7 and model.provenance.num_classes_source == "checkpoint"
    assert_same_weights(model.net, ref.state_dict())


def test_model_is_moved_to_the_requested_device(tmp_path, tiny_arch, tiny_module, cifar_info):
    path = tmp_path / "w.pt"
    torch.save(seeded_tiny(tiny_module).state_dict(), path)
    # The meta device exists on every machine, so the move is observable without a GPU.
    model = load_model(ModelRequest(source=str(path), arch=f"{tiny_arch}:TinyNet", device="meta"), cifar_info)
    assert model.mean.device.type == "meta"
    assert all(p.device.type == "meta" for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize("source, kwargs", [("timm:resnet18", {"channels": [8, 16, 32, 64], "stem_width": 8}),
                                            ("torchvision:mobilenet_v3_small", {"dropout": 0.0})])
def test_a_randomly_initialised_source_is_the_same_network_in_every_run(plain_info, source, kwargs):
    """A builder source without weights is built from a fixed seed: the same weights whatever state
    torch's generator is in (another process, earlier draws), which is left as it was; its state-dict
    hash is recorded (resume compares it). Before, the weights followed the caller's generator, so two
    runs of `robaudit run timm:resnet18` audited different networks (λ1 2.8 in one process, 4.2 in
    the next) and recorded nothing that told them apart."""
    from robaudit.models.live import state_dict_sha256

    loaded = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        before = torch.random.get_rng_state()
        loaded.append(load_model(ModelRequest(source=source, arch_kwargs=kwargs), plain_info))
        assert torch.equal(torch.random.get_rng_state(), before)
    first, second = loaded
    assert_same_weights(first.net, second.net.state_dict())
    assert first.provenance.state_sha256 == state_dict_sha256(first.net) == second.provenance.state_sha256


def test_weights_from_a_file_are_identified_by_the_file_not_a_state_hash(tmp_path, plain_info):
    """A checkpoint's provenance is its file's sha256; the state hash stays for weights nothing else names."""
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    path = tmp_path / "m.pt"
    torch.save(net.state_dict(), path)
    model = load_model(ModelRequest(source=str(path), arch="torchvision:mobilenet_v3_small"), plain_info)
    assert model.provenance.checkpoint_sha256 is not None and model.provenance.state_sha256 is None


def test_building_a_network_seeds_only_the_cpu_generator(plain_info, monkeypatch):
    """The init seed goes to the CPU generator the network is built with; the caller's CUDA generators
    (seeded lazily by torch.manual_seed, even before CUDA starts) are not reset to it."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    load_model(ModelRequest(source="torchvision:mobilenet_v3_small", arch_kwargs={"dropout": 0.0}), plain_info)
    assert calls == []
