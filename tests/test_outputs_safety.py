"""Nothing finished is ever lost, through the real CLI: an earlier audit is refused or moved aside
(--overwrite), --out is locked against a second run, SIGTERM is Ctrl-C, files honour the umask,
output-path errors are one line with exit 2, and a non-UTF-8 checkpoint path works end to end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry
from robaudit.results import schema_text

FAST = ["--arch", DEMO_ARCH, "--probes", "clean", "--n-samples", "20", "--threads", "1", "-q"]


def _run(out: Path, *extra: str, model: str | os.PathLike[str] = DEMO_CHECKPOINT) -> list[str]:
    return ["run", os.fsdecode(model), *FAST, "--out", os.fsdecode(out), *extra]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line on stderr (no traceback, nothing else)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robaudit: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the audit gets as far as loading the model (the out-path checks come first)."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the results directory was checked")

    monkeypatch.setattr("robaudit.engine.runner.load_model", refuse)


def _registry(*extra: tuple[str, str]) -> ProbeRegistry:
    class Dist:
        name, version = "robaudit", "0"

    eps = [EntryPoint(n, v, ENTRY_POINT_GROUP)._for(Dist())
           for n, v in (("clean", "robaudit.probes.clean:CleanAccuracy"), *extra)]
    return ProbeRegistry(entry_point_list=eps)


def _use_registry(monkeypatch: pytest.MonkeyPatch, registry: ProbeRegistry) -> None:
    def make(params: dict[str, Any]) -> ProbeRegistry:
        for key in ("no_plugin_autoload", "plugins", "blocked_plugins"):
            params.pop(key, None)
        return registry

    monkeypatch.setattr("robaudit.cli.main.make_registry", make)


# --- an earlier audit is refused, or moved aside with --overwrite -------------------------------------

@pytest.fixture
def finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "audit"
    assert main(_run(out)) == ExitCode.OK
    capsys.readouterr()
    return out


def test_a_new_run_into_a_finished_audit_is_refused(finished: Path, no_model_load: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    assert main(_run(finished)) == ExitCode.USAGE
    line = _error_line(capsys)
    assert "already holds an audit (status complete" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before
    assert not [p for p in finished.iterdir() if p.is_dir()]


@pytest.mark.parametrize("state", ["interrupted", "partial", "running", "per_sample_only", "stale_temp_file"])
def test_a_partial_or_interrupted_audit_is_refused_too(finished: Path, state: str, no_model_load: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    results = finished / "results.json"
    if state in ("per_sample_only", "stale_temp_file"):  # killed between writes, or in the middle of one
        (finished / "report.html").unlink()
        if state == "stale_temp_file":
            (finished / "per_sample.csv").rename(finished / ".per_sample.csv.1a2b3c4d.tmp")
        results.unlink()
    else:
        results.write_text(json.dumps({**json.loads(results.read_text()), "status": state}))
    assert main(_run(finished)) == ExitCode.USAGE
    line = _error_line(capsys)
    assert "already holds an audit" in line and "--resume" in line and "--overwrite" in line
    if state not in ("per_sample_only", "stale_temp_file"):
        assert f"status {state}" in line


def test_overwrite_moves_the_earlier_audit_aside_and_deletes_nothing(finished: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (finished / "notes.txt").write_text("mine")  # not robaudit's: never touched
    (finished / "gate-junit.xml").write_text("<testsuites/>")  # the earlier audit's gate output moves with it
    results = finished / "results.json"
    results.write_text(json.dumps({**json.loads(results.read_text()), "created": "2000-01-01T00:00:00+00:00"}))
    old = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file() and p.name != "notes.txt"}
    assert main(_run(finished, "--overwrite")) == ExitCode.OK
    capsys.readouterr()
    aside = [p for p in finished.iterdir() if p.is_dir()]
    assert len(aside) == 1 and aside[0].name.startswith("previous-") and aside[0].name.endswith("Z")
    assert {p.name: p.read_bytes() for p in aside[0].iterdir()} == {k: v for k, v in old.items()
                                                                     if k != ".robaudit.lock"}
    assert (finished / "notes.txt").read_text() == "mine"
    assert not (finished / "gate-junit.xml").exists()
    new = json.loads((finished / "results.json").read_text())
    assert new["status"] == "complete" and new["created"] != "2000-01-01T00:00:00+00:00"

    assert main(_run(finished, "--overwrite")) == ExitCode.OK  # again: a second folder, the first kept
    previous = sorted(p.name for p in finished.iterdir() if p.is_dir())
    assert len(previous) == 2 and aside[0].name in previous
    assert (finished / aside[0].name / "results.json").read_bytes() == old["results.json"]


def test_a_failed_overwrite_run_puts_the_earlier_audit_back(finished: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    assert main(_run(finished, "--overwrite", model=finished.parent / "missing.safetensors")) == ExitCode.USAGE
    assert "does not exist" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_a_failed_run_leaves_no_new_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "audit"
    assert main(_run(out, model=tmp_path / "missing.safetensors")) == ExitCode.USAGE
    capsys.readouterr()
    assert not (tmp_path / "new").exists()


def test_a_directory_without_an_audit_is_written_into(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    (out / "README").write_text("keep")
    assert main(_run(out)) == ExitCode.OK
    assert (out / "README").read_text() == "keep" and (out / "results.json").is_file()


def test_overwrite_from_the_config_file_and_the_python_api(finished: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import robaudit

    monkeypatch.chdir(finished.parent)
    Path("robaudit.toml").write_text("overwrite = true\n")
    assert main(_run(finished)) == ExitCode.OK
    assert len([p for p in finished.iterdir() if p.is_dir()]) == 1
    assert main(_run(finished, "--no-overwrite")) == ExitCode.USAGE  # the command line wins
    capsys.readouterr()
    Path("robaudit.toml").unlink()

    outcome = robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, probes=["clean"], n_samples=20,
                             threads=1, out=finished, overwrite=True)
    assert outcome.exit_code == ExitCode.OK
    assert len([p for p in finished.iterdir() if p.is_dir()]) == 2
    from robaudit.errors import UsageError

    with pytest.raises(UsageError, match="already holds an audit"):
        robaudit.audit(model=str(DEMO_CHECKPOINT), arch=DEMO_ARCH, probes=["clean"], n_samples=20, threads=1,
                       out=finished)


def test_resume_and_overwrite_together_are_refused(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(DEMO_CHECKPOINT), *FAST, "--resume", str(finished), "--overwrite"]) == ExitCode.USAGE
    assert "cannot be combined" in _error_line(capsys)


# --- one run at a time per directory; SIGTERM is Ctrl-C -------------------------------------------------

def _start_cli(tmp_path: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """``robaudit run`` (the real CLI entry, in a new process) with clean then a probe that sleeps a minute."""
    script = tmp_path / "cli.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from importlib.metadata import EntryPoint
        import robaudit.cli.main as cli
        from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry

        class Dist:
            name, version = "robaudit", "0"
        eps = [EntryPoint("clean", "robaudit.probes.clean:CleanAccuracy", ENTRY_POINT_GROUP)._for(Dist()),
               EntryPoint("test.sleep", "probe_fixtures:SleepingProbe", ENTRY_POINT_GROUP)._for(Dist())]
        def make_registry(params):
            for key in ("no_plugin_autoload", "plugins", "blocked_plugins"):
                params.pop(key, None)
            return ProbeRegistry(entry_point_list=eps)
        cli.make_registry = make_registry
        sys.exit(cli.main(["run", {str(DEMO_CHECKPOINT)!r}, "--arch", {DEMO_ARCH!r}, "--n-samples", "30",
                           "--threads", "1", "-q", "--probes", "clean,test.sleep", "--out", {str(out)!r},
                           *{list(extra)!r}]))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(results.read_text())["probes"].get("clean", {}).get("status") == "ok":
                time.sleep(0.5)  # now inside test.sleep
                return proc
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the audit did not reach test.sleep: {proc.communicate()}")


def test_a_second_run_into_a_locked_directory_exits_2_naming_the_holder(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit"
    holder = _start_cli(tmp_path, out)
    try:
        before = (out / "results.json").read_bytes()
        for extra in (["--overwrite"], ["--resume", str(out)]):
            args = ["run", str(DEMO_CHECKPOINT), *FAST, "--n-samples", "30", *extra]
            assert main(args + ([] if "--resume" in extra else ["--out", str(out)])) == ExitCode.USAGE
            line = _error_line(capsys)
            assert f"is in use by another robaudit run (PID {holder.pid})" in line, line
        assert (out / "results.json").read_bytes() == before and not [p for p in out.iterdir() if p.is_dir()]
        assert main(["report", str(out)]) == ExitCode.OK  # reading while the run holds the lock is fine
        capsys.readouterr()
        assert holder.poll() is None
    finally:
        holder.send_signal(signal.SIGKILL)  # killed outright: the OS releases the lock
        holder.communicate(timeout=60)
    assert main(["run", str(DEMO_CHECKPOINT), *FAST, "--n-samples", "30", "--resume", str(out)]) == ExitCode.OK
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete" and results["probes"]["clean"]["status"] == "ok"


def test_sigterm_behaves_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    proc = _start_cli(tmp_path, out)
    assert not (out / "report.html").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted by SIGTERM; finished probe results are in" in err and "Traceback" not in err
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted" and results["probes"]["clean"]["status"] == "ok"
    assert "test.sleep" not in results["probes"] or results["probes"]["test.sleep"]["status"] != "ok"
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<strong>interrupted</strong>" in report and "clean" in report


# --- permissions follow the umask ------------------------------------------------------------------------

@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_honour_the_umask(tmp_path: Path, umask: int, mode: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(umask)
    try:
        assert main(_run(tmp_path / "audit")) == ExitCode.OK
    finally:
        os.umask(old)
    for name in ("results.json", "per_sample.csv", "report.html"):
        assert (tmp_path / "audit" / name).stat().st_mode & 0o777 == mode, name
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o777 & ~umask


# --- output-path errors: one line, exit 2, before the model loads or mid-run -------------------------------

def test_out_under_a_regular_file(tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(_run(blocker / "audit")) == ExitCode.USAGE
    line = _error_line(capsys)
    assert f"cannot create the directory {blocker / 'audit'}: {blocker} is a file, not a directory" in line
    assert blocker.read_text() == "x"

    assert main(_run(blocker)) == ExitCode.USAGE  # --out naming the file itself
    assert f"cannot create the directory {blocker}: it exists and is not a directory" in _error_line(capsys)


def test_out_with_a_name_too_long(tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / ("a" * 300) / "audit"
    assert main(_run(out)) == ExitCode.USAGE
    line = _error_line(capsys)
    assert "cannot create the directory" in line and "is 300 bytes long, more than the file system allows" in line
    assert "choose a shorter --out path" in line
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tmpfs(tmp_path: Path) -> Callable[..., Path]:
    """Mount a small tmpfs (root only); skips the one test where mounting is impossible here."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", read_only: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_out_on_a_read_only_file_system(tmpfs: Callable[..., Path], no_model_load: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmpfs("ro", read_only=True)
    assert main(_run(ro / "audit")) == ExitCode.USAGE
    assert f"cannot create the directory {ro / 'audit'}: the file system is read-only" in _error_line(capsys)
    assert main(_run(ro)) == ExitCode.USAGE  # an existing directory on it
    line = _error_line(capsys)
    assert str(ro) in line and "the file system is read-only" in line and "writable file system" in line


def test_out_on_a_full_disk_fails_before_loading(tmpfs: Callable[..., Path], no_model_load: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    full = tmpfs("full", size="256k")
    with open(full / "filler", "wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    assert main(_run(full / "audit")) == ExitCode.USAGE
    line = _error_line(capsys)
    assert f"cannot write in {full / 'audit'}: no space left on the device" in line and "free space" in line
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_disk_full_mid_run_keeps_the_finished_probes(tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    disk = tmpfs("disk", size="2m")
    out = disk / "audit"
    _use_registry(monkeypatch, _registry(("test.fill", "probe_fixtures:FillingProbe")))
    code = main(_run(out, "--probes", "clean,test.fill", "--set", f"test.fill.path={disk / 'filler'}"))
    line = _error_line(capsys)
    assert code == ExitCode.USAGE
    assert f"cannot write {out / 'per_sample.csv'}: no space left on the device" in line
    results = json.loads((out / "results.json").read_text())  # the last complete write, intact
    assert results["probes"]["clean"]["status"] == "ok" and "test.fill" not in results["probes"]
    assert sorted(p.name for p in out.iterdir()) == [".robaudit.lock", "per_sample.csv", "results.json"]


# --- a checkpoint path that is not UTF-8 ------------------------------------------------------------------

def test_a_non_utf8_checkpoint_path_works_end_to_end(tmp_path: Path) -> None:
    ckpt = os.fsencode(tmp_path) + b"/digits\xff.safetensors"
    shutil.copyfile(DEMO_CHECKPOINT, ckpt)
    out = tmp_path / "audit"
    done = subprocess.run([sys.executable, "-m", "robaudit", "run", ckpt, *FAST, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == ExitCode.OK, done.stderr
    raw = (out / "results.json").read_bytes().decode("utf-8")  # strict UTF-8
    results = json.loads(raw)
    jsonschema.validate(results, json.loads(schema_text()))
    shown = os.fsdecode(tmp_path) + "/digits\\xff.safetensors"  # the undecodable byte as the text \xff
    assert results["model"]["checkpoint_path"] == shown and results["config"]["model"] == shown
    assert results["probes"]["clean"]["status"] == "ok"
    assert "digits\\xff.safetensors" in (out / "report.html").read_bytes().decode("utf-8")


def test_a_non_utf8_pt_checkpoint_runs_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from safetensors.torch import load_file

    ckpt = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.pt")  # Latin-1, as argv would decode it
    torch.save(load_file(DEMO_CHECKPOINT), ckpt)
    out = tmp_path / "audit"
    assert main(_run(out, model=ckpt)) == ExitCode.OK
    assert main(["run", ckpt, *FAST, "--resume", str(out)]) == ExitCode.OK  # same model: clean is reused
    assert "caf\\xe9.pt" in (out / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()


def test_report_renders_results_that_hold_a_lone_surrogate(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An older robaudit stored a non-UTF-8 path as the escape \udcff: re-rendering must still work.
    results = finished / "results.json"
    results.write_text(results.read_text().replace('"source": "', '"source": "ck\\udcff-', 1))
    assert main(["report", str(finished)]) == ExitCode.OK
    capsys.readouterr()
    assert "ck\\xff-" in (finished / "report.html").read_bytes().decode("utf-8")
