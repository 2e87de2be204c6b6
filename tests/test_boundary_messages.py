"""Bad input at the boundary: exit 2 and exactly one line that says what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode

from helpers import error_line

FAST = ["--arch", DEMO_ARCH, "--n-samples", "4", "--probes", "clean", "--threads", "1"]




def test_wrong_length_mean_for_one_channel_asks_for_one_value(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo CNN takes 1 channel: 'give 1 or 1 values' was the old fix."""
    assert main(["validate", str(DEMO_CHECKPOINT), *FAST, "--mean", "0.1,0.2", "--std", "0.3,0.3"]) == ExitCode.USAGE
    assert error_line(capsys) == (
        "robaudit: error: the command line (--mean/--std) gives mean [0.1, 0.2] and std [0.3, 0.3], which do "
        "not fit the model's 1 input channel(s). Fix: give 1 value for each of mean and std."
    )


def test_wrong_length_mean_for_three_channels_asks_for_one_or_three(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", "torchvision:resnet18", "--dataset", "digits", "--convert-channels", "rgb",
            "--n-samples", "4", "--probes", "clean", "--threads", "1", "--mean", "0.1,0.2", "--std", "0.3,0.3"]
    assert main(args) == ExitCode.USAGE
    line = error_line(capsys)
    assert line.endswith("which do not fit the model's 3 input channel(s). Fix: give 1 or 3 values for each of "
                         "mean and std."), line


@pytest.mark.parametrize("dataset", ["cifar11", "no_such_set"])
def test_unknown_dataset_fix_names_the_dataset_option(capsys: pytest.CaptureFixture[str], dataset: str) -> None:
    """The fix must name an option that exists: --dataset (click has no --data)."""
    assert main(["validate", str(DEMO_CHECKPOINT), *FAST, "--dataset", dataset]) == ExitCode.USAGE
    line = error_line(capsys)
    assert line.startswith(f"robaudit: error: unknown dataset '{dataset}'"), line
    assert ". Fix: pass --dataset with one of: digits, cifar10," in line and "--data " not in line
    # the option the fix names is one the command line takes
    assert main(["validate", str(DEMO_CHECKPOINT), *FAST, "--dataset", "digits"]) == ExitCode.OK


@pytest.mark.parametrize(("toml", "key", "shown", "example"), [
    ("batch-size = 1.5", "batch-size", "1.5", ""),
    ("seed = 1e30", "seed", "1e+30", ""),
    ("seed = true", "seed", "true", ""),
    ("n-samples = 4.0", "n-samples", "4.0", ", e.g. 4"),
    ("threads = false", "threads", "false", ""),
    ("resize = [8, 8.5]", "resize", "8.5", ""),
])
def test_non_integer_for_an_integer_key_in_the_config_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str, shown: str, example: str
) -> None:
    """click's INT would truncate 1.5 to 1 and take True as 1, silently auditing another configuration."""
    config = tmp_path / "robaudit.toml"
    config.write_text(toml + "\n", encoding="utf-8")
    args = ["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--probes", "clean", "--config", str(config)]
    assert main(args) == ExitCode.USAGE
    assert error_line(capsys) == (
        f"robaudit: error: '{key}' in {config} is {shown}, not an integer. "
        f"Fix: write '{key}' as a whole number without a decimal point{example}."
    )


def test_integers_in_the_config_file_are_still_taken(tmp_path: Path) -> None:
    config = tmp_path / "robaudit.toml"
    config.write_text("batch-size = 3\nseed = 7\nn-samples = 4\nthreads = 1\nresize = [8, 8]\n", encoding="utf-8")
    args = ["validate", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--probes", "clean", "--config", str(config)]
    assert main(args) == ExitCode.OK


def test_a_symlink_loop_as_the_checkpoint_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Path.exists() is False for a loop, which used to read 'does not exist'."""
    loop_a, loop_b = tmp_path / "a.pt", tmp_path / "b.pt"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    assert main(["validate", str(loop_a), *FAST]) == ExitCode.USAGE
    assert error_line(capsys) == (
        f"robaudit: error: checkpoint '{loop_a}' cannot be resolved: it is a loop of symbolic links. "
        "Fix: pass the checkpoint file's own path, or point the link at the file."
    )
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "gone.pt")
    assert main(["validate", str(dangling), *FAST]) == ExitCode.USAGE
    assert error_line(capsys) == (
        f"robaudit: error: checkpoint '{dangling}' is a symbolic link to '{tmp_path / 'gone.pt'}', which does not "
        "exist. Fix: point the link at the checkpoint file, or pass the file's own path."
    )
    good = tmp_path / "good.safetensors"
    good.symlink_to(DEMO_CHECKPOINT)
    assert main(["validate", str(good), *FAST]) == ExitCode.OK
