"""The headline use: `robaudit run resnet18.pt --dataset cifar10 --out audit/` on real on-disk formats,
and a real Ctrl-C (SIGINT) in the middle of an audit."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import torchvision

from demo import DEMO_ARCH, DEMO_CHECKPOINT, REPO
from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode
from robaudit.results import schema_text, store

sys.path.append(str(Path(__file__).parent / "data"))
from dataset_writers import write_cifar10  # noqa: E402


def test_resnet18_checkpoint_on_cifar10(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    n = 24
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = np.arange(n) % 10
    write_cifar10(tmp_path / "data", test=(rows, labels))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    ckpt = tmp_path / "resnet18.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, ckpt)

    code = main(["run", str(ckpt), "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "audit"), "--probes", "clean,calibration", "-q"])
    capsys.readouterr()
    assert code == ExitCode.OK
    results = json.loads((tmp_path / "audit" / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    model = results["model"]
    assert model["arch"].endswith("resnet18") and model["arch_source"] == "file_stem"
    assert model["num_classes"] == 10 and model["load_report"]["stripped_prefixes"] == ["module."]
    assert results["data"]["checksum_match"] is False and results["data"]["n_used"] == n

    # Oracle: the torchvision network itself, fed the CIFAR rows normalised with the recorded mean/std.
    x = torch.from_numpy(rows.reshape(n, 3, 32, 32).astype(np.float32) / 255)
    mean = torch.tensor(model["normalisation"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model["normalisation"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net((x - mean) / std).argmax(1).numpy()
    ids, cols = store.read_per_sample(tmp_path / "audit")
    assert ids == [f"test:{i}" for i in range(n)]
    np.testing.assert_array_equal(cols["clean/pred"].astype(int), expected)
    assert (tmp_path / "audit" / "report.html").is_file()


def test_real_sigint_keeps_finished_probes(tmp_path: Path) -> None:
    script = tmp_path / "audit.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from importlib.metadata import EntryPoint
        from robaudit.config import AuditConfig
        from robaudit.engine import run_audit
        from robaudit.probes.registry import ENTRY_POINT_GROUP, ProbeRegistry

        class Dist:
            name, version = "robaudit", "0"
        eps = [EntryPoint("clean", "robaudit.probes.clean:CleanAccuracy", ENTRY_POINT_GROUP)._for(Dist()),
               EntryPoint("test.sleep", "probe_fixtures:SleepingProbe", ENTRY_POINT_GROUP)._for(Dist())]
        config = AuditConfig(model={str(DEMO_CHECKPOINT)!r}, arch={DEMO_ARCH!r}, n_samples=30,
                             out={str(tmp_path / 'audit')!r}, probes=["clean", "test.sleep"], threads=1)
        try:
            run_audit(config, ProbeRegistry(entry_point_list=eps), quiet=True)
        except KeyboardInterrupt:
            sys.exit(4)
    """))
    def deliverable() -> None:  # the child gets Ctrl-C as a terminal would deliver it, whatever pytest's state
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=deliverable)
    results_path = tmp_path / "audit" / "results.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results_path.is_file() and json.loads(results_path.read_text())["probes"].get("clean", {}).get("status") == "ok":
            break
        time.sleep(0.2)
    time.sleep(0.5)  # now inside test.sleep
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    results = json.loads(results_path.read_text())
    assert results["status"] == "interrupted" and results["probes"]["clean"]["status"] == "ok"
    _, cols = store.read_per_sample(tmp_path / "audit")
    assert "clean/correct" in cols


def test_cli_maps_ctrl_c_to_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("robaudit.engine.run_audit", interrupted)
    code = main(["run", str(DEMO_CHECKPOINT), "--arch", DEMO_ARCH, "--out", str(tmp_path / "o")])
    assert code == ExitCode.INTERRUPTED
    assert "finished probe results are in" in capsys.readouterr().err
