"""torch.distributed accumulation: 2 gloo processes on CPU give the single-process numbers."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from curvature_oracle import Oracle
from distributed_worker import curvature_numbers, worker
from robaudit.probes.curvature.samples import SampleSet


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(oracle: Oracle, tmp_path: Path) -> None:
    # 59 samples: shards of 30 and 29, each in batches of 7 with a short last one
    samples = SampleSet("audit", "audit", None, oracle.data.x[:59], oracle.data.y[:59], oracle.data.ids[:59])
    v = torch.randn(oracle.hessian.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.save({"model": oracle.model, "samples": samples, "v": v}, tmp_path / "inputs.pt")
    mp.spawn(worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = curvature_numbers(oracle.model, samples, v)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["shard"] for r in ranks] == [(0, 30), (30, 59)] and single["shard"] == (0, 59)
    for r in ranks:
        assert torch.allclose(r["hvp"], single["hvp"], rtol=1e-12, atol=1e-14)
        assert torch.allclose(r["gradient"], single["gradient"], rtol=1e-12, atol=1e-14)
        assert r["loss"] == pytest.approx(single["loss"], rel=1e-13)
        assert torch.allclose(r["eigenvalues"], single["eigenvalues"], rtol=1e-10)
        assert r["trace"] == pytest.approx(single["trace"], rel=1e-10)
        assert r["hvps"] == single["hvps"]
    assert torch.equal(ranks[0]["eigenvalues"], ranks[1]["eigenvalues"])  # every rank sees the same all-reduced sums
