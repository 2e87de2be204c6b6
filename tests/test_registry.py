"""The entry-point registry: discovery, duplicates across distributions, contract checks, suggestions."""
from __future__ import annotations

from importlib.metadata import EntryPoint, distribution

import pytest

from robaudit.errors import ProbeError
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry


class _FakeDist:
    def __init__(self, name: str, version: str = "9.9") -> None:
        self.name, self.version = name, version


def _ep(name: str, value: str, dist: str) -> EntryPoint:
    ep = EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    return ep._for(_FakeDist(dist))  # the same binding importlib.metadata does for installed distributions


def test_builtin_probes_come_from_robaudits_own_entry_points() -> None:
    eps = {ep.name: ep for ep in distribution("robaudit").entry_points if ep.group == ENTRY_POINT_GROUP}
    assert {"clean", "calibration"} <= set(eps)
    registry = ProbeRegistry(autoload_plugins=False)
    assert {"clean", "calibration"} <= set(registry.names())
    standard = registry.standard_set()  # by name; the engine orders them by their requirements
    assert standard == sorted(standard) and {"clean", "calibration", "attack.worst_case"} <= set(standard)
    info = {i.name: i for i in registry.describe()}
    from robaudit.probes.clean import CleanAccuracy

    assert info["clean"].distribution == "robaudit" and info["clean"].version == CleanAccuracy.version


def test_duplicate_name_from_two_distributions_names_both() -> None:
    eps = [_ep("test.counting", "probe_fixtures:CountingProbe", "plugin-a"),
           _ep("test.counting", "probe_fixtures:CountingProbe", "plugin-b")]
    with pytest.raises(ProbeError, match=r"registered twice.*'plugin-a'.*'plugin-b'"):
        ProbeRegistry(entry_point_list=eps)


def test_unknown_name_suggests_close_matches() -> None:
    registry = ProbeRegistry(entry_point_list=[_ep("calibration", "robaudit.probes.calibration:Calibration", "robaudit")])
    with pytest.raises(ProbeError, match="did you mean 'calibration'"):
        registry.get("calibraton")


def test_plugins_skipped_without_autoload() -> None:
    eps = [_ep("clean", "robaudit.probes.clean:CleanAccuracy", "robaudit"),
           _ep("test.counting", "probe_fixtures:CountingProbe", "some-plugin")]
    assert ProbeRegistry(autoload_plugins=False, entry_point_list=eps).names() == ["clean"]
    assert ProbeRegistry(autoload_plugins=True, entry_point_list=eps).names() == ["clean", "test.counting"]


def test_autoload_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [_ep("test.counting", "probe_fixtures:CountingProbe", "some-plugin")]
    monkeypatch.setenv("ROBAUDIT_NO_PLUGIN_AUTOLOAD", "1")
    assert ProbeRegistry(entry_point_list=eps).names() == []


@pytest.mark.parametrize(("value", "message"), [
    ("probe_fixtures:NoRunProbe", r"'run' is not implemented"),
    ("probe_fixtures:NotAProbe", r"not a subclass"),
    ("no_such_module_xyz:Probe", r"failed to import .*ModuleNotFoundError"),
    ("probe_fixtures:CountingProbe", r"differs from its entry-point name"),
])
def test_broken_probes_give_one_clear_error_naming_the_distribution(value: str, message: str) -> None:
    registry = ProbeRegistry(entry_point_list=[_ep("broken", value, "broken-plugin")])
    with pytest.raises(ProbeError, match=message) as info:
        registry.get("broken")
    assert "broken-plugin" in str(info.value)


def test_explicit_plugin_loads_without_autoload_and_block_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [_ep("clean", "robaudit.probes.clean:CleanAccuracy", "robaudit"),
           _ep("test.counting", "probe_fixtures:CountingProbe", "Counting_Plugin"),
           _ep("test.crash", "probe_fixtures:CrashingProbe", "crash-plugin")]
    only = ProbeRegistry(autoload_plugins=False, entry_point_list=eps, plugins=["counting-plugin"])
    assert only.names() == ["clean", "test.counting"]
    blocked = ProbeRegistry(autoload_plugins=True, entry_point_list=eps, blocked=["crash_plugin"])
    assert blocked.names() == ["clean", "test.counting"]
    monkeypatch.setenv("ROBAUDIT_BLOCK_PLUGINS", "counting-plugin, crash-plugin")
    assert ProbeRegistry(entry_point_list=eps).names() == ["clean"]
    assert ProbeRegistry(entry_point_list=eps, blocked=["robaudit"]).names() == ["clean"]


def test_unknown_explicit_plugin_is_an_error_with_a_suggestion() -> None:
    eps = [_ep("test.counting", "probe_fixtures:CountingProbe", "counting-plugin")]
    with pytest.raises(ProbeError, match="did you mean 'counting-plugin'"):
        ProbeRegistry(entry_point_list=eps, plugins=["countin-plugin"])


def test_plugins_used_records_distributions_and_versions() -> None:
    eps = [_ep("clean", "robaudit.probes.clean:CleanAccuracy", "robaudit"),
           _ep("test.counting", "probe_fixtures:CountingProbe", "counting-plugin")]
    registry = ProbeRegistry(entry_point_list=eps)
    assert registry.plugins_used(["clean", "test.counting"]) == [
        {"distribution": "counting-plugin", "version": "9.9", "probes": ["test.counting"]}]


def test_every_knob_of_every_registered_probe_states_its_unit() -> None:
    """The rule of docs/writing-a-probe.md §4: every knob that is not a bool carries a unit, built-in
    and plugin probes alike, and ``robaudit probes --json`` lists it."""
    import dataclasses
    import json
    import typing

    from click.testing import CliRunner

    from robaudit.cli.main import cli

    registry = ProbeRegistry()
    names = registry.names()
    assert {"attack.fhsm", "adv_landscape"} <= set(names)  # both plugins in plugins/ are installed
    missing = []
    for name in names:
        config_cls = registry.get(name).Config
        hints = typing.get_type_hints(config_cls)
        missing += [f"{name}.{f.name}" for f in dataclasses.fields(config_cls)
                    if hints[f.name] is not bool and not str(f.metadata.get("unit", "")).strip()]
    assert missing == []

    listed = json.loads(CliRunner().invoke(cli, ["probes", "--json"]).output)
    knobs = {(p["name"], k["name"]): k for p in listed for k in p["knobs"]}
    assert knobs[("attack.pgd_linf", "eps")]["unit"] == "pixel units ([0, 1])"
    assert knobs[("attack.pgd_linf", "step_fraction")]["unit"] == "fraction of ε"
    assert knobs[("attack.fhsm", "cg_max_iter")]["unit"] == "iterations"
    assert all(k["unit"] or k["type"] == "bool" for k in knobs.values())
