"""The probe registry: one lazy registry fed by the entry-point group ``robaudit.probes``.

Built-in probes are registered through robaudit's own ``pyproject.toml`` entry points, the
same path third-party plugins use; nothing registers by import side effect. Entry points
are listed without importing them; a probe class is imported the first time it is asked
for and checked against the probe contract then.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from robaudit.errors import ProbeError, did_you_mean
from robaudit.probes.base import Probe, validate_probe_class

log = logging.getLogger("robaudit")

ENTRY_POINT_GROUP = "robaudit.probes"
AUTOLOAD_ENV = "ROBAUDIT_NO_PLUGIN_AUTOLOAD"
BLOCK_ENV = "ROBAUDIT_BLOCK_PLUGINS"
OWN_DISTRIBUTION = "robaudit"


@dataclass(frozen=True)
class ProbeInfo:
    """A registered probe as listed by ``robaudit probes``."""

    name: str
    version: str
    description: str
    distribution: str
    distribution_version: str
    standard: bool


class ProbeRegistry:
    """Registered probes by name.

    Args:
        autoload_plugins: load probes from distributions other than robaudit. ``False``
            (``--no-plugin-autoload`` or ``ROBAUDIT_NO_PLUGIN_AUTOLOAD=1``) keeps only the
            built-ins and the distributions named in ``plugins``, for CI.
        entry_point_list: the entry points to use instead of the installed ones (tests).
        plugins: distributions to load even when autoload is off (``-p DIST``).
        blocked: distributions never to load (``--block-plugin DIST`` or
            ``ROBAUDIT_BLOCK_PLUGINS=a,b``); robaudit itself cannot be blocked.

    Raises:
        ProbeError: two distributions register the same probe name, or ``-p`` names a
            distribution that registers no probe.
    """

    def __init__(self, autoload_plugins: bool | None = None, entry_point_list: list[EntryPoint] | None = None,
                 plugins: tuple[str, ...] | list[str] = (), blocked: tuple[str, ...] | list[str] = ()) -> None:
        if autoload_plugins is None:
            autoload_plugins = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}
        blocked_set = {_norm(b) for b in blocked} | {_norm(b) for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()}
        wanted = {_norm(p) for p in plugins}
        eps = list(entry_point_list) if entry_point_list is not None else list(entry_points(group=ENTRY_POINT_GROUP))
        available = {_norm(_dist_name(ep)) for ep in eps}
        missing = sorted(wanted - available)
        if missing:
            hint = did_you_mean(missing[0], available)
            raise ProbeError(f"plugin distribution '{missing[0]}' registers no robaudit probe"
                             + (f"; {hint}" if hint else ""),
                             fix="install it (pip install ...) or check the name with 'robaudit probes'")
        self._entry_points: dict[str, EntryPoint] = {}
        for ep in eps:
            dist = _dist_name(ep)
            own = dist == OWN_DISTRIBUTION
            if not own and (_norm(dist) in blocked_set or (not autoload_plugins and _norm(dist) not in wanted)):
                continue
            if ep.name in self._entry_points:
                other = _dist_name(self._entry_points[ep.name])
                raise ProbeError(
                    f"probe name '{ep.name}' is registered twice: by distribution '{other}' "
                    f"({self._entry_points[ep.name].value}) and by '{dist}' ({ep.value})",
                    fix=f"uninstall one of '{other}' and '{dist}', or disable plugin autoload "
                    f"with --no-plugin-autoload",
                )
            self._entry_points[ep.name] = ep
        self._loaded: dict[str, type[Probe]] = {}
        self.broken: dict[str, ProbeError] = {}
        """Plugin probes that failed to import or break the contract, by name (found so far)."""

    def names(self) -> list[str]:
        """All registered probe names, sorted."""
        return sorted(self._entry_points)

    def get(self, name: str) -> type[Probe]:
        """The probe class registered as ``name`` (imported on first use).

        Raises:
            ProbeError: unknown name (with close matches), or the entry point fails to
                import or breaks the probe contract.
        """
        if name not in self._entry_points:
            hint = did_you_mean(name, self._entry_points)
            raise ProbeError(
                f"unknown probe '{name}'" + (f"; {hint}" if hint else ""),
                fix="run 'robaudit probes' to list the registered probes",
            )
        if name not in self._loaded:
            ep = self._entry_points[name]
            try:
                cls = ep.load()
            except Exception as exc:  # any import failure of a plugin is reported, not raised raw
                raise ProbeError(
                    f"probe '{name}' from distribution '{_dist_name(ep)}' failed to import "
                    f"({ep.value}): {type(exc).__name__}: {exc}",
                    fix=f"reinstall or fix '{_dist_name(ep)}', or leave '{name}' out of --probes",
                ) from exc
            problems = validate_probe_class(cls)
            if not problems and cls.name != name:
                problems.append(f"class attribute name='{cls.name}' differs from its entry-point name")
            if problems:
                raise ProbeError(
                    f"probe '{name}' from distribution '{_dist_name(ep)}' breaks the probe contract: "
                    + "; ".join(problems),
                    fix=f"fix '{_dist_name(ep)}' (see docs/writing-a-probe.md)",
                )
            self._loaded[name] = cls
        return self._loaded[name]

    def distribution(self, name: str) -> tuple[str, str]:
        """(distribution name, version) that registers ``name``."""
        ep = self._entry_points[name]
        dist = ep.dist
        return _dist_name(ep), (dist.version if dist is not None else "unknown")

    def standard_set(self) -> list[str]:
        """The default audit: probes marked ``standard``, by name (the engine then runs each after the
        probes it ``requires``, keeping this order otherwise)."""
        classes = [c for c in (self.get_or_skip(n) for n in self.names()) if c is not None]
        return [c.name for c in classes if getattr(c, "standard", False)]

    def get_or_skip(self, name: str) -> type[Probe] | None:
        """Like :meth:`get`, but a broken *plugin* probe is logged once, kept in :attr:`broken` and
        skipped (``None``), so one bad plugin cannot stop an audit that does not ask for it.

        Raises:
            ProbeError: robaudit's own probe is broken (a robaudit bug), or ``name`` is unknown.
        """
        if name in self.broken:
            return None
        try:
            return self.get(name)
        except ProbeError as exc:
            if name not in self._entry_points or self.distribution(name)[0] == OWN_DISTRIBUTION:
                raise
            self.broken[name] = exc
            log.error("%s; skipped (fix: %s)", exc.message, exc.fix)
            return None

    def describe(self) -> list[ProbeInfo]:
        """Every registered probe with its version and source distribution (imports them); a broken
        plugin probe is listed with version ``?`` and its error as the description."""
        infos = []
        for name in self.names():
            cls = self.get_or_skip(name)
            dist, dist_version = self.distribution(name)
            if cls is None:
                infos.append(ProbeInfo(name, "?", f"BROKEN: {self.broken[name].message}", dist, dist_version, False))
            else:
                infos.append(ProbeInfo(name, cls.version, cls.description, dist, dist_version,
                                       getattr(cls, "standard", False)))
        return infos

    def broken_plugins(self) -> list[dict[str, str]]:
        """The broken plugin probes found so far, for ``results.json``."""
        return [{"probe": n, "distribution": self.distribution(n)[0], "error": e.message}
                for n, e in sorted(self.broken.items())]


    def plugins_used(self, names: list[str]) -> list[dict[str, object]]:
        """The non-robaudit distributions behind ``names``, with versions, for ``results.json``."""
        by_dist: dict[tuple[str, str], list[str]] = {}
        for name in names:
            dist, version = self.distribution(name)
            if dist != OWN_DISTRIBUTION:
                by_dist.setdefault((dist, version), []).append(name)
        return [{"distribution": d, "version": v, "probes": p} for (d, v), p in sorted(by_dist.items())]


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "unknown"


def _norm(name: str) -> str:
    """PEP 503 normalisation, so ``My_Plugin`` and ``my-plugin`` name the same distribution."""
    import re

    return re.sub(r"[-_.]+", "-", name.strip()).lower()
