"""Metric paths: address a value in ``results.json`` by a list of keys, never a dotted string.

A path is a TOML array of segments, read left to right from the top of ``results.json``:

- a **string** selects a key of a table: ``"probes"``, ``"attack.pgd"`` (probe names may contain
  dots; that is why paths are arrays), ``"accuracy"``. When a table's keys are numbers written
  as strings (ε values such as ``"0.1"``), a string or number segment that is numerically equal
  (relative tolerance 1e-4) matches too, and so does a fraction such as ``"8/255"``;
- an **integer** selects a list element by position (0-based; negative counts from the end);
- an **inline table** ``{eps = 0.1, norm = "Linf"}`` selects the one record of a list (or of a
  table of records) whose fields equal the given values (numbers with the same tolerance).

Example: ``["probes", "clean", "summary", "accuracy"]``, or for an ε sweep stored as records,
``["probes", "attack.pgd", "summary", "robust_accuracy", {eps = 0.1}, "accuracy"]``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Union

from robaudit.errors import did_you_mean

Segment = Union[str, int, float, dict[str, Any]]
"""One step of a metric path (see the module docstring)."""

REL_TOL = 1e-4
"""Relative tolerance for matching numeric keys and selector values (4 significant digits suffice)."""

ESTIMATE_KEYS = frozenset({"value", "low", "high", "level", "method", "n"})


def is_estimate(node: Any) -> bool:
    """Whether ``node`` is a serialised :class:`~robaudit.probes.base.Estimate`."""
    return isinstance(node, dict) and ESTIMATE_KEYS <= set(node)


def format_segment(segment: Segment) -> str:
    """A segment for people: keys as written, ``[3]`` for indices, ``[eps=0.1]`` for selectors."""
    if isinstance(segment, dict):
        return "[" + ", ".join(f"{k}={v}" for k, v in segment.items()) + "]"
    if isinstance(segment, bool):
        return str(segment)
    if isinstance(segment, int):
        return f"[{segment}]"
    return str(segment)


def format_path(path: tuple[Segment, ...] | list[Segment]) -> str:
    """``probes › clean › summary › accuracy`` (the report's notation)."""
    return " › ".join(format_segment(s) for s in path) if path else "(top level)"


def as_number(text: Any) -> float | None:
    """``text`` as a number: ints, floats, numeric strings and fractions like ``"8/255"``; else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    if isinstance(text, str):
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return float(Fraction(text.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _values_match(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    w, h = as_number(want), as_number(have)
    if isinstance(want, (int, float)) and h is not None:
        return _close(float(want), h)
    if isinstance(want, str) and isinstance(have, str):
        if want == have:
            return True
        return w is not None and h is not None and _close(w, h)
    return bool(want == have)


@dataclass
class PathError(Exception):
    """A path that does not resolve: where it stopped and what was there instead.

    Attributes:
        depth: index of the segment that failed.
        reason: what went wrong at that segment, one phrase.
        available: the keys (or choices) available at that level, for suggestions.
        suggestion: ``did you mean …?`` or ``""``.
    """

    path: tuple[Segment, ...]
    depth: int
    reason: str
    available: list[str]
    suggestion: str = ""

    def where(self) -> str:
        """The resolved prefix, in the report's notation."""
        return format_path(self.path[: self.depth])

    def describe(self) -> str:
        """One line: the reason, the suggestion and the available keys (at most 12)."""
        text = f"{self.reason} under {self.where()}"
        if self.suggestion:
            text += f"; {self.suggestion}"
        return text

    def choices(self, limit: int = 12) -> str:
        """The available keys, comma-separated, cut at ``limit``."""
        shown = self.available[:limit]
        more = len(self.available) - len(shown)
        return ", ".join(shown) + (f" … ({more} more)" if more > 0 else "") if shown else "none"

    def __str__(self) -> str:
        return self.describe()


def _describe_list(node: list[Any]) -> list[str]:
    if node and all(isinstance(v, dict) for v in node):
        fields: dict[str, list[str]] = {}
        for record in node:
            for k, v in record.items():
                if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    fields.setdefault(k, [])
                    if str(v) not in fields[k]:
                        fields[k].append(str(v))
        return [f"{{{k} = {'|'.join(vs[:6])}}}" for k, vs in fields.items()]
    return [f"[{i}]" for i in range(len(node))] if node else []


def _match_numeric_key(node: dict[str, Any], number: float, numbers: Sequence[float]) -> list[str]:
    """The keys that robaudit wrote for ``number``: ε budgets and class indices.

    Keys are written by the threat model's one formatter (:func:`robaudit.threat_model.eps_key`) and
    never parsed back. A rule's number matches a budget among ``numbers`` (the ε the run stored as
    numbers) to ``REL_TOL``, so ``8/255`` and ``0.03137`` both find ``0.0313725``; any other number
    matches only the key that ``eps_key`` writes for it.
    """
    from robaudit.threat_model import eps_key

    known = [e for e in numbers if _close(e, number)] or [number]
    return sorted({eps_key(e) for e in known} & set(node))


def stored_budgets(results: Any) -> tuple[float, ...]:
    """Every ε a results file stores as a number: the threat model's lists and references, and the
    ``eps`` list of each probe's summary (a probe knob may set its own)."""
    found: list[float] = []

    def add(values: Any) -> None:
        for v in values if isinstance(values, list) else [values]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                found.append(float(v))

    if not isinstance(results, dict):
        return ()
    norms = (results.get("threat_model") or {}).get("norms") if isinstance(results.get("threat_model"), dict) else None
    for budget in (norms or {}).values():
        if isinstance(budget, dict):
            add(budget.get("eps"))
            add(budget.get("reference"))
    for entry in (results.get("probes") or {}).values() if isinstance(results.get("probes"), dict) else ():
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if isinstance(summary, dict):
            add(summary.get("eps"))
    return tuple(sorted(set(found)))


def _select(records: list[tuple[str, Any]], selector: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(label, rec) for label, rec in records
            if isinstance(rec, dict) and all(k in rec and _values_match(v, rec[k]) for k, v in selector.items())]


def resolve(root: Any, path: tuple[Segment, ...], numbers: Sequence[float] = ()) -> tuple[Any, tuple[Any, ...]]:
    """Follow ``path`` from ``root``.

    Args:
        numbers: the ε budgets the run stores as numbers (:func:`stored_budgets`), which a numeric
            segment matches to ``REL_TOL`` before its key is looked up.

    Returns:
        (the node reached, the actual keys/indices taken at each step).

    Raises:
        PathError: a segment that matches nothing (or more than one thing) at its level.
    """
    node = root
    taken: list[Any] = []
    for depth, seg in enumerate(path):
        def fail(reason: str, available: list[str], suggestion: str = "") -> PathError:
            return PathError(tuple(path), depth, reason, available, suggestion)

        if isinstance(seg, dict):
            if isinstance(node, list):
                records = [(str(i), v) for i, v in enumerate(node)]
            elif isinstance(node, dict) and not is_estimate(node):
                records = list(node.items())
            else:
                raise fail(f"selector {format_segment(seg)} needs a list of records, found {_kind(node)}", [])
            found = _select(records, seg)
            if len(found) != 1:
                available = _describe_list([r for _, r in records])
                what = "no record" if not found else f"{len(found)} records"
                raise fail(f"{what} match {format_segment(seg)}" + ("; add fields to the selector" if found else ""),
                           available)
            label, chosen = found[0]
            taken.append(int(label) if isinstance(node, list) else label)
            node = chosen
            continue
        if isinstance(node, list):
            if isinstance(seg, int) and not isinstance(seg, bool):
                if -len(node) <= seg < len(node):
                    taken.append(seg % len(node))
                    node = node[seg]
                    continue
                raise fail(f"index {seg} is out of range for a list of {len(node)}", _describe_list(node))
            raise fail(f"'{seg}' cannot select from a list; use an integer index or a {{key = value}} selector",
                       _describe_list(node))
        if isinstance(node, dict):
            keys = [str(k) for k in node]
            if isinstance(seg, str) and seg in node:
                taken.append(seg)
                node = node[seg]
                continue
            number = as_number(seg)
            if number is not None:
                matches = _match_numeric_key(node, number, numbers)
                if len(matches) == 1:
                    taken.append(matches[0])
                    node = node[matches[0]]
                    continue
                if len(matches) > 1:
                    raise fail(f"{format_segment(seg)} matches several keys ({', '.join(matches)}); write the key exactly",
                               keys)
            hint = did_you_mean(str(seg), keys)
            raise fail(f"no key {format_segment(seg)!r}" if isinstance(seg, str) else f"no key {seg}", keys, hint)
        raise fail(f"cannot go into {_kind(node)} with {format_segment(seg)}", [])
    return node, tuple(taken)


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, (int, float)):
        return f"the number {node}"
    if isinstance(node, str):
        return "a string"
    if is_estimate(node):
        return "an estimate"
    if isinstance(node, list):
        return "a list"
    return "a table"


def describe_node(node: Any) -> str:
    """What kind of value ``node`` is, for error messages."""
    return _kind(node)


def direction_from_metadata(hib: Any, keys: tuple[Any, ...]) -> bool | None:
    """Higher-is-better for the summary keys ``keys`` from a probe's nested ``higher_is_better``.

    The mirror may be coarser than the summary: a boolean at ``("robust_accuracy",)`` covers every
    key under it (all ε). List indices and selector steps are skipped, since the mirror has only
    table keys. Returns None when the mirror says nothing about this path.
    """
    node = hib
    for key in keys:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            return None
        if isinstance(key, int):
            continue
        if key not in node:
            return None
        node = node[key]
    return node if isinstance(node, bool) else None
