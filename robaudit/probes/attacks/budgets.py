"""The ε list of one attack probe: the run's threat model, or the probe's own ``eps`` knob.

Every ε is in [0, 1] pixel units, in the L∞ or L2 norm of δ = x_adv − x over all C·H·W pixels of
one sample. The budgets themselves live in :mod:`robaudit.threat_model` (one owner); this module
re-exports the helpers the attack probes share.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from robaudit.errors import ProbeError
from robaudit.threat_model import NORMS, ThreatModel, check_eps_list, check_norm, eps_key, known_eps_keys

__all__ = ["NORMS", "Budgets", "check_eps_list", "check_norm", "eps_key", "known_eps_keys", "probe_budgets",
           "sanity_eps"]

KNOB_SOURCE = "probe knob"


@dataclass(frozen=True)
class Budgets:
    """The resolved ε list of one probe.

    Attributes:
        norm: ``linf`` or ``l2``.
        eps: ascending, distinct budgets in pixel units.
        source: the threat model's source (``config`` or ``default:<family>``), or ``probe knob``.
    """

    norm: str
    eps: tuple[float, ...]
    source: str


def probe_budgets(knob: Sequence[float] | None, norm: str, threat_model: ThreatModel,
                  reference_only: bool = False) -> Budgets:
    """The probe's budgets: its ``eps`` knob (sorted, de-duplicated; any list, for this probe only) or
    the threat model's — the sweep, or with ``reference_only`` the single headline budget.

    Raises:
        ProbeError: an L2 knob budget larger than the diameter √d of the pixel box.
    """
    if knob is None:
        eps = (threat_model.reference(norm),) if reference_only else threat_model.eps(norm)
        return Budgets(norm, eps, threat_model.source(norm))
    values = tuple(sorted({float(e) for e in knob}))
    if norm == "l2":
        diameter = math.sqrt(math.prod(threat_model.image_shape))
        if values[-1] > diameter + 1e-9:
            raise ProbeError(f"L2 budget {values[-1]} exceeds the diameter √d = {diameter:.4g} of the pixel box",
                             fix="use L2 budgets no larger than √(C·H·W)")
    return Budgets(norm, values, KNOB_SOURCE)


def sanity_eps(norm: str, image_shape: Sequence[int]) -> float:
    """A budget that reaches every image in the pixel box: 1 for L∞, √d for L2."""
    return 1.0 if norm == "linf" else math.sqrt(math.prod(image_shape))
