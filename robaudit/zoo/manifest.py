"""Read a zoo manifest (``ZOO.toml``) or expand a registry pattern into the list of audit tasks.

A manifest has one ``[audit]`` table in the keys of ``robaudit.toml`` (shared by every model)
and one ``[[model]]`` table per model: ``name`` (its folder ``zoo/models/<name>/``), ``source``
(a checkpoint path relative to the manifest, or ``timm:``/``torchvision:``/``hf-hub:`` name),
optional ``tags`` (kept for grouping in the zoo analysis) and any other ``robaudit.toml`` key
(``arch``, ``arch-kwargs``, ``mean``/``std``, ``pretrained``, ``weights``, ...), which overrides
the shared value for that model. Unknown per-model keys are passed on to the model's audit,
whose own config validation reports them (the model is then recorded as failed, exit 2).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robaudit.errors import ConfigError, UsageError

REGISTRY_PREFIXES = ("timm:", "torchvision:", "hf-hub:")
ZOO_CONTROLLED = ("out", "resume", "overwrite")
"""``robaudit.toml`` keys the zoo sets itself for each model."""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    Attributes:
        name: unique; the output folder ``zoo/models/<name>/``.
        source: the MODEL argument of ``robaudit run`` (a checkpoint path made absolute, or a registry name).
        settings: per-model ``robaudit.toml`` keys (dashes as written), overriding ``[audit]``.
        tags: free-form labels the zoo analysis groups by (``batch_size = 16``, ``training = "pgd-at"``).
    """

    name: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The expanded zoo: the shared audit settings, the models, and the folder relative paths resolve from."""

    audit: dict[str, Any]
    models: list[ZooModel]
    base_dir: Path
    path: Path | None = None


def read_manifest(path: Path) -> Manifest:
    """Parse and check ``ZOO.toml``.

    Raises:
        ConfigError: unreadable TOML, a missing/duplicate/unsafe name, a missing source, a zoo-controlled
            key (``out``, ``resume``, ``overwrite``) or an unknown top-level table.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"zoo manifest {path} does not exist", fix="check the ZOO.toml path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"zoo manifest {path} is not valid TOML: {exc}", fix="fix the TOML syntax") from None
    unknown = sorted(set(data) - {"audit", "model"})
    if unknown:
        raise ConfigError(f"unknown table '{unknown[0]}' in {path}",
                          fix="a manifest holds one [audit] table and [[model]] tables (docs/zoo.md)")
    audit = data.get("audit", {})
    if not isinstance(audit, dict):
        raise ConfigError(f"[audit] in {path} must be a table", fix="write the shared settings under [audit]")
    _check_controlled(audit, f"[audit] in {path}")
    tables = data.get("model", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path} lists no models", fix="add one [[model]] table per model (docs/zoo.md)")
    base = Path(path).resolve().parent
    models = [_model(table, i, base, path) for i, table in enumerate(tables)]
    check_unique([m.name for m in models], str(path))
    return Manifest(audit, models, base, Path(path).resolve())


def _model(table: Any, index: int, base: Path, path: Path) -> ZooModel:
    where = f"[[model]] #{index + 1} in {path}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table", fix="write each model as a [[model]] table")
    settings = dict(table)
    name, source, tags = settings.pop("name", None), settings.pop("source", None), settings.pop("tags", {})
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{where} has no valid name (got {name!r})",
                          fix="give each model name = \"...\" of letters, digits, '.', '_' or '-'")
    if not isinstance(source, str) or not source:
        raise ConfigError(f"model '{name}' in {path} has no source",
                          fix="set source = a checkpoint path or a timm:/torchvision:/hf-hub: name")
    if not isinstance(tags, dict):
        raise ConfigError(f"tags of model '{name}' in {path} must be a table", fix="write tags = {key = value, ...}")
    _check_controlled(settings, f"model '{name}' in {path}")
    if not source.startswith(REGISTRY_PREFIXES):
        source = str((base / source).resolve())
    return ZooModel(name, source, settings, dict(tags))


def _check_controlled(table: dict[str, Any], where: str) -> None:
    for key in table:
        if key.replace("_", "-") in ("out", "resume", "overwrite", "model"):
            raise ConfigError(f"{where} sets '{key}', which robaudit zoo controls",
                              fix="drop it; use 'robaudit zoo --out DIR' and '--resume'")


def check_unique(names: list[str], where: str) -> None:
    """Refuse a name used twice (each model owns one output folder)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"model name '{name}' is used twice in {where}", fix="give every model a unique name")
        seen.add(name)


def expand_registry(kind: str, pattern: str, audit: dict[str, Any], pretrained: bool) -> Manifest:
    """A zoo of every registry model matching ``pattern`` (``timm.list_models(pattern, pretrained=...)``
    or ``torchvision.models.list_models``), named by the model name.

    Raises:
        UsageError: the pattern matches no model.
    """
    if kind == "timm":
        import timm

        names = list(timm.list_models(pattern, pretrained=pretrained))
    else:
        from torchvision import models as tv_models

        names = list(tv_models.list_models(include=pattern))
    if not names:
        raise UsageError(f"--{kind} '{pattern}' matches no model", fix=f"check the pattern against {kind}'s model list")
    settings: dict[str, Any] = {}
    if pretrained:
        settings = {"pretrained": True} if kind == "timm" else {"weights": "DEFAULT"}
    models = [ZooModel(name.replace("/", "_"), f"{kind}:{name}", dict(settings)) for name in names]
    return Manifest(audit, models, Path.cwd())
