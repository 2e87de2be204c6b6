"""Out of memory wherever the audit runs the model is the user's to fix (exit 2, one line with the advice),
never an internal error: a model that raises torch's OutOfMemoryError on batches larger than it can hold."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from demo import THREADS
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode

ARCH = textwrap.dedent('''
    import torch
    from torch import nn


    class SmallMemory(nn.Module):
        """A linear classifier of 8×8 gray images that runs out of memory on batches of more than ``fits``."""

        fits = 16

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            if len(x) > self.fits:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.11 GiB total capacity)")
            return self.fc(x.flatten(1))


    class Fits64(SmallMemory):
        fits = 64
''')


def _files(tmp_path: Path, n: int) -> tuple[Path, Path, Path]:
    """(arch file, checkpoint, dataset file of ``n`` random 8×8 images) of the test model."""
    arch = tmp_path / "small_memory.py"
    arch.write_text(ARCH)
    g = torch.Generator().manual_seed(0)
    ckpt = tmp_path / "small.safetensors"
    save_file({"fc.weight": torch.randn(10, 64, generator=g) * 0.1, "fc.bias": torch.zeros(10)}, str(ckpt))
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.random((n, 1, 8, 8), dtype=np.float32), y=np.arange(n) % 10)
    return arch, ckpt, data


def _run(tmp_path: Path, cls: str, n: int, batch_size: int, out: Path,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    arch, ckpt, data = _files(tmp_path, n)
    code = main(["run", str(ckpt), "--arch", f"{arch}:{cls}", "--dataset", str(data), "--n-samples", str(n),
                 "--mean", "0.5", "--std", "0.25", "--probes", "clean,attack.fgsm", "--batch-size", str(batch_size),
                 "--threads", str(THREADS), "--out", str(out), "--no-report", "-q"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("cls", "n", "batch_size", "fits", "where"), [
    # preflight checks 64 samples, so a batch of 80 first meets the cost estimate's timed forward+backward
    ("Fits64", 80, 128, 64, "out of memory timing one forward+backward of a batch of 80 samples on cpu (CUDA out of"),
    ("SmallMemory", 40, 32, 16, "out of memory running the model on a batch of 32 audit images (1×8×8): CUDA out of"),
], ids=["cost-estimate", "preflight"])
def test_running_out_of_memory_before_the_probes_is_exit_2_with_the_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], cls: str, n: int, batch_size: int, fits: int,
        where: str) -> None:
    code, err = _run(tmp_path, cls, n, batch_size, tmp_path / "big", capsys)
    assert code == ExitCode.USAGE, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"robaudit: error: {where}"), lines[0]
    assert "Tried to allocate 20.00 GiB" in lines[0]
    assert lines[0].endswith("Fix: lower --batch-size or use --n-samples to audit fewer samples."), lines[0]
    assert not (tmp_path / "big" / "results.json").exists()  # stopped before any probe ran

    # the advice works: with a batch that fits, preflight, the estimate and the probes all run
    code, err = _run(tmp_path, cls, n, fits, tmp_path / "fits", capsys)
    assert code == ExitCode.OK, err
    results = json.loads((tmp_path / "fits" / "results.json").read_text())
    assert [p["status"] for p in results["probes"].values()] == ["ok", "ok"]


class _OutOfMemoryInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("second_order", [False, True], ids=["input-gradient", "double-backward"])
def test_running_out_of_memory_in_preflights_backward_passes_is_the_advice(second_order: bool) -> None:
    """Out of memory in preflight's input gradient, or in its second-derivative test, is the same one-line
    advice as in its forward pass (a PreflightError, exit 2): not an internal error, and not a
    `no_double_backward` flag saying the model has no second derivatives."""
    from robaudit.errors import PreflightError
    from robaudit.preflight import _check_double_backward, _input_gradient, PreflightReport
    from helpers import audit_model

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.fc(_OutOfMemoryInBackward.apply(x).flatten(1))

    model = audit_model(Net(), 10)
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    with pytest.raises(PreflightError, match="out of memory computing") as info:
        if second_order:
            _check_double_backward(model, x, y, PreflightReport())
        else:
            _input_gradient(model, x, y, 4)
    assert info.value.fix == "lower --batch-size or use --n-samples to audit fewer samples"


def test_out_of_memory_is_recognised_on_a_torch_without_torch_OutOfMemoryError(monkeypatch) -> None:  # noqa: ANN001
    """torch before 2.5 has only torch.cuda.OutOfMemoryError; the check must not raise AttributeError
    there (it runs inside every probe's error handler, so it would turn any probe error into exit 3)."""
    import importlib

    import robaudit.out_of_memory as oom

    monkeypatch.delattr(torch, "OutOfMemoryError")
    try:
        fresh = importlib.reload(oom)
        assert fresh.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
        assert not fresh.is_out_of_memory(ValueError("a probe's own error"))
    finally:
        monkeypatch.undo()
        importlib.reload(oom)
