"""The ``[analysis]`` table (robaudit.toml, ``[tool.robaudit.analysis]``) and ``analysis=`` of the Python API,
through the real CLI and a real audit: the knobs reach ``analyse``, bad values are one line and exit 2,
and ``--resume`` recomputes the analysis with the knobs of the resumed run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, THREADS
from robaudit.analysis.config import AnalysisConfig
from robaudit.analysis.indicators import column_roles
from robaudit.cli.main import main
from robaudit.cli.options import config_from_cli
from robaudit.config import AuditConfig, ConfigError, config_from_mapping, read_config_file
from robaudit.exitcodes import ExitCode

RUN = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", "digits", "--n-samples", "60",
       "--probes", "clean,attack.fgsm", "--eps", "linf=0.05,0.15", "--threads", str(THREADS), "--no-report", "-q"]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _auroc_outcomes(results: dict) -> set[str]:
    return {t["outcome"] for t in results["analysis"]["tests"] if t["kind"] == "auroc"}


def test_the_table_reaches_the_analysis_and_a_resume_uses_its_own_knobs(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Run with ``auroc-budgets = "all"`` and small resample counts; resume (every probe reused) with the
    default budgets: the analysis is recomputed with the resumed run's knobs. ``--eps`` sets the threat model,
    so the reference budget is the largest configured one (0.15)."""
    config, out = tmp_path / "robaudit.toml", tmp_path / "audit"
    config.write_text('[analysis]\nn-bootstrap = 50\nn_permutations = 60\nmin-samples = 25\nauroc-budgets = "all"\n')
    code, err = _cli(["--config", str(config), *RUN, "--out", str(out)], capsys)
    assert code == ExitCode.OK, err
    first = json.loads((out / "results.json").read_text())
    assert first["analysis"]["config"] == {**vars(AnalysisConfig()), "n_bootstrap": 50, "n_permutations": 60,
                                           "min_samples": 25, "auroc_budgets": "all"}
    success = {c for c, m in column_roles(first).items() if m["role"] == "attack_success"}
    assert success == {"attack.fgsm/success_eps_0.05", "attack.fgsm/success_eps_0.15"}
    assert _auroc_outcomes(first) == success and first["analysis"]["untested_success"] == []

    config.write_text("[analysis]\nn-bootstrap = 40\n")
    code, err = _cli(["--config", str(config), *RUN, "--resume", str(out)], capsys)
    assert code == ExitCode.OK, err
    resumed = json.loads((out / "results.json").read_text())
    for name in ("clean", "attack.fgsm"):  # reused, not re-run: the saved entries are unchanged
        assert resumed["probes"][name] == first["probes"][name]
    assert resumed["analysis"]["config"] == {**vars(AnalysisConfig()), "n_bootstrap": 40}
    assert resumed["threat_model"]["norms"]["linf"]["reference"] == 0.15
    assert _auroc_outcomes(resumed) == {"attack.fgsm/success_eps_0.15"}
    assert resumed["analysis"]["untested_success"] == ["attack.fgsm/success_eps_0.05"]
    assert resumed["analysis"]["reference_eps"]["linf"] == 0.15
    assert "L∞ ε = 0.15" in resumed["analysis"]["method"]["binary"]


@pytest.mark.parametrize(("table", "needles"), [
    ("[analysis]\nn-bootsrap = 10\n", ["unknown key 'n-bootsrap' in [analysis]", "did you mean 'n-bootstrap'?"]),
    ("[analysis]\nn-bootstrap = 0\n", ["n-bootstrap = 0 in [analysis]", "at least 1", "Fix: set n-bootstrap to"]),
    ("[analysis]\nlevel = 95\n", ["level = 95 in [analysis]", "between 0 and 1"]),
    ("[analysis]\nmin-samples = 2.5\n", ["min-samples = 2.5", "expected an integer"]),
    ('[analysis]\nauroc-budgets = "every"\n', ["auroc-budgets = 'every'", "Fix: set auroc-budgets to \"reference\""]),
    ("analysis = 3\n", ["'analysis' in", "must be a table", "Fix: write them under [analysis]"]),
    ("[analisys]\nalpha = 0.1\n", ["unknown key 'analisys'", "did you mean 'analysis'?"]),
])
def test_a_bad_analysis_table_is_one_line_and_exit_2_before_anything_is_written(
        table: str, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, out = tmp_path / "robaudit.toml", tmp_path / "audit"
    config.write_text(table)
    code, err = _cli(["--config", str(config), *RUN, "--out", str(out)], capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == ExitCode.USAGE and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("robaudit: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()


def test_pyproject_tool_table_feeds_the_cli_config(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n[tool.robaudit]\nseed = 3\n[tool.robaudit.analysis]\nalpha = 0.1\n'
                    'auroc-budgets = "all"\n')
    values = read_config_file(path)
    assert values["analysis"] == {"alpha": 0.1, "auroc_budgets": "all"}
    config = config_from_cli({"model": "m.pt", "knobs": ()}, values["probe_config"], values["analysis"])
    assert config.analysis == AnalysisConfig(alpha=0.1, auroc_budgets="all")
    assert config_from_cli({"model": "m.pt", "knobs": ()}, {}).analysis == AnalysisConfig()


def test_the_config_echo_round_trips_its_analysis_knobs() -> None:
    """``compare --loss-path`` rebuilds a run's config from its results.json echo."""
    config = AuditConfig(model="m.pt", analysis={"n-permutations": 99, "level": 0.9})
    assert config.analysis == AnalysisConfig(n_permutations=99, level=0.9)
    echo = json.loads(json.dumps(config.to_json()))
    assert config_from_mapping(echo).analysis == config.analysis
    with pytest.raises(ConfigError, match="alpha = 2 in analysis"):
        AuditConfig(model="m.pt", analysis={"alpha": 2})
    with pytest.raises(ConfigError, match="takes an AnalysisConfig or a table"):
        AuditConfig(model="m.pt", analysis=[1, 2])


def test_the_python_api_takes_analysis_knobs_and_a_config_files_table(tmp_path: Path) -> None:
    import robaudit

    common = dict(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, dataset="digits", n_samples=40,
                  probes=["clean", "attack.fgsm"], threads=THREADS, report=False)
    outcome = robaudit.audit(**common, out=tmp_path / "a", analysis=AnalysisConfig(n_bootstrap=30, n_permutations=30))
    assert outcome.exit_code == ExitCode.OK
    assert outcome.results["analysis"]["config"]["n_bootstrap"] == 30
    assert len(_auroc_outcomes(outcome.results)) == 1  # the digits reference budget only

    file = tmp_path / "robaudit.toml"
    file.write_text('[analysis]\nn-bootstrap = 20\nauroc-budgets = "all"\n')
    outcome = robaudit.audit(**common, out=tmp_path / "b", config_file=file)
    assert outcome.results["analysis"]["config"]["n_bootstrap"] == 20
    assert len(_auroc_outcomes(outcome.results)) == len(outcome.results["threat_model"]["norms"]["linf"]["eps"])
    with pytest.raises(ConfigError, match="n-bootstrap = -1 in analysis"):
        robaudit.audit(**common, out=tmp_path / "c", analysis={"n_bootstrap": -1})
    assert not (tmp_path / "c").exists()
