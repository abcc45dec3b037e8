"""Frame sequences as estimator input: an (n, n_modalities) object array of (T_i, d_m) arrays.

Cells made here are views into one contiguous float32 array per modality (`pack_frames`), which
the PyTorch estimators use in place instead of copying (see `models.deep._data.parse_cells`).
"""

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


def pack_frames(frames: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """The same (T_i, d) frames as views into one contiguous float32 (sum_i T_i, d) array.

    None (a missing utterance) stays None. Memory: one array instead of n small ones, and the
    estimators fit on it without a copy.
    """
    present = [f for f in frames if f is not None]
    if not present:
        return list(frames)
    base = np.concatenate(present).astype(np.float32, copy=False)
    ends = np.cumsum([len(f) for f in present])
    views = iter(np.split(base, ends[:-1]))
    return [None if f is None else next(views) for f in frames]


def _root(a: np.ndarray) -> np.ndarray:
    """The array owning a view's memory (a itself when it owns it)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def shared_rows(cells: list[np.ndarray], dtype=np.float32) -> tuple[np.ndarray, np.ndarray] | None:
    """(base, offsets (n,)) when every (T_i, d) cell is a block of rows of one C-contiguous
    `dtype` array (as `pack_frames` makes them; also after pickle protocol 5, which rebuilds the
    array as a flat buffer), else None. `base` is that array as (total_rows, d)."""
    first = cells[0]
    root = _root(first)
    if first.ndim != 2 or root.dtype != dtype or not root.flags.c_contiguous:
        return None
    width = first.shape[1]
    if root.size % max(width, 1) or (root.ndim == 2 and root.shape[1] != width) or root.ndim > 2:
        return None
    base = root.reshape(-1, width)
    row_bytes, start = base.strides[0], base.ctypes.data
    offsets = np.empty(len(cells), dtype=np.int64)
    for i, cell in enumerate(cells):
        shift = cell.ctypes.data - start
        if (_root(cell) is not root or cell.ndim != 2 or cell.dtype != dtype
                or not cell.flags.c_contiguous or cell.shape[1] != width or shift % row_bytes):
            return None
        offsets[i] = shift // row_bytes
    return base, offsets


class PackedCells(np.ndarray):
    """An (n, m) object array of frame cells that pickles as one base array per frame column
    plus offsets and lengths, instead of n small arrays: joblib then memory-maps the bases once
    and every fold worker shares them (no per-worker copy of the corpus). See `packed`."""

    def __reduce__(self):
        packing = getattr(self, "_packing", None)
        return (_unpacked, packing) if packing is not None else super().__reduce__()


def _unpacked(columns: list, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The `PackedCells` that pickled these: views of each frame column's base (length -1 = a
    None cell); other columns (e.g. transcripts, held as a 1-tuple) as they were."""
    out = np.empty(lengths.shape, dtype=object).view(PackedCells)
    for j, column in enumerate(columns):
        if isinstance(column, tuple):
            out[:, j] = column[0]
            continue
        for i in np.flatnonzero(lengths[:, j] >= 0):
            out[i, j] = column[offsets[i, j]:offsets[i, j] + lengths[i, j]]
    out._packing = (columns, offsets, lengths)
    return out


def _column_packing(cells: np.ndarray) -> tuple:
    """(payload, offsets (n,), lengths (n,)) of one column: payload is the base array when the
    cells are frame views of one base (lengths -1 = None), else the column itself in a 1-tuple."""
    offsets, lengths = np.zeros(len(cells), np.int64), np.full(len(cells), -1, np.int64)
    present = [i for i, cell in enumerate(cells) if cell is not None]
    arrays = [cells[i] for i in present]
    shared = shared_rows(arrays) if arrays and all(isinstance(a, np.ndarray) for a in arrays) else None
    if shared is None:
        return (cells,), offsets, lengths
    offsets[present], lengths[present] = shared[1], [len(a) for a in arrays]
    return shared[0], offsets, lengths


def packed(cells: np.ndarray) -> np.ndarray:
    """`cells` as `PackedCells` when at least one column holds views of one base array."""
    payloads, offsets, lengths = zip(*(_column_packing(cells[:, j]) for j in range(cells.shape[1])),
                                     strict=True)
    if all(isinstance(payload, tuple) for payload in payloads):
        return cells
    out = cells.view(PackedCells)
    out._packing = (list(payloads), np.stack(offsets, axis=1), np.stack(lengths, axis=1))
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
        (n, 1) object array of (max_m T_im, sum_m d_m) float32 frames, views into one array.
    """
    lengths = np.array([max(len(x) for x in row) for row in cells], dtype=np.int64)
    widths = [cells[0, m].shape[1] for m in range(cells.shape[1])]
    fused = np.empty((int(lengths.sum()), sum(widths)), dtype=np.float32)
    starts = np.cumsum(lengths) - lengths
    columns = np.cumsum([0, *widths])
    for i, row in enumerate(cells):
        block = fused[starts[i]:starts[i] + lengths[i]]
        for m, cell in enumerate(row):
            block[:, columns[m]:columns[m + 1]] = align_frames(cell, lengths[i])
    return as_object_array([np.split(fused, starts[1:])])


def is_pooled(X) -> bool:
    """Whether X is a numeric (n, d) matrix of pooled features, not an object array of frame
    sequences or transcripts."""
    return isinstance(X, np.ndarray) and X.dtype.kind in "fiub"
