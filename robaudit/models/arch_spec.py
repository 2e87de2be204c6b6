"""Parsing architecture strings: ``timm:NAME``, ``torchvision:NAME``, ``file.py:Class``, ``pkg.mod:Class``.

Names that come from a checkpoint (its metadata or its file name) are parsed with
:func:`parse_trusted_name`, which only ever yields timm or torchvision builders: a
checkpoint must never choose a Python file or module for robaudit to import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from robaudit.errors import ModelLoadError

ArchKind = Literal["timm", "torchvision", "file", "module"]

BUILDER_PREFIXES: tuple[str, ...] = ("timm", "torchvision")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ArchSpec:
    """One architecture, parsed.

    Attributes:
        kind: ``timm``, ``torchvision`` (a registered model name), ``file`` (a Python
            file) or ``module`` (an importable module).
        name: the model name (timm/torchvision), the file path or the module path.
        attr: the class or factory name inside the file or module (``None`` for builders).
    """

    kind: ArchKind
    name: str
    attr: str | None = None

    def __str__(self) -> str:
        if self.kind in BUILDER_PREFIXES:
            return f"{self.kind}:{self.name}"
        return f"{self.name}:{self.attr}"

    @property
    def is_builder(self) -> bool:
        """True for timm and torchvision names (no user code is imported)."""
        return self.kind in BUILDER_PREFIXES


def parse_arch(text: str) -> ArchSpec:
    """Parse a user-given ``--arch`` (or builder source) string.

    Raises:
        ModelLoadError: the string is empty or has none of the four accepted forms.
    """
    text = text.strip()
    if not text:
        raise ModelLoadError("the architecture string is empty", fix=_FORMS_FIX)
    for prefix in BUILDER_PREFIXES:
        if text.startswith(prefix + ":"):
            name = text[len(prefix) + 1 :].strip()
            if not name:
                raise ModelLoadError(f"'{text}' names no {prefix} model", fix=f"write {prefix}:NAME, e.g. {prefix}:resnet18")
            return ArchSpec(prefix, name)  # type: ignore[arg-type]
    if ":" not in text:
        raise ModelLoadError(
            f"architecture '{text}' has no 'kind:' prefix",
            fix=f"write timm:{text} or torchvision:{text} for a registered model, or path/to/file.py:ClassName",
        )
    left, attr = text.rsplit(":", 1)
    attr = attr.strip()
    if not _IDENTIFIER.match(attr):
        raise ModelLoadError(
            f"'{attr}' in architecture '{text}' is not a Python class or function name",
            fix="write path/to/file.py:ClassName or package.module:ClassName",
        )
    if _looks_like_path(left):
        return ArchSpec("file", left, attr)
    if _DOTTED.match(left):
        return ArchSpec("module", left, attr)
    raise ModelLoadError(f"cannot parse architecture '{text}'", fix=_FORMS_FIX)


def parse_trusted_name(value: object, origin: str) -> ArchSpec | str:
    """Parse an architecture name taken from a checkpoint (metadata or file stem).

    Returns:
        An :class:`ArchSpec` for ``timm:NAME``/``torchvision:NAME``, or the bare name as a
        ``str`` when no prefix was given (the caller tries timm, then torchvision).

    Raises:
        ModelLoadError: the value is not a string, or names a file or module path, which
        would make robaudit import code chosen by the checkpoint.
    """
    if not isinstance(value, str) or not value.strip():
        raise ModelLoadError(
            f"{origin} holds an architecture of type {type(value).__name__}, not a model name",
            fix="pass the architecture explicitly with --arch",
        )
    text = value.strip()
    for prefix in BUILDER_PREFIXES:
        if text.startswith(prefix + ":"):
            name = text[len(prefix) + 1 :]
            if not _is_plain_model_name(name):
                break
            return ArchSpec(prefix, name)  # type: ignore[arg-type]
    else:
        if _is_plain_model_name(text):
            return text
    raise ModelLoadError(
        f"{origin} names architecture '{text}', which is not a timm or torchvision model name; "
        "robaudit never imports a file or module chosen by a checkpoint, because that would run code from it",
        fix=f"if you trust that code, pass it explicitly with --arch {text}",
    )


def _is_plain_model_name(name: str) -> bool:
    # timm names may carry a pretrained tag after a dot (resnet18.a1_in1k) and dashes;
    # nothing may look like a path, a module attribute or a URL.
    return bool(re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", name)) and not name.endswith(".py")


def _looks_like_path(left: str) -> bool:
    return left.endswith(".py") or "/" in left or "\\" in left or Path(left).suffix == ".py"


_FORMS_FIX = (
    "use timm:NAME, torchvision:NAME, path/to/file.py:ClassName or package.module:ClassName"
)
