"""Shared fixtures. Torch's thread count is pinned to 2 (the CI machine's cores) for every test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS

# pytester drives the pytest sessions of tests/pytest_plugin (robaudit's own pytest plugin); pytest
# accepts pytest_plugins only in a top-level conftest.
pytest_plugins = ["pytester"]


GPU_SKIP_REASON = "needs a CUDA device (marked gpu; benchmarks/gpu_check.sh runs these on a GPU machine)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped, with one clear reason, where CUDA is absent: the only allowed skip."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason=GPU_SKIP_REASON))


@pytest.fixture(autouse=True)
def _pin_threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished audit of the demo checkpoint on 120 digits test samples (read-only: copy before changing)."""
    import robaudit

    out = tmp_path_factory.mktemp("demo") / "audit"
    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=120,
                             out=out, threads=THREADS)
    assert outcome.exit_code == 0, outcome.results
    return out


@pytest.fixture
def demo_copy(demo_run: Path, tmp_path: Path) -> Path:
    """A writable copy of :func:`demo_run`."""
    dst = tmp_path / "audit"
    shutil.copytree(demo_run, dst)
    return dst
