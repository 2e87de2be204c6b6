"""Builders for the plugin's tests (a uniquely named module, so it cannot clash with robaudit's own
``tests/helpers.py`` or ``conftest.py`` when both test trees run in one pytest session).

Probe contexts come from :func:`robaudit.plugin.make_test_context`; robaudit's own probes, which the
tests compare with, from the registry (built-ins only).
"""
from __future__ import annotations

import torch
from torch import nn

from robaudit.plugin import ProbeRegistry

THREADS = 2
BUILTIN = ProbeRegistry(autoload_plugins=False)
"""robaudit's own probes, whatever else is installed."""


def tiny_cnn(classes: int = 5, seed: int = 0) -> nn.Module:
    """A piecewise-linear CNN on 1×6×6 inputs (conv, ReLU, max-pool, linear)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 3 * 3, classes))
