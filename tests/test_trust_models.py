"""Trust at the boundary, model side, through the real CLI: hostile and broken models and files.

Each test builds the hostile or broken input in ``tmp_path`` and asserts on the exit code, the
one-line message on stderr and what is (and is not) on disk afterwards.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO, THREADS
from robaudit.cli.main import main
from robaudit.results import schema_text

sys.path.insert(0, str(REPO / "examples"))
from digits_cnn import DigitsCNN  # noqa: E402  (the demo architecture, imported as a reference)

Q = ["-q", "--threads", str(THREADS)]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _demo_net() -> DigitsCNN:
    net = DigitsCNN()
    net.load_state_dict(load_file(str(DEMO_CHECKPOINT)))
    return net.eval()


# ---- 1. TorchScript is code: refused before loading, whatever the file is called ----

class _Payload(nn.Module):
    """Writes 8 bytes to ``path`` through torch.from_file(shared=True) whenever TorchScript rebuilds it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.written = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, int]:
        return self.path, self.training, self.written

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, int]) -> None:
        self.path = state[0]
        self.training = state[1]
        written = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)
        written.fill_(65)
        self.written = int(written[0])  # used, so the scripted compiler keeps the write


class _Hostile(nn.Module):
    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.payload = _Payload(str(marker))
        self.net = DigitsCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.payload(x))


def _save_script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream
        torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(a hostile TorchScript archive, the marker file its __setstate__ creates); the payload is checked to work."""
    marker = tmp_path / "pwned"
    archive = _save_script(_Hostile(marker), tmp_path / "hostile.pt")
    probe = tmp_path / "probe-marker"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(_save_script(_Hostile(probe), tmp_path / "probe.pt")))
    assert probe.read_bytes() == b"A" * 8  # the payload really runs when torch.jit.load reads the archive
    assert not marker.exists()
    return archive, marker


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "model.bin", "model.pth", "digits_cnn"])
@pytest.mark.parametrize("command", ["run", "validate", "interpolate-to"])
def test_torchscript_is_refused_before_loading_whatever_its_name(
        hostile: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, command: str) -> None:
    archive, marker = hostile
    renamed = archive.rename(tmp_path / name)
    out = tmp_path / "audit"
    if command == "interpolate-to":
        args = ["run", DEMO_CHECKPOINT, "--arch", DEMO_ARCH, "--interpolate-to", renamed, "--out", out]
    else:
        args = [command, renamed, "--out", out] if command == "run" else [command, renamed]
    code, stdout, err = _cli([*args, "--n-samples", "20", *Q], capsys)
    assert code == 2, err
    line = _one_error_line(err)
    assert f"refusing to load checkpoint '{name}': it is a TorchScript archive" in line
    assert "contains code that runs when it is loaded" in line and "pass --trust-checkpoint" in line
    assert not marker.exists()
    assert not out.exists() and stdout == ""


# ---- 2. Trusted TorchScript audits, and gives the eager model's numbers ----

PROBES = "clean,attack.fgsm,geometry.gradients,curvature.topk"


def _per_sample(run: Path) -> dict[str, np.ndarray]:
    with (run / "per_sample.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for column in rows[0]:
        try:
            out[column] = np.array([float(r[column]) for r in rows])
        except ValueError:
            continue
    return out


def test_trusted_torchscript_audits_like_the_eager_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robaudit.data.audit_data import DatasetInfo
    from robaudit.models import ModelRequest, load_model

    scripted = _save_script(_demo_net(), tmp_path / "scripted.bin")
    common = ["--n-samples", "20", "--probes", PROBES, "--set", "curvature.topk.k=2", "--no-report", *Q]
    code, _, err = _cli(["run", scripted, "--trust-checkpoint", "--mean", "0.3054", "--std", "0.3761",
                         "--out", tmp_path / "ts", *common], capsys)
    assert code == 0, err
    code, _, err = _cli(["run", DEMO_CHECKPOINT, "--arch", DEMO_ARCH, "--out", tmp_path / "eager", *common], capsys)
    assert code == 0, err

    ts = json.loads((tmp_path / "ts" / "results.json").read_text())
    assert {n: p["status"] for n, p in ts["probes"].items()} == dict.fromkeys(PROBES.split(","), "ok")
    assert ts["model"]["load_report"]["format"] == "torchscript" and ts["model"]["trusted_pickle"] is True
    assert ts["model"]["arch"] == "torchscript:DigitsCNN"
    mine, reference = _per_sample(tmp_path / "ts"), _per_sample(tmp_path / "eager")
    assert set(mine) == set(reference) and any(c.startswith("geometry.gradients/") for c in mine)
    for column, values in reference.items():
        np.testing.assert_allclose(mine[column], values, rtol=1e-5, atol=1e-6, err_msg=column)
    eager = json.loads((tmp_path / "eager" / "results.json").read_text())
    np.testing.assert_allclose(ts["probes"]["curvature.topk"]["summary"]["sets"]["audit"]["full"]["eigenvalues"],
                               eager["probes"]["curvature.topk"]["summary"]["sets"]["audit"]["full"]["eigenvalues"],
                               rtol=1e-5)

    # the logits themselves, against the eager module on the same pixels
    info = DatasetInfo("digits", 10, 1, (8, 8))
    model = load_model(ModelRequest(source=str(scripted), trust_checkpoint=True, mean=(0.3054,), std=(0.3761,)), info)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(model(x), _demo_net()((x - 0.3054) / 0.3761), rtol=1e-6, atol=1e-6)


def test_torchscript_without_double_backward_says_so_and_skips_second_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Hardsigmoid(), nn.Flatten(), nn.Linear(4 * 64, 10)).eval()
    scripted = _save_script(net, tmp_path / "hard.pt")
    out = tmp_path / "audit"
    code, _, err = _cli(["run", scripted, "--trust-checkpoint", "--n-samples", "20", "--probes", "clean,curvature.topk",
                         "--set", "curvature.topk.k=2", "--out", out, "--no-report", *Q], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    (flag,) = [f for f in results["flags"] if f["id"] == "no_double_backward"]
    assert "the TorchScript archive cannot double-backward" in flag["message"]
    topk = results["probes"]["curvature.topk"]
    assert topk["status"] == "skipped" and topk["error"]["type"] == "NoDoubleBackward"
    assert results["probes"]["clean"]["status"] == "ok"


# ---- 3. A results.json is data: compare --loss-path never imports what it names ----

@pytest.fixture
def two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    runs = []
    for name in ("a", "b"):
        code, _, err = _cli(["run", DEMO_CHECKPOINT, "--arch", DEMO_ARCH, "--n-samples", "20", "--probes", "clean",
                             "--out", tmp_path / name, "--no-report", *Q], capsys)
        assert code == 0, err
        runs.append(tmp_path / name)
    return runs


def _edit(run: Path, change) -> None:
    path = run / "results.json"
    results = json.loads(path.read_text())
    change(results)
    path.write_text(json.dumps(results))


@pytest.mark.parametrize("relative", [True, False])
def test_loss_path_never_imports_an_arch_named_by_a_results_file(
        two_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], relative: bool) -> None:
    marker = tmp_path / "imported"
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "evil_arch.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()
        from torch import nn
        class DigitsCNN(nn.Module):
            pass
    """))
    arch = "evil_arch.py:DigitsCNN" if relative else f"{evil_dir / 'evil_arch.py'}:DigitsCNN"

    def craft(results: dict) -> None:
        results["config"]["arch"] = arch
        results["environment"]["working_directory"] = str(evil_dir)

    _edit(two_runs[0], craft)
    code, _, err = _cli(["compare", *two_runs, "--out", tmp_path / "cmp", "--loss-path", "a", "b", *Q[:1]], capsys)
    assert code == 2, err
    line = _one_error_line(err)
    assert "never imports code named by a results file" in line and "--arch" in line
    assert not marker.exists()
    assert not (tmp_path / "cmp" / "loss-path-a-to-b").exists()


def test_loss_path_refuses_a_torchscript_checkpoint_named_by_a_results_file(
        two_runs: list[Path], hostile: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive, marker = hostile
    _edit(two_runs[1], lambda r: r["model"].__setitem__("checkpoint_path", str(archive)))
    code, _, err = _cli(["compare", *two_runs, "--out", tmp_path / "cmp", "--loss-path", "a", "b",
                         "--arch", DEMO_ARCH, "-q"], capsys)
    assert code == 2, err
    assert "TorchScript archive contains code" in _one_error_line(err)
    assert not marker.exists()


# ---- 4. Masked models: flags and skipped probes, not crashes ----

MASKED_SOURCE = textwrap.dedent("""
    import torch
    from torch import nn


    class _Base(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, num_classes)


    class Detached(_Base):
        def forward(self, x):
            return self.fc(torch.relu(self.conv(x.detach())).flatten(1))


    class NoGrad(_Base):
        def forward(self, x):
            with torch.no_grad():
                h = torch.relu(self.conv(x))
            return self.fc(h.flatten(1))


    class Step(_Base):
        def forward(self, x):
            return self.fc(torch.relu(self.conv((x > 0.5).float())).flatten(1))


    class Raises(_Base):
        def forward(self, x):
            raise ValueError("the forward pass is broken")


    class EightByEight(nn.Module):
        def __init__(self, num_classes: int = 10):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))
""")


def _custom(tmp_path: Path, cls: str) -> tuple[Path, str]:
    """(a state-dict checkpoint, the --arch spec) of class ``cls`` in MASKED_SOURCE."""
    source = tmp_path / "masked_models.py"
    source.write_text(MASKED_SOURCE)
    namespace: dict = {}
    exec(compile(MASKED_SOURCE, str(source), "exec"), namespace)  # the reference copy of the test's own models
    torch.manual_seed(0)
    ckpt = tmp_path / f"{cls.lower()}.pt"
    torch.save(namespace[cls]().state_dict(), ckpt)
    return ckpt, f"{source}:{cls}"


INPUT_GRADIENT_PROBES = ("attack.fgsm", "attack.pgd_linf", "geometry.gradients")


@pytest.mark.parametrize("cls", ["Detached", "NoGrad", "Step"])
def test_masked_models_finish_with_error_flags_and_skipped_gradient_probes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cls: str) -> None:
    ckpt, arch = _custom(tmp_path, cls)
    out = tmp_path / "audit"
    probes = ["clean", "calibration", *INPUT_GRADIENT_PROBES, "attack.worst_case", "curvature.topk"]
    code, stdout, err = _cli(["run", ckpt, "--arch", arch, "--n-samples", "20", "--probes", ",".join(probes),
                              "--set", "curvature.topk.k=2", "--out", out, *Q], capsys)
    assert code == 0, err  # the audit finishes; the flags carry the finding (a gate can require them absent)
    assert "Traceback" not in err and "internal error" not in err
    results = json.loads((out / "results.json").read_text())
    flags = {f["id"]: f for f in results["flags"]}
    for flag_id in ("zero_input_gradients", "attack_gradients_vanish"):
        assert flags[flag_id]["severity"] == "error" and flags[flag_id]["source"] == "preflight"
        assert "disconnected" in flags[flag_id]["message"]
    statuses = {name: entry["status"] for name, entry in results["probes"].items()}
    # attack.worst_case requires attack outcomes, and every attack was skipped: it is skipped too, saying why
    assert statuses == {**dict.fromkeys(probes, "ok"), **dict.fromkeys(INPUT_GRADIENT_PROBES, "skipped"),
                        "attack.worst_case": "skipped"}
    for name in INPUT_GRADIENT_PROBES:
        error = results["probes"][name]["error"]
        assert error["type"] == "NoInputGradient" and error["internal"] is False
        assert "needs input gradients" in error["message"] and "disconnected" in error["message"]
    worst = results["probes"]["attack.worst_case"]["error"]
    assert worst["type"] == "MissingInput" and worst["internal"] is False
    assert results["status"] == "partial"
    jsonschema.validate(results, json.loads(schema_text()))
    assert (out / "report.html").is_file() and stdout.strip() == f"report: {out / 'report.html'}"


# ---- 5. Bad input through the model: one line, exit 2 ----

def test_a_forward_that_raises_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, arch = _custom(tmp_path, "Raises")
    out = tmp_path / "audit"
    code, _, err = _cli(["run", ckpt, "--arch", arch, "--n-samples", "20", "--probes", "clean", "--out", out, *Q], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "the model's forward raised ValueError: the forward pass is broken" in line
    assert not out.exists()


def _tensor_file(path: Path, size: int, n: int = 20) -> Path:
    g = torch.Generator().manual_seed(0)
    torch.save({"x": torch.rand(n, 3, size, size, generator=g), "y": torch.arange(n) % 10}, path)
    return path


def _suggested_resize(line: str) -> str:
    fix = line.split("Fix: pass --resize ", 1)[1]
    return fix.split()[0]


def test_a_tensor_file_larger_than_the_model_suggests_a_resize_that_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, arch = _custom(tmp_path, "EightByEight")
    data = _tensor_file(tmp_path / "sixteen.pt", 16)
    args = ["run", ckpt, "--arch", arch, "--dataset", data, "--probes", "clean", "--out", tmp_path / "a", *Q]
    code, _, err = _cli(args, capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "the images are 16×16 and the model needs 8×8" in line
    resize = _suggested_resize(line)
    assert resize == "8"
    code, _, err = _cli([*args, "--resize", resize], capsys)
    assert code == 0, err


def test_a_small_dataset_into_a_vit_suggests_a_resize_that_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _tensor_file(tmp_path / "thirty_two.pt", 32, n=10)
    small_vit = json.dumps({"embed_dim": 16, "depth": 1, "num_heads": 2})
    args = ["run", "timm:vit_tiny_patch16_224", "--arch-kwargs", small_vit, "--dataset", data, "--probes", "clean",
            "--out", tmp_path / "a", "--no-report", *Q]
    code, _, err = _cli(args, capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "the images are 32×32 and the model needs 224×224" in line
    resize = _suggested_resize(line)
    assert resize == "224"
    code, _, err = _cli([*args, "--resize", resize], capsys)
    assert code == 0, err


# ---- 6. Legacy pickles name the unsafe global ----

class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_legacy_pickle_with_an_unsafe_global_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: int) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "legacy.pth"
    torch.save({"state_dict": _demo_net().state_dict(), "extra": _System(marker)}, ckpt,
               _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    code, _, err = _cli(["validate", ckpt, "--arch", DEMO_ARCH, "--n-samples", "20", *Q], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "refusing to unpickle checkpoint 'legacy.pth'" in line and "posix.system" in line
    assert "truncated" not in line and "corrupt" not in line
    assert "Detected pickle protocol" not in err and err.strip() == line  # torch's two-line warning is silenced
    assert not marker.exists()
