"""The run environment recorded in ``results.json``: versions, device, threads, seed."""
from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

RECORDED_PACKAGES = (
    "robaudit", "torch", "torchvision", "timm", "torchattacks", "hessian-eigenthings",
    "numpy", "scipy", "scikit-learn", "safetensors", "jinja2", "click",
)


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, ``None`` when absent."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def describe_environment(device: torch.device, seed: int, threads: int) -> dict[str, Any]:
    """The ``environment`` section of ``results.json``."""
    device_name = str(device)
    if device.type == "cuda":
        device_name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_name,
        "threads": threads,
        "seed": seed,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        **({"cuda": {"cudnn_deterministic": torch.backends.cudnn.deterministic,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                     "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                     "tf32_cudnn": torch.backends.cudnn.allow_tf32}} if device.type == "cuda" else {}),
        "working_directory": os.getcwd(),
    }


CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
"""The environment variable that fixes cuBLAS's workspace (read when cuBLAS initialises)."""


def make_cuda_reproducible() -> None:
    """Settings under which the same seed gives the same results on the same CUDA device.

    cuDNN picks deterministic kernels and does not benchmark (autotuning can pick a different
    kernel per run); TF32 is off (float32 and float64 paths mean what they say); cuBLAS gets a
    fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS initialises, so call this before
    the first CUDA matmul; a value the user set is kept). ``torch.use_deterministic_algorithms`` is
    turned on with ``warn_only=True``: an op without a deterministic kernel warns instead of failing
    the audit. Seeding itself is the engine's ``torch.manual_seed`` (it seeds every CUDA device).
    """
    os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def process_settings_restored() -> Iterator[None]:
    """Around an audit run from Python: put back every process-wide setting the audit changes.

    :func:`make_cuda_reproducible` (deterministic algorithms and their ``warn_only``, cuDNN
    ``deterministic``/``benchmark``, TF32, ``CUBLAS_WORKSPACE_CONFIG``), ``--threads``
    (``torch.set_num_threads``) and the engine's seeding (the global CPU generator, and each CUDA
    device's when CUDA was already initialised) are restored on the way out, however the audit ends.
    The CLI and zoo children exit after one audit and do not need it.
    """
    saved_threads = torch.get_num_threads()
    saved_deterministic = (torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    saved_tf32 = _tf32_settings()
    saved_cublas = os.environ.get(CUBLAS_WORKSPACE)
    saved_rng = torch.get_rng_state()
    saved_cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic[0], warn_only=saved_deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved_cudnn
        _set_tf32_settings(saved_tf32)
        if saved_cublas is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = saved_cublas
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)


def _fp32_precision_backends() -> list[Any]:
    b = torch.backends
    return [b, b.cuda.matmul, b.cudnn, b.cudnn.conv, b.cudnn.rnn, b.mkldnn, b.mkldnn.matmul, b.mkldnn.conv,
            b.mkldnn.rnn]


def _tf32_settings() -> tuple[str, tuple[Any, ...]]:
    """The TF32 state in the API it was set through: the ``allow_tf32`` flags (the API of
    :func:`make_cuda_reproducible`) with the float32 matmul precision, or, when torch refuses to read
    those because the caller set TF32 through the ``fp32_precision`` API, that API's values."""
    try:
        return "allow_tf32", (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                              torch.get_float32_matmul_precision())
    except RuntimeError:  # torch ≥ 2.9 refuses legacy reads after the new API was used
        return "fp32_precision", tuple(backend.fp32_precision for backend in _fp32_precision_backends())


def _set_tf32_settings(saved: tuple[str, tuple[Any, ...]]) -> None:
    api, values = saved
    if api == "allow_tf32":
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = values[0], values[1]
        torch.set_float32_matmul_precision(values[2])
        return
    for backend, value in zip(_fp32_precision_backends(), values):
        backend.fp32_precision = value


def cuda_peak_memory(device: torch.device) -> dict[str, Any]:
    """``{"cuda_peak_memory_bytes": torch.cuda.max_memory_allocated}`` on CUDA, else ``{}``."""
    if device.type != "cuda":
        return {}
    return {"cuda_peak_memory_bytes": int(torch.cuda.max_memory_allocated(device))}


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda if available, else mps if available, else cpu; others checked.

    Raises:
        UsageError: the requested device is not available here.
    """
    from robaudit.errors import UsageError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested but CUDA is not available here", fix="use --device cpu or --device auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"device '{name}' requested but MPS is not available here", fix="use --device cpu or --device auto")
    return device
