"""Per-speaker normalisation of frame sequences (the frame counterpart of
`features.normalization.speaker_normalise`, which works on pooled rows).

Each speaker's frames are z-normalised per modality with the mean and standard deviation of that
speaker's own frames. With ``fit_rows`` (the strict protocol) only the speakers of those rows get
their own statistics, computed from those rows; every other speaker is normalised with the
average of their statistics, as a deployed system without enrolment data would be. Torch-free:
the runner can call it whether or not the deep extra is installed.
"""

from __future__ import annotations

import numpy as np

from emofusion.features.normalization import Stats, average_statistics, statistics
from emofusion.features.sequences import pack_frames


def _frame_statistics(cells: list[np.ndarray]) -> Stats:
    """(mean, std) (d,) over all frames of these (T_i, d) cells."""
    return statistics(np.concatenate(cells).astype(np.float64))


def _is_frame_column(column: np.ndarray) -> bool:
    """True when the column's cells are numeric arrays (not e.g. transcript strings)."""
    return any(isinstance(cell, np.ndarray) and cell.dtype.kind in "fiub" for cell in column)


def _normalised_column(column: np.ndarray, speakers: np.ndarray, fit: np.ndarray) -> list:
    """One modality column (n,) of (T_i, d) cells (1-D = one frame) or None, normalised per
    speaker: a list of n float32 cells (views of one array) or None."""
    present = np.array([cell is not None and len(cell) > 0 for cell in column])
    stats = {}
    for speaker in np.unique(speakers[fit & present]):
        rows = np.flatnonzero((speakers == speaker) & fit & present)
        stats[speaker] = _frame_statistics([np.atleast_2d(column[i]) for i in rows])
    fallback = average_statistics(stats)
    out: list[np.ndarray | None] = [None] * len(column)
    for i in np.flatnonzero(present):
        mean, std = stats.get(speakers[i], fallback)
        out[i] = ((np.atleast_2d(column[i]).astype(np.float64) - mean) / std).astype(np.float32)
    return pack_frames(out)


def speaker_normalise_frames(cells: np.ndarray, speakers: np.ndarray,
                             fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Z-normalise every speaker's frames with that speaker's statistics, per modality.

    Args:
        cells: (n, n_modalities) object array of float (T_i, d_m) frames; None or 0-row cells
            (missing modalities) stay None. Columns of other cells (transcript strings) are
            returned as they are.
        speakers: (n,) speaker of each row.
        fit_rows: indices of the rows whose speakers get their own statistics (from these rows
            only); other speakers get the average statistics of those speakers. None = all rows
            (the transductive ``scaling: speaker`` protocol: no labels are used).

    Returns:
        (n, n_modalities) object array of float32 (T_i, d_m) cells, each modality's cells views
        of one contiguous array (as `pack_frames` makes them, so the deep estimators use them
        in place). The input is not modified.

    Raises:
        ValueError: when ``speakers`` does not have one entry per row or no row of ``fit_rows``
            has frames in some modality.
    """
    speakers = np.asarray(speakers)
    if speakers.shape != (len(cells),):
        raise ValueError(f"speakers has shape {speakers.shape}, expected ({len(cells)},).")
    fit = np.ones(len(cells), dtype=bool)
    if fit_rows is not None:
        fit = np.zeros(len(cells), dtype=bool)
        fit[np.asarray(fit_rows)] = True
    out = np.empty(cells.shape, dtype=object)
    for m in range(cells.shape[1]):
        column = cells[:, m]
        if not _is_frame_column(column):
            out[:, m] = column
            continue
        if not any(cell is not None and len(cell) > 0 for cell in column[fit]):
            raise ValueError(f"modality column {m} has no frames in the rows that give statistics.")
        for i, cell in enumerate(_normalised_column(column, speakers, fit)):
            out[i, m] = cell
    return out
