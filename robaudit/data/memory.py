"""How much memory this process can still take, to refuse a data file that cannot fit before reading it."""

from __future__ import annotations

import os
from pathlib import Path

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def available_memory() -> int | None:
    """Bytes of memory available to this process, or ``None`` when the platform does not say.

    Linux: ``MemAvailable`` of ``/proc/meminfo`` (free memory plus reclaimable caches), capped by
    the cgroup v2 limit of a container (``memory.max`` − ``memory.current``). Elsewhere: the
    free physical pages that ``os.sysconf`` reports, when it does.
    """
    found = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    if found:
        return min(found)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: int | float) -> str:
    """``n`` bytes for people: ``9.0 GiB``, ``512 B``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """Limit minus usage of this process's cgroup v2 (``0::/PATH`` in ``/proc/self/cgroup``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
        rel = next(line[3:] for line in lines if line.startswith("0::"))
        group = _CGROUP / rel.lstrip("/")
        limit = (group / "memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((group / "memory.current").read_text(encoding="ascii").strip()))
    except (OSError, ValueError, StopIteration):
        return None
