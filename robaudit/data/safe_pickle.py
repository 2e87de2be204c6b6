"""Refuse pickle files that could run code when unpickled, before anything unpickles them.

CIFAR's "python version" files are pickles, and torchvision reads them with a plain
``pickle.load``. Unpickling calls whatever importable callable the file names, so a
crafted data directory could run arbitrary code. :func:`check_pickle_file` walks the
opcode stream with :func:`pickletools.genops` (which decodes but never executes) and
refuses the file unless every global it references is on a short allow-list: the few
numpy functions and classes needed to rebuild arrays, which is all that genuine CIFAR
files and ``pickle.dump`` of a dict of numpy arrays, lists, strings and ints need.

Globals are named by ``GLOBAL`` / ``INST`` opcodes (module and name inline) or by
``STACK_GLOBAL`` (protocol ≥ 4: module and name taken from the stack). For
``STACK_GLOBAL`` the two operands are tracked exactly through string pushes and memo
reads/writes; any ``STACK_GLOBAL`` whose operands cannot be resolved that way is refused.
Opcodes that reach objects by other routes (the copyreg extension registry, persistent
ids) are refused outright.

This guards files read from a data directory; it does not defend against a file being
replaced between the check and the read.
"""

from __future__ import annotations

import _compat_pickle
import logging
import pickletools
from pathlib import Path

from robaudit.errors import DataError

logger = logging.getLogger(__name__)

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        # ndarray.__reduce__ (numpy 1.x pickles say numpy.core, numpy 2.x say numpy._core)
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # numpy scalars, e.g. an np.int64 inside a list of labels
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        # arrays pickled with protocol 5
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Python 3 bytes pickled with protocol ≤ 2
        ("_codecs", "encode"),
    }
)

_STRING_PUSH = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_STACK_NEUTRAL = {"FRAME", "PROTO"}
_REFUSED = {
    "INST": "instantiates a class named inline",
    "EXT1": "reaches a callable through the copyreg extension registry",
    "EXT2": "reaches a callable through the copyreg extension registry",
    "EXT4": "reaches a callable through the copyreg extension registry",
    "PERSID": "uses a persistent id",
    "BINPERSID": "uses a persistent id",
}


def check_pickle_file(path: Path, what: str) -> None:
    """Raise :class:`DataError` unless ``path`` is a pickle referencing only allowed globals.

    Args:
        path: the pickle file (only its first pickle is checked: ``pickle.load`` reads no more).
        what: what the file is, for the message (e.g. ``"CIFAR-10 batch"``).
    """
    try:
        with open(path, "rb") as f:
            problem = _first_problem(pickletools.genops(f))
    except (ValueError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{what} {path} is not a readable pickle ({exc})",
            fix="replace it with the original file, or pass --download to fetch the dataset again",
        ) from exc
    if problem is not None:
        raise DataError(
            f"refusing to unpickle {what} {path}: it {problem}, which could run code; "
            "genuine dataset files only reference numpy array constructors",
            fix="delete the file and fetch the official dataset with --download, or point --data-dir at a trusted copy",
        )
    logger.debug("pickle check passed: %s", path)


def _first_problem(ops: object) -> str | None:
    """The first reason to refuse the opcode stream ``ops``, or ``None`` if it is safe."""
    memo: dict[int, str | None] = {}
    # Values pushed by the current unbroken run of string pushes / memo reads; inside such
    # a run they are exactly the top of the unpickler's stack.
    run: list[str | None] = []
    proto = 0
    for opcode, arg, pos in ops:  # type: ignore[attr-defined]
        name = opcode.name
        if name == "PROTO":
            proto = int(arg)
        if name in _REFUSED:
            return f"uses the {name} opcode at byte {pos} ({_REFUSED[name]})"
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            bad = _disallowed(module, attr, proto)
            if bad:
                return f"references the global {bad} at byte {pos}"
            run = []
        elif name == "STACK_GLOBAL":
            if len(run) < 2 or not isinstance(run[-2], str) or not isinstance(run[-1], str):
                return f"uses STACK_GLOBAL at byte {pos} with operands that cannot be resolved statically"
            bad = _disallowed(run[-2], run[-1], proto)
            if bad:
                return f"references the global {bad} at byte {pos}"
            run = []
        elif name in _STRING_PUSH:
            run.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name in _MEMO_GET:
            run.append(memo.get(int(arg)))
        elif name in _MEMO_PUT:
            memo[int(arg)] = run[-1] if run else None
        elif name == "MEMOIZE":
            memo[len(memo)] = run[-1] if run else None
        elif name not in _STACK_NEUTRAL:
            run = []
    return None


def _disallowed(module: str, attr: str, proto: int) -> str | None:
    """``"module.attr"`` if unpickling would import something off the allow-list, else ``None``."""
    if proto < 3:
        # pickle.load(fix_imports=True) maps Python 2 names before importing; check what it imports.
        if (module, attr) in _compat_pickle.NAME_MAPPING:
            module, attr = _compat_pickle.NAME_MAPPING[(module, attr)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if (module, attr) in ALLOWED_GLOBALS:
        return None
    return f"{module}.{attr}"
