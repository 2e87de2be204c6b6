"""Issue #15 (models): pretrained zoo weights from the Hugging Face Hub and torch hub caches, offline.

The caches are built in ``tmp_path`` exactly as huggingface_hub and torch.hub lay them out,
holding seeded weights; nothing touches the network. Each run goes through the real CLI
and timm's / torchvision's real loading code. ``--download`` is proven against a hub served
from 127.0.0.1 (:class:`LoopbackHub`): huggingface_hub's real ``hf_hub_download`` (through
``HF_ENDPOINT``) and torch.hub's real ``download_url_to_file`` fetch the seeded files from it. The oracle is a direct
``timm.create_model(..., pretrained=True)`` (or the seeded network itself): labels are set
from its predictions so the audit's clean accuracy is known exactly.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robaudit.cli.main import main
from robaudit.exitcodes import ExitCode

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMM_NAME = "test_resnet.r160_in1k"
TIMM_REPO = f"timm/{TIMM_NAME}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
N, RIGHT = 8, 5  # audit samples, and how many are labelled with the oracle's prediction


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    _, err = capsys.readouterr()
    return code, err


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("robaudit: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _put_in_hf_cache(cache: Path, repo: str, files: dict[str, bytes]) -> dict[str, str]:
    """Lay files out as huggingface_hub does: blobs/<sha256>, refs/main, snapshots/<commit>/NAME → blob."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        (root / "blobs").mkdir(exist_ok=True)
        (root / "blobs" / digest).write_bytes(content)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
        digests[name] = digest
    return digests


def _seeded_test_resnet() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(7)
    net = timm.create_model("test_resnet", num_classes=1000)
    with torch.no_grad():
        for module in net.modules():  # non-trivial BatchNorm statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def _safetensors_bytes(state: dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path.read_bytes()


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME/HF_HUB_CACHE in tmp_path and HF_HUB_OFFLINE=1 (also in the already-imported huggingface_hub)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _audit_set(tmp_path: Path, logits_of) -> tuple[Path, torch.Tensor]:
    """A 1,000-class tensor file whose first RIGHT labels are the oracle's predictions, the rest wrong."""
    torch.manual_seed(3)
    x = torch.rand(N, 3, 32, 32)
    with torch.no_grad():
        pred = logits_of(x).argmax(dim=1)
    y = pred.clone()
    y[RIGHT:] = (pred[RIGHT:] + 1) % 1000
    path = tmp_path / "imagenet_like.npz"
    np.savez(path, x=x.numpy(), y=y.numpy(), num_classes=np.array(1000))
    return path, x


def _run(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", model, *extra, "--dataset", str(data), "--probes", "clean", "--no-report", "-q",
            "--threads", "1", "--out", str(out)]


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_timm_pretrained_loads_the_cached_weights_through_timm(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    digests = _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(state, tmp_path)})
    direct = timm.create_model(TIMM_NAME, pretrained=True, cache_dir=str(hf_env)).eval()
    for key, value in state.items():  # timm's own loader read the seeded file
        assert torch.equal(direct.state_dict()[key], value), key
    data, _ = _audit_set(tmp_path, lambda x: direct((x - 0.5) / 0.5))

    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    assert model["weights"]["repo_id"] == TIMM_REPO and model["weights"]["revision"] == COMMIT
    assert model["weights"]["sha256"] == digests["model.safetensors"]
    assert model["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "source": f"timm_pretrained:{TIMM_NAME}",
                                      "explicit": True}
    assert model["num_classes"] == 1000 and model["num_classes_source"] == "pretrained_weights"
    assert model["data_config"]["input_size"] == [3, 160, 160] and model["data_config"]["crop_pct"] == 0.95
    assert results["preflight"]["stats"]["normalisation_check"]["ran"] is False


def test_timm_pretrained_without_the_cache_says_where_it_looked(tmp_path, hf_env, capsys) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE
    assert "not in the Hugging Face cache" in line and str(hf_env) in line and "--download" in line, line
    assert "huggingface-cli download timm/test_resnet.r160_in1k" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained", "--download"), capsys)
    assert code == ExitCode.USAGE and "HF_HUB_OFFLINE" in _error_line(err)
    assert not (tmp_path / "out").exists()


def test_a_pickle_only_cache_needs_trust(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    pickled = tmp_path / "pytorch_model.bin"
    torch.save(state, pickled)
    digests = _put_in_hf_cache(hf_env, TIMM_REPO, {"pytorch_model.bin": pickled.read_bytes()})
    net = timm.create_model("test_resnet", num_classes=1000).eval()
    net.load_state_dict(state)
    data, _ = _audit_set(tmp_path, lambda x: net((x - 0.5) / 0.5))

    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "refused", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "pytorch_model.bin" in line and "--trust-checkpoint" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "trusted", "--pretrained", "--trust-checkpoint"),
                     capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "trusted")
    assert results["model"]["weights"]["filename"] == "pytorch_model.bin"
    assert results["model"]["weights"]["sha256"] == digests["pytorch_model.bin"]
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)


def test_hf_hub_repo_with_a_timm_config(tmp_path, hf_env, capsys) -> None:
    import timm

    state = _seeded_test_resnet()
    config = {"architecture": "test_resnet", "num_classes": 1000,
              "pretrained_cfg": {"input_size": [3, 96, 96], "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.25, 0.3],
                                 "crop_pct": 0.9, "interpolation": "bicubic", "classifier": "fc", "num_classes": 1000}}
    repo = "acme/tiny-resnet"
    digests = _put_in_hf_cache(hf_env, repo, {"config.json": json.dumps(config).encode(),
                                              "model.safetensors": _safetensors_bytes(state, tmp_path)})
    direct = timm.create_model(f"hf-hub:{repo}", pretrained=True, cache_dir=str(hf_env)).eval()
    mean, std = torch.tensor([0.4] * 3).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    data, _ = _audit_set(tmp_path, lambda x: direct((x - mean) / std))

    code, err = _cli(_run(f"hf-hub:{repo}", data, tmp_path / "out"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    assert model["normalisation"]["source"] == f"hf_hub:{repo}" and model["normalisation"]["std"] == [0.2, 0.25, 0.3]
    assert model["weights"]["sha256"] == digests["model.safetensors"] and model["weights"]["revision"] == COMMIT
    assert model["data_config"]["input_size"] == [3, 96, 96]


# torchvision ---------------------------------------------------------------------------------

TV_NAME = "shufflenet_v2_x0_5"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _seeded_shufflenet() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(11)
    return torchvision.models.get_model(TV_NAME, weights=None, num_classes=1000).eval()


def _publish(monkeypatch: pytest.MonkeyPatch, folder: Path, state: dict, prefix: str | None = None) -> tuple[str, str]:
    """Save the state dict as torchvision names its files (<name>-<sha256 prefix>.pth) and point the enum at it.

    The enum's URL is redirected to the new file name; everything else (meta, transforms,
    builder) is torchvision's own. Returns (file sha256, file name).
    """
    import torchvision

    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"shufflenetv2_x0.5-{prefix or sha[:8]}.pth"
    tmp.rename(folder / name)
    weights = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1
    monkeypatch.setattr(weights.value, "url", f"https://download.pytorch.org/models/{name}")
    return sha, name


def test_torchvision_weights_from_the_torch_hub_cache(tmp_path, torch_home, monkeypatch, capsys) -> None:
    net = _seeded_shufflenet()
    sha, name = _publish(monkeypatch, torch_home, net.state_dict())
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    data, _ = _audit_set(tmp_path, lambda x: net((x - mean) / std))

    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT"), capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)
    model = results["model"]
    enum = "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1"
    assert model["weights"]["repo_id"] == enum and model["weights"]["sha256"] == sha
    assert model["weights"]["filename"] == name
    assert model["normalisation"]["source"] == f"torchvision_weights:{enum}"
    assert model["data_config"]["input_size"] == [3, 224, 224] and model["data_config"]["source"] == "pretrained"


def test_torchvision_weights_with_a_wrong_hash_prefix_are_refused(tmp_path, torch_home, monkeypatch, capsys) -> None:
    _publish(monkeypatch, torch_home, _seeded_shufflenet().state_dict(), prefix="deadbeef")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "IMAGENET1K_V1"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "hash prefix 'deadbeef'" in line, line


def test_torchvision_weights_not_cached_say_how_to_fetch(tmp_path, torch_home, capsys) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "not in the torch hub cache" in line and "--download" in line, line
    assert str(torch_home) in line
    assert os.listdir(torch_home) == []


def test_pretrained_head_class_count_must_match_unless_reinitialised(tmp_path, hf_env, capsys) -> None:
    _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(_seeded_test_resnet(), tmp_path)})
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32), y=np.array([0, 1, 2, 3]),
             num_classes=np.array(10))
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "a", "--pretrained"), capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "1000 classes" in line and "--num-classes 10" in line, line
    code, err = _cli(_run(f"timm:{TIMM_NAME}", data, tmp_path / "b", "--pretrained", "--num-classes", "10"), capsys)
    assert code == ExitCode.OK, err
    model = _results(tmp_path / "b")["model"]
    assert model["num_classes"] == 10 and model["num_classes_source"] == "num_classes_option"
    assert any("re-initialised" in w for w in model["load_report"]["warnings"])


def test_pretrained_config_key(tmp_path, hf_env, capsys) -> None:
    """`pretrained = true` in a config file does what --pretrained does."""
    import timm

    _put_in_hf_cache(hf_env, TIMM_REPO, {"model.safetensors": _safetensors_bytes(_seeded_test_resnet(), tmp_path)})
    direct = timm.create_model(TIMM_NAME, pretrained=True, cache_dir=str(hf_env)).eval()
    data, _ = _audit_set(tmp_path, lambda x: direct((x - 0.5) / 0.5))
    config = tmp_path / "robaudit.toml"
    config.write_text("pretrained = true\n")
    code, err = _cli(["--config", str(config), *_run(f"timm:{TIMM_NAME}", data, tmp_path / "out")], capsys)
    assert code == ExitCode.OK, err
    results = _results(tmp_path / "out")
    assert results["model"]["normalisation"]["source"] == f"timm_pretrained:{TIMM_NAME}"
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)


# --download against a loopback hub ------------------------------------------------------------


class LoopbackHub:
    """A Hugging Face Hub ``resolve`` endpoint and a plain file host, served on 127.0.0.1 only.

    ``/{repo}/resolve/{main|commit}/{file}`` answers HEAD and GET with the headers
    huggingface_hub 2.4 requires of a Hub (``get_hf_file_metadata``): ``X-Repo-Commit``,
    ``X-Linked-Etag`` / ``ETag`` (the sha256, which names the cache blob) and ``X-Linked-Size`` /
    ``Content-Length``; a missing file is a 404 with ``X-Error-Code: EntryNotFound``.
    ``/files/{name}`` serves torch.hub downloads. Every request is recorded. The server runs in
    a daemon thread and shuts itself down after ``lifetime`` seconds if the test has not.
    """

    def __init__(self, lifetime: float = 300.0) -> None:
        self.hub: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                content, headers = hub._lookup(self.path)
                self.send_response(200 if content is not None else 404)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content) if content is not None else 0))
                self.end_headers()
                if body and content is not None:
                    self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.server.shutdown)
        self._timer.daemon = True

    def _lookup(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        if path.startswith("/files/"):
            content = self.files.get(path[len("/files/"):])
            return content, {"Content-Type": "application/octet-stream"}
        repo_and_file = path.lstrip("/").split("/resolve/", 1)
        if len(repo_and_file) != 2:
            return None, {}
        repo, rest = repo_and_file
        revision, _, filename = rest.partition("/")
        content = self.hub.get(f"{repo}/{filename}") if revision in ("main", COMMIT) else None
        headers = {"X-Repo-Commit": COMMIT}
        if content is None:
            return None, {**headers, "X-Error-Code": "EntryNotFound"}
        digest = hashlib.sha256(content).hexdigest()
        return content, {**headers, "ETag": f'"{digest}"', "X-Linked-Etag": f'"{digest}"',
                         "X-Linked-Size": str(len(content)), "Content-Type": "application/octet-stream"}

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def loopback_hub() -> Iterator[LoopbackHub]:
    with LoopbackHub() as hub:
        yield hub


def _online_env(tmp_path: Path, hub: LoopbackHub) -> dict[str, str]:
    """The environment of a CLI run that may reach the loopback hub only: an empty HF_HOME and
    TORCH_HOME in tmp_path, HF_ENDPOINT at the hub, no offline switch, no proxy for 127.0.0.1."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TORCH_HOME=str(tmp_path / "torch"), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", OMP_NUM_THREADS="1")
    return env


def _cli_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "robaudit", *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=300)


@pytest.mark.slow
def test_timm_download_fetches_the_served_weights_from_a_loopback_hub(tmp_path, loopback_hub) -> None:
    """`--download` fills an empty HF_HOME through huggingface_hub's real hf_hub_download from the
    hub at HF_ENDPOINT, and the results name exactly the served bytes; without `--download` the
    same run asks the hub nothing and exits 2 with the one-line message."""
    import timm

    state = _seeded_test_resnet()
    served = _safetensors_bytes(state, tmp_path)
    loopback_hub.hub[f"{TIMM_REPO}/model.safetensors"] = served
    net = timm.create_model("test_resnet", num_classes=1000).eval()
    net.load_state_dict(state)
    data, _ = _audit_set(tmp_path, lambda x: net((x - 0.5) / 0.5))
    env = _online_env(tmp_path, loopback_hub)

    refused = _cli_process(_run(f"timm:{TIMM_NAME}", data, tmp_path / "refused", "--pretrained"), env)
    line = _error_line(refused.stderr)
    assert refused.returncode == ExitCode.USAGE and "not in the Hugging Face cache" in line, refused.stderr
    assert loopback_hub.requests == [] and not (tmp_path / "refused").exists()

    proc = _cli_process(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained", "--download"), env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert ("GET", f"/{TIMM_REPO}/resolve/main/model.safetensors") in loopback_hub.requests
    assert all(path.startswith(f"/{TIMM_REPO}/resolve/") for _, path in loopback_hub.requests)
    weights = _results(tmp_path / "out")["model"]["weights"]
    digest = hashlib.sha256(served).hexdigest()
    assert weights["repo_id"] == TIMM_REPO and weights["revision"] == COMMIT and weights["sha256"] == digest
    assert weights["downloaded"] is True
    blob = tmp_path / "hf" / "hub" / f"models--{TIMM_REPO.replace('/', '--')}" / "blobs" / digest
    assert blob.read_bytes() == served
    results = _results(tmp_path / "out")
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)

    # the cache is warm now: the same run without --download needs no hub
    before = len(loopback_hub.requests)
    again = _cli_process(_run(f"timm:{TIMM_NAME}", data, tmp_path / "again", "--pretrained"), env)
    assert again.returncode == ExitCode.OK, again.stderr
    assert len(loopback_hub.requests) == before
    assert _results(tmp_path / "again")["model"]["weights"]["downloaded"] is False


@pytest.mark.slow
def test_a_hub_repo_without_safetensors_is_refused_on_download(tmp_path, loopback_hub) -> None:
    """A repo that serves only a pickle is refused before anything is unpickled (exit 2)."""
    loopback_hub.hub[f"{TIMM_REPO}/pytorch_model.bin"] = b"not read"
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    proc = _cli_process(_run(f"timm:{TIMM_NAME}", data, tmp_path / "out", "--pretrained", "--download"),
                        _online_env(tmp_path, loopback_hub))
    line = _error_line(proc.stderr)
    assert proc.returncode == ExitCode.USAGE and "only pickle weights" in line and "--trust-checkpoint" in line, line
    assert ("GET", f"/{TIMM_REPO}/resolve/main/pytorch_model.bin") not in loopback_hub.requests


def test_torchvision_download_fetches_the_served_weights(tmp_path, torch_home, loopback_hub, monkeypatch,
                                                          capsys) -> None:
    """`--weights DEFAULT --download` fetches the enum's file through torch.hub into an empty
    TORCH_HOME (the enum's URL pointed at the loopback host) and checks its hash prefix."""
    import torchvision

    net = _seeded_shufflenet()
    blob = tmp_path / "blob.pth"
    torch.save(net.state_dict(), blob)
    served = blob.read_bytes()
    sha = hashlib.sha256(served).hexdigest()
    name = f"shufflenetv2_x0.5-{sha[:8]}.pth"
    loopback_hub.files[name] = served
    weights = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1
    monkeypatch.setattr(weights.value, "url", f"{loopback_hub.url}/files/{name}")
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    data, _ = _audit_set(tmp_path, lambda x: net((x - mean) / std))

    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "refused", "--weights", "DEFAULT"), capsys)
    assert code == ExitCode.USAGE and "not in the torch hub cache" in _error_line(err)
    assert loopback_hub.requests == []

    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT", "--download"),
                     capsys)
    assert code == ExitCode.OK, err
    assert loopback_hub.requests == [("GET", f"/files/{name}")]
    assert (torch_home / name).read_bytes() == served
    results = _results(tmp_path / "out")
    record = results["model"]["weights"]
    assert record["sha256"] == sha and record["filename"] == name and record["downloaded"] is True
    assert results["probes"]["clean"]["summary"]["accuracy"]["value"] == pytest.approx(RIGHT / N)


def test_torchvision_download_with_a_wrong_hash_prefix_keeps_nothing(tmp_path, torch_home, loopback_hub, monkeypatch,
                                                                      capsys) -> None:
    """Served bytes that do not match the hash prefix in the file name are refused (exit 2) and not cached."""
    import torchvision

    name = "shufflenetv2_x0.5-deadbeef.pth"
    loopback_hub.files[name] = b"tampered weights"
    weights = torchvision.models.ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1
    monkeypatch.setattr(weights.value, "url", f"{loopback_hub.url}/files/{name}")
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array([0, 1]), num_classes=np.array(1000))
    code, err = _cli(_run(f"torchvision:{TV_NAME}", data, tmp_path / "out", "--weights", "DEFAULT", "--download"),
                     capsys)
    line = _error_line(err)
    assert code == ExitCode.USAGE and "deadbeef" in line, line
    assert not (torch_home / name).exists()
