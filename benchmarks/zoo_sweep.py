"""``robaudit zoo`` on eight digits models: sequential (``--workers 1``) vs ``--workers 2``, and the
per-model fixed cost.

Eight seeded variants of the demo CNN (``tests/zoo/zoo_fixtures.py``), the issue's minimal manifest with
``probes = ["clean", "attack.fgsm", "curvature.topk"]`` and ``n-samples = 40``. For each setting the sweep
runs once into a fresh directory (``--repeats`` times; the median wall time is reported), and:

* **ratio**: the sequential wall time over the setting's wall time (> 1: faster than sequential);
* **per-model fixed cost**: a model's wall time in the sweep minus the time its probes ran
  (``results.json`` › probes › duration_s): the child process start, imports, model and data loading,
  preflight and writing the results. It is paid once per model: each model runs in its own process.

Not a timed test: run it by hand on an otherwise idle machine and read the table::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_sweep.py [--repeats 1] [--workers 1,2]

``--ray`` is not built yet, so there is no Ray column.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))

from zoo_fixtures import make_zoo  # noqa: E402

N_MODELS = 8


def sweep(workers: int) -> tuple[float, list[float]]:
    """(wall seconds of one sweep, each model's fixed cost in seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_zoo(root, n_models=N_MODELS)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", str(root / "zoo"),
                               "--workers", str(workers), "-q"], cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed (exit {proc.returncode}): {proc.stderr.strip()}")
        fixed = []
        for row in json.loads((root / "zoo" / "zoo.json").read_text())["models"]:
            results = json.loads((root / "zoo" / "models" / row["name"] / "results.json").read_text())
            probe_s = sum(p.get("duration_s") or 0.0 for p in results["probes"].values())
            fixed.append(row["cost"]["wall_s"] - probe_s)
        return wall, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts; the first is the reference")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    for workers in counts:
        runs = [sweep(workers) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        fixed = statistics.median(f for r in runs for f in r[1])
        rows.append((workers, wall, fixed))
    reference = rows[0][1]
    print(f"{N_MODELS} digits models, clean + attack.fgsm + curvature.topk, 40 samples each")
    print(f"{'workers':>8} {'wall s':>8} {'ratio':>6} {'fixed s/model':>14}")
    for workers, wall, fixed in rows:
        print(f"{workers:>8} {wall:>8.1f} {reference / wall:>6.2f} {fixed:>14.2f}")


if __name__ == "__main__":
    main()
