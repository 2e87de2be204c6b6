"""The zoo worker's fork safety: it forks each model's child from a process that has imported torch and
robaudit but runs no thread (no OpenMP or intra-op pool, no helper thread) that a fork could cut in half."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_worker_is_single_threaded_after_its_imports() -> None:
    code = ("import os, sys; from robaudit.zoo.worker import preload; preload(); "
            "print(len(os.listdir('/proc/self/task')), 'torch' in sys.modules, 'robaudit.engine' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "True", "True"]
