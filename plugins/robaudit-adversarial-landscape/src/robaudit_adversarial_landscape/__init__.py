"""robaudit plugin ``adv_landscape``: the loss landscape of the adversarial loss (Liu et al. 2020).

The probe is registered through the entry-point group ``robaudit.probes`` (see this distribution's
``pyproject.toml``); importing this package registers nothing.
"""
from __future__ import annotations

__version__ = "0.1.0"
