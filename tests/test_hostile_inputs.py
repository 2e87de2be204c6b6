"""Hostile inputs through the real CLI never fail open: --resume never mixes two audits, a checkpoint or
model that would be silently reinterpreted is refused, and user code calling sys.exit cannot end a run
with its own exit code (0 would pass CI with no results). Each case: the exit code, the one stderr
line, and what is (not) on disk."""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from importlib.metadata import EntryPoint
from safetensors.torch import load_file, save_file

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode

from helpers import error_line
from robaudit.probes.base import Probe, ProbeResult
from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry

FAST = ["--probes", "clean", "--threads", "1"]
DIGITS_CNN = REPO / "examples" / "digits_cnn.py"




def _arch_file(tmp_path: Path, body: str, name: str = "hostile_arch.py") -> Path:
    """A Python file next to the test defining architectures on top of the demo CNN."""
    path = tmp_path / name
    path.write_text(f"import sys\nsys.path.insert(0, {str(DIGITS_CNN.parent)!r})\nimport torch\n"
                    "from digits_cnn import DigitsCNN\n\n" + textwrap.dedent(body), encoding="utf-8")
    return path


def _digits_npz(path: Path, transform: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[:40] / 16.0).astype(np.float32)[:, None]
    np.savez(path, x=transform(x), y=digits.target[:40].astype(np.int64))
    return path


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


# --- --resume never mixes two audits --------------------------------------------------------------------

@pytest.mark.parametrize("change", ["normalisation", "arch"])
def test_resume_refuses_results_of_another_audit_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       change: str) -> None:
    """Same checkpoint file (same sha256 and source), but another function: the saved clean accuracy must not be
    kept under the new model's record."""
    out = tmp_path / "audit"
    first = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", *FAST, "-q"]
    assert main([*first, "--out", str(out)]) == ExitCode.OK
    capsys.readouterr()
    before = (out / "results.json").read_bytes(), (out / "per_sample.csv").read_bytes()
    if change == "normalisation":
        extra = ["--mean", "0.5", "--std", "0.1"]
    else:
        arch = _arch_file(tmp_path, """
            class Scaled(DigitsCNN):
                def forward(self, x):
                    return 3.0 * super().forward(x)
            """)
        extra = ["--arch", f"{arch}:Scaled"]
    code = main([*first, "--probes", "clean,calibration", *extra, "--resume", str(out)])
    line = error_line(capsys)
    assert code == ExitCode.USAGE
    assert "made with a different model (" in line
    assert ("normalisation.mean" if change == "normalisation" else "arch") in line
    assert ((out / "results.json").read_bytes(), (out / "per_sample.csv").read_bytes()) == before


def test_resume_reuses_results_when_the_same_files_are_spelt_another_way(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same checkpoint and --arch file given by relative paths first and absolute ones on resume (or from
    another folder) are the same audit model: the saved result is reused, not refused as another model."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "audit"
    rel = ["run", str(DEMO_CHECKPOINT.relative_to(REPO)), "--arch", "examples/digits_cnn.py:DigitsCNN",
           "--n-samples", "8", *FAST, "-q", "--no-report"]
    assert main([*rel, "--out", str(out)]) == ExitCode.OK
    saved = _results(out)["probes"]["clean"]  # its duration_s to the microsecond: a rerun would not keep it
    arch_file = (REPO / "examples" / "digits_cnn.py").resolve()
    absolute = ["run", str(DEMO_CHECKPOINT.resolve()), "--arch", f"{arch_file}:DigitsCNN",
                "--n-samples", "8", *FAST, "-q", "--no-report"]
    assert main([*absolute, "--resume", str(out)]) == ExitCode.OK
    assert _results(out)["probes"]["clean"] == saved


@pytest.mark.parametrize("stated", [["--num-classes", "10"], ["--arch-kwargs", '{"num_classes": 10}']])
def test_resume_reuses_results_when_the_class_count_found_is_now_stated(tmp_path: Path, stated: list[str]) -> None:
    """The first run found 10 classes in the checkpoint; stating 10 on resume builds the same network (the same
    checkpoint, the same num_classes): the saved result is reused, not refused over arch_kwargs."""
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "8", *FAST, "-q", "--no-report"]
    assert main([*args, "--out", str(out)]) == ExitCode.OK
    saved = _results(out)["probes"]["clean"]
    assert main([*args, *stated, "--resume", str(out)]) == ExitCode.OK
    assert _results(out)["probes"]["clean"] == saved
    # another class count, or another keyword, is another network: still a difference
    from robaudit.engine.resume_checks import model_difference

    old = {"arch_kwargs": {}, "num_classes": 10}
    assert model_difference(old, {"arch_kwargs": {"num_classes": 11}, "num_classes": 11}) is not None
    assert model_difference(old, {"arch_kwargs": {"num_classes": 10, "width": 8}, "num_classes": 10}) is not None


def test_resume_that_adds_a_second_order_probe_continues_the_audit(tmp_path: Path) -> None:
    """A second-order probe swaps Hardsigmoid for its exact equivalent (recorded in module_swaps): the same audit
    model, so the clean result of the first run is reused (it was refused as 'a different model')."""
    arch = _arch_file(tmp_path, """
        class Net(DigitsCNN):
            def __init__(self, **kw):
                super().__init__(**kw)
                self.gate = torch.nn.Hardsigmoid()

            def forward(self, x):
                return super().forward(x) * (1.0 + self.gate(x.mean(dim=(1, 2, 3))))[:, None]
        """)
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Net", "--n-samples", "8", "--threads", "1", "-q",
            "--no-report"]
    assert main([*args, "--probes", "clean", "--out", str(out)]) == ExitCode.OK
    saved = _results(out)["probes"]["clean"]
    assert main([*args, "--probes", "clean,geometry.input_hessian", "--resume", str(out)]) == ExitCode.OK
    results = _results(out)
    assert results["model"]["module_swaps"]  # the swap was made this time
    assert results["probes"]["clean"] == saved and results["probes"]["geometry.input_hessian"]["status"] == "ok"


def test_resume_refuses_other_pixels_under_the_same_sample_ids(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A tensor file rewritten with other images (same count, labels and so ids): not the same samples."""
    data = _digits_npz(tmp_path / "digits.npz")
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(data), "--n-samples", "all", *FAST, "-q"]
    assert main([*args, "--out", str(out)]) == ExitCode.OK
    capsys.readouterr()
    before = (out / "results.json").read_bytes()
    _digits_npz(data, lambda x: 1.0 - x)
    assert main([*args, "--resume", str(out)]) == ExitCode.USAGE
    line = error_line(capsys)
    assert "cover different samples" in line and "samples_sha256" in line
    assert (out / "results.json").read_bytes() == before


def test_resume_with_another_seed_runs_every_probe_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every sample either way (--n-samples all), but the probes' random streams follow --seed: nothing is reused."""
    data = _digits_npz(tmp_path / "digits.npz")
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--dataset", str(data), "--n-samples", "all", *FAST]
    assert main([*args, "-q", "--out", str(out)]) == ExitCode.OK
    capsys.readouterr()
    assert main([*args, "--seed", "1", "--resume", str(out)]) == ExitCode.OK
    err = capsys.readouterr().err
    assert "made with --seed 0, this run uses 1; every probe runs again" in err
    assert "probe clean: reused" not in err and "probe clean: running" in err
    assert _results(out)["environment"]["seed"] == 1


def _drop_summary(entry: dict[str, Any]) -> None:
    del entry["summary"]


def _absent_column(entry: dict[str, Any]) -> None:
    entry["per_sample_columns"] = [*entry["per_sample_columns"], "clean/not_in_the_table"]


def _inputs_not_an_object(entry: dict[str, Any]) -> None:
    entry["inputs"] = 5


@pytest.mark.parametrize("edit", [_drop_summary, _absent_column, _inputs_not_an_object],
                         ids=lambda f: f.__name__.strip("_"))
def test_resume_runs_a_malformed_saved_result_again(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    edit: Callable[[dict[str, Any]], None]) -> None:
    """An edited results.json entry is neither half read (a crash, exit 3) nor half kept (its per-sample
    columns silently missing): the probe runs again, and the finished audit is whole."""
    out = tmp_path / "audit"
    args = ["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "20", "--threads", "1"]
    assert main([*args, "--probes", "clean,calibration", "-q", "--out", str(out)]) == ExitCode.OK
    capsys.readouterr()
    reference = _results(out)["probes"]["clean"]
    results = _results(out)
    edit(results["probes"]["clean"])
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")

    assert main([*args, "--probes", "clean,calibration", "--resume", str(out)]) == ExitCode.OK
    err = capsys.readouterr().err
    assert "probe clean: the saved result in" in err and "it runs again" in err
    assert "probe calibration: reused" in err  # the well-formed entry is still reused
    again = _results(out)["probes"]["clean"]
    assert again["summary"] == reference["summary"] and again["flags"] == reference["flags"]
    with (out / "per_sample.csv").open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert set(reference["per_sample_columns"]) <= set(header) and "clean/not_in_the_table" not in header


@pytest.mark.parametrize("severity", [None, "ERROR", "fatal"])
def test_a_flag_without_a_known_severity_never_passes_a_severity_gate(tmp_path: Path, severity: str | None,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An error flag whose severity is missing or misspelt passed `min-severity = "error"` (exit 0) and crashed
    `robaudit report` (exit 3); every reader now refuses the file, naming the flag."""
    out = tmp_path / "audit"
    assert main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "8", *FAST, "-q",
                 "--out", str(out)]) == ExitCode.OK
    capsys.readouterr()
    results = _results(out)
    flag = {"id": "zero_input_gradients", "message": "m", "source": "preflight"}
    if severity is not None:
        flag["severity"] = severity
    results["flags"] = [flag]
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    rules = tmp_path / "gate.toml"
    rules.write_text('[[rule]]\nmin-severity = "error"\n', encoding="utf-8")
    for command in (["gate", str(out), "--rules", str(rules)], ["report", str(out)]):
        assert main(command) == ExitCode.USAGE
        line = error_line(capsys)
        assert "flags › [0]" in line and "severity" in line


# --- checkpoints and models that would be silently reinterpreted -----------------------------------------

def test_integer_weights_for_float_parameters_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """load_state_dict would cast int32 weights to float and audit another network; float16 stays a lossless cast."""
    weights = load_file(str(DEMO_CHECKPOINT))
    quantised = tmp_path / "int_weights.safetensors"
    save_file({k: torch.round(v * 100).to(torch.int32) for k, v in weights.items()}, str(quantised))
    half = tmp_path / "half_weights.safetensors"
    save_file({k: v.half() for k, v in weights.items()}, str(half))
    args = ["--arch", DEMO_ARCH, "--n-samples", "8", *FAST]
    assert main(["validate", str(quantised), *args]) == ExitCode.USAGE
    line = error_line(capsys)
    assert "int_weights.safetensors" in line and "non-floating-point" in line and "int32" in line
    assert main(["validate", str(half), *args]) == ExitCode.OK


@pytest.mark.parametrize("dtype", ["long", "complex64"])
def test_non_real_float_logits_are_bad_input_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         dtype: str) -> None:
    arch = _arch_file(tmp_path, f"""
        class Odd(DigitsCNN):
            def forward(self, x):
                return (100 * super().forward(x)).to(torch.{dtype})
        """)
    assert main(["validate", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Odd", "--n-samples", "8", *FAST]) == ExitCode.USAGE
    line = error_line(capsys)
    assert f"returned {'int64' if dtype == 'long' else dtype} logits" in line


STATEFUL_FORWARDS = {
    "renormalises": ("""
        class Net(DigitsCNN):
            def forward(self, x):
                with torch.no_grad():  # weight rows renormalised in place on every call
                    w = self.classifier[3].weight
                    w.div_(w.norm(dim=1, keepdim=True))
                return super().forward(x)
        """, "the model's forward changed the model's state: net.classifier.3.weight"),
    "train_mode": ("""
        class Net(DigitsCNN):
            def forward(self, x):
                self.train()
                return torch.nn.functional.dropout(super().forward(x), 0.5, self.training)
        """, "the model's forward switched modules to training mode"),
}


@pytest.mark.parametrize("kind", list(STATEFUL_FORWARDS))
def test_a_forward_with_side_effects_is_bad_input_not_a_probe_bug(tmp_path: Path, kind: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A model that keeps changing itself as it runs gives each probe another network: it was exit 3 blaming the
    first probe (a counter), or audited in training mode with nothing said (self.train())."""
    body, said = STATEFUL_FORWARDS[kind]
    arch = _arch_file(tmp_path, body)
    out = tmp_path / "audit"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Net", "--n-samples", "8", *FAST, "-q",
                 "--out", str(out)])
    line = error_line(capsys)
    assert code == ExitCode.USAGE and said in line and "Fix: " in line
    assert not (out / "results.json").exists()


def test_a_change_made_once_on_the_first_call_is_not_a_side_effect(tmp_path: Path) -> None:
    """Set-up done once on the first call (a lazy module, a cache) leaves later calls alike: not refused."""
    arch = _arch_file(tmp_path, """
        class Net(DigitsCNN):
            ready = False

            def forward(self, x):
                if not self.ready:
                    with torch.no_grad():
                        self.classifier[3].bias.mul_(1.0)
                    self.ready = True
                return super().forward(x)
        """)
    assert main(["validate", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Net", "--n-samples", "8", *FAST]) == ExitCode.OK


def test_a_module_kept_in_training_mode_as_loaded_is_not_said_to_be_switched_by_forward(tmp_path: Path) -> None:
    """MC dropout kept on by an overridden train() (a randomised defence) is in training mode before any forward:
    forward switched nothing, so preflight must not refuse it (it did, saying forward switched it); the audit runs
    and says the model is not deterministic."""
    arch = _arch_file(tmp_path, """
        class Net(DigitsCNN):
            def __init__(self, **kw):
                super().__init__(**kw)
                self.drop = torch.nn.Dropout(0.1)

            def train(self, mode=True):
                super().train(mode)
                self.drop.training = True  # dropout stays on at test time
                return self

            def forward(self, x):
                return self.drop(super().forward(x))
        """)
    out = tmp_path / "audit"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Net", "--n-samples", "8", *FAST, "-q",
                 "--no-report", "--out", str(out)])
    assert code == ExitCode.OK
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["probes"]["clean"]["status"] == "ok"
    assert "nondeterministic_eval" in {f["id"] for f in results["flags"]}


# --- sys.exit in the user's code ----------------------------------------------------------------------

SYS_EXIT_ARCHS = {
    "import": ("sys.exit(0)\n", "importing architecture file", "__main__"),
    "message": ("raise SystemExit('train.py: --lr is required')\n", "importing architecture file", "__main__"),
    "constructor": ("class Net(DigitsCNN):\n    def __init__(self, **kw):\n        sys.exit(0)\n",
                    "constructing", "constructor"),
    "forward": ("class Net(DigitsCNN):\n    def forward(self, x):\n        sys.exit(0)\n",
                "the model's forward called sys.exit(0)", "forward"),
}


@pytest.mark.parametrize("where", list(SYS_EXIT_ARCHS))
def test_sys_exit_in_user_code_is_bad_input_not_the_runs_exit_code(tmp_path: Path, where: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """sys.exit(0) in an --arch file would end `robaudit run --gate` with 0 and no results: a pass."""
    body, said, fix = SYS_EXIT_ARCHS[where]
    arch = _arch_file(tmp_path, body, name=f"exits_{where}.py")
    out = tmp_path / "audit"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", f"{arch}:Net", "--n-samples", "8", *FAST, "-q",
                 "--out", str(out)])
    line = error_line(capsys)
    assert code == ExitCode.USAGE
    assert said in line and "sys.exit(" in line and fix in line
    assert not (out / "results.json").exists()


class ExitingProbe(Probe):
    """A (plugin) probe that ends its process: recorded as failed, a probe bug (exit 3); the rest is kept."""

    name = "test.exits"
    version = "1"
    description = "test probe that calls sys.exit(0)"

    def run(self, ctx: Any) -> ProbeResult:
        raise SystemExit(0)


def test_sys_exit_in_a_probe_is_a_failed_probe_and_keeps_the_others(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    class Dist:
        name, version = "robaudit", "0"

    eps = [EntryPoint(n, v, ENTRY_POINT_GROUP)._for(Dist()) for n, v in
           (("clean", "robaudit.probes.clean:CleanAccuracy"), ("test.exits", f"{__name__}:ExitingProbe"))]

    def registry(params: dict[str, Any]) -> ProbeRegistry:
        for key in ("no_plugin_autoload", "plugins", "blocked_plugins"):
            params.pop(key, None)
        return ProbeRegistry(entry_point_list=eps)

    monkeypatch.setattr("robaudit.cli.main.make_registry", registry)
    out = tmp_path / "audit"
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--n-samples", "8", "--threads", "1", "-q",
                 "--probes", "clean,test.exits", "--out", str(out)])
    assert code == ExitCode.INTERNAL
    results = _results(out)
    assert results["status"] == "partial" and results["probes"]["clean"]["status"] == "ok"
    failed = results["probes"]["test.exits"]
    assert failed["status"] == "failed" and failed["error"]["internal"] and "sys.exit(0)" in failed["error"]["message"]
