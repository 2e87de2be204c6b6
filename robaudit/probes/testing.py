"""A probe context without the engine, for unit tests of probes (robaudit's and plugins')."""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from robaudit.data.audit_data import AuditData, DatasetInfo
from robaudit.models.audit_model import AuditModel, DataConfig, ModelProvenance, Normalisation
from robaudit.probes.base import ProbeContext, ProbeResult


def make_test_context(model: nn.Module, x: torch.Tensor | AuditData, y: torch.Tensor | None = None, *,
                      num_classes: int | None = None, batch_size: int = 32, seed: int = 0,
                      dataset: str | None = None, previous: Mapping[str, ProbeResult] | None = None,
                      device: str | torch.device = "cpu") -> ProbeContext:
    """A :class:`ProbeContext` with the fields the engine fills, for calling ``probe.run(ctx)`` in a test.

    Args:
        model: an :class:`AuditModel`, used as is, or any ``nn.Module`` that maps N×C×H×W pixels in
            [0, 1] to logits N×K; it is wrapped as an audit model with identity normalisation (mean 0,
            std 1 per channel) and set to eval mode.
        x: N×C×H×W float pixels in [0, 1] (sample ids ``test:0`` … ``test:N-1``), or a ready
            :class:`AuditData` (then leave ``y`` out).
        y: N int64 labels in [0, K), with tensor ``x``.
        num_classes: K; default: the model's (an audit model) or the width of its logits on ``x[:1]``.
        batch_size: samples per forward pass.
        seed: the probe's seed; ``ctx.generator`` is a CPU generator seeded with it.
        dataset: ``ctx.dataset``, which dataset-aware defaults (ε lists) read; default: the data's
            name (``tensors`` for tensor ``x``).
        previous: results of probes that "ran earlier", by name.
        device: where the model is moved and probes compute.

    Raises:
        TypeError: ``y`` missing with tensor ``x``, or given with an :class:`AuditData`.
    """
    from robaudit.engine.progress import make_progress  # here: importing robaudit.engine loads the whole pipeline

    if isinstance(x, AuditData):
        if y is not None:
            raise TypeError("pass either an AuditData or the tensors x and y, not both")
        data = x
    else:
        if y is None:
            raise TypeError("labels y are needed with a tensor x")
        data = None
    if not isinstance(model, AuditModel):
        channels = int(data.x.shape[1] if data is not None else x.shape[1])
        if num_classes is None:
            with torch.no_grad():
                num_classes = int(model.eval()(data.x[:1] if data is not None else x[:1]).shape[1])
        norm = Normalisation((0.0,) * channels, (1.0,) * channels, "cli")
        provenance = ModelProvenance(source="test", arch=type(model).__name__, arch_source="cli",
                                     num_classes=num_classes, num_classes_source="arch_kwargs", normalisation=norm)
        model = AuditModel(model, norm, DataConfig(), provenance, in_channels=channels)
    if data is None:
        info = DatasetInfo("tensors", num_classes or model.num_classes, int(x.shape[1]), tuple(x.shape[2:]))
        data = AuditData(x.float(), y.long(), [f"test:{i}" for i in range(len(y))], info, {"source": "test"})
    device = torch.device(device)
    model.to(device)
    return ProbeContext(model=model, data=data, device=device, batch_size=batch_size, seed=seed,
                        generator=torch.Generator().manual_seed(seed), logger=logging.getLogger("robaudit.test"),
                        progress=make_progress(quiet=True), previous=dict(previous or {}),
                        dataset=dataset if dataset is not None else data.info.name)
