"""Shared fixtures. Torch's thread count is pinned to 2 (the CI machine's cores) for every test."""
from __future__ import annotations

import shutil
import signal
import warnings
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


def _sigint_state() -> tuple[object, bool, bool]:
    """(Python's SIGINT handler, SIGINT blocked in this thread, SIGINT ignored by the process)."""
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    ignored = False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    ignored = bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return signal.getsignal(signal.SIGINT), blocked, ignored


@pytest.fixture(autouse=True)
def _sigint_stays_deliverable(request: pytest.FixtureRequest):  # noqa: ANN202 - a generator fixture
    """Keep Ctrl-C deliverable across tests. In the full suite some library call left SIGINT
    undeliverable to this process and to the children it starts, and every later Ctrl-C test failed
    far from the cause. A test that changes the SIGINT handler, mask or disposition gets a warning
    naming it, and the state is put back for the next test."""
    before = _sigint_state()
    yield
    after = _sigint_state()
    if after != before:
        warnings.warn(f"{request.node.nodeid} left SIGINT changed: handler/blocked/ignored {before} -> {after}",
                      stacklevel=1)
        signal.signal(signal.SIGINT, before[0] if callable(before[0]) else signal.default_int_handler)
        if after[1] and not before[1]:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
