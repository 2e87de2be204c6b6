"""Shared fixtures for the data-loading tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# dataset_writers.py sits next to this file; make it importable under any pytest import mode.
# Appended, not prepended, so that this folder never shadows another test folder's modules.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> None:
    """The test machine has 2 CPU cores."""
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a data-loading test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def _isolated_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never read a real dataset cache: the default data directory points at an empty folder."""
    monkeypatch.setenv("ROBAUDIT_DATA_DIR", str(tmp_path_factory.mktemp("default_data_dir")))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
