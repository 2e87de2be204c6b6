"""Model loading: every model source becomes an :class:`AuditModel` (pixels in [0, 1] → logits).

Public API: :func:`load_model` with a :class:`ModelRequest`; the contract types
:class:`AuditModel`, :class:`ModelProvenance`, :class:`LoadReport`, :class:`Normalisation`
and :class:`DataConfig`; and the exact twice-differentiable replacements used for
second-order probes.
"""
from __future__ import annotations

from robaudit.models.audit_model import (
    AuditModel,
    DataConfig,
    LoadReport,
    ModelProvenance,
    Normalisation,
    first_conv_in_channels,
    same_state,
)
from robaudit.models.loader import load_model
from robaudit.models.request import ModelRequest
from robaudit.models.second_order import ReLU6Hardsigmoid, ReLU6Hardswish, swap_second_order_modules

__all__ = [
    "AuditModel",
    "DataConfig",
    "LoadReport",
    "ModelProvenance",
    "ModelRequest",
    "Normalisation",
    "ReLU6Hardsigmoid",
    "ReLU6Hardswish",
    "first_conv_in_channels",
    "load_model",
    "same_state",
    "swap_second_order_modules",
]
