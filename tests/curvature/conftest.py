"""Fixtures for the curvature tests (the oracle itself is in ``curvature_oracle.py``)."""
from __future__ import annotations

import pytest

from curvature_oracle import Oracle, build_oracle


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """OracleNet as an audit model on 60 digits test samples, with its dense float64 Hessian."""
    return build_oracle()
