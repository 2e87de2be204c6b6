"""Dataset loading: every source becomes an :class:`AuditData` of [0, 1] pixels with stable ids.

Public API:

* :class:`DataRequest`: which dataset, split, subsample and conversions.
* :func:`describe_dataset`: cheap facts (K, channels, size, mean/std, class names).
* :func:`load_data`: the samples, as :class:`AuditData`.
"""

from __future__ import annotations

from robaudit.data.audit_data import AuditData, DatasetInfo
from robaudit.data.loader import describe_dataset, load_data
from robaudit.data.request import DataRequest, default_data_dir

__all__ = ["AuditData", "DataRequest", "DatasetInfo", "default_data_dir", "describe_dataset", "load_data"]
