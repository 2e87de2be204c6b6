"""Working-memory estimates that let probes cut their work by bytes, not only by ``--batch-size``.

Peak memory must not grow with the sample count: a probe that keeps autograd graphs or vmapped
backward passes sizes them from :func:`activation_bytes` (measured on the model itself) against
:func:`working_budget`.
"""
from __future__ import annotations

import torch

CPU_WORKING_BUDGET = 256 << 20
"""Bytes of autograd working memory one probe step may hold on the CPU."""


def working_budget(device: torch.device) -> int:
    """Bytes of autograd working memory one probe step may hold: :data:`CPU_WORKING_BUDGET` on the CPU,
    an eighth of the device's memory on CUDA (where larger batches buy throughput)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory) // 8
    return CPU_WORKING_BUDGET


def activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd saves per sample in one forward pass of ``model`` (in its dtype) on inputs like ``x[:1]``.

    Measured with ``saved_tensors_hooks`` on batches of one and two copies of ``x[0]``: the difference is
    what each sample adds (parameters, saved once per batch, cancel). A backward through that graph,
    vmapped over K cotangents, holds about K + 1 times this per sample; a gradient kept with
    ``create_graph`` about 3 times.
    """
    dtype = next((p.dtype for p in model.parameters()), x.dtype)

    def saved(batch: torch.Tensor) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(batch.detach().to(dtype).requires_grad_(True))
        return sum(storages.values())

    two = x[:1].repeat(2, *([1] * (x.dim() - 1)))
    return max(0, saved(two) - saved(two[:1]))
