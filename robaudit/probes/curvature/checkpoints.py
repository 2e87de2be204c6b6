"""Loading a second checkpoint of the audit model's architecture (for the checkpoint path, Yao Fig 5).

The other checkpoint goes through :func:`robaudit.models.load_model` with the audit model's own
request rebuilt from its provenance — same architecture and builder arguments, the audit model's
normalisation, the same safety rules (``torch.load(weights_only=True)`` unless the audit model
itself was loaded with ``--trust-checkpoint``) — so only the network weights differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robaudit.errors import ProbeError, RobauditError
from robaudit.probes.base import ProbeContext

_SELF_DESCRIBING = ("torchscript", "pickled_module")


def load_other(ctx: ProbeContext, path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The other checkpoint's network state dict (keys as in ``ctx.model.net``) and a description.

    Raises:
        ProbeError: the file is missing, cannot be loaded as the audit architecture, or its
            tensors do not match the audit model's names and shapes.
    """
    from robaudit.models import ModelRequest, load_model

    prov = ctx.model.provenance
    file = Path(path).expanduser()
    if not file.is_file():
        raise ProbeError(f"interpolate_to: checkpoint {file} does not exist",
                         fix="pass the path of another checkpoint of the same architecture")
    request = ModelRequest(
        source=str(file), arch=None if prov.arch_source in _SELF_DESCRIBING else prov.arch,
        arch_kwargs=dict(prov.arch_kwargs), trust_checkpoint=prov.trusted_pickle,
        mean=tuple(prov.normalisation.mean), std=tuple(prov.normalisation.std), device=str(ctx.device),
    )
    try:
        other = load_model(request, ctx.data.info)
    except RobauditError as exc:
        raise ProbeError(f"interpolate_to: cannot load {file} as the audit architecture ({prov.arch}): "
                         f"{exc.message}", fix=exc.fix or "pass a checkpoint of the same architecture") from None
    mine = ctx.model.net.state_dict()
    theirs = other.net.state_dict()
    bad = [k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape]
    if bad or set(theirs) != set(mine):
        raise ProbeError(f"interpolate_to: {file} does not have the audit model's tensors "
                         f"(first mismatch: {(bad or sorted(set(theirs) ^ set(mine)))[0]})",
                         fix="pass a checkpoint of the same architecture")
    info = {"other": str(file.resolve()), "other_sha256": other.provenance.checkpoint_sha256,
            "range_meaning": "t = 0: the audit model; t = 1: the other checkpoint; floating buffers interpolated too"}
    return {k: v.detach() for k, v in theirs.items()}, info
