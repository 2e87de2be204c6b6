"""The analysis stage on synthetic per-sample tables with known relations."""
from __future__ import annotations

import numpy as np

from robaudit.analysis.indicators import AnalysisConfig, analyse

FAST = AnalysisConfig(n_bootstrap=300, n_permutations=300)


def _results(roles: dict[str, tuple[str, str]]) -> dict:
    return {"probes": {"p": {"status": "ok", "columns": {
        col: {"label": label, "role": role, "unit": "", "scale_invariant": None} for col, (label, role) in roles.items()}}}}


def _tests_by_indicator(analysis: dict) -> dict[str, dict]:
    return {t["indicator"]: t for t in analysis["tests"]}


def test_known_monotone_relation_gets_a_directional_verdict() -> None:
    rng = np.random.default_rng(0)
    n = 300
    grad = rng.lognormal(size=n)
    cols = {"clean/correct": np.ones(n), "g/grad": grad, "g/noise": rng.normal(size=n),
            "a/min_eps": 0.1 / grad * np.exp(0.2 * rng.normal(size=n))}
    roles = {"g/grad": ("input-gradient norm", "indicator"), "g/noise": ("noise", "indicator"),
             "a/min_eps": ("minimal PGD ε", "robustness")}
    out = analyse(_results(roles), cols, seed=0, config=FAST)
    tests = _tests_by_indicator(out)
    assert tests["g/grad"]["estimate"]["high"] < -0.8
    assert tests["g/grad"]["verdict"].startswith(
        "On this model, a larger input-gradient norm predicts a smaller minimal PGD ε (ρ = -0.9")
    assert "too weak" in tests["g/noise"]["verdict"]
    assert out["method"]["multiple_testing"] == "Benjamini–Hochberg"


def test_confounded_relation_vanishes_after_partialling() -> None:
    rng = np.random.default_rng(1)
    n = 400
    conf = rng.normal(size=n)
    cols = {"c/confidence": conf, "g/curv": -conf + 0.4 * rng.normal(size=n),
            "a/min_eps": conf + 0.4 * rng.normal(size=n)}
    roles = {"c/confidence": ("confidence", "confounder"), "g/curv": ("λ1^x", "indicator"),
             "a/min_eps": ("minimal ε", "robustness")}
    (test,) = analyse(_results(roles), cols, seed=0, config=FAST)["tests"]
    assert test["estimate"]["value"] < -0.6
    assert test["partial"]["low"] <= 0 <= test["partial"]["high"]
    assert "after controlling for confidence" in test["verdict"]


def test_binary_success_uses_auroc_and_clean_correct_samples_only() -> None:
    rng = np.random.default_rng(2)
    n = 300
    margin = rng.lognormal(size=n)
    success = (margin + 0.3 * rng.normal(size=n) < 1.0).astype(float)
    correct = np.ones(n)
    correct[:30] = 0
    cols = {"clean/correct": correct, "g/margin": margin, "a/success": success}
    roles = {"g/margin": ("linearised margin", "indicator"), "a/success": ("PGD success at ε = 0.1", "attack_success")}
    (test,) = analyse(_results(roles), cols, seed=0, config=FAST)["tests"]
    assert test["kind"] == "auroc" and test["n"] == 270
    assert test["estimate"]["value"] < 0.2
    assert "a smaller linearised margin predicts PGD success" in test["verdict"]


def test_too_few_samples_is_said_plainly() -> None:
    cols = {"g/x": np.arange(10.0), "a/y": np.arange(10.0)}
    roles = {"g/x": ("x", "indicator"), "a/y": ("y", "robustness")}
    (test,) = analyse(_results(roles), cols, seed=0, config=FAST)["tests"]
    assert test["estimate"] is None and "too few usable samples (n = 10" in test["verdict"]


def test_no_outcome_means_no_analysis() -> None:
    cols = {"g/x": np.arange(50.0)}
    assert analyse(_results({"g/x": ("x", "indicator")}), cols, seed=0) is None


def test_seeded_analysis_reproduces() -> None:
    rng = np.random.default_rng(3)
    cols = {"g/x": rng.normal(size=100), "a/y": rng.normal(size=100)}
    roles = {"g/x": ("x", "indicator"), "a/y": ("y", "robustness")}
    assert analyse(_results(roles), cols, seed=5, config=FAST) == analyse(_results(roles), cols, seed=5, config=FAST)
