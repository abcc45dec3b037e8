"""Input conversion for the PyTorch estimators: frame stores, padding and length buckets.

Two input forms are accepted (see docs/ARCHITECTURE.md):

* a plain numeric ``(n, d)`` matrix (pooled features; for sequence models one modality with one
  frame per utterance),
* a 2-D object array ``(n, n_modalities)`` whose cells are float ``(T_i, d_m)`` arrays. A cell that
  is ``None`` or has 0 rows is a *missing* modality; a 1-D cell ``(d_m,)`` is one frame.

Frames of one modality are concatenated once into a single ``(sum_i T_i + 1, d_m)`` array (the last
row is an all-zero padding row) so padding a batch is one vectorised gather, never a Python loop
over utterances.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


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


class SequenceStore:
    """Frames of n utterances for M modalities, with per-utterance lengths.

    Attributes:
        frames: per modality, ``(total_frames_m + 1, d_m)``; the last row is zeros (padding).
        lengths: ``(n, M)`` int64 frame counts (0 = missing modality).
        offsets: per modality, ``(n,)`` start row of each utterance in ``frames[m]``.
    """

    def __init__(self, frames: list[np.ndarray], lengths: np.ndarray):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(len(lengths), len(frames))
        self.frames = []
        self.offsets = []
        for m, f in enumerate(frames):
            pad = np.zeros((1, f.shape[1]), dtype=f.dtype)
            self.frames.append(np.concatenate([f, pad], axis=0))
            ends = np.cumsum(self.lengths[:, m])
            self.offsets.append(ends - self.lengths[:, m])

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
        """Frames of modality m belonging to the utterances ``rows`` (for statistics)."""
        keep = np.zeros(self.n, dtype=bool)
        keep[rows] = True
        return self.frames[m][:-1][np.repeat(keep, self.lengths[:, m])]

    def standardise(self, means: list[np.ndarray], stds: list[np.ndarray]) -> None:
        """In place, in chunks (no float64 copy of all frames: 2048-d visual frames of an
        IEMOCAP-size corpus are 1.4 GB as float32)."""
        for m, f in enumerate(self.frames):
            mu = np.asarray(means[m], dtype=f.dtype)
            inv = (1.0 / np.asarray(stds[m], dtype=np.float64)).astype(f.dtype)
            step = max(1, 4_000_000 // max(f.shape[1], 1))
            for s in range(0, len(f) - 1, step):
                chunk = f[s:min(s + step, len(f) - 1)]
                chunk -= mu
                chunk *= inv

    def gather(self, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Padded ``(B, T_m, d_m)`` arrays (T_m = longest in the batch, at least 1) and lengths."""
        rows = np.asarray(rows, dtype=np.int64)
        L = self.lengths[rows]
        out = []
        for m, f in enumerate(self.frames):
            tmax = max(int(L[:, m].max(initial=0)), 1)
            pos = np.arange(tmax)
            valid = pos[None, :] < L[:, m][:, None]
            index = np.where(valid, self.offsets[m][rows][:, None] + pos[None, :], len(f) - 1)
            out.append(f[index])
        return out, L


class PooledStore:
    """A numeric ``(n, d)`` matrix behaving like a one-modality store of single frames."""

    def __init__(self, X: np.ndarray):
        self.X = np.array(X, dtype=np.float32)
        self.lengths = np.ones((len(self.X), 1), dtype=np.int64)

    n = property(lambda self: self.X.shape[0])
    n_modalities = 1
    widths = property(lambda self: [int(self.X.shape[1])])
    sort_key = property(lambda self: np.zeros(self.X.shape[0], dtype=np.int64))

    def frame_rows(self, m: int, rows: np.ndarray) -> np.ndarray:
        return self.X[rows]

    def standardise(self, means, stds) -> None:
        self.X = ((self.X.astype(np.float64) - means[0]) / stds[0]).astype(np.float32)

    def gather(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        return [self.X[rows]], self.lengths[rows]


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
    frames: list[np.ndarray] = []
    lengths = np.zeros((n, n_mod), dtype=np.int64)
    for m in range(n_mod):
        parts = []
        width = None if widths is None else widths[m]
        for i, cell in enumerate(X[:, m]):
            if cell is None:
                continue
            a = np.asarray(cell)
            if a.dtype.kind not in "fiub":
                raise ValueError(
                    f"{what}: cell ({i}, {m}) has dtype {a.dtype}; frame arrays must be numeric."
                )
            if a.ndim == 1:
                if a.size == 0:
                    continue
                a = a.reshape(1, -1)
            if a.ndim != 2:
                raise ValueError(
                    f"{what}: cell ({i}, {m}) has shape {a.shape}; expected (T, d) frames."
                )
            if a.shape[0] == 0:
                continue
            if width is None:
                width = a.shape[1]
            elif a.shape[1] != width:
                raise ValueError(
                    f"{what}: cell ({i}, {m}) has {a.shape[1]} features per frame, expected "
                    f"{width} (modality column {m})."
                )
            lengths[i, m] = a.shape[0]
            parts.append(a)
        if width is None:
            raise ValueError(f"{what}: modality column {m} has no frames in any utterance.")
        f = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros((0, width), dtype)
        if f.dtype.kind == "f" and not np.isfinite(f).all():
            raise ValueError(f"Input X contains NaN or infinity (modality column {m}).")
        frames.append(np.ascontiguousarray(f))
    return SequenceStore(frames, lengths)


def _chunks(f: np.ndarray, keep: np.ndarray | None, rows_per_chunk: int):
    for s in range(0, len(f), rows_per_chunk):
        part = f[s:s + rows_per_chunk]
        yield (part if keep is None else part[keep[s:s + rows_per_chunk]]).astype(np.float64)


def frame_statistics(store, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-modality frame mean and std (std 1 where constant) over the utterances ``rows``.

    Two passes over float64 chunks (never a float64 copy of all frames)."""
    means, stds = [], []
    for m, width in enumerate(store.widths):
        if isinstance(store, SequenceStore):
            f = store.frames[m][:-1]
            selected = np.zeros(store.n, dtype=bool)
            selected[rows] = True
            keep = np.repeat(selected, store.lengths[:, m])
        else:
            f, keep = store.frame_rows(m, rows), None
        count = int(len(f) if keep is None else keep.sum())
        if count == 0:
            means.append(np.zeros(width))
            stds.append(np.ones(width))
            continue
        step = max(1, 2_000_000 // max(width, 1))
        mu = sum(c.sum(axis=0) for c in _chunks(f, keep, step)) / count
        var = sum(((c - mu) ** 2).sum(axis=0) for c in _chunks(f, keep, step)) / count
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
    buckets of ``bucket_batches * batch_size``. Each bucket is padded once, as torch tensors; a
    batch is a row selection of its bucket trimmed to the batch's own longest sequence.
    """

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
        self._cache = [self._pad(b) for b in self.bucket_rows] if precompute else None

    def _pad(self, rows):
        xs, L = self.store.gather(rows)
        tensors = []
        for x in xs:
            t = torch.from_numpy(np.ascontiguousarray(x))
            if t.is_floating_point():
                t = t.to(self.float_dtype)
            tensors.append(t.to(self.device))
        return tensors, torch.from_numpy(L).to(self.device)

    def _bucket(self, b):
        return self._cache[b] if self._cache is not None else self._pad(self.bucket_rows[b])

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
            xs, L = self._take(*self._bucket(b), pos)
            yield Batch(xs, L, self.bucket_rows[b][pos])

    def sequential(self) -> Iterator[Batch]:
        """All rows once, in bucket order (for evaluation and prediction)."""
        for b, rows in enumerate(self.bucket_rows):
            tensors, L = self._bucket(b)
            for pos in self._splits(len(rows)):
                xs, Lb = self._take(tensors, L, pos)
                yield Batch(xs, Lb, rows[pos])
