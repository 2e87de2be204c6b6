"""Calibration: does the model's confidence match its accuracy?"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch.nn.functional as F

from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel
from robaudit.probes.base import Column, Estimate, Flag, Probe, ProbeContext, ProbeResult, Severity, check_level


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence among ``bins`` equal-width bins (0, 1/bins], …, ((bins−1)/bins, 1]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray | float:
    """ECE = Σ_b (n_b/N)·|acc_b − conf_b| over the last axis of arrays shaped (..., N).

    Vectorised over leading axes (as ``scipy.stats.bootstrap`` needs); a float for 1-D input.
    """
    conf = np.atleast_2d(confidence)
    corr = np.atleast_2d(correct)
    which = bin_index(conf, bins)
    n = conf.shape[-1]
    total = np.zeros(conf.shape[:-1])
    for b in range(bins):
        mask = which == b
        count = mask.sum(axis=-1)
        safe = np.maximum(count, 1)
        total += count / n * np.abs((corr * mask).sum(axis=-1) / safe - (conf * mask).sum(axis=-1) / safe)
    return total if np.ndim(confidence) > 1 else float(total[0])


class Calibration(Probe):
    """Expected calibration error (ECE, with a bootstrap CI), maximum calibration error,
    negative log-likelihood and Brier score, plus the reliability-diagram data.

    Units: ECE and MCE are in probability units (0–1); NLL in nats per sample; Brier is
    the multi-class Brier score Σ_k (p_k − 1[k=y])², in [0, 2].
    """

    name = "calibration"
    version = "1"
    description = "expected calibration error (bootstrap CI), NLL, Brier score and reliability diagram"
    standard = True
    higher_is_better: ClassVar = {("ece",): False, ("mce",): False, ("nll",): False, ("brier",): False}
    summary_keys: ClassVar = (("ece",), ("mce",), ("nll",), ("brier",), ("confidence_minus_accuracy",), ("bins",))
    columns: ClassVar = {"brier": Column("Brier score", "other", "", scale_invariant=False)}

    @dataclass
    class Config:
        """Knobs of the calibration probe."""

        bins: int = field(default=15, metadata={"unit": "bins"})
        """Number of equal-width confidence bins."""
        bootstrap_resamples: int = field(default=1000, metadata={"unit": "resamples"})
        """Bootstrap resamples for the ECE interval (percentile method)."""
        ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
        """Coverage of the ECE interval."""
        overconfidence_threshold: float = field(default=0.1, metadata={"unit": "probability (confidence − accuracy)"})
        """Raise the ``overconfident`` flag when mean confidence − accuracy exceeds this."""

        def __post_init__(self) -> None:
            if self.bins < 1:
                raise ValueError(f"bins must be at least 1, got {self.bins}")
            if self.bootstrap_resamples < 10:
                raise ValueError(f"bootstrap_resamples must be at least 10, got {self.bootstrap_resamples}")
            check_level(self.ci_level, "ci_level")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost:
        """No model pass of its own: it reads the shared clean logits."""
        return Cost()

    def run(self, ctx: ProbeContext) -> ProbeResult:
        from scipy.stats import bootstrap  # here: scipy.stats imports scipy.sparse, which `robaudit validate` must not

        cfg = self.config
        logits = ctx.clean_logits().double()
        y = ctx.data.y
        probs = logits.softmax(dim=1)
        confidence = probs.max(dim=1).values.numpy()
        correct = (logits.argmax(dim=1) == y).numpy().astype(np.float64)
        onehot = F.one_hot(y, logits.shape[1]).double()
        brier = ((probs - onehot) ** 2).sum(dim=1).numpy()
        nll = F.cross_entropy(logits, y, reduction="none").numpy()

        ece = expected_calibration_error(confidence, correct, cfg.bins)
        n = len(y)
        if n >= 2:
            res = bootstrap(
                (confidence, correct),
                lambda c, k, axis=-1: expected_calibration_error(c, k, cfg.bins),
                paired=True, vectorized=True, n_resamples=cfg.bootstrap_resamples,
                confidence_level=cfg.ci_level, method="percentile", random_state=np.random.default_rng(ctx.seed),
            )
            ece_est = Estimate(ece, float(res.confidence_interval.low), float(res.confidence_interval.high),
                               cfg.ci_level, "bootstrap_percentile", n)
        else:
            ece_est = Estimate(ece, n=n)

        edges = np.linspace(0.0, 1.0, cfg.bins + 1)
        which = bin_index(confidence, cfg.bins)
        diagram = []
        for b in range(cfg.bins):
            mask = which == b
            diagram.append({
                "low": float(edges[b]), "high": float(edges[b + 1]), "count": int(mask.sum()),
                "confidence": float(confidence[mask].mean()) if mask.any() else None,
                "accuracy": float(correct[mask].mean()) if mask.any() else None,
            })
        gap = float(confidence.mean() - correct.mean())
        mce = max((abs(d["accuracy"] - d["confidence"]) for d in diagram if d["count"]), default=0.0)
        flags = []
        if gap > cfg.overconfidence_threshold:
            flags.append(Flag(
                "overconfident", Severity.INFO,
                f"mean confidence exceeds accuracy by {gap:.3f} (threshold {cfg.overconfidence_threshold})",
                self.name,
            ))
        return ProbeResult(
            summary={"ece": ece_est, "mce": mce, "nll": float(nll.mean()), "brier": float(brier.mean()),
                     "confidence_minus_accuracy": gap, "bins": cfg.bins},
            per_sample={"brier": brier},
            flags=flags,
            artifacts={"reliability_diagram": diagram},
        )

