"""Reading checkpoint files safely, in every format robaudit accepts.

Formats (detected from the file's bytes, then its suffix):

* ``state_dict``: a ``torch.save``-d mapping of tensors (``.pt``/``.pth``/``.bin``);
* ``wrapped_state_dict``: a dict holding it under ``state_dict``, ``model``,
  ``model_state_dict`` (or EMA weights under ``state_dict_ema`` …) next to metadata such
  as ``arch``, ``mean`` and ``std``;
* ``safetensors``: tensors plus string metadata (``arch``; ``mean``/``std`` as JSON lists);
* ``torchscript``: a ``torch.jit.save`` archive (a zip with ``code/`` and ``constants.pkl``),
  only with ``--trust-checkpoint``: loading one runs the code it contains;
* ``pickled_module``: a whole pickled ``nn.Module``, only with ``--trust-checkpoint``.

``torch.load`` always runs with ``weights_only=True`` first, which cannot execute code;
the unrestricted unpickler runs only when the user opted in and the safe one refused.
A TorchScript archive is recognised from its zip layout, whatever the file is called, and
refused before ``torch.jit.load`` (whose ``__setstate__`` methods run on load) unless trusted.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robaudit.errors import ModelLoadError
from robaudit.models.messages import list_some, one_line

logger = logging.getLogger(__name__)

WEIGHTS_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net")
"""Keys of a wrapping dict that hold the (non-EMA) weights, in order of preference."""
EMA_KEYS: tuple[str, ...] = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
"""Keys of a wrapping dict that hold exponential-moving-average weights."""
STRIPPABLE_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
"""Key prefixes added by DistributedDataParallel / DataParallel and by ``torch.compile``."""
METADATA_KEYS: tuple[str, ...] = ("arch", "mean", "std", "num_classes", "model_kwargs", "arch_kwargs")
_JSON_METADATA = ("mean", "std", "num_classes", "model_kwargs", "arch_kwargs")

# Harmless classes that common training scripts put into checkpoints (timm saves its
# argparse namespace under ``args``); allow-listing them keeps such files loadable
# without --trust-checkpoint. Rebuilding a Namespace only sets attributes.
_SAFE_EXTRA_GLOBALS: list[Any] = [argparse.Namespace]

_CHUNK = 1 << 20


@dataclass
class Checkpoint:
    """A checkpoint file, read.

    Attributes:
        path: the resolved path.
        sha256: hex digest of the file's bytes.
        n_bytes: file size in bytes.
        format: see the module docstring.
        state_dict: the weights with their keys as saved, or ``None`` for a whole module.
        module: the TorchScript or unpickled module, or ``None``.
        metadata: ``arch``/``mean``/``std``/``num_classes``/``model_kwargs``/``arch_kwargs``
            found next to the weights (JSON-decoded for safetensors).
        weights_key: the key the weights were found under in a wrapping dict.
        stripped_prefixes: wrapper prefixes removed from every key, in the order removed (set by the
            loader once the keys were matched against the model, see :func:`prefix_stages`).
        ema: whether EMA weights were selected.
        warnings: notes for the load report.
        unrestricted_unpickle: whether the file was unpickled without ``weights_only``.
    """

    path: Path
    sha256: str
    n_bytes: int
    format: str
    state_dict: dict[str, torch.Tensor] | None = None
    module: nn.Module | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    weights_key: str | None = None
    stripped_prefixes: list[str] = field(default_factory=list)
    ema: bool = False
    warnings: list[str] = field(default_factory=list)
    unrestricted_unpickle: bool = False


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_resolvable(path: Path, source: str | Path) -> None:
    """Raise :class:`ModelLoadError` for a path that names something but cannot be followed.

    ``Path.exists`` answers ``False`` both for a missing file and for a symbolic-link loop or
    a link to nothing; only the first one "does not exist".
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise ModelLoadError(
                f"checkpoint '{source}' is a symbolic link to '{os.readlink(path)}', which does not exist",
                fix="point the link at the checkpoint file, or pass the file's own path",
            ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelLoadError(
                f"checkpoint '{source}' cannot be resolved: it is a loop of symbolic links",
                fix="pass the checkpoint file's own path, or point the link at the file",
            ) from None


def read_checkpoint(source: str | Path, trust: bool = False, use_ema: bool = False) -> Checkpoint:
    """Read a checkpoint file, choosing the format from its contents.

    Args:
        source: the checkpoint path.
        trust: allow unpickling arbitrary objects (``--trust-checkpoint``).
        use_ema: select EMA weights (an error if the file has none).

    Raises:
        ModelLoadError: the file is missing, unreadable, truncated, of an unknown format,
        holds objects that need ``--trust-checkpoint``, or has no recognisable weights.
    """
    path = Path(source).expanduser()
    _check_resolvable(path, source)
    if not path.exists():
        raise ModelLoadError(
            f"checkpoint file '{source}' does not exist",
            fix="check the path; a model source is timm:NAME, torchvision:NAME or a checkpoint file",
        )
    if path.is_dir():
        raise ModelLoadError(
            f"model source '{source}' is a directory, not a checkpoint file",
            fix="pass the weights file inside it (e.g. model.safetensors or pytorch_model.bin)",
        )
    path = path.resolve()
    n_bytes = path.stat().st_size
    if n_bytes == 0:
        raise ModelLoadError(f"checkpoint file '{source}' is empty", fix="re-save or re-download the checkpoint")
    with path.open("rb") as handle:
        head = handle.read(16)
    is_zip = head.startswith(b"PK")
    scripted = is_zip and is_torchscript_archive(path)
    if scripted and not trust:
        raise _refuse_torchscript(path)
    sha = file_sha256(path)

    if scripted:
        ckpt = _read_torchscript(path, sha, n_bytes)
    elif _looks_like_safetensors(head, n_bytes) or (path.suffix == ".safetensors" and not is_zip):
        ckpt = _read_safetensors(path, sha, n_bytes)
    else:
        obj, unrestricted = _torch_load(path, trust)
        if obj is _TORCHSCRIPT:
            ckpt = _read_torchscript(path, sha, n_bytes)
        else:
            ckpt = _interpret(obj, path, sha, n_bytes, use_ema)
            ckpt.unrestricted_unpickle = unrestricted
    if use_ema and not ckpt.ema:
        raise ModelLoadError(
            f"--use-ema was given but checkpoint '{path.name}' ({ckpt.format}) holds no EMA weights "
            f"(looked for {', '.join(EMA_KEYS)})",
            fix="drop --use-ema",
        )
    logger.info(
        "read checkpoint %s: format=%s weights_key=%s sha256=%s", path, ckpt.format, ckpt.weights_key, sha[:12]
    )
    return ckpt


def prefix_stages(state_dict: dict[str, torch.Tensor]) -> list[tuple[dict[str, torch.Tensor], list[str]]]:
    """The state dict as saved, then after each removal of a ``module.`` / ``_orig_mod.`` that *every* key carries.

    Whether a prefix is a wrapper's (DataParallel, ``torch.compile``) or part of the model's
    own parameter names (a network kept as ``self.module``) is decided against the model:
    see :func:`robaudit.models.state_matching.match_prefixes`.

    Returns:
        ``(state dict, prefixes removed so far, in order)`` pairs, the unstripped one first;
        ``_metadata`` is kept, with its keys stripped too.
    """
    stages: list[tuple[dict[str, torch.Tensor], list[str]]] = [(state_dict, [])]
    metadata = getattr(state_dict, "_metadata", None)
    stripped: list[str] = []
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in STRIPPABLE_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = _StateDict({k[len(prefix) :]: v for k, v in state_dict.items()})
                if metadata is not None:
                    metadata = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in metadata.items()}
                    state_dict._metadata = metadata  # type: ignore[attr-defined]
                stripped = [*stripped, prefix]
                stages.append((state_dict, stripped))
                changed = True
    return stages


class _StateDict(dict):
    """A dict that can carry ``_metadata`` like the OrderedDict ``state_dict()`` returns."""


def _looks_like_safetensors(head: bytes, n_bytes: int) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON header starting "{".
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < n_bytes and head[8:9] == b"{"


def is_torchscript_archive(path: Path) -> bool:
    """Whether ``path`` is a ``torch.jit.save`` archive, judged from its zip layout (never its name).

    ``torch.save`` writes ``ARCHIVE/data.pkl``, ``ARCHIVE/data/N``, ``ARCHIVE/version``;
    ``torch.jit.save`` adds compiled code under ``ARCHIVE/code/`` and ``ARCHIVE/constants.pkl``
    (the record ``torch.load`` itself tests). Old TorchScript files hold ``model.json``.
    A zip that Python cannot list is left to ``torch.load``, which refuses TorchScript under
    ``weights_only=True`` (see :func:`_torch_load`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    for name in names:
        parts = name.split("/")
        if len(parts) >= 2 and ("code" in parts[1:-1] or parts[-1] in ("constants.pkl", "model.json")):
            return True
    return False


def refuse_untrusted_code(source: str | Path, trust: bool) -> None:
    """Refuse a checkpoint that would run code when loaded, without loading it.

    Used where a checkpoint is named long before it is read (``run --interpolate-to``,
    ``compare --loss-path``), so the audit does not run for an hour first.

    Raises:
        ModelLoadError: ``source`` is a TorchScript archive and ``trust`` is false.
    """
    path = Path(source).expanduser()
    if trust or not path.is_file():
        return
    with path.open("rb") as handle:
        is_zip = handle.read(2) == b"PK"
    if is_zip and is_torchscript_archive(path):
        raise _refuse_torchscript(path)


def _refuse_torchscript(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"refusing to load checkpoint '{path.name}': it is a TorchScript archive, and a TorchScript archive "
        "contains code that runs when it is loaded (and on every forward pass)",
        fix="if you trust where the file came from, pass --trust-checkpoint; better, save model.state_dict() "
        "(or safetensors) and pass the architecture with --arch",
    )


def _read_safetensors(path: Path, sha: str, n_bytes: int) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        if _utf8_name(path):
            state_dict = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as handle:
                raw_meta = handle.metadata() or {}
        else:  # safetensors opens only UTF-8 file names; any name the OS accepts must work, so read the bytes
            state_dict, raw_meta = _safetensors_from_bytes(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise _corrupt(path, "safetensors", exc) from exc
    metadata: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key not in raw_meta:
            continue
        value = raw_meta[key]
        if key in _JSON_METADATA:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                example = '{"channels": [16, 32, 64, 128]}' if key.endswith("kwargs") else "[0.5, 0.5, 0.5]"
                raise ModelLoadError(
                    f"safetensors metadata '{key}' of '{path.name}' is {value!r}, not JSON",
                    fix=f"store it as JSON, e.g. {key}='{example}', or pass the value on the command line",
                ) from exc
        metadata[key] = value
    return Checkpoint(path, sha, n_bytes, "safetensors", state_dict=state_dict, metadata=metadata)


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safetensors_from_bytes(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and ``__metadata__`` of a safetensors file's bytes (8-byte little-endian header length, JSON header)."""
    from safetensors.torch import load

    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    return load(data), header.get("__metadata__") or {}


def _read_torchscript(path: Path, sha: str, n_bytes: int) -> Checkpoint:
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated upstream; the archive format is still supported.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch.jit raises RuntimeError for most damage
        raise _corrupt(path, "TorchScript", exc) from exc
    return Checkpoint(path, sha, n_bytes, "torchscript", module=module)


_TORCHSCRIPT = object()


def _torch_load(path: Path, trust: bool) -> tuple[Any, bool]:
    """``torch.load`` with ``weights_only=True``; unrestricted only when trusted and needed.

    Returns:
        The loaded object (or the ``_TORCHSCRIPT`` sentinel) and whether the unrestricted
        unpickler was used.
    """
    try:
        with torch.serialization.safe_globals(_SAFE_EXTRA_GLOBALS), warnings.catch_warnings():
            # legacy files saved with a pickle protocol other than 2 make torch warn on two lines
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        offending = _unsafe_globals(path, exc)
        legacy_protocol = _unsupported_legacy_protocol(path, exc)
        if not offending and not (trust and legacy_protocol):
            raise _unreadable_pickle(path, exc, legacy_protocol) from exc
        if not trust:
            modules = [g for g in offending if g.startswith("torch.nn.") or ".models." in g]
            what = "a pickled nn.Module" if modules else "pickled Python objects"
            raise ModelLoadError(
                f"refusing to unpickle checkpoint '{path.name}': it holds {what} "
                f"(unsupported global {list_some(offending, 3)}), and unpickling can run arbitrary code",
                fix="if you trust where the file came from, pass --trust-checkpoint; better, save "
                "model.state_dict() (or safetensors) and pass the architecture with --arch",
            ) from exc
    except RuntimeError as exc:
        if "TorchScript" in str(exc):  # torch.load found constants.pkl where Python's zipfile could not
            if not trust:
                raise _refuse_torchscript(path) from exc
            return _TORCHSCRIPT, False
        raise _corrupt(path, "PyTorch", exc) from exc
    except Exception as exc:  # noqa: BLE001 - truncated files raise EOFError, KeyError …
        raise _corrupt(path, "PyTorch", exc) from exc

    logger.warning("unpickling %s without weights_only (--trust-checkpoint)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False), True
    except Exception as exc:  # noqa: BLE001 - the trusted pickle may fail in any way
        raise ModelLoadError(
            f"unpickling checkpoint '{path.name}' failed: {one_line(exc)}",
            fix="make the classes it was pickled with importable (same package versions), "
            "or save model.state_dict() and pass --arch",
        ) from exc


# torch's weights-only unpickler names the global it refused in one of these phrasings.
_GLOBAL_RES = (
    re.compile(r"GLOBAL ([\w.]+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL ([\w.]+) whose module [\w.]+ is blocked"),
)


def _unsafe_globals(path: Path, exc: BaseException) -> list[str]:
    """The globals the safe unpickler refused, named without executing anything."""
    found: list[str] = []
    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files are not supported there
        found = [g for g in _legacy_globals(path) if not _legacy_global_is_data(g)]
    for name in (n for pattern in _GLOBAL_RES for n in pattern.findall(str(exc))):
        if name not in found:
            found.insert(0, name)
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _SAFE_EXTRA_GLOBALS}
    return [g for g in found if g not in allowed]


_STRING_PUSH = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_LEGACY_PICKLES = 4  # magic number, protocol version, sys info, then the saved object


def _legacy_globals(path: Path) -> list[str]:
    """Globals named by a legacy (non-zip) ``torch.save`` file, decoded by ``pickletools`` (never executed).

    torch's weights-only unpickler cannot read protocol-4 legacy files at all (it stops at the
    first ``FRAME``), so it cannot say which global made a file unsafe; this walk can.
    ``STACK_GLOBAL`` operands are followed through string pushes and the memo.
    """
    found: list[str] = []
    try:
        with path.open("rb") as handle:
            for _ in range(_LEGACY_PICKLES):
                memo: dict[int, str | None] = {}
                pushed: list[str | None] = []
                for opcode, arg, _pos in pickletools.genops(handle):
                    name = opcode.name
                    if name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif name == "STACK_GLOBAL" and len(pushed) >= 2 and None not in pushed[-2:]:
                        found.append(f"{pushed[-2]}.{pushed[-1]}")
                    if name in _STRING_PUSH:
                        pushed.append(str(arg))
                    elif name in ("BINGET", "LONG_BINGET", "GET"):
                        pushed.append(memo.get(int(arg)))
                    elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                        memo[int(arg)] = pushed[-1] if pushed else None
                    elif name == "MEMOIZE":
                        memo[len(memo)] = pushed[-1] if pushed else None
                    elif name not in ("FRAME", "PROTO"):
                        pushed = []
    except Exception:  # noqa: BLE001 - a damaged stream: name what was found before the damage
        pass
    return list(dict.fromkeys(found))


def _legacy_global_is_data(name: str) -> bool:
    """Whether a legacy file's global is one a plain state dict needs (storages, tensor rebuilds)."""
    module, _, attr = name.rpartition(".")
    return (
        module == "torch" and (attr.endswith("Storage") or attr in ("Size", "device", "dtype"))
        or module == "torch._utils" and attr.startswith("_rebuild_")
        or module in ("builtins", "__builtin__") and attr in _PLAIN_BUILTINS
        or name in ("collections.OrderedDict", "argparse.Namespace")
    )


_PLAIN_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "int", "float", "complex", "bool", "str", "bytearray", "slice"}


def _unsupported_legacy_protocol(path: Path, exc: BaseException) -> int | None:
    """The pickle protocol of a legacy file that torch's weights-only unpickler cannot decode, else ``None``."""
    with path.open("rb") as handle:
        head = handle.read(2)
    if len(head) == 2 and head[0] == 0x80 and head[1] > 2 and "Unsupported operand" in str(exc):
        return head[1]
    return None


def _unreadable_pickle(path: Path, exc: BaseException, legacy_protocol: int | None) -> ModelLoadError:
    """The error for a pickle the safe unpickler could not read and that names no unsafe global."""
    if legacy_protocol is not None:
        return ModelLoadError(
            f"cannot read checkpoint '{path.name}' safely: it is a legacy (non-zip) torch.save file written with "
            f"pickle protocol {legacy_protocol}, which torch's weights-only loader cannot read",
            fix="re-save it with torch.save's default (zip) format, or pass --trust-checkpoint if you trust where it came from",
        )
    return _corrupt(path, "PyTorch", exc)


def _corrupt(path: Path, kind: str, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"cannot read checkpoint '{path.name}' as a {kind} file: it looks truncated, corrupt or of "
        f"an unsupported format ({one_line(exc)})",
        fix="re-save or re-download it; accepted formats are torch.save state dicts (.pt/.pth/.bin), "
        ".safetensors and TorchScript archives",
    )


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _is_weights(obj: Any) -> bool:
    return _is_tensor_mapping(obj) or isinstance(obj, nn.Module)


def _interpret(obj: Any, path: Path, sha: str, n_bytes: int, use_ema: bool) -> Checkpoint:
    """Turn the unpickled object into a :class:`Checkpoint` (unwrap, pick EMA or not)."""
    if isinstance(obj, nn.Module):
        return Checkpoint(path, sha, n_bytes, "pickled_module", module=obj)
    if not isinstance(obj, Mapping):
        raise ModelLoadError(
            f"checkpoint '{path.name}' holds a {type(obj).__name__}, not a state dict or a dict wrapping one",
            fix="save model.state_dict() with torch.save",
        )
    if not obj:
        raise ModelLoadError(f"checkpoint '{path.name}' is an empty dict", fix="re-save the checkpoint")
    if _is_tensor_mapping(obj):
        return Checkpoint(path, sha, n_bytes, "state_dict", state_dict=obj)  # type: ignore[arg-type]

    metadata = {k: obj[k] for k in METADATA_KEYS if k in obj}
    regular = next((k for k in WEIGHTS_KEYS if k in obj and _is_weights(obj[k])), None)
    ema = next((k for k in EMA_KEYS if k in obj and _is_weights(obj[k])), None)
    notes: list[str] = []
    if use_ema:
        if ema is None:
            raise ModelLoadError(
                f"--use-ema was given but checkpoint '{path.name}' has no EMA weights "
                f"(looked for {', '.join(EMA_KEYS)}; it has keys {list_some([str(k) for k in obj], 8)})",
                fix="drop --use-ema",
            )
        key = ema
    elif regular is not None:
        key = regular
        if ema is not None:
            notes.append(
                f"checkpoint also holds EMA weights under '{ema}'; the non-EMA weights under '{regular}' "
                "were audited (pass --use-ema to audit the EMA weights)"
            )
    elif ema is not None:
        raise ModelLoadError(
            f"checkpoint '{path.name}' holds only EMA weights (under '{ema}')",
            fix="pass --use-ema to audit them",
        )
    else:
        raise ModelLoadError(
            f"checkpoint '{path.name}' is a dict without weights under any of {', '.join(WEIGHTS_KEYS)} "
            f"(it has keys {list_some([str(k) for k in obj], 8)})",
            fix="save model.state_dict() directly, or under the key 'state_dict'",
        )
    value = obj[key]
    if isinstance(value, nn.Module):
        return Checkpoint(
            path, sha, n_bytes, "pickled_module", module=value, metadata=metadata, weights_key=key,
            ema=use_ema, warnings=notes,
        )
    return Checkpoint(
        path, sha, n_bytes, "wrapped_state_dict", state_dict=value, metadata=metadata, weights_key=key,
        ema=use_ema, warnings=notes,
    )
