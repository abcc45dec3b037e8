"""Temporal pooling: one vector per utterance from a (T, d) frame sequence.

Arrays of kind ``layers`` (one row per encoder layer, ``(L, d)``, e.g. ``hf_audio``) use the same
methods: ``mean`` averages the layers, ``layer<K>`` keeps row K (``layer-1``: the last one) and
``flat`` keeps all of them, ``(L * d,)``, for a `LayerSelector` to choose from on the training
speakers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from emofusion.errors import ConfigError

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


_LAYER = re.compile(r"layer(-?\d+)")
FLAT_LAYERS = ("flat", "select")
"""Poolings that keep every row of ``(L, d)`` layers, ``(L * d,)``; with ``select`` the run puts a
`models.layer_selector.LayerSelector` in front of the modality's models (the layer, or a layer
weighting, is chosen on the training speakers' inner folds)."""
POOLING_NAMES = (*POOLINGS, *FLAT_LAYERS, "layer<K>")
"""Every pooling method, for messages; ``layer<K>`` stands for ``layer0``, ``layer-1``, ..."""


def known_pooling(method: str) -> bool:
    """True when `pool` accepts ``method``: a `POOLINGS` name, ``flat``, ``select`` or
    ``layer<K>``."""
    return method in POOLINGS or method in FLAT_LAYERS or _LAYER.fullmatch(method) is not None


def _one_row(frames: np.ndarray, method: str) -> np.ndarray:
    index = int(method[len("layer"):])
    if not -len(frames) <= index < len(frames):
        raise ConfigError(f"Pooling {method!r}: the features have {len(frames)} layers "
                          f"(rows), so K must be between {-len(frames)} and {len(frames) - 1}")
    return frames[index]


def _function(method: str) -> tuple[PoolFunction, int]:
    """The pooling function and its width factor (0 for flat: it depends on the rows)."""
    if not known_pooling(method):
        raise ConfigError(f"Unknown pooling {method!r}; choose from {', '.join(POOLING_NAMES)}")
    if method in FLAT_LAYERS:
        return (np.ravel, 0)
    if method in POOLINGS:
        return POOLINGS[method]
    return (lambda frames: _one_row(frames, method), 1)


def pooled_width(method: str, width: int, rows: int = 1) -> int:
    """Width of the pooled vector for frames of `width` features (`rows` frames for flat)."""
    factor = _function(method)[1]
    return factor * width if factor else rows * width


def pool(frames: np.ndarray, method: str) -> np.ndarray:
    """Pool a (T, d) float array (or a (d,) vector, read as T = 1) to a vector.

    Returns:
        float64 array of shape (d,) for mean/max/std/layer<K>, (3 d,) for stats, (T d,) for flat/select.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[None, :]
    return _function(method)[0](frames)
