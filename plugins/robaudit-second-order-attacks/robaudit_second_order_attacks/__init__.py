"""robaudit plugin: Yao et al.'s second-order attacks FHSM (L∞) and L2HESS (L2).

Registered through the entry-point group ``robaudit.probes`` (see this distribution's
``pyproject.toml``); robaudit imports :mod:`.probes` only when a probe is asked for.
:mod:`.newton` holds the solvers, :mod:`.report` the report section's context.
"""

__version__ = "0.1.0"
