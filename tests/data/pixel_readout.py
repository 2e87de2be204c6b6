"""A 1,000-class linear model whose logits are known: logit j is input value j of the flattened image.

Loaded through ``--arch tests/data/pixel_readout.py:PixelReadout`` with the weights written
by :func:`imagenet_writers.write_pixel_readout`; with ``--mean 0,0,0 --std 1,1,1`` the logits
are exactly the first 1,000 values of the flattened 3×19×19 [0, 1] image.
"""
from __future__ import annotations

import torch
from torch import nn

SIDE = 19
FEATURES = 3 * SIDE * SIDE


class PixelReadout(nn.Module):
    """``Linear(3·19·19 → num_classes)``; the test sets its weights to ``[I | 0]``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))
