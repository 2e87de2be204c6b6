"""Derived seeds: the one seed hash of robaudit.

The engine derives each probe's seed as ``derive_seed(run_seed, probe_name)``; probes derive one
reproducible seed per (probe seed, purpose, indices) the same way, independent of call order.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def derive_seed(base: int, *parts: object) -> int:
    """A 31-bit seed from ``base`` and any labels/indices (sha256, so no collisions by arithmetic).

    Args:
        base: the run seed (engine) or the probe's seed (probes).
        *parts: labels and indices, joined with ``:`` after ``base`` before hashing.
    """
    text = ":".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def sample_seeds(base: int, keys: Sequence[str], *parts: object) -> list[int]:
    """One seed per sample: ``derive_seed(base, *parts, key)`` for each of ``keys``.

    With the samples' content keys (:meth:`robaudit.data.audit_data.AuditData.content_keys`), a
    sample's random draws depend on its pixels and the purpose alone: never on which other samples
    share its batch, nor on its id or source (the attacks' per-sample random starts).
    """
    return [derive_seed(base, *parts, key) for key in keys]


def generator(base: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` (for noise the probe draws itself)."""
    return torch.Generator().manual_seed(derive_seed(base, *parts))
