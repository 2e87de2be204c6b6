"""The HTML report stage: results directory → one self-contained ``report.html``."""
from robaudit.report.render import render_report

__all__ = ["render_report"]
