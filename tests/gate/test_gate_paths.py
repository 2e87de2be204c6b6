"""Metric paths: keys, indices, numeric ε keys, record selectors, and errors that suggest a fix."""
from __future__ import annotations

import pytest

from robaudit.gate.paths import PathError, direction_from_metadata, resolve, stored_budgets

SUMMARY = {
    "accuracy": {"value": 0.9, "low": 0.8, "high": 0.95, "level": 0.95, "method": "wilson", "n": 60},
    "per_class_accuracy": [1.0, 0.5, 0.75],
    "robust_accuracy": {"0.05": 0.7, "0.1": 0.5, "0.0313725": 0.8},
    "sweep": [{"eps": 0.1, "norm": "linf", "accuracy": 0.4}, {"eps": 0.1, "norm": "l2", "accuracy": 0.6},
              {"eps": 0.3, "norm": "linf", "accuracy": 0.1}],
}
BUDGETS = (0.05, 0.1, 8 / 255)  # the ε the run stores as numbers, beside their text keys


def test_numeric_keys_are_found_by_formatting_the_stored_budgets_never_by_parsing_keys() -> None:
    """A key that merely parses to the number is not matched: only the key robaudit writes for a budget."""
    summary = {"robust_accuracy": {"0.0313725": 0.8, "3.137e-2": 0.1}}
    node, keys = resolve(summary, ("robust_accuracy", "8/255"), BUDGETS)
    assert (node, keys) == (0.8, ("robust_accuracy", "0.0313725"))
    with pytest.raises(PathError, match="no key"):
        resolve({"robust_accuracy": {"3.137e-2": 0.1}}, ("robust_accuracy", 0.03137), ())
    results = {"threat_model": {"norms": {"linf": {"eps": [0.1, 8 / 255], "reference": 8 / 255}}},
               "probes": {"attack.x": {"summary": {"eps": [0.25]}}, "clean": {"summary": {"accuracy": 1.0}}}}
    assert stored_budgets(results) == (8 / 255, 0.1, 0.25)


@pytest.mark.parametrize(("path", "expected", "taken"), [
    (("accuracy",), SUMMARY["accuracy"], ("accuracy",)),
    (("per_class_accuracy", 1), 0.5, ("per_class_accuracy", 1)),
    (("per_class_accuracy", -1), 0.75, ("per_class_accuracy", 2)),
    (("robust_accuracy", "0.1"), 0.5, ("robust_accuracy", "0.1")),
    (("robust_accuracy", 0.1), 0.5, ("robust_accuracy", "0.1")),          # a number matches a numeric key
    (("robust_accuracy", "8/255"), 0.8, ("robust_accuracy", "0.0313725")),  # a fraction, to 4 significant digits
    (("robust_accuracy", 0.03137), 0.8, ("robust_accuracy", "0.0313725")),
    (("sweep", {"eps": 0.3}, "accuracy"), 0.1, ("sweep", 2, "accuracy")),
    (("sweep", {"eps": 0.1, "norm": "l2"}, "accuracy"), 0.6, ("sweep", 1, "accuracy")),
])
def test_paths_resolve_keys_indices_numbers_and_selectors(path: tuple, expected: object, taken: tuple) -> None:
    node, keys = resolve(SUMMARY, path, BUDGETS)
    assert node == expected
    assert keys == taken


@pytest.mark.parametrize(("path", "depth", "reason", "suggest"), [
    (("acuracy",), 0, "no key 'acuracy'", "accuracy"),
    (("robust_accuracy", 0.2), 1, "no key 0.2", "0.1"),
    (("per_class_accuracy", 3), 1, "out of range", ""),
    (("per_class_accuracy", "first"), 1, "cannot select from a list", ""),
    (("sweep", {"eps": 0.1}), 1, "2 records match", ""),
    (("sweep", {"eps": 0.2}), 1, "no record", ""),
    (("accuracy", "value", "x"), 2, "cannot go into the number 0.9", ""),
])
def test_bad_paths_say_where_and_suggest(path: tuple, depth: int, reason: str, suggest: str) -> None:
    with pytest.raises(PathError) as info:
        resolve(SUMMARY, path, BUDGETS)
    err = info.value
    assert err.depth == depth
    assert reason in err.reason
    assert suggest in err.suggestion
    if path[0] == "sweep" and depth == 1:  # the selectable fields and their values are listed
        assert "{eps = 0.1|0.3}" in err.available and "{norm = linf|l2}" in err.available


def test_direction_comes_from_the_nested_mirror_and_covers_subtrees() -> None:
    hib = {"accuracy": True, "robust_accuracy": True, "losses": {"mean": False}}
    assert direction_from_metadata(hib, ("accuracy",)) is True
    assert direction_from_metadata(hib, ("accuracy", "low")) is True          # inside an estimate
    assert direction_from_metadata(hib, ("robust_accuracy", "0.1")) is True   # a boolean covers every ε under it
    assert direction_from_metadata(hib, ("losses", "mean")) is False
    assert direction_from_metadata(hib, ("sweep", 2, "accuracy")) is None     # not declared
    assert direction_from_metadata({"sweep": {"accuracy": True}}, ("sweep", 2, "accuracy")) is True  # indices skipped
    assert direction_from_metadata(hib, ("losses",)) is None                  # a table, not a direction
