"""Issue #15 (models): pretrained zoo weights from the Hugging Face Hub and torch hub caches, offline.

The caches are built in ``tmp_path`` exactly as huggingface_hub and torch.hub lay them out,
holding seeded weights; nothing touches the network. Each run goes through the real CLI
and timm's / torchvision's real loading code. The oracle is a direct
``timm.create_model(..., pretrained=True)`` (or the seeded network itself): labels are set
from its predictions so the audit's clean accuracy is known exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode

TIMM_NAME = "test_resnet.r160_in1k"
TIMM_REPO = f"timm/{TIMM_NAME}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
N, RIGHT = 8, 5  # audit samples, and how many are labelled with the oracle's prediction


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    _, err = capsys.readouterr()
    return code, err


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _put_in_hf_cache(cache: Path, repo: str, files: dict[str, bytes]) -> dict[str, str]:
    """Lay files out as huggingface_hub does: blobs/<sha256>, refs/main, snapshots/<commit>/NAME → blob."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        (root / "blobs").mkdir(exist_ok=True)
        (root / "blobs" / digest).write_bytes(content)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
        digests[name] = digest
    return digests


def _seeded_test_resnet() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(7)
    net = timm.create_model("test_resnet", num_classes=1000)
    with torch.no_grad():
        for module in net.modules():  # non-trivial BatchNorm statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def _safetensors_bytes(state: dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path.read_bytes()


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME/HF_HUB_CACHE in tmp_path and HF_HUB_OFFLINE=1 (also in the already-imported huggingface_hub)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _audit_set(tmp_path: Path, logits_of) -> tuple[Path, torch.Tensor]:
    """A 1,000-class tensor file whose first RIGHT labels are the oracle's predictions, the rest wrong."""
    torch.manual_seed(3)
    x = torch.rand(N, 3, 32, 32)
    with torch.no_grad():
        pred = logits_of(x).argmax(dim=1)
    y = pred.clone()
    y[RIGHT:] = (pred[RIGHT:] + 1) % 1000
    path = tmp_path / "imagenet_like.npz"
    np.savez(path, x=x.numpy(), y=y.numpy(), num_classes=np.array(1000))
    return path, x


def _run(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", model, *extra, "--dataset", str(data), "--probes", "clean", "--no-report", "-q",
            "--threads", "1", "--out", str(out)]


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_timm_pretrained_loads_the_cached_weights_through_timm(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    digests = _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(state, tmp_path)})
    direct = timm.create_model(TIMM_NAME, pretrained=True, cache_dir=str(hf_env)).eval()
    for key, value in state.items():  # timm's own loader read the seeded file
        assert torch.equal(direct.state_dict()[key], value), key
    data, _ = _audit_set(tmp_path, lambda x: direct((x - 0.5) / 0.5))

    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    assert model["weights"]["repo_id"] == TIMM_REPO and model["weights"]["revision"] == COMMIT
    assert model["weights"]["sha256"] == digests["model.safetensors"]
    assert model["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "source": f"timm_pretrained:{TIMM_NAME}",
                                      "explicit": True}
    assert model["num_classes"] == 1000 and model["num_classes_source"] == "pretrained_weights"
    assert model["data_config"]["input_size"] == [3, 160, 160] and model["data_config"]["crop_pct"] == 0.95
    assert results["preflight"]["stats"]["normalisation_check"]["ran"] is False


def test_timm_pretrained_without_the_cache_says_where_it_looked(tmp_path, hf_env, capsys) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE
    assert "not in the Hugging Face cache" in line and str(hf_env) in line and "--download" in line, line
    assert "huggingface-cli download timm/test_resnet.r160_in1k" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained", "--download"), capsys)
    assert code == ExitCode.USAGE and "HF_HUB_OFFLINE" in _error_line(err)
    assert not (tmp_path / "out").exists()


def test_a_pickle_only_cache_needs_trust(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    pickled = tmp_path / "pytorch_model.bin"
    torch.save(state, pickled)
    digests = _put_in_hf_cache(hf_env, TIMM_REPO, {"pytorch_model.bin": pickled.read_bytes()})
    net = timm.create_model("test_resnet", num_classes=1000).eval()
    net.load_state_dict(state)
    data, _ = _audit_set(tmp_path, lambda x: net((x - 0.5) / 0.5))

    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "refused", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "pytorch_model.bin" in line and "--trust-checkpoint" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "trusted", "--pretrained", "--trust-checkpoint"),
                     capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "trusted")
    assert results["model"]["weights"]["filename"] == "pytorch_model.bin"
    assert results["model"]["weights"]["sha256"] == digests["pytorch_model.bin"]
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)


def test_hf_hub_repo_with_a_timm_config(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    config = {"architecture": "test_resnet", "num_classes": 1000,
              "pretrained_cfg": {"input_size": [3, 96, 96], "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.25, 0.3],
                                 "crop_pct": 0.9, "interpolation": "bicubic", "classifier": "fc", "num_classes": 1000}}
    repo = "acme/tiny-resnet"
    digests = _put_in_hf_cache(hf_env, repo, {"config.json": json.dumps(config).encode(),
                                              "model.safetensors": _safetensors_bytes(state, tmp_path)})
    direct = timm.create_model(f"hf-hub:{repo}", pretrained=True, cache_dir=str(hf_env)).eval()
    mean, std = torch.tensor([0.4] * 3).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    data, _ = _audit_set(tmp_path, lambda x: direct((x - mean) / std))

    code, err = _cli(_run(f"hf-hub:{repo}", data, tmp_path / "out"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    assert model["normalisation"]["source"] == f"hf_hub:{repo}" and model["normalisation"]["std"] == [0.2, 0.25, 0.3]
    assert model["weights"]["sha256"] == digests["model.safetensors"] and model["weights"]["revision"] == COMMIT
    assert model["data_config"]["input_size"] == [3, 96, 96]


# torchvision ---------------------------------------------------------------------------------

TV_NAME = "shufflenet_v2_x0_5"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _seeded_shufflenet() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(11)
    return torchvision.models.get_model(TV_NAME, weights=None, num_classes=1000).eval()


def _publish(monkeypatch: pytest.MonkeyPatch, folder: Path, state: dict, prefix: str | None = None) -> tuple[str, str]:
    """Save the state dict as torchvision names its files (<name>-<sha256 prefix>.pth) and point the enum at it.

    The enum's URL is redirected to the new file name; everything else (meta, transforms,
    builder) is torchvision's own. Returns (file sha256, file name).
    """
    import torchvision

    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"shufflenetv2_x0.5-{prefix or sha[:8]}.pth"
    tmp.rename(folder / name)
    weights = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1
    monkeypatch.setattr(weights.value, "url", f"https://download.pytorch.org/models/{name}")
    return sha, name


def test_torchvision_weights_from_the_torch_hub_cache(tmp_path, torch_home, monkeypatch, capsys) -> None:
    net = _seeded_shufflenet()
    sha, name = _publish(monkeypatch, torch_home, net.state_dict())
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    data, _ = _audit_set(tmp_path, lambda x: net((x - mean) / std))

    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    enum = "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1"
    assert model["weights"]["repo_id"] == enum and model["weights"]["sha256"] == sha
    assert model["weights"]["filename"] == name
    assert model["normalisation"]["source"] == f"torchvision_weights:{enum}"
    assert model["data_config"]["input_size"] == [3, 224, 224] and model["data_config"]["source"] == "pretrained"


def test_torchvision_weights_with_a_wrong_hash_prefix_are_refused(tmp_path, torch_home, monkeypatch, capsys) -> None:
    _publish(monkeypatch, torch_home, _seeded_shufflenet().state_dict(), prefix="deadbeef")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "IMAGENET1K_V1"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "hash prefix 'deadbeef'" in line, line


def test_torchvision_weights_not_cached_say_how_to_fetch(tmp_path, torch_home, capsys) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "not in the torch hub cache" in line and "--download" in line, line
    assert str(torch_home) in line
    assert os.listdir(torch_home) == []


def test_pretrained_head_class_count_must_match_unless_reinitialised(tmp_path, hf_env, capsys) -> None:
    _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(_seeded_test_resnet(), tmp_path)})
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32), y=np.array([0, 1, 2, 3]),
             num_classes=np.array(10))
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "a", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "1000 classes" in line and "--num-classes 10" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "b", "--pretrained", "--num-classes", "10"), capsys)
    assert code == ExitCode.OK, err
    model = _results(tmp_path / "b")["model"]
    assert model["num_classes"] == 10 and model["num_classes_source"] == "num_classes_option"
    assert any("re-initialised" in w for w in model["load_report"]["warnings"])


def test_pretrained_config_key(tmp_path, hf_env, capsys) -> None:
    """`pretrained = true` in a config file does what --pretrained does."""
    import timm

    _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(_seeded_test_resnet(), tmp_path)})
    direct = timm.create_model(TIMM_NAME, pretrained=True, cache_dir=str(hf_env)).eval()
    data, _ = _audit_set(tmp_path, lambda x: direct((x - 0.5) / 0.5))
    config = tmp_path / "robaudit.toml"
    config.write_text("pretrained = true\n")
    code, err = _cli(["--config", str(config), *_run(f"timm:{TIMM_NAME}", data, tmp_path / "out")], capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["model"]["normalisation"]["source"] == f"timm_pretrained:{TIMM_NAME}"
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
