"""CLI consistency: --config after the subcommand, ``validate`` takes every ``run`` option, and
``robaudit probes NAME`` / ``--json`` show each probe's knobs with types, defaults and units."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import cli, main, run, validate
from robaudit.cli.probe_knobs import KNOB_KEYS
from robaudit.probes.registry import ProbeRegistry


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text('n-samples = 20\nprobes = ["clean"]\n\n[probe-config.clean]\nci_level = 0.9\n')
    return path


def test_config_after_the_subcommand_sets_run_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config_file(tmp_path)
    out_dir = tmp_path / "a"
    code, _, err = _cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--out", str(out_dir), "--no-report",
                         "-q", "--config", str(config)], capsys)
    assert code == 0, err
    results = json.loads((out_dir / "results.json").read_text())
    assert list(results["probes"]) == ["clean"]
    assert results["per_sample"]["rows"] == 20
    assert results["probes"]["clean"]["config"]["ci_level"] == 0.9  # the file's probe-config table too


def test_config_after_validate_and_a_flag_still_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config_file(tmp_path)
    code, out, err = _cli(["validate", str(DEMO_CHECKPOINT), "--config", str(config), "--arch", DEMO_ARCH,
                           "--n-samples", "30", "-q"], capsys)
    assert code == 0, err
    assert ": 30 samples" in out and "probes    clean\n" in out


def test_two_different_config_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path)
    other = tmp_path / "other.toml"
    other.write_text("n-samples = 10\n")
    code, _, err = _cli(["--config", str(other), "validate", str(DEMO_CHECKPOINT), "--config", str(config)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "robaudit: error: --config is given twice" in err


def _sample_args(option: click.Option, tmp_path: Path) -> list[str]:
    """A valid command-line use of ``option``."""
    flag = option.opts[-1]
    if option.is_flag:
        return [flag]
    specific = {"eps": "linf=0.1", "knobs": "clean.ci_level=0.9", "arch_kwargs": "{}", "mean": "0.5",
                "std": "0.5", "resize": "8", "n_samples": "5", "probes": "clean", "arch": DEMO_ARCH,
                "config_path": str(_config_file(tmp_path)), "device": "cpu", "dataset": "digits"}
    if option.name in specific:
        return [flag, specific[option.name]]
    if isinstance(option.type, click.Choice):
        return [flag, str(option.type.choices[0])]
    if isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType)):
        return [flag, "1"]
    if isinstance(option.type, click.Path):
        return [flag, str(DEMO_CHECKPOINT)]
    return [flag, "x"]


def test_validate_accepts_every_run_option(tmp_path: Path) -> None:
    run_options = [p for p in run.params if isinstance(p, click.Option)]
    validate_opts = {opt for p in validate.params for opt in (*p.opts, *p.secondary_opts)}
    assert len(run_options) > 30
    for option in run_options:
        assert set(option.opts) | set(option.secondary_opts) <= validate_opts, option.opts
        args = [str(DEMO_CHECKPOINT), *_sample_args(option, tmp_path)]
        parent = cli.make_context("robaudit", ["validate"], resilient_parsing=True)
        parent.obj = {"config_given": None}
        with validate.make_context("validate", args, parent=parent) as ctx:  # parses, converts, runs callbacks
            assert ctx.params is not None


def test_validate_ignores_the_output_options_of_a_run_command_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "gate.toml"
    rules.write_text('[[rule]]\nmetric = "clean.accuracy"\nmin = 0.5\n')
    out_dir = tmp_path / "never"
    code, out, err = _cli(["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20",
                           "--out", str(out_dir), "--overwrite", "--no-report", "--gate", str(rules), "-q"], capsys)
    assert code == 0, err
    assert out.strip().endswith("valid")
    assert not out_dir.exists()


def test_probes_json_lists_knobs_with_a_stable_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["probes", "--json", "--no-plugin-autoload"], capsys)
    assert code == 0
    listed = {p["name"]: p for p in json.loads(out)}
    registry = ProbeRegistry(autoload_plugins=False)
    assert set(listed) == set(registry.names())
    for name, entry in listed.items():
        fields = dataclasses.fields(registry.get(name).Config)
        assert [k["name"] for k in entry["knobs"]] == [f.name for f in fields], name
        for knob, f in zip(entry["knobs"], fields):
            assert tuple(knob) == KNOB_KEYS
            # the declared default (a preset may fill a None in __post_init__; the description says so)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            assert knob["default"] == (list(default) if isinstance(default, tuple) else default), (name, f.name)
    bins = next(k for k in listed["calibration"]["knobs"] if k["name"] == "bins")
    assert bins == {"name": "bins", "type": "int", "default": 15, "unit": "bins",
                    "description": "Number of equal-width confidence bins."}


def test_probes_name_shows_that_probes_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["probes", "calibration", "--json"], capsys)
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["name"] == "calibration"
    code, out, _ = _cli(["probes", "calibration"], capsys)
    assert code == 0
    for knob in entry["knobs"]:
        assert knob["name"] in out and knob["type"] in out and json.dumps(knob["default"]) in out
    assert "resamples" in out and "--set calibration.KNOB=VALUE" in out
    code, _, err = _cli(["probes", "calibrashun"], capsys)
    assert code == 2 and "Traceback" not in err and err.startswith("robaudit: error: unknown probe 'calibrashun'")
