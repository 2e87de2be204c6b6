"""DigitsCNN: the small ReLU CNN behind robaudit's embedded demo (8×8 grayscale digits).

It is piecewise linear (conv, ReLU, max-pool, linear), so its input Hessian is PSD with
rank ≤ 9 — the case Yao et al.'s Theorem 1 covers. Use it with
``--arch examples/digits_cnn.py:DigitsCNN``.
"""
from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Input N×1×8×8 (normalised pixels), output N×num_classes logits."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
