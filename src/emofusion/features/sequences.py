"""Frame sequences as estimator input: an (n, n_modalities) object array of (T_i, d_m) arrays."""

from __future__ import annotations

import numpy as np


def as_object_array(columns: list[list[np.ndarray | None]]) -> np.ndarray:
    """Stack per-modality lists of frames into an (n, n_modalities) object array."""
    n = len(columns[0])
    out = np.empty((n, len(columns)), dtype=object)
    for j, frames in enumerate(columns):
        for i, cell in enumerate(frames):
            out[i, j] = cell
    return out


def align_frames(frames: np.ndarray, length: int) -> np.ndarray:
    """Resample (T, d) frames to (length, d) by nearest-frame indexing (time-aligned)."""
    index = np.minimum((np.arange(length) * len(frames)) // length, len(frames) - 1)
    return frames[index]


def frame_level_concatenation(cells: np.ndarray) -> np.ndarray:
    """Early fusion of frame sequences: align every modality of each utterance to the longest
    one's frame count and concatenate features.

    Args:
        cells: (n, n_modalities) object array of (T_im, d_m) frames.

    Returns:
        (n, 1) object array of (max_m T_im, sum_m d_m) frames.
    """
    fused = [np.hstack([align_frames(c, max(len(x) for x in row)) for c in row]) for row in cells]
    return as_object_array([fused])
