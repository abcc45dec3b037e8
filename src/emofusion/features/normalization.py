"""Per-speaker normalisation of pooled features and of frame sequences.

Each speaker's utterances (pooled rows, or every frame of its utterances) are z-normalised with
that speaker's own mean and standard deviation. In the transductive variant (``scaling:
speaker``, the speaker-adaptive protocol) the test speaker's statistics come from its own
unlabelled features, which is legitimate (no labels are used) and is stated in the report. The
strict variant (``scaling: speaker_strict``) computes statistics only for training speakers;
any other speaker is normalised with the average of the training speakers' statistics, as a
deployed system without enrolment data would be.
"""

from __future__ import annotations

import numpy as np

from emofusion.features.sequences import is_pooled, pack_frames

Stats = tuple[np.ndarray, np.ndarray]


def statistics(X: np.ndarray) -> Stats:
    """The (mean, std) vectors (d,) of the rows of X (n, d); std floored by 1e-8."""
    return X.mean(axis=0), X.std(axis=0) + 1e-8


def input_statistics(X: np.ndarray) -> Stats:
    """The (mean, std) vectors (d,) of pooled rows X (n, d), or of every frame of X, an (n, 1)
    object column of (T_i, d) frames (None or empty cells skipped)."""
    if is_pooled(X):
        return statistics(X)
    return statistics(np.concatenate([np.atleast_2d(cell) for cell in X[:, 0]
                                      if cell is not None and len(cell) > 0]).astype(np.float64))


def _normalised_rows(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Pooled rows (n, d), or an (n, 1) object column of (T_i, d) frames (float32 cells; None
    stays None), z-normalised with these (d,) statistics."""
    if is_pooled(X):
        return (X - mean) / std
    out = np.empty(X.shape, dtype=object)
    for i, cell in enumerate(X[:, 0]):
        out[i, 0] = None if cell is None or len(cell) == 0 else (
            (np.atleast_2d(cell).astype(np.float64) - mean) / std).astype(np.float32)
    return out


def normalise_per_speaker(X: np.ndarray, speakers: np.ndarray, stats: dict[str, Stats],
                          fallback: Stats) -> np.ndarray:
    """X (pooled (n, d) rows or an (n, 1) column of frames) with each speaker's rows normalised
    by ``stats[speaker]``, or by `fallback` for a speaker without statistics.

    Returns:
        normalised copy of X's shape (frames: float32 cells, views of one array).
    """
    out = np.empty(X.shape, dtype=np.float64 if is_pooled(X) else object)
    for speaker in np.unique(speakers):
        mask = speakers == speaker
        out[mask] = _normalised_rows(X[mask], *stats.get(speaker, fallback))
    if not is_pooled(X):
        out[:, 0] = pack_frames(list(out[:, 0]))
    return out


def speaker_statistics(X: np.ndarray, speakers: np.ndarray) -> dict[str, Stats]:
    """Per speaker, the (mean, std) vectors (d,) of its rows of X (pooled (n, d), or an (n, 1)
    column of frames: `input_statistics`)."""
    return {s: input_statistics(X[speakers == s]) for s in np.unique(speakers)}


def average_statistics(stats: dict[str, Stats]) -> Stats:
    """The speakers' average (mean, std): the statistics for a speaker never seen."""
    return tuple(np.mean([s[i] for s in stats.values()], axis=0) for i in (0, 1))


def speaker_normalise(X: np.ndarray, speakers: np.ndarray,
                      fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Z-normalise rows per speaker.

    Args:
        X: (n, d) pooled features, or an (n, 1) object column of (T_i, d) frames (every cell
            present; each speaker's statistics are over all frames of its rows).
        speakers: (n,) speaker of each row.
        fit_rows: indices of rows whose speakers get their own statistics; None = all rows.

    Returns:
        normalised copy of X's shape (frames: float32 cells, views of one array).
    """
    rows = slice(None) if fit_rows is None else fit_rows
    stats = speaker_statistics(X[rows], speakers[rows])
    return normalise_per_speaker(X, speakers, stats, average_statistics(stats))


def _is_frame_column(column: np.ndarray) -> bool:
    """True when the column's cells are numeric arrays (not e.g. transcript strings)."""
    return any(isinstance(cell, np.ndarray) and cell.dtype.kind in "fiub" for cell in column)


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
        present = np.array([cell is not None and len(cell) > 0 for cell in column])
        if not (fit & present).any():
            raise ValueError(f"modality column {m} has no frames in the rows that give statistics.")
        out[present, m:m + 1] = speaker_normalise(cells[present, m:m + 1], speakers[present],
                                                  np.flatnonzero(fit[present]))
    return out


def normalise_inputs(inputs: dict, speakers: np.ndarray, scaling: str,
                     fit_rows: np.ndarray | None = None) -> dict:
    """Apply the run's per-speaker scaling to every input: pooled rows (`speaker_normalise`) and
    frame sequences (`speaker_normalise_frames`, every frame of a speaker's utterances).

    Args:
        inputs: input name -> (n, d) float matrix, or an (n, m) object array of frames
            (normalised per column) or transcripts (left as they are).
        speakers: (n,) speaker of each row.
        scaling: ``speaker`` (every speaker with its own statistics, test speakers included:
            the speaker-adaptive protocol), ``speaker_strict`` (statistics of the speakers of
            `fit_rows` only; any other speaker gets their average), or anything else (unchanged).
        fit_rows: the training rows (``speaker_strict``); None = all rows.

    Returns:
        input name -> normalised copy (or the same object when nothing applies).
    """
    if scaling not in ("speaker", "speaker_strict"):
        return inputs
    rows = fit_rows if scaling == "speaker_strict" else None
    return {name: speaker_normalise(X, speakers, rows) if is_pooled(X)
            else speaker_normalise_frames(X, speakers, rows) for name, X in inputs.items()}
