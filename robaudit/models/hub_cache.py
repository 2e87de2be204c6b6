"""Pretrained zoo weights, offline first: the Hugging Face Hub cache and the torch hub cache.

A hub cache is data, like a checkpoint (docs/trust-model.md): robaudit looks the weights
file up in the cache, refuses a pickle unless ``--trust-checkpoint`` is given, downloads
only with ``--download``, and records the exact file it audited (repo id, revision, sha256).

* Hugging Face Hub: ``HF_HUB_CACHE`` (or ``HF_HOME``/hub, default ``~/.cache/huggingface/hub``),
  laid out ``models--ORG--NAME/{blobs,refs/main,snapshots/<commit>/FILE}``. Only
  ``model.safetensors`` is accepted; ``pytorch_model.bin`` (a pickle) needs ``--trust-checkpoint``.
  ``HF_HUB_OFFLINE=1`` forbids downloads even with ``--download``.
* torch hub (torchvision weights): ``TORCH_HOME/hub/checkpoints/<name>-<hash prefix>.pth``;
  the file's sha256 must start with the hash prefix in its name, as torchvision checks it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robaudit.errors import ModelLoadError
from robaudit.models.checkpoint import file_sha256
from robaudit.models.messages import one_line

logger = logging.getLogger(__name__)

SAFE_FILE = "model.safetensors"
PICKLE_FILE = "pytorch_model.bin"
_TRUE = ("1", "true", "yes", "on")
_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's HASH_REGEX


@dataclass
class ZooWeights:
    """The exact pretrained weights file an audit used; written to ``results.json`` as ``model.weights``.

    Attributes:
        hub: ``huggingface`` or ``torch_hub``.
        repo_id: the Hugging Face repo (``timm/resnet18.a1_in1k``), or the weights enum
            (``ResNet18_Weights.IMAGENET1K_V1``) for torchvision.
        revision: the commit hash of the cached snapshot (Hugging Face), else ``None``.
        filename: the file's name (``model.safetensors``, ``resnet18-f37072fd.pth``).
        path: the absolute path read.
        sha256: hex digest of the file's bytes.
        url: where the file is published (torchvision), else ``None``.
        downloaded: whether this run fetched it (``--download``).
    """

    hub: str
    repo_id: str
    revision: str | None
    filename: str
    path: str
    sha256: str
    url: str | None = None
    downloaded: bool = False

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict."""
        return asdict(self)


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache directory, read from the environment now (not at import)."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def split_revision(repo: str) -> tuple[str, str | None]:
    """``ORG/NAME@REV`` → (``ORG/NAME``, ``REV``); without ``@``, revision ``None`` (main)."""
    name, _, revision = repo.partition("@")
    return name, revision or None


def resolve_hf_weights(repo: str, *, download: bool, trust: bool, what: str) -> ZooWeights:
    """Find (or, when allowed, fetch) the weights of a Hub repo in the Hugging Face cache.

    Args:
        repo: ``ORG/NAME`` or ``ORG/NAME@REVISION``.
        download: ``--download`` was given.
        trust: ``--trust-checkpoint`` was given (accept a pickle ``pytorch_model.bin``).
        what: how the user named the model, for messages (``timm:resnet18.a1_in1k``).

    Raises:
        ModelLoadError: not cached and not allowed to download (or offline), only a pickle
            without ``--trust-checkpoint``, or the download failed.
    """
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = split_revision(repo)
    cache = hf_cache_dir()

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache), revision=revision)
        return Path(found) if isinstance(found, str) else None

    safe, pickled = cached(SAFE_FILE), cached(PICKLE_FILE)
    downloaded = False
    if safe is None and download:
        safe, pickled, downloaded = _download(repo_id, revision, cache, trust, what)
    if safe is not None:
        return _record(repo_id, safe, downloaded)
    if pickled is not None:
        if not trust:
            raise ModelLoadError(
                f"the Hugging Face cache holds only pickle weights for {what} ({pickled}); robaudit loads hub "
                f"weights only as {SAFE_FILE}, because unpickling can run code",
                fix=f"fetch {SAFE_FILE} (huggingface-cli download {repo_id} {SAFE_FILE}), or pass "
                "--trust-checkpoint if you trust the repo",
            )
        return _record(repo_id, pickled, downloaded)
    where = f"{cache / ('models--' + repo_id.replace('/', '--'))}"
    raise ModelLoadError(
        f"the pretrained weights of {what} are not in the Hugging Face cache (looked for {SAFE_FILE} of "
        f"{repo_id}{'@' + revision if revision else ''} under {where}; HF_HUB_CACHE/HF_HOME choose the cache)",
        fix=f"pass --download to fetch them, or run 'huggingface-cli download {repo_id} {SAFE_FILE}' on a machine "
        "with network access and copy the cache",
    )


def _download(repo_id: str, revision: str | None, cache: Path, trust: bool, what: str) -> tuple[Path | None, Path | None, bool]:
    """Fetch ``model.safetensors`` (else, when trusted, the pickle); (safe, pickle, downloaded)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    if hf_offline():
        raise ModelLoadError(
            f"--download was given for {what}, but HF_HUB_OFFLINE is set, so the Hugging Face Hub cannot be reached",
            fix="unset HF_HUB_OFFLINE to download, or fill the cache with 'huggingface-cli download' first",
        )
    try:
        path = hf_hub_download(repo_id, SAFE_FILE, revision=revision, cache_dir=str(cache))
        return Path(path), None, True
    except EntryNotFoundError:
        if not trust:
            raise ModelLoadError(
                f"hub repo {repo_id} has no {SAFE_FILE} (only pickle weights) for {what}; robaudit loads hub "
                "weights only as safetensors, because unpickling can run code",
                fix="pass --trust-checkpoint if you trust the repo",
            ) from None
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise _download_failed(repo_id, what, exc) from exc
    try:
        return None, Path(hf_hub_download(repo_id, PICKLE_FILE, revision=revision, cache_dir=str(cache))), True
    except Exception as exc:  # noqa: BLE001
        raise _download_failed(repo_id, what, exc) from exc


def _download_failed(repo_id: str, what: str, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"downloading the weights of {what} from hub repo {repo_id} failed: {one_line(exc)}",
        fix="check the network and the model name, or fill the cache with 'huggingface-cli download' first",
    )


def _record(repo_id: str, path: Path, downloaded: bool) -> ZooWeights:
    # A cached file lives at .../snapshots/<commit hash>/<filename>.
    revision = path.parent.name if path.parent.parent.name == "snapshots" else None
    return ZooWeights("huggingface", repo_id, revision, path.name, str(path.resolve()), file_sha256(path.resolve()),
                      downloaded=downloaded)


@contextlib.contextmanager
def hf_hub_mode(allow_download: bool) -> Iterator[Path]:
    """Run the block with huggingface_hub on this cache, offline unless downloads are allowed.

    huggingface_hub reads ``constants.HF_HUB_OFFLINE`` and ``constants.HF_HUB_CACHE`` at call
    time but computes them from the environment at import; setting them here honours the
    environment as it is now, and keeps a cached lookup from making any HTTP request. Yields
    the cache directory.
    """
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE
    cache = hf_cache_dir()
    constants.HF_HUB_OFFLINE = previous[0] or hf_offline() or not allow_download
    constants.HF_HUB_CACHE = str(cache)
    try:
        yield cache
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE = previous


def torch_hub_checkpoints() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's default when unset), read from the environment now."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser() / "hub" / "checkpoints"
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_torch_hub_file(url: str, *, download: bool, what: str, enum_name: str) -> ZooWeights:
    """The torch hub cache file for ``url``, hash-checked; downloaded (hash-checked) only when allowed.

    Raises:
        ModelLoadError: not cached and not allowed to download, or the file's sha256 does
        not start with the hash prefix in its name.
    """
    import torch.hub

    filename = url.rsplit("/", 1)[-1]
    folder = torch_hub_checkpoints()
    path = folder / filename
    downloaded = False
    if not path.is_file():
        if not download:
            raise ModelLoadError(
                f"the weights {enum_name} of {what} are not in the torch hub cache (looked for {path}; TORCH_HOME "
                "chooses the cache)",
                fix=f"pass --download to fetch them, or download {url} into {folder} on a machine with network access",
            )
        folder.mkdir(parents=True, exist_ok=True)
        prefix = _hash_prefix(filename)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            raise ModelLoadError(f"downloading {url} for {what} failed: {one_line(exc)}",
                                 fix="check the network, or download the file into the torch hub cache by hand") from exc
        downloaded = True
    sha = file_sha256(path)
    prefix = _hash_prefix(filename)
    if prefix and not sha.startswith(prefix):
        raise ModelLoadError(
            f"the cached weights file {path} has sha256 {sha[:12]}…, which does not start with the hash prefix "
            f"'{prefix}' in its name: it is corrupt or not the published {enum_name} file",
            fix=f"delete it and fetch it again (--download), or download {url} by hand",
        )
    return ZooWeights("torch_hub", enum_name, None, filename, str(path.resolve()), sha, url=url, downloaded=downloaded)


def _hash_prefix(filename: str) -> str | None:
    match = _HASH_PREFIX.search(filename)
    return match.group(1) if match else None
