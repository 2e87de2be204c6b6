"""Paths and settings shared by the top-level tests (a uniquely named module, unlike conftest)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "examples" / "digits_cnn.safetensors"
DEMO_ARCH = f"{REPO / 'examples' / 'digits_cnn.py'}:DigitsCNN"
THREADS = 2
