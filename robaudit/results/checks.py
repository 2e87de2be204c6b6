"""Check a ``results.json`` as it is read: strict JSON, a known schema version, the shape readers rely on.

A results file is data that may come from anywhere (a pull request, a downloaded baseline), so
every reader (``report``, ``gate``, ``compare``, ``--resume``) goes through :func:`parse_results`:

- the bytes must be UTF-8 and strict JSON: robaudit writes non-finite numbers as ``null``, so a
  ``NaN`` or ``Infinity`` literal means the file was not written by robaudit as it stands;
- the top level must be an object with a ``schema_version`` no newer than the one this robaudit
  writes (``store.SCHEMA_VERSION``);
- the sections that readers index into must have their documented types: ``probes`` an object
  of objects, ``flags`` a list of objects, and so on (the full schema is ``schema.json``).

Every problem is one :class:`~robaudit.errors.UsageError` line (exit 2) naming the file, where in
it, and what was found.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robaudit.errors import UsageError

_OBJECT_SECTIONS = ("config", "environment", "model", "data", "preflight", "analysis", "per_sample")
_PROBE_OBJECTS = ("config", "summary", "error", "higher_is_better")
_REGENERATE = "re-run the audit that wrote it ('robaudit run ... --out DIR') to regenerate it"


class _NonFinite(float):
    """A ``NaN`` / ``Infinity`` literal, remembered so its place in the file can be named."""

    def __new__(cls, literal: str) -> "_NonFinite":
        obj = super().__new__(cls, literal.replace("Infinity", "inf"))
        obj.literal = literal
        return obj

    literal: str


def parse_results(raw: bytes, path: Path) -> dict[str, Any]:
    """Decode and check the bytes of a ``results.json``.

    Args:
        raw: the file's bytes.
        path: the file, for messages.

    Returns:
        the results, a dict.

    Raises:
        UsageError: not UTF-8, not strict JSON (truncated, a NaN literal, …), not an object, a
            missing or newer ``schema_version``, or a section of the wrong type.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start} is {raw[exc.start:exc.start + 1]!r})",
                         fix=_REGENERATE) from None
    try:
        results = json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        truncated = "; the file looks truncated" if not text.rstrip().endswith(("}", "]")) else ""
        raise UsageError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}){truncated}",
                         fix=_REGENERATE) from None
    except RecursionError:
        raise UsageError(f"{path} is nested too deeply to be a robaudit results file", fix=_REGENERATE) from None
    found = _first_non_finite(results, ())
    if found is not None:
        where, literal = found
        raise UsageError(f"{path} holds {literal} at {_where(where)}; JSON has no {literal} and robaudit writes "
                         "non-finite numbers as null, so this file was not written by robaudit as it stands",
                         fix=_REGENERATE)
    if not isinstance(results, dict):
        raise UsageError(f"{path} holds {_kind(results)}, not a JSON object", fix=_REGENERATE)
    check_schema_version(results.get("schema_version"), path)
    _check_shape(results, path)
    return results


def check_schema_version(version: Any, path: Path) -> None:
    """Refuse a missing, malformed or newer ``schema_version`` (one line, exit 2).

    A file is read when its version is at most the one this robaudit writes
    (:data:`robaudit.results.store.SCHEMA_VERSION`).
    """
    from robaudit.results.store import SCHEMA_VERSION

    if not isinstance(version, str):
        what = "has no schema_version" if version is None else f"has schema_version {version!r}, not a string"
        raise UsageError(f"{path} {what}, so it is not a robaudit results file", fix=_REGENERATE)
    mine, theirs = _version_tuple(SCHEMA_VERSION), _version_tuple(version)
    if theirs is None:
        raise UsageError(f"{path} has schema_version {version!r}; expected MAJOR.MINOR such as {SCHEMA_VERSION!r}",
                         fix=_REGENERATE)
    if theirs > mine:
        from robaudit import __version__

        raise UsageError(f"{path} has results schema {version}, newer than the schema {SCHEMA_VERSION} that "
                         f"robaudit {__version__} understands",
                         fix="upgrade robaudit (pip install --upgrade robaudit) to read it")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def _check_shape(results: dict[str, Any], path: Path) -> None:
    def refuse(where: tuple[Any, ...], value: Any, want: str) -> UsageError:
        return UsageError(f"{path}: {_where(where)} is {_kind(value)}, not {want}", fix=_REGENERATE)

    for key in _OBJECT_SECTIONS:
        if results.get(key) is not None and not isinstance(results[key], dict):
            raise refuse((key,), results[key], "an object")
    probes = results.get("probes", {})
    if not isinstance(probes, dict):
        raise refuse(("probes",), probes, "an object of probe entries")
    for name, entry in probes.items():
        if not isinstance(entry, dict):
            raise refuse(("probes", name), entry, "an object")
        for key in _PROBE_OBJECTS:
            value = entry.get(key)
            if value is not None and not isinstance(value, dict) and not (key == "higher_is_better" and isinstance(value, bool)):
                raise refuse(("probes", name, key), value, "an object")
        _check_flags(entry.get("flags", []), ("probes", name, "flags"), path)
    _check_flags(results.get("flags", []), ("flags",), path)
    gate = results.get("gate")
    if gate is not None and not isinstance(gate, dict):
        raise refuse(("gate",), gate, "an object or null")


def _check_flags(flags: Any, where: tuple[Any, ...], path: Path) -> None:
    """Each flag must be an object with a string ``id`` and a known ``severity``: a gate's ``min-severity`` rule
    would pass over a flag whose severity is missing or misspelt (``"ERROR"``), failing open."""
    from robaudit.probes.base import Severity

    if not isinstance(flags, list):
        raise UsageError(f"{path}: {_where(where)} is {_kind(flags)}, not a list of flag objects", fix=_REGENERATE)
    known = [s.value for s in Severity]
    for i, flag in enumerate(flags):
        if not isinstance(flag, dict):
            raise UsageError(f"{path}: {_where((*where, i))} is {_kind(flag)}, not a flag object "
                             "({id, severity, source, message})", fix=_REGENERATE)
        if not isinstance(flag.get("id"), str) or flag.get("severity") not in known:
            raise UsageError(f"{path}: {_where((*where, i))} has id {_kind(flag.get('id'))} and severity "
                             f"{_kind(flag.get('severity'))}; a flag needs a string id and a severity of "
                             f"{', '.join(known)}", fix=_REGENERATE)


def _first_non_finite(node: Any, where: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    stack = [(node, where)]
    while stack:
        value, at = stack.pop()
        if isinstance(value, _NonFinite):
            return at, value.literal
        if isinstance(value, dict):
            stack.extend((v, (*at, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, (*at, i)) for i, v in reversed(list(enumerate(value))))
    return None


def _where(path: tuple[Any, ...]) -> str:
    """``probes › clean › summary › accuracy`` (the gate's and the report's notation); ``[3]`` for list items."""
    if not path:
        return "the top level"
    return " › ".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "…"
        return f"the string {shown!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"
