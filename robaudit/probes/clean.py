"""Clean accuracy: how often the model is right on the unperturbed audit samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from robaudit.probes.cost import Cost
from robaudit.threat_model import ThreatModel
from robaudit.probes.base import Column, Probe, ProbeContext, ProbeResult, check_level, wilson_interval


class CleanAccuracy(Probe):
    """Top-1 accuracy with a Wilson 95 % interval, per-class accuracy and per-sample outcomes.

    Per sample: ``pred`` (argmax class), ``correct`` (0/1), ``confidence`` (p_top, the
    largest softmax probability), ``p_true`` (softmax probability of the true class),
    ``loss`` (cross-entropy in nats) and ``logit_margin`` (Yu's decision function
    d(x) = z_y − max_{i≠y} z_i in logit units; positive when correct).

    Artifact ``confusion``: ``{"num_classes": K, "cells": [[true, predicted, count], ...]}``, the
    nonzero cells of the K×K confusion matrix in row-major order (at most one per sample).
    """

    name = "clean"
    version = "2"  # 2: the confusion matrix is stored as its nonzero cells
    description = "clean top-1 accuracy (Wilson CI), per-class accuracy, per-sample loss, confidence and logit margin"
    standard = True
    higher_is_better: ClassVar = {("accuracy",): True, ("mean_loss",): False}
    summary_keys: ClassVar = (("accuracy",), ("n",), ("mean_loss",), ("mean_confidence",), ("per_class_accuracy", "*"))
    columns: ClassVar = {
        "pred": Column("predicted class"),
        "correct": Column("clean prediction correct"),
        "confidence": Column("confidence p_top", "confounder", "probability", scale_invariant=False),
        "p_true": Column("probability of the true class", "other", "probability", scale_invariant=False),
        "loss": Column("cross-entropy loss J", "indicator", "nats", scale_invariant=False),
        "logit_margin": Column("logit margin d(x)", "indicator", "logits", scale_invariant=False),
    }

    @dataclass
    class Config:
        """Knobs of the clean-accuracy probe."""

        ci_level: float = field(default=0.95, metadata={"unit": "probability (two-sided coverage)"})
        """Coverage of the Wilson interval on accuracy."""

        def __post_init__(self) -> None:
            check_level(self.ci_level, "ci_level")

    @classmethod
    def estimate_cost(cls, config: Any, n_samples: int, threat_model: ThreatModel,
                      selected: frozenset[str] = frozenset()) -> Cost:
        """No model pass of its own: it reads the shared clean logits."""
        return Cost()

    def run(self, ctx: ProbeContext) -> ProbeResult:
        logits = ctx.clean_logits().double()
        y = ctx.data.y
        n, k = logits.shape
        probs = logits.softmax(dim=1)
        pred = logits.argmax(dim=1)
        correct = pred == y
        loss = F.cross_entropy(logits, y, reduction="none")
        true_logit = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.scatter(1, y[:, None], float("-inf"))
        margin = true_logit - others.max(dim=1).values

        per_class = []
        for c in range(k):
            mask = y == c
            count = int(mask.sum())
            per_class.append(None if count == 0 else float(correct[mask].double().mean()))
        # Sparse: at most n nonzero cells, so a 1,000-class model writes n triples, not 10⁶ zeros.
        cells, counts = torch.stack([y, pred], 1).unique(dim=0, return_counts=True)
        confusion = {"num_classes": k, "cells": [[int(t), int(p), int(c)] for (t, p), c in zip(cells.tolist(), counts.tolist())]}

        return ProbeResult(
            summary={
                "accuracy": wilson_interval(int(correct.sum()), n, self.config.ci_level),
                "n": n,
                "mean_loss": float(loss.mean()),
                "mean_confidence": float(probs.max(dim=1).values.mean()),
                "per_class_accuracy": per_class,
            },
            per_sample={
                "pred": pred.numpy(),
                "correct": correct.numpy(),
                "confidence": probs.max(dim=1).values.numpy(),
                "p_true": probs.gather(1, y[:, None]).squeeze(1).numpy(),
                "loss": loss.numpy(),
                "logit_margin": margin.numpy(),
            },
            artifacts={"confusion": confusion},
        )
