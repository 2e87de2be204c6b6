"""An ordinary ``nn.Module`` around a trusted TorchScript module.

A ``torch.jit.ScriptModule`` refuses Python forward hooks (``register_forward_pre_hook is not
supported on ScriptModules``), which preflight and several probes use on the audit network.
Wrapping it in a plain module gives the audit one network type: hooks attach to the wrapper,
while parameters, buffers, ``deepcopy``, dtype casts and ``torch.func.functional_call`` reach
the scripted module's own tensors (their names gain the prefix ``scripted.``).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ScriptedNetwork(nn.Module):
    """Calls a TorchScript module; nothing else.

    Args:
        scripted: the module ``torch.jit.load`` returned (only ever loaded with
            ``--trust-checkpoint``: loading and calling it runs the archive's code).

    Shape: whatever the scripted module takes and returns (N×C×H×W → N×K for a classifier).
    """

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.scripted = scripted

    def __deepcopy__(self, memo: dict[int, Any]) -> "ScriptedNetwork":
        # A ScriptModule deep-copies its tensors with autograd on: the copies' parameters are
        # clones (non-leaf, with a grad_fn), so no probe could freeze or differentiate them.
        # Copying without grad gives leaves; their requires_grad flags are then restored.
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        with torch.no_grad():
            for key, value in self.__dict__.items():
                new.__dict__[key] = copy.deepcopy(value, memo)
        for mine, theirs in zip(self.parameters(), new.parameters()):
            theirs.requires_grad_(mine.requires_grad)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The scripted module's output for ``x``."""
        return self.scripted(x)
