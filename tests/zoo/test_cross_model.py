"""The cross-model analysis shared by ``compare`` and ``zoo``: declared indicators only, Spearman bootstrap
intervals and partial correlations, against scipy/numpy computed here."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from robaudit.analysis.compare import Run, compare_runs


def _run(i: int, clean: float, trace: float, robust: float) -> Run:
    est = lambda v: {"value": v, "low": max(0.0, v - 0.05), "high": min(1.0, v + 0.05), "n": 100}  # noqa: E731
    results = {
        "model": {"source": f"m{i}.pt"}, "data": {"source": "digits", "n_used": 100},
        "probes": {
            "clean": {"status": "ok", "summary": {"accuracy": est(clean), "n": 100}, "columns": {}},
            "curvature.trace": {"status": "ok", "columns": {}, "summary": {
                "trace": est(trace), "trace_set": "audit",
                "sets": {"audit": {"full": {"trace": est(trace), "hvps": 10 + i, "n": 100}},
                         "train": {"full": {"trace": est(2 * trace + i), "hvps": 7, "n": 50}}}}},
            "attack.fgsm": {"status": "ok", "columns": {}, "summary": {
                "robust_accuracy": {"0.1": est(robust)}, "mean_loss": {"0.1": 1.0 + i}, "n": 100}},
        },
    }
    return Run(Path(f"m{i}"), results, {}, [], f"m{i}")


def _oracle_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (rx, ry)]
    return float(np.corrcoef(res[0], res[1])[0, 1])


def test_only_declared_values_are_tested_with_intervals_and_partials() -> None:
    rng = np.random.default_rng(3)
    n = 5
    clean = rng.uniform(0.8, 0.99, n)
    trace = rng.uniform(10, 100, n)
    robust = np.clip(0.9 - trace / 200 + rng.normal(0, 0.05, n), 0, 1)
    params = rng.integers(1000, 5000, n).astype(float)
    runs = [_run(i, clean[i], trace[i], robust[i]) for i in range(n)]
    out = compare_runs(runs, seed=0, controls={"parameter count": list(params)})
    rows = {(r["indicator"], r["outcome"]): r for r in out["correlations"]}
    audit, train = "curvature.trace sets › audit › full › trace", "curvature.trace sets › train › full › trace"
    assert {k[0] for k in rows} == {audit, train}  # every Hessian set, and no hvps / n / mean_loss
    assert {k[1] for k in rows} == {"attack.fgsm robust_accuracy › 0.1"}
    row = rows[(audit, "attack.fgsm robust_accuracy › 0.1")]
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(trace, robust).statistic)
    assert row["kendall_tau"] == pytest.approx(stats.kendalltau(trace, robust).statistic)
    assert row["spearman_low"] <= row["spearman_rho"] <= row["spearman_high"]
    for name, z in (("clean accuracy", clean), ("parameter count", params)):
        part = row["partial"][name]
        assert part["rho"] == pytest.approx(_oracle_partial(trace, robust, z))
        assert part["low"] <= part["rho"] <= part["high"] and part["n_models"] == n
    assert compare_runs(runs[:3], seed=0)["correlations"][0]["partial"] == {}  # fewer than 4 models: no partial


def robaudit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, with ``env`` added to the environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "robaudit", *args], cwd=cwd, env=env, capture_output=True, text=True)


# --dry-run: the run's own cost estimate ---------------------------------------------------------------------------

PASS_KEYS = ("forward", "backward", "hvp", "fwd_bwd_equivalents")


def test_dry_run_estimates_each_model_as_its_run_recorded(swept, tmp_path: Path) -> None:
    """Per model, the dry run's passes and HVPs equal the ``cost_estimate`` its real audit recorded (probe by probe
    and in total); its seconds are passes × its own timed forward+backward; the zoo total is their sum."""
    from robaudit.zoo.dry_run import dry_run
    from robaudit.zoo.manifest import read_manifest

    manifest, out, _ = swept
    rows = dry_run(read_manifest(manifest), 1)
    assert [r["status"] for r in rows] == ["ok"] * 3
    for row in rows:
        recorded = json.loads((out / "models" / row["name"] / "results.json").read_text())["cost_estimate"]
        estimate = row["cost_estimate"]
        assert estimate["n_samples"] == recorded["n_samples"] and estimate["omitted"] == recorded["omitted"]
        assert set(estimate["probes"]) == set(recorded["probes"])
        for probe, cost in recorded["probes"].items():
            mine = estimate["probes"][probe]
            if cost is None:  # a probe that declares no cost, in both
                assert mine is None, probe
                continue
            assert {k: mine[k] for k in PASS_KEYS} == {k: cost[k] for k in PASS_KEYS}, probe
        assert {k: estimate["total"][k] for k in PASS_KEYS} == {k: recorded["total"][k] for k in PASS_KEYS}
        assert estimate["total"]["backward"] > 0 and estimate["seconds_per_fwd_bwd"] > 0  # attack.fgsm's gradient
        assert estimate["total"]["seconds"] == pytest.approx(
            estimate["total"]["fwd_bwd_equivalents"] * estimate["seconds_per_fwd_bwd"], rel=1e-12)

    proc = robaudit("zoo", str(manifest), "--out", str(tmp_path / "dry"), "--dry-run", cwd=manifest.parent)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "dry").exists()
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for row in rows:  # the printed passes are the estimate's (the timing differs between processes)
        total = row["cost_estimate"]["total"]
        printed = [float(v.replace(",", "")) for v in lines[row["name"]][4:7]]
        assert printed == [round(total[k]) for k in ("forward", "backward", "hvp")]
    zoo_total = proc.stdout.split("zoo total", 1)[1].split()
    assert zoo_total[0] == "3/3" and [float(v.replace(",", "")) for v in zoo_total[3:6]] == [
        round(sum(r["cost_estimate"]["total"][k] for r in rows)) for k in ("forward", "backward", "hvp")]


# --timm PATTERN: expansion through timm's registry, offline ---------------------------------------------------------

CACHED = ("test_resnet.r160_in1k", "test_efficientnet.r160_in1k")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path) -> Path:
    """A Hugging Face Hub cache laid out as huggingface_hub does (blobs/, refs/main, snapshots/<commit>/), holding
    seeded safetensors weights for the CACHED timm models only."""
    import timm
    from safetensors.torch import save_file

    cache = root / "hf" / "hub"
    for k, name in enumerate(CACHED):
        torch.manual_seed(k)
        state = {key: v.contiguous() for key, v in timm.create_model(name.split(".")[0], num_classes=1000).state_dict().items()}
        save_file(state, str(root / "w.safetensors"))
        content = (root / "w.safetensors").read_bytes()
        repo = cache / f"models--timm--{name}"
        digest = hashlib.sha256(content).hexdigest()
        (repo / "blobs").mkdir(parents=True)
        (repo / "blobs" / digest).write_bytes(content)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)
        (repo / "snapshots" / COMMIT).mkdir(parents=True)
        (repo / "snapshots" / COMMIT / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / digest)
    return cache


def test_timm_pattern_sweeps_the_registry_matches_offline(tmp_path: Path) -> None:
    """``--timm 'test_*' --pretrained``: every registry match is a model; the two with cached weights audit through
    timm's loader, the others are recorded as failed with the one-line reason, and the dry run agrees."""
    import timm

    cache = _hub_cache(tmp_path)
    expected = timm.list_models("test_*", pretrained=True)
    assert set(CACHED) < set(expected) and len(expected) > len(CACHED)
    data = tmp_path / "imagenet_like.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(0, 1, (4, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 1000, 4),
             num_classes=np.array(1000))
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    args = ("zoo", "--timm", "test_*", "--pretrained", "--dataset", str(data), "--probes", "clean", "--workers", "2")

    dry = robaudit(*args, "--out", "dry", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 2, dry.stderr  # uncached weights are the user's input to fix
    lines = {line.split()[0]: line for line in dry.stdout.splitlines() if line.strip()}
    assert set(expected) <= set(lines) and not (tmp_path / "dry").exists()
    for name in expected:
        assert lines[name].split()[1] == ("ok" if name in CACHED else "failed"), lines[name]

    proc = robaudit(*args, "--out", "zoo", cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    document = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    rows = {r["name"]: r for r in document["models"]}
    assert list(rows) == expected and document["manifest"] is None
    for name in CACHED:
        results = json.loads((tmp_path / "zoo" / "models" / name / "results.json").read_text())
        assert rows[name]["status"] == "ok" and rows[name]["source"] == f"timm:{name}" and rows[name]["pretrained"]
        assert results["model"]["weights"]["repo_id"] == f"timm/{name}"
        assert results["model"]["weights"]["revision"] == COMMIT
    for name in set(expected) - set(CACHED):
        row = rows[name]
        assert row["status"] == "failed" and row["exit_code"] == 2, row
        assert "not in the Hugging Face cache" in row["reason"] and "\n" not in row["reason"], row["reason"]
        assert f"zoo: {name} failed (exit 2): " in proc.stderr
