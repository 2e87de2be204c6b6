"""Out of memory, wherever robaudit runs the model: how to recognise it and what to advise.

Running out of memory is the user's to fix (a smaller ``--batch-size``, fewer samples), so every place
that runs the model turns it into the same advice: exit code 2, never an internal error.
"""
from __future__ import annotations

import torch

OOM_FIX = "lower --batch-size or use --n-samples to audit fewer samples"
"""The advice for an out-of-memory error."""


_OOM_ERROR = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
"""torch's out-of-memory class: ``torch.OutOfMemoryError`` from torch 2.5, ``torch.cuda.OutOfMemoryError``
before (the project supports torch ≥ 2.2)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or host) ran out of memory: torch's ``OutOfMemoryError`` (CUDA),
    or any error whose text says "out of memory" (MPS, CPU allocators, cuDNN/cuBLAS workspaces)."""
    return isinstance(exc, _OOM_ERROR) or "out of memory" in str(exc).lower()


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (torch's memory errors run to several)."""
    return (str(exc).splitlines() or [""])[0]
