"""The run order of the selected probes, from what each declares it ``requires``.

A requirement names a probe or a capability (every selected probe that ``provides`` it). The
engine runs the probes in a topological order of these edges, breaking ties by the listed order
(``--probes``, or the standard set's), refuses cycles, and refuses a probe whose mandatory
requirement is not selected (a usage error naming what to add; nothing is added silently, so the
cost of a run is what the user listed).
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence

from robaudit.errors import ProbeError
from robaudit.probes.base import Probe


def probe_inputs(names: Sequence[str], classes: Mapping[str, type[Probe]],
                 providers_hint: Callable[[str], list[str]] | None = None) -> dict[str, list[str]]:
    """For each selected probe, the selected probes whose results it reads, in listed order.

    Args:
        names: the selected probe names, in listed order.
        classes: name → probe class.
        providers_hint: capability → registered probes providing it (for the error message only).

    Raises:
        ProbeError: a mandatory requirement that no selected probe satisfies.
    """
    inputs: dict[str, list[str]] = {}
    for name in names:
        found: list[str] = []
        for req in getattr(classes[name], "requires", ()):
            if req.target in classes and req.target != name:
                matches = [req.target]
            else:
                matches = [n for n in names if n != name and req.target in getattr(classes[n], "provides", ())]
            if not matches and not req.optional:
                if " " not in req.target:  # a probe name; capabilities are phrases (``attack outcomes``)
                    raise ProbeError(f"probe '{name}' requires probe '{req.target}', which is not selected",
                                     fix=f"add {req.target} to --probes, or drop {name}")
                hint = ", ".join((providers_hint(req.target) if providers_hint else [])[:3])
                raise ProbeError(f"probe '{name}' requires {req.target}, which no selected probe provides",
                                 fix=f"add a probe that provides it to --probes{f' (e.g. {hint})' if hint else ''}, "
                                     f"or drop {name}")
            found.extend(m for m in matches if m not in found)
        inputs[name] = [n for n in names if n in found]
    return inputs


def run_order(names: Sequence[str], inputs: Mapping[str, Sequence[str]]) -> list[str]:
    """A topological order of ``names`` (each after its inputs); ties keep the listed order.

    Raises:
        ProbeError: the requirements form a cycle.
    """
    position = {n: i for i, n in enumerate(names)}
    waiting = {n: set(inputs.get(n, ())) for n in names}
    users: dict[str, list[str]] = {n: [] for n in names}
    for n, ups in waiting.items():
        for up in ups:
            users[up].append(n)
    ready = [(position[n], n) for n in names if not waiting[n]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for user in users[n]:
            waiting[user].discard(n)
            if not waiting[user]:
                heapq.heappush(ready, (position[user], user))
    if len(order) < len(names):
        stuck = [n for n in names if n not in order]
        raise ProbeError(f"the probes {', '.join(stuck)} require each other's results (a cycle in 'requires')",
                         fix="drop one of them from --probes, and report the cycle to the probes' authors")
    return order
