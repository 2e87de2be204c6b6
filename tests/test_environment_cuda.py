"""CUDA reproducibility settings and the peak-memory record (the CUDA half runs only on a GPU machine)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robaudit.cli.main import main
from robaudit.results.environment import cuda_peak_memory, describe_environment

REPO = Path(__file__).resolve().parents[1]
DEMO = [str(REPO / "examples" / "digits_cnn.safetensors"), "--arch", f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN",
        "--dataset", "digits", "--n-samples", "16", "--probes", "clean,attack.fgsm,curvature.topk",
        "--set", "curvature.topk.k=2", "--no-report", "--quiet"]


def test_cpu_environment_records_no_cuda_section() -> None:
    env = describe_environment(torch.device("cpu"), 0, 1)
    assert "cuda" not in env and cuda_peak_memory(torch.device("cpu")) == {}


@pytest.mark.gpu
def test_same_seed_same_results_on_cuda(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        assert main(["run", *DEMO, "--device", "cuda", "--seed", "7", "--out", str(tmp_path / name)]) == 0
        outs.append(json.loads((tmp_path / name / "results.json").read_text()))
    for r in outs:
        cuda = r["environment"]["cuda"]
        assert cuda["cudnn_deterministic"] and not cuda["cudnn_benchmark"] and not cuda["tf32_matmul"]
        assert r["environment"]["cuda_peak_memory_bytes"] > 0
    for probe in ("clean", "attack.fgsm", "curvature.topk"):
        assert outs[0]["probes"][probe]["summary"] == outs[1]["probes"][probe]["summary"], probe
    assert (tmp_path / "a" / "per_sample.csv").read_bytes() == (tmp_path / "b" / "per_sample.csv").read_bytes()
