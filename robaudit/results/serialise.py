"""Turn probe outputs into strict JSON: no NaN, no numpy scalars, no compound keys."""
from __future__ import annotations

import dataclasses
import math
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robaudit.probes.base import Estimate
from robaudit.results.store import display_path, printable


def to_jsonable(value: Any) -> Any:
    """Recursively convert ``value`` to JSON types.

    Non-finite floats become ``None`` (strict JSON has no NaN); :class:`Estimate` becomes
    ``{"value", "low", "high", "level", "method", "n"}``; numpy and torch scalars and arrays
    become Python numbers and lists; tuples become lists; paths become strings. Strings that are
    not valid Unicode (paths whose bytes are not UTF-8) are stored with ``\\xNN`` escapes.
    """
    if isinstance(value, Estimate):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {printable(str(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return display_path(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, str):
        return printable(value)
    if value is None:
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in results.json")
