"""Fixtures for the corpus-reader tests: tiny WAV writer and the shared real-data folder."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def _write_wav(path: Path, seconds: float = 0.02, rate: int = 16000) -> Path:
    """A short mono 16-bit sine tone at `path` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.1 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def _write_file(path: Path, content: bytes = b"\x00media") -> Path:
    """A small non-empty stand-in media file (video) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def write_wav() -> Callable[..., Path]:
    return _write_wav


@pytest.fixture
def write_file() -> Callable[..., Path]:
    return _write_file


@pytest.fixture
def shared_data() -> Path:
    """The real corpora beside the checkout (`../shared/data`); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA
