"""Generated audio and video files shared by the extractor tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 16000


def tone(seconds: float, freq: float = 440.0, rate: int = RATE) -> np.ndarray:
    """Sine ``(n,)`` float32 at amplitude 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(seconds: float, low: float = 200.0, high: float = 6000.0,
          rate: int = RATE) -> np.ndarray:
    """Linear sweep ``(n,)`` float32 from ``low`` to ``high`` Hz."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (low * t + (high - low) * t ** 2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def noise(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(
        np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> str:
    import soundfile as sf

    sf.write(str(path), samples, rate, subtype="PCM_16")
    return str(path)


def face_image(size: int = 240) -> np.ndarray:
    """BGR ``(size, size, 3)`` image of the astronaut photo shipped with scikit-image."""
    import cv2
    import skimage.data

    return cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (size, size))


def write_video(path: Path, face_frames: int, blank_frames: int, fps: float = 10.0,
                size: int = 240) -> str:
    """MJPG .avi: ``face_frames`` frames of a face, then ``blank_frames`` grey frames."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    face, blank = face_image(size), np.full((size, size, 3), 128, np.uint8)
    for index in range(face_frames + blank_frames):
        writer.write(face if index < face_frames else blank)
    writer.release()
    return str(path)
