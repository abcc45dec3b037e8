"""Input conversion for the PyTorch estimators: frame stores, padding and length buckets.

Two input forms are accepted (see docs/ARCHITECTURE.md):

* a plain numeric ``(n, d)`` matrix (pooled features; for sequence models one modality with one
  frame per utterance),
* a 2-D object array ``(n, n_modalities)`` whose cells are float ``(T_i, d_m)`` arrays. A cell that
  is ``None`` or has 0 rows is a *missing* modality; a 1-D cell ``(d_m,)`` is one frame.

Frames of one modality live in a single ``(sum_i T_i, d_m)`` array (the cells' own base array
when they are views of one, as `features.sequences.pack_frames` makes them: no copy; else one
copy), so padding a batch is one vectorised gather, never a Python loop over utterances.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from emofusion.features.sequences import shared_rows


def _as_object_matrix(X) -> np.ndarray | None:
    """Return X as a 2-D object array of frame cells, or None when X is a numeric matrix."""
    if hasattr(X, "dtypes") and getattr(X, "ndim", 0) == 2 and hasattr(X, "to_numpy"):
        if len(X.dtypes) and all(dt is np.dtype(object) for dt in X.dtypes):
            X = X.to_numpy(dtype=object)
        else:
            return None
    if not isinstance(X, np.ndarray) or X.dtype != object or X.size == 0:
        return None
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        return None
    cells = X.ravel()
    if all(c is None or isinstance(c, np.ndarray) for c in cells) and any(
        isinstance(c, np.ndarray) for c in cells
    ):
        return X
    return None


def is_sequence_input(X) -> bool:
    """True when X is the object array of frame sequences (not a numeric matrix)."""
    return _as_object_matrix(X) is not None


def frame_index(offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows of a frame array holding the frames of utterances with these offsets and lengths
    (n,), concatenated in order: shape (sum(lengths),). Vectorised (no loop over utterances)."""
    ends = np.cumsum(lengths)
    return np.repeat(offsets - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)


class SequenceStore:
    """Frames of n utterances for M modalities, with per-utterance lengths.

    The frame arrays are never modified: they may be shared with the caller (zero-copy views,
    see `parse_cells`). Standardisation is applied to each gathered batch.

    Attributes:
        frames: per modality, ``(total_frames_m, d_m)``; utterance i's frames are rows
            ``offsets[m][i] : offsets[m][i] + lengths[i, m]``.
        lengths: ``(n, M)`` int64 frame counts (0 = missing modality).
        offsets: per modality, ``(n,)`` start row of each utterance in ``frames[m]``.
    """

    def __init__(self, frames: list[np.ndarray], lengths: np.ndarray,
                 offsets: list[np.ndarray] | None = None):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(len(lengths), len(frames))
        self.frames = list(frames)
        if offsets is None:
            offsets = [np.cumsum(self.lengths[:, m]) - self.lengths[:, m] for m in range(len(frames))]
        self.offsets = [np.asarray(o, dtype=np.int64) for o in offsets]
        self._shift: list[np.ndarray] | None = None
        self._scale: list[np.ndarray] | None = None

    @property
    def n(self) -> int:
        return self.lengths.shape[0]

    @property
    def n_modalities(self) -> int:
        return len(self.frames)

    @property
    def widths(self) -> list[int]:
        return [int(f.shape[1]) for f in self.frames]

    @property
    def sort_key(self) -> np.ndarray:
        return self.lengths.sum(axis=1)

    def frame_rows(self, m: int, rows: np.ndarray) -> np.ndarray:
        """Rows of ``frames[m]`` holding the frames of the utterances ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        return frame_index(self.offsets[m][rows], self.lengths[rows, m])

    def standardise(self, means: list[np.ndarray], stds: list[np.ndarray]) -> None:
        """Standardise every gathered batch with these per-modality statistics (d_m,)."""
        self._shift = [np.asarray(mu, dtype=np.float32) for mu in means]
        self._scale = [(1.0 / np.asarray(sd, dtype=np.float64)).astype(np.float32) for sd in stds]

    def gather(self, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Padded ``(B, T_m, d_m)`` arrays (T_m = longest in the batch, at least 1; padding is
        0 after standardisation) and the ``(B, M)`` lengths."""
        rows = np.asarray(rows, dtype=np.int64)
        L = self.lengths[rows]
        out = []
        for m, f in enumerate(self.frames):
            tmax = max(int(L[:, m].max(initial=0)), 1)
            valid = np.arange(tmax)[None, :] < L[:, m][:, None]
            x = f[np.where(valid, self.offsets[m][rows][:, None] + np.arange(tmax)[None, :], 0)] \
                if len(f) else np.zeros((len(rows), tmax, f.shape[1]), f.dtype)
            if self._shift is not None:
                x -= self._shift[m]
                x *= self._scale[m]
            x[~valid] = 0
            out.append(x)
        return out, L

    def utterance_means(self, m: int) -> np.ndarray:
        """Mean frame (n, d_m) float64 of every utterance; zeros where the modality is missing."""
        out = np.zeros((self.n, self.frames[m].shape[1]))
        present = np.flatnonzero(self.lengths[:, m] > 0)
        if len(present):
            lengths = self.lengths[present, m]
            frames = self.frames[m][frame_index(self.offsets[m][present], lengths)].astype(np.float64)
            if self._shift is not None:
                frames = (frames - self._shift[m]) * self._scale[m]
            starts = np.cumsum(lengths) - lengths
            out[present] = np.add.reduceat(frames, starts, axis=0) / lengths[:, None]
        return out


class PooledStore:
    """A numeric ``(n, d)`` matrix behaving like a one-modality store of single frames."""

    def __init__(self, X: np.ndarray):
        self.X = np.array(X, dtype=np.float32)
        self.lengths = np.ones((len(self.X), 1), dtype=np.int64)

    n = property(lambda self: self.X.shape[0])
    n_modalities = 1
    widths = property(lambda self: [int(self.X.shape[1])])
    frames = property(lambda self: [self.X])
    sort_key = property(lambda self: np.zeros(self.X.shape[0], dtype=np.int64))

    def frame_rows(self, m: int, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64)

    def standardise(self, means, stds) -> None:
        self.X = ((self.X.astype(np.float64) - means[0]) / stds[0]).astype(np.float32)

    def gather(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        return [self.X[rows]], self.lengths[rows]


def _checked_cell(cell, i: int, m: int, width: int | None, what: str) -> np.ndarray | None:
    """Cell (i, m) as (T, d) frames (None when missing), with its dtype and width checked."""
    if cell is None:
        return None
    a = np.asarray(cell)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{what}: cell ({i}, {m}) has dtype {a.dtype}; frame arrays must be numeric.")
    if a.ndim == 1:
        a = a.reshape(1, -1) if a.size else a.reshape(0, 0)
    if a.ndim != 2:
        raise ValueError(f"{what}: cell ({i}, {m}) has shape {a.shape}; expected (T, d) frames.")
    if a.shape[0] == 0:
        return None
    if width is not None:
        _check_width(a, i, m, width, what)
    return a


def _check_width(a: np.ndarray, i: int, m: int, width: int, what: str) -> None:
    if a.shape[1] != width:
        raise ValueError(f"{what}: cell ({i}, {m}) has {a.shape[1]} features per frame, expected "
                         f"{width} (modality column {m}).")


def _modality_frames(column: np.ndarray, m: int, width: int | None, what: str, dtype):
    """(frames, offsets, lengths) of one modality column: the cells' own base when they share
    one (zero-copy), else one array the cells are copied into once."""
    cells = [_checked_cell(cell, i, m, width, what) for i, cell in enumerate(column)]
    present = [i for i, c in enumerate(cells) if c is not None]
    if not present:
        if width is None:
            raise ValueError(f"{what}: modality column {m} has no frames in any utterance.")
        return np.zeros((0, width), dtype), np.zeros(len(cells), np.int64), np.zeros(len(cells), np.int64)
    if width is None:
        width = cells[present[0]].shape[1]
        for i in present:
            _check_width(cells[i], i, m, width, what)
    lengths = np.array([0 if c is None else c.shape[0] for c in cells], dtype=np.int64)
    offsets = np.zeros(len(cells), dtype=np.int64)
    shared = shared_rows([cells[i] for i in present], dtype)
    if shared is not None:
        frames, offsets[present] = shared
    else:
        frames = np.empty((int(lengths.sum()), width), dtype)
        offsets[:] = np.cumsum(lengths) - lengths
        for i in present:
            frames[offsets[i]:offsets[i] + lengths[i]] = cells[i]
    if frames.dtype.kind == "f" and not all(
            np.isfinite(chunk).all() for chunk in _row_chunks(frames, frame_index(offsets, lengths))):
        raise ValueError(f"Input X contains NaN or infinity (modality column {m}).")
    return frames, offsets, lengths


def parse_cells(
    X: np.ndarray,
    widths: list[int] | None,
    *,
    what: str,
    dtype=np.float32,
) -> SequenceStore:
    """Build a `SequenceStore` from the object array X (validated: widths, finiteness)."""
    n, n_mod = X.shape
    if widths is not None and n_mod != len(widths):
        raise ValueError(
            f"X has {n_mod} modality columns, but {what} was fitted with {len(widths)}."
        )
    parsed = [_modality_frames(X[:, m], m, None if widths is None else widths[m], what, dtype)
              for m in range(n_mod)]
    return SequenceStore([f for f, _, _ in parsed], np.stack([L for _, _, L in parsed], axis=1),
                         [o for _, o, _ in parsed])


def _row_chunks(frames: np.ndarray, index: np.ndarray, values_per_chunk: int = 2_000_000):
    """``frames[index]``, a few MB at a time."""
    step = max(1, values_per_chunk // max(frames.shape[1], 1))
    for start in range(0, len(index), step):
        yield frames[index[start:start + step]]


def frame_statistics(store, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-modality frame mean and std (std 1 where constant) over the utterances ``rows``.

    Two passes over float64 chunks (never a float64 copy of all frames)."""
    means, stds = [], []
    for m, width in enumerate(store.widths):
        frames, index = store.frames[m], store.frame_rows(m, rows)
        if len(index) == 0:
            means.append(np.zeros(width))
            stds.append(np.ones(width))
            continue
        mu = sum(c.sum(axis=0, dtype=np.float64) for c in _row_chunks(frames, index)) / len(index)
        var = sum(((c - mu) ** 2).sum(axis=0) for c in _row_chunks(frames, index)) / len(index)
        sd = np.sqrt(var)
        sd[~(sd > 1e-12)] = 1.0
        means.append(mu)
        stds.append(sd)
    return means, stds


@dataclass
class Batch:
    xs: list[torch.Tensor]
    lengths: torch.Tensor
    rows: np.ndarray


class Batcher:
    """Length-bucketed mini-batches over the utterances ``rows`` of a store.

    Utterances are sorted by total length (stable, so the order is deterministic) and cut into
    buckets of ``bucket_batches * batch_size``. Under `precompute_bytes`, each bucket is padded
    once, as torch tensors, and a batch is a row selection of its bucket trimmed to the batch's own
    longest sequence; above it, each batch is gathered and padded when used.
    """

    #: buckets are padded once up front when their padded frames fit in this many bytes,
    #: else each batch is gathered when used (large corpora: no second copy of the data)
    precompute_bytes = 256 * 2**20

    def __init__(self, store, rows, batch_size: int, float_dtype, device, *,
                 bucket_batches: int = 8, precompute: bool = True):
        rows = np.asarray(rows, dtype=np.int64)
        self.store = store
        self.batch_size = max(int(batch_size), 1)
        self.float_dtype = float_dtype
        self.device = device
        order = rows[np.argsort(store.sort_key[rows], kind="stable")]
        size = self.batch_size * bucket_batches
        self.bucket_rows = [order[s:s + size] for s in range(0, len(order), size)]
        precompute = precompute and self._padded_bytes() <= self.precompute_bytes
        self._cache = [self._pad(b) for b in self.bucket_rows] if precompute else None

    def _padded_bytes(self) -> int:
        """Bytes of all buckets once padded (each to its longest utterance per modality)."""
        row_bytes = np.multiply(self.store.widths, [f.dtype.itemsize for f in self.store.frames])
        total = 0
        for rows in self.bucket_rows:
            longest = self.store.lengths[rows].max(axis=0)
            total += len(rows) * int(np.dot(np.maximum(longest, 1), row_bytes))
        return total

    def _pad(self, rows):
        xs, L = self.store.gather(rows)
        tensors = []
        for x in xs:
            t = torch.from_numpy(np.ascontiguousarray(x))
            if t.is_floating_point():
                t = t.to(self.float_dtype)
            tensors.append(t.to(self.device))
        return tensors, torch.from_numpy(L).to(self.device)

    def _batch(self, b: int, pos: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Rows ``pos`` of bucket b, padded to their own longest utterance."""
        if self._cache is not None:
            return self._take(*self._cache[b], pos)
        return self._pad(self.bucket_rows[b][pos])

    @staticmethod
    def _take(tensors, L, pos) -> tuple[list[torch.Tensor], torch.Tensor]:
        idx = torch.as_tensor(pos, device=L.device)
        Lb = L.index_select(0, idx)
        out = []
        for m, x in enumerate(tensors):
            x = x.index_select(0, idx)
            if x.dim() == 3:
                tmax = max(int(Lb[:, m].max()), 1)
                x = x[:, :tmax]
            out.append(x)
        return out, Lb

    @property
    def batches_per_epoch(self) -> int:
        """Mini-batches in one pass over the rows (`shuffled` and `sequential` alike)."""
        return sum(len(self._splits(len(rows))) for rows in self.bucket_rows)

    def _splits(self, n: int) -> list[np.ndarray]:
        n_batches = max(1, -(-n // self.batch_size))
        return np.array_split(np.arange(n), n_batches)

    def shuffled(self, rng: np.random.Generator) -> Iterator[Batch]:
        """One training epoch: rows shuffled inside buckets, batch order shuffled."""
        plan = []
        for b, rows in enumerate(self.bucket_rows):
            perm = rng.permutation(len(rows))
            plan.extend((b, perm[s]) for s in self._splits(len(rows)))
        for j in rng.permutation(len(plan)):
            b, pos = plan[j]
            yield Batch(*self._batch(b, pos), self.bucket_rows[b][pos])

    def sequential(self) -> Iterator[Batch]:
        """All rows once, in bucket order (for evaluation and prediction)."""
        for b, rows in enumerate(self.bucket_rows):
            for pos in self._splits(len(rows)):
                yield Batch(*self._batch(b, pos), rows[pos])
