"""The command-line interface (``robaudit``); see :mod:`robaudit.cli.main`."""
