"""Fixtures of the plugin's tests: one torch thread, and the tiny model on real digits."""
from __future__ import annotations

import pytest
import torch
from adv_landscape_helpers import tiny_setup

from robaudit.plugin import AuditModel


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny() -> tuple[AuditModel, object]:
    """The trained tiny model (audit model) and 24 digits test samples."""
    torch.set_num_threads(1)
    return tiny_setup()
