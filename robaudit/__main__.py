"""``python -m robaudit``."""
from robaudit.cli.main import entry_point

entry_point()
