"""``robaudit zoo`` on eight digits models: sequential (``--workers 1``) vs ``--workers 2`` vs ``--ray`` (a local
instance), and the per-model fixed cost of the old subprocess-per-model path vs the worker path.

Eight seeded variants of the demo CNN (``tests/zoo/zoo_fixtures.py``), the issue's minimal manifest with
``probes = ["clean", "attack.fgsm", "curvature.topk"]`` (``--probes`` to change) and ``n-samples = 40``. Each
sweep runs once into a fresh directory (``--repeats`` times; medians are reported) and prints:

* **engine wall s**: from the sweep command's start until the last model's record is saved
  (``tasks/<name>.json``); the driver is then killed (its workers die with it). The zoo table's cross-model
  analysis and ``zoo.html``, which the driver writes after the models, are not the execution engine's cost and
  are left out (with eight models the analysis' exact permutation tests take minutes; see ``compare``).
* **model CPU s**: the sum of each model's child CPU (``tasks/<name>.json`` › ``cpu_s``, from ``wait4``),
  comparable across the three (Ray's own processes are not in it).
* **ratio**: the sequential engine wall time over the setting's (> 1: faster than sequential).
* **Ray's overhead per task**: ``((engine wall of --ray) - (engine wall of --workers 2)) × 2 / 8``: the
  seconds of a worker slot that Ray adds to each task at the same concurrency, its start-up included (the
  local sweep starts its two workers in that time too); ``ray.init`` + ``ray.shutdown`` of a local instance is
  timed apart.

**Per-model fixed cost** (``--fixed``, on by default): a ``--probes clean`` audit of one tiny model, minus
its probe time (``results.json`` › probes › clean › duration_s; tiny next to the rest), CPU and wall:

* *old path*: ``python -m robaudit run MODEL --probes clean`` in a fresh process, as the zoo ran each model
  before the workers (process start and the imports of torch/timm/robaudit included);
* *worker path*: a ``--workers 1`` sweep of eight such models; each model's child CPU/wall (the worker
  forks it with everything imported) minus its probe time; the worker's one-off start (``python`` + the
  worker's imports, ``robaudit.zoo.worker.preload``) is timed apart.

Not a timed test: run it by hand and read the table; torch runs one thread per worker
(``OMP_NUM_THREADS=1``, the thread split of ``--workers``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_sweep.py [--repeats 1] [--modes 1,2,ray] [--no-fixed]
        [--probes clean,attack.fgsm,curvature.topk]

**On a GPU** (not run in CI): ``--device cuda`` sets ``device = "cuda"`` in the manifest; choose ``--modes`` so
that the workers fit the GPU's memory (each model's child holds its own CUDA context, about 0.5 GiB, plus the
model's activations at ``batch-size``): e.g. ``--device cuda --modes 1,4,8`` puts the eight models on one GPU,
four and then eight at a time. With ``--ray`` on a machine with GPUs each task asks Ray for one GPU, so Ray
runs one model per GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))

from zoo_fixtures import DEMO_ARCH_FILE, N_SAMPLES, make_zoo, variant  # noqa: E402

N_MODELS = 8
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(200 * 2**20)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the command's reaped process tree); exits when the command fails."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, cpu


def _probe_s(results: dict[str, Any]) -> float:
    return sum(p.get("duration_s") or 0.0 for p in results["probes"].values())


def sweep(mode: str, probes: list[str] | None, device: str | None) -> dict[str, Any]:
    """One sweep of eight models, until the last record is saved; ``mode`` is a worker count or ``ray`` (a local
    instance with 2 CPU slots)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_zoo(root, n_models=N_MODELS, probes=probes, device=device)
        cmd = [sys.executable, "-m", "robaudit", "zoo", str(manifest), "--out", str(root / "zoo"), "-q"]
        cmd += ["--workers", "2", "--ray"] if mode == "ray" else ["--workers", mode]
        t0 = time.perf_counter()
        driver = subprocess.Popen(cmd, cwd=root, env={**os.environ, **(RAY_ENV if mode == "ray" else {})},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        names = [f"bs{16 * 2 ** k}" for k in range(N_MODELS)]
        while not all((root / "zoo" / "tasks" / f"{n}.json").is_file() for n in names):
            if driver.poll() is not None:
                raise SystemExit(f"the sweep ended early (exit {driver.returncode}): {driver.stderr.read()[-2000:]}")
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        if mode == "ray":  # let the driver shut its local Ray instance down
            driver.wait()
        else:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        models = []
        for name in names:
            record = json.loads((root / "zoo" / "tasks" / f"{name}.json").read_text())
            results = json.loads((root / "zoo" / "models" / name / "results.json").read_text())
            if record["status"] != "ok":
                raise SystemExit(f"model {name} failed: {record['reason']}")
            models.append({"cpu_s": record["cpu_s"], "wall_s": record["wall_s"], "probe_s": _probe_s(results),
                           "worker": record["worker_pid"]})
        return {"wall": wall, "model_cpu": sum(m["cpu_s"] for m in models), "models": models}


def worker_start() -> tuple[float, float]:
    """(CPU s, wall s) of starting a zoo worker: Python and the worker's imports, in a fresh process."""
    cmd = [sys.executable, "-c", "from robaudit.zoo.worker import preload; preload()"]
    cpu_wall = _run(cmd, Path(__file__).resolve().parents[1])
    return cpu_wall[1], cpu_wall[0]


def old_path_fixed_cost() -> tuple[float, float]:
    """(CPU s, wall s) of a fresh ``robaudit run --probes clean`` of one tiny model, minus its probe time."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "digits_cnn.py").write_text(DEMO_ARCH_FILE.read_text())
        variant(root / "model.pt", seed=1, scale=0.02)
        wall, cpu = _run([sys.executable, "-m", "robaudit", "run", "model.pt", "--arch", "digits_cnn.py:DigitsCNN",
                          "--dataset", "digits", "--probes", "clean", "--n-samples", str(N_SAMPLES), "--threads", "1",
                          "--out", "out", "-q"], root)
        probe = _probe_s(json.loads((root / "out" / "results.json").read_text()))
        return cpu - probe, wall - probe


def ray_start_stop() -> float:
    """Wall seconds of ``ray.init(num_cpus=2)`` + ``ray.shutdown()`` of a local instance, in a fresh process."""
    code = ("import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, "
            "configure_logging=False); ray.shutdown()")
    return _run([sys.executable, "-c", code], Path.cwd(), RAY_ENV)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", default="1,2,ray", help="comma-separated worker counts and/or 'ray'; the first is "
                                                          "the reference of the ratios")
    parser.add_argument("--device", default=None, help="the manifest's device (e.g. cuda); default: robaudit's")
    parser.add_argument("--no-fixed", action="store_true", help="skip the per-model fixed cost")
    parser.add_argument("--probes", default=None, help="comma-separated probes of the sweeps (default: "
                                                       "clean,attack.fgsm,curvature.topk)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    modes = args.modes.split(",")
    probes = args.probes.split(",") if args.probes else None
    print(f"{N_MODELS} digits models, {args.probes or 'clean,attack.fgsm,curvature.topk'}, {N_SAMPLES} samples each; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads per worker = CPUs / workers "
          f"(this machine: {len(os.sched_getaffinity(0))} CPUs); device {args.device or 'default'}")
    rows = {}
    for mode in modes:
        runs = [sweep(mode, probes, args.device) for _ in range(args.repeats)]
        rows[mode] = {k: statistics.median(r[k] for r in runs) for k in ("wall", "model_cpu")}
    ref = rows[modes[0]]
    print(f"{'mode':>10} {'engine wall s':>14} {'model CPU s':>12} {'wall ratio':>11}")
    for mode, r in rows.items():
        label = "ray (2)" if mode == "ray" else f"workers {mode}"
        print(f"{label:>10} {r['wall']:>14.1f} {r['model_cpu']:>12.1f} {ref['wall'] / r['wall']:>11.2f}", flush=True)
    if "ray" in rows and "2" in rows:
        start = statistics.median(ray_start_stop() for _ in range(args.repeats))
        per_task = (rows["ray"]["wall"] - rows["2"]["wall"]) * 2 / N_MODELS
        print(f"Ray: overhead per task {per_task:.2f} s (vs --workers 2, its start-up included); a local "
              f"ray.init + ray.shutdown alone takes {start:.1f} s")
    if args.no_fixed:
        return
    old = [old_path_fixed_cost() for _ in range(max(3, args.repeats))]
    new = sweep("1", ["clean"], args.device)
    fixed_cpu = [m["cpu_s"] - m["probe_s"] for m in new["models"]]
    fixed_wall = [m["wall_s"] - m["probe_s"] for m in new["models"]]
    one_off = statistics.median(worker_start()[0] for _ in range(3))
    old_cpu, old_wall = statistics.median(o[0] for o in old), statistics.median(o[1] for o in old)
    print(f"per-model fixed cost of a --probes clean audit ({N_SAMPLES} samples), median:")
    print(f"  old path (a process per model): {old_cpu:.2f} CPU s, {old_wall:.2f} wall s")
    print(f"  worker path (a forked child):   {statistics.median(fixed_cpu):.2f} CPU s, "
          f"{statistics.median(fixed_wall):.2f} wall s; paid once per worker: its start, {one_off:.2f} CPU s "
          f"({len({m['worker'] for m in new['models']})} worker for the 8 models)")
    print(f"  ratio old / worker (CPU): {old_cpu / statistics.median(fixed_cpu):.1f}")


if __name__ == "__main__":
    main()
