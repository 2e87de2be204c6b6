"""The baseline of relative rules: load it, make sure it is comparable, record its hash.

Two audits are comparable when they ran on the same dataset and split, on the same sample ids,
and with the same version and configuration of every attack probe and of every probe a relative
rule reads. Anything else compares different things (a harder sample set, a weaker attack), so
the gate refuses, says what differs, and accepts it only when told to (``allow-mismatch`` in the
rules or ``--allow-mismatch`` on the command line). The differences found are recorded either way.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robaudit.errors import UsageError
from robaudit.results import store


class BaselineMismatchError(UsageError):
    """The baseline is not comparable with the candidate (exit 2)."""


@dataclass
class Run:
    """One results directory, loaded.

    Attributes:
        path: the directory.
        results: ``results.json``.
        ids: sample ids of the per-sample table (empty when there is none).
        columns: per-sample columns by ``probe/key`` name.
    """

    path: Path
    results: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Run":
        """Read ``results.json`` and the per-sample table of ``path``.

        Raises:
            UsageError: no readable ``results.json`` there, or a per-sample table that disagrees with it
                (truncated, a recorded column missing, an id twice).
        """
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"results directory {path} does not exist",
                             fix="pass the --out directory of a 'robaudit run'")
        results = store.read_results(path)
        ids, columns = store.read_per_sample(path)
        store.check_per_sample(results, ids, columns, path)
        return cls(path, results, ids, columns)


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it does not exist."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_baseline(run: Run) -> dict[str, Any]:
    """The baseline's identity for the gate record: path, hashes of its files, model and date.

    ``results_sha256`` is the SHA-256 of ``results.json`` as it was read (``sha256sum`` gives the same);
    the gate never writes into the baseline directory, so it stays stable.
    """
    r = run.results
    return {
        "path": str(run.path),
        "results_sha256": file_sha256(run.path / store.RESULTS_FILE),
        "per_sample_sha256": file_sha256(run.path / store.PER_SAMPLE_FILE),
        "model_source": r.get("model", {}).get("source"),
        "checkpoint_sha256": r.get("model", {}).get("checkpoint_sha256"),
        "created": r.get("created"),
    }


def find_mismatches(candidate: Run, baseline: Run, probes: set[str]) -> dict[str, str]:
    """What makes ``baseline`` incomparable with ``candidate``, by kind (see :data:`rules.MISMATCHES`).

    Args:
        probes: probes read by relative rules; their version and config must match, as must
            those of every attack probe (``attack.*``) present in both runs.

    Returns:
        ``{"dataset" | "samples" | "config": one-phrase explanation}``; empty when comparable.
    """
    out: dict[str, str] = {}
    cd, bd = candidate.results.get("data", {}), baseline.results.get("data", {})
    c_set = (cd.get("name") or cd.get("source"), cd.get("split"))
    b_set = (bd.get("name") or bd.get("source"), bd.get("split"))
    if c_set != b_set:
        out["dataset"] = f"dataset {c_set[0]} ({c_set[1]} split) vs baseline {b_set[0]} ({b_set[1]} split)"
    if not candidate.ids or not baseline.ids:
        which = "candidate" if not candidate.ids else "baseline"
        out["samples"] = f"the {which} has no per-sample table, so its sample ids cannot be checked"
    elif set(candidate.ids) != set(baseline.ids) or len(candidate.ids) != len(baseline.ids):
        common = len(set(candidate.ids) & set(baseline.ids))
        out["samples"] = (f"different sample ids ({len(candidate.ids)} samples vs baseline {len(baseline.ids)}, "
                          f"{common} in common; dataset, split, --n-samples or --seed differ)")
    cp, bp = candidate.results.get("probes", {}), baseline.results.get("probes", {})
    names = {n for n in cp if n.startswith("attack.") and n in bp} | {n for n in probes if n in cp and n in bp}
    diffs = []
    for name in sorted(names):
        c, b = cp[name], bp[name]
        if c.get("version") != b.get("version"):
            diffs.append(f"{name} version {c.get('version')} vs {b.get('version')}")
        elif c.get("config") != b.get("config"):
            keys = sorted(k for k in set(c.get("config", {})) | set(b.get("config", {}))
                          if c.get("config", {}).get(k) != b.get("config", {}).get(k))
            shown = ", ".join(f"{k} {c.get('config', {}).get(k)!r} vs {b.get('config', {}).get(k)!r}" for k in keys[:3])
            diffs.append(f"{name} config ({shown})")
    budgeted = any(n.startswith(BUDGETED_PREFIXES) for n in set(cp) & set(bp))
    # results written before robaudit recorded its threat model are compared by their probes' config, as then
    recorded = "threat_model" in candidate.results and "threat_model" in baseline.results
    threat = budgeted and recorded and _threat_model_difference(candidate.results.get("threat_model"),
                                                                baseline.results.get("threat_model"))
    if threat:
        diffs.insert(0, threat)
    if diffs:
        out["config"] = "probe settings differ: " + "; ".join(diffs)
    return out


def same_run(candidate: Run, baseline: Run) -> str:
    """Why ``baseline`` is the candidate itself (its directory, however spelt: a symbolic link, ``..``), as a
    phrase, or ``""`` when it is another directory. A copy is another audit's stand-in and is compared as one."""
    c, b = Path(candidate.path), Path(baseline.path)
    if c.is_dir() and b.is_dir() and os.path.samefile(c, b):
        return f"the candidate's own directory ({c})"
    return ""


BUDGETED_PREFIXES = ("attack.", "geometry.")
"""Probes that read ε from the run's threat model: when both runs ran one, their threat models must agree."""
_BUDGET_KEYS = ("eps", "tolerance", "search_max")
"""What decides an attack's numbers in a norm's budget (the reference ε only picks the verdict's budget)."""


def _threat_model_difference(c: Any, b: Any) -> str:
    """How the two runs' threat models (ε per norm, resolved once per run) differ, as a phrase; ``""`` when not.

    Attack probes echo ``eps = null`` in their config when they read ε from the threat model, so their config
    alone does not show an ε list changed with ``--eps``; the robust accuracy at one ε depends on the others
    (a sample broken at a smaller ε counts as broken at the larger).
    """
    c_norms = c.get("norms") if isinstance(c, dict) else None
    b_norms = b.get("norms") if isinstance(b, dict) else None
    if not isinstance(c_norms, dict) or not isinstance(b_norms, dict):
        return "" if c_norms == b_norms else "threat model recorded in only one run"
    for norm in sorted(set(c_norms) | set(b_norms), key=str):
        cn, bn = c_norms.get(norm), b_norms.get(norm)
        if not isinstance(cn, dict) or not isinstance(bn, dict):
            if cn != bn:
                return f"threat model {norm}: {cn!r} vs {bn!r}"
            continue
        for key in _BUDGET_KEYS:
            if cn.get(key) != bn.get(key):
                return f"threat model {norm} {key} {cn.get(key)!r} vs {bn.get(key)!r}"
    return ""


def check_comparable(candidate: Run, baseline: Run, probes: set[str], allowed: frozenset[str]) -> dict[str, str]:
    """Raise unless every difference found by :func:`find_mismatches` is in ``allowed``.

    Returns:
        all differences found (allowed ones included), to record.

    Raises:
        UsageError: the baseline is the candidate itself (:func:`same_run`); no allow-mismatch accepts that.
        BaselineMismatchError: one line naming every refused difference and how to accept it.
    """
    same = same_run(candidate, baseline)
    if same:
        raise UsageError(f"baseline {baseline.path} is {same}, so every relative rule would pass by comparing "
                         "the audit with itself",
                         fix="pass the results directory of the reference audit as --baseline (or baseline = in the "
                             "rules), not the audit being gated")
    found = find_mismatches(candidate, baseline, probes)
    refused = {k: v for k, v in found.items() if k not in allowed}
    if refused:
        names = ",".join(refused)
        quoted = ", ".join(f'"{k}"' for k in refused)
        raise BaselineMismatchError(
            f"baseline {baseline.path} is not comparable with {candidate.path}: " + "; ".join(refused.values()),
            fix=f"gate against a baseline audited the same way, or accept the difference with allow-mismatch = "
                f"[{quoted}] in the rules (or 'robaudit gate --allow-mismatch {names}')",
        )
    return found
