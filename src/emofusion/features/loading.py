"""Read every feature file of a modality once, check it, and pool it.

Reading runs on threads (file I/O and numpy parsing release the GIL), so a modality loads at
close to the disk's speed. Every problem with a file (missing, unreadable, empty, NaN/inf, wrong
shape or width) is collected, never raised on the spot, so the user sees all of them at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed

from emofusion.data.manifest import Manifest
from emofusion.data.sources import FeatureFileError, FeatureSource
from emofusion.errors import Problem
from emofusion.features.pooling import FLAT_LAYERS, pool, pooled_width

FIX_REEXPORT = "re-export it with numpy.save as a float (T, d) array, or use --on-bad-file skip"
FIX_PATH = "check the path in the CSV and --features-root, or use --on-bad-file skip"


@dataclass
class FileCheck:
    """What reading one file gave: the frames or the reason they are unusable."""

    frames: np.ndarray | None
    reason: str = ""
    fix: str = ""


@dataclass
class ModalityData:
    """One modality's data for every utterance of a manifest.

    Attributes:
        pooled: per pooling method, a float64 matrix (n, d_pooled); rows of bad files are NaN.
        width: the frame width d of the modality.
        problems: one `Problem` per unusable file.
        sequences: the (T_i, d) float32 frames per utterance when requested (None for bad files).
    """

    pooled: dict[str, np.ndarray]
    width: int
    problems: list[Problem] = field(default_factory=list)
    sequences: list[np.ndarray | None] | None = None


def check_frames(array: np.ndarray) -> FileCheck:
    """Check one loaded array and return it as (T, d) float32 frames or the reason it is bad."""
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        return FileCheck(None, f"not a real numeric array (dtype {array.dtype})", FIX_REEXPORT)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        return FileCheck(None, f"expected shape (T, d) or (d,), got {array.shape}", FIX_REEXPORT)
    if array.shape[0] == 0 or array.shape[1] == 0:
        return FileCheck(None, f"empty array of shape {array.shape}", FIX_REEXPORT)
    frames = array.astype(np.float32, copy=False)
    finite = np.isfinite(frames)
    if not finite.all():
        bad = int((~finite).sum())
        return FileCheck(None, f"contains NaN/inf ({bad} of {frames.size} values)", FIX_REEXPORT)
    return FileCheck(frames)


def read_frames(source: FeatureSource, path_text: str) -> FileCheck:
    """Locate, read and check one feature file."""
    if not path_text:
        return FileCheck(None, "no file given for this modality", "fill in the path in the CSV")
    location = source.locate(path_text)
    if location is None:
        return FileCheck(None, f"file not found under {source.describe()}", FIX_PATH)
    try:
        return check_frames(source.read(location))
    except FeatureFileError as exc:
        return FileCheck(None, str(exc), FIX_REEXPORT)


def _expected_width(checks: list[FileCheck], declared: int | None) -> int:
    if declared:
        return int(declared)
    widths = Counter(c.frames.shape[1] for c in checks if c.frames is not None)
    return widths.most_common(1)[0][0] if widths else 0


def _expected_rows(checks: list[FileCheck]) -> int:
    """The most common row count: layers of ``(L, d)`` arrays, all alike for one model."""
    counts = Counter(c.frames.shape[0] for c in checks if c.frames is not None)
    return counts.most_common(1)[0][0] if counts else 1


def _read_all(source: FeatureSource, paths: list[str], jobs: int) -> list[FileCheck]:
    chunk = max(1, len(paths) // (8 * max(jobs, 1)))
    return Parallel(n_jobs=jobs, prefer="threads", batch_size=chunk)(
        delayed(read_frames)(source, p) for p in paths
    )


def load_modality(manifest: Manifest, modality: str, poolings: list[str], *, jobs: int = 4,
                  keep_sequences: bool = False, expected_width: int | None = None) -> ModalityData:
    """Read, check and pool one modality for every utterance of `manifest`.

    Args:
        manifest: the utterance table.
        modality: which modality column to read.
        poolings: pooling methods to compute (see `emofusion.features.pooling.POOLINGS`).
        jobs: reader threads.
        keep_sequences: also return the frames (needed by sequence models).
        expected_width: the frame width every file must have (e.g. a saved model's); default
            the width declared in features.json, else the most common width.
    """
    paths = manifest.paths(modality)
    checks = _read_all(manifest.source, paths, jobs)
    info = manifest.modality_info.get(modality, {})
    width = _expected_width(checks, expected_width or info.get("width"))
    rows = _expected_rows(checks) if info.get("kind") == "layers" or set(FLAT_LAYERS) & set(
        poolings) else None
    problems = []
    for uid, path, check in zip(manifest.ids, paths, checks, strict=True):
        if check.frames is not None and check.frames.shape[1] != width:
            check.reason = f"width {check.frames.shape[1]}, expected {width} for '{modality}'"
            check.fix, check.frames = FIX_REEXPORT, None
        if check.frames is not None and rows is not None and check.frames.shape[0] != rows:
            check.reason = f"{check.frames.shape[0]} layers (rows), expected {rows} for '{modality}'"
            check.fix, check.frames = "re-extract it with the same model as the others", None
        if check.frames is None:
            problems.append(Problem(check.reason, check.fix, utterance_id=uid, path=path))
    pooled = {method: _pool_rows(checks, method, width, rows or 1) for method in poolings}
    sequences = [c.frames for c in checks] if keep_sequences else None
    return ModalityData(pooled=pooled, width=width, problems=problems, sequences=sequences)


def _pool_rows(checks: list[FileCheck], method: str, width: int, rows: int) -> np.ndarray:
    out = np.full((len(checks), pooled_width(method, width, rows)), np.nan)
    for row, check in enumerate(checks):
        if check.frames is not None:
            out[row] = pool(check.frames, method)
    return out
