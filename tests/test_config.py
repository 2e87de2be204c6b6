"""Config file → click defaults → CLI flags: precedence, including False and 0, and key checking."""
from __future__ import annotations

from pathlib import Path

import pytest

from robaudit.cli.options import config_from_cli, file_defaults_for_click
from robaudit.config import (AuditConfig, ConfigError, build_probe_config, config_from_mapping, find_config_file,
                             parse_knob_assignment, read_config_file)
from robaudit.errors import ProbeError
from robaudit.probes.calibration import Calibration


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_keys_normalised_and_probe_tables_split(tmp_path: Path) -> None:
    path = _write(tmp_path, "robaudit.toml", 'dataset = "cifar10"\nn-samples = 500\nnon_strict = true\n'
                  '[probe-config.calibration]\nbins = 20\n')
    values = read_config_file(path)
    assert values["run"] == {"dataset": "cifar10", "n_samples": 500, "non_strict": True}
    assert values["probe_config"] == {"calibration": {"bins": 20}}


@pytest.mark.parametrize(("text", "typed", "suggested"), [
    ("n_sample = 5\n", "n_sample", "n-samples"),            # underscores typed: the README's dashes suggested
    ("n-sampels = 5\n", "n-sampels", "n-samples"),
    ("batch_sise = 5\n", "batch_sise", "batch-size"),
    ("[probe_confg.clean]\n", "probe_confg", "probe-config"),
])
def test_unknown_key_suggests_the_readme_spelling(tmp_path: Path, text: str, typed: str, suggested: str) -> None:
    path = _write(tmp_path, "robaudit.toml", text)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert f"unknown key '{typed}'" in err.value.message and f"did you mean '{suggested}'" in err.value.message
    assert "_" not in err.value.message.split("did you mean")[1]


def test_pyproject_tool_table_is_found_and_read(tmp_path: Path) -> None:
    _write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.robaudit]\nseed = 7\n')
    path = find_config_file(tmp_path)
    assert path == tmp_path / "pyproject.toml"
    assert read_config_file(path)["run"] == {"seed": 7}
    (tmp_path / "robaudit.toml").write_text("seed = 9\n")
    assert find_config_file(tmp_path) == tmp_path / "robaudit.toml"


def test_trust_checkpoint_cannot_come_from_a_file() -> None:
    with pytest.raises(ConfigError, match="--trust-checkpoint on the command line"):
        file_defaults_for_click({"trust_checkpoint": True})


def test_cli_false_and_zero_override_file_true_and_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the real click command with a config file, and capture the AuditConfig it builds."""
    from robaudit.cli import main as cli_main

    captured: dict[str, AuditConfig] = {}

    def fake_run_audit(config: AuditConfig, *args: object, **kwargs: object) -> None:
        captured["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("robaudit.engine.run_audit", fake_run_audit)
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "robaudit.toml", "seed = 5\nnon-strict = true\nbatch-size = 64\ndownload = true\n"
           '[probe-config.calibration]\nbins = 20\n')
    with pytest.raises(SystemExit):
        cli_main.cli.main(["run", "m.pt", "--seed", "0", "--strict", "--no-download", "--set", "calibration.bins=7"],
                          standalone_mode=False)
    cfg = captured["config"]
    assert (cfg.seed, cfg.non_strict, cfg.download, cfg.batch_size) == (0, False, False, 64)
    assert cfg.probe_config == {"calibration": {"bins": 7}}
    with pytest.raises(SystemExit):
        cli_main.cli.main(["run", "m.pt"], standalone_mode=False)
    cfg = captured["config"]
    assert (cfg.seed, cfg.non_strict, cfg.download) == (5, True, True)
    assert cfg.probe_config == {"calibration": {"bins": 20}}


def test_set_parses_json_values_and_dotted_probe_names() -> None:
    assert parse_knob_assignment("attack.pgd.steps=40") == ("attack.pgd", "steps", 40)
    assert parse_knob_assignment("attack.pgd.eps=[0.1, 0.2]") == ("attack.pgd", "eps", [0.1, 0.2])
    assert parse_knob_assignment("calibration.bins=ten") == ("calibration", "bins", "ten")
    with pytest.raises(ConfigError, match="PROBE.KNOB=VALUE"):
        parse_knob_assignment("bins=3")


def test_probe_knobs_are_type_checked_and_named() -> None:
    assert build_probe_config(Calibration, {"bins": "12"}).bins == 12
    with pytest.raises(ProbeError, match="did you mean 'bins'"):
        build_probe_config(Calibration, {"bin": 3})
    with pytest.raises(ProbeError, match="expected an integer"):
        build_probe_config(Calibration, {"bins": [1, 2]})
    with pytest.raises(ProbeError, match="bins must be at least 1"):
        build_probe_config(Calibration, {"bins": 0})


def test_config_from_mapping_coerces_and_checks() -> None:
    cfg = config_from_mapping({"model": "m.pt", "n-samples": "10", "mean": [0.5], "std": [0.25]})
    assert cfg.n_samples == 10 and cfg.mean == (0.5,) and cfg.std == (0.25,)
    with pytest.raises(ConfigError, match="did you mean 'dataset'"):
        config_from_mapping({"model": "m.pt", "datset": "x"})
    with pytest.raises(ConfigError, match="--mean and --std must be given together"):
        config_from_mapping({"model": "m.pt", "mean": [0.5]})
    with pytest.raises(ConfigError, match="at least 1"):
        config_from_mapping({"model": "m.pt", "batch_size": 0})


def test_cli_string_options_are_parsed() -> None:
    cfg = config_from_cli({"model": "m.pt", "mean": "0.1,0.2,0.3", "std": "0.5, 0.5, 0.5", "resize": "32",
                           "arch_kwargs": '{"width": 8}', "probes": "clean, calibration", "knobs": ()}, {})
    assert cfg.mean == (0.1, 0.2, 0.3) and cfg.std == (0.5, 0.5, 0.5)
    assert cfg.resize == (32, 32) and cfg.arch_kwargs == {"width": 8} and cfg.probes == ["clean", "calibration"]
