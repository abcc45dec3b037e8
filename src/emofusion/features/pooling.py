"""Temporal pooling: one vector per utterance from a (T, d) frame sequence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PoolFunction = Callable[[np.ndarray], np.ndarray]

POOLING_VERSION = 1
"""Version of the pooling code, part of the pooled-feature cache key (`features.cache`): bump it
whenever a pooling function (or the reading before it) changes what it returns, so that no run
is served matrices pooled by older code."""


def _mean(frames: np.ndarray) -> np.ndarray:
    return frames.mean(axis=0)


def _max(frames: np.ndarray) -> np.ndarray:
    return frames.max(axis=0)


def _std(frames: np.ndarray) -> np.ndarray:
    return frames.std(axis=0)


def _stats(frames: np.ndarray) -> np.ndarray:
    return np.concatenate([_mean(frames), _std(frames), _max(frames)])


POOLINGS: dict[str, tuple[PoolFunction, int]] = {
    "mean": (_mean, 1),
    "max": (_max, 1),
    "std": (_std, 1),
    "stats": (_stats, 3),  # mean ‖ std ‖ max
}


def pooled_width(method: str, width: int) -> int:
    """Width of the pooled vector for frames of `width` features."""
    return POOLINGS[method][1] * width


def pool(frames: np.ndarray, method: str) -> np.ndarray:
    """Pool a (T, d) float array (or a (d,) vector, read as T = 1) to a vector.

    Returns:
        float64 array of shape (d,) for mean/max/std and (3 d,) for stats.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[None, :]
    return POOLINGS[method][0](frames)
