"""The attack-outcome table: sample × norm × ε → broken, by which attacks, and the best distance.

The one definition of "was this sample broken at ε?" that ``attack.worst_case``, the geometry
groups, the report and the gate read. The engine builds it from every attack of the run that
provides :data:`~robaudit.probes.base.ATTACK_OUTCOMES` (fresh or reused on ``--resume``), always
from their persisted form, so a resumed run builds the same table as an uninterrupted one.

An attack result contributes through its typed fields, never through parsed column names:

* ``summary.norm`` (``linf`` / ``l2``) and ``summary.eps`` (the budgets it ran at, pixel units)
  with the per-sample column ``success_eps_<eps_key(ε)>`` for each (1 = not robust: misclassified
  clean, or a verified adversarial example within ε);
* a per-sample distance to the closest verified adversarial example in that norm: ``distance``
  (C&W, FAB) or ``min_eps`` (the minimal-ε bisection); 0 for samples misclassified clean, NaN
  where none was found. A sample whose distance is ≤ ε is broken at ε, at every ε.

:func:`success_budgets` reads the same typed fields back from ``results.json`` to say which per-sample
column is "success at (norm, ε)" (the analysis stage tests attack success at the reference budget only).

A sample is broken at (norm, ε) when any attack broke it there; the table's ε of a norm are every
budget some fixed-budget attack of that norm ran at. :meth:`OutcomeTable.broken_at` also answers
other budgets when distances exist (from the distances alone).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robaudit.threat_model import NORMS, eps_key, same_eps

if TYPE_CHECKING:
    from robaudit.probes.base import ProbeResult

DISTANCE_COLUMNS = ("distance", "min_eps")


def success_key(eps: float) -> str:
    """Per-sample column of an attack's success at ``eps``: ``success_eps_<eps_key(eps)>``."""
    return f"success_eps_{eps_key(eps)}"


def worst_case_key(norm: str, eps: float) -> str:
    """Per-sample column of success at (norm, ε) in a result that covers several norms (``attack.worst_case``),
    listed in its summary's per-norm section ``<norm>.eps``: ``success_<norm>_eps_<eps_key(eps)>``."""
    return f"success_{norm}_eps_{eps_key(eps)}"


def success_budgets(probes: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, float]]:
    """Per-sample table column (``probe/column``) → (norm, ε) of every attack-success column whose budget its
    probe's typed summary states, from ``results.json``'s ``probes`` section (finished probes only):

    * ``summary.norm`` with ``summary.eps``: the columns :func:`success_key` (one-norm attacks);
    * ``summary.<norm>.eps`` for each norm: the columns :func:`worst_case_key` (``attack.worst_case``).

    Only columns the probe wrote (``per_sample_columns``) are listed; a column not listed has no budget
    robaudit can state (column names are never parsed).
    """
    from robaudit.results.store import per_sample_column

    out: dict[str, tuple[str, float]] = {}
    for name, entry in probes.items():
        if entry.get("status") != "ok":
            continue
        summary, written = entry.get("summary") or {}, set(entry.get("per_sample_columns") or [])
        found: list[tuple[str, str, float]] = []
        if summary.get("norm") in NORMS:
            found += [(success_key(float(e)), summary["norm"], float(e)) for e in summary.get("eps") or []]
        for norm in NORMS:
            section = summary.get(norm)
            if isinstance(section, Mapping):
                found += [(worst_case_key(norm, float(e)), norm, float(e)) for e in section.get("eps") or []]
        for key, norm, eps in found:
            column = per_sample_column(name, key)
            if column in written:
                out[column] = (norm, eps)
    return out


@dataclass(frozen=True)
class NormOutcomes:
    """The outcomes of one norm over N samples.

    Attributes:
        eps: the budgets some fixed-budget attack ran at, ascending (pixel units), shape (E,).
        broken: (E, N) bools: some attack broke the sample at that ε (clean-wrong samples included).
        broken_by: attack name → (E, N) bools; all False at a ε the attack did not answer.
        attacks: per ε, the attacks that answered there (ran at that ε, or have distances).
        distance: (N,) the smallest verified adversarial distance over the distance attacks
            (0: misclassified clean; +inf: none found or no distance attack).
        distance_attacks: the attacks that contributed distances.
    """

    eps: tuple[float, ...]
    broken: np.ndarray
    broken_by: Mapping[str, np.ndarray]
    attacks: tuple[tuple[str, ...], ...]
    distance: np.ndarray
    distance_attacks: tuple[str, ...]

    def index(self, eps: float) -> int | None:
        """The row of budget ``eps``, or ``None``."""
        return next((k for k, e in enumerate(self.eps) if same_eps(e, eps)), None)


@dataclass(frozen=True)
class OutcomeTable:
    """Attack outcomes of the run's N samples, per norm (see the module docstring).

    Attributes:
        n: the number of samples.
        norms: ``linf`` / ``l2`` → :class:`NormOutcomes`, only for norms some attack answered.
    """

    n: int
    norms: Mapping[str, NormOutcomes] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether no attack contributed."""
        return not self.norms

    def broken_at(self, norm: str, eps: float) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """(N bools, the attacks that answered) for "broken at (norm, ε)", or ``None`` when no attack
        of that norm ran at ε and none gave distances."""
        outcomes = self.norms.get(norm)
        if outcomes is None:
            return None
        k = outcomes.index(eps)
        if k is not None:
            return outcomes.broken[k], outcomes.attacks[k]
        if outcomes.distance_attacks:
            return outcomes.distance <= eps, outcomes.distance_attacks
        return None

    def summary(self) -> dict[str, Any]:
        """The table's counts, as written to ``results.json`` (``attack_outcomes``): per norm, each ε
        with the number of samples broken there and the attacks behind it."""
        out: dict[str, Any] = {"n": self.n, "norms": {}}
        for norm, o in self.norms.items():
            out["norms"][norm] = {
                "eps": list(o.eps),
                "by_eps": [{"eps": e, "broken": int(o.broken[k].sum()), "attacks": list(o.attacks[k]),
                            "broken_by": {a: int(m[k].sum()) for a, m in o.broken_by.items() if a in o.attacks[k]}}
                           for k, e in enumerate(o.eps)],
                "distance_attacks": list(o.distance_attacks),
            }
        return out


def build_outcome_table(results: Mapping[str, "ProbeResult"], n: int) -> OutcomeTable:
    """The table from attack results (name → result; results without the typed fields are skipped).

    Args:
        results: probe results in any form (fresh arrays or persisted float64 columns).
        n: the number of samples N.
    """
    fixed: dict[str, list[tuple[str, dict[float, np.ndarray]]]] = {norm: [] for norm in NORMS}
    dist: dict[str, list[tuple[str, np.ndarray]]] = {norm: [] for norm in NORMS}
    for name in sorted(results):
        result = results[name]
        norm = result.summary.get("norm") if result is not None else None
        if norm not in NORMS:
            continue
        by_eps = {float(e): np.asarray(result.per_sample[success_key(e)], dtype=np.float64) > 0.5
                  for e in result.summary.get("eps", []) or [] if success_key(e) in result.per_sample}
        if by_eps:
            fixed[norm].append((name, by_eps))
        for column in DISTANCE_COLUMNS:
            if column in result.per_sample:
                d = np.asarray(result.per_sample[column], dtype=np.float64)
                dist[norm].append((name, np.where(np.isnan(d), np.inf, d)))
                break
    norms: dict[str, NormOutcomes] = {}
    for norm in NORMS:
        if not fixed[norm] and not dist[norm]:
            continue
        eps: list[float] = []
        for _, by_eps in fixed[norm]:
            for e in by_eps:
                if not any(same_eps(e, have) for have in eps):
                    eps.append(e)
        eps.sort()
        best = np.minimum.reduce([d for _, d in dist[norm]]) if dist[norm] else np.full(n, np.inf)
        broken_by: dict[str, np.ndarray] = {}
        attacks: list[list[str]] = [[] for _ in eps]
        for name, by_eps in fixed[norm]:
            rows = np.zeros((len(eps), n), dtype=bool)
            for k, e in enumerate(eps):
                hit = next((m for have, m in by_eps.items() if same_eps(have, e)), None)
                if hit is not None:
                    rows[k] = hit
                    attacks[k].append(name)
            broken_by[name] = rows
        for name, d in dist[norm]:
            within = np.stack([d <= e for e in eps]) if eps else np.zeros((0, n), dtype=bool)
            broken_by[name] = broken_by[name] | within if name in broken_by else within
            for k in range(len(eps)):
                if name not in attacks[k]:
                    attacks[k].append(name)
        broken = np.logical_or.reduce(list(broken_by.values())) if broken_by else np.zeros((len(eps), n), dtype=bool)
        norms[norm] = NormOutcomes(tuple(eps), np.asarray(broken, dtype=bool).reshape(len(eps), n), broken_by,
                                   tuple(tuple(sorted(a)) for a in attacks), best,
                                   tuple(sorted(name for name, _ in dist[norm])))
    return OutcomeTable(n, norms)


def load_outcome_table(out_dir: Path) -> OutcomeTable:
    """The table of a finished (or interrupted) run, rebuilt from its ``results.json`` and
    ``per_sample.csv`` exactly as the engine built it (``robaudit report``, the gate)."""
    from robaudit.results import store

    results = store.read_results(out_dir)
    ids, columns = store.read_per_sample(out_dir)
    providers = (results.get("attack_outcomes") or {}).get("sources", [])
    persisted = {name: store.persisted_result(results["probes"][name], columns) for name in providers
                 if results.get("probes", {}).get(name, {}).get("status") == "ok"}
    return build_outcome_table(persisted, len(ids))


def to_json_text(table: OutcomeTable) -> str:
    """A compact, stable text form of the whole table (tests compare tables with it)."""
    payload = {norm: {"eps": list(o.eps), "broken": o.broken.astype(int).tolist(),
                      "broken_by": {a: m.astype(int).tolist() for a, m in o.broken_by.items()},
                      "attacks": [list(a) for a in o.attacks],
                      "distance": [None if not np.isfinite(v) else float(v) for v in o.distance],
                      "distance_attacks": list(o.distance_attacks)} for norm, o in table.norms.items()}
    return json.dumps({"n": table.n, "norms": payload}, sort_keys=True)
