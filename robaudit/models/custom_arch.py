"""User architectures: ``path/to/file.py:ClassName`` or ``package.module:ClassName``.

These import and run the user's own code, so they are only ever taken from ``--arch``
(never from a checkpoint). ``ClassName`` may also be a factory function that returns an
``nn.Module``.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from robaudit.errors import ModelLoadError, did_you_mean
from robaudit.models.arch_spec import ArchSpec
from robaudit.models.messages import exit_call, hint, one_line

logger = logging.getLogger(__name__)

SCRIPT_FIX = 'put the script part of the file (argument parsing, training, sys.exit) under `if __name__ == "__main__":`'


def resolve_constructor(spec: ArchSpec) -> Callable[..., Any]:
    """Import the file or module of ``spec`` and return its ``attr`` (a class or factory).

    Raises:
        ModelLoadError: the file is missing, the import fails, or the name is absent.
    """
    module = _import_file(spec) if spec.kind == "file" else _import_module(spec)
    ctor = getattr(module, spec.attr or "", None)
    if ctor is None:
        public = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)]
        raise ModelLoadError(
            f"'{spec.name}' has no class or function '{spec.attr}'{hint(did_you_mean(spec.attr or '', public))}",
            fix=f"check the name after the colon in --arch {spec}",
        )
    if not callable(ctor):
        raise ModelLoadError(
            f"'{spec.attr}' in '{spec.name}' is a {type(ctor).__name__}, not a class or function",
            fix="point --arch at an nn.Module subclass or a function returning one",
        )
    return ctor


def accepts_num_classes(ctor: Callable[..., Any]) -> bool:
    """True when the constructor has an explicit ``num_classes`` parameter."""
    try:
        return "num_classes" in inspect.signature(ctor).parameters
    except (TypeError, ValueError):
        return False


def build_custom(spec: ArchSpec, kwargs: dict[str, Any], num_classes: int | None) -> nn.Module:
    """Call the constructor with ``kwargs`` (plus ``num_classes`` when given).

    Raises:
        ModelLoadError: the constructor fails or does not return an ``nn.Module``.
    """
    ctor = resolve_constructor(spec)
    call_kwargs = dict(kwargs)
    if num_classes is not None:
        call_kwargs["num_classes"] = num_classes
    try:
        net = ctor(**call_kwargs)
    except SystemExit as exc:  # a script's sys.exit must not end robaudit with its code (0 would pass CI)
        raise ModelLoadError(f"constructing {spec} called {exit_call(exc)}",
                             fix="remove the sys.exit call from the constructor") from None
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise ModelLoadError(
            f"constructing {spec} with arguments {call_kwargs} failed: {one_line(exc)}",
            fix="check --arch-kwargs against the constructor's signature",
        ) from exc
    if not isinstance(net, nn.Module):
        raise ModelLoadError(
            f"{spec} returned a {type(net).__name__}, not a torch.nn.Module",
            fix="point --arch at an nn.Module subclass or a function returning one",
        )
    return net


def _import_file(spec: ArchSpec) -> ModuleType:
    path = Path(spec.name).expanduser().resolve()
    if not path.is_file():
        raise ModelLoadError(
            f"architecture file '{spec.name}' does not exist" if not path.exists() else f"'{spec.name}' is not a file",
            fix="check the path before the colon in --arch (relative paths start at the working directory)",
        )
    # A unique module name per file, registered in sys.modules so that dataclasses,
    # pickling and relative lookups inside the file work.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    mod_name = f"robaudit_user_arch_{path.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelLoadError(f"cannot import '{spec.name}' as a Python file", fix="pass a .py file to --arch")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    # Let the file import its sibling modules, as it would when run from its folder.
    sys.path.insert(0, str(path.parent))
    try:
        loader_spec.loader.exec_module(module)
    except SystemExit as exc:  # e.g. a training script's argparse: it must not end robaudit with its code
        del sys.modules[mod_name]
        raise ModelLoadError(f"importing architecture file '{spec.name}' called {exit_call(exc)}",
                             fix=SCRIPT_FIX) from None
    except Exception as exc:  # noqa: BLE001 - the user's file may raise anything on import
        del sys.modules[mod_name]
        raise ModelLoadError(
            f"importing architecture file '{spec.name}' failed: {one_line(exc)}",
            fix="run `python " + str(spec.name) + "` to see the full error and fix the file",
        ) from exc
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    logger.info("imported architecture file %s", path)
    return module


def _import_module(spec: ArchSpec) -> ModuleType:
    try:
        return importlib.import_module(spec.name)
    except SystemExit as exc:
        raise ModelLoadError(f"importing module '{spec.name}' called {exit_call(exc)}", fix=SCRIPT_FIX) from None
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"cannot import module '{spec.name}' for --arch {spec}: {one_line(exc)}",
            fix="install the package, add its folder to PYTHONPATH, or use the path/to/file.py:ClassName form",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything on import
        raise ModelLoadError(
            f"importing module '{spec.name}' failed: {one_line(exc)}",
            fix=f"run `python -c 'import {spec.name}'` to see the full error and fix the module",
        ) from exc
