"""What ``--resume`` checks before it reuses an earlier run's results.

A saved probe result is reused only when it was computed on the same audit model and the same
samples: otherwise the finished file would mix numbers from two audits under one model record.
Everything that changes what the audit model computes is compared (the weights' identity, the
architecture, the normalisation folded into it, which weights were loaded from the file), and the
samples are compared by their pixels and labels, not only their ids. The saved entries are data
that may have been edited, so each one that is to be reused must also have the shape the reuse
relies on; one that does not is run again, never half read.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from robaudit.probes.base import Severity

# The provenance fields that decide what the audit model computes (``results.json`` › model).
_MODEL_IDENTITY: tuple[tuple[str, ...], ...] = (
    ("source",), ("checkpoint_sha256",), ("state_sha256",), ("arch",), ("arch_kwargs",), ("num_classes",),
    ("in_channels",), ("normalisation", "mean"), ("normalisation", "std"), ("load_report", "weights_key"),
    ("load_report", "ema"), ("load_report", "strict"), ("load_report", "missing_keys"),
    ("load_report", "unexpected_keys"), ("load_report", "mismatched_shapes"), ("weights", "sha256"),
)
# Not compared: ``module_swaps`` and ``fused_attention``, which follow from whether a selected probe needs second
# derivatives (exact-equivalent modules, attention on the math kernel): the same function, so a resume that adds a
# curvature probe continues the audit, as one with another --batch-size or --threads does.
# The data provenance fields that decide which numbers the samples are (besides their ids).
_DATA_IDENTITY: tuple[tuple[str, ...], ...] = (("samples_sha256",), ("conversions",), ("class_restriction",))
_MISSING = object()
_ARCH_FILE = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_.]*)$")


def _dig(record: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(record, Mapping):
            return None if record is None else _MISSING
        record = record.get(key, _MISSING)
        if record is _MISSING:
            return _MISSING
    return record


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not recorded"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _spelling_free(path: tuple[str, ...], value: Any, record: Any) -> Any:
    """``value`` of field ``path`` without how it was spelt: a file's path (relative, absolute, from another
    folder; a checkpoint file is identified by its sha256, compared on its own, an ``--arch`` file by its name and
    class), or ``num_classes`` stated in ``--arch-kwargs``/``--num-classes`` as the count it was found to be
    (``num_classes`` is compared on its own)."""
    if path == ("source",) and isinstance(_dig(record, ("checkpoint_sha256",)), str):
        return None
    if path == ("arch_kwargs",) and isinstance(value, Mapping) and "num_classes" in value \
            and value["num_classes"] == _dig(record, ("num_classes",)):
        return {k: v for k, v in value.items() if k != "num_classes"}
    if path == ("arch",) and isinstance(value, str) and (m := _ARCH_FILE.match(value)):
        return f"{PurePath(m['file']).name}:{m['name']}"
    return value


def _difference(old: Any, new: Any, fields: tuple[tuple[str, ...], ...]) -> str | None:
    for path in fields:
        before, now = _dig(old, path), _dig(new, path)
        if before is _MISSING and now is _MISSING:
            continue
        if _spelling_free(path, before, old) != _spelling_free(path, now, new):
            return f"{'.'.join(path)} is {_show(before)} there and {_show(now)} now"
    return None


def model_difference(old: Any, new: Mapping[str, Any]) -> str | None:
    """The first field of ``results.json › model`` that differs between a saved run and this one, as
    ``"normalisation.mean is [0.3] there and [0.5] now"``; ``None`` when the audit models are the same."""
    return _difference(old, new, _MODEL_IDENTITY)


def data_difference(old: Any, new: Mapping[str, Any]) -> str | None:
    """Like :func:`model_difference`, for ``results.json › data`` (the samples' sha256, conversions, a class
    restriction)."""
    return _difference(old, new, _DATA_IDENTITY)


def entry_problem(name: str, entry: Mapping[str, Any], columns: Mapping[str, Any]) -> str | None:
    """Why the saved ``ok`` entry of probe ``name`` cannot be reused as it stands (``None``: it can).

    Args:
        name: the probe's name (its key under ``probes``).
        entry: its saved ``results.json`` entry.
        columns: the saved per-sample table's columns (name → values).
    """
    if entry.get("name", name) != name:
        return f"its entry is named {entry.get('name')!r}"
    for key in ("summary", "artifacts", "columns", "inputs"):
        if not isinstance(entry.get(key), Mapping):
            return f"its {key} is missing or not an object"
    listed = entry.get("per_sample_columns")
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        return "its per_sample_columns is missing or not a list of column names"
    absent = [c for c in listed if c not in columns]
    if absent:
        return f"per_sample.csv lacks its column(s) {', '.join(absent[:3])}"
    if not isinstance(entry.get("notes", []), list):
        return "its notes is not a list"
    flags = entry.get("flags", [])
    if not isinstance(flags, list):
        return "its flags is not a list"
    severities = {s.value for s in Severity}
    for flag in flags:
        if not (isinstance(flag, Mapping) and all(isinstance(flag.get(k), str) for k in ("id", "message", "source"))
                and flag.get("severity") in severities and isinstance(flag.get("docs", ""), str)):
            return "a flag of it lacks its id, severity, message or source"
    return None
