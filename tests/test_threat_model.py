"""The threat model: one ε list per norm, resolved once per run, read by attacks, geometry and plugins alike."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robaudit.cli.main import main
from robaudit.threat_model import family_of, parse_eps_option, resolve_threat_model

ARCH = '''from torch import nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''


def _mnist_like_run(tmp_path: Path) -> list[str]:
    """A 28×28 grey tensor file and a linear model on it, through the real loaders."""
    g = torch.Generator().manual_seed(0)
    (tmp_path / "tiny.py").write_text(ARCH)
    net = nn.Linear(784, 10)
    with torch.no_grad():
        net.weight.copy_(torch.randn(10, 784, generator=g) * 0.05)
        net.bias.zero_()
    save_file({"fc.weight": net.weight.detach().contiguous(), "fc.bias": net.bias.detach().contiguous()},
              str(tmp_path / "tiny.safetensors"))
    x = torch.rand(20, 1, 28, 28, generator=g).numpy()
    y = (x.reshape(20, -1) @ net.weight.detach().numpy().T).argmax(1)
    np.savez(tmp_path / "grey28.npz", x=x.astype(np.float32), y=y.astype(np.int64))
    return ["run", str(tmp_path / "tiny.safetensors"), "--arch", f"{tmp_path / 'tiny.py'}:Tiny",
            "--dataset", str(tmp_path / "grey28.npz"), "--probes", "attack.fgsm,geometry.gradients,adv_landscape",
            "--set", "adv_landscape.k=1", "--set", "adv_landscape.steps=2", "--set", "adv_landscape.a=[0.0]",
            "--set", "adv_landscape.consistency=false", "--set", "adv_landscape.check_determinism=false",
            "--set", "attack.fgsm.sanity_checks=false", "--no-report", "--threads", "1", "-q"]


@pytest.mark.parametrize(("extra", "linf", "source"), [
    ([], [0.05, 0.1, 0.15, 0.2, 0.3], "default:mnist-like"),
    (["--eps", "linf=0.02,4/255", "--eps", "l2=1.5"], [4 / 255, 0.02], "config"),
])
def test_a_28x28_grey_tensor_file_gets_one_eps_list_for_attacks_geometry_and_the_plugin(
        tmp_path: Path, extra: list[str], linf: list[float], source: str) -> None:
    out = tmp_path / "out"
    assert main([*_mnist_like_run(tmp_path), "--out", str(out), *extra]) == 0
    results = json.loads((out / "results.json").read_text())
    tm = results["threat_model"]
    assert tm["family"] == "mnist-like" and tm["image_shape"] == [1, 28, 28]
    assert tm["norms"]["linf"]["eps"] == linf and tm["norms"]["linf"]["source"] == source
    reference = tm["norms"]["linf"]["reference"]
    assert reference == max(linf) if source == "config" else reference == 0.3
    probes = results["probes"]
    assert probes["attack.fgsm"]["summary"]["eps"] == linf
    assert probes["attack.fgsm"]["summary"]["eps_source"] == source
    geometry = probes["geometry.gradients"]["summary"]
    assert geometry["epsilon"] == reference and geometry["epsilon_source"] == f"threat model ({source})"
    assert geometry["robustness_source"]["probes"] == ["attack.fgsm"]  # the split found the attack's ε
    plugin = probes["adv_landscape"]["summary"]
    assert plugin["eps"] == [0.0, *[e for e in linf if e <= reference]]
    assert plugin["eps_source"] == f"threat model ({source})"
    assert results["attack_outcomes"]["norms"]["linf"]["eps"] == linf
    if extra:
        assert tm["norms"]["l2"] == {"eps": [1.5], "reference": 1.5, "search_max": 8.0, "tolerance": 8.0 / 128,
                                     "source": "config"}


def test_bad_eps_gives_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _mnist_like_run(tmp_path)
    for bad, words in ((["--eps", "linf"], "NORM=E1,E2"), (["--eps", "l3=0.1"], "norm must be one of linf, l2"),
                       (["--eps", "linf=2"], "larger than the whole pixel range"),
                       (["--eps", "linf=0.1", "--eps", "linf=0.2"], "twice"),
                       (["--eps", "l2=29"], "exceeds the diameter")):
        assert main([*args, "--out", str(tmp_path / "bad"), *bad]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("robaudit: error")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in err, err


def test_the_config_file_spelling_sets_the_run_threat_model(tmp_path: Path) -> None:
    (tmp_path / "robaudit.toml").write_text('eps = ["linf=1/255,2/255"]\n')
    out = tmp_path / "out"
    args = _mnist_like_run(tmp_path)
    assert main(["--config", str(tmp_path / "robaudit.toml"), *args[:-10], "--probes", "attack.fgsm",
                 "--out", str(out), "--no-report", "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["threat_model"]["norms"]["linf"]["eps"] == [1 / 255, 2 / 255]
    assert results["probes"]["attack.fgsm"]["summary"]["eps"] == [1 / 255, 2 / 255]


@pytest.mark.parametrize(("dataset", "shape", "family"), [
    ("digits", (1, 8, 8), "digits"), ("tensors", (1, 8, 8), "digits"), ("tensors", (1, 28, 28), "mnist-like"),
    ("tensors", (3, 32, 32), "cifar-like"), ("imagefolder", (3, 64, 64), "cifar-like"),
    ("imagefolder", (3, 224, 224), "imagenet-like"), ("cifar10", (3, 32, 32), "cifar-like"),
])
def test_family_by_name_then_input_size(dataset: str, shape: tuple[int, int, int], family: str) -> None:
    tm = resolve_threat_model(dataset, shape)
    assert family_of(dataset, shape) == family == tm.family
    for norm in ("linf", "l2"):
        assert tm.reference(norm) in tm.eps(norm), "the reference budget is one of the sweep's"
        assert list(tm.eps(norm)) == sorted(set(tm.eps(norm)))


def test_eps_option_parses_fractions_and_checks_norms() -> None:
    assert parse_eps_option(["linf=8/255, 0.1", "L2=0.5"]) == {"linf": (8 / 255, 0.1), "l2": (0.5,)}
    with pytest.raises(ValueError, match="fractions like 8/255"):
        parse_eps_option(["linf=a"])
