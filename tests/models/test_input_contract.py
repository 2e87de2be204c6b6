"""Issue #14: the input contract (normalisation, metadata kwargs, channels, size) is stated or checked.

Every test goes through the real CLI (``robaudit.cli.main.main``): exit code, the one-line
error, and what results.json records.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robaudit.cli.main import main
from robaudit.data.audit_data import DatasetInfo
from robaudit.data.digits import digits_split
from robaudit.exitcodes import ExitCode
from robaudit.models import ModelRequest, load_model

DIGITS_MEAN, DIGITS_STD = 0.3054, 0.3761  # the digits dataset's conventional statistics (robaudit.data.catalog)

FEATURES_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class RandomFeatures(nn.Module):
        """A seeded random 3×3 conv with ReLU and 2×2 average pooling, then a linear head (8×8 gray input)."""

        def __init__(self, num_classes: int = 10, width: int = 64):
            super().__init__()
            self.conv = nn.Conv2d(1, width, 3, padding=1)
            self.fc = nn.Linear(width * 16, num_classes)

        def features(self, x):
            return nn.functional.avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)

        def forward(self, x):
            return self.fc(self.features(x))
    '''
)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    _, err = capsys.readouterr()
    return code, err


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _ridge_head(feats: torch.Tensor, y: np.ndarray, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight K×D, bias K) of the ridge regression of one-hot labels on the features."""
    a = torch.cat([feats.double(), torch.ones(len(feats), 1, dtype=torch.float64)], dim=1)
    targets = torch.nn.functional.one_hot(torch.tensor(y), 10).double()
    w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=torch.float64), a.T @ targets)
    return w[:-1].T.float(), w[-1].float()


def _raw_pixel_checkpoint(tmp_path: Path) -> tuple[Path, str]:
    """A random-feature digits model whose head was fit on raw [0, 1] pixels, and its --arch spec."""
    arch = tmp_path / "features.py"
    arch.write_text(FEATURES_SOURCE)
    namespace: dict = {}
    exec(compile(FEATURES_SOURCE, str(arch), "exec"), namespace)  # the same class robaudit will import
    torch.manual_seed(0)
    net = namespace["RandomFeatures"]().eval()
    x, y, _ = digits_split("train")
    with torch.no_grad():
        weight, bias = _ridge_head(net.features(torch.tensor(x)), y, 1e-2)
        net.fc.weight.copy_(weight)
        net.fc.bias.copy_(bias)
    path = tmp_path / "features.pt"
    torch.save(net.state_dict(), path)
    return path, f"{arch}:RandomFeatures"


def _base(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(ckpt), *extra, "--dataset", "digits", "--probes", "clean", "--no-report", "-q",
            "--threads", "1", "--out", str(out)]


def test_raw_pixel_model_given_the_dataset_statistics_stops_naming_identity(tmp_path, capsys) -> None:
    ckpt, arch = _raw_pixel_checkpoint(tmp_path)
    code, err = _cli(_base(ckpt, tmp_path / "guess", "--arch", arch), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE
    assert "identity" in line and "--mean 0 --std 1" in line and "--normalisation auto" in line, line
    assert not (tmp_path / "guess" / "results.json").exists()

    code, err = _cli(_base(ckpt, tmp_path / "auto", "--arch", arch, "--normalisation", "auto"), capsys)
    assert code == ExitCode.OK, err
    code, err = _cli(_base(ckpt, tmp_path / "stated", "--arch", arch, "--mean", "0", "--std", "1"), capsys)
    assert code == ExitCode.OK, err
    auto, stated = _results(tmp_path / "auto"), _results(tmp_path / "stated")
    assert auto["probes"]["clean"]["summary"]["accuracy"] == stated["probes"]["clean"]["summary"]["accuracy"]
    assert auto["model"]["normalisation"]["source"] == "auto:identity"
    check = auto["preflight"]["stats"]["normalisation_check"]
    assert check["decision"] == "switched" and check["samples"] == 360
    by_source = {c["source"]: c for c in check["candidates"]}
    assert set(by_source) == {"dataset", "identity"} and by_source["dataset"]["chosen"]
    # the recorded accuracy under identity is the clean accuracy of the stated run (same 360 samples)
    assert by_source["identity"]["accuracy"] == pytest.approx(stated["probes"]["clean"]["summary"]["accuracy"]["value"])
    assert "normalisation_guessed" in [f["id"] for f in auto["flags"]]
    assert stated["preflight"]["stats"]["normalisation_check"]["ran"] is False
    assert "normalisation_guessed" not in [f["id"] for f in stated["flags"]]


def _timm_digits_checkpoint(tmp_path: Path) -> Path:
    """timm's test_resnet as a random-feature digits classifier trained on dataset-normalised pixels.

    The convolutions keep their seeded random weights; the head is the ridge-regression fit
    of one-hot labels on the pooled features of (x − 0.3054)/0.3761 (RGB-converted digits).
    Saved as a bare state dict named after the architecture: no normalisation metadata.
    """
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=10).eval()
    x, y, _ = digits_split("train")
    x = torch.tensor(x).repeat(1, 3, 1, 1)
    with torch.no_grad():
        feats = net.forward_head(net.forward_features((x - DIGITS_MEAN) / DIGITS_STD), pre_logits=True).double()
    weight, bias = _ridge_head(feats, y, 1e-3)
    with torch.no_grad():
        net.fc.weight.copy_(weight)
        net.fc.bias.copy_(bias)
    path = tmp_path / "test_resnet.pth"
    torch.save(net.state_dict(), path)
    return path


def test_model_trained_with_the_dataset_statistics_given_the_arch_default_stops(tmp_path, capsys) -> None:
    """The other way round: the model wants the dataset's statistics; the guess (timm's default 0.5/0.5) is wrong."""
    ckpt = _timm_digits_checkpoint(tmp_path)
    args = _base(ckpt, tmp_path / "guess", "--convert-channels", "rgb")
    code, err = _cli(args, capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE
    assert "dataset's conventional normalisation" in line, line
    assert "--mean 0.3054,0.3054,0.3054 --std 0.3761,0.3761,0.3761" in line, line

    code, err = _cli(_base(ckpt, tmp_path / "auto", "--convert-channels", "rgb", "--normalisation", "auto"), capsys)
    assert code == ExitCode.OK, err
    code, err = _cli(_base(ckpt, tmp_path / "stated", "--convert-channels", "rgb", "--mean", "0.3054",
                           "--std", "0.3761"), capsys)
    assert code == ExitCode.OK, err
    auto, stated = _results(tmp_path / "auto"), _results(tmp_path / "stated")
    assert auto["model"]["normalisation"]["source"] == "auto:dataset"
    assert auto["probes"]["clean"]["summary"]["accuracy"] == stated["probes"]["clean"]["summary"]["accuracy"]
    sources = [c["source"] for c in auto["preflight"]["stats"]["normalisation_check"]["candidates"]]
    assert sources == ["timm_pretrained_cfg", "identity", "dataset"]


def _timm_resnet_with_channels() -> torch.nn.Module:
    import timm

    torch.manual_seed(1)
    return timm.create_model("resnet18", num_classes=10, channels=[16, 32, 64, 128]).eval()


@pytest.mark.parametrize("fmt", ["pth.tar", "safetensors"])
def test_metadata_model_kwargs_build_the_architecture(tmp_path, capsys, fmt) -> None:
    net = _timm_resnet_with_channels()
    kwargs = {"channels": [16, 32, 64, 128]}
    path = tmp_path / f"ckpt.{fmt}"
    if fmt == "safetensors":
        save_file(net.state_dict(), str(path), metadata={
            "arch": "timm:resnet18", "model_kwargs": json.dumps(kwargs), "mean": "[0.5]", "std": "[0.25]"})
    else:  # a DDP-wrapped training checkpoint: module. prefixes, metadata next to the weights
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "arch": "timm:resnet18",
                    "model_kwargs": kwargs, "mean": [0.5], "std": [0.25], "epoch": 3}, path)

    code, err = _cli(["run", str(path), "--dataset", "digits", "--convert-channels", "rgb", "--n-samples", "20",
                      "--probes", "clean", "--no-report", "-q", "--threads", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == ExitCode.OK, err
    model = _results(tmp_path / "out")["model"]
    assert model["arch"] == "timm:resnet18" and model["arch_kwargs"] == kwargs
    assert model["arch_kwargs_source"] == {"channels": "checkpoint_metadata"}

    info = DatasetInfo("digits", 10, 3, (8, 8), (0.3054,) * 3, (0.3761,) * 3)
    loaded = load_model(ModelRequest(str(path)), info)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net((x - 0.5) / 0.25))


def test_cli_arch_kwargs_override_metadata_kwargs_key_by_key(tmp_path) -> None:
    net = _timm_resnet_with_channels()
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": net.state_dict(), "arch": "timm:resnet18",
                "model_kwargs": {"channels": [16, 32, 64, 128], "drop_rate": 0.5}}, path)
    info = DatasetInfo("digits", 10, 3, (8, 8))
    model = load_model(ModelRequest(str(path), arch_kwargs={"drop_rate": 0.0}), info)
    assert model.provenance.arch_kwargs == {"channels": [16, 32, 64, 128], "drop_rate": 0.0}
    assert model.provenance.arch_kwargs_source == {"channels": "checkpoint_metadata", "drop_rate": "cli"}


def test_metadata_kwargs_must_be_plain_json(tmp_path, capsys) -> None:
    net = _timm_resnet_with_channels()
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": net.state_dict(), "arch": "timm:resnet18",
                "model_kwargs": {"channels": torch.tensor([16, 32, 64, 128])}}, path)
    code, err = _cli(["run", str(path), "--dataset", "digits", "-q", "--out", str(tmp_path / "o")], capsys)
    assert code == ExitCode.USAGE and "model_kwargs" in _error_line(err) and "plain" in _error_line(err)


def test_a_model_that_cannot_run_at_the_data_size_names_a_resize_that_parses(tmp_path, capsys) -> None:
    args = ["run", "timm:test_vit", "--dataset", "digits", "--convert-channels", "rgb", "--n-samples", "10",
            "--probes", "clean", "--no-report", "-q", "--threads", "1"]
    code, err = _cli([*args, "--out", str(tmp_path / "a")], capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "8×8" in line, line
    hint = re.search(r"--resize (\S+)", line)
    assert hint is not None, line
    code, err = _cli([*args, "--resize", hint.group(1), "--out", str(tmp_path / "b")], capsys)
    assert code == ExitCode.OK, err
    data = _results(tmp_path / "b")["data"]
    assert any("resize" in c for c in data["conversions"])


def test_channels_come_from_the_zoo_config_not_the_first_conv(tmp_path, capsys) -> None:
    """TResNet's stem is a space-to-depth: its first convolution sees 48 channels, the model takes 3."""
    rng = np.random.default_rng(0)
    data = tmp_path / "rgb.npz"
    np.savez(data, x=rng.random((6, 3, 32, 32), dtype=np.float32), y=np.arange(6) % 3, num_classes=np.array(3))
    code, err = _cli(["run", "timm:tresnet_m", "--dataset", str(data), "--probes", "clean", "--no-report", "-q",
                      "--threads", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == ExitCode.OK, err
    model = _results(tmp_path / "out")["model"]
    assert model["in_channels"] == 3 and model["in_channels_source"] == "timm_pretrained_cfg"


def test_no_size_warning_for_an_architecture_default(tmp_path, capsys) -> None:
    """A 32×32 dataset with a ResNet checkpoint: timm's registered 224 is not the weights' training size."""
    rng = np.random.default_rng(0)
    data = tmp_path / "rgb.npz"
    np.savez(data, x=rng.random((6, 3, 32, 32), dtype=np.float32), y=np.arange(6) % 3, num_classes=np.array(3))
    code, err = _cli(["run", "timm:test_resnet", "--dataset", str(data), "--probes", "clean", "--no-report",
                      "--threads", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == ExitCode.OK, err
    assert "--resize" not in err and "expects" not in err, err
    assert _results(tmp_path / "out")["model"]["data_config"]["source"] == "architecture"


def test_normalisation_auto_config_key(tmp_path, capsys) -> None:
    ckpt, arch = _raw_pixel_checkpoint(tmp_path)
    config = tmp_path / "robaudit.toml"
    config.write_text('normalisation = "auto"\n')
    code, err = _cli(["--config", str(config), *_base(ckpt, tmp_path / "out", "--arch", arch)], capsys)
    assert code == ExitCode.OK, err
    assert _results(tmp_path / "out")["model"]["normalisation"]["source"] == "auto:identity"


def _trained_raw_pixel_cnn(tmp_path: Path) -> Path:
    """The demo's DigitsCNN trained on raw [0, 1] pixels (seed 1, the demo's recipe), saved without metadata.

    On the dataset's statistics it still gets 350 of the 360 test samples right against 351 on raw
    pixels: accuracy cannot tell the contracts apart, its cross-entropy can (0.171 vs 0.075 nats).
    """
    import sys

    import torch.nn.functional as F

    from demo import REPO

    sys.path.insert(0, str(REPO / "examples"))
    try:
        from digits_cnn import DigitsCNN
    finally:
        sys.path.remove(str(REPO / "examples"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(1)
        x, y, _ = digits_split("train")
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        net = DigitsCNN()
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(150):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "raw_cnn.safetensors"
    save_file({k: v.contiguous() for k, v in net.eval().state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_a_wrong_guess_that_costs_little_accuracy_is_caught_by_the_likelihood(tmp_path, capsys) -> None:
    """McNemar alone has no power here; Vuong's likelihood-ratio test with the halved cross-entropy has."""
    from demo import DEMO_ARCH

    ckpt = _trained_raw_pixel_cnn(tmp_path)
    code, err = _cli(_base(ckpt, tmp_path / "guess", "--arch", DEMO_ARCH), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE
    assert "identity" in line and "--mean 0 --std 1" in line and "Vuong" in line, line

    code, err = _cli(_base(ckpt, tmp_path / "auto", "--arch", DEMO_ARCH, "--normalisation", "auto"), capsys)
    assert code == ExitCode.OK, err
    code, err = _cli(_base(ckpt, tmp_path / "stated", "--arch", DEMO_ARCH, "--mean", "0", "--std", "1"), capsys)
    assert code == ExitCode.OK, err
    auto, stated = _results(tmp_path / "auto"), _results(tmp_path / "stated")
    assert auto["probes"]["clean"]["summary"]["accuracy"] == stated["probes"]["clean"]["summary"]["accuracy"]
    by_source = {c["source"]: c for c in auto["preflight"]["stats"]["normalisation_check"]["candidates"]}
    guess, identity = by_source["dataset"], by_source["identity"]
    assert identity["p_value"] > 0.01  # the accuracy route alone would have kept the wrong guess
    assert identity["correct"] >= guess["correct"] and 2 * identity["mean_nll"] <= guess["mean_nll"]
    # the recorded cross-entropies are the model's own, recomputed here under each contract
    x, y, _ = digits_split("test")
    net = load_model(ModelRequest(str(ckpt), arch=DEMO_ARCH, mean=(0.0,), std=(1.0,)),
                     DatasetInfo("digits", 10, 1, (8, 8))).eval()
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)).double(), torch.from_numpy(y))
    assert identity["mean_nll"] == pytest.approx(float(nll), rel=1e-6)
