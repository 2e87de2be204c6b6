"""The run environment recorded in ``results.json``: versions, device, threads, seed."""
from __future__ import annotations

import os
import platform
import sys
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


def make_cuda_reproducible() -> None:
    """Settings under which the same seed gives the same results on the same CUDA device.

    cuDNN picks deterministic kernels and does not benchmark (autotuning can pick a different
    kernel per run); TF32 is off (float32 and float64 paths mean what they say); cuBLAS gets a
    fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS initialises, so call this before
    the first CUDA matmul; a value the user set is kept). ``torch.use_deterministic_algorithms`` is
    turned on with ``warn_only=True``: an op without a deterministic kernel warns instead of failing
    the audit. Seeding itself is the engine's ``torch.manual_seed`` (it seeds every CUDA device).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


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
