"""The real CLI: help, version, listing, re-rendering, validation, and one clear line for each bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_console_script_version_and_help() -> None:
    exe = Path(sys.executable).with_name("robaudit")
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    from robaudit import __version__

    assert version.strip() == f"robaudit {__version__}"
    help_text = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, check=True).stdout
    assert "Examples:" in help_text and "--resume DIR" in help_text and "robaudit run resnet18.pt" in help_text


def test_probes_lists_builtins_with_versions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["probes", "--json"], capsys)
    assert code == 0
    listed = {p["name"]: p for p in json.loads(out)}
    from robaudit.probes.clean import CleanAccuracy

    assert listed["clean"]["version"] == CleanAccuracy.version and listed["clean"]["distribution"] == "robaudit"
    assert listed["calibration"]["standard"] is True


def test_report_rerenders_from_saved_results(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo_copy / "report.html").unlink()
    code, out, _ = _cli(["report", str(demo_copy)], capsys)
    assert code == 0 and out.strip() == str(demo_copy / "report.html")
    assert "Clean accuracy" in (demo_copy / "report.html").read_text()


def test_validate_checks_without_running_probes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _cli(["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "-q"], capsys)
    assert code == 0, out
    assert "10 classes" in out and "normalise" in out and out.strip().endswith("valid")
    assert not (tmp_path / "audit").exists()


def test_run_writes_results_and_prints_report_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "a"
    code, out, _ = _cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "30", "--out", str(out_dir),
                         "--probes", "clean", "-q"], capsys)
    assert code == 0
    assert out.strip() == f"report: {out_dir / 'report.html'}"
    assert list(json.loads((out_dir / "results.json").read_text())["probes"]) == ["clean"]


# ---- bad input: one line, exit 2, no traceback, for every case the foundation issue lists ----

def _nan_checkpoint(tmp_path: Path) -> Path:
    state = load_file(str(DEMO_CHECKPOINT))
    state["classifier.3.bias"] = torch.full_like(state["classifier.3.bias"], float("nan"))
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "trunc.pt"
    torch.save(load_file(str(DEMO_CHECKPOINT)), path)
    path.write_bytes(path.read_bytes()[:500])
    return path


def _empty_npz(tmp_path: Path) -> Path:
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros((0,), np.int64))
    return path


def _rgb_npz(tmp_path: Path) -> Path:
    path = tmp_path / "rgb.npz"
    np.savez(path, x=np.random.default_rng(0).random((12, 3, 8, 8), dtype=np.float32), y=np.arange(12) % 10)
    return path


BAD_INPUTS = {
    "missing file": (lambda t: ["run", str(t / "nope.pt"), "--arch", DEMO_ARCH], ["nope.pt"]),
    "truncated checkpoint": (lambda t: ["run", str(_truncated(t)), "--arch", DEMO_ARCH], ["trunc.pt"]),
    "unknown arch": (lambda t: ["run", "timm:resnet1800"], ["resnet1800"]),
    "channel mismatch": (lambda t: ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(_rgb_npz(t))],
                         ["channel"]),
    "empty dataset": (lambda t: ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(_empty_npz(t))],
                      ["empty.npz"]),
    "unknown probe name": (lambda t: ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--probes", "clena"],
                           ["clena", "did you mean 'clean'"]),
    "bad config key": (lambda t: ["--config", str(_bad_config(t)), "run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH],
                       ["datset", "did you mean 'dataset'"]),
    "NaN logits": (lambda t: ["run", str(_nan_checkpoint(t)), "--arch", DEMO_ARCH], ["NaN"]),
    "bad knob": (lambda t: ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--set", "calibration.bin=3"],
                 ["did you mean 'bins'"]),
    "bad option value": (lambda t: ["run", str(DEMO_CHECKPOINT), "--batch-size", "0"], ["batch-size"]),
    "missing --interpolate-to checkpoint": (
        lambda t: ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--interpolate-to", str(t / "other.pt")],
        ["other.pt", "does not exist"]),
}


def _bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "robaudit.toml"
    path.write_text('datset = "cifar10"\n')
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_args, needles = BAD_INPUTS[case]
    code, _, err = _cli([*make_args(tmp_path), "--out", str(tmp_path / "out"), "-q"], capsys)
    line = _one_error_line(err)
    assert code == ExitCode.USAGE, err
    assert "Fix:" in line or "--help" in line, line
    for needle in needles or []:
        assert needle in line, line


def test_class_count_mismatch_message_names_both_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "five.npz"
    np.savez(path, x=np.zeros((10, 1, 8, 8), np.float32), y=np.arange(10) % 5)
    code, _, err = _cli(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(path), "--out",
                         str(tmp_path / "o"), "-q"], capsys)
    line = _one_error_line(err)
    assert code == ExitCode.USAGE and "10" in line and "5" in line


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(["run", str(tmp_path / "nope.pt"), "--arch", DEMO_ARCH, "--debug", "-q"], capsys)
    assert code == ExitCode.USAGE and "Traceback" in err


def test_python_m_entry_point_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "robaudit", "run", str(tmp_path / "nope.pt"), "--arch", DEMO_ARCH],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("robaudit: error:"), proc.stderr


def test_readme_documents_the_exit_codes() -> None:
    from robaudit.exitcodes import ExitCode

    readme = (REPO / "README.md").read_text()
    page = (REPO / "docs" / "exit-codes.md").read_text()
    for code in ExitCode:
        assert f"| {code.value} | `{code.name}`" in readme, code
        assert f"| {code.value} | `{code.name}`" in page, code
    assert "(docs/exit-codes.md)" in readme


def test_interpolate_to_adds_the_landscape_path_to_another_checkpoint(tmp_path: Path) -> None:
    """--interpolate-to OTHER runs curvature.landscape with the path; its ends are the two models' own losses."""
    import robaudit

    state = load_file(str(DEMO_CHECKPOINT))
    other = {k: (v * 0.5 if k.startswith("classifier.3.") else v) for k, v in state.items()}
    other_path = tmp_path / "other.safetensors"
    save_file(other, str(other_path), metadata={"mean": "[0.3054]", "std": "[0.3761]"})
    out = tmp_path / "run"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "40", "--out", str(out), "-q",
                 "--probes", "clean", "--interpolate-to", str(other_path), "--threads", "2",
                 "--set", "curvature.landscape.curve_sets=[\"audit\"]", "--set", "curvature.landscape.points=5",
                 "--set", "curvature.landscape.plane_points=3"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["probes"] == ["clean", "curvature.landscape"]
    ends = results["probes"]["curvature.landscape"]["summary"]["interpolation"]["endpoint_losses"]["audit"]
    mine = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, n_samples=40, out=tmp_path / "a", probes=["clean"])
    theirs = robaudit.audit(model=str(other_path), arch=DEMO_ARCH, n_samples=40, out=tmp_path / "b", probes=["clean"])
    assert ends["audit_model"] == pytest.approx(mine.results["probes"]["clean"]["summary"]["mean_loss"], rel=1e-5)
    assert ends["other"] == pytest.approx(theirs.results["probes"]["clean"]["summary"]["mean_loss"], rel=1e-5)


def _validate_warnings(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run ``robaudit ARGS validate`` on the demo model (exit 0); its stderr warning lines."""
    code, out, err = _cli(args, capsys)
    assert code == ExitCode.OK, err
    assert out.strip().endswith("valid")
    return [line for line in err.splitlines() if line.startswith("robaudit: WARNING")]


def test_knobs_for_a_probe_that_is_not_selected_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    validate = ["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "-q"]
    (warning,) = _validate_warnings([*validate, "--probes", "clean", "--set", "calibration.bins=20"], capsys)
    assert "knobs for probe 'calibration' (bins) are ignored: the probe is not selected" in warning
    assert "--probes standard,calibration" in warning
    assert _validate_warnings([*validate, "--probes", "clean,calibration", "--set", "calibration.bins=20"], capsys) == []
    (tmp_path / "robaudit.toml").write_text('[probe-config."attack.cw_l2"]\nsteps = 10\n')  # a default for when it runs
    (warning,) = _validate_warnings(validate, capsys)  # the standard set, which has no attack.cw_l2
    assert "knobs for probe 'attack.cw_l2' (steps) are ignored" in warning
    # an unselected probe's knobs are still checked, and an unknown probe is still an error
    for knob, needle in (("calibration.bnis=3", "did you mean 'bins'"), ("calibraton.bins=3", "did you mean 'calibration'")):
        code, _, err = _cli([*validate, "--probes", "clean", "--set", knob], capsys)
        assert code == ExitCode.USAGE and needle in _one_error_line(err)
    (tmp_path / "robaudit.toml").write_text("[probe-config.attack.cw_l2]\nsteps = 10\n")  # TOML reads two tables
    code, _, err = _cli(validate, capsys)
    assert code == ExitCode.USAGE and '[probe-config."attack.cw_l2"]' in _one_error_line(err)


def test_config_key_suggestion_uses_dashes_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "robaudit.toml"
    config.write_text("n_sample = 5\n")
    code, _, err = _cli(["--config", str(config), "validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH], capsys)
    line = _one_error_line(err)
    assert code == ExitCode.USAGE and "unknown key 'n_sample'" in line and "did you mean 'n-samples'?" in line
