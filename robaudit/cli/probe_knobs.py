"""A probe's knobs for ``robaudit probes NAME`` and ``robaudit probes --json``: name, type, default,
unit and description, read from its ``Config`` dataclass (units from ``field(metadata={"unit": …})``,
descriptions from the attribute docstrings under each field)."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

from robaudit.results.serialise import to_jsonable

KNOB_KEYS = ("name", "type", "default", "unit", "description")
"""The keys of each knob in ``robaudit probes --json`` (a stable schema)."""


def knob_rows(config_cls: type) -> list[dict[str, Any]]:
    """One dict per knob of ``config_cls`` with :data:`KNOB_KEYS`: ``type`` as text (``int``,
    ``tuple[float, ...] | None``), ``default`` JSON-able (``None`` when it has none), ``unit`` the
    field's ``metadata["unit"]`` or ``""``, ``description`` its attribute docstring or ``""``."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an unresolvable annotation in a plugin: fall back to the raw annotation text
        hints = {}
    docs = attribute_docs(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append({"name": f.name, "type": _type_text(hints.get(f.name, f.type)), "default": to_jsonable(default),
                     "unit": str(f.metadata.get("unit", "")), "description": docs.get(f.name, "")})
    return rows


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal under each annotated field, over the MRO
    (subclass first), whitespace collapsed."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                out.setdefault(stmt.target.id, " ".join(nxt.value.value.split()))
    return out


def _type_text(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")
